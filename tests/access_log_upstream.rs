//! The access log's upstream and route operators through the real binary, on one Envoy
//! v3 bootstrap: `%ROUTE_NAME%` (a named route, an unnamed one, a direct response, no
//! route), `%UPSTREAM_LOCAL_ADDRESS%` (the address the upstream saw the proxy connect
//! from), `%UPSTREAM_TRANSPORT_FAILURE_REASON%` (a refused connect, a TLS cluster whose
//! server does not verify, a TLS cluster whose endpoint speaks plain HTTP) and
//! `%TRACE_ID%` (a sampled request's trace id), and the upstream TLS operators
//! (`%UPSTREAM_PEER_URI_SAN%`, `%UPSTREAM_PEER_DNS_SAN%`, `%UPSTREAM_LOCAL_URI_SAN%`,
//! `%UPSTREAM_TLS_VERSION%`, `%UPSTREAM_TLS_CIPHER%`: a mutual-TLS cluster with
//! Envoy's client defaults (TLS 1.2 at most, its suite order), one allowed TLS 1.3 by
//! `tls_params`, and `-` elsewhere). HTTP/1 and HTTP/2 clients alike. When
//! Envoy 1.40 is installed the same bootstrap runs under it and the lines are compared
//! (Envoy's detail after a BoringSSL reason, which Outrigger does not imitate, is cut).

mod common;
mod pki;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::envoy::*;
use common::*;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const FILE_LOG: &str = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
const OTEL: &str = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig";
const TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const FORMAT: &str = "%REQ(:PATH)% route=%ROUTE_NAME% local=%UPSTREAM_LOCAL_ADDRESS% peer=%RESP(X-PEER)% reason=%UPSTREAM_TRANSPORT_FAILURE_REASON% trace=%TRACE_ID% flags=%RESPONSE_FLAGS% upeer=%UPSTREAM_PEER_URI_SAN% udns=%UPSTREAM_PEER_DNS_SAN% ulocal=%UPSTREAM_LOCAL_URI_SAN% uver=%UPSTREAM_TLS_VERSION% ucipher=%UPSTREAM_TLS_CIPHER%";
const BACKEND_ID: &str = "spiffe://mesh.test/ns/backend/sa/api";
const CLIENT_ID: &str = "spiffe://mesh.test/ns/web/sa/frontend";

/// The backends: a plain HTTP/1 upstream that answers with the address it saw the
/// request come from (`x-peer`), and a TLS one whose certificate no cluster trusts.
struct Backends {
    plain: Upstream,
    /// The addresses `plain` saw requests come from.
    peers: Arc<Mutex<Vec<String>>>,
    /// Answers anything with a plain HTTP/1.1 400, as an HTTP server answers a
    /// ClientHello.
    plain_bytes: SocketAddr,
    tls: SocketAddr,
    other_ca: String,
    /// The TLS backend's CA, and the client certificate the mutual-TLS cluster presents.
    ca: String,
    client: pki::Leaf,
    _dir: TempDir,
}

fn backends() -> Backends {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let seen = peers.clone();
    let plain = Upstream::start(Arc::new(move |_, _, s| {
        let peer = s.peer_addr()?;
        seen.lock().unwrap().push(peer.to_string());
        write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-peer: {peer}\r\n\r\nok"
        )?;
        Ok(true)
    }));
    let dir = TempDir::new("obs-pki");
    let ca = pki::Ca::new("server CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let leaf = ca.leaf(
        dir.path(),
        "backend",
        pki::LeafSpec {
            uris: &[BACKEND_ID],
            ..pki::server(&["backend.local"])
        },
    );
    let client = ca.leaf(dir.path(), "client", pki::client(CLIENT_ID));
    let (tls, _) = pki::upstream::tls_upstream(&leaf, &ca_pem);
    let other = pki::Ca::new("another CA");
    let other_ca = pki::path(&other.write(dir.path(), "other.pem"));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_bytes = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().take(16).flatten() {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    Backends {
        plain,
        peers,
        plain_bytes,
        tls,
        other_ca,
        ca: pki::path(&ca_pem),
        client,
        _dir: dir,
    }
}

fn endpoint(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"
    )
}

