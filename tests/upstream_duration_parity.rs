//! A cluster's `max_stream_duration` (Envoy's
//! `common_http_protocol_options.max_stream_duration` in the cluster's
//! `HttpProtocolOptions`) and a request's `x-envoy-upstream-stream-duration-ms`, against
//! Envoy 1.40. Each try is bounded from when it has its connection: before the response
//! head the try is ended (and retried as a local reset, if the route retries resets),
//! else the client gets `408`/`504` flag `UMSDR`; after the head the response is cut.
//! One bootstrap goes to Envoy and to Outrigger; each case is sent by curl over HTTP/1.1
//! and over HTTP/2 (h2c), to an HTTP/1.1 and an HTTP/2 upstream, and what must be equal
//! is: the client's status, body and `grpc-status`, whether the response was cut, how
//! many requests the upstream got, whether the header reached it, the access log's
//! status, flags and details, and `upstream_rq_max_duration_reached` per cluster.
//! The clients are internal (`internal_address_config`), as the header needs.

mod common;
mod h2client;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::envoy::{envoy_or_skip, hcm_head, Envoy, ROUTER_TYPE};
use common::*;

const FILE_LOG: &str = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
const HEADER: &str = "x-envoy-upstream-stream-duration-ms";

/// `.../sleep/N` answers `ok` after N ms; `.../stream` sends its head and 10 of 100
/// body bytes, then stalls for 3 s.
fn h1_upstream() -> Upstream {
    Upstream::start(Arc::new(|ctx, req, s| {
        let t = req.target.as_str();
        if t.ends_with("/stream") {
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")?;
            ctx.sleep(Duration::from_secs(3));
            return Ok(false);
        }
        ctx.sleep(Duration::from_millis(sleep_ms(t)));
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")?;
        Ok(true)
    }))
}

fn sleep_ms(path: &str) -> u64 {
    path.rsplit_once("/sleep/")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

/// The same paths on an h2c upstream, which counts the streams it got.
fn h2_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let addr = h2client::h2_serve(move |req, mut respond| {
        count.fetch_add(1, SeqCst);
        let path = req.uri().path().to_string();
        async move {
            let resp = || http::Response::builder().status(200).body(()).unwrap();
            if path.ends_with("/stream") {
                let resp = http::Response::builder()
                    .status(200)
                    .header("content-length", "100")
                    .body(())
                    .unwrap();
                if let Ok(mut send) = respond.send_response(resp, false) {
                    let _ = send.send_data(Bytes::from_static(b"0123456789"), false);
                    glommio::timer::sleep(Duration::from_secs(3)).await;
                }
                return;
            }
            glommio::timer::sleep(Duration::from_millis(sleep_ms(&path))).await;
            if let Ok(mut send) = respond.send_response(resp(), false) {
                let _ = send.send_data(Bytes::from_static(b"ok"), true);
            }
        }
    });
    (addr, seen)
}

fn cluster(name: &str, port: u16, options: &str) -> String {
    format!(
        r#"  - name: {name}
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
{options}    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#
    )
}

fn bootstrap(h1: SocketAddr, h2: SocketAddr) -> String {
    let head = hcm_head("", "main");
    let bounded = "        common_http_protocol_options: { max_stream_duration: 0.3s }\n";
    let http1 = "        explicit_http_config: { http_protocol_options: {} }\n";
    let http2 = "        explicit_http_config: { http2_protocol_options: {} }\n";
    let clusters = [
        cluster("h1", h1.port(), &format!("{bounded}{http1}")),
        cluster("plain", h1.port(), http1),
        cluster("h2", h2.port(), &format!("{bounded}{http2}")),
    ]
    .concat();
    format!(
        r#"{head}          upgrade_configs: [{{ upgrade_type: websocket }}]
          use_remote_address: true
          internal_address_config: {{ cidr_ranges: [{{ address_prefix: 127.0.0.0, prefix_len: 8 }}] }}
          access_log:
          - name: log
            typed_config:
              "@type": {FILE_LOG}
              path: "@DIR@/access.log"
              log_format:
                text_format_source:
                  inline_string: "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n"
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /r/ }}
                route:
                  cluster: h1
                  retry_policy: {{ retry_on: reset, num_retries: 1 }}
              - match: {{ prefix: /u/ }}
                route: {{ cluster: plain }}
              - match: {{ prefix: /h2/ }}
                route: {{ cluster: h2 }}
              - match: {{ prefix: /h2r/ }}
                route:
                  cluster: h2
                  retry_policy: {{ retry_on: reset, num_retries: 1 }}
              - match: {{ prefix: / }}
                route: {{ cluster: h1 }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": {ROUTER_TYPE}}}
  clusters:
{clusters}"#
    )
}

/// (path, gRPC, the request's `x-envoy-upstream-stream-duration-ms`).
type Case = (&'static str, bool, Option<&'static str>);

