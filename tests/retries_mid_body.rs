//! A try whose upstream goes away while the request body is still being sent (it closes
//! or resets before any response): retried as Envoy's router retries it. The retry is
//! decided on the reset, while the body still streams (`upstream_rq_retry` counts it
//! then); the body read so far and the rest are kept for the retry up to
//! `per_request_buffer_limit_bytes`; a body that outgrows the limit while the retry
//! waits is a `507` ("exceeded request buffer limit while retrying upstream", details
//! `request_payload_exceeded_retry_buffer_limit`, no flag); a body already past the limit
//! when the upstream goes is not retried (`503 UC`). `upstream_rq_retry` counts a retry
//! when it starts, after its back-off (Envoy 1.40). Every case runs through Envoy 1.40
//! and Outrigger with the same bootstrap and compares what the client got, what each
//! try carried to the upstream, the access log line and the retry counters.

mod common;
mod h2client;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::envoy::hcm_head;
use common::envoy::{envoy_or_skip, Envoy};
use common::*;

const FILE_LOG: &str = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
const LOG_FORMAT: &str =
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %UPSTREAM_REQUEST_ATTEMPT_COUNT%";

/// One route to the upstream with `retry` as its retry policy and `route_level` under the
/// route itself (the buffer limit); an access log of the status, flags, details and
/// attempts.
fn bootstrap(up: SocketAddr, retry: &str, route_level: &str) -> String {
    let head = hcm_head("", "main");
    format!(
        r#"{head}          access_log:
          - name: log
            typed_config:
              "@type": {FILE_LOG}
              path: "@DIR@/access.log"
              log_format: {{ text_format_source: {{ inline_string: "{LOG_FORMAT}\n" }} }}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
{route_level}                route:
                  cluster: up
                  timeout: 10s
                  retry_policy: {retry}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#,
        port = up.port()
    )
}

/// Retried on a reset after a short back-off.
const QUICK: &str =
    "{ retry_on: reset, num_retries: 2, retry_back_off: { base_interval: 0.001s } }";
/// Retried on a reset after a back-off long enough for the client to send more body
/// while it waits (jittered in [0, 30 s)).
const SLOW: &str = "{ retry_on: reset, retry_back_off: { base_interval: 30s, max_interval: 30s } }";
const LIMIT_16K: &str = "                per_request_buffer_limit_bytes: 16384\n";

/// An upstream whose first connection reads the request head and `cut` body bytes, then
/// closes (with the rest unread: a reset); later connections read the whole request
/// (Content-Length or chunked) and answer 200. Records the body bytes each connection
/// read, and says when the first one is gone.
struct CutUpstream {
    addr: SocketAddr,
    /// Each connection's body bytes as read (chunk framing included).
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    cut_done: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl CutUpstream {
    fn start(cut: usize) -> CutUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let cut_done = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(AtomicUsize::new(0));
        let (b, c, s) = (bodies.clone(), cut_done.clone(), stop.clone());
        thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::SeqCst) && Instant::now() < end {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let first = conns.fetch_add(1, Ordering::SeqCst) == 0;
                        let (b, c) = (b.clone(), c.clone());
                        thread::spawn(move || serve(stream, first.then_some(cut), &b, &c));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        CutUpstream {
            addr,
            bodies,
            cut_done,
            stop,
        }
    }

