//! External processing (Envoy's `envoy.filters.http.ext_proc`) through the binary, with a
//! scripted processor (`tests/ext_proc/processor.py`, grpcio): header mutations both
//! ways (and the default mutation rules), request bodies replaced in buffered and
//! streamed modes, immediate responses, a processor that hangs (message timeout) and one
//! that cannot be reached, each with `failure_mode_allow` off and on; response bodies
//! held for the processor (buffered) on all four protocol paths and with trailers, with
//! Envoy's Content-Length rules; what the
//! upstream got is checked, not only what the client saw.

mod common;
mod h2client;

use std::net::SocketAddr;

use common::bodies::*;
use common::ext_proc::{gated, Processor};
use common::*;

/// One listener whose chain has an ext_proc filter `proc` (`filter` holds its fields,
/// indented for the filter's block), routes that change its mode or disable it, and
/// the processor's cluster.
fn config(upstream: SocketAddr, protocol: &str, processor: SocketAddr, filter: &str) -> String {
    let route = |prefix: &str, o: &str| {
        format!(
            "          - match: {{ prefix: {prefix} }}\n            cluster: backend\n            per_filter_config:\n              proc: {o}\n"
        )
    };
    let buffered = "{ ext_proc: { processing_mode: { request_body_mode: BUFFERED } } }";
    let streamed = "{ ext_proc: { processing_mode: { request_body_mode: STREAMED } } }";
    let resp = "{ ext_proc: { processing_mode: { response_body_mode: BUFFERED } } }";
    let resp_skip = "{ ext_proc: { processing_mode: { response_header_mode: SKIP, response_body_mode: BUFFERED } } }";
    let resp_streamed = "{ ext_proc: { processing_mode: { response_body_mode: STREAMED } } }";
    let trailers = "{ ext_proc: { processing_mode: { request_trailer_mode: SEND, response_trailer_mode: SEND } } }";
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
    http_filters:
      - name: proc
        ext_proc:
          cluster: processor
{filter}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
{}{}{}{}{}{}{}{}{}{}          - match: {{ prefix: / }}
            cluster: backend
clusters:
  - name: backend
    protocol: {protocol}
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
  - name: processor
    protocol: http2
    connect_timeout: 1s
    endpoints:
      - {{ address: 127.0.0.1, port: {} }}
",
        route("/skip", "{ disabled: true }"),
        route("/upper-streamed", streamed),
        route("/upper", buffered),
        route("/clear", buffered),
        route("/hang-body", buffered),
        route("/replace", buffered),
        route("/resp-skip", resp_skip),
        route("/stream-", resp_streamed),
        route("/trailer", trailers),
        route("/resp-", resp),
        upstream.port(),
        processor.port(),
    )
}

fn counter(proxy: &Proxy, name: &str) -> u64 {
    proxy.stats()["counters"][format!("http.main.ext_proc.{name}")]
        .as_u64()
        .unwrap_or(0)
}

fn processor_addr(p: &Processor) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p.port))
}

/// `/mutate`: the processor's request mutations reach the upstream (the routing and
/// `x-envoy-*` headers it may not touch are left alone), its response mutations reach
/// the client, and it saw the request's and the response's headers.
fn check_mutations(proxy: &Proxy, up: &Upstream, p: &Processor) {
    let mut c = Conn::connect(proxy.listen);
    c.send(
        "GET /mutate HTTP/1.1\r\nHost: svc\r\nx-replaced: old\r\nx-appended: one\r\nx-appended-too: one\r\nx-drop: 1\r\n\r\n",
    );
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.header("x-resp-added"), Some("yes"), "{:?}", r.headers);
    assert_eq!(r.header("x-upstream-conn"), None, "{:?}", r.headers);
    let req = up.last_request();
    assert_eq!(req.header("x-added"), Some("req"), "{}", req.describe());
    assert_eq!(
        req.headers_named("x-replaced"),
        vec!["new"],
        "{}",
        req.describe()
    );
    // APPEND_IF_EXISTS_OR_ADD (the proto's default) overwrites, as in Envoy's ext_proc;
    // `append: true` appends.
    assert_eq!(req.headers_named("x-appended"), vec!["two"]);
    assert_eq!(req.headers_named("x-appended-too"), vec!["one", "two"]);
    assert_eq!(req.header("x-drop"), None);
    assert_eq!(req.header("host"), Some("svc"), "host may not be changed");
    assert_eq!(req.header("x-envoy-try"), None, "x-envoy-* may not be set");
    let seen = p.seen("/mutate", "request_headers");
    let last = seen.last().expect("request headers sent");
    assert_eq!(last["headers"][":method"], "GET");
    assert_eq!(last["headers"][":authority"], "svc");
    assert_eq!(last["headers"]["x-replaced"], "old");
    assert_eq!(last["end_of_stream"], true);
    let resp = p.seen("/mutate", "response_headers");
    assert_eq!(
        resp.last().expect("response headers sent")["headers"][":status"],
        "200"
    );
}

#[test]
fn headers_are_mutated_both_ways_on_every_path() {
    let p = Processor::start();
    let up = Upstream::echo();
    // HTTP/1 client, HTTP/1 upstream.
    let proxy = Proxy::start(&config(up.addr, "http1", processor_addr(&p), ""));
    check_mutations(&proxy, &up, &p);
    assert_eq!(counter(&proxy, "streams_started"), 1);
    assert_eq!(counter(&proxy, "stream_msgs_sent"), 2);
    assert_eq!(counter(&proxy, "stream_msgs_received"), 2);
    assert_eq!(counter(&proxy, "rejected_header_mutations"), 2);
    assert_eq!(counter(&proxy, "streams_closed"), 1);
    assert_eq!(counter(&proxy, "streams_failed"), 0);
    // A route that disables the filter: nothing reaches the processor.
    let before = p.messages().len();
    assert_eq!(get(proxy.listen, "a", "/skip").status, 200);
    assert_eq!(p.messages().len(), before);
    // HTTP/1 client, HTTP/2 upstream (a second outrigger in front of the echo server).
    let b = Proxy::start(&proxy_config(up.addr));
    let proxy = Proxy::start(&config(b.listen, "http2", processor_addr(&p), ""));
    check_mutations(&proxy, &up, &p);
    // HTTP/2 client, HTTP/1 upstream.
    let proxy = Proxy::start(&config(up.addr, "http1", processor_addr(&p), ""));
    let (url, addr) = (proxy.url("/mutate"), proxy.listen);
    let r = h2client::run(move || async move {
        let mut c = h2client::connect(addr).await;
        let req = h2client::request("GET", &url)
            .header("x-replaced", "old")
            .header("x-drop", "1")
            .body(())
            .unwrap();
        h2client::send(&mut c, req, b"").await
    });
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.header("x-resp-added"), Some("yes"));
    assert_eq!(r.header("x-upstream-conn"), None);
    let req = up.last_request();
    assert_eq!(req.header("x-added"), Some("req"), "{}", req.describe());
    assert_eq!(req.headers_named("x-replaced"), vec!["new"]);
    assert_eq!(req.header("x-drop"), None);
}