fn tls_socket(ca: &str) -> String {
    format!(
        "    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        \"@type\": {TLS}
        sni: backend.local
        common_tls_context:
          validation_context: {{ trusted_ca: {{ filename: \"{ca}\" }} }}
"
    )
}

/// The mutual-TLS cluster's socket: the backend's CA, the client certificate, and
/// `params` (lines under `common_tls_context`).
fn mtls_socket(b: &Backends, params: &str) -> String {
    tls_socket(&b.ca).replace(
        "          validation_context:",
        &format!(
            "{params}          tls_certificates: [{{ certificate_chain: {{ filename: \"{}\" }}, private_key: {{ filename: \"{}\" }} }}]\n          validation_context:",
            pki::path(&b.client.cert),
            pki::path(&b.client.key)
        ),
    )
}

fn bootstrap(b: &Backends, otel_port: u16) -> String {
    let clusters = [
        endpoint("plain", b.plain.addr.port()),
        endpoint("refused", refused_addr().port()),
        endpoint("badca", b.tls.port()) + &tls_socket(&b.other_ca),
        endpoint("tls_to_plain", b.plain_bytes.port()) + &tls_socket(&b.other_ca),
        endpoint("mtls", b.tls.port()) + &mtls_socket(b, ""),
        endpoint("mtls13", b.tls.port())
            + &mtls_socket(
                b,
                "          tls_params: { tls_maximum_protocol_version: TLSv1_3 }\n",
            ),
        endpoint("otel", otel_port),
    ]
    .concat();
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: web
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: web
          codec_type: AUTO
          access_log:
          - name: log
            typed_config:
              "@type": {FILE_LOG}
              path: "@DIR@/access.log"
              log_format: {{ text_format_source: {{ inline_string: "{FORMAT}\n" }} }}
          tracing:
            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": {OTEL}
                service_name: web
                http_service:
                  http_uri: {{ uri: "http://127.0.0.1:{otel_port}/v1/traces", cluster: otel, timeout: 1s }}
          route_config:
            name: main
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - name: ok-route
                match: {{ prefix: /ok }}
                route: {{ cluster: plain }}
              - match: {{ prefix: /unnamed }}
                route: {{ cluster: plain }}
              - match: {{ prefix: /refused }}
                route: {{ cluster: refused }}
              - name: verify
                match: {{ prefix: /verify }}
                route: {{ cluster: badca }}
              - match: {{ prefix: /wrongproto }}
                route: {{ cluster: tls_to_plain }}
              - match: {{ prefix: /mtls13 }}
                route: {{ cluster: mtls13 }}
              - match: {{ prefix: /mtls }}
                route: {{ cluster: mtls }}
              - name: direct
                match: {{ prefix: /d }}
                direct_response: {{ status: 200 }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}"#
    )
}

/// (path, extra header lines)
const CASES: &[(&str, &str)] = &[
    ("/ok", ""),
    ("/unnamed", ""),
    ("/refused", ""),
    ("/verify", ""),
    ("/wrongproto", ""),
    ("/mtls", ""),
    ("/mtls13", ""),
    ("/d", ""),
    ("/nope", ""),
    (
        "/ok/traced",
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
    ),
];

/// Sends every case on its own HTTP/1.1 connection; the log's lines, one per case.
fn run(listen: SocketAddr, log: &Path) -> Vec<String> {
    for (path, extra) in CASES {
        let mut c = Conn::connect(listen);
        c.send(format!(
            "GET {path} HTTP/1.1\r\nhost: svc\r\n{extra}connection: close\r\n\r\n"
        ));
        c.read_response().unwrap();
    }
    lines(log, CASES.len())
}

fn lines(log: &Path, n: usize) -> Vec<String> {
    let mut lines = wait_until(Duration::from_secs(10), || {
        let text = read_lossy(log);
        let lines: Vec<String> = text.lines().map(String::from).collect();
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| panic!("fewer than {n} log lines:\n{}", read_lossy(log)));
    lines.sort();
    lines
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|f| f.strip_prefix(key).and_then(|f| f.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

fn line_for<'a>(lines: &'a [String], path: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.split(' ').next() == Some(path))
        .unwrap_or_else(|| panic!("no line for {path}: {lines:#?}"))
}

/// What the two proxies may differ in by nature: the upstream-side port, and Envoy's
/// OpenSSL detail after a BoringSSL reason.
fn normalise(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            l.split(' ')
                .map(|f| {
                    if let Some(a) = f.strip_prefix("local=127.0.0.1:") {
                        assert!(a.parse::<u16>().is_ok(), "{l}");
                        return "local=127.0.0.1:<port>".to_string();
                    }
                    if f.starts_with("peer=127.0.0.1:") {
                        return "peer=127.0.0.1:<port>".to_string();
                    }
                    if f.starts_with("trace=") && f != format!("trace={TRACE}") {
                        return "trace=<generated>".to_string();
                    }
                    // The server picks among the suites the client offers first: BoringSSL
                    // and rustls order TLS 1.3's suites differently.
                    if f.starts_with("ucipher=TLS_") {
                        return "ucipher=<TLS 1.3 suite>".to_string();
                    }
                    if let Some(r) = f.strip_prefix("reason=TLS_error:|") {
                        let reason: Vec<&str> = r.split(':').take(4).collect();
                        return format!("reason=TLS_error:|{}:...", reason.join(":"));
                    }
                    f.to_string()
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn check_ours(lines: &[String]) {
    let ok = line_for(lines, "/ok");
    assert_eq!(field(ok, "route"), "ok-route");
    // The address the upstream saw is the one the proxy logs.
    assert_eq!(field(ok, "local"), field(ok, "peer"), "{ok}");
    assert_eq!(field(ok, "reason"), "-");
    // Every request is sampled (Envoy's default 100%): a trace id of its own.
    let generated = field(ok, "trace");
    assert!(generated.len() == 32 && generated != TRACE, "{ok}");
    assert!(u128::from_str_radix(generated, 16).is_ok(), "{ok}");
    assert_eq!(field(line_for(lines, "/unnamed"), "route"), "-");
    let refused = line_for(lines, "/refused");
    assert_eq!(
        field(refused, "reason"),
        "delayed_connect_error:_Connection_refused"
    );
    assert_eq!(field(refused, "local"), "-");
    assert_eq!(field(refused, "flags"), "UF");
    let verify = line_for(lines, "/verify");
    assert_eq!(field(verify, "route"), "verify");
    assert!(
        field(verify, "reason").starts_with(
            "TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED:"
        ),
        "{verify}"
    );
    assert!(field(verify, "reason").ends_with(":TLS_error_end"));
    assert_eq!(
        field(line_for(lines, "/wrongproto"), "reason"),
        "TLS_error:|268435703:SSL_routines:OPENSSL_internal:WRONG_VERSION_NUMBER:TLS_error_end"
    );
    // A plain cluster's request has no upstream TLS facts; a failed handshake neither.
    for path in ["/ok", "/verify"] {
        let l = line_for(lines, path);
        for key in ["upeer", "udns", "ulocal", "uver", "ucipher"] {
            assert_eq!(field(l, key), "-", "{l}");
        }
    }
    check_mtls(line_for(lines, "/mtls"), "TLSv1.2");
    check_mtls(line_for(lines, "/mtls13"), "TLSv1.3");
    let direct = line_for(lines, "/d");
    assert_eq!(field(direct, "route"), "direct");
    assert_eq!(field(direct, "local"), "-");
    assert_eq!(field(line_for(lines, "/nope"), "route"), "-");
    let traced = line_for(lines, "/ok/traced");
    assert_eq!(field(traced, "trace"), TRACE);
    assert_eq!(field(traced, "route"), "ok-route");
}

/// A mutual-TLS cluster's line: the backend's SANs, the client certificate's, and the
/// version. Under Envoy's defaults a client stops at TLS 1.2 and offers
/// ECDHE-ECDSA-AES128-GCM-SHA256 first, which the backend (an ECDSA key) takes.
fn check_mtls(l: &str, version: &str) {
    assert_eq!(field(l, "upeer"), BACKEND_ID, "{l}");
    assert_eq!(field(l, "udns"), "backend.local", "{l}");
    assert_eq!(field(l, "ulocal"), CLIENT_ID, "{l}");
    assert_eq!(field(l, "uver"), version, "{l}");
    if version == "TLSv1.2" {
        assert_eq!(field(l, "ucipher"), "ECDHE-ECDSA-AES128-GCM-SHA256", "{l}");
    } else {
        assert!(field(l, "ucipher").starts_with("TLS_"), "{l}");
    }
    assert_eq!(field(l, "flags"), "-", "{l}");
}

#[test]
fn route_upstream_address_failure_reason_and_trace_id_are_logged() {
    let b = backends();
    let proxy = Proxy::start(&bootstrap(&b, refused_addr().port()));
    let ours = run(proxy.listen, &proxy.dir.join("access.log"));
    check_ours(&ours);
}

#[test]
fn http2_clients_get_the_same_fields() {
    let b = backends();
    let proxy = Proxy::start(&bootstrap(&b, refused_addr().port()));
    let cases = ["/ok/h2", "/refused/h2", "/verify/h2", "/d/h2", "/mtls/h2"];
    for path in cases {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--http2-prior-knowledge"])
            .arg(proxy.url(path))
            .output()
            .expect("curl");
        assert!(out.status.success(), "{path}: {out:?}");
    }
    let lines = lines(&proxy.dir.join("access.log"), cases.len());
    let ok = line_for(&lines, "/ok/h2");
    assert_eq!(field(ok, "route"), "ok-route");
    let peers = b.peers.lock().unwrap().clone();
    assert_eq!(peers, vec![field(ok, "local").to_string()], "{ok}");
    // `%RESP(X-PEER)%`: the response head an HTTP/2 client got.
    assert_eq!(field(ok, "local"), field(ok, "peer"), "{ok}");
    assert_eq!(
        field(line_for(&lines, "/refused/h2"), "reason"),
        "delayed_connect_error:_Connection_refused"
    );
    assert!(field(line_for(&lines, "/verify/h2"), "reason").contains("CERTIFICATE_VERIFY_FAILED"));
    assert_eq!(field(line_for(&lines, "/d/h2"), "route"), "direct");
    check_mtls(line_for(&lines, "/mtls/h2"), "TLSv1.2");
}

#[test]
fn the_fields_match_envoy() {
    let Some(bin) = envoy_or_skip("the_fields_match_envoy") else {
        return;
    };
    let b = backends();
    let text = bootstrap(&b, refused_addr().port());
    let envoy = Envoy::start(&bin, &text);
    let theirs = run(envoy.listen, &envoy.dir.join("access.log"));
    drop(envoy);
    let proxy = Proxy::start(&text);
    let ours = run(proxy.listen, &proxy.dir.join("access.log"));
    assert_eq!(normalise(&ours), normalise(&theirs));
}
