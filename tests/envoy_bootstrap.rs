//! Envoy v3 bootstrap files as Outrigger's config (issue 8): `validate` names the field
//! path of what it refuses (unsupported fields, filters, type URLs) and accepts an
//! unknown HTTP filter marked `is_optional`, as Envoy does; the same bootstrap in YAML
//! and in JSON serves; reload and `/config_dump` work for bootstraps. Where Envoy 1.40
//! is installed, it judges the same files too.

mod common;

use std::time::Duration;

use common::envoy::*;
use common::*;

const T: Duration = Duration::from_secs(20);

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// One listener on `@PORT@` routing to cluster `up`; `filters` go before the router,
/// `cluster_extra` into the cluster (both indented for their place).
fn bootstrap(upstream: u16, filters: &str, cluster_extra: &str, body: &str) -> String {
    format!(
        r#"node: {{id: test-node, cluster: test, metadata: {{team: mesh}}}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: @ADMIN_PORT@}}}}
static_resources:
  listeners:
  - name: main
    address: {{socket_address: {{address: 127.0.0.1, port_value: @PORT@}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: main
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: /direct}}
                direct_response: {{status: 200, body: {{inline_string: "{body}"}}}}
              - match: {{prefix: /}}
                route: {{cluster: up, timeout: 5s}}
          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: up
    connect_timeout: 1s
    type: STATIC
{cluster_extra}    load_assignment:
      cluster_name: up
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}}}]}}]
"#
    )
}

/// Writes `text` (placeholders filled with unused ports) and runs `outrigger validate`.
fn validate(dir: &TempDir, name: &str, text: &str) -> (bool, String, std::path::PathBuf) {
    let path = dir.join(name);
    let text = text
        .replace("@ADMIN_PORT@", &free_port().to_string())
        .replace("@PORT@", &free_port().to_string());
    write_atomic(&path, &text);
    let o = run_cli(&["validate", "-c", &path.display().to_string()], T);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), out, path)
}

/// An HTTP filter Outrigger does not implement.
const GRPC_WEB: &str = "          - name: envoy.filters.http.grpc_web
            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb}
";

#[test]
fn validate_accepts_a_supported_bootstrap() {
    let dir = TempDir::new("eb-ok");
    let (ok, out, path) = validate(&dir, "ok.yaml", &bootstrap(9, "", "", "hi"));
    assert!(ok, "{out}");
    assert!(out.contains("ok (1 listeners"), "{out}");
    if let Some(envoy) = envoy_or_skip("validate_accepts_a_supported_bootstrap (Envoy side)") {
        let (ok, out) = envoy_validate(&envoy, &path);
        assert!(ok, "Envoy refuses it:\n{out}");
    }
}

#[test]
fn validate_names_the_path_of_an_unsupported_field() {
    let dir = TempDir::new("eb-field");
    let text = bootstrap(
        9,
        "",
        "    per_connection_buffer_limit_bytes: 32768\n",
        "hi",
    );
    let (ok, out, path) = validate(&dir, "od.yaml", &text);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "static_resources.clusters[0].per_connection_buffer_limit_bytes: not supported by Outrigger"
        ),
        "{out}"
    );
    // The line of the field is reported too.
    assert!(out.contains("line 31:"), "{out}");
    if let Some(envoy) = envoy_or_skip("validate_names_the_path_of_an_unsupported_field") {
        assert!(envoy_validate(&envoy, &path).0, "Envoy accepts it");
    }
}

#[test]
fn validate_names_an_unsupported_http_filter_by_type() {
    let dir = TempDir::new("eb-filter");
    let (ok, out, _) = validate(&dir, "grpc-web.yaml", &bootstrap(9, GRPC_WEB, "", "hi"));
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config: \
             extension type `envoy.extensions.filters.http.grpc_web.v3.GrpcWeb` is not supported by Outrigger"
        ),
        "{out}"
    );
}

