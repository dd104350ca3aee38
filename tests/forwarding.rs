//! The X-Forwarded-For trust policy (Envoy's `use_remote_address`,
//! `xff_num_trusted_hops`, `skip_xff_append`) and the stream idle timeout, on the
//! HTTP/1 path; tests/http2.rs covers the HTTP/2 paths.

mod common;

use std::time::Duration;

use common::*;

fn through(forwarding: &str, request: &str) -> Recorded {
    let up = Upstream::echo();
    let extra = if forwarding.is_empty() {
        String::new()
    } else {
        format!("    forwarding: {{ {forwarding} }}\n")
    };
    let proxy = Proxy::start(&proxy_config_with(up.addr, "5s", &extra));
    let mut c = Conn::connect(proxy.listen);
    c.send(request);
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_str());
    up.last_request()
}

const WITH_XFF: &str =
    "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.10\r\nX-Forwarded-For: 203.0.113.1\r\nX-Forwarded-Proto: https\r\n\r\n";

#[test]
fn sidecar_default_appends_the_peer_and_sets_the_scheme() {
    let req = through("", WITH_XFF);
    assert_eq!(
        req.headers_named("x-forwarded-for"),
        vec!["192.0.2.10,203.0.113.1,127.0.0.1"]
    );
    assert_eq!(req.headers_named("x-forwarded-proto"), vec!["http"]);
}

#[test]
fn behind_a_trusted_proxy_xff_and_the_scheme_pass_unchanged() {
    let req = through("use_remote_address: false", WITH_XFF);
    assert_eq!(
        req.headers_named("x-forwarded-for"),
        vec!["192.0.2.10", "203.0.113.1"]
    );
    assert_eq!(req.headers_named("x-forwarded-proto"), vec!["https"]);
    // Without an incoming scheme, the connection's is set.
    let req = through(
        "use_remote_address: false",
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    assert_eq!(req.header("x-forwarded-for"), None);
    assert_eq!(req.headers_named("x-forwarded-proto"), vec!["http"]);
}

#[test]
fn trusted_hops_keep_the_previous_hops_scheme() {
    let req = through("xff_num_trusted_hops: 1", WITH_XFF);
    assert_eq!(
        req.headers_named("x-forwarded-for"),
        vec!["192.0.2.10,203.0.113.1,127.0.0.1"]
    );
    assert_eq!(req.headers_named("x-forwarded-proto"), vec!["https"]);
}

#[test]
fn skip_xff_append_leaves_xff_alone() {
    let req = through("skip_xff_append: true", WITH_XFF);
    assert_eq!(
        req.headers_named("x-forwarded-for"),
        vec!["192.0.2.10", "203.0.113.1"]
    );
    assert_eq!(req.headers_named("x-forwarded-proto"), vec!["http"]);
}

#[test]
fn a_silent_upstream_ends_at_the_stream_idle_timeout() {
    // The upstream reads the request and never answers; the route timeout is off, so
    // only the stream idle timeout ends the wait.
    let up = Upstream::start(delayed(Duration::from_secs(30)));
    let proxy = Proxy::start(&proxy_config_with(
        up.addr,
        "0s",
        "    stream_idle_timeout: 1s\n",
    ));
    let mut c = Conn::connect(proxy.listen);
    c.set_timeout(Duration::from_secs(10));
    c.send("GET /silent HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.read_response().expect("a 504 at the stream idle timeout");
    assert_eq!(r.status, 504, "{}", r.body_str());
    assert_eq!(r.body_str(), "stream timeout");
    assert!(r.says_close());
    let l = proxy.listener_stats("main");
    assert_eq!(flag_count(&l, "SI"), 1, "{l}");
}