#[test]
fn request_bodies_are_replaced_buffered_and_streamed() {
    let p = Processor::start();
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, "http1", processor_addr(&p), ""));
    let mut c = Conn::connect(proxy.listen);
    // Buffered: one message with the whole body; the upstream gets its replacement
    // with a Content-Length.
    c.send(chunked_post("/upper", "hello world"));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    let req = up.last_request();
    assert_eq!(req.body, b"HELLO WORLD", "{}", req.describe());
    assert_eq!(req.header("content-length"), Some("11"));
    let bodies = p.seen("/upper", "request_body");
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["body"], "hello world");
    assert_eq!(bodies[0]["end_of_stream"], true);
    // Streamed: each piece in its own message, each answered; the last ends the
    // stream. The upstream gets the processed body chunked, without the client's
    // Content-Length (Envoy's `shouldRemoveContentLength`).
    let long = letters(3000);
    c.send(length_post("/upper-streamed", &long));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    let req = up.last_request();
    assert_eq!(
        req.body,
        long.to_uppercase().as_bytes(),
        "{}",
        req.describe()
    );
    assert_eq!(req.header("content-length"), None, "{}", req.describe());
    assert_eq!(req.header("transfer-encoding"), Some("chunked"));
    let bodies = p.seen("/upper-streamed", "request_body");
    let sent: String = bodies.iter().map(|b| b["body"].as_str().unwrap()).collect();
    assert_eq!(sent, long);
    assert_eq!(bodies.last().unwrap()["end_of_stream"], true);
    assert_eq!(
        bodies.iter().filter(|b| b["end_of_stream"] == true).count(),
        1
    );
    // A streamed request body is not held: 3 MiB (past the 1 MiB buffer limit) goes
    // through whole, as in Envoy.
    let big = letters(3 << 20);
    let mut c2 = Conn::connect(proxy.listen);
    c2.send(chunked_post("/upper-streamed-big", &big));
    let r = c2.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    let req = up.last_request();
    assert!(
        req.body == big.to_uppercase().as_bytes(),
        "{} bytes",
        req.body.len()
    );
    // clear_body: the upstream gets an empty body.
    c.send(length_post("/clear", "secret"));
    assert_eq!(c.read_response().unwrap().status, 200);
    let req = up.last_request();
    assert!(req.body.is_empty(), "{}", req.describe());
    assert_eq!(req.header("content-length"), Some("0"));
    // CONTINUE_AND_REPLACE on the headers: its body replaces the client's, which is
    // not sent to the processor.
    c.send(length_post("/replace", "original"));
    assert_eq!(c.read_response().unwrap().status, 200);
    assert_eq!(up.last_request().body, b"replaced");
    assert!(p.seen("/replace", "request_body").is_empty());
    // An HTTP/2 client's body, buffered.
    let (status, _) = h2_stream_post(&proxy.url("/upper"), "from h2");
    assert_eq!(status, 200);
    assert_eq!(up.last_request().body, b"FROM H2");
}

#[test]
fn immediate_responses_answer_the_client() {
    let p = Processor::start();
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, "http1", processor_addr(&p), ""));
    let r = get(proxy.listen, "a", "/deny");
    assert_eq!(r.status, 403);
    assert_eq!(r.body_str(), "denied by processor");
    assert_eq!(r.header("x-denied"), Some("yes"));
    assert_eq!(up.request_count(), 0, "a denied request went upstream");
    // On the response headers: the upstream's response is replaced.
    let r = get(proxy.listen, "a", "/late-deny");
    assert_eq!(r.status, 418);
    assert_eq!(r.body_str(), "late");
    assert_eq!(up.request_count(), 1);
    assert_eq!(counter(&proxy, "streams_failed"), 0);
}

#[test]
fn a_hanging_processor_times_out() {
    let p = Processor::start();
    let up = Upstream::echo();
    let closed = "          message_timeout: 300ms\n";
    let proxy = Proxy::start(&config(up.addr, "http1", processor_addr(&p), closed));
    // Envoy answers a message timeout with 504 (ext_proc_error_per-message_timeout).
    let r = get(proxy.listen, "a", "/hang");
    assert_eq!(r.status, 504, "{}", r.body_str());
    let mut c = Conn::connect(proxy.listen);
    c.send(length_post("/hang-body", "abc"));
    assert_eq!(c.read_response().unwrap().status, 504);
    assert_eq!(up.request_count(), 0);
    assert_eq!(counter(&proxy, "message_timeouts"), 2);
    assert_eq!(counter(&proxy, "failure_mode_allowed"), 0);

    let open = "          message_timeout: 300ms\n          failure_mode_allow: true\n";
    let proxy = Proxy::start(&config(up.addr, "http1", processor_addr(&p), open));
    let r = get(proxy.listen, "a", "/hang");
    assert_eq!(r.status, 200, "{}", r.body_str());
    let mut c = Conn::connect(proxy.listen);
    c.send(length_post("/hang-body", "abc"));
    assert_eq!(c.read_response().unwrap().status, 200);
    assert_eq!(up.last_request().body, b"abc", "the body goes on unchanged");
    assert_eq!(up.request_count(), 2);
    assert_eq!(counter(&proxy, "message_timeouts"), 2);
    assert_eq!(counter(&proxy, "failure_mode_allowed"), 2);
}

#[test]
fn an_unreachable_processor_fails_closed_or_open() {
    let up = Upstream::echo();
    let gone = refused_addr();
    let proxy = Proxy::start(&config(up.addr, "http1", gone, ""));
    let r = get(proxy.listen, "a", "/x");
    assert_eq!(r.status, 500, "{}", r.body_str());
    assert_eq!(up.request_count(), 0);
    assert_eq!(counter(&proxy, "streams_failed"), 1);
    let open = "          failure_mode_allow: true\n";
    let proxy = Proxy::start(&config(up.addr, "http1", gone, open));
    assert_eq!(get(proxy.listen, "a", "/x").status, 200);
    assert_eq!(up.request_count(), 1);
    assert_eq!(counter(&proxy, "streams_failed"), 1);
    assert_eq!(counter(&proxy, "failure_mode_allowed"), 1);
}

#[test]
fn unsupported_modes_are_refused_by_field_path() {
    let up = Upstream::echo();
    let bad = "          processing_mode: { response_body_mode: BUFFERED_PARTIAL }\n";
    let dir = TempDir::new("extproc-cfg");
    let path = dir.join("c.yaml");
    let text = config(up.addr, "http1", up.addr, bad)
        .replace("@ADMIN_PORT@", "0")
        .replace("@PORT@", "0");
    write_atomic(&path, &text);
    let out = run_cli(
        &["validate", "-c", path.to_str().unwrap()],
        std::time::Duration::from_secs(20),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("http_filters[0].ext_proc.processing_mode.response_body_mode"),
        "{text}"
    );
}

