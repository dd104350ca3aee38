//! Certificate rotation under load (issue 9): client threads open new TLS connections
//! and send keep-alive requests on them, a bounded number, while the certificate is
//! rotated several times; not one request may fail, and every rotation must reach new
//! handshakes. Once with the native config's certificate files replaced by rename (a
//! file at a time, so a reload in between sees a certificate without its key and is
//! refused), once with an Envoy bootstrap whose certificate is an SDS secret in a
//! Kubernetes-style volume (the files and the SDS file swapped by `..data`). Two
//! workers, so the reload reaches more than one core.

mod common;
mod pki;
mod sds;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use common::*;
use pki::{path, Ca};
use sds::*;

/// Client threads.
const CLIENTS: usize = 4;
/// Keep-alive requests per connection.
const PER_CONNECTION: usize = 3;
/// At most this many connections per client, whatever happens.
const MAX_CONNECTIONS: usize = 20_000;

/// What the clients did.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Load {
    /// Starts the clients against `addr`; each expects `200 body` to every request.
    fn start(addr: SocketAddr, body: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..CLIENTS)
            .map(|_| {
                let stop = stop.clone();
                thread::spawn(move || {
                    let config = any_cert_client();
                    let (mut ok, mut failed) = (0, Vec::new());
                    for _ in 0..MAX_CONNECTIONS {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let mut s = match connect(addr, &config) {
                            Ok(s) => s,
                            Err(e) => {
                                failed.push(format!("handshake: {e}"));
                                continue;
                            }
                        };
                        for _ in 0..PER_CONNECTION {
                            match tls_get(&mut s) {
                                Ok((200, b)) if b == body => ok += 1,
                                other => failed.push(format!("request: {other:?}")),
                            }
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        Load { stop, clients }
    }

    /// Stops the clients; the requests that succeeded and the failures.
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut ok = 0;
        let mut failed = Vec::new();
        for c in self.clients {
            let (o, f) = c.join().unwrap();
            ok += o;
            failed.extend(f);
        }
        (ok, failed)
    }
}

/// Waits until new handshakes on `addr` get the certificate in `cert`.
fn wait_served(addr: SocketAddr, cert: &Path, proxy: &Proxy, step: &str) {
    let want = Some(der(cert));
    let ok = wait_until(IO_TIMEOUT, || (served(addr) == want).then_some(()));
    assert!(ok.is_some(), "{step}: never served:\n{}", proxy.stderr());
}

#[test]
fn native_certificate_files_rotate_under_load_without_a_failed_request() {
    let dir = TempDir::new("rotate-load");
    let ca = Ca::new("mesh CA");
    let live = ca.leaf(dir.path(), "server", pki::server(&["proxy.test"]));
    let config = format!(
        "{HEADER}listeners:
  - name: tls
    address: 127.0.0.1
    port: @PORT@
    filter_chains:
      - name: tls
        route_table: one
        tls:
          certificates:
            - {{ cert_chain_file: \"{}\", private_key_file: \"{}\" }}
          alpn_protocols: [http/1.1]
route_tables:
  - name: one
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            direct_response: {{ status: 200, body: \"one\" }}
",
        path(&live.cert),
        path(&live.key)
    );
    let proxy = Proxy::start_with(&config, 2);
    let load = Load::start(proxy.listen, "one");
    for i in 0..3 {
        let next = ca.leaf(
            dir.path(),
            &format!("next{i}"),
            pki::server(&["proxy.test"]),
        );
        // Kept to compare with what is served once the pair is in place.
        let copy = dir.join(&format!("served{i}.pem"));
        std::fs::copy(&next.cert, &copy).unwrap();
        std::fs::rename(&next.cert, &live.cert).unwrap();
        std::fs::rename(&next.key, &live.key).unwrap();
        wait_served(proxy.listen, &copy, &proxy, &format!("rotation {i}"));
    }
    let (ok, failed) = load.finish();
    eprintln!("{ok} requests succeeded, {} failed", failed.len());
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 0);
}

#[test]
fn sds_secrets_rotate_under_load_without_a_failed_request() {
    let dir = TempDir::new("rotate-load-sds");
    let ca = Ca::new("mesh CA");
    let first = ca.leaf(dir.path(), "first", pki::server(&["proxy.test"]));
    let read = |p: &Path| std::fs::read(p).unwrap();
    let mut vol = K8sVolume::new(&dir.join("secret"));
    let secret = tls_secret("server", &vol.file("tls.crt"), &vol.file("tls.key"));
    vol.publish(&[
        ("tls.crt", &read(&first.cert)),
        ("tls.key", &read(&first.key)),
        ("sds.yaml", secret.as_bytes()),
    ]);
    let bootstrap = downstream_bootstrap(&sds_config(&vol.file("sds.yaml"), &vol.dir), "");
    let proxy = Proxy::start_with(&bootstrap, 2);
    let load = Load::start(proxy.listen, "from sds");
    for i in 0..3 {
        let next = ca.leaf(
            dir.path(),
            &format!("next{i}"),
            pki::server(&["proxy.test"]),
        );
        vol.publish(&[
            ("tls.crt", &read(&next.cert)),
            ("tls.key", &read(&next.key)),
            ("sds.yaml", secret.as_bytes()),
        ]);
        wait_served(proxy.listen, &next.cert, &proxy, &format!("rotation {i}"));
    }
    // The SDS file itself names new files.
    let last = ca.leaf(dir.path(), "last", pki::server(&["proxy.test"]));
    vol.publish(&[(
        "sds.yaml",
        tls_secret("server", &last.cert, &last.key).as_bytes(),
    )]);
    wait_served(proxy.listen, &last.cert, &proxy, "SDS file");
    let (ok, failed) = load.finish();
    eprintln!("{ok} requests succeeded, {} failed", failed.len());
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 0);
}