const CASES: &[Case] = &[
    // The cluster's 0.3 s ends the try before the head: 504 UMSDR.
    ("/a/sleep/1000", false, None),
    ("/a/sleep/50", false, None),
    // After the head: the response is cut.
    ("/a/stream", false, None),
    // Retried as a local reset: the upstream gets two requests.
    ("/r/sleep/1000", false, None),
    // The header (from an internal client, as here: Envoy 1.40 drops it from others)
    // bounds a cluster without a bound, replaces a cluster's, turns it off with 0, and
    // leaves the cluster's when it is no number; it never goes upstream.
    ("/u/sleep/600", false, Some("200")),
    ("/u/sleep/50", false, Some("200")),
    ("/a/sleep/600", false, Some("0")),
    ("/a/sleep/600", false, Some("junk")),
    // The largest value: a bound that never comes, and no harm (Instant arithmetic).
    ("/a/sleep/50", false, Some("18446744073709551615")),
    // gRPC's form of the reply.
    ("/a/sleep/1000", true, None),
    // An HTTP/2 upstream.
    ("/h2/sleep/1000", false, None),
    ("/h2/sleep/50", false, None),
    ("/h2/stream", false, None),
    ("/h2r/sleep/1000", false, None),
];

#[derive(Debug, PartialEq)]
struct Seen {
    status: String,
    /// The body, for a response that was not cut.
    body: Option<String>,
    grpc_status: Option<String>,
    cut: bool,
    /// Requests (HTTP/1.1) or streams (HTTP/2) the upstream got for the case.
    upstream_requests: usize,
    /// The HTTP/1.1 upstream saw the header.
    header_upstream: bool,
}

struct Upstreams {
    h1: Upstream,
    h2: Arc<AtomicUsize>,
}

impl Upstreams {
    fn count(&self) -> usize {
        self.h1.requests().len() + self.h2.load(SeqCst)
    }
}

