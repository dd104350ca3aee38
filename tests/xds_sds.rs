//! SDS over ADS through the real binary, against the tonic management server of the
//! xDS tests: secrets (`tls_certificate`, `validation_context`) delivered on the ADS
//! stream, state of the world and delta, and named by `sds_config: {ads: {}}` in a
//! listener's and a cluster's TLS context. A listener or cluster warms until its secrets
//! arrive; a changed secret serves new handshakes while live connections carry on; a
//! removal is ignored, as Envoy ignores it; a secret that does not load is NACKed and
//! the one in force keeps serving; `/config_dump` redacts private keys.

mod common;
mod pki;
mod sds;
#[allow(dead_code)]
mod xds_server;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use pki::Ca;
use sds::*;
use serde_json::Value;
use xds_server::resources::*;
use xds_server::*;

const T: Duration = Duration::from_secs(20);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn acked(mgmt: &Mgmt, type_url: &str, name: &str) -> bool {
    wait_until(T, || {
        mgmt.seen()
            .iter()
            .any(|s| {
                s.type_url == type_url
                    && !s.nonce.is_empty()
                    && s.error.is_none()
                    && (s.names.is_empty() || s.names.iter().any(|n| n == name))
            })
            .then_some(())
    })
    .is_some()
}

fn listener_certificate_over_ads(api: &str) {
    let dir = TempDir::new("xds-sds");
    let ca = Ca::new("mesh CA");
    let a = ca.leaf(dir.path(), "a", pki::server(&["proxy.test"]));
    let b = ca.leaf(dir.path(), "b", pki::server(&["proxy.test"]));
    let mgmt = Mgmt::start();
    let port = free_port();
    // A cluster, so that a delta server has CDS to answer before LDS is asked for.
    mgmt.set(CLUSTER, &[("c1", eds_cluster("c1"))]);
    mgmt.set(ENDPOINT, &[("c1", endpoints("c1", &[1]))]);
    mgmt.set(LISTENER, &[("tls", tls_listener("tls", port, "server"))]);
    let p = Proxy::start(&bootstrap(mgmt.addr, api));

    // The listener warms until its secret arrives: nothing listens yet, and the client
    // has asked for the secret by name.
    let asked = wait_until(T, || {
        mgmt.seen()
            .iter()
            .any(|s| s.type_url == SECRET && s.names.iter().any(|n| n == "server"))
            .then_some(())
    });
    assert!(asked.is_some(), "{:#?}\n{}", mgmt.seen(), p.stderr());
    assert!(
        Conn::try_connect(addr(port)).is_err(),
        "warming listener accepts"
    );

    mgmt.set(
        SECRET,
        &[(
            "server",
            ads_cert_secret("server", &read(&a.cert), &read(&a.key)),
        )],
    );
    let want = Some(der(&a.cert));
    let up = wait_until(T, || (served(addr(port)) == want).then_some(()));
    assert!(up.is_some(), "{}", p.stderr());
    assert!(acked(&mgmt, SECRET, "server"), "{:#?}", mgmt.seen());
    let mut live = connect(addr(port), &any_cert_client()).unwrap();
    assert_eq!(tls_get(&mut live).unwrap(), (200, "from ads".into()));

    // Rotation: new handshakes get the new certificate, the live connection carries on.
    mgmt.set(
        SECRET,
        &[(
            "server",
            ads_cert_secret("server", &read(&b.cert), &read(&b.key)),
        )],
    );
    let want = Some(der(&b.cert));
    let rotated = wait_until(T, || (served(addr(port)) == want).then_some(()));
    assert!(rotated.is_some(), "{}", p.stderr());
    assert_eq!(
        tls_get(&mut live).unwrap(),
        (200, "from ads".into()),
        "live"
    );

    // A secret that does not load is NACKed; the one in force keeps serving.
    mgmt.set(
        SECRET,
        &[("server", ads_cert_secret("server", "not a pem", "nor this"))],
    );
    let nack = wait_until(T, || {
        mgmt.seen()
            .into_iter()
            .find(|s| s.type_url == SECRET && s.error.is_some())
    });
    let nack = nack.unwrap_or_else(|| panic!("no NACK: {:#?}", mgmt.seen()));
    let detail = nack.error.unwrap();
    assert!(detail.starts_with("secret `server`: "), "{detail}");
    assert_eq!(served(addr(port)), want);

    // Removal: Envoy ignores it (the secret stays until nothing names it).
    mgmt.set(
        SECRET,
        &[(
            "server",
            ads_cert_secret("server", &read(&b.cert), &read(&b.key)),
        )],
    );
    mgmt.remove(SECRET, "server");
    let settled = wait_until(T, || {
        let seen = mgmt.seen();
        let last = seen.iter().rev().find(|s| s.type_url == SECRET)?;
        (last.nonce.starts_with('n')).then_some(())
    });
    assert!(settled.is_some());
    assert_eq!(served(addr(port)), want);
    assert_eq!(
        tls_get(&mut live).unwrap(),
        (200, "from ads".into()),
        "live"
    );

    // `/config_dump`: the secret with its version, its private key redacted.
    let text = p.admin_get("/config_dump").body_str();
    let dump: Value = serde_json::from_str(&text).unwrap();
    let secrets = dump["config"]["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["@type"]
                .as_str()
                .unwrap_or("")
                .ends_with("SecretsConfigDump")
        })
        .unwrap_or_else(|| panic!("{text}"));
    let s = &secrets["dynamic_active_secrets"][0];
    assert_eq!(s["name"], "server", "{text}");
    assert_eq!(
        s["secret"]["tls_certificate"]["private_key"]["inline_string"], "[redacted]",
        "{text}"
    );
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}