/// Response bodies in `BUFFERED` mode (`/resp-*` routes; `/resp-skip*` also skips the
/// response headers): the processor sees the whole body once, its mutation is what the
/// client gets; with the headers sent the Content-Length stays and a body of another
/// length is Envoy's `500`; with them skipped the length goes and the body is chunked.
#[test]
fn response_bodies_are_processed_buffered() {
    let p = Processor::start();
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, "http1", processor_addr(&p), ""));
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /resp-upper HTTP/1.1\r\nHost: svc\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    let echoed = up.last_request().describe();
    assert_eq!(r.body_str(), echoed.to_uppercase());
    let len = echoed.len().to_string();
    assert_eq!(r.header("content-length"), Some(len.as_str()));
    let heads = p.seen("/resp-upper", "response_headers");
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert_eq!(heads[0]["end_of_stream"], false);
    let bodies = p.seen("/resp-upper", "response_body");
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["body"], echoed.as_str());
    assert_eq!(bodies[0]["end_of_stream"], true);
    // The connection goes on: a second held response on it.
    c.send("GET /resp-upper/2 HTTP/1.1\r\nHost: svc\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    // Another length than the kept Content-Length: Envoy's 500.
    let r = get(proxy.listen, "svc", "/resp-grow");
    assert_eq!(r.status, 500, "{}", r.body_str());
    assert_eq!(
        r.header("x-body-seen"),
        None,
        "the local reply has its own headers"
    );
    // Headers skipped: no Content-Length, the grown body chunked; the body answer's
    // header mutation is dropped (Envoy holds no headers to apply it to).
    let r = get(proxy.listen, "svc", "/resp-skip-grow");
    assert_eq!(r.status, 200, "{}", r.body_str());
    let echoed = up.last_request().describe();
    assert_eq!(r.body_str(), format!("{echoed}!"));
    assert_eq!(r.header("content-length"), None, "{:?}", r.headers);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("x-body-seen"), None);
    assert!(p.seen("/resp-skip-grow", "response_headers").is_empty());
    let r = get(proxy.listen, "svc", "/resp-skip-clear");
    assert_eq!((r.status, r.body.len()), (200, 0), "{}", r.body_str());
    // An immediate response to the body replaces the whole response.
    let r = get(proxy.listen, "svc", "/resp-deny");
    assert_eq!(r.status, 451);
    assert_eq!(r.body_str(), "late body");
    assert_eq!(counter(&proxy, "streams_failed"), 0);

    // A chunked upstream response: no length to keep, the grown body goes chunked.
    let chunked = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    ));
    let proxy = Proxy::start(&config(chunked.addr, "http1", processor_addr(&p), ""));
    let r = get(proxy.listen, "svc", "/resp-grow-chunked");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.body_str(), "abcde!");
    assert_eq!(r.header("x-body-seen"), Some("yes"));
    let bodies = p.seen("/resp-grow-chunked", "response_body");
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["body"], "abcde");
}

/// Response bodies in `STREAMED` mode (`/stream-*` routes): the body goes to the
/// processor in pieces as it comes (a small one in one message with `end_of_stream`),
/// the client gets what the processor made of each piece, without a Content-Length
/// (chunked), as Envoy removes it for `STREAMED`; the first body answer's header
/// mutations apply (Envoy's head is still held when the body came with it); an
/// immediate response replaces the response.
#[test]
fn response_bodies_are_processed_streamed() {
    let p = Processor::start();
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, "http1", processor_addr(&p), ""));
    let r = get(proxy.listen, "svc", "/stream-upper");
    assert_eq!(r.status, 200, "{}", r.body_str());
    let echoed = up.last_request().describe();
    assert_eq!(r.body_str(), echoed.to_uppercase());
    assert_eq!(r.header("content-length"), None, "{:?}", r.headers);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(p.seen("/stream-upper", "response_headers").len(), 1);
    let bodies = p.seen("/stream-upper", "response_body");
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["body"], echoed.as_str());
    assert_eq!(bodies[0]["end_of_stream"], true);
    let r = get(proxy.listen, "svc", "/stream-grow");
    assert_eq!(r.status, 200, "{}", r.body_str());
    let echoed = up.last_request().describe();
    assert_eq!(r.body_str(), format!("{echoed}!"));
    assert_eq!(
        r.header("x-body-seen"),
        Some("yes"),
        "the first piece's header mutation"
    );
    let r = get(proxy.listen, "svc", "/stream-deny");
    assert_eq!((r.status, r.body_str().as_str()), (451, "late body"));
    // An HTTP/2 client gets the same body, without a length.
    let r = h2_get(&proxy, "/stream-upper-h2");
    assert!(r.reset.is_none(), "{:?}", r.reset);
    let echoed = up.last_request().describe();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), echoed.to_uppercase());
    assert_eq!(r.header("content-length"), None);
    assert_eq!(counter(&proxy, "streams_failed"), 0);

    // A large chunked body: several messages, each piece processed, the last one
    // ending the stream.
    let chunk = "abcdefghij".repeat(1000);
    let mut raw = String::from("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
    for _ in 0..5 {
        raw.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    raw.push_str("0\r\n\r\n");
    let big = Upstream::start(fixed(raw.as_str()));
    let proxy = Proxy::start(&config(big.addr, "http1", processor_addr(&p), ""));
    let r = get(proxy.listen, "svc", "/stream-grow-big");
    assert_eq!(r.status, 200);
    let bodies = p.seen("/stream-grow-big", "response_body");
    assert!(bodies.len() >= 2, "{}", bodies.len());
    let sent: String = bodies.iter().map(|b| b["body"].as_str().unwrap()).collect();
    assert_eq!(sent, chunk.repeat(5));
    let eos: Vec<bool> = bodies.iter().map(|b| b["end_of_stream"] == true).collect();
    assert_eq!(eos.iter().filter(|e| **e).count(), 1, "{eos:?}");
    assert_eq!(eos.last(), Some(&true));
    // Each piece grew by one `!`.
    let want: String = bodies
        .iter()
        .map(|b| format!("{}!", b["body"].as_str().unwrap()))
        .collect();
    assert_eq!(r.body_str(), want);
    // The processor ends the stream at the second piece: the first as it made it, the
    // rest as it came.
    let r = get(proxy.listen, "svc", "/stream-upper-close");
    assert_eq!(r.status, 200);
    let bodies = p.seen("/stream-upper-close", "response_body");
    assert_eq!(bodies.len(), 2, "{}", bodies.len());
    let first = bodies[0]["body"].as_str().unwrap();
    let whole = chunk.repeat(5);
    let rest = whole.get(first.len()..).unwrap();
    assert_eq!(r.body_str(), format!("{}{rest}", first.to_uppercase()));
    assert_eq!(counter(&proxy, "streams_failed"), 0);
}

/// Trailers in `SEND` mode (`/trailer*` routes): an HTTP/2 client's request trailers
/// go to the processor and reach the HTTP/2 upstream as it mutated them (after the
/// held body); an HTTP/2 upstream's response trailers go to it too and reach an
/// HTTP/2 client mutated (an HTTP/1 client gets none, as from Envoy's HTTP/1 codec); a
/// request without trailers
/// sends no trailers message; an immediate response to the response trailers, the
/// head being out, resets the HTTP/2 client's stream.
#[test]
fn trailers_are_processed() {
    let p = Processor::start();
    let up = h2client::h2_trailer_echo();
    // HTTP/1 clients get no trailers, as from Envoy without `enable_trailers` (the
    // native default passes them: `proxy_headers.http1_trailers`).
    let text = config(up, "http2", processor_addr(&p), "").replace(
        "    route_table: main\n",
        "    route_table: main\n    proxy_headers: { http1_trailers: false }\n",
    );
    let proxy = Proxy::start(&text);
    let r = h2client::post_with_trailers(
        proxy.listen,
        proxy.url("/trailer-req"),
        b"hello",
        &[("x-t1", "one"), ("x-trailer-drop", "1")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("x-req-trailers"),
        Some("x-t1=one,x-trailer-added=req")
    );
    let sent = p.seen("/trailer-req", "request_trailers");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["trailers"]["x-t1"], "one");
    assert_eq!(sent[0]["trailers"]["x-trailer-drop"], "1");
    // Response trailers, to an HTTP/2 client and (dropped) to an HTTP/1 one.
    let r = h2_get(&proxy, "/trailer-resp");
    assert_eq!((r.status, r.body_str().as_str()), (200, "body"), "{r:?}");
    let t = r.trailers.expect("the trailers");
    assert_eq!(t.get("x-trailer-added").unwrap(), "resp");
    assert_eq!(t.get("x-trail").unwrap(), "t");
    assert!(t.get("x-trailer-drop").is_none(), "{t:?}");
    let seen = p.seen("/trailer-resp", "response_trailers");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["trailers"]["x-trailer-drop"], "1");
    assert!(p.seen("/trailer-resp", "request_trailers").is_empty());
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /trailer-h1 HTTP/1.1\r\nHost: svc\r\nTE: trailers\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (200, "body"));
    // The processor sees them; the HTTP/1 client does not get them (Envoy's HTTP/1
    // codec drops trailers, `enable_trailers` being off by default).
    assert_eq!(p.seen("/trailer-h1", "response_trailers").len(), 1);
    assert!(r.trailers.is_empty(), "{:?}", r.trailers);
    let r = h2_get(&proxy, "/trailer-deny");
    assert!(r.reset.is_some(), "{r:?}");
    assert_eq!(counter(&proxy, "streams_failed"), 0);
}

