//! Request trailers of a body the filter chain holds (the buffer filter), on one Envoy
//! v3 bootstrap run by Envoy 1.40 and by Outrigger: an HTTP/2 client's trailers reach
//! an HTTP/2 upstream as trailing HEADERS after the held body; an HTTP/1 upstream gets
//! the held body with a Content-Length and no trailers (HTTP/1 carries trailers only
//! after a chunked body; Envoy's encoder drops them); an HTTP/1 client's chunked
//! trailers are ignored (Envoy's HTTP/1 codec by default). Response trailers still come
//! back. The Outrigger half runs without Envoy too; the comparison needs Envoy
//! (`OUTRIGGER_TEST_ENVOY`, or `loadtest/.venv`), and skips, saying why, without it.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::envoy::{envoy_or_skip, fact_diffs, Envoy};
use common::*;
use h2client::{connect, read_reply, request, within, STEP};
use tokio_util::compat::FuturesAsyncReadCompatExt;

/// What the HTTP/2 upstream got on one stream.
#[derive(Debug, Clone, Default)]
struct Seen {
    path: String,
    content_length: Option<String>,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
}

/// An HTTP/2 (h2c) upstream that records each request (body and trailers read whole)
/// and answers `200` with a body and a response trailer `x-resp-trailer: yes`. On its
/// own thread; it stops by itself after two minutes.
fn recording_h2_upstream() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 * 1024)
            .make()
            .expect("a glommio executor for the test upstream")
            .run(async move {
                let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let _ = tx.send(l.local_addr().expect("local addr"));
                let serve = async {
                    while let Ok(s) = l.accept().await {
                        let log = log.clone();
                        glommio::spawn_local(async move {
                            let Ok(mut conn) = h2::server::handshake(s.compat()).await else {
                                return;
                            };
                            while let Some(Ok((req, mut respond))) = conn.accept().await {
                                let log = log.clone();
                                glommio::spawn_local(async move {
                                    let (parts, mut body) = req.into_parts();
                                    let mut s = Seen {
                                        path: parts.uri.path().to_string(),
                                        content_length: parts
                                            .headers
                                            .get("content-length")
                                            .and_then(|v| v.to_str().ok())
                                            .map(str::to_string),
                                        ..Seen::default()
                                    };
                                    while let Some(Ok(c)) = body.data().await {
                                        let _ = body.flow_control().release_capacity(c.len());
                                        s.body.extend_from_slice(&c);
                                    }
                                    if let Ok(Some(t)) = body.trailers().await {
                                        for (n, v) in &t {
                                            let v = v.to_str().unwrap_or("?").to_string();
                                            s.trailers.push((n.as_str().to_string(), v));
                                        }
                                    }
                                    log.lock().unwrap().push(s);
                                    let resp = http::Response::builder()
                                        .status(200)
                                        .body(())
                                        .expect("a response");
                                    let Ok(mut send) = respond.send_response(resp, false) else {
                                        return;
                                    };
                                    let _ = send.send_data(Bytes::from_static(b"h2 ok"), false);
                                    let mut t = http::HeaderMap::new();
                                    t.insert("x-resp-trailer", "yes".parse().unwrap());
                                    let _ = send.send_trailers(t);
                                })
                                .detach();
                            }
                        })
                        .detach();
                    }
                };
                futures_lite::future::or(serve, glommio::timer::sleep(Duration::from_secs(120)))
                    .await;
            })
    });
    (
        rx.recv_timeout(STEP).expect("the h2 upstream started"),
        seen,
    )
}

/// The bootstrap: the buffer filter (1024 bytes), `/h2` to the HTTP/2 upstream, the
/// rest to the HTTP/1 one.
fn bootstrap(h1: SocketAddr, h2: SocketAddr) -> String {
    let cluster = |name: &str, a: SocketAddr, extra: &str| {
        format!(
            "  - name: {name}
    connect_timeout: 1s
    type: STATIC
{extra}    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]
",
            a.port()
        )
    };
    let h2_options = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
"#;
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: @ADMIN_PORT@}}}}
static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: @PORT@}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: trailers
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /h2}}
                route: {{cluster: up2}}
              - match: {{prefix: /}}
                route: {{cluster: up1}}
          http_filters:
          - name: buf
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 1024
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
{}{}"#,
        cluster("up1", h1, ""),
        cluster("up2", h2, h2_options),
    )
}