#[test]
fn validate_refuses_an_unknown_type_url() {
    let dir = TempDir::new("eb-type");
    let nope = "          - name: acme.nope
            typed_config: {\"@type\": type.googleapis.com/acme.filters.Nope}
";
    let (ok, out, path) = validate(&dir, "nope.yaml", &bootstrap(9, nope, "", "hi"));
    assert!(!ok, "{out}");
    assert!(
        out.contains("http_filters[0].typed_config: unknown extension type `type.googleapis.com/acme.filters.Nope`"),
        "{out}"
    );
    if let Some(envoy) = envoy_or_skip("validate_refuses_an_unknown_type_url (Envoy side)") {
        assert!(!envoy_validate(&envoy, &path).0, "Envoy refuses it too");
    }
}

#[test]
fn an_optional_http_filter_outrigger_lacks_is_skipped_with_a_warning() {
    let dir = TempDir::new("eb-optional");
    let grpc_web = GRPC_WEB.replace(
        "typed_config:",
        "is_optional: true\n            typed_config:",
    );
    let (ok, out, path) = validate(&dir, "grpc-web.yaml", &bootstrap(9, &grpc_web, "", "hi"));
    assert!(ok, "{out}");
    assert!(
        out.contains("skipping optional HTTP filter `envoy.filters.http.grpc_web`"),
        "{out}"
    );
    if let Some(envoy) = envoy_or_skip("an_optional_http_filter_is_skipped (Envoy side)") {
        let (ok, out) = envoy_validate(&envoy, &path);
        assert!(ok, "Envoy refuses it:\n{out}");
    }
}

/// `is_optional` does not cover a type URL outside Envoy's API: Envoy cannot parse it.
#[test]
fn an_optional_filter_of_an_unknown_type_is_still_refused() {
    let dir = TempDir::new("eb-optional-unknown");
    let nope = "          - name: acme.nope
            is_optional: true
            typed_config: {\"@type\": type.googleapis.com/acme.filters.Nope}
";
    let (ok, out, path) = validate(&dir, "nope.yaml", &bootstrap(9, nope, "", "hi"));
    assert!(!ok, "{out}");
    assert!(out.contains("unknown extension type"), "{out}");
    if let Some(envoy) = envoy_or_skip("an_optional_filter_of_an_unknown_type (Envoy side)") {
        assert!(!envoy_validate(&envoy, &path).0, "Envoy refuses it too");
    }
}

#[test]
fn validate_names_the_path_of_an_invalid_value() {
    let dir = TempDir::new("eb-value");
    let text = bootstrap(9, "", "", "hi").replace("cluster: up, timeout", "cluster: nope, timeout");
    let (ok, out, _) = validate(&dir, "cluster.yaml", &text);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[1].route.cluster: no cluster named `nope`"
        ),
        "{out}"
    );
}

fn get_body(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = get(addr, "svc", path);
    (r.status, r.body_str())
}

#[test]
fn the_same_bootstrap_serves_in_yaml_and_in_json() {
    let up = Upstream::echo();
    let yaml = bootstrap(up.addr.port(), "", "", "from-bootstrap");
    // Ports as strings (the proto3 JSON mapping takes both), so the placeholders parse.
    let quoted = yaml
        .replace("@ADMIN_PORT@", "'@ADMIN_PORT@'")
        .replace("@PORT@", "'@PORT@'");
    let as_json: serde_json::Value = serde_yaml::from_str(&quoted).unwrap();
    let json = serde_json::to_string_pretty(&as_json).unwrap();
    assert!(json.trim_start().starts_with('{'));
    for text in [yaml, json] {
        let p = Proxy::start(&text);
        assert_eq!(
            get_body(p.listen, "/direct"),
            (200, "from-bootstrap".into())
        );
        let r = get(p.listen, "svc", "/up");
        assert_eq!(r.status, 200, "{}", r.body_str());
        assert_eq!(up.last_request().target, "/up");
        // /config_dump holds Envoy's ConfigDump shape for the static resources.
        let dump: serde_json::Value =
            serde_json::from_slice(&p.admin_get("/config_dump").body).unwrap();
        let configs = &dump["config"]["configs"];
        assert_eq!(
            configs[0]["@type"],
            "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"
        );
        assert_eq!(configs[0]["bootstrap"]["node"]["id"], "test-node");
        assert_eq!(
            configs[1]["static_clusters"][0]["cluster"]["name"], "up",
            "{dump}"
        );
        assert_eq!(
            configs[2]["static_listeners"][0]["listener"]["name"],
            "main"
        );
        assert_eq!(
            configs[3]["static_route_configs"][0]["route_config"]["name"],
            "local"
        );
    }
}