/// A GET of `path` from an HTTP/2 client.
fn h2_get(proxy: &Proxy, path: &str) -> h2client::Reply {
    let (url, addr) = (proxy.url(path), proxy.listen);
    h2client::run(move || async move {
        let mut c = h2client::connect(addr).await;
        let req = h2client::request("GET", &url).body(()).unwrap();
        h2client::send(&mut c, req, b"").await
    })
}

/// The buffered response-body cases of `response_bodies_are_processed_buffered` on a
/// path with an HTTP/2 client or an HTTP/2 upstream (`h2`: the client speaks HTTP/2):
/// the same bodies, Content-Length rules and answers as on the HTTP/1 path.
fn check_held_bodies(proxy: &Proxy, up: &Upstream, p: &Processor, h2: bool, what: &str) {
    // (status, body, content-length, transfer-encoding, x-body-seen)
    let ask = |path: &str| -> (u16, String, Option<String>, Option<String>, Option<String>) {
        if h2 {
            let r = h2_get(proxy, path);
            assert!(r.reset.is_none(), "{what} {path}: {:?}", r.reset);
            let h = |n: &str| r.header(n).map(str::to_string);
            let (cl, seen) = (h("content-length"), h("x-body-seen"));
            (r.status, r.body_str(), cl, None, seen)
        } else {
            let r = get(proxy.listen, "svc", path);
            let h = |n: &str| r.header(n).map(str::to_string);
            let (cl, te) = (h("content-length"), h("transfer-encoding"));
            (r.status, r.body_str(), cl, te, h("x-body-seen"))
        }
    };
    let path = format!("/resp-upper-{what}");
    let (status, body, cl, _, _) = ask(&path);
    let echoed = up.last_request().describe();
    assert_eq!(status, 200, "{what}: {body}");
    assert_eq!(body, echoed.to_uppercase(), "{what}");
    assert_eq!(
        cl,
        Some(echoed.len().to_string()),
        "{what}: the length stays"
    );
    let bodies = p.seen(&path, "response_body");
    assert_eq!(bodies.len(), 1, "{what}: {bodies:?}");
    assert_eq!(bodies[0]["body"], echoed.as_str(), "{what}");
    assert_eq!(bodies[0]["end_of_stream"], true, "{what}");
    // Another length than the kept Content-Length: Envoy's 500.
    let (status, _, _, _, seen) = ask(&format!("/resp-grow-{what}"));
    assert_eq!((status, seen), (500, None), "{what}");
    // Headers skipped: no Content-Length; an HTTP/1 client gets the body chunked.
    let (status, body, cl, te, seen) = ask(&format!("/resp-skip-grow-{what}"));
    let echoed = up.last_request().describe();
    assert_eq!(status, 200, "{what}: {body}");
    assert_eq!(body, format!("{echoed}!"), "{what}");
    assert_eq!((cl, seen), (None, None), "{what}");
    if !h2 {
        assert_eq!(te.as_deref(), Some("chunked"), "{what}");
    }
    let (status, body, _, _, _) = ask(&format!("/resp-skip-clear-{what}"));
    assert_eq!((status, body.as_str()), (200, ""), "{what}");
    let (status, body, _, _, _) = ask(&format!("/resp-deny-{what}"));
    assert_eq!((status, body.as_str()), (451, "late body"), "{what}");
}

/// `BUFFERED` response bodies with HTTP/2 on either side: an HTTP/2 client to an
/// HTTP/1 and to an HTTP/2 cluster, an HTTP/1 client to an HTTP/2 cluster (a second
/// outrigger, h2c, in front of the echo server); and a gRPC-shaped HTTP/2 response
/// (DATA, then trailers): its body goes to the processor with `end_of_stream: false`,
/// as Envoy sends a buffered body when the trailers arrive, and the trailers follow
/// the processed body to the client.
#[test]
fn response_bodies_are_processed_buffered_over_http2() {
    let p = Processor::start();
    let up = Upstream::echo();
    let b = Proxy::start(&proxy_config(up.addr));
    let to_h1 = Proxy::start(&config(up.addr, "http1", processor_addr(&p), ""));
    check_held_bodies(&to_h1, &up, &p, true, "h2-h1");
    let to_h2 = Proxy::start(&config(b.listen, "http2", processor_addr(&p), ""));
    check_held_bodies(&to_h2, &up, &p, true, "h2-h2");
    check_held_bodies(&to_h2, &up, &p, false, "h1-h2");
    assert_eq!(counter(&to_h2, "streams_failed"), 0);

    let grpc = h2client::h2_upstream_with(
        &[("content-type", "application/grpc")],
        "\0\0\0\0\x03abc",
        &[("grpc-status", "0"), ("x-trail", "t")],
    );
    let proxy = Proxy::start(&config(grpc, "http2", processor_addr(&p), ""));
    let r = h2_get(&proxy, "/resp-upper-grpc");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"\0\0\0\0\x03ABC");
    let t = r.trailers.expect("the trailers follow the body");
    assert_eq!(t.get("grpc-status").unwrap(), "0");
    assert_eq!(t.get("x-trail").unwrap(), "t");
    let bodies = p.seen("/resp-upper-grpc", "response_body");
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["end_of_stream"], false);
    // To an HTTP/1 client: chunked, without the trailers (Envoy's HTTP/1 codec drops
    // them).
    let mut c = Conn::connect(proxy.listen);
    c.send("GET /resp-upper-grpc1 HTTP/1.1\r\nHost: svc\r\nTE: trailers\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"\0\0\0\0\x03ABC");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(r.trailers.is_empty(), "{:?}", r.trailers);
    let bodies = p.seen("/resp-upper-grpc1", "response_body");
    assert_eq!(bodies[0]["end_of_stream"], false, "{bodies:?}");
}

/// Reads what `c` sends until the proxy closes it (within the read timeout).
fn read_to_close(c: &mut Conn, got: &mut Vec<u8>, what: &str) {
    use std::io::Read;
    let mut tmp = [0u8; 4096];
    loop {
        match c.stream.read(&mut tmp) {
            Ok(0) => return,
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e) => panic!("{what}: the connection stays open: {e}"),
        }
    }
}

