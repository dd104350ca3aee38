//! Hedging on a per-try timeout (Envoy's `hedge_policy.hedge_on_per_try_timeout`): a
//! try its per-try timeout fires on goes on while a retry starts next to it, and the
//! first good response head wins; the other try's upstream connection is reset. The
//! same Envoy bootstrap goes to Envoy 1.40 and to Outrigger against scripted upstreams
//! that answer each request after its own delay and notice when the proxy drops the
//! connection; the counts the upstream saw, which try's answer the client got and the
//! cluster's retry and per-try timeout counters must be the same. HTTP/1.1 and HTTP/2
//! clusters both, from HTTP/1 and HTTP/2 clients: on an HTTP/2 cluster the loser is a
//! stream the proxy resets, and each try sends the request's body again.

mod common;
mod h2client;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::envoy::{envoy_or_skip, hcm_head, Envoy, ROUTER_TYPE};
use common::*;

/// An upstream whose `n`th request (1-based) is answered `try-n` after `delays[n-1]`
/// (none past the list), unless the proxy drops the connection first: then `n` goes
/// into `closed`.
struct Script {
    seen: AtomicUsize,
    delays: Vec<Duration>,
    closed: Mutex<Vec<usize>>,
    attempts: Mutex<Vec<String>>,
}

fn scripted(delays: &[u64]) -> (Upstream, Arc<Script>) {
    let s = Arc::new(Script {
        seen: AtomicUsize::new(0),
        delays: delays.iter().map(|&ms| Duration::from_millis(ms)).collect(),
        closed: Mutex::new(Vec::new()),
        attempts: Mutex::new(Vec::new()),
    });
    let script = s.clone();
    let handler: Handler = Arc::new(move |ctx, req, stream| {
        use std::io::Write;
        let n = script.seen.fetch_add(1, Ordering::SeqCst) + 1;
        script.attempts.lock().unwrap().push(
            req.header("x-envoy-attempt-count")
                .unwrap_or("-")
                .to_string(),
        );
        let delay = script.delays.get(n - 1).copied().unwrap_or_default();
        let end = Instant::now() + delay;
        stream.set_read_timeout(Some(Duration::from_millis(20)))?;
        while Instant::now() < end && !ctx.stop.load(Ordering::Relaxed) {
            let mut b = [0u8; 1];
            match stream.read(&mut b) {
                Ok(0) => {
                    script.closed.lock().unwrap().push(n);
                    return Ok(false);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    script.closed.lock().unwrap().push(n);
                    return Ok(false);
                }
                _ => {}
            }
        }
        stream.set_read_timeout(Some(UP_IDLE))?;
        let body = format!("try-{n}");
        write!(
            stream,
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )?;
        Ok(true)
    });
    (Upstream::start(handler), s)
}

/// An HTTP/2 (h2c) upstream with the same script: its `n`th stream (1-based) is read
/// whole, then answered `try-n` after `delays[n-1]`, unless the proxy resets the stream
/// first: then `n` goes into `closed`. `attempts` records each stream's attempt header
/// and the length of the body it carried.
fn scripted_h2(delays: &[u64]) -> (SocketAddr, Arc<Script>) {
    let s = Arc::new(Script {
        seen: AtomicUsize::new(0),
        delays: delays.iter().map(|&ms| Duration::from_millis(ms)).collect(),
        closed: Mutex::new(Vec::new()),
        attempts: Mutex::new(Vec::new()),
    });
    let script = s.clone();
    let addr = h2client::h2_serve(move |req, respond| answer_h2(req, respond, script.clone()));
    (addr, s)
}

