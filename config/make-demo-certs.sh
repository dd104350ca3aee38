#!/bin/sh
# Makes the demo PKI that config/tls.yaml uses, in config/demo-certs/ (git-ignored):
# a CA, a server certificate for *.demo.local, and a client certificate whose SAN is
# the SPIFFE ID spiffe://demo.local/ns/default/sa/demo. Test-only keys: never use them
# for anything else. Needs the openssl command.
set -eu
dir="$(dirname "$0")/demo-certs"
mkdir -p "$dir"
cd "$dir"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 30 -subj "/CN=outrigger demo CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
leaf() { # name subject-alt-names extended-key-usage
  openssl req $ec -keyout "$1.key" -out "$1.csr" -subj "/CN=$1"
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$2" "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile "$1.ext" -out "$1.pem"
  rm -f "$1.csr" "$1.ext"
}
leaf server "DNS:*.demo.local,DNS:localhost" serverAuth
leaf client "URI:spiffe://demo.local/ns/default/sa/demo" clientAuth
echo "wrote $(pwd)"