/// An immediate response to a piece that came after the head went out (the upstream
/// sends its head alone and waits): the head reaches the client first, without a
/// length; the answer then closes an HTTP/1 client's connection and resets an HTTP/2
/// client's stream, as Envoy does, the head being out.
#[test]
fn a_late_immediate_response_to_a_streamed_piece_cuts_the_response() {
    use std::io::Read;
    let p = Processor::start();
    let (h, go) = gated(true);
    let up = Upstream::start(h);
    let proxy = Proxy::start(&config(up.addr, "http1", processor_addr(&p), ""));
    let mut c = Conn::connect(proxy.listen);
    c.set_timeout(std::time::Duration::from_secs(5));
    c.send("GET /stream-deny-late HTTP/1.1\r\nHost: svc\r\n\r\n");
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.stream.read(&mut tmp).expect("the head before the body");
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&tmp[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    go.send(()).unwrap();
    read_to_close(&mut c, &mut got, "after the answer");
    let all = String::from_utf8_lossy(&got).to_string();
    assert!(
        !all.contains("late body") && !all.ends_with("0\r\n\r\n"),
        "{all}"
    );
    // An HTTP/2 client: the head, then a reset.
    let (url, listen, go2) = (proxy.url("/stream-deny-late-h2"), proxy.listen, go.clone());
    h2client::run(move || async move {
        let mut c = h2client::connect(listen).await;
        let req = h2client::request("GET", &url).body(()).unwrap();
        let (response, _) = c.send_request(req, true).expect("send the request");
        let resp = h2client::within(std::time::Duration::from_secs(5), "head", response)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        go2.send(()).unwrap();
        let mut body = resp.into_body();
        let mut reset = false;
        while let Some(d) = h2client::within(h2client::STEP, "body", body.data()).await {
            if d.is_err() {
                reset = true;
                break;
            }
        }
        assert!(reset, "the stream is reset");
    });
    assert_eq!(p.seen("/stream-deny-late", "response_body").len(), 1);
}

/// An HTTP/1 client's GET of `path` whose body must show `FIRST` before `go` is sent
/// (within 5 s), then the whole of it: `FIRSTSECOND`, chunked.
fn h1_streams(listen: SocketAddr, path: &str, go: &std::sync::mpsc::Sender<()>, what: &str) {
    use std::io::Read;
    let mut c = Conn::connect(listen);
    c.set_timeout(std::time::Duration::from_secs(5));
    c.send(format!("GET {path} HTTP/1.1\r\nHost: svc\r\n\r\n"));
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("FIRST") {
        let n = c.stream.read(&mut tmp).unwrap_or_else(|e| {
            panic!("{what}: the first piece did not reach the client before the upstream's end ({e}); got {:?}", String::from_utf8_lossy(&got))
        });
        assert!(n > 0, "{what}: closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&tmp[..n]);
    }
    go.send(()).unwrap();
    while !got.ends_with(b"0\r\n\r\n") {
        let n = c.stream.read(&mut tmp).expect("the rest of the body");
        assert!(n > 0, "{what}: closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&tmp[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{what}: {text}");
    assert!(
        text.contains("transfer-encoding: chunked"),
        "{what}: {text}"
    );
    assert!(!text.contains("content-length"), "{what}: {text}");
    let body: String = text
        .split_once("\r\n\r\n")
        .unwrap()
        .1
        .split("\r\n")
        .skip(1)
        .step_by(2)
        .collect();
    assert_eq!(body, "firstsecond", "{what}: {text}");
}

/// The same from an HTTP/2 client.
fn h2_streams(listen: SocketAddr, path: &str, go: &std::sync::mpsc::Sender<()>, what: &str) {
    let (url, go, what) = (
        format!("http://{listen}{path}"),
        go.clone(),
        what.to_string(),
    );
    h2client::run(move || async move {
        let mut c = h2client::connect(listen).await;
        let req = h2client::request("GET", &url).body(()).unwrap();
        let (response, _) = c.send_request(req, true).expect("send the request");
        let resp = h2client::within(h2client::STEP, &what, response)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{what}");
        assert!(resp.headers().get("content-length").is_none(), "{what}");
        let mut body = resp.into_body();
        let mut got = Vec::new();
        let first = format!("{what}: the first piece before the upstream's end");
        while !String::from_utf8_lossy(&got).contains("FIRST") {
            let d = h2client::within(std::time::Duration::from_secs(5), &first, body.data());
            let d = d.await.expect("more DATA").expect("DATA");
            let _ = body.flow_control().release_capacity(d.len());
            got.extend_from_slice(&d);
        }
        go.send(()).unwrap();
        while let Some(d) = h2client::within(h2client::STEP, &what, body.data()).await {
            let d = d.expect("DATA");
            let _ = body.flow_control().release_capacity(d.len());
            got.extend_from_slice(&d);
        }
        assert_eq!(String::from_utf8_lossy(&got), "FIRSTSECOND", "{what}");
    });
}

/// `STREAMED` response bodies are streamed on all four protocol paths: each piece
/// reaches the client as the processor made it while the upstream is still sending
/// (the upstream waits for the test's go after its first chunk), one message per
/// piece; and a body over the 1 MiB buffer limit (3 MiB) passes whole, which a held
/// body could not.
#[test]
fn response_bodies_are_processed_streamed_as_they_come() {
    let p = Processor::start();
    let (h, go) = gated(false);
    let up = Upstream::start(h);
    let a = Proxy::start(&config(up.addr, "http1", processor_addr(&p), ""));
    let b = Proxy::start(&proxy_config(up.addr));
    let a2 = Proxy::start(&config(b.listen, "http2", processor_addr(&p), ""));
    h1_streams(a.listen, "/stream-upper-1", &go, "h1-h1");
    h2_streams(a.listen, "/stream-upper-2", &go, "h2-h1");
    h1_streams(a2.listen, "/stream-upper-3", &go, "h1-h2");
    h2_streams(a2.listen, "/stream-upper-4", &go, "h2-h2");
    for i in 1..=4 {
        let bodies = p.seen(&format!("/stream-upper-{i}"), "response_body");
        let texts: Vec<&str> = bodies.iter().map(|b| b["body"].as_str().unwrap()).collect();
        assert_eq!(texts.concat(), "firstsecond", "path {i}: {bodies:?}");
        assert_eq!(texts.first(), Some(&"first"), "path {i}: {bodies:?}");
        assert_eq!(bodies.last().unwrap()["end_of_stream"], true, "path {i}");
    }
    for proxy in [&a, &a2] {
        assert_eq!(counter(proxy, "streams_failed"), 0);
        assert_eq!(counter(proxy, "message_timeouts"), 0);
    }

    // 3 MiB, chunked in 64 KiB chunks, through each path.
    let piece = "abcdefghijklmnop".repeat(4096);
    let mut raw = String::from("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
    for _ in 0..48 {
        raw.push_str(&format!("{:x}\r\n{piece}\r\n", piece.len()));
    }
    raw.push_str("0\r\n\r\n");
    let big = Upstream::start(fixed(raw.as_str()));
    let whole = piece.repeat(48).to_uppercase();
    let a = Proxy::start(&config(big.addr, "http1", processor_addr(&p), ""));
    let b = Proxy::start(&proxy_config(big.addr));
    let a2 = Proxy::start(&config(b.listen, "http2", processor_addr(&p), ""));
    for (proxy, h2, what) in [
        (&a, false, "h1-h1"),
        (&a, true, "h2-h1"),
        (&a2, false, "h1-h2"),
        (&a2, true, "h2-h2"),
    ] {
        let path = format!("/stream-upper-big-{what}");
        let (status, body) = if h2 {
            let r = h2_get(proxy, &path);
            assert!(r.reset.is_none(), "{what}: {:?}", r.reset);
            (r.status, r.body)
        } else {
            let r = get(proxy.listen, "svc", &path);
            (r.status, r.body)
        };
        assert_eq!(status, 200, "{what}");
        assert!(body == whole.as_bytes(), "{what}: {} bytes", body.len());
        let bodies = p.seen(&path, "response_body");
        assert!(bodies.len() > 1, "{what}: {}", bodies.len());
        assert_eq!(bodies.last().unwrap()["end_of_stream"], true, "{what}");
    }
}

/// A streamed response body whose upstream breaks mid-body (bad chunked framing after
/// a first chunk, in the same read as the head: nothing went out yet, and the client's
/// connection closes without a response, as a held response's; a close before a
/// Content-Length's end, after the first piece went out with the head: the client has
/// that much, then the close, never the last chunk), and the proxy goes on serving.
#[test]
fn a_streamed_response_body_cut_by_its_upstream_closes_the_client() {
    use std::io::Read;
    let p = Processor::start();
    for (raw, what) in [
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\nzz\r\n",
            "bad framing",
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst",
            "closed early",
        ),
    ] {
        let up = Upstream::start(fixed_then_close(raw));
        let proxy = Proxy::start(&config(up.addr, "http1", processor_addr(&p), ""));
        let mut c = Conn::connect(proxy.listen);
        c.send("GET /stream-upper-cut HTTP/1.1\r\nHost: svc\r\n\r\n");
        let mut got = Vec::new();
        read_to_close(&mut c, &mut got, what);
        let text = String::from_utf8_lossy(&got).to_string();
        if what == "closed early" {
            assert!(text.starts_with("HTTP/1.1 200"), "{what}: {text}");
            assert!(text.contains("FIRST"), "{what}: {text}");
        } else {
            assert!(!text.contains("FIRST"), "{what}: {text}");
        }
        assert!(!text.ends_with("0\r\n\r\n"), "{what}: {text}");
        // The worker goes on: the next request through the same listener is answered
        // (its upstream breaks it the same way, untouched by the filter).
        let mut c = Conn::connect(proxy.listen);
        c.send("GET /skip HTTP/1.1\r\nHost: svc\r\n\r\n");
        let mut head = [0u8; 12];
        c.stream.read_exact(&mut head).expect("a response");
        assert_eq!(&head, b"HTTP/1.1 200", "{what}");
    }
}

/// A raw HTTP/1 upstream for request streaming: for each request it reads the head and
/// then the body until its decoded payload holds `FIRST` (the first piece as the
/// processor made it), tells the test (`seen`), reads the rest, and answers `200` with
/// the head it got (lower-cased) and the decoded body: `HEAD\r\n\r\nBODY`.
fn request_gated() -> (SocketAddr, std::sync::mpsc::Receiver<()>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(20)));
                let mut got = Vec::new();
                let mut tmp = [0u8; 65536];
                let mut told = false;
                loop {
                    let n = match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    got.extend_from_slice(&tmp[..n]);
                    let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let (head, rest) = got.split_at(at + 4);
                    if !told && String::from_utf8_lossy(rest).contains("FIRST") {
                        told = true;
                        let _ = tx.send(());
                    }
                    if !rest.ends_with(b"0\r\n\r\n") {
                        continue;
                    }
                    let head = String::from_utf8_lossy(head).to_lowercase();
                    let body: String = String::from_utf8_lossy(rest)
                        .split("\r\n")
                        .skip(1)
                        .step_by(2)
                        .collect();
                    let answer = format!("{head}{body}");
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    return;
                }
            });
        }
    });
    (addr, rx)
}