#[test]
fn a_bootstrap_reloads_on_sighup() {
    let up = Upstream::echo();
    let p = Proxy::start(&bootstrap(up.addr.port(), "", "", "one"));
    assert_eq!(get_body(p.listen, "/direct"), (200, "one".into()));
    let before = p.config_version();
    p.write_config(&bootstrap(up.addr.port(), "", "", "two"));
    p.signal(libc::SIGHUP);
    let v = wait_until(T, || Some(p.config_version()).filter(|v| *v > before));
    assert!(v.is_some(), "no reload:\n{}", p.stderr());
    // The control publishes the version before every worker has switched to it.
    let two = wait_until(T, || {
        Some(get_body(p.listen, "/direct")).filter(|b| *b == (200, "two".into()))
    });
    assert!(two.is_some(), "the reloaded bootstrap never served");
    // A bad bootstrap is refused on reload; the running config stays.
    p.write_config(&bootstrap(
        up.addr.port(),
        "",
        "    per_connection_buffer_limit_bytes: 32768\n",
        "three",
    ));
    let r = p.reload();
    assert_ne!(r.status, 200, "{}", r.body_str());
    assert!(
        r.body_str().contains("per_connection_buffer_limit_bytes"),
        "{}",
        r.body_str()
    );
    assert_eq!(get_body(p.listen, "/direct"), (200, "two".into()));
}

#[test]
fn the_example_bootstrap_validates_in_outrigger_and_envoy() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/envoy-bootstrap.yaml");
    let o = run_cli(&["validate", "-c", path], T);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    if let Some(envoy) = envoy_or_skip("the_example_bootstrap_validates (Envoy side)") {
        let (ok, out) = envoy_validate(&envoy, std::path::Path::new(path));
        assert!(ok, "Envoy refuses the example:\n{out}");
    }
}

/// Envoy accepts a connection manager without HTTP filters but never answers on it (no
/// router); Outrigger refuses it rather than serve requests into a void.
#[test]
fn a_connection_manager_without_the_router_is_refused() {
    let dir = TempDir::new("eb-norouter");
    let text = bootstrap(9, "", "", "hi").replace(
        "          - name: envoy.filters.http.router
            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
",
        "",
    );
    let text = text.replace("          http_filters:\n", "          http_filters: []\n");
    let (ok, out, _) = validate(&dir, "norouter.yaml", &text);
    assert!(!ok, "{out}");
    assert!(
        out.contains("typed_config.http_filters: must end with the router"),
        "{out}"
    );
}

/// Envoy forwards CONNECT upstream as HTTP unless the route has `connect_config`;
/// Outrigger only terminates CONNECT, so it refuses the forwarding form by path.
#[test]
fn a_connect_route_without_connect_config_is_refused() {
    let dir = TempDir::new("eb-connect");
    let base = bootstrap(9, "", "", "hi").replace(
        "          stat_prefix: main\n",
        "          stat_prefix: main\n          upgrade_configs: [{upgrade_type: CONNECT}]\n",
    );
    let forward = base.replace(
        "              - match: {prefix: /direct}",
        "              - match: {connect_matcher: {}}\n                route: {cluster: up}\n              - match: {prefix: /direct}",
    );
    let (ok, out, _) = validate(&dir, "forward.yaml", &forward);
    assert!(!ok, "{out}");
    assert!(
        out.contains("routes[0].route.upgrade_configs: CONNECT is only supported terminated"),
        "{out}"
    );
    let terminate = base.replace(
        "              - match: {prefix: /direct}",
        "              - match: {connect_matcher: {}}\n                route: {cluster: up, upgrade_configs: [{upgrade_type: CONNECT, connect_config: {}}]}\n              - match: {prefix: /direct}",
    );
    let (ok, out, _) = validate(&dir, "terminate.yaml", &terminate);
    assert!(ok, "{out}");
}

