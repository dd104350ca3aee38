//! The request-body hook, proven by the buffer filter (Envoy's
//! `envoy.filters.http.buffer`): the request body is read whole before anything goes
//! upstream (the upstream sees a Content-Length request however the client framed it),
//! a body over `max_request_bytes` gets Envoy's `413 Payload Too Large` and never
//! reaches the upstream, and routes may disable or resize the filter. On every protocol
//! path: HTTP/1 and HTTP/2 clients, HTTP/1 and HTTP/2 upstreams.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::time::Duration;

use common::bodies::*;
use common::*;

const LIMIT: usize = 1024;

/// A listener with a buffer filter of `LIMIT` bytes (`with_filter`), routes that
/// disable it (`/off`) and raise its limit (`/big`), towards `upstream` in `protocol`.
fn config(upstream: SocketAddr, protocol: &str, with_filter: bool) -> String {
    let filters = if with_filter {
        "    http_filters:
      - name: buf
        buffer: { max_request_bytes: 1024 }
"
    } else {
        ""
    };
    let overrides = |o: &str| {
        if with_filter {
            format!("            per_filter_config:\n              buf: {o}\n")
        } else {
            String::new()
        }
    };
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
{filters}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: /off }}
            cluster: backend
{}          - match: {{ prefix: /big }}
            cluster: backend
{}          - match: {{ prefix: / }}
            cluster: backend
clusters:
  - name: backend
    protocol: {protocol}
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        overrides("{ disabled: true }"),
        overrides("{ buffer: { max_request_bytes: 4096 } }"),
        upstream.port()
    )
}

/// The upstream got `body` whole, framed by its length.
fn check_buffered(req: &Recorded, body: &str) {
    assert!(!req.chunked, "{}", req.describe());
    assert_eq!(req.header("transfer-encoding"), None, "{}", req.describe());
    let len = body.len().to_string();
    assert_eq!(
        req.header("content-length"),
        Some(len.as_str()),
        "{}",
        req.describe()
    );
    assert_eq!(req.body, body.as_bytes());
}

fn check_413(r: &Response) {
    assert_eq!(r.status, 413, "{}", r.body_str());
    assert_eq!(r.body_str(), "Payload Too Large");
    assert_eq!(r.header("content-type"), Some("text/plain"));
}

