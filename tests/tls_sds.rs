//! Envoy's SDS from files through the real binary: a listener's certificate and a
//! cluster's validation context delivered as secrets in SDS files
//! (`path_config_source`), rotated by a Kubernetes-style `..data` swap (new handshakes
//! get the new secret, live connections carry on), and the errors Envoy's rules give,
//! each naming its field.

mod common;
mod pki;
mod sds;

use common::*;
use pki::{path, Ca};
use sds::*;

/// Writes `bootstrap` (fixed ports: validate binds nothing) and runs `outrigger validate` on it: whether
/// it passed, and its output.
fn validate(dir: &TempDir, bootstrap: &str) -> (bool, String) {
    let file = dir.join("bootstrap.yaml");
    std::fs::write(
        &file,
        bootstrap
            .replace("@ADMIN_PORT@", "19001")
            .replace("@PORT@", "19002"),
    )
    .unwrap();
    let out = run_cli(&["validate", "-c", &path(&file)], IO_TIMEOUT);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn an_sds_file_serves_the_listener_certificate_and_a_directory_swap_rotates_it() {
    let dir = TempDir::new("sds");
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
    let proxy = Proxy::start(&downstream_bootstrap(
        &sds_config(&vol.file("sds.yaml"), &vol.dir),
        "",
    ));
    assert_eq!(served(proxy.listen), Some(der(&a.cert)));
    let mut live = connect(proxy.listen, &any_cert_client()).unwrap();
    assert_eq!(tls_get(&mut live).unwrap(), (200, "from sds".into()));

    // The files the secret names change (the SDS file itself does not).
    vol.publish(&[
        ("tls.crt", &read(&b.cert)),
        ("tls.key", &read(&b.key)),
        ("sds.yaml", secret.as_bytes()),
    ]);
    let want = Some(der(&b.cert));
    let rotated = wait_until(IO_TIMEOUT, || (served(proxy.listen) == want).then_some(()));
    assert!(rotated.is_some(), "{}", proxy.stderr());
    assert_eq!(
        tls_get(&mut live).unwrap(),
        (200, "from sds".into()),
        "live"
    );

    // The SDS file changes: the secret names other files.
    vol.publish(&[("sds.yaml", tls_secret("server", &c.cert, &c.key).as_bytes())]);
    let want = Some(der(&c.cert));
    let rotated = wait_until(IO_TIMEOUT, || (served(proxy.listen) == want).then_some(()));
    assert!(rotated.is_some(), "{}", proxy.stderr());

    // A file with another secret is rejected, as Envoy rejects the update: the running
    // secret keeps serving.
    vol.publish(&[("sds.yaml", tls_secret("other", &a.cert, &a.key).as_bytes())]);
    let logged = wait_until(IO_TIMEOUT, || {
        proxy
            .stderr()
            .contains("Unexpected SDS secret (expecting server): other")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", proxy.stderr());
    assert_eq!(served(proxy.listen), Some(der(&c.cert)));
    assert_eq!(
        tls_get(&mut live).unwrap(),
        (200, "from sds".into()),
        "live"
    );
}

/// A plain listener on `@PORT@` routing to cluster `up` at `upstream` over TLS, whose
/// validation context is the SDS secret `upstream-ca` in `file`.
fn upstream_bootstrap(file: &std::path::Path, dir: &std::path::Path, upstream: u16) -> String {
    format!(
        r#"node: {{ id: test, cluster: test }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: plain
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: plain
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: up }}
          http_filters: [{ROUTER}]
  clusters:
  - name: up
    connect_timeout: 2s
    type: STATIC
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: upstream.test
        common_tls_context:
          validation_context_sds_secret_config:
            name: upstream-ca
            sds_config: {sds}
"#,
        sds = sds_config(file, dir)
    )
}

#[test]
fn an_sds_validation_context_checks_the_upstream_and_rotates() {
    let dir = TempDir::new("sds");
    let ca = Ca::new("upstream CA");
    let other_ca = Ca::new("other CA");
    let ca_pem = ca.write(dir.path(), "ca.pem");
    let other_pem = other_ca.write(dir.path(), "other.pem");
    let leaf = ca.leaf(dir.path(), "upstream", pki::server(&["upstream.test"]));
    let upstream = tls_upstream(&leaf);
    let mut vol = K8sVolume::new(&dir.join("secret"));
    let secret = |ca: &std::path::Path, san: &str| {
        ca_secret(
            "upstream-ca",
            ca,
            &format!(
                "    match_typed_subject_alt_names: [{{ san_type: DNS, matcher: {{ exact: {san} }} }}]\n"
            ),
        )
    };
    vol.publish(&[("ca.yaml", secret(&ca_pem, "upstream.test").as_bytes())]);
    let proxy = Proxy::start(&upstream_bootstrap(
        &vol.file("ca.yaml"),
        &vol.dir,
        upstream.port(),
    ));
    let r = get(proxy.listen, "x", "/");
    assert_eq!((r.status, r.body_str().as_str()), (200, "upstream"));

    let until = |status: u16| {
        let r = wait_until(IO_TIMEOUT, || {
            (common::get(proxy.listen, "x", "/").status == status).then_some(())
        });
        assert!(r.is_some(), "never {status}: {}", proxy.stderr());
    };
    // A SAN matcher the upstream does not satisfy, then the right one again.
    vol.publish(&[("ca.yaml", secret(&ca_pem, "other.test").as_bytes())]);
    until(503);
    // The CA inline this time.
    let inline = secret(&ca_pem, "upstream.test").replace(
        &format!("{{ filename: \"{}\" }}", path(&ca_pem)),
        &format!(
            "{{ inline_string: {} }}",
            serde_json::to_string(&ca.pem).unwrap()
        ),
    );
    assert!(inline.contains("inline_string"));
    vol.publish(&[("ca.yaml", inline.as_bytes())]);
    until(200);
    // A CA that did not sign the upstream's certificate.
    vol.publish(&[("ca.yaml", secret(&other_pem, "upstream.test").as_bytes())]);
    until(503);
}

#[test]
fn sds_errors_follow_envoy_and_name_the_field() {
    let dir = TempDir::new("sds");
    let ca = Ca::new("mesh CA");
    let a = ca.leaf(dir.path(), "a", pki::server(&["proxy.test"]));
    let file = dir.join("sds.yaml");
    let field = "tls_certificate_sds_secret_configs[0]";
    let boot = || downstream_bootstrap(&sds_config(&file, dir.path()), "");
    let check = |sds: Option<&str>, wants: &[&str]| {
        match sds {
            Some(text) => std::fs::write(&file, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(&file);
            }
        }
        let (ok, out) = validate(&dir, &boot());
        assert!(!ok, "accepted: {sds:?}");
        for w in wants {
            assert!(out.contains(w), "want `{w}` in:\n{out}");
        }
    };
    // Envoy: "paths must refer to an existing path in the system".
    check(None, &[&format!("{field}.sds_config"), "does not exist"]);
    check(
        Some(&tls_secret("other", &a.cert, &a.key)),
        &[field, "Unexpected SDS secret (expecting server): other"],
    );
    let two = tls_secret("server", &a.cert, &a.key);
    let two = two.clone() + &two.replace("version_info: \"1\"\nresources:\n", "");
    check(Some(&two), &[field, "expected 1"]);
    check(
        Some("version_info: \"1\"\n"),
        &[field, "Missing SDS resources"],
    );
    check(
        Some(&tls_secret("server", &a.cert, &a.key).replace(
            "private_key: { filename:",
            "private_key: { environment_variable:",
        )),
        &[field, "private_key.environment_variable", "not supported"],
    );
    check(
        Some(&tls_secret("server", &a.cert, &a.key).replace(
            "    private_key:",
            "    password: { inline_string: x }\n    private_key:",
        )),
        &[field, "password", "not supported"],
    );
    check(
        Some(&ca_secret("server", &a.cert, "")),
        &[field, "is not a `tls_certificate`"],
    );
    // A bootstrap without ADS has no stream to take `{ ads: {} }` secrets from.
    std::fs::write(&file, tls_secret("server", &a.cert, &a.key)).unwrap();
    let (ok, out) = validate(&dir, &downstream_bootstrap("{ ads: {} }", ""));
    assert!(
        !ok && out.contains(&format!("{field}.sds_config.ads")),
        "{out}"
    );
    // The good file passes, and the deprecated `path` form too.
    let (ok, out) = validate(&dir, &boot());
    assert!(ok, "{out}");
    let (ok, out) = validate(
        &dir,
        &downstream_bootstrap(&format!("{{ path: \"{}\" }}", path(&file)), ""),
    );
    assert!(ok, "{out}");
}

/// An SDS file with one `tls_certificate` secret `server` given as inline PEM.
fn inline_secret(leaf: &pki::Leaf) -> String {
    let pem =
        |p: &std::path::Path| serde_json::to_string(&std::fs::read_to_string(p).unwrap()).unwrap();
    format!(
        r#"resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: server
  tls_certificate:
    certificate_chain: {{ inline_string: {} }}
    private_key: {{ inline_string: {} }}
"#,
        pem(&leaf.cert),
        pem(&leaf.key)
    )
}

#[test]
fn an_inline_secret_serves_and_rotates_with_its_sds_file() {
    let dir = TempDir::new("sds");
    let ca = Ca::new("mesh CA");
    let a = ca.leaf(dir.path(), "a", pki::server(&["proxy.test"]));
    let b = ca.leaf(dir.path(), "b", pki::server(&["proxy.test"]));
    let file = dir.join("sds.yaml");
    write_atomic(&file, &inline_secret(&a));
    let proxy = Proxy::start(&downstream_bootstrap(
        &format!("{{ path: \"{}\" }}", path(&file)),
        "",
    ));
    assert_eq!(served(proxy.listen), Some(der(&a.cert)));
    write_atomic(&file, &inline_secret(&b));
    let want = Some(der(&b.cert));
    let rotated = wait_until(IO_TIMEOUT, || (served(proxy.listen) == want).then_some(()));
    assert!(rotated.is_some(), "{}", proxy.stderr());
}
