//! The forwarding policy (`use_remote_address`, `xff_num_trusted_hops`,
//! `skip_xff_append`) on HTTP/2 streams: what an HTTP/1.1 upstream (the echo server)
//! and an HTTP/2 upstream (a second outrigger in front of it) receive in
//! `x-forwarded-for` and `x-forwarded-proto`.

mod common;
mod h2client;

use std::net::SocketAddr;

use common::*;
use h2client::{connect, request};

/// The forwarding headers the upstream got for one HTTP/2 request through `proxy`
/// carrying `headers`.
fn forwarded(proxy: SocketAddr, up: &Upstream, headers: &[(&str, &str)]) -> Recorded {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let status = h2client::run(move || async move {
        let mut client = connect(proxy).await;
        let req = headers
            .iter()
            .fold(request("GET", &format!("http://{proxy}/f")), |b, (n, v)| {
                b.header(n, v)
            })
            .body(())
            .unwrap();
        h2client::send(&mut client, req, b"").await.status
    });
    assert_eq!(status, 200);
    up.last_request()
}

const XFF_AND_XFP: &[(&str, &str)] = &[
    ("x-forwarded-for", "10.0.0.1"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-for", "10.0.0.2, 10.0.0.3"),
];

#[test]
fn the_sidecar_default_appends_the_peer_and_overwrites_the_proto() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config(up.addr));
    let req = forwarded(p.listen, &up, XFF_AND_XFP);
    assert_eq!(
        req.headers_named("x-forwarded-for"),
        ["10.0.0.1,10.0.0.2, 10.0.0.3,127.0.0.1"]
    );
    assert_eq!(req.headers_named("x-forwarded-proto"), ["http"]);
}

#[test]
fn behind_a_trusted_proxy_xff_passes_unchanged() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config_with(
        up.addr,
        "5s",
        "    forwarding: { use_remote_address: false }\n",
    ));
    let req = forwarded(p.listen, &up, XFF_AND_XFP);
    assert_eq!(
        req.headers_named("x-forwarded-for"),
        ["10.0.0.1", "10.0.0.2, 10.0.0.3"]
    );
    assert_eq!(req.headers_named("x-forwarded-proto"), ["https"]);
    // Nothing to keep: no XFF is made up, the proto is set.
    let req = forwarded(p.listen, &up, &[]);
    assert!(req.headers_named("x-forwarded-for").is_empty(), "{req:?}");
    assert_eq!(req.headers_named("x-forwarded-proto"), ["http"]);
}

#[test]
fn a_trusted_hop_keeps_the_incoming_proto() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config_with(
        up.addr,
        "5s",
        "    forwarding: { xff_num_trusted_hops: 1 }\n",
    ));
    let req = forwarded(p.listen, &up, XFF_AND_XFP);
    assert_eq!(
        req.headers_named("x-forwarded-for"),
        ["10.0.0.1,10.0.0.2, 10.0.0.3,127.0.0.1"]
    );
    assert_eq!(req.headers_named("x-forwarded-proto"), ["https"]);
    let req = forwarded(p.listen, &up, &[]);
    assert_eq!(req.headers_named("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(req.headers_named("x-forwarded-proto"), ["http"]);
}

#[test]
fn skip_xff_append_leaves_xff_as_it_came() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config_with(
        up.addr,
        "5s",
        "    forwarding: { skip_xff_append: true }\n",
    ));
    let req = forwarded(p.listen, &up, XFF_AND_XFP);
    assert_eq!(
        req.headers_named("x-forwarded-for"),
        ["10.0.0.1", "10.0.0.2, 10.0.0.3"]
    );
    assert_eq!(req.headers_named("x-forwarded-proto"), ["http"]);
    let req = forwarded(p.listen, &up, &[]);
    assert!(req.headers_named("x-forwarded-for").is_empty(), "{req:?}");
}

#[test]
fn the_policy_holds_towards_an_http2_upstream() {
    // A (behind a trusted proxy: XFF passes unchanged) speaks HTTP/2 to B (defaults), B
    // HTTP/1.1 to the echo server: only B's address is appended.
    let up = Upstream::echo();
    let b = Proxy::start(&proxy_config(up.addr));
    let a_cfg = proxy_config_with(
        b.listen,
        "5s",
        "    forwarding: { use_remote_address: false }\n",
    )
    .replace(
        "    connect_timeout: 1s\n",
        "    connect_timeout: 1s\n    protocol: http2\n",
    );
    let a = Proxy::start(&a_cfg);
    let req = forwarded(a.listen, &up, XFF_AND_XFP);
    assert_eq!(
        req.headers_named("x-forwarded-for"),
        ["10.0.0.1,10.0.0.2, 10.0.0.3,127.0.0.1"]
    );
    assert_eq!(req.headers_named("x-forwarded-proto"), ["http"]);
    assert_eq!(b.listener_stats("main")["rq_total"], 1);
}
