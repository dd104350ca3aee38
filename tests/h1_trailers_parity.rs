//! HTTP/1 chunked trailers and `enable_trailers`, on one Envoy v3 bootstrap run by
//! Envoy 1.40 and by Outrigger. Envoy's HTTP/1 codec ignores trailers unless its
//! `Http1ProtocolOptions.enable_trailers`: the connection manager's
//! (`http_protocol_options`) for the client's side, the cluster's
//! (`HttpProtocolOptions.explicit_http_config.http_protocol_options`) for the
//! upstream's. An HTTP/1 side without it neither reads trailers nor writes them (its
//! chunked body ends `0\r\n\r\n`); an HTTP/2 side always carries them. So trailers
//! pass HTTP/1 to HTTP/1 only when both sides enable them, between an HTTP/2 client
//! and an HTTP/1 upstream when the cluster does, and between an HTTP/1 client and an
//! HTTP/2 upstream when the connection manager does.
//!
//! Two listeners (the default one on `@PORT@`, one with `enable_trailers` on
//! `@PORT2@`), two clusters on the same HTTP/1 upstream (the default `plain`, and
//! `keep` with `enable_trailers`) and an HTTP/2 cluster `h2`; each client (HTTP/1
//! chunked, HTTP/2) sends a request trailer through each pair, and the upstream answers
//! with response trailers. The
//! Outrigger half runs without Envoy too; the comparison needs Envoy
//! (`OUTRIGGER_TEST_ENVOY`, or `loadtest/.venv`), and skips, saying why, without it.

mod common;
mod h2client;

use std::net::SocketAddr;

use common::envoy::{envoy_or_skip, fact_diffs, Envoy, BACKEND_H2, HCM_TYPE, ROUTER_TYPE};
use common::*;
use h2client::{h2_trailer_echo, post_with_trailers};

/// The bootstrap: listener `plain` on `@PORT@`, listener `trailers` (with
/// `enable_trailers`) on `@PORT2@`; on both, `/plain` goes to cluster `plain` and
/// `/keep` to cluster `keep` (with `enable_trailers`), both at `up`, and `/h2` to the
/// HTTP/2 cluster `h2` at `up2`.
fn bootstrap(up: SocketAddr, up2: SocketAddr) -> String {
    let listener = |name: &str, port: &str, options: &str| {
        format!(
            r#"  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM_TYPE}
          stat_prefix: {name}
{options}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /keep }}
                route: {{ cluster: keep }}
              - match: {{ prefix: /h2 }}
                route: {{ cluster: h2 }}
              - match: {{ prefix: / }}
                route: {{ cluster: plain }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": {ROUTER_TYPE} }}
"#
        )
    };
    let cluster = |name: &str, options: &str, up: SocketAddr| {
        format!(
            r#"  - name: {name}
    connect_timeout: 1s
    type: STATIC
{options}    load_assignment:
      cluster_name: {name}
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }} }}] }}]
"#,
            up.port()
        )
    };
    let keep = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http_protocol_options: { enable_trailers: true }
"#;
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
{}{}  clusters:
{}{}{}"#,
        listener("plain", "@PORT@", ""),
        listener(
            "trailers",
            "@PORT2@",
            "          http_protocol_options: { enable_trailers: true }\n"
        ),
        cluster("plain", "", up),
        cluster("keep", keep, up),
        cluster("h2", BACKEND_H2, up2),
    )
}

/// The upstream: a chunked answer with the trailer `x-resp: yes`.
fn upstream() -> Upstream {
    Upstream::start(chunked_response(&["hello"], &[("x-resp", "yes")]))
}

/// An HTTP/1.1 chunked POST with the trailer `x-req: one`: what the client got back
/// (status, body, trailers).
fn h1_post(listen: SocketAddr, path: &str) -> String {
    let mut c = Conn::connect(listen);
    c.send(format!(
        "POST {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-req: one\r\n\r\n"
    ));
    let r = c.read_response().expect("a response");
    format!(
        "status {} body {:?} trailers {:?} {:?} {:?}",
        r.status,
        r.body_str(),
        r.trailer("x-resp"),
        r.trailer("x-trail"),
        r.header("x-req-trailers"),
    )
}