async fn answer_h2(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
    script: Arc<Script>,
) {
    let n = script.seen.fetch_add(1, Ordering::SeqCst) + 1;
    let (parts, mut body) = req.into_parts();
    let mut len = 0;
    while let Some(chunk) = body.data().await {
        let Ok(c) = chunk else {
            script.closed.lock().unwrap().push(n);
            return;
        };
        len += c.len();
        let _ = body.flow_control().release_capacity(c.len());
    }
    let attempt = parts
        .headers
        .get("x-envoy-attempt-count")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    script
        .attempts
        .lock()
        .unwrap()
        .push(format!("{attempt} body={len}"));
    let delay = script.delays.get(n - 1).copied().unwrap_or_default();
    let reset = std::future::poll_fn(|cx| respond.poll_reset(cx));
    let waited = futures_lite::future::or(async { reset.await.is_ok() }, async {
        glommio::timer::sleep(delay).await;
        false
    })
    .await;
    if waited {
        script.closed.lock().unwrap().push(n);
        return;
    }
    let resp = http::Response::builder().status(200).body(()).unwrap();
    let Ok(mut send) = respond.send_response(resp, false) else {
        return;
    };
    let body = format!("try-{n}");
    send.reserve_capacity(body.len());
    let _ = send.send_data(bytes::Bytes::from(body), true);
}

fn bootstrap(up: SocketAddr, route_extra: &str) -> String {
    bootstrap_for(up, route_extra, "")
}

/// The cluster speaks HTTP/2 to its endpoint (Envoy's explicit `http2_protocol_options`).
const H2_CLUSTER: &str = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
"#;

fn bootstrap_for(up: SocketAddr, route_extra: &str, cluster_extra: &str) -> String {
    let head = hcm_head("", "main");
    format!(
        r#"{head}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              include_request_attempt_count: true
              routes:
              - match: {{ prefix: / }}
                route:
                  cluster: up
                  timeout: 10s
                  retry_policy:
                    retry_on: 5xx
                    num_retries: 1
                    per_try_timeout: 0.3s
                    retry_back_off: {{ base_interval: 0.001s, max_interval: 0.002s }}
{route_extra}          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": {ROUTER_TYPE}}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
{cluster_extra}    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
"#,
        up.port()
    )
}

const HEDGE: &str = "                  hedge_policy: { hedge_on_per_try_timeout: true }\n";

struct Case {
    name: &'static str,
    route_extra: &'static str,
    request_headers: &'static str,
    delays: &'static [u64],
    /// The requests whose connection the proxy drops (what Outrigger must do too).
    closed: &'static [usize],
}

const CASES: &[Case] = &[
    Case {
        name: "the first try is slow: the hedge answers, the first is reset",
        route_extra: HEDGE,
        request_headers: "",
        delays: &[4000, 0],
        closed: &[1],
    },
    Case {
        name: "the first try answers while the hedge waits: the hedge is reset",
        route_extra: HEDGE,
        request_headers: "",
        delays: &[1500, 6000],
        closed: &[2],
    },
    Case {
        // Both proxies sanitize `x-envoy-*` headers from untrusted clients (Envoy 1.40
        // trusts none by default): the header is not honoured, the timeout cuts.
        name: "the request header from an untrusted client does not turn hedging on",
        route_extra: "",
        request_headers: "x-envoy-hedge-on-per-try-timeout: true\r\n",
        delays: &[4000, 0],
        closed: &[1],
    },
    Case {
        name: "the request header from an untrusted client does not turn hedging off",
        route_extra: HEDGE,
        request_headers: "x-envoy-hedge-on-per-try-timeout: false\r\n",
        delays: &[4000, 0],
        closed: &[1],
    },
];

/// What one proxy did with one case.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    body: String,
    tries: usize,
    attempts: Vec<String>,
    closed: Vec<usize>,
    retry: u64,
    per_try_timeout: u64,
    total: u64,
}

fn exercise(addr: SocketAddr, c: &Case, script: &Script, stat: &dyn Fn(&str) -> u64) -> Seen {
    let req = format!(
        "GET /x HTTP/1.1\r\nHost: svc\r\n{}connection: close\r\n\r\n",
        c.request_headers
    );
    let mut conn = Conn::connect(addr);
    conn.set_timeout(Duration::from_secs(15));
    conn.send(&req);
    let r = conn.read_response().expect("a response");
    // The loser's connection is dropped as the winner answers; give the upstream
    // thread time to notice.
    let _ = wait_until(Duration::from_secs(5), || {
        (script.closed.lock().unwrap().len() >= c.closed.len()).then_some(())
    });
    let mut closed = script.closed.lock().unwrap().clone();
    closed.sort_unstable();
    Seen {
        status: r.status,
        body: r.body_str(),
        tries: script.seen.load(Ordering::SeqCst),
        attempts: script.attempts.lock().unwrap().clone(),
        closed,
        retry: stat("upstream_rq_retry"),
        per_try_timeout: stat("upstream_rq_per_try_timeout"),
        total: stat("upstream_rq_total"),
    }
}