/// An HTTP/2 upstream for request streaming: as `request_gated`, over HTTP/2: it
/// answers `200` with `x-had-length` (whether the request had a Content-Length) and
/// the body it got.
fn request_gated_h2() -> (SocketAddr, std::sync::mpsc::Receiver<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Arc::new(std::sync::Mutex::new(tx));
    let addr = h2client::h2_serve(move |req, mut respond| {
        let tx = tx.clone();
        async move {
            let (parts, mut body) = req.into_parts();
            let mut got = Vec::new();
            let mut told = false;
            while let Some(Ok(d)) = body.data().await {
                let _ = body.flow_control().release_capacity(d.len());
                got.extend_from_slice(&d);
                if !told && String::from_utf8_lossy(&got).contains("FIRST") {
                    told = true;
                    let _ = tx.lock().unwrap().send(());
                }
            }
            let had = parts.headers.contains_key("content-length");
            let resp = http::Response::builder()
                .status(200)
                .header("x-had-length", if had { "yes" } else { "no" })
                .body(())
                .unwrap();
            if let Ok(mut send) = respond.send_response(resp, false) {
                send.reserve_capacity(got.len());
                let _ = send.send_data(bytes::Bytes::from(got), true);
            }
        }
    });
    (addr, rx)
}

/// Waits up to 5 s for the upstream to have seen the first piece.
fn first_seen(seen: &std::sync::mpsc::Receiver<()>, what: &str) {
    seen.recv_timeout(std::time::Duration::from_secs(5))
        .unwrap_or_else(|_| {
            panic!("{what}: the upstream did not get the first piece before the body's end")
        });
}

/// An HTTP/1 client's POST of `first`, then (once the upstream saw it processed)
/// `second`, with a Content-Length.
fn h1_upload(listen: SocketAddr, path: &str, seen: &std::sync::mpsc::Receiver<()>) -> Response {
    let mut c = Conn::connect(listen);
    c.set_timeout(std::time::Duration::from_secs(10));
    c.send(format!(
        "POST {path} HTTP/1.1\r\nHost: svc\r\ncontent-length: 11\r\n\r\nfirst"
    ));
    first_seen(seen, path);
    c.send("second");
    c.read_response().unwrap()
}

/// The same from an HTTP/2 client: (status, x-had-length, body).
fn h2_upload(
    listen: SocketAddr,
    path: &str,
    seen: std::sync::mpsc::Receiver<()>,
) -> (u16, Option<String>, String, std::sync::mpsc::Receiver<()>) {
    let url = format!("http://{listen}{path}");
    let what = path.to_string();
    h2client::run(move || async move {
        let mut c = h2client::connect(listen).await;
        let req = h2client::request("POST", &url)
            .header("content-length", "11")
            .body(())
            .unwrap();
        let (response, mut send) = c.send_request(req, false).expect("send the request");
        send.send_data(bytes::Bytes::from_static(b"first"), false)
            .unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if seen.try_recv().is_ok() {
                break;
            }
            assert!(
                std::time::Instant::now() < until,
                "{what}: the upstream did not get the first piece before the body's end"
            );
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        send.send_data(bytes::Bytes::from_static(b"second"), true)
            .unwrap();
        let mut reply = h2client::read_reply(response).await;
        let had = reply.header("x-had-length").map(str::to_string);
        let body = std::mem::take(&mut reply.body);
        (
            reply.status,
            had,
            String::from_utf8_lossy(&body).to_string(),
            seen,
        )
    })
}

