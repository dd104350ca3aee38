//! SDS from files against Envoy 1.40: the same bootstrap (a listener whose certificate
//! is the secret in a `path_config_source` file, in a Kubernetes-style volume) under
//! both proxies, both reading the same volume. Each step rotates the volume and waits
//! until both serve what Envoy serves: the files the secret names replaced, then the
//! SDS file naming other files, then a file with another secret's name (rejected by
//! both: the previous certificate keeps serving). And a `combined_validation_context`
//! (default SAN matchers, the CA from an SDS file in JSON) admits the same clients.

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

#[test]
fn a_combined_validation_context_admits_as_envoy_does() {
    let dir = TempDir::new("sds-parity");
    let ca = Ca::new("mesh CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let server = ca.leaf(dir.path(), "server", pki::server(&["proxy.test"]));
    let web = ca.leaf(dir.path(), "web", pki::client("spiffe://mesh.test/sa/web"));
    let db = ca.leaf(dir.path(), "db", pki::client("spiffe://mesh.test/sa/db"));
    std::fs::write(
        dir.join("server.yaml"),
        tls_secret("server", &server.cert, &server.key),
    )
    .unwrap();
    // JSON in a file not named .yaml: both parse it as JSON.
    let v: serde_json::Value = serde_yaml::from_str(&ca_secret("ca", &ca_pem, "")).unwrap();
    std::fs::write(dir.join("ca.json"), v.to_string()).unwrap();
    let combined = format!(
        "            combined_validation_context:
              default_validation_context:
                match_typed_subject_alt_names: [{{ san_type: URI, matcher: {{ exact: 'spiffe://mesh.test/sa/web' }} }}]
              validation_context_sds_secret_config: {{ name: ca, sds_config: {{ path: \"{}\" }} }}
          require_client_certificate: true
",
        pki::path(&dir.join("ca.json"))
    );
    let bootstrap = downstream_bootstrap(
        &format!("{{ path: \"{}\" }}", pki::path(&dir.join("server.yaml"))),
        &combined,
    );
    // Outrigger always; Envoy when it is installed.
    let proxy = Proxy::start(&bootstrap);
    let envoy = envoy_or_skip("a_combined_validation_context_admits_as_envoy_does")
        .map(|bin| Envoy::start(&bin, &bootstrap));
    let mut targets = vec![("outrigger", proxy.listen.port())];
    targets.extend(envoy.as_ref().map(|e| ("envoy", e.listen.port())));
    for (who, port) in targets {
        let admitted = |leaf: &pki::Leaf| {
            let out = pki::curl_mtls(port, &ca_pem, Some(leaf), &[]);
            out.status.success() && out.stdout == b"from sds"
        };
        assert!(admitted(&web), "{who}: web refused");
        assert!(!admitted(&db), "{who}: db admitted");
        assert!(
            !pki::curl_mtls(port, &ca_pem, None, &[]).status.success(),
            "{who}: no client certificate admitted"
        );
    }
}