/// Both HTTP/1 client cases: `upstream` is what the proxy talks to, `up` records.
fn h1_client(up: &Upstream, target: SocketAddr, protocol: &str) {
    let proxy = Proxy::start(&config(target, protocol, true));
    let mut c = Conn::connect(proxy.listen);
    // At the limit, chunked: buffered, then sent with a Content-Length.
    let at_limit = letters(LIMIT);
    c.send(chunked_post("/c", &at_limit));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    check_buffered(&up.last_request(), &at_limit);
    // At the limit, with a Content-Length, on the same connection.
    c.send(length_post("/l", &at_limit));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    check_buffered(&up.last_request(), &at_limit);
    // A route with a larger limit.
    let big = letters(3000);
    c.send(chunked_post("/big", &big));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    check_buffered(&up.last_request(), &big);
    // A request pipelined behind a held body is read after it, from the connection's
    // own buffer.
    let small = letters(10);
    c.send(format!(
        "{}GET /after HTTP/1.1\r\nHost: a\r\n\r\n",
        chunked_post("/p", &small)
    ));
    assert_eq!(c.read_response().unwrap().status, 200);
    assert_eq!(c.read_response().unwrap().status, 200);
    // The proxy may have forwarded `/after` before the test looks: find `/p` by name.
    let seen = up.requests();
    let p = seen
        .iter()
        .rev()
        .find(|r| r.target == "/p")
        .expect("/p went upstream");
    check_buffered(p, &small);
    assert_eq!(up.last_request().target, "/after");
    // `Expect: 100-continue`: the proxy answers it itself, then reads the body.
    c.send("POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
    c.send("0123456789");
    let (interim, r) = c.read_final().unwrap();
    assert_eq!((interim, r.status), (vec![100], 200), "{}", r.body_str());
    check_buffered(&up.last_request(), "0123456789");
    let seen = up.request_count();

    // One byte over: 413, nothing upstream, and the connection closes (as Envoy's).
    c.send(length_post("/l", &letters(LIMIT + 1)));
    let r = c.read_response().unwrap();
    check_413(&r);
    assert!(r.says_close(), "{:?}", r.headers);
    assert!(c.closed_within(Duration::from_secs(5)));
    let mut c = Conn::connect(proxy.listen);
    c.send(chunked_post("/c", &letters(LIMIT + 2)));
    check_413(&c.read_response().unwrap());
    assert_eq!(up.request_count(), seen, "a refused body went upstream");
}

#[test]
fn http1_client_to_http1_upstream() {
    let up = Upstream::echo();
    h1_client(&up, up.addr, "http1");

    // Disabled on the route: the body streams as it came (chunked), whatever its size.
    let proxy = Proxy::start(&config(up.addr, "http1", true));
    let mut c = Conn::connect(proxy.listen);
    let long = letters(5000);
    c.send(chunked_post("/off", &long));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    let req = up.last_request();
    assert!(req.chunked, "{}", req.describe());
    assert_eq!(req.body, long.as_bytes());
}

#[test]
fn http1_client_to_http2_upstream() {
    let up = Upstream::echo();
    // The HTTP/2 upstream: a second outrigger (h2c) in front of the echo server. It
    // passes the Content-Length on; without one it would send the body chunked.
    let b = Proxy::start(&proxy_config(up.addr));
    h1_client(&up, b.listen, "http2");
}

fn h2_client(protocol: &str) {
    let up = Upstream::echo();
    let b = (protocol == "http2").then(|| Proxy::start(&proxy_config(up.addr)));
    let target = b.as_ref().map_or(up.addr, |b| b.listen);
    let proxy = Proxy::start(&config(target, protocol, true));
    let at_limit = letters(LIMIT);
    let (status, text) = h2_stream_post(&proxy.url("/c"), &at_limit);
    assert_eq!(status, 200, "{text}");
    check_buffered(&up.last_request(), &at_limit);
    let big = letters(3000);
    let (status, _) = h2_stream_post(&proxy.url("/big"), &big);
    assert_eq!(status, 200);
    check_buffered(&up.last_request(), &big);
    let seen = up.request_count();
    // Over the limit before the end of the stream: 413, nothing upstream.
    let r = h2client::post_unfinished(proxy.listen, "/c", 4000);
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (413, "Payload Too Large")
    );
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(up.request_count(), seen, "a refused body went upstream");
    // Disabled on the route: streamed, unbuffered (an HTTP/1 upstream gets it chunked).
    let long = letters(40_000);
    let (status, _) = h2_stream_post(&proxy.url("/off"), &long);
    assert_eq!(status, 200);
    let req = up.last_request();
    assert_eq!(req.body, long.as_bytes());
    if protocol == "http1" {
        assert!(req.chunked, "{}", req.describe());
    }
}

#[test]
fn http2_client_to_http1_upstream() {
    h2_client("http1");
}

#[test]
fn http2_client_to_http2_upstream() {
    h2_client("http2");
}

/// Without a body filter nothing changes: chunked stays chunked, any size passes.
#[test]
fn no_body_filter_streams_as_before() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, "http1", false));
    let mut c = Conn::connect(proxy.listen);
    let long = letters(5000);
    c.send(chunked_post("/c", &long));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    let req = up.last_request();
    assert!(req.chunked, "{}", req.describe());
    assert_eq!(req.body, long.as_bytes());
    let (status, _) = h2_stream_post(&proxy.url("/c"), &long);
    assert_eq!(status, 200);
    assert!(up.last_request().chunked);
}

#[test]
fn bad_buffer_config_is_refused_with_the_field() {
    let dir = TempDir::new("buf");
    let path = dir.join("bad.yaml");
    let text = config("127.0.0.1:9".parse().unwrap(), "http1", true)
        .replace("buffer: { max_request_bytes: 1024 }", "buffer: {}")
        .replace(
            "{ buffer: { max_request_bytes: 4096 } }",
            "{ buffer: { max_request_bytes: 4294967296 } }",
        )
        .replace("@ADMIN_PORT@", "9")
        .replace("@PORT@", "10");
    write_atomic(&path, &text);
    let out = run_cli(
        &["validate", "-c", &path.display().to_string()],
        Duration::from_secs(10),
    );
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    for field in [
        "listeners[0].http_filters[0].buffer.max_request_bytes",
        "per_filter_config.buf.buffer.max_request_bytes",
    ] {
        assert!(err.contains(field), "missing {field} in:\n{err}");
    }
}
