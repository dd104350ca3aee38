//! Interop with OpenSSL's own client and a TLS scanner, against TLS listeners made by
//! the one-line flags: `openssl s_client` handshakes with TLS 1.3 and 1.2 (1.1 is
//! refused), gets the ALPN protocol it offered, is accepted with a client certificate
//! and refused without one on a mutual-TLS listener, and resumes its session (TLS 1.3
//! ticket and TLS 1.2 session) from `-sess_out`/`-sess_in`. sslyze (PyPI) then scans a
//! listener: no protocol below TLS 1.2, every accepted suite forward-secret, session
//! resumption supported, no client-initiated renegotiation.
//!
//! `tests/run` installs both (openssl with apt-get, sslyze into `loadtest/.venv`); a
//! test whose tool is missing says so and skips.

mod common;
mod pki;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use pki::{path, Ca, Leaf};

/// A server-only and a mutual-TLS one-line listener in front of an echo upstream.
struct Setup {
    dir: TempDir,
    ca: PathBuf,
    client: Leaf,
    /// `--tls-cert/--tls-key`.
    tls: Proxy,
    /// `--tls-cert/--tls-key --tls-client-ca`.
    mtls: Proxy,
    _up: Upstream,
}

fn setup() -> Setup {
    let dir = TempDir::new("tls-interop");
    let ca = Ca::new("interop CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(dir.path(), "server", pki::server(&["proxy.test"]));
    let client = ca.leaf(
        dir.path(),
        "client",
        pki::client("spiffe://test.local/ns/default/sa/client"),
    );
    let up = Upstream::echo();
    let upstream = up.addr.to_string();
    let (cert, key, cap) = (path(&server.cert), path(&server.key), path(&ca_pem));
    let base = [
        "run",
        "--listen",
        "127.0.0.1:@PORT@",
        "--upstream",
        &upstream,
        "--admin",
        "127.0.0.1:@ADMIN_PORT@",
        "--concurrency",
        "1",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    let tls = Proxy::start_args(&base);
    let mtls = Proxy::start_args(&[&base[..], &["--tls-client-ca", &cap]].concat());
    Setup {
        dir,
        ca: ca_pem,
        client,
        tls,
        mtls,
        _up: up,
    }
}

fn have_openssl(test: &str) -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED {test}: no `openssl` command (tests/run installs it with apt-get)");
    }
    ok
}

/// `openssl s_client` to `proxy` with `args`, sending one HTTP/1.1 request that closes
/// the connection (`-ign_eof` keeps the client reading until the proxy closes, so a TLS
/// 1.3 session ticket sent after the handshake is read too). stdout and stderr joined.
fn s_client(s: &Setup, proxy: &Proxy, args: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &proxy.listen.to_string()])
        .args(["-servername", "proxy.test", "-CAfile", &path(&s.ca)])
        .args(["-verify_return_error", "-ign_eof"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /interop HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n");
    // Bounded: the proxy closes after its response; a stuck client is killed.
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let out = wait_until(IO_TIMEOUT * 2, || waiter.is_finished().then_some(()));
    if out.is_none() {
        send_signal(pid, libc::SIGKILL);
    }
    let out = waiter.join().unwrap().expect("openssl s_client output");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The `ssl` counters of the one-line listener.
fn ssl(proxy: &Proxy) -> serde_json::Value {
    proxy.listener_stats("main")["ssl"].clone()
}

fn wait_ssl(proxy: &Proxy, name: &str, n: u64) -> serde_json::Value {
    wait_until(IO_TIMEOUT, || {
        let s = ssl(proxy);
        (s[name].as_u64() == Some(n)).then_some(s)
    })
    .unwrap_or_else(|| panic!("ssl.{name} never reached {n}: {}", ssl(proxy)))
}

#[test]
fn openssl_s_client_versions_alpn_client_certificates_and_resumption() {
    if !have_openssl("openssl s_client interop") {
        return;
    }
    let s = setup();
    let served = |out: &str| out.contains("HTTP/1.1 200 OK") && out.contains("target: /interop");

    // TLS 1.3 and 1.2 handshakes, verified against the CA, with a request served.
    let out = s_client(&s, &s.tls, &["-tls1_3"]);
    assert!(out.contains("New, TLSv1.3, Cipher is TLS_"), "{out}");
    assert!(
        out.contains("Verify return code: 0 (ok)") && served(&out),
        "{out}"
    );
    let out = s_client(&s, &s.tls, &["-tls1_2"]);
    assert!(out.contains("New, TLSv1.2, Cipher is ECDHE-"), "{out}");
    assert!(served(&out), "{out}");
    wait_ssl(&s.tls, "handshake", 2);
    // TLS 1.1 is refused by the proxy (the client's own floor lowered, so the hello is
    // really sent and the refusal is the server's: a connection error is counted).
    let out = s_client(&s, &s.tls, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]);
    assert!(!served(&out) && !out.contains("New, TLSv1.1"), "{out}");
    wait_ssl(&s.tls, "connection_error", 1);

    // ALPN: the protocol offered is the one negotiated.
    let out = s_client(&s, &s.tls, &["-alpn", "h2"]);
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    let out = s_client(&s, &s.tls, &["-alpn", "http/1.1"]);
    assert!(
        out.contains("ALPN protocol: http/1.1") && served(&out),
        "{out}"
    );
    let out = s_client(&s, &s.tls, &[]);
    assert!(out.contains("No ALPN negotiated") && served(&out), "{out}");

    // Mutual TLS: accepted with -cert/-key, refused without.
    let (cert, key) = (path(&s.client.cert), path(&s.client.key));
    let out = s_client(&s, &s.mtls, &["-cert", &cert, "-key", &key]);
    assert!(served(&out), "{out}");
    let out = s_client(&s, &s.mtls, &[]);
    assert!(!served(&out), "{out}");
    let m = wait_ssl(&s.mtls, "fail_verify_no_cert", 1);
    assert_eq!(m["handshake"], 1, "{m}");

    // Session resumption: the session saved by one connection is reused by the next.
    for version in ["-tls1_3", "-tls1_2"] {
        let sess = path(&s.dir.join(&format!("session{version}.pem")));
        let out = s_client(&s, &s.tls, &[version, "-sess_out", &sess]);
        assert!(out.contains("New, TLSv1.") && served(&out), "{out}");
        let out = s_client(&s, &s.tls, &[version, "-sess_in", &sess]);
        assert!(out.contains("Reused, TLSv1."), "{version}: {out}");
        assert!(served(&out), "{out}");
    }
    let t = ssl(&s.tls);
    assert_eq!(t["session_reused"], 2, "{t}");
}

/// The sslyze command: `OUTRIGGER_TEST_SSLYZE`, or the one `tests/run` installs into
/// `loadtest/.venv`.
fn sslyze_or_skip(test: &str) -> Option<PathBuf> {
    let p = std::env::var_os("OUTRIGGER_TEST_SSLYZE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/.venv/bin/sslyze"));
    if p.exists() {
        return Some(p);
    }
    eprintln!(
        "SKIPPED {test}: no sslyze at {} (tests/run installs it into loadtest/.venv, or set \
         OUTRIGGER_TEST_SSLYZE)",
        p.display()
    );
    None
}