/// The routing fields (issue 10) are translated, and a bad value is refused with its
/// Envoy field path; fields the native router lacks stay refused by name. Each entry:
/// what replaces the `/direct` route's match, the `/direct` route's action and the
/// catch-all route's action (empty: unchanged), the error expected after
/// `...route_config.`, and whether Envoy 1.40 refuses the file too.
#[test]
fn routing_fields_are_checked_with_their_paths() {
    const DIRECT: &str = "direct_response: {status: 200, body: {inline_string: \"hi\"}}";
    let cases: &[(&str, &str, &str, &str, bool)] = &[
        (
            "{safe_regex: {regex: '('}}",
            "",
            "",
            "virtual_hosts[0].routes[0].match.safe_regex.regex: invalid or too large regex `(`",
            true,
        ),
        (
            "{prefix: /d, headers: [{name: x, string_match: {safe_regex: {regex: '['}}}]}",
            "",
            "",
            "routes[0].match.headers[0].string_match.safe_regex.regex: invalid",
            true,
        ),
        (
            "{prefix: /d, headers: [{name: x, safe_regex_match: {regex: 'a)'}}]}",
            "",
            "",
            "routes[0].match.headers[0].safe_regex_match.regex: invalid",
            true,
        ),
        (
            "{prefix: /d, query_parameters: [{name: q, string_match: {safe_regex: {regex: '('}}}]}",
            "",
            "",
            "routes[0].match.query_parameters[0].string_match.safe_regex.regex: invalid",
            true,
        ),
        (
            "{prefix: /d, headers: [{name: x, string_match: {safe_regex: {regex: a}, ignore_case: true}}]}",
            "",
            "",
            "routes[0].match.headers[0].string_match.ignore_case: does not apply to `safe_regex`",
            true,
        ),
        (
            "{prefix: /d, runtime_fraction: {runtime_key: k}}",
            "",
            "",
            "routes[0].match.runtime_fraction.default_value: is required",
            true,
        ),
        (
            "",
            "",
            "route: {cluster: up, regex_rewrite: {pattern: {regex: '('}, substitution: x}}",
            "routes[1].route.regex_rewrite.pattern.regex: invalid",
            true,
        ),
        (
            "",
            "redirect: {regex_rewrite: {pattern: {regex: '('}, substitution: /x}}",
            "",
            "routes[0].redirect.regex_rewrite.pattern.regex: invalid",
            true,
        ),
        (
            "",
            "",
            "route: {weighted_clusters: {clusters: [{name: up, weight: 1}, {name: nope, weight: 1}]}}",
            "routes[1].route.weighted_clusters.clusters[1].name: no cluster named `nope`",
            true,
        ),
        (
            "",
            "",
            "route: {weighted_clusters: {clusters: [{name: up, weight: 0}]}}",
            "routes[1].route.weighted_clusters.clusters: the sum of the weights",
            true,
        ),
        (
            "",
            "redirect: {port_redirect: 70000}",
            "",
            "routes[0].redirect.port_redirect: must be at most 65535",
            false,
        ),
        (
            "",
            "direct_response: {status: 200, body: {filename: /nonexistent/outrigger-body}}",
            "",
            "routes[0].direct_response.body.filename: cannot read `/nonexistent/outrigger-body`",
            true,
        ),
        (
            "",
            "",
            // Envoy refuses a mirror cluster that does not exist ("unknown shadow
            // cluster"), and so does Outrigger.
            "route: {cluster: up, request_mirror_policies: [{cluster: nope}]}",
            "routes[1].route.request_mirror_policies[0].cluster: no cluster named `nope`",
            true,
        ),
        (
            "",
            "",
            "route: {cluster: up, host_rewrite_header: x-host}",
            "routes[1].route.host_rewrite_header: not supported by Outrigger",
            false,
        ),
        (
            "",
            "",
            "route: {weighted_clusters: {clusters: [{name: up, weight: 1, request_headers_to_remove: [x]}]}}",
            "routes[1].route.weighted_clusters.clusters[0].request_headers_to_remove: not supported by Outrigger",
            false,
        ),
    ];
    let dir = TempDir::new("eb-routing");
    let envoy = envoy_or_skip("routing_fields_are_checked_with_their_paths (Envoy side)");
    for (i, (m, direct, catch_all, want, envoy_refuses)) in cases.iter().enumerate() {
        let mut text = bootstrap(9, "", "", "hi");
        if !m.is_empty() {
            text = text.replace("match: {prefix: /direct}", &format!("match: {m}"));
        }
        if !direct.is_empty() {
            text = text.replace(DIRECT, direct);
        }
        if !catch_all.is_empty() {
            text = text.replace("route: {cluster: up, timeout: 5s}", catch_all);
        }
        let (ok, out, path) = validate(&dir, &format!("r{i}.yaml"), &text);
        assert!(!ok, "case {i}: accepted:\n{text}");
        let want = if want.starts_with("virtual_hosts") {
            format!("route_config.{want}")
        } else {
            format!("route_config.virtual_hosts[0].{want}")
        };
        assert!(out.contains(&want), "case {i}: want `{want}` in:\n{out}");
        if let Some(envoy) = envoy.as_ref().filter(|_| *envoy_refuses) {
            let (ok, out) = envoy_validate(envoy, &path);
            assert!(!ok, "case {i}: Envoy accepts it:\n{out}");
        }
    }
}