/// `STREAMED` request bodies stream on all four protocol paths: the upstream gets the
/// first piece as the processor made it while the client has not sent the rest (the
/// client waits for that), the request without its Content-Length (chunked to an
/// HTTP/1 upstream); an immediate response to a later piece answers the client.
#[test]
fn request_bodies_are_processed_streamed_as_they_come() {
    let p = Processor::start();
    let (h1_up, seen1) = request_gated();
    let (h2_up, seen2) = request_gated_h2();
    let to_h1 = Proxy::start(&config(h1_up, "http1", processor_addr(&p), ""));
    let to_h2 = Proxy::start(&config(h2_up, "http2", processor_addr(&p), ""));
    // HTTP/1 client to an HTTP/1 upstream: chunked, the length gone.
    let r = h1_upload(to_h1.listen, "/upper-streamed-h1", &seen1);
    assert_eq!(r.status, 200, "{}", r.body_str());
    let text = r.body_str();
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(!text.contains("content-length"), "{text}");
    assert!(text.ends_with("\r\n\r\nFIRSTSECOND"), "{text}");
    // HTTP/1 client to an HTTP/2 upstream.
    let r = h1_upload(to_h2.listen, "/upper-streamed-h1-h2", &seen2);
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert_eq!(r.header("x-had-length"), Some("no"));
    assert_eq!(r.body_str(), "FIRSTSECOND");
    // HTTP/2 client to an HTTP/1 upstream.
    let (status, _, text, seen1) = h2_upload(to_h1.listen, "/upper-streamed-h2-h1", seen1);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(!text.contains("content-length"), "{text}");
    assert!(text.ends_with("\r\n\r\nFIRSTSECOND"), "{text}");
    // HTTP/2 client to an HTTP/2 upstream.
    let (status, had, text, seen2) = h2_upload(to_h2.listen, "/upper-streamed-h2-h2", seen2);
    assert_eq!((status, had.as_deref()), (200, Some("no")), "{text}");
    assert_eq!(text, "FIRSTSECOND");
    // Each piece in its own message. An HTTP/1 client's end comes alone after the last
    // data (Envoy's HTTP/1 codec hands it over in a call of its own, checked against
    // Envoy in tests/ext_proc_parity.rs); an HTTP/2 client's with its last DATA frame.
    for (path, want) in [
        ("/upper-streamed-h1", &["first", "second", ""][..]),
        ("/upper-streamed-h1-h2", &["first", "second", ""][..]),
        ("/upper-streamed-h2-h1", &["first", "second"][..]),
        ("/upper-streamed-h2-h2", &["first", "second"][..]),
    ] {
        let bodies = p.seen(path, "request_body");
        let sent: Vec<_> = bodies.iter().map(|b| b["body"].as_str().unwrap()).collect();
        assert_eq!(sent, want, "{path}: {bodies:?}");
        let ends: Vec<bool> = bodies.iter().map(|b| b["end_of_stream"] == true).collect();
        assert_eq!(ends.iter().filter(|e| **e).count(), 1, "{path}: {bodies:?}");
        assert_eq!(ends.last(), Some(&true), "{path}: {bodies:?}");
    }
    // An immediate response to the second piece: the client gets it (the upstream
    // request is dropped), and an HTTP/1 client's connection closes after it (the
    // proxy has not read its body whole).
    for (proxy, seen) in [(&to_h1, &seen1), (&to_h2, &seen2)] {
        let mut c = Conn::connect(proxy.listen);
        c.set_timeout(std::time::Duration::from_secs(10));
        c.send("POST /upper-streamed-body-deny HTTP/1.1\r\nHost: svc\r\ncontent-length: 11\r\n\r\nfirst");
        first_seen(seen, "body-deny");
        c.send("second");
        let r = c.read_response().unwrap();
        assert_eq!((r.status, r.body_str().as_str()), (403, "body denied"));
        assert!(c.closed_within(std::time::Duration::from_secs(5)));
    }
    let (status, _, text, seen1) = h2_upload(to_h1.listen, "/upper-streamed-body-deny-2", seen1);
    assert_eq!((status, text.as_str()), (403, "body denied"));
    let (status, _, text, _) = h2_upload(to_h2.listen, "/upper-streamed-body-deny-2", seen2);
    assert_eq!((status, text.as_str()), (403, "body denied"));
    // Both workers serve on.
    assert_eq!(
        h1_upload(to_h1.listen, "/upper-streamed-after", &seen1).status,
        200
    );
}

/// A `STREAMED` request body under a retry policy and a mirror policy: a retry sends
/// the body as the processor made it the first time (kept as it went up; the processor
/// sees it once, as Envoy's router retries from its own buffer), and the shadow gets
/// it as the processor made it too (Envoy's router mirrors what its filters let
/// through), both without the client's Content-Length; from an HTTP/1 and an HTTP/2
/// client.
#[test]
fn streamed_request_bodies_are_retried_and_mirrored_as_processed() {
    let p = Processor::start();
    let up = Upstream::start(fail_first(1, status_oops(503)));
    let shadow = Upstream::echo();
    // The streamed route with a retry policy and a mirror policy, and the shadow's
    // cluster.
    let cfg = config(up.addr, "http1", processor_addr(&p), "")
        .replace(
            "          - match: { prefix: /upper-streamed }\n            cluster: backend\n",
            "          - match: { prefix: /upper-streamed }\n            cluster: backend\n            retry_policy: { retry_on: 5xx, retry_back_off: { base_interval: 0.001s } }\n            request_mirror_policies:\n              - cluster: shadow\n",
        )
        .replace(
            "clusters:\n",
            &format!(
                "clusters:\n  - name: shadow\n    connect_timeout: 1s\n    endpoints:\n      - {{ address: 127.0.0.1, port: {} }}\n",
                shadow.addr.port()
            ),
        );
    assert!(
        cfg.contains("retry_on") && cfg.contains("name: shadow"),
        "{cfg}"
    );
    let proxy = Proxy::start(&cfg);
    let body = letters(40_000);
    let mut c = Conn::connect(proxy.listen);
    c.send(length_post("/upper-streamed-retried", &body));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    // (`read_response` returns once the head and body are in; the upstream's second
    // request is the one that answered.)
    assert_eq!(up.heads(), 2, "one retry");
    let h2 = letters(30_000);
    let (status, _) = h2_stream_post(&proxy.url("/upper-streamed-retried-h2"), &h2);
    assert_eq!(status, 200);
    for (path, sent) in [
        ("/upper-streamed-retried", &body),
        ("/upper-streamed-retried-h2", &h2),
    ] {
        let tries: Vec<_> = up
            .requests()
            .into_iter()
            .filter(|r| r.target == path)
            .collect();
        assert!(!tries.is_empty(), "{path}");
        for t in &tries {
            assert_eq!(
                t.body,
                sent.to_uppercase().as_bytes(),
                "{path}: {}",
                t.describe()
            );
            assert_eq!(t.header("content-length"), None, "{path}");
        }
        let seen = p.seen(path, "request_body");
        let all: String = seen.iter().map(|b| b["body"].as_str().unwrap()).collect();
        assert_eq!(&all, sent, "{path}: the processor saw the body once");
        let copy = wait_until(std::time::Duration::from_secs(5), || {
            shadow.requests().into_iter().find(|r| r.target == path)
        })
        .unwrap_or_else(|| panic!("{path}: no shadow"));
        assert_eq!(
            copy.body,
            sent.to_uppercase().as_bytes(),
            "{path}: the shadow's body"
        );
        assert_eq!(copy.header("content-length"), None, "{path}");
    }
}