/// An HTTP/2 POST of `body` in two DATA frames (no content-length), then trailers
/// `x-t1: one` and `x-t2: two` (or END_STREAM on an empty frame). Returns what came
/// back: status, body, response trailers.
fn h2_post(listen: SocketAddr, path: &str, body: &'static str, trailers: bool) -> String {
    let uri = format!("http://{listen}{path}");
    let reply = h2client::run(move || async move {
        let client = connect(listen).await;
        let mut c = within(STEP, "stream slot", client.ready())
            .await
            .expect("h2 connection ready");
        let req = request("POST", &uri).body(()).expect("request");
        let (response, mut stream) = c.send_request(req, false).expect("send request headers");
        let (a, b) = body.split_at(body.len() / 2);
        stream.reserve_capacity(body.len());
        stream
            .send_data(Bytes::from_static(a.as_bytes()), false)
            .expect("data");
        stream
            .send_data(Bytes::from_static(b.as_bytes()), !trailers)
            .expect("data");
        if trailers {
            let mut t = http::HeaderMap::new();
            t.insert("x-t1", "one".parse().unwrap());
            t.insert("x-t2", "two".parse().unwrap());
            stream.send_trailers(t).expect("trailers");
        }
        read_reply(response).await
    });
    let resp_trailer = reply
        .trailers
        .as_ref()
        .and_then(|t| t.get("x-resp-trailer"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    format!(
        "status {} reset {:?} response trailer {:?}",
        reply.status,
        reply.reset.is_some(),
        resp_trailer
    )
}

const BODY: &str = "0123456789abcdefghij";

/// Every case, each as (label, what the client and the upstream saw).
fn observe(listen: SocketAddr, h1: &Upstream, h2: &Mutex<Vec<Seen>>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let last_h2 = |h2: &Mutex<Vec<Seen>>| {
        let s = h2.lock().unwrap().last().cloned().unwrap_or_default();
        format!(
            "path {} content-length {:?} body {:?} trailers {:?}",
            s.path,
            s.content_length,
            String::from_utf8_lossy(&s.body),
            s.trailers
        )
    };
    let last_h1 = |h1: &Upstream| {
        let r = h1.last_request();
        format!(
            "target {} content-length {:?} transfer-encoding {:?} body {:?} trailers {:?}",
            r.target,
            r.header("content-length"),
            r.header("transfer-encoding"),
            String::from_utf8_lossy(&r.body),
            r.trailers
        )
    };
    for (label, path, trailers) in [
        ("h2 client, trailers, h2 upstream", "/h2/t", true),
        ("h2 client, no trailers, h2 upstream", "/h2/n", false),
    ] {
        let client = h2_post(listen, path, BODY, trailers);
        out.push((format!("{label}: client"), client));
        out.push((format!("{label}: upstream"), last_h2(h2)));
    }
    let client = h2_post(listen, "/h1/t", BODY, true);
    out.push(("h2 client, trailers, h1 upstream: client".into(), client));
    out.push((
        "h2 client, trailers, h1 upstream: upstream".into(),
        last_h1(h1),
    ));
    // An HTTP/1 client's chunked trailers.
    for (label, path) in [
        ("h1 chunked with trailers, h2 upstream", "/h2/c"),
        ("h1 chunked with trailers, h1 upstream", "/h1/c"),
    ] {
        let mut c = Conn::connect(listen);
        c.send(format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t1: one\r\n\r\n"
        ));
        let r = c.read_response().expect("a response");
        out.push((format!("{label}: status"), r.status.to_string()));
        let up = if path.starts_with("/h2") {
            last_h2(h2)
        } else {
            last_h1(h1)
        };
        out.push((format!("{label}: upstream"), up));
    }
    out
}

fn run_outrigger(h1: &Upstream) -> Vec<(String, String)> {
    let (h2_addr, h2) = recording_h2_upstream();
    let proxy = Proxy::start(&bootstrap(h1.addr, h2_addr));
    observe(proxy.listen, h1, &h2)
}

fn get<'a>(facts: &'a [(String, String)], label: &str) -> &'a str {
    facts
        .iter()
        .find(|(l, _)| l == label)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {label} in {facts:?}"))
}

#[test]
fn trailers_of_a_held_body_go_where_they_can() {
    let h1 = Upstream::echo();
    let ours = run_outrigger(&h1);
    // The HTTP/2 upstream gets the held body with its length, then the trailers.
    assert_eq!(
        get(&ours, "h2 client, trailers, h2 upstream: upstream"),
        format!(
            "path /h2/t content-length Some(\"20\") body {BODY:?} trailers [(\"x-t1\", \"one\"), (\"x-t2\", \"two\")]"
        )
    );
    assert_eq!(
        get(&ours, "h2 client, trailers, h2 upstream: client"),
        "status 200 reset false response trailer Some(\"yes\")"
    );
    // The HTTP/1 upstream: a Content-Length body, no trailers.
    let h1_seen = get(&ours, "h2 client, trailers, h1 upstream: upstream");
    assert!(
        h1_seen.contains("content-length Some(\"20\")") && h1_seen.ends_with("trailers []"),
        "{h1_seen}"
    );
}

#[test]
fn trailers_of_a_held_body_as_envoy() {
    let Some(bin) = envoy_or_skip("trailers_of_a_held_body_as_envoy") else {
        return;
    };
    let h1 = Upstream::echo();
    let (h2_addr, h2) = recording_h2_upstream();
    let envoy = Envoy::start(&bin, &bootstrap(h1.addr, h2_addr));
    let theirs = observe(envoy.listen, &h1, &h2);
    drop(envoy);
    let ours = run_outrigger(&h1);
    let diffs = fact_diffs(&theirs, &ours);
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
}