    fn bodies(&self) -> Vec<Vec<u8>> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for CutUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The end of a request head in `buf`, if it is there.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn serve(mut s: TcpStream, cut: Option<usize>, bodies: &Mutex<Vec<Vec<u8>>>, done: &AtomicBool) {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let end = loop {
        if let Some(e) = head_end(&buf) {
            break e;
        }
        match s.read(&mut tmp) {
            Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
            _ => return,
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let mut body = buf.split_off(end);
    if let Some(cut) = cut {
        // Read exactly `cut` body bytes (more may be in `body` already: kept short).
        while body.len() < cut {
            let want = (cut - body.len()).min(tmp.len());
            match s.read(&mut tmp[..want]) {
                Ok(n) if n > 0 => body.extend_from_slice(&tmp[..n]),
                _ => break,
            }
        }
        body.truncate(cut);
        bodies.lock().unwrap().push(body);
        drop(s);
        done.store(true, Ordering::SeqCst);
        return;
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    loop {
        let complete = match length {
            Some(n) => body.len() >= n,
            None => body.ends_with(b"0\r\n\r\n"),
        };
        if complete {
            break;
        }
        match s.read(&mut tmp) {
            Ok(n) if n > 0 => body.extend_from_slice(&tmp[..n]),
            _ => return,
        }
    }
    bodies.lock().unwrap().push(body);
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
}

/// What one proxy did with one case.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    body: String,
    /// Each try's body as the upstream read it: its length, and whether it is a prefix
    /// of what the client sent (the whole of it, for a try that was answered).
    tries: Vec<(usize, bool)>,
    log: String,
    retry: u64,
    retry_success: u64,
    abandoned: u64,
}

struct Case {
    name: &'static str,
    retry: &'static str,
    route_level: &'static str,
    /// The body as it goes on the wire (Content-Length or chunked), the head, and how
    /// much of the body goes before the upstream closes.
    head: String,
    body: Vec<u8>,
    first: usize,
    /// How many body bytes the upstream's first connection reads.
    cut: usize,
    chunked: bool,
}

fn length_case(len: usize) -> (String, Vec<u8>) {
    let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 23) as u8).collect();
    let head = format!("POST /x HTTP/1.1\r\nHost: svc\r\nContent-Length: {len}\r\n\r\n");
    (head, body)
}

fn chunked_case(chunks: usize, size: usize) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for i in 0..chunks {
        body.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        body.extend(std::iter::repeat_n(b'k' + (i % 7) as u8, size));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let head = "POST /x HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n".to_string();
    (head, body)
}

/// The payload of a chunked body (no trailers, as these tests send it).
fn dechunk(mut wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = wire.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&wire[..i]).unwrap_or("0"), 16).unwrap_or(0);
        if size == 0 || wire.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&wire[i + 2..i + 2 + size]);
        wire = &wire[(i + 4 + size).min(wire.len())..];
    }
    out
}

/// Runs `c` against the proxy at `addr`: its `stat` by Envoy's name, `noticed` says when
/// it has seen the upstream go, its access log is in `log`.
fn run(
    c: &Case,
    addr: SocketAddr,
    up: &CutUpstream,
    stat: &dyn Fn(&str) -> u64,
    noticed: &dyn Fn() -> bool,
    log: &std::path::Path,
) -> Seen {
    let mut conn = Conn::connect(addr);
    conn.set_timeout(Duration::from_secs(20));
    conn.send(&c.head);
    conn.send(&c.body[..c.first]);
    let gone = wait_until(Duration::from_secs(10), || {
        up.cut_done.load(Ordering::SeqCst).then_some(())
    });
    assert!(
        gone.is_some(),
        "{}: the upstream never read its cut",
        c.name
    );
    // The rest of the body goes once the proxy has seen the upstream go.
    let seen = wait_until(Duration::from_secs(10), || noticed().then_some(()));
    assert!(
        seen.is_some(),
        "{}: the proxy never saw the upstream go",
        c.name
    );
    // The proxy may have answered already (and closed): the rest may not go.
    let _ = conn.try_send(&c.body[c.first..]);
    let (status, body) = match conn.read_response() {
        Ok(r) => (r.status, r.body_str()),
        Err(e) => (0, e.to_string()),
    };
    // The cut try: how much it read, and (unless the proxy may re-frame chunks, as
    // Envoy does) that it is the start of the body; a complete try: its payload.
    let payload = if c.chunked {
        dechunk(&c.body)
    } else {
        c.body.clone()
    };
    let tries = up
        .bodies()
        .iter()
        .enumerate()
        .map(|(i, b)| match (i, c.chunked) {
            (0, true) => (b.len(), true),
            (0, false) => (b.len(), c.body.starts_with(b)),
            (_, true) => {
                let p = dechunk(b);
                (p.len(), p == payload)
            }
            (_, false) => (b.len(), *b == payload),
        })
        .collect();
    let line = wait_until(Duration::from_secs(5), || {
        let text = read_lossy(log);
        text.lines().next().map(str::to_string)
    })
    .unwrap_or_default();
    Seen {
        status,
        body,
        tries,
        log: line,
        retry: stat("upstream_rq_retry"),
        retry_success: stat("upstream_rq_retry_success"),
        abandoned: stat("retry_or_shadow_abandoned"),
    }
}

