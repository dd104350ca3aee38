use super::*;
use serde_json::json;

const BOOT: &str = r#"
node: {id: n}
dynamic_resources:
  ads_config: {api_type: DELTA_GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}
  lds_config: {ads: {}}
  cds_config: {ads: {}, initial_fetch_timeout: 3s}
static_resources:
  clusters:
  - name: xds
    load_assignment:
      cluster_name: xds
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]
"#;

fn resource<M: Message + Default>(t: &str, v: serde_json::Value) -> M {
    let bytes = encode_json(t, &v).unwrap();
    decode_resource::<M>(t, &bytes).unwrap().0
}

fn listener() -> Listener {
    resource(
        LISTENER,
        json!({
            "name": "l",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 2}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
                "@type": format!("type.googleapis.com/{HCM}"),
                "stat_prefix": "l",
                "rds": {"config_source": {"ads": {}}, "route_config_name": "r"},
                "http_filters": [{"name": "router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
            }}]}]
        }),
    )
}

fn route(status: u32) -> RouteConfiguration {
    resource(
        ROUTE,
        json!({"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {"status": status}}
        ]}]}),
    )
}

#[test]
fn ads_settings_come_from_the_bootstrap() {
    let x = xds_bootstrap(BOOT).unwrap().unwrap();
    assert!(x.delta);
    assert_eq!(x.ads_cluster, "xds");
    assert_eq!(x.node.id, "n");
    assert_eq!(x.cds_fetch_timeout, Some(Duration::from_secs(3)));
    assert_eq!(x.lds_fetch_timeout, Some(Duration::from_secs(15)));
    // Zero disables a subscription's timeout, as in Envoy.
    let zero = ConfigSource {
        initial_fetch_timeout: Some(Default::default()),
        ..Default::default()
    };
    assert_eq!(fetch_timeout(Some(&zero)), None);
    assert!(xds_bootstrap("static_resources: {}").unwrap().is_none());
    let e = xds_bootstrap(&BOOT.replace("cluster_name: xds}", "cluster_name: nope}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("envoy_grpc.cluster_name"), "{e}");
}

#[test]
fn the_ads_services_initial_metadata_is_sent_and_checked_by_field() {
    let with = |md: &str| {
        BOOT.replace(
            "grpc_services: [{envoy_grpc: {cluster_name: xds}}]",
            &format!(
                "grpc_services: [{{envoy_grpc: {{cluster_name: xds}}, initial_metadata: [{md}]}}]"
            ),
        )
    };
    let x = xds_bootstrap(&with("{key: Authorization, value: 'Bearer t0k3n'}"))
        .unwrap()
        .unwrap();
    assert_eq!(
        x.initial_metadata,
        [("authorization".to_string(), "Bearer t0k3n".to_string())]
    );
    for (md, field) in [
        ("{key: ':path', value: x}", "initial_metadata[0].key"),
        ("{key: grpc-timeout, value: 1S}", "initial_metadata[0].key"),
        ("{key: x-a, value: \"a\\nb\"}", "initial_metadata[0].value"),
    ] {
        let e = xds_bootstrap(&with(md)).unwrap_err().to_string();
        assert!(e.contains(field), "{md}: {e}");
    }
}

#[test]
fn a_listener_warms_until_its_route_arrives() {
    let x = xds_bootstrap(BOOT).unwrap().unwrap();
    let mut d = Dynamic::default();
    d.listeners.insert("l".into(), listener());
    let none = BTreeSet::new();
    let a = assemble(&x, &d, &none, Value::Null).unwrap();
    assert!(a.snapshot.listeners.is_empty());
    assert_eq!(a.warming, vec![(ROUTE, "r".to_string())]);
    d.routes.insert("r".into(), route(200));
    let a = assemble(&x, &d, &none, Value::Null).unwrap();
    assert_eq!(a.snapshot.listeners.len(), 1);
    assert!(a.used_listeners.contains_key("l"));
    // Timed out: the listener serves an empty route configuration.
    d.routes.clear();
    let expired = BTreeSet::from(["rds:r".to_string()]);
    let a = assemble(&x, &d, &expired, Value::Null).unwrap();
    assert_eq!(a.snapshot.listeners.len(), 1);
}

#[test]
fn errors_name_the_resource_and_its_field() {
    let x = xds_bootstrap(BOOT).unwrap().unwrap();
    let mut d = Dynamic::default();
    d.listeners.insert("l".into(), listener());
    d.routes.insert("r".into(), route(700));
    let e = assemble(&x, &d, &BTreeSet::new(), Value::Null)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("route_configuration `r`: virtual_hosts[0].routes[0].direct_response"),
        "{e}"
    );
    let bytes = encode_json(
        CLUSTER,
        &json!({"name": "c", "type": "EDS", "lb_subset_config": {}}),
    )
    .unwrap();
    let (path, _) = decode_resource::<Cluster>(CLUSTER, &bytes).unwrap_err();
    assert_eq!(path, "lb_subset_config");
    assert!(decode_resource::<Cluster>(CLUSTER, &[0xff, 0xff]).is_err());
}

#[test]
fn an_eds_cluster_takes_its_endpoints_and_drops_unhealthy_ones() {
    let x = xds_bootstrap(BOOT).unwrap().unwrap();
    let mut d = Dynamic::default();
    d.clusters.insert(
        "c".into(),
        resource(CLUSTER, json!({"name": "c", "type": "EDS"})),
    );
    let none = BTreeSet::new();
    let a = assemble(&x, &d, &none, Value::Null).unwrap();
    assert!(a.snapshot.clusters.iter().all(|c| c.name != "c"));
    let ep = |port: u16, health: &str| json!({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}, "health_status": health});
    d.endpoints.insert(
        "c".into(),
        resource(
            ENDPOINT,
            json!({"cluster_name": "c", "endpoints": [{"lb_endpoints": [ep(5, "HEALTHY"), ep(6, "UNHEALTHY"), ep(7, "DRAINING")]}]}),
        ),
    );
    let a = assemble(&x, &d, &none, Value::Null).unwrap();
    let c = a.snapshot.clusters.iter().find(|c| c.name == "c").unwrap();
    assert_eq!(c.endpoints.len(), 2);
    assert_eq!(c.endpoints[0].addr.port(), 5);
    assert_eq!(
        c.endpoints[0].health,
        crate::config::EndpointHealth::Healthy
    );
    assert_eq!(
        c.endpoints[1].health,
        crate::config::EndpointHealth::Unhealthy
    );
}