#[test]
fn sslyze_finds_only_tls12_and_tls13_with_forward_secret_suites() {
    let Some(sslyze) = sslyze_or_skip("sslyze scan") else {
        return;
    };
    let s = setup();
    let json = s.dir.join("sslyze.json");
    let out = Command::new(&sslyze)
        .args([
            "--sslv2",
            "--sslv3",
            "--tlsv1",
            "--tlsv1_1",
            "--tlsv1_2",
            "--tlsv1_3",
        ])
        .args(["--resum", "--reneg", "--fallback", "--compression"])
        .args(["--quiet", "--json_out", &path(&json)])
        .arg(format!("proxy.test:{}{{127.0.0.1}}", s.tls.listen.port()))
        .stdin(Stdio::null())
        .output()
        .expect("run sslyze");
    assert!(
        out.status.success(),
        "sslyze: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let server = &report["server_scan_results"][0];
    assert_eq!(server["scan_status"], "COMPLETED", "{server:#}");
    let r = &server["scan_result"];
    let accepted = |key: &str| -> Vec<serde_json::Value> {
        assert_eq!(r[key]["status"], "COMPLETED", "{key}: {:#}", r[key]);
        r[key]["result"]["accepted_cipher_suites"]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: {:#}", r[key]))
            .clone()
    };
    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        assert!(accepted(old).is_empty(), "{old} accepted: {:#}", r[old]);
    }
    let tls12 = accepted("tls_1_2_cipher_suites");
    let tls13 = accepted("tls_1_3_cipher_suites");
    assert!(!tls12.is_empty() && !tls13.is_empty(), "{r:#}");
    for suite in &tls12 {
        let name = suite["cipher_suite"]["name"].as_str().unwrap_or_default();
        // Forward secrecy: an ephemeral (EC)DH key exchange, which sslyze saw.
        assert!(
            name.starts_with("TLS_ECDHE_") || name.starts_with("TLS_DHE_"),
            "TLS 1.2 suite without forward secrecy: {suite:#}"
        );
        assert!(!suite["ephemeral_key"].is_null(), "{suite:#}");
    }
    // TLS 1.3 suites are all forward-secret by design (the key exchange is not part of
    // the suite); sslyze still reports the ephemeral key.
    for suite in &tls13 {
        assert!(!suite["ephemeral_key"].is_null(), "{suite:#}");
    }
    // Resumption: TLS 1.2 session IDs (rustls issues TLS 1.2 tickets only with a
    // ticketer, which the proxy does not configure; TLS 1.3 tickets are checked with
    // s_client above).
    let resum = &r["session_resumption"]["result"];
    assert_eq!(
        resum["session_id_resumption_result"], "FULLY_SUPPORTED",
        "{resum:#}"
    );
    // Renegotiation: rustls never renegotiates, so a client cannot make the server
    // redo handshakes (the DoS sslyze looks for); it still sends the RFC 5746
    // extension, which sslyze reports as secure renegotiation support.
    let reneg = &r["session_renegotiation"]["result"];
    assert_eq!(
        reneg["is_vulnerable_to_client_renegotiation_dos"], false,
        "{reneg:#}"
    );
    assert_eq!(reneg["client_renegotiations_success_count"], 0, "{reneg:#}");
    assert_eq!(reneg["supports_secure_renegotiation"], true, "{reneg:#}");
    // A downgraded retry is refused (TLS_FALLBACK_SCSV), no TLS compression.
    assert_eq!(
        r["tls_fallback_scsv"]["result"]["supports_fallback_scsv"], true,
        "{:#}",
        r["tls_fallback_scsv"]
    );
    assert_eq!(
        r["tls_compression"]["result"]["supports_compression"], false,
        "{:#}",
        r["tls_compression"]
    );
    eprintln!(
        "sslyze: TLS 1.2 suites {:?}; TLS 1.3 suites {:?}; resumption {}; renegotiation {}",
        tls12
            .iter()
            .map(|s| s["cipher_suite"]["name"].clone())
            .collect::<Vec<_>>(),
        tls13
            .iter()
            .map(|s| s["cipher_suite"]["name"].clone())
            .collect::<Vec<_>>(),
        resum,
        reneg
    );
}