#[test]
fn sotw_delivers_rotates_and_keeps_a_listener_certificate() {
    listener_certificate_over_ads("GRPC");
}

#[test]
fn delta_delivers_rotates_and_keeps_a_listener_certificate() {
    listener_certificate_over_ads("DELTA_GRPC");
}

#[test]
fn a_cluster_warms_until_its_validation_context_arrives() {
    let dir = TempDir::new("xds-sds-up");
    let ca = Ca::new("upstream CA");
    let leaf = ca.leaf(dir.path(), "up", pki::server(&["upstream.test"]));
    let upstream = tls_upstream(&leaf);
    let mgmt = Mgmt::start();
    let port = free_port();
    mgmt.set(
        CLUSTER,
        &[("secure", tls_cluster("secure", upstream, "upstream-ca"))],
    );
    mgmt.set(ROUTE, &[("r1", route("r1", "secure"))]);
    mgmt.set(LISTENER, &[("main", listener("main", port, "r1"))]);
    let p = Proxy::start(&bootstrap(mgmt.addr, "DELTA_GRPC"));

    // The route names a cluster that is still warming: 503, as Envoy answers a route to a
    // cluster it does not have yet.
    let status = || {
        let mut c = Conn::try_connect(addr(port)).ok()?;
        c.set_timeout(Duration::from_secs(5));
        c.try_send("GET / HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
        let r = c.read_response().ok()?;
        Some((r.status, r.body_str()))
    };
    let warming = wait_until(T, || status().filter(|(s, _)| *s == 503));
    assert!(warming.is_some(), "{:?}\n{}", status(), p.stderr());

    mgmt.set(
        SECRET,
        &[("upstream-ca", ads_ca_secret("upstream-ca", &ca.pem))],
    );
    let ok = wait_until(T, || status().filter(|(s, _)| *s == 200));
    assert_eq!(
        ok.map(|(_, b)| b),
        Some("upstream".to_string()),
        "{:?}\n{}",
        status(),
        p.stderr()
    );
    assert!(acked(&mgmt, SECRET, "upstream-ca"), "{:#?}", mgmt.seen());
}