#[test]
fn a_cluster_header_that_is_no_token_is_accepted_as_envoy_accepts_it() {
    // Envoy checks `cluster_header` with its lax header-name rule (no NUL, CR or LF), so
    // `a b` loads, though no request can carry such a header; a control character does
    // not.
    let dir = TempDir::new("eb-cluster-header");
    let envoy = envoy_or_skip("cluster_header lax names (Envoy side)");
    for (i, (name, accepted)) in [("'a b'", true), ("\"a\\rb\"", false)].iter().enumerate() {
        let text = bootstrap(9, "", "", "hi").replace(
            "route: {cluster: up, timeout: 5s}",
            &format!("route: {{cluster_header: {name}}}"),
        );
        let (ok, out, path) = validate(&dir, &format!("ch{i}.yaml"), &text);
        assert_eq!(ok, *accepted, "case {i}:\n{out}");
        if !accepted {
            assert!(
                out.contains(".route.cluster_header: `a\rb` is not a valid header name"),
                "{out}"
            );
        }
        if let Some(envoy) = &envoy {
            let (envoy_ok, out) = envoy_validate(envoy, &path);
            assert_eq!(envoy_ok, *accepted, "case {i}: Envoy:\n{out}");
        }
    }
}

#[test]
fn strip_any_and_strip_matching_host_port_exclude_each_other() {
    let dir = TempDir::new("eb-strip");
    let text = bootstrap(9, "", "", "hi").replace(
        "stat_prefix: main\n",
        "stat_prefix: main\n          strip_any_host_port: true\n          strip_matching_host_port: true\n",
    );
    let (ok, out, path) = validate(&dir, "strip.yaml", &text);
    assert!(!ok, "{out}");
    assert!(
        out.contains("filters[0].typed_config.strip_any_host_port: set at most one of"),
        "{out}"
    );
    if let Some(envoy) = envoy_or_skip("strip_host_port (Envoy side)") {
        assert!(!envoy_validate(&envoy, &path).0, "Envoy refuses it too");
    }
}

/// A cluster's `tls_params`: a cipher suite name nobody knows is refused with its path,
/// as Envoy refuses it; a maximum below TLS 1.2 is refused with its path too, where
/// Envoy (BoringSSL) would speak TLS 1.1 (rustls cannot); a supported set passes both.
#[test]
fn tls_params_are_checked_with_their_paths() {
    let dir = TempDir::new("eb-tls-params");
    let socket = |params: &str| {
        format!(
            "    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          tls_params: {params}
"
        )
    };
    let envoy = envoy_or_skip("tls_params_are_checked_with_their_paths (Envoy side)");
    let ok = bootstrap(9, "", &socket("{tls_maximum_protocol_version: TLSv1_3, cipher_suites: [\"[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-RSA-AES128-GCM-SHA256]\", AES128-SHA], ecdh_curves: [P-256]}"), "hi");
    let (accepted, out, path) = validate(&dir, "ok.yaml", &ok);
    assert!(accepted, "{out}");
    if let Some(envoy) = &envoy {
        assert!(envoy_validate(envoy, &path).0, "Envoy accepts it");
    }
    let at =
        "static_resources.clusters[0].transport_socket.typed_config.common_tls_context.tls_params";
    for (name, params, field, envoy_accepts) in [
        (
            "suite.yaml",
            "{cipher_suites: [ECDHE-ECDSA-AES128-GCM]}",
            "cipher_suites[0]",
            false,
        ),
        (
            "max.yaml",
            "{tls_maximum_protocol_version: TLSv1_1}",
            "tls_maximum_protocol_version",
            true,
        ),
    ] {
        let (accepted, out, path) = validate(&dir, name, &bootstrap(9, "", &socket(params), "hi"));
        assert!(!accepted, "{name}: {out}");
        assert!(out.contains(&format!("{at}.{field}")), "{name}: {out}");
        if let Some(envoy) = &envoy {
            let (theirs, out) = envoy_validate(envoy, &path);
            assert_eq!(theirs, envoy_accepts, "{name}: Envoy: {out}");
        }
    }
}