/// The same over HTTP/2 (prior knowledge): the client's stream goes to the HTTP/1.1
/// cluster (`http/h2/to_h1.rs`), which hedges as the HTTP/1 path does.
fn exercise_h2(addr: SocketAddr, c: &Case, script: &Script, stat: &dyn Fn(&str) -> u64) -> Seen {
    let r = h2client::run(move || async move {
        let mut client = h2client::connect(addr).await;
        let req = h2client::request("GET", "http://svc/x").body(()).unwrap();
        h2client::send(&mut client, req, b"").await
    });
    assert!(r.reset.is_none(), "{}: {:?}", c.name, r.reset);
    let _ = wait_until(Duration::from_secs(5), || {
        (script.closed.lock().unwrap().len() >= c.closed.len()).then_some(())
    });
    let mut closed = script.closed.lock().unwrap().clone();
    closed.sort_unstable();
    Seen {
        status: r.status,
        body: String::from_utf8_lossy(&r.body).into_owned(),
        tries: script.seen.load(Ordering::SeqCst),
        attempts: script.attempts.lock().unwrap().clone(),
        closed,
        retry: stat("upstream_rq_retry"),
        per_try_timeout: stat("upstream_rq_per_try_timeout"),
        total: stat("upstream_rq_total"),
    }
}

fn envoy_stat(admin: SocketAddr, name: &str) -> u64 {
    common::envoy::stat(admin, &format!("cluster.up.{name}")).unwrap_or(0)
}

fn our_stat(p: &Proxy, name: &str) -> u64 {
    let c = p.cluster_stats("up");
    let ours = name.strip_prefix("upstream_").unwrap_or(name);
    c[ours].as_u64().unwrap_or(0)
}