fn cases() -> Vec<Case> {
    let (head, body) = length_case(40_000);
    let (chead, cbody) = chunked_case(6, 5000);
    let (head507, body507) = length_case(30_000);
    let (head_past, body_past) = length_case(30_000);
    vec![
        Case {
            name: "a reset mid-body: retried with the whole body",
            retry: QUICK,
            route_level: "",
            head,
            body,
            first: 10_000,
            cut: 5_000,
            chunked: false,
        },
        Case {
            name: "a chunked body reset mid-body: retried with the same bytes",
            retry: QUICK,
            route_level: "",
            head: chead,
            body: cbody,
            first: 12_000,
            cut: 7_000,
            chunked: true,
        },
        Case {
            name: "the body outgrows the limit while the retry waits: 507",
            retry: SLOW,
            route_level: LIMIT_16K,
            head: head507,
            body: body507,
            first: 8_000,
            cut: 4_000,
            chunked: false,
        },
        Case {
            name: "the body is past the limit when the upstream goes: not retried",
            retry: QUICK,
            route_level: LIMIT_16K,
            head: head_past,
            body: body_past,
            first: 20_000,
            cut: 18_000,
            chunked: false,
        },
    ]
}

/// Outrigger's counter for Envoy's `cluster.up.<name>`.
fn our_stat(p: &Proxy, name: &str) -> u64 {
    let c = p.cluster_stats("up");
    let ours = match name {
        "upstream_rq_retry" => "rq_retry",
        "upstream_rq_retry_success" => "rq_retry_success",
        other => other,
    };
    c[ours].as_u64().unwrap_or(0)
}

fn envoy_stat(admin: SocketAddr, name: &str) -> u64 {
    common::envoy::stat(admin, &format!("cluster.up.{name}")).unwrap_or(0)
}

/// Outrigger reads the upstream socket while the body goes up and sees it go at once;
/// it shows that in no counter, so the rest of the body waits a moment.
fn ours(c: &Case) -> Seen {
    let up = CutUpstream::start(c.cut);
    let p = Proxy::start(&bootstrap(up.addr, c.retry, c.route_level));
    let log = p.dir.join("access.log");
    let settle = || {
        thread::sleep(Duration::from_millis(300));
        true
    };
    run(c, p.listen, &up, &|n| our_stat(&p, n), &settle, &log)
}

#[test]
fn a_reset_mid_body_is_retried_with_the_whole_body() {
    let c = &cases()[0];
    let seen = ours(c);
    assert_eq!(seen.status, 200, "{seen:?}");
    assert_eq!(seen.tries, [(5_000, true), (40_000, true)], "{seen:?}");
    assert_eq!(seen.log, "200 - via_upstream 2");
    assert_eq!((seen.retry, seen.retry_success, seen.abandoned), (1, 1, 0));
}

#[test]
fn a_chunked_body_reset_mid_body_is_retried_with_its_framing() {
    let c = &cases()[1];
    let seen = ours(c);
    assert_eq!(seen.status, 200, "{seen:?}");
    assert_eq!(seen.tries, [(7_000, true), (30_000, true)], "{seen:?}");
}

