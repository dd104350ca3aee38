//! SDS over ADS beside Envoy 1.40: the same bootstrap and a management server each
//! (`xds_server`, same resources): a TLS listener whose certificate is the ADS secret
//! `server`, then a rotation, a secret whose PEM does not load, and a removal; what a
//! real TLS client is served at each step, whether the live connection carries on, and
//! what the client asked for and answered, compared. State of the world and delta.
//! Skipped without Envoy.

mod common;
mod pki;
mod sds;
#[allow(dead_code)]
mod xds_server;

use std::net::SocketAddr;
use std::time::Duration;

use common::envoy::*;
use common::*;
use pki::Ca;
use sds::*;
use xds_server::resources::*;
use xds_server::*;

const T: Duration = Duration::from_secs(20);

#[derive(Debug, PartialEq)]
struct Seen {
    asked_by_name: bool,
    serves_first: bool,
    rotated: bool,
    live_after_rotation: bool,
    bad_secret_nacked: bool,
    bad_secret_keeps_the_last: bool,
    removal_keeps_the_secret: bool,
    live_at_end: bool,
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn scenario<P>(start: impl Fn(&str) -> P, delta: bool) -> Seen {
    let dir = TempDir::new("xds-sds-parity");
    let ca = Ca::new("mesh CA");
    let a = ca.leaf(dir.path(), "a", pki::server(&["proxy.test"]));
    let b = ca.leaf(dir.path(), "b", pki::server(&["proxy.test"]));
    let mgmt = Mgmt::start();
    let port = free_port();
    let at = SocketAddr::from(([127, 0, 0, 1], port));
    mgmt.set(CLUSTER, &[("c1", eds_cluster("c1"))]);
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[1]))]);
    mgmt.set(LISTENER, &[("tls", tls_listener("tls", port, "server"))]);
    let cert = |l: &pki::Leaf| ads_cert_secret("server", &read(&l.cert), &read(&l.key));
    mgmt.set(SECRET, &[("server", cert(&a))]);
    let proxy = start(&bootstrap(
        mgmt.addr,
        if delta { "DELTA_GRPC" } else { "GRPC" },
    ));
    let is =
        |want: &Option<Vec<u8>>| wait_until(T, || (served(at) == *want).then_some(())).is_some();
    let a_der = Some(der(&a.cert));
    let b_der = Some(der(&b.cert));
    let serves_first = is(&a_der);
    let asked_by_name = mgmt
        .seen()
        .iter()
        .any(|s| s.type_url == SECRET && s.names == ["server"]);
    let mut live = connect(at, &any_cert_client()).ok();
    let live_ok = |live: &mut Option<Tls>| {
        live.as_mut()
            .is_some_and(|l| tls_get(l).is_ok_and(|(s, _)| s == 200))
    };

    mgmt.set(SECRET, &[("server", cert(&b))]);
    let rotated = is(&b_der);
    let live_after_rotation = live_ok(&mut live);

    mgmt.set(
        SECRET,
        &[("server", ads_cert_secret("server", "not a pem", "nor this"))],
    );
    let bad_secret_nacked = wait_until(T, || {
        mgmt.seen()
            .iter()
            .any(|s| s.type_url == SECRET && s.error.is_some())
            .then_some(())
    })
    .is_some();
    let bad_secret_keeps_the_last = served(at) == b_der;

    mgmt.set(SECRET, &[("server", cert(&b))]);
    mgmt.remove(SECRET, "server");
    // The removal has reached the proxy once it answers the server's next response.
    let nonces = |m: &Mgmt| m.seen().iter().filter(|s| s.type_url == SECRET).count();
    let before = nonces(&mgmt);
    wait_until(T, || (nonces(&mgmt) > before).then_some(()));
    let removal_keeps_the_secret = served(at) == b_der;
    let live_at_end = live_ok(&mut live);
    drop(proxy);
    Seen {
        asked_by_name,
        serves_first,
        rotated,
        live_after_rotation,
        bad_secret_nacked,
        bad_secret_keeps_the_last,
        removal_keeps_the_secret,
        live_at_end,
    }
}

fn compare(delta: bool) {
    let Some(bin) = envoy_or_skip("xds_sds_parity") else {
        return;
    };
    let ours = scenario(Proxy::start, delta);
    let envoy = scenario(|b| Envoy::start(&bin, b), delta);
    eprintln!("outrigger: {ours:#?}\nenvoy: {envoy:#?}");
    assert_eq!(ours, envoy);
    assert!(ours.rotated && ours.live_after_rotation, "{ours:#?}");
}

#[test]
fn sotw_secrets_behave_as_envoy() {
    compare(false);
}

#[test]
fn delta_secrets_behave_as_envoy() {
    compare(true);
}