/// An HTTP/2 POST in one DATA frame, then the trailer `x-req: one`: what came back.
fn h2_post(listen: SocketAddr, path: &str) -> String {
    let uri = format!("http://{listen}{path}");
    let reply = post_with_trailers(listen, uri, b"hello", &[("x-req", "one")]);
    let trailer = |name: &str| {
        let t = reply.trailers.as_ref()?.get(name)?;
        t.to_str().ok().map(str::to_string)
    };
    format!(
        "status {} body {:?} trailers {:?} {:?} {:?}",
        reply.status,
        String::from_utf8_lossy(&reply.body),
        trailer("x-resp"),
        trailer("x-trail"),
        reply.header("x-req-trailers"),
    )
}

/// Every case as (label, what the client got, what the upstream got).
fn observe(plain: SocketAddr, trailers: SocketAddr, up: &Upstream) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (listener, addr) in [("plain", plain), ("trailers", trailers)] {
        for cluster in ["plain", "keep", "h2"] {
            let path = format!("/{cluster}");
            for client in ["h1", "h2"] {
                let got = match client {
                    "h1" => h1_post(addr, &path),
                    _ => h2_post(addr, &path),
                };
                let label = format!("{client} client, listener {listener}, cluster {cluster}");
                // The HTTP/2 upstream says what it got in `x-req-trailers`.
                let upstream = match cluster {
                    "h2" => "-".to_string(),
                    _ => {
                        let r = up.last_request();
                        format!(
                            "body {:?} trailers {:?}",
                            String::from_utf8_lossy(&r.body),
                            r.trailers
                        )
                    }
                };
                out.push((label, format!("client: {got}; upstream: {upstream}")));
            }
        }
    }
    out
}

fn run_outrigger(up: &Upstream, up2: SocketAddr) -> Vec<(String, String)> {
    let proxy = Proxy::start(&bootstrap(up.addr, up2));
    observe(proxy.listen, proxy.listen2, up)
}

/// What Envoy's codecs make of each case (see the module doc).
fn expected(client: &str, listener: &str, cluster: &str) -> String {
    // Each HTTP/1 side passes trailers only with its own `enable_trailers`.
    let down = client == "h2" || listener == "trailers";
    let up = cluster != "plain";
    let pass = down && up;
    if cluster == "h2" {
        let (trail, req) = match pass {
            true => ("Some(\"t\")", "Some(\"x-req=one\")"),
            false => ("None", "Some(\"\")"),
        };
        return format!(
            "client: status 200 body \"body\" trailers None {trail} {req}; upstream: -"
        );
    }
    let (resp, req) = match pass {
        true => ("Some(\"yes\")", "[(\"x-req\", \"one\")]"),
        false => ("None", "[]"),
    };
    format!(
        "client: status 200 body \"hello\" trailers {resp} None None; upstream: body \"hello\" trailers {req}"
    )
}

#[test]
fn h1_trailers_pass_only_where_both_codecs_enable_them() {
    let up = upstream();
    let ours = run_outrigger(&up, h2_trailer_echo());
    for (label, seen) in &ours {
        let words: Vec<&str> = label.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        let (client, listener, cluster) = (words[0], words[3], words[5]);
        assert_eq!(seen, &expected(client, listener, cluster), "{label}");
    }
    assert_eq!(ours.len(), 12);
}

#[test]
fn h1_trailers_as_envoy() {
    let Some(bin) = envoy_or_skip("h1_trailers_as_envoy") else {
        return;
    };
    let (up, up2) = (upstream(), h2_trailer_echo());
    let envoy = Envoy::start(&bin, &bootstrap(up.addr, up2));
    let theirs = observe(envoy.listen, envoy.listen2, &up);
    drop(envoy);
    let ours = run_outrigger(&up, up2);
    let diffs = fact_diffs(&theirs, &ours);
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
}
