//! The one-line mode's TLS flags through the real binary: `--tls-cert/--tls-key
//! [--tls-client-ca]` terminate (mutual) TLS on the listener, curl reaching it over
//! HTTP/1.1 and HTTP/2 by ALPN; `--upstream-tls-ca [--upstream-tls-cert
//! --upstream-tls-key] [--upstream-sni]` originate mutual TLS to an in-process rustls
//! upstream that requires a client certificate, and a server from another CA or without
//! the SNI's name is refused before any request reaches it. Flags that do not go
//! together are refused with the flag's name.

mod common;
mod pki;

use std::path::Path;
use std::sync::atomic::Ordering;

use common::*;
use pki::upstream::tls_upstream;
use pki::{curl_mtls, path, Ca, LeafSpec};

/// Starts the one-line mode with `extra` flags after `--listen`, `--upstream` and
/// `--admin`.
fn one_line(upstream: &str, extra: &[&str]) -> Proxy {
    let mut args = vec![
        "run",
        "--listen",
        "127.0.0.1:@PORT@",
        "--upstream",
        upstream,
        "--admin",
        "127.0.0.1:@ADMIN_PORT@",
        "--concurrency",
        "1",
    ];
    args.extend_from_slice(extra);
    Proxy::start_args(&args)
}

/// curl through the proxy's TLS listener: `(succeeded, body + "\n<status> <version>"
/// + stderr)`.
fn curl(proxy: &Proxy, ca: &Path, client: Option<&pki::Leaf>, http: &str) -> (bool, String) {
    let out = curl_mtls(
        proxy.listen.port(),
        ca,
        client,
        &[http, "-w", "\n%{http_code} %{http_version}"],
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn inbound_mutual_tls_from_flags_over_http1_and_http2() {
    let dir = TempDir::new("tls-oneline");
    let ca = Ca::new("mesh CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(dir.path(), "server", pki::server(&["proxy.test"]));
    let client = ca.leaf(
        dir.path(),
        "client",
        pki::client("spiffe://test.local/ns/default/sa/client"),
    );
    let other_ca = Ca::new("other CA");
    let stranger = other_ca.leaf(
        dir.path(),
        "stranger",
        pki::client("spiffe://test.local/ns/default/sa/stranger"),
    );
    let up = Upstream::echo();
    let (cert, key, cap) = (path(&server.cert), path(&server.key), path(&ca_pem));
    let proxy = one_line(
        &up.addr.to_string(),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &cap,
        ],
    );
    let (ok, out) = curl(&proxy, &ca_pem, Some(&client), "--http1.1");
    assert!(ok && out.ends_with("\n200 1.1"), "{out}");
    let (ok, out) = curl(&proxy, &ca_pem, Some(&client), "--http2");
    assert!(ok && out.ends_with("\n200 2"), "{out}");
    assert_eq!(up.request_count(), 2);
    // Without a client certificate, or with one from another CA: refused in the
    // handshake, nothing reaches the upstream.
    let (ok, out) = curl(&proxy, &ca_pem, None, "--http1.1");
    assert!(!ok, "{out}");
    let (ok, out) = curl(&proxy, &ca_pem, Some(&stranger), "--http2");
    assert!(!ok, "{out}");
    assert_eq!(up.request_count(), 2);
    let ssl = wait_until(IO_TIMEOUT, || {
        let s = proxy.listener_stats("main")["ssl"].clone();
        (s["fail_verify_error"] == 1).then_some(s)
    })
    .unwrap_or_else(|| panic!("{}", proxy.listener_stats("main")));
    assert_eq!(ssl["handshake"], 2, "{ssl}");
    assert_eq!(ssl["fail_verify_no_cert"], 1, "{ssl}");

    // Without --tls-client-ca: server-only TLS, any client.
    let proxy = one_line(
        &up.addr.to_string(),
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    let (ok, out) = curl(&proxy, &ca_pem, None, "--http2");
    assert!(ok && out.ends_with("\n200 2"), "{out}");
    // Plaintext is not served on a TLS listener.
    assert!(http_request(proxy.listen, "GET", "/", IO_TIMEOUT).is_err());
}

#[test]
fn outbound_mutual_tls_from_flags_checks_the_ca_and_the_sni() {
    let dir = TempDir::new("tls-oneline");
    let ca = Ca::new("mesh CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let backend = ca.leaf(
        dir.path(),
        "backend",
        LeafSpec {
            dns: &["backend.local"],
            uris: &["spiffe://test.local/ns/default/sa/backend"],
            client: false,
            expired: false,
        },
    );
    let proxy_cert = ca.leaf(
        dir.path(),
        "proxy",
        pki::client("spiffe://test.local/ns/default/sa/proxy"),
    );
    let other_ca = Ca::new("other CA");
    let other_pem = other_ca.write(dir.path(), "other.pem");
    let (up, seen) = tls_upstream(&backend, &ca_pem);
    let up = up.to_string();
    let (cap, cert, key) = (path(&ca_pem), path(&proxy_cert.cert), path(&proxy_cert.key));
    let mtls = [
        "--upstream-tls-ca",
        cap.as_str(),
        "--upstream-tls-cert",
        cert.as_str(),
        "--upstream-tls-key",
        key.as_str(),
    ];

    let proxy = one_line(
        &up,
        &[&mtls[..], &["--upstream-sni", "backend.local"]].concat(),
    );
    for _ in 0..2 {
        let r = get(proxy.listen, "x", "/");
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert_eq!(
            r.body_str(),
            "sni=backend.local alpn= client=spiffe://test.local/ns/default/sa/proxy"
        );
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 2);

    // Without --upstream-sni: no SNI, the CA alone vouches for the server.
    let proxy = one_line(&up, &mtls);
    let r = get(proxy.listen, "x", "/");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(
        r.body_str(),
        "sni= alpn= client=spiffe://test.local/ns/default/sa/proxy"
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 3);

    // Refused, none reaching the upstream's HTTP: an SNI the server's certificate does
    // not name and a CA that did not sign it fail the proxy's handshake (a connect
    // failure); without a client certificate the upstream refuses it (in TLS 1.3 after
    // the proxy's side of the handshake is done, so the request is reset instead).
    let wrong_ca = path(&other_pem);
    for (flags, connect_fail) in [
        (
            [&mtls[..], &["--upstream-sni", "elsewhere.local"]].concat(),
            true,
        ),
        (
            [
                &["--upstream-tls-ca", wrong_ca.as_str()][..],
                &mtls[2..],
                &["--upstream-sni", "backend.local"],
            ]
            .concat(),
            true,
        ),
        (vec!["--upstream-tls-ca", cap.as_str()], false),
    ] {
        let proxy = one_line(&up, &flags);
        let r = get(proxy.listen, "x", "/");
        assert_eq!(r.status, 503, "{flags:?}: {}", r.body_str());
        let stats = proxy.cluster_stats("upstream");
        let counter = if connect_fail {
            "cx_connect_fail"
        } else {
            "rq_reset"
        };
        assert_eq!(stats[counter], 1, "{flags:?}: {stats}");
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 3);
}

#[test]
fn tls_flags_that_do_not_go_together_are_refused() {
    for (args, flag) in [
        (&["--tls-key", "k.pem"][..], "--tls-key needs --tls-cert"),
        (&["--tls-cert", "c.pem"][..], "--tls-cert needs --tls-key"),
        (
            &["--tls-client-ca", "ca.pem"][..],
            "--tls-client-ca needs --tls-cert",
        ),
        (
            &[
                "--upstream-tls-cert",
                "c.pem",
                "--upstream-tls-key",
                "k.pem",
            ][..],
            "--upstream-tls-cert needs --upstream-tls-ca",
        ),
        (
            &["--upstream-tls-ca", "ca.pem", "--upstream-tls-key", "k.pem"][..],
            "--upstream-tls-key needs --upstream-tls-cert",
        ),
        (
            &["--upstream-sni", "a.test"][..],
            "--upstream-sni needs --upstream-tls-ca",
        ),
        (&["--tls-cert"][..], "--tls-cert needs a value"),
        (
            &["--tls-cert", "a", "--tls-cert", "b"][..],
            "--tls-cert given twice",
        ),
    ] {
        let mut all = vec![
            "run",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "127.0.0.1:2",
        ];
        all.extend_from_slice(args);
        let o = run_cli(&all, IO_TIMEOUT);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
    // A file the flags name that cannot be read: the config's own error, with the path.
    let o = run_cli(
        &[
            "run",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "127.0.0.1:2",
            "--tls-cert",
            "/nonexistent/c.pem",
            "--tls-key",
            "/nonexistent/k.pem",
        ],
        IO_TIMEOUT,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot read `/nonexistent/c.pem`"), "{err}");
    // TLS flags with a config file: the file says it.
    let o = run_cli(
        &["run", "-c", "x.yaml", "--tls-cert", "c", "--tls-key", "k"],
        IO_TIMEOUT,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--tls-cert is a one-line flag"), "{err}");
    // The usage text lists the flags.
    let help = String::from_utf8_lossy(&run_cli(&["--help"], IO_TIMEOUT).stdout).into_owned();
    for f in [
        "--tls-cert",
        "--tls-key",
        "--tls-client-ca",
        "--upstream-tls-ca",
        "--upstream-tls-cert",
        "--upstream-tls-key",
        "--upstream-sni",
    ] {
        assert!(help.contains(f), "{f}: {help}");
    }
}