#[test]
fn a_body_that_outgrows_the_limit_while_the_retry_waits_is_a_507() {
    let c = &cases()[2];
    let seen = ours(c);
    assert_eq!(seen.status, 507, "{seen:?}");
    assert_eq!(
        seen.body,
        "exceeded request buffer limit while retrying upstream"
    );
    assert_eq!(seen.tries, [(4_000, true)], "no second try");
    assert_eq!(
        seen.log,
        "507 - request_payload_exceeded_retry_buffer_limit 1"
    );
    assert_eq!(
        (seen.retry, seen.abandoned),
        (0, 1),
        "a retry that never started is not counted"
    );
}

#[test]
fn a_body_past_the_limit_when_the_upstream_goes_is_not_retried() {
    let c = &cases()[3];
    let seen = ours(c);
    assert_eq!(seen.status, 503, "{seen:?}");
    assert_eq!(seen.tries, [(18_000, true)]);
    assert_eq!((seen.retry, seen.abandoned), (0, 1));
}

#[test]
fn envoy_and_outrigger_retry_mid_body_resets_alike() {
    let Some(bin) = envoy_or_skip("envoy_and_outrigger_retry_mid_body_resets_alike") else {
        return;
    };
    let mut diffs = Vec::new();
    for c in &cases() {
        let up = CutUpstream::start(c.cut);
        let envoy = Envoy::start(&bin, &bootstrap(up.addr, c.retry, c.route_level));
        let log = envoy.dir.join("access.log");
        let admin = envoy.admin;
        let stat = |n: &str| envoy_stat(admin, n);
        // Envoy counts the upstream connection that closed under the request.
        let noticed = || envoy_stat(admin, "upstream_cx_destroy_remote_with_active_rq") > 0;
        let theirs = run(c, envoy.listen, &up, &stat, &noticed, &log);
        drop(envoy);
        let mine = ours(c);
        if theirs != mine {
            diffs.push(format!(
                "{}:\n  Envoy:     {theirs:?}\n  Outrigger: {mine:?}",
                c.name
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// An HTTP/2 client's body to an HTTP/1.1 cluster whose upstream goes mid-body: that
/// path finds the loss at its next write (or at the response head), and the request is
/// retried with the whole body either way.
#[test]
fn an_http2_clients_body_cut_mid_body_is_retried_whole() {
    let up = CutUpstream::start(5_000);
    let p = Proxy::start(&bootstrap(up.addr, QUICK, ""));
    let a: Vec<u8> = (0..10_000).map(|i| b'a' + (i % 23) as u8).collect();
    let b: Vec<u8> = (0..30_000).map(|i| b'k' + (i % 7) as u8).collect();
    let addr = p.listen;
    let done = up.cut_done.clone();
    let (a2, b2) = (a.clone(), b.clone());
    let status = h2client::run(move || async move {
        let client = h2client::connect(addr).await;
        let req = h2client::request("POST", &format!("http://{addr}/x"))
            .body(())
            .unwrap();
        let mut c = client.ready().await.expect("h2 connection ready");
        let (response, mut stream) = c.send_request(req, false).expect("request head");
        stream.reserve_capacity(a2.len() + b2.len());
        stream
            .send_data(bytes::Bytes::from(a2), false)
            .expect("first part");
        for _ in 0..2000 {
            if done.load(Ordering::SeqCst) {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let _ = stream.send_data(bytes::Bytes::from(b2), true);
        h2client::read_reply(response).await.status
    });
    assert_eq!(status, 200);
    let bodies = up.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0].len(), 5_000);
    // An HTTP/2 client's body goes to an HTTP/1.1 upstream chunked.
    assert_eq!(
        dechunk(&bodies[1]),
        [a, b].concat(),
        "the retry carried it whole"
    );
}
