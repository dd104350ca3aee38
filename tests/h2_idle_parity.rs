//! The cluster idle timeout on HTTP/2 upstream connections (Envoy's
//! `common_http_protocol_options.idle_timeout`): a connection with no stream for that
//! long is closed, the next request opens a new one, and `upstream_cx_idle_timeout`
//! counts it. The same bootstrap goes to Envoy 1.40 and to Outrigger against an h2c
//! upstream that counts the connections it accepted and those still open.

mod common;
mod h2client;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::envoy::{envoy_or_skip, one_cluster_bootstrap, Envoy};
use common::*;

fn bootstrap(up: SocketAddr) -> String {
    bootstrap_idle(up, "0.4s")
}

fn bootstrap_idle(up: SocketAddr, idle: &str) -> String {
    one_cluster_bootstrap(
        up,
        &format!(
            r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: {{ idle_timeout: {idle} }}
        explicit_http_config: {{ http2_protocol_options: {{}} }}
"#
        ),
    )
}

#[derive(Debug, PartialEq)]
struct Seen {
    statuses: (u16, u16),
    /// The first connection was closed while no request was in flight.
    closed_when_idle: bool,
    /// Connections the upstream accepted in all.
    accepted: usize,
    idle_timeouts: u64,
}

fn exercise(listen: SocketAddr, counts: &h2client::H2Counts, stat: &dyn Fn() -> u64) -> Seen {
    let first = get(listen, "test", "/").status;
    let closed_when_idle = wait_until(Duration::from_secs(5), || {
        (counts.open.load(SeqCst) == 0).then_some(())
    })
    .is_some();
    let second = get(listen, "test", "/").status;
    let idle_timeouts = wait_until(Duration::from_secs(5), || {
        let n = stat();
        (n > 0).then_some(n)
    })
    .unwrap_or(0);
    Seen {
        statuses: (first, second),
        closed_when_idle,
        accepted: counts.total.load(SeqCst),
        idle_timeouts,
    }
}

#[test]
fn envoy_and_outrigger_close_idle_http2_upstream_connections_alike() {
    let Some(bin) =
        envoy_or_skip("envoy_and_outrigger_close_idle_http2_upstream_connections_alike")
    else {
        return;
    };
    let (up, counts) = h2client::h2_upstream_counted(200);
    let envoy = Envoy::start(&bin, &bootstrap(up));
    let admin = envoy.admin;
    let envoy_stat =
        || common::envoy::stat(admin, "cluster.up.upstream_cx_idle_timeout").unwrap_or(0);
    let from_envoy = exercise(envoy.listen, &counts, &envoy_stat);
    drop(envoy);
    let (up, counts) = h2client::h2_upstream_counted(200);
    let proxy = Proxy::start_with(&bootstrap(up), 1);
    let our_stat = || {
        proxy.cluster_stats("up")["cx_idle_timeout"]
            .as_u64()
            .unwrap_or(0)
    };
    let from_outrigger = exercise(proxy.listen, &counts, &our_stat);
    assert_eq!(from_envoy, from_outrigger, "Envoy, then Outrigger");
    assert_eq!(
        from_outrigger,
        Seen {
            statuses: (200, 200),
            closed_when_idle: true,
            accepted: 2,
            idle_timeouts: 1,
        }
    );
}

/// A stream longer than the idle timeout (1.5 s against 1 s): its connection is not
/// idle while it runs, and stays for about the timeout after its end, so a request
/// sent 0.7 s after it reuses the connection. Envoy times from the stream's end;
/// Outrigger's sweep looks every eighth of the timeout while streams are open (a sweep
/// that looked only once per timeout closed it 0.5 s after the stream's end here).
#[test]
fn a_stream_longer_than_the_idle_timeout_keeps_its_connection_after_it_ends() {
    let Some(bin) =
        envoy_or_skip("a_stream_longer_than_the_idle_timeout_keeps_its_connection_after_it_ends")
    else {
        return;
    };
    let run = |listen: SocketAddr, counts: &h2client::H2Counts| {
        let slow = get(listen, "test", "/slow").status;
        std::thread::sleep(Duration::from_millis(700));
        let next = get(listen, "test", "/").status;
        (slow, next, counts.total.load(SeqCst))
    };
    let (up, counts) = h2client::h2_upstream_counted(200);
    let envoy = Envoy::start(&bin, &bootstrap_idle(up, "1s"));
    let from_envoy = run(envoy.listen, &counts);
    drop(envoy);
    let (up, counts) = h2client::h2_upstream_counted(200);
    let proxy = Proxy::start_with(&bootstrap_idle(up, "1s"), 1);
    let from_outrigger = run(proxy.listen, &counts);
    assert_eq!(from_envoy, from_outrigger, "Envoy, then Outrigger");
    assert_eq!(from_outrigger, (200, 200, 1));
}