#[test]
fn envoy_and_outrigger_hedge_alike() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_hedge_alike") else {
        return;
    };
    let mut diffs = Vec::new();
    for c in CASES {
        let (up, script) = scripted(c.delays);
        let text = bootstrap(up.addr, c.route_extra);
        let envoy = Envoy::start(&bin, &text);
        let admin = envoy.admin;
        let from_envoy = exercise(envoy.listen, c, &script, &|n| envoy_stat(admin, n));
        drop(envoy);
        drop(up);
        let (up, script) = scripted(c.delays);
        let text = bootstrap(up.addr, c.route_extra);
        let proxy = Proxy::start_with(&text, 1);
        let from_outrigger = exercise(proxy.listen, c, &script, &|n| our_stat(&proxy, n));
        drop(proxy);
        eprintln!(
            "{}:\n  Envoy     {from_envoy:?}\n  Outrigger {from_outrigger:?}",
            c.name
        );
        if from_outrigger.closed != c.closed {
            diffs.push(format!(
                "{}: Outrigger reset {:?}, expected {:?}",
                c.name, from_outrigger.closed, c.closed
            ));
        }
        if from_envoy != from_outrigger {
            diffs.push(format!(
                "{}:\n  Envoy     {from_envoy:?}\n  Outrigger {from_outrigger:?}",
                c.name
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// Natively, with two endpoints (round robin, one worker: the first try goes to the
/// first): the slow one's stream is reset, the fast one answers, each saw one request,
/// and the per-try timeout is not counted (Envoy does not count a hedged one).
#[test]
fn native_hedge_policy_sends_the_hedge_to_the_next_endpoint() {
    let (slow, slow_script) = scripted(&[5000]);
    let (fast, fast_script) = scripted(&[0]);
    let config = format!(
        r#"{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {{ prefix: / }}
            cluster: up
            timeout: 10s
            retry_policy: {{ retry_on: 5xx, num_retries: 1, per_try_timeout: 300ms, retry_back_off: {{ base_interval: 1ms }} }}
            hedge_policy: {{ hedge_on_per_try_timeout: true }}
clusters:
  - name: up
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
      - {{ address: 127.0.0.1, port: {} }}
"#,
        slow.addr.port(),
        fast.addr.port()
    );
    let proxy = Proxy::start_with(&config, 1);
    let r = get(proxy.listen, "svc", "/x");
    assert_eq!((r.status, r.body_str().as_str()), (200, "try-1"));
    let reset = wait_until(Duration::from_secs(5), || {
        (!slow_script.closed.lock().unwrap().is_empty()).then_some(())
    });
    assert!(reset.is_some(), "the slow endpoint's stream was not reset");
    assert_eq!(slow_script.seen.load(Ordering::SeqCst), 1);
    assert_eq!(fast_script.seen.load(Ordering::SeqCst), 1);
    assert!(fast_script.closed.lock().unwrap().is_empty());
    assert_eq!(our_stat(&proxy, "upstream_rq_retry"), 1);
    assert_eq!(our_stat(&proxy, "upstream_rq_per_try_timeout"), 0);
    assert_eq!(our_stat(&proxy, "upstream_rq_total"), 2);
    drop(proxy);

    // A hedge policy needs a route to a cluster.
    let dir = TempDir::new("hedge-native");
    let bad = config.replace(
        "            cluster: up\n            timeout: 10s\n",
        "            redirect: { host_redirect: example.com }\n",
    );
    assert_ne!(bad, config);
    let path = dir.join("c.yaml");
    let text = bad
        .replace("@ADMIN_PORT@", "9901")
        .replace("@PORT@", "10000");
    write_atomic(&path, &text);
    let out = run_cli(
        &["validate", "-c", &path.display().to_string()],
        Duration::from_secs(20),
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "accepted:\n{text}");
    assert!(
        said.contains("routes[0].hedge_policy: needs a `cluster`"),
        "{said}"
    );
}

/// HTTP/2 clients to an HTTP/1.1 cluster hedge as HTTP/1 clients do, compared with
/// Envoy 1.40: the first two cases (the hedge wins; the first try wins).
#[test]
fn envoy_and_outrigger_hedge_alike_for_http2_clients() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_hedge_alike_for_http2_clients") else {
        return;
    };
    let mut diffs = Vec::new();
    for c in CASES.iter().filter(|c| c.request_headers.is_empty()) {
        let (up, script) = scripted(c.delays);
        let text = bootstrap(up.addr, c.route_extra);
        let envoy = Envoy::start(&bin, &text);
        let admin = envoy.admin;
        let from_envoy = exercise_h2(envoy.listen, c, &script, &|n| envoy_stat(admin, n));
        drop(envoy);
        drop(up);
        let (up, script) = scripted(c.delays);
        let text = bootstrap(up.addr, c.route_extra);
        let proxy = Proxy::start_with(&text, 1);
        let from_outrigger = exercise_h2(proxy.listen, c, &script, &|n| our_stat(&proxy, n));
        drop(proxy);
        if from_outrigger.closed != c.closed || from_envoy != from_outrigger {
            diffs.push(format!(
                "{}:\n  Envoy     {from_envoy:?}\n  Outrigger {from_outrigger:?}",
                c.name
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// How a client sends its request in the HTTP/2 cluster cases.
#[derive(Debug, Clone, Copy)]
enum Client {
    H1Get,
    /// A Content-Length body (small: taken whole before the first try).
    H1Post,
    /// A chunked body (streamed up by the first try, kept for the others).
    H1Chunked,
    H2Get,
    /// A body in one DATA frame with END_STREAM (whole at hand).
    H2Post,
    /// A body in two DATA frames, the second after a pause (streamed, kept).
    H2Streamed,
}

fn exercise_client(
    addr: SocketAddr,
    client: Client,
    c: &Case,
    script: &Script,
    stat: &dyn Fn(&str) -> u64,
) -> Seen {
    let (status, body) = match client {
        Client::H1Get | Client::H1Post | Client::H1Chunked => {
            let req = match client {
                Client::H1Get => "GET /x HTTP/1.1\r\nHost: svc\r\nconnection: close\r\n\r\n".to_string(),
                Client::H1Post => "POST /x HTTP/1.1\r\nHost: svc\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello".to_string(),
                _ => "POST /x HTTP/1.1\r\nHost: svc\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_string(),
            };
            let mut conn = Conn::connect(addr);
            conn.set_timeout(Duration::from_secs(15));
            conn.send(&req);
            let r = conn.read_response().expect("a response");
            (r.status, r.body_str())
        }
        Client::H2Get | Client::H2Post | Client::H2Streamed => {
            let r = h2client::run(move || async move {
                let mut conn = h2client::connect(addr).await;
                let method = if matches!(client, Client::H2Get) {
                    "GET"
                } else {
                    "POST"
                };
                let req = h2client::request(method, "http://svc/x").body(()).unwrap();
                match client {
                    Client::H2Streamed => {
                        let mut c = conn.ready().await.expect("ready");
                        let (response, mut up) = c.send_request(req, false).expect("send");
                        up.reserve_capacity(11);
                        up.send_data(bytes::Bytes::from_static(b"hello"), false)
                            .expect("data");
                        glommio::timer::sleep(Duration::from_millis(50)).await;
                        up.send_data(bytes::Bytes::from_static(b" world"), true)
                            .expect("data");
                        h2client::read_reply(response).await
                    }
                    Client::H2Post => h2client::send(&mut conn, req, b"hello").await,
                    _ => h2client::send(&mut conn, req, b"").await,
                }
            });
            assert!(r.reset.is_none(), "{}: {:?}", c.name, r.reset);
            (r.status, String::from_utf8_lossy(&r.body).into_owned())
        }
    };
    let _ = wait_until(Duration::from_secs(5), || {
        (script.closed.lock().unwrap().len() >= c.closed.len()).then_some(())
    });
    let mut closed = script.closed.lock().unwrap().clone();
    closed.sort_unstable();
    Seen {
        status,
        body,
        tries: script.seen.load(Ordering::SeqCst),
        attempts: script.attempts.lock().unwrap().clone(),
        closed,
        retry: stat("upstream_rq_retry"),
        per_try_timeout: stat("upstream_rq_per_try_timeout"),
        total: stat("upstream_rq_total"),
    }
}

/// An HTTP/2 cluster hedges as an HTTP/1.1 one does, compared with Envoy 1.40 for each
/// client protocol and body shape: the hedge wins and the slow stream is reset, or the
/// first try wins and the hedge's stream is reset; every try carries the whole body
/// and its own attempt count.
#[test]
fn envoy_and_outrigger_hedge_alike_on_http2_clusters() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_hedge_alike_on_http2_clusters") else {
        return;
    };
    let clients = [
        Client::H1Get,
        Client::H1Post,
        Client::H1Chunked,
        Client::H2Get,
        Client::H2Post,
        Client::H2Streamed,
    ];
    let mut diffs = Vec::new();
    for c in CASES.iter().filter(|c| c.request_headers.is_empty()) {
        for client in clients {
            let (up, script) = scripted_h2(c.delays);
            let text = bootstrap_for(up, c.route_extra, H2_CLUSTER);
            let envoy = Envoy::start(&bin, &text);
            let admin = envoy.admin;
            let from_envoy =
                exercise_client(envoy.listen, client, c, &script, &|n| envoy_stat(admin, n));
            drop(envoy);
            let (up, script) = scripted_h2(c.delays);
            let text = bootstrap_for(up, c.route_extra, H2_CLUSTER);
            let proxy = Proxy::start_with(&text, 1);
            let from_outrigger =
                exercise_client(proxy.listen, client, c, &script, &|n| our_stat(&proxy, n));
            drop(proxy);
            eprintln!(
                "{} ({client:?}):\n  Envoy     {from_envoy:?}\n  Outrigger {from_outrigger:?}",
                c.name
            );
            if from_outrigger.closed != c.closed || from_envoy != from_outrigger {
                diffs.push(format!(
                    "{} ({client:?}):\n  Envoy     {from_envoy:?}\n  Outrigger {from_outrigger:?}",
                    c.name
                ));
            }
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
