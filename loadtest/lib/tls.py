"""TLS for the TLS scenarios: the certificates every TLS listener uses (made at run
time with the openssl command), the client-side shim that counts handshakes and
turns session resumption off (tls_shim.c, built with gcc), and the OpenSSL
settings of the clients.

Certificates: one ECDSA P-256 server certificate (SAN DNS:localhost, IP:127.0.0.1)
for every peer (Outrigger, Envoy, HAProxy and nginx for `direct`), signed by a
throw-away CA that is also the client CA of the mTLS listeners, and one client
certificate (SAN URI spiffe://loadtest/client). P-256 because it is what mesh
workload identities use (SPIRE's default; Envoy's and Istio's docs recommend it), and
because its signature is cheap on all three TLS stacks, so a handshake measures the
stack rather than an RSA private-key operation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .util import HarnessError, run

SHIM_SRC = Path(__file__).resolve().parent / "tls_shim.c"
# The one TLS 1.3 suite and group the OpenSSL client (wrk) offers, so every
# server negotiates the same ones whatever its own preference.
SUITE = "TLS_AES_128_GCM_SHA256"
GROUP = "X25519"


@dataclass
class TlsFiles:
    dir: Path
    ca: Path            # CA certificate: client CA of the mTLS listeners
    cert: Path          # server certificate (leaf)
    key: Path           # its private key (PKCS#8)
    bundle: Path        # cert + key in one file (HAProxy's `crt`)
    client_cert: Path
    client_key: Path
    shim: Path          # tls_shim.so
    openssl_conf: Path  # OPENSSL_CONF of the OpenSSL client (wrk)

    def client_env(self, resume: bool = True) -> dict:
        """Environment of the OpenSSL client (wrk): the shim preloaded
        (counts handshakes; with resume=False every handshake is a full one) and
        TLS 1.3 only, one suite, one group."""
        return dict(os.environ, LD_PRELOAD=str(self.shim),
                    LOADTEST_TLS_RESUME="1" if resume else "0",
                    OPENSSL_CONF=str(self.openssl_conf))


def _openssl(tool: str, args: list, cwd: Path) -> None:
    run([tool, *args], timeout=60, cwd=cwd)


def prepare(tools, work: Path) -> TlsFiles:
    """Fresh certificates (valid 2 days) and the shim, under work/tls/."""
    d = work / "tls"
    d.mkdir(parents=True, exist_ok=True)
    ossl = tools["openssl"]
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(ossl, ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                    "-subj", "/CN=outrigger loadtest CA",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
    for name, san, eku in (("server", "DNS:localhost,IP:127.0.0.1", "serverAuth"),
                           ("client", "URI:spiffe://loadtest/client", "clientAuth")):
        _openssl(ossl, ["req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                        "-subj", f"/CN={name}"], d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={eku}\n"
                                       "basicConstraints=CA:FALSE\n"
                                       "keyUsage=critical,digitalSignature\n")
        _openssl(ossl, ["x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey",
                        "ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                        "-out", f"{name}.pem"], d)
    (d / "server-bundle.pem").write_bytes((d / "server.pem").read_bytes()
                                          + (d / "server.key").read_bytes())
    (d / "openssl-client.cnf").write_text(
        "# OpenSSL settings of wrk in the TLS scenarios (OPENSSL_CONF).\n"
        "openssl_conf = openssl_init\n[openssl_init]\nssl_conf = ssl_sect\n"
        "[ssl_sect]\nsystem_default = system_default_sect\n[system_default_sect]\n"
        f"MinProtocol = TLSv1.3\nCiphersuites = {SUITE}\nGroups = {GROUP}\n")
    shim = d / "tls_shim.so"
    run([tools["gcc"], "-O2", "-Wall", "-shared", "-fPIC", "-o", shim, SHIM_SRC, "-ldl"],
        timeout=120)
    files = TlsFiles(d, d / "ca.pem", d / "server.pem", d / "server.key",
                     d / "server-bundle.pem", d / "client.pem", d / "client.key", shim,
                     d / "openssl-client.cnf")
    for p in (files.ca, files.cert, files.key, files.client_cert, files.client_key):
        if not p.exists():
            raise HarnessError(f"TLS set-up: {p} was not written")
    return files


def client_counts(stderr: str) -> dict | None:
    """The shim's line: {'handshakes': N, 'resumed': M}, summed over processes."""
    hs = rs = 0
    seen = False
    for line in stderr.splitlines():
        if line.startswith("LOADTEST_TLS "):
            kv = dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)
            hs += int(kv.get("handshakes", 0))
            rs += int(kv.get("resumed", 0))
            seen = True
    return {"handshakes": hs, "resumed": rs} if seen else None
