//! A request body and an upstream that does not wait for it: the upstream fails after
//! the body was (partly) forwarded, or answers before the body is complete. The client
//! always gets an answer at once, and the connection closes, since the rest of its
//! request body can no longer be told apart from a next request.

mod common;

use std::time::Duration;

use common::*;

fn post(len: usize) -> String {
    format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n\r\n")
}

/// Checks a 503 local reply that says and does close.
fn assert_503_and_close(c: &mut Conn, what: &str) {
    let r = c
        .read_response()
        .unwrap_or_else(|e| panic!("{what}: no immediate answer: {e}"));
    assert_eq!(r.status, 503, "{what}: {}", r.body_str());
    assert!(r.says_close(), "{what}: {:?}", r.headers);
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "{what}: not closed"
    );
}

#[test]
fn upstream_closing_after_the_whole_body_gets_an_immediate_reply() {
    // The upstream reads the whole request, then closes without a response. The body is
    // gone; reading it again to "discard" it waited for the idle timeout (300 s).
    let up = Upstream::start(close_without_response());
    let proxy = Proxy::start(&proxy_config(up.addr));
    let mut c = Conn::connect(proxy.listen);
    c.send(format!("{}hello", post(5)));
    assert_503_and_close(&mut c, "content-length body");
    let mut c = Conn::connect(proxy.listen);
    c.send("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_503_and_close(&mut c, "chunked body");
    assert_eq!(up.request_count(), 2, "both bodies reached the upstream");
}