/// With a filter that holds the request body in the same chain (the buffer filter), a
/// `STREAMED` body is held with it: its pieces go to the processor as the hold reads
/// them, and the upstream gets the processed body whole, with its length.
#[test]
fn a_streamed_request_body_is_held_with_a_filter_that_holds_it() {
    let p = Processor::start();
    let up = Upstream::echo();
    let filter = "          processing_mode: { request_body_mode: STREAMED }\n      - name: buf\n        buffer: { max_request_bytes: 65536 }\n";
    let proxy = Proxy::start(&config(up.addr, "http1", processor_addr(&p), filter));
    let mut c = Conn::connect(proxy.listen);
    c.send(chunked_post("/upper-held", "hello world"));
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    let req = up.last_request();
    assert_eq!(req.body, b"HELLO WORLD", "{}", req.describe());
    assert_eq!(req.header("content-length"), Some("11"));
    let sent: String = p
        .seen("/upper-held", "request_body")
        .iter()
        .map(|b| b["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, "hello world");
}

/// A streaming call through ext_proc with the request body `STREAMED` and the response
/// headers sent (an HTTP/2 client and upstream; the upstream answers at once and echoes
/// each DATA frame as it comes): the response head goes to the processor while the
/// request body still streams (the two sides take turns on the processing stream), and
/// each request piece reaches the upstream processed while the client waits for its
/// echo before sending the next.
#[test]
fn a_streaming_call_processes_both_sides_at_once() {
    let p = Processor::start();
    let up = h2client::h2_serve(|req, mut respond| async move {
        let mut body = req.into_body();
        let resp = http::Response::builder().status(200).body(()).unwrap();
        let Ok(mut send) = respond.send_response(resp, false) else {
            return;
        };
        while let Some(Ok(d)) = body.data().await {
            let _ = body.flow_control().release_capacity(d.len());
            send.reserve_capacity(d.len());
            let _ = send.send_data(d, false);
        }
        let _ = send.send_data(bytes::Bytes::new(), true);
    });
    let proxy = Proxy::start(&config(up, "http2", processor_addr(&p), ""));
    let url = proxy.url("/upper-streamed-resp-mutate");
    let listen = proxy.listen;
    h2client::run(move || async move {
        let mut c = h2client::connect(listen).await;
        let req = h2client::request("POST", &url).body(()).unwrap();
        let (response, mut send) = c.send_request(req, false).expect("send the request");
        send.send_data(bytes::Bytes::from_static(b"first"), false)
            .unwrap();
        let resp = h2client::within(std::time::Duration::from_secs(5), "the head", response)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()
                .get("x-resp-added")
                .map(|v| v.to_str().unwrap()),
            Some("yes"),
            "the response headers went to the processor"
        );
        let mut body = resp.into_body();
        let mut got = Vec::new();
        for (want, next) in [("FIRST", Some("second")), ("FIRSTSECOND", None)] {
            while got != want.as_bytes() {
                let d = h2client::within(std::time::Duration::from_secs(5), want, body.data());
                let d = d.await.expect("more DATA").expect("DATA");
                let _ = body.flow_control().release_capacity(d.len());
                got.extend_from_slice(&d);
            }
            match next {
                Some(n) => send.send_data(bytes::Bytes::from(n), false).unwrap(),
                None => send.send_data(bytes::Bytes::new(), true).unwrap(),
            }
        }
        while let Some(d) = h2client::within(h2client::STEP, "the end", body.data()).await {
            assert!(d.expect("DATA").is_empty());
        }
    });
    // The head may go to the processor before or after the first piece; the second
    // piece went after it (the client waited for the head).
    let seen: Vec<String> = p
        .messages()
        .iter()
        .filter(|m| m["path"] == "/upper-streamed-resp-mutate")
        .map(|m| {
            format!(
                "{} {}",
                m["kind"].as_str().unwrap(),
                m["body"].as_str().unwrap_or("")
            )
        })
        .collect();
    let at = |what: &str| seen.iter().position(|m| m.trim() == what);
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(at("request_headers"), Some(0), "{seen:?}");
    assert!(at("request_body first").is_some(), "{seen:?}");
    assert!(
        at("response_headers") < at("request_body second"),
        "{seen:?}"
    );
    assert_eq!(at("request_body"), Some(4), "the lone end: {seen:?}");
}

/// The same retry from an HTTP/2 client to an HTTP/2 cluster (the body goes up frame by
/// frame under the retry policy, `to_h2_retry.rs`): the first answer, a `503` after the
/// whole body, is retried with the body as the processor made it, which the processor
/// saw once.
#[test]
fn a_streamed_request_body_to_an_http2_cluster_is_retried_as_processed() {
    let p = Processor::start();
    let tries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = tries.clone();
    let up = h2client::h2_serve(move |req, mut respond| {
        let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let (parts, mut body) = req.into_parts();
            let mut got = Vec::new();
            while let Some(Ok(d)) = body.data().await {
                let _ = body.flow_control().release_capacity(d.len());
                got.extend_from_slice(&d);
            }
            let status = if n == 0 { 503 } else { 200 };
            let had = parts.headers.contains_key("content-length");
            let resp = http::Response::builder()
                .status(status)
                .header("x-had-length", if had { "yes" } else { "no" })
                .body(())
                .unwrap();
            if let Ok(mut send) = respond.send_response(resp, false) {
                send.reserve_capacity(got.len());
                let _ = send.send_data(bytes::Bytes::from(got), true);
            }
        }
    });
    let cfg = config(up, "http2", processor_addr(&p), "").replace(
        "          - match: { prefix: /upper-streamed }\n            cluster: backend\n",
        "          - match: { prefix: /upper-streamed }\n            cluster: backend\n            retry_policy: { retry_on: 5xx, retry_back_off: { base_interval: 0.001s } }\n",
    );
    assert!(cfg.contains("retry_on"), "{cfg}");
    let proxy = Proxy::start(&cfg);
    let sent = letters(50_000);
    let url = proxy.url("/upper-streamed-retried");
    let listen = proxy.listen;
    let body = sent.clone();
    let reply = h2client::run(move || async move {
        let mut c = h2client::connect(listen).await;
        let req = h2client::request("POST", &url)
            .header("content-length", body.len().to_string())
            .body(())
            .unwrap();
        h2client::send(&mut c, req, body.as_bytes()).await
    });
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-had-length"), Some("no"));
    assert!(
        reply.body == sent.to_uppercase().as_bytes(),
        "{} bytes",
        reply.body.len()
    );
    assert_eq!(tries.load(std::sync::atomic::Ordering::SeqCst), 2);
    let seen = p.seen("/upper-streamed-retried", "request_body");
    let all: String = seen.iter().map(|b| b["body"].as_str().unwrap()).collect();
    assert_eq!(all, sent, "the processor saw the body once");
}

/// An HTTP/2 request whose trailers end its `STREAMED` body: the processor gets the body
/// without an end-of-stream message (none is sent when trailers end the body, as in
/// Envoy; they are not sent to it with `request_trailer_mode` unset), and the trailers
/// follow the processed body to the HTTP/2 upstream.
#[test]
fn a_streamed_request_body_ended_by_trailers_keeps_them() {
    let p = Processor::start();
    let up = h2client::h2_trailer_echo();
    let proxy = Proxy::start(&config(up, "http2", processor_addr(&p), ""));
    let r = h2client::post_with_trailers(
        proxy.listen,
        proxy.url("/upper-streamed-trailers"),
        b"hello",
        &[("x-t1", "one")],
    );
    assert_eq!((r.status, r.body_str().as_str()), (200, "body"), "{r:?}");
    assert_eq!(r.header("x-req-trailers"), Some("x-t1=one"));
    let bodies = p.seen("/upper-streamed-trailers", "request_body");
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["body"], "hello");
    assert_eq!(bodies[0]["end_of_stream"], false);
    assert!(p
        .seen("/upper-streamed-trailers", "request_trailers")
        .is_empty());
}

/// An upstream that answers after the head (as nginx's `return 200`) while a `STREAMED`
/// request body is still going through the processor: the body is cut at the answer (a
/// body a filter takes piece by piece waits a processor round trip per piece, so it is
/// not finished first: `http/early_answer.rs`) and the client's connection closes after
/// it; a body passed on as it came (ext_proc off on the route) is finished first and the
/// connection stays.
#[test]
fn an_early_answer_cuts_a_streamed_request_body_but_not_a_plain_one() {
    let p = Processor::start();
    let read_whole = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let up = common::raw::answers_before_reading(read_whole);
    let proxy = Proxy::start(&config(up, "http1", processor_addr(&p), ""));
    let mut c = Conn::connect(proxy.listen);
    let body = letters(16 * 1024);
    c.send(length_post("/skip", &body));
    let r = c.read_response().expect("the plain upload's answer");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(!r.says_close(), "plain: {:?}", r.headers);
    // 256 KiB: several pieces, each a processor round trip, so the upstream's answer
    // comes while the body is still streaming, however the machine is loaded.
    c.send(length_post("/upper-streamed", &letters(256 * 1024)));
    let r = c.read_response().expect("the streamed upload's answer");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(r.says_close(), "streamed: {:?}", r.headers);
}
