//! SDS from files against Envoy 1.40: the same bootstrap (a listener whose certificate
//! is the secret in a `path_config_source` file, in a Kubernetes-style volume) under
//! both proxies, both reading the same volume. Each step rotates the volume and waits
//! until both serve what Envoy serves: the files the secret names replaced, then the
//! SDS file naming other files, then a file with another secret's name (rejected by
//! both: the previous certificate keeps serving).

mod common;
mod pki;
mod sds;

use common::envoy::{envoy_or_skip, Envoy};
use common::*;
use pki::Ca;
use sds::*;

/// The value of Envoy's counter `name` (`/stats?filter=`), 0 if absent.
fn envoy_counter(envoy: &Envoy, name: &str) -> u64 {
    let r = common::get(envoy.admin, "x", &format!("/stats?filter=^{name}$"));
    r.body_str()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn both_serve_the_sds_certificate_before_and_after_rotation() {
    let Some(bin) = envoy_or_skip("both_serve_the_sds_certificate_before_and_after_rotation")
    else {
        return;
    };
    let dir = TempDir::new("sds-parity");
    let ca = Ca::new("mesh CA");
    let a = ca.leaf(dir.path(), "a", pki::server(&["proxy.test"]));
    let b = ca.leaf(dir.path(), "b", pki::server(&["proxy.test"]));
    let c = ca.leaf(dir.path(), "c", pki::server(&["proxy.test"]));
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let mut vol = K8sVolume::new(&dir.join("secret"));
    let secret = tls_secret("server", &vol.file("tls.crt"), &vol.file("tls.key"));
    vol.publish(&[
        ("tls.crt", &read(&a.cert)),
        ("tls.key", &read(&a.key)),
        ("sds.yaml", secret.as_bytes()),
    ]);
    let bootstrap = downstream_bootstrap(&sds_config(&vol.file("sds.yaml"), &vol.dir), "");
    let envoy = Envoy::start(&bin, &bootstrap);
    let proxy = Proxy::start(&bootstrap);
    let both = |want: &std::path::Path, step: &str| {
        let want = Some(der(want));
        for (who, addr) in [("envoy", envoy.listen), ("outrigger", proxy.listen)] {
            let ok = wait_until(IO_TIMEOUT, || (served(addr) == want).then_some(()));
            assert!(
                ok.is_some(),
                "{step}: {who} does not serve it:\n{}",
                proxy.stderr()
            );
            let mut s = connect(addr, &any_cert_client()).unwrap();
            assert_eq!(tls_get(&mut s).unwrap(), (200, "from sds".into()), "{who}");
        }
    };
    both(&a.cert, "start");
    let mut live = [
        connect(envoy.listen, &any_cert_client()).unwrap(),
        connect(proxy.listen, &any_cert_client()).unwrap(),
    ];

    vol.publish(&[
        ("tls.crt", &read(&b.cert)),
        ("tls.key", &read(&b.key)),
        ("sds.yaml", secret.as_bytes()),
    ]);
    both(&b.cert, "the named files replaced");

    vol.publish(&[("sds.yaml", tls_secret("server", &c.cert, &c.key).as_bytes())]);
    both(&c.cert, "the SDS file names other files");

    vol.publish(&[("sds.yaml", tls_secret("other", &a.cert, &a.key).as_bytes())]);
    let rejected = wait_until(IO_TIMEOUT, || {
        (envoy_counter(&envoy, "sds.server.update_rejected") >= 1
            && proxy
                .stderr()
                .contains("Unexpected SDS secret (expecting server): other"))
        .then_some(())
    });
    assert!(rejected.is_some(), "{}", proxy.stderr());
    both(&c.cert, "another secret's name is rejected");
    for s in &mut live {
        assert_eq!(tls_get(s).unwrap(), (200, "from sds".into()), "live");
    }
}