fn send(listen: SocketAddr, h2: bool, case: &Case, up: &Upstreams) -> Seen {
    let (path, grpc, header) = *case;
    let before = up.count();
    let before_h1 = up.h1.requests().len();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "5", "-D", "-"]);
    cmd.arg(if h2 {
        "--http2-prior-knowledge"
    } else {
        "--http1.1"
    });
    if grpc {
        cmd.args(["-X", "POST", "--data-binary", "", "-H"]);
        cmd.arg("content-type: application/grpc");
    }
    if let Some(v) = header {
        cmd.args(["-H", &format!("{HEADER}: {v}")]);
    }
    let out = cmd
        .arg(format!("http://{listen}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let field = |name: &str| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let cut = !out.status.success();
    // The upstream's count settles once the try that was cut or retried is in.
    std::thread::sleep(Duration::from_millis(100));
    let header_upstream = up
        .h1
        .requests()
        .iter()
        .skip(before_h1)
        .any(|r| r.header(HEADER).is_some());
    Seen {
        status: head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("none")
            .to_string(),
        body: (!cut).then(|| body.to_string()),
        grpc_status: field("grpc-status"),
        cut,
        upstream_requests: up.count() - before,
        header_upstream,
    }
}

/// Every case over HTTP/1.1 then HTTP/2, the access log's lines, and the two bounded
/// clusters' `upstream_rq_max_duration_reached`.
fn exercise(
    listen: SocketAddr,
    log: &Path,
    up: &Upstreams,
    stat: &dyn Fn(&str) -> u64,
) -> (Vec<Seen>, Vec<String>, [u64; 2]) {
    let mut seen = Vec::new();
    for h2 in [false, true] {
        for c in CASES {
            seen.push(send(listen, h2, c, up));
        }
    }
    let n = CASES.len() * 2;
    let lines = wait_until(Duration::from_secs(10), || {
        let text = read_lossy(log);
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.sort();
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| panic!("fewer than {n} log lines:\n{}", read_lossy(log)));
    (seen, lines, [stat("h1"), stat("h2")])
}

#[test]
fn envoy_and_outrigger_bound_each_try_alike() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_bound_each_try_alike") else {
        return;
    };
    let (h2, h2_count) = h2_upstream();
    let up = Upstreams {
        h1: h1_upstream(),
        h2: h2_count,
    };
    let text = bootstrap(up.h1.addr, h2);
    let envoy = Envoy::start(&bin, &text);
    let admin = envoy.admin;
    let envoy_stat = |cluster: &str| {
        let name = format!("cluster.{cluster}.upstream_rq_max_duration_reached");
        common::envoy::stat(admin, &name).unwrap_or(0)
    };
    let (from_envoy, envoy_log, envoy_stats) = exercise(
        envoy.listen,
        &envoy.dir.join("access.log"),
        &up,
        &envoy_stat,
    );
    drop(envoy);
    let proxy = Proxy::start_with(&text, 1);
    let our_stat = |cluster: &str| {
        proxy.cluster_stats(cluster)["rq_max_duration_reached"]
            .as_u64()
            .unwrap_or(0)
    };
    let (from_outrigger, our_log, our_stats) =
        exercise(proxy.listen, &proxy.dir.join("access.log"), &up, &our_stat);
    let mut diffs = common::envoy::client_diffs(CASES, &from_envoy, &from_outrigger);
    diffs.extend(common::envoy::log_diff(&envoy_log, &our_log));
    if envoy_stats != our_stats {
        diffs.push(format!(
            "upstream_rq_max_duration_reached (h1, h2): Envoy {envoy_stats:?}, Outrigger {our_stats:?}"
        ));
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // The cases do what they are meant to (not only alike).
    assert_eq!(from_outrigger[0].status, "504");
    assert_eq!(
        from_outrigger[0].body.as_deref(),
        Some("upstream max stream duration reached")
    );
    assert!(from_outrigger[2].cut);
    assert_eq!(from_outrigger[3].upstream_requests, 2);
    assert_eq!(from_outrigger[6].status, "200");
    assert_eq!(from_outrigger[8].status, "200");
    assert_eq!(from_outrigger[13].upstream_requests, 2);
    // The retries ran out: both flags, in Envoy's order.
    assert!(
        our_log
            .iter()
            .any(|l| l == "/r/sleep/1000 504 URX,UMSDR upstream_max_stream_duration_reached"),
        "{our_log:?}"
    );
}

/// A request still arriving when its try's bound runs out gets `408` (HTTP/2 client,
/// a POST that never ends its stream), as in Envoy.
#[test]
fn a_request_still_arriving_gets_408() {
    let Some(bin) = envoy_or_skip("a_request_still_arriving_gets_408") else {
        return;
    };
    let (h2, _) = h2_upstream();
    let h1 = h1_upstream();
    let text = bootstrap(h1.addr, h2);
    let envoy = Envoy::start(&bin, &text);
    let from_envoy = h2client::post_unfinished(envoy.listen, "/h2/sleep/5000", 10);
    drop(envoy);
    let proxy = Proxy::start_with(&text, 1);
    let from_outrigger = h2client::post_unfinished(proxy.listen, "/h2/sleep/5000", 10);
    assert_eq!(
        (from_envoy.status, from_envoy.body_str()),
        (from_outrigger.status, from_outrigger.body_str()),
        "Envoy, then Outrigger"
    );
    assert_eq!(from_outrigger.status, 408);
}

/// A WebSocket is bounded too, as Envoy's router bounds its upstream request: after a
/// message each way the tunnel closes at the cluster's 0.3 s. What must be equal: that
/// the client saw the end before its own 5 s timeout, the access log's line and the stat.
#[test]
fn a_websocket_ends_at_the_clusters_bound() {
    let Some(bin) = envoy_or_skip("a_websocket_ends_at_the_clusters_bound") else {
        return;
    };
    let (h2, _) = h2_upstream();
    let ws = common::ws::ws_echo_server(2);
    let text = bootstrap(ws, h2);
    let run = |listen: SocketAddr, log: &Path, stat: &dyn Fn() -> u64| {
        let s = std::net::TcpStream::connect(listen).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (mut c, _) = tungstenite::client("ws://chat.example/ws/x", s).expect("handshake");
        c.send(tungstenite::Message::text("hi")).unwrap();
        let echoed = c.read().map(|m| m.to_string()).unwrap_or_default();
        let started = std::time::Instant::now();
        // The next read ends with the tunnel (or the client's own 5 s timeout).
        let _ = c.read();
        let ended_by_proxy = started.elapsed() < Duration::from_secs(4);
        drop(c);
        let line = wait_until(Duration::from_secs(5), || {
            read_lossy(log).lines().next().map(str::to_string)
        })
        .unwrap_or_default();
        (echoed, ended_by_proxy, line, stat())
    };
    let envoy = Envoy::start(&bin, &text);
    let admin = envoy.admin;
    let envoy_stat =
        || common::envoy::stat(admin, "cluster.h1.upstream_rq_max_duration_reached").unwrap_or(0);
    let from_envoy = run(envoy.listen, &envoy.dir.join("access.log"), &envoy_stat);
    drop(envoy);
    let proxy = Proxy::start_with(&text, 1);
    let our_stat = || {
        proxy.cluster_stats("h1")["rq_max_duration_reached"]
            .as_u64()
            .unwrap_or(0)
    };
    let from_outrigger = run(proxy.listen, &proxy.dir.join("access.log"), &our_stat);
    assert_eq!(from_envoy, from_outrigger, "Envoy, then Outrigger");
    assert_eq!(
        from_outrigger,
        (
            "echo:hi".to_string(),
            true,
            "/ws/x 101 UMSDR upstream_max_stream_duration_reached".to_string(),
            1
        )
    );
}
