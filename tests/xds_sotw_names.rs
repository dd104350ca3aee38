//! State of the world and `resource_names`, through the real binary and beside Envoy
//! 1.40: CDS and LDS subscribe with an empty list (the wildcard); EDS names what the
//! clusters need, and when CDS removes the last EDS cluster the list goes empty, which
//! a server reads as the wildcard. What the server then sends is not taken: resources
//! nobody asked for are ignored and the requests that answer them keep the version
//! held, as Envoy does (`GrpcMuxImpl`: "Ignoring unwatched type URL"). (RDS behaves the
//! same, but Envoy keeps a removed listener's routes subscribed while it drains.)

mod common;
#[allow(dead_code)]
mod xds_server;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::*;
use common::*;
use xds_server::resources::*;
use xds_server::*;

const T: Duration = Duration::from_secs(20);

#[derive(Debug, PartialEq)]
struct Seen {
    /// The first CDS and LDS requests name nothing (the wildcard).
    wildcard_requests_empty: bool,
    /// The first EDS request names `c1` only.
    eds_names: Vec<String>,
    /// Once the cluster is gone, an EDS request with no names went out.
    empty_eds_request: bool,
    /// The requests answering the server's full EDS lists kept the version held.
    kept_version: bool,
    /// `/config_dump?include_eds` names `c-other`, which nothing asked for.
    unasked_in_dump: bool,
}

fn answer(port: u16) -> Option<u16> {
    let mut c = Conn::try_connect(SocketAddr::from(([127, 0, 0, 1], port))).ok()?;
    c.set_timeout(Duration::from_secs(5));
    c.try_send("GET / HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
    Some(c.read_response().ok()?.status)
}

fn scenario<P>(start: impl Fn(&str) -> (P, SocketAddr)) -> Seen {
    let up = Upstream::start(fixed(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nup".to_string(),
    ));
    let mgmt = Mgmt::start();
    let port = free_port();
    mgmt.set(CLUSTER, &[("c1", eds_cluster("c1"))]);
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[up.addr.port()]))]);
    mgmt.set(ENDPOINT, &[("c-other", endpoints("c-other", &[1]))]);
    mgmt.set(ROUTE, &[("r1", route("r1", "c1"))]);
    mgmt.set(LISTENER, &[("main", listener("main", port, "r1"))]);
    let (proxy, admin) = start(&bootstrap(mgmt.addr, "GRPC"));
    assert!(wait_until(T, || (answer(port) == Some(200)).then_some(())).is_some());
    let seen = mgmt.seen();
    let first = |t: &str| seen.iter().find(|s| s.type_url == t).cloned();
    let wildcard_requests_empty = [CLUSTER, LISTENER]
        .iter()
        .all(|t| first(t).is_some_and(|s| s.names.is_empty()));
    let eds_names = first(ENDPOINT).map(|s| s.names).unwrap_or_default();
    let held = mgmt.version(ENDPOINT);

    // CDS removes the only EDS cluster: no endpoints are needed any more.
    mgmt.remove(CLUSTER, "c1");
    let empty = wait_until(T, || {
        mgmt.seen()
            .into_iter()
            .position(|s| s.type_url == ENDPOINT && s.names.is_empty() && !s.nonce.is_empty())
    });
    let empty_eds_request = empty.is_some();
    // The server answers that with every ClusterLoadAssignment (at the version held),
    // then, after this change, with a new version of them all; the proxy answers both.
    mgmt.set(ENDPOINT, &[("c-other", endpoints("c-other", &[2]))]);
    let replies = empty.and_then(|i| {
        wait_until(T, || {
            let r: Vec<xds_server::Seen> = mgmt
                .seen()
                .into_iter()
                .skip(i + 1)
                .filter(|s| s.type_url == ENDPOINT)
                .collect();
            (r.len() >= 2).then_some(r)
        })
    });
    let kept_version = replies.is_some_and(|r| r.iter().all(|s| s.version_info == held));
    let dump = http_request(
        admin,
        "GET",
        "/config_dump?include_eds",
        Duration::from_secs(5),
    )
    .map(|r| r.body_str())
    .unwrap_or_default();
    let unasked_in_dump = dump.contains("\"c-other\"");
    drop(proxy);
    Seen {
        wildcard_requests_empty,
        eds_names,
        empty_eds_request,
        kept_version,
        unasked_in_dump,
    }
}

fn ours(b: &str) -> (Proxy, SocketAddr) {
    let p = Proxy::start(b);
    let a = p.admin;
    (p, a)
}

#[test]
fn sotw_names_follow_envoy_and_unasked_resources_are_ignored() {
    assert_eq!(
        scenario(ours),
        Seen {
            wildcard_requests_empty: true,
            eds_names: vec!["c1".into()],
            empty_eds_request: true,
            kept_version: true,
            unasked_in_dump: false,
        }
    );
}

#[test]
fn sotw_names_behave_as_envoy() {
    let Some(bin) = envoy_or_skip("xds_sotw_names") else {
        return;
    };
    let envoy = scenario(|b| {
        let e = Envoy::start(&bin, b);
        let a = e.admin;
        (e, a)
    });
    assert_eq!(scenario(ours), envoy);
}
