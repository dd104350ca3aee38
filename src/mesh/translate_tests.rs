use super::*;
use crate::mesh::istio::parse_text;

const MESH: &str = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: demo}
spec:
  hosts: [echo.demo]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: demo}
spec: {address: 127.0.0.1, ports: {http: 9001}, labels: {app: echo, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v2, namespace: demo}
spec: {address: 127.0.0.2, ports: {http: 9002}, labels: {app: echo, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: demo}
spec: {address: 127.0.0.3, labels: {app: client}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client, namespace: demo}
spec:
  workloadSelector: {labels: {app: client}}
  egress: [{port: {number: 9080, protocol: HTTP, name: http}, bind: 127.0.0.1, captureMode: NONE, hosts: [./*]}]
  ingress: [{port: {number: 15090, protocol: HTTP, name: http}, bind: 127.0.0.1, defaultEndpoint: 127.0.0.1:8080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: demo}
spec:
  host: echo.demo
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 5, connectTimeout: 250ms}, http: {idleTimeout: 30s}}
    outlierDetection: {consecutiveGatewayErrors: 2, baseEjectionTime: 1m}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: demo}
spec:
  hosts: [echo.demo]
  http:
  - match: [{uri: {prefix: /v2}}]
    route: [{destination: {host: echo.demo, subset: v2}}]
    timeout: 1500ms
    fault: {delay: {fixedDelay: 5ms, percentage: {value: 50}}}
  - route:
    - {destination: {host: echo.demo, subset: v1}, weight: 90}
    - {destination: {host: echo.demo, subset: v2}, weight: 10}
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: '5xx,503'}
    corsPolicy: {allowOrigins: [{prefix: 'http://'}], allowMethods: [GET], maxAge: 2m}
";

fn mesh() -> Mesh {
    Mesh::build(parse_text(MESH, "m.yaml").unwrap()).unwrap()
}

/// The errors of resources that must be refused.
fn refused(text: &str) -> String {
    parse_text(text, "r.yaml")
        .and_then(Mesh::build)
        .map(|_| ())
        .expect_err(text)
        .join("\n")
}

#[test]
fn a_sidecar_gets_its_listeners_routes_clusters_and_endpoints() {
    let m = mesh();
    let p = Proxy::identify(
        &m,
        "sidecar~127.0.0.3~client.demo~demo.svc.cluster.local",
        None,
        BTreeMap::new(),
    );
    assert_eq!(p.namespace, "demo");
    assert_eq!(p.labels["app"], "client");
    let v = crate::mesh::capture::proxy_view(&m, &p, "cluster.local");
    let names = |t: &str| v[t].keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(CLUSTER),
        [
            "inbound|15090||",
            "outbound|9080|v1|echo.demo",
            "outbound|9080|v2|echo.demo",
            "outbound|9080||echo.demo"
        ]
    );
    assert_eq!(names(LISTENER), ["127.0.0.1_15090", "127.0.0.1_9080"]);
    assert_eq!(names(ROUTE), ["127.0.0.1_9080"]);
    let eds = &v[ENDPOINT]["outbound|9080|v2|echo.demo"];
    assert_eq!(
        eds["endpoints"][0]["lb_endpoints"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        eds["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
            ["port_value"],
        9002
    );
    let all = &v[ENDPOINT]["outbound|9080||echo.demo"];
    assert_eq!(
        all["endpoints"][0]["lb_endpoints"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let routes = &v[ROUTE]["127.0.0.1_9080"]["virtual_hosts"][0];
    assert_eq!(
        routes["domains"],
        serde_json::json!(["echo.demo", "echo.demo:9080"])
    );
    assert_eq!(routes["routes"][0]["match"]["prefix"], "/v2");
    assert_eq!(routes["routes"][0]["route"]["timeout"], "1.500000000s");
    let w = &routes["routes"][1]["route"];
    assert_eq!(w["weighted_clusters"]["clusters"][0]["weight"], 90);
    assert_eq!(w["retry_policy"]["retry_on"], "5xx,retriable-status-codes");
    assert_eq!(
        w["retry_policy"]["retriable_status_codes"],
        serde_json::json!([503])
    );
    let fault = &routes["routes"][0]["typed_per_filter_config"]["envoy.filters.http.fault"];
    assert_eq!(fault["delay"]["percentage"]["numerator"], 500_000);
    assert_eq!(fault["delay"]["fixed_delay"], "0.005000000s");
    let cors = &routes["routes"][1]["typed_per_filter_config"]["envoy.filters.http.cors"];
    assert_eq!(cors["max_age"], "120");
    let c = &v[CLUSTER]["outbound|9080|v1|echo.demo"];
    assert_eq!(c["connect_timeout"], "0.250000000s");
    let t = &c["circuit_breakers"]["thresholds"][0];
    assert_eq!(
        (t["max_connections"].as_u64(), t["max_requests"].as_u64()),
        (Some(5), Some(u64::from(u32::MAX)))
    );
    assert_eq!(c["outlier_detection"]["enforcing_consecutive_5xx"], 0);
    assert_eq!(c["outlier_detection"]["consecutive_gateway_failure"], 2);
    assert_eq!(c["common_lb_config"]["healthy_panic_threshold"]["value"], 0);
    // Every resource encodes with the descriptors the proxy decodes with.
    for (t, rs) in &v {
        let name = t.rsplit('/').next().unwrap();
        for (n, r) in rs {
            crate::config::xds::encode_json(name, r).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
    }
}

#[test]
fn a_proxy_without_a_sidecar_gets_nothing_and_bad_resources_are_refused_by_field() {
    let m = mesh();
    let p = Proxy::identify(&m, "other.elsewhere", None, BTreeMap::new());
    assert_eq!(p.namespace, "elsewhere");
    assert!(crate::mesh::capture::proxy_view(&m, &p, "cluster.local")
        .values()
        .all(|r| r.is_empty()));
    let bad = MESH.replace("timeout: 1500ms", "timeout: soon");
    let e = Mesh::build(parse_text(&bad, "m.yaml").unwrap()).unwrap_err();
    assert!(
        e[0].contains("VirtualService demo/echo: spec.http[0].timeout:"),
        "{e:?}"
    );
    let dup = format!("{MESH}---\n{}", MESH.split("---").next().unwrap());
    let e = Mesh::build(parse_text(&dup, "m.yaml").unwrap()).unwrap_err();
    assert!(
        e[0].contains("a second ServiceEntry with this name"),
        "{e:?}"
    );
}

#[test]
fn peer_authentication_and_auto_mtls_shape_the_listeners_and_clusters() {
    // echo-v1 has a sidecar (and a service account), echo-v2 not: the v1 subset is
    // mTLS, the v2 subset plaintext, the service's cluster split between them.
    let text = MESH.replace(
        "labels: {app: echo, version: v1}}",
        "serviceAccount: echo, labels: {app: echo, version: v1, security.istio.io/tlsMode: istio}}",
    ) + "---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: demo}
spec: {mtls: {mode: STRICT}}
";
    let m = Mesh::build(parse_text(&text, "m.yaml").unwrap()).unwrap();
    let mut p = Proxy::identify(&m, "client.demo", None, BTreeMap::new());
    p.authenticated = true;
    let v = crate::mesh::capture::proxy_view(&m, &p, "example.org");
    let tls = |c: &str| v[CLUSTER][c].get("transport_socket").cloned();
    let v1 = tls("outbound|9080|v1|echo.demo").expect("v1 is mTLS");
    assert_eq!(v1["typed_config"]["sni"], "outbound_.9080_.v1_.echo.demo");
    let ctx = &v1["typed_config"]["common_tls_context"];
    assert_eq!(
        ctx["tls_certificate_sds_secret_configs"][0]["name"],
        "default"
    );
    let cvc = &ctx["combined_validation_context"];
    assert_eq!(
        cvc["validation_context_sds_secret_config"]["name"],
        "ROOTCA"
    );
    assert_eq!(
        cvc["default_validation_context"]["match_typed_subject_alt_names"][0]["matcher"]["exact"],
        "spiffe://example.org/ns/demo/sa/echo"
    );
    // The client side offers the mesh's ALPN.
    assert_eq!(
        ctx["alpn_protocols"],
        json!(["istio-peer-exchange", "istio"])
    );
    assert!(tls("outbound|9080|v2|echo.demo").is_none());
    // The service's cluster (both endpoints) splits: mTLS to v1, plaintext to v2.
    assert!(tls("outbound|9080||echo.demo").is_none());
    let both = &v[CLUSTER]["outbound|9080||echo.demo"]["transport_socket_matches"];
    assert_eq!(both[0]["match"], json!({"tlsMode": "istio"}));
    assert_eq!(both[1]["match"], json!({}));
    let eps = &v[ENDPOINT]["outbound|9080||echo.demo"]["endpoints"][0]["lb_endpoints"];
    assert_eq!(
        eps[0]["metadata"]["filter_metadata"]["envoy.transport_socket_match"]["tlsMode"],
        "istio"
    );
    assert!(eps[1].get("metadata").is_none());
    // STRICT inbound: one chain, TLS with a client certificate required, XFCC set.
    let l = &v[LISTENER]["127.0.0.1_15090"];
    let chains = l["filter_chains"].as_array().unwrap();
    assert_eq!(chains.len(), 1);
    let ts = &chains[0]["transport_socket"]["typed_config"];
    assert_eq!(ts["require_client_certificate"], true);
    assert_eq!(
        chains[0]["filters"][0]["typed_config"]["forward_client_cert_details"],
        "APPEND_FORWARD"
    );
    // Without a certificate the auto-mTLS cluster is plaintext; STRICT stays TLS.
    p.authenticated = false;
    let v = crate::mesh::capture::proxy_view(&m, &p, "example.org");
    assert!(v[CLUSTER]["outbound|9080|v1|echo.demo"]
        .get("transport_socket")
        .is_none());
    assert!(v[LISTENER]["127.0.0.1_15090"]["filter_chains"][0]
        .get("transport_socket")
        .is_some());
    // PERMISSIVE (the default): the mesh's TLS (by its ALPN) picked by the inspector,
    // other TLS passed through to the workload, and plaintext.
    let m = mesh();
    p.authenticated = true;
    let v = crate::mesh::capture::proxy_view(&m, &p, "example.org");
    let l = &v[LISTENER]["127.0.0.1_15090"];
    assert_eq!(l["filter_chains"].as_array().unwrap().len(), 3);
    let first = &l["filter_chains"][0]["filter_chain_match"];
    assert_eq!(first["transport_protocol"], "tls");
    assert_eq!(first["application_protocols"][0], "istio");
    let own = &l["filter_chains"][1];
    assert_eq!(
        own["filter_chain_match"],
        json!({"transport_protocol": "tls"})
    );
    assert_eq!(
        own["filters"][0]["typed_config"]["cluster"],
        "inbound|15090||"
    );
    assert!(own.get("transport_socket").is_none());
    assert!(l["filter_chains"][2].get("transport_socket").is_none());

    assert_eq!(
        l["listener_filters"][0]["name"],
        "envoy.filters.listener.tls_inspector"
    );
}

#[test]
fn a_captured_proxy_gets_the_virtual_listeners_and_one_listener_per_port() {
    let m = mesh();
    let mut p = Proxy::identify(&m, "echo-v1.demo", None, BTreeMap::new());
    p.capture = true;
    let v = crate::mesh::capture::proxy_view(&m, &p, "cluster.local");
    let names = |t: &str| v[t].keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(LISTENER),
        ["0.0.0.0_9080", "virtualInbound", "virtualOutbound"]
    );
    assert_eq!(v[LISTENER]["0.0.0.0_9080"]["bind_to_port"], false);
    assert_eq!(v[LISTENER]["virtualOutbound"]["use_original_dst"], true);
    // The route table answers the service and passes anything else through.
    let vhosts = v[ROUTE]["9080"]["virtual_hosts"].as_array().unwrap();
    assert_eq!(vhosts.last().unwrap()["name"], "allow_any");
    // echo-v1 is selected by the echo service (port name http -> 9001): one inbound
    // chain for 9001, PERMISSIVE without a certificate (plaintext), then passthrough.
    let chains = v[LISTENER]["virtualInbound"]["filter_chains"]
        .as_array()
        .unwrap();
    assert_eq!(chains[0]["filter_chain_match"]["destination_port"], 9001);
    assert_eq!(chains.len(), 2);
    assert_eq!(v[CLUSTER]["inbound|9001||"]["type"], "ORIGINAL_DST");
    assert!(v[CLUSTER].contains_key("PassthroughCluster"));
    // With a certificate, PERMISSIVE adds the mTLS chain for that port.
    p.authenticated = true;
    let v = crate::mesh::capture::proxy_view(&m, &p, "cluster.local");
    let chains = v[LISTENER]["virtualInbound"]["filter_chains"]
        .as_array()
        .unwrap();
    assert_eq!(chains.len(), 4);
    assert_eq!(chains[0]["filter_chain_match"]["transport_protocol"], "tls");
    assert_eq!(chains[0]["filter_chain_match"]["destination_port"], 9001);
    assert_eq!(
        chains[1]["filter_chain_match"],
        json!({"destination_port": 9001, "transport_protocol": "tls"})
    );
}

#[test]
fn a_captured_proxys_sidecar_scopes_its_egress_and_names_its_ingress() {
    let text = format!(
        "{MESH}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: data}}
spec:
  hosts: [db.data]
  ports: [{{number: 5432, name: tcp, protocol: TCP}}, {{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.9}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: echo, namespace: demo}}
spec:
  workloadSelector: {{labels: {{app: echo}}}}
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
  ingress: [{{port: {{number: 7070, protocol: HTTP, name: http}}, defaultEndpoint: '127.0.0.1:7171'}}]
  egress:
  - {{port: {{number: 9080, protocol: HTTP, name: http}}, hosts: [./*]}}
  - {{hosts: [data/*]}}
"
    );
    let m = Mesh::build(parse_text(&text, "mesh.yaml").unwrap()).unwrap();
    let mut p = Proxy::identify(&m, "echo-v1.demo", None, BTreeMap::new());
    p.capture = true;
    let v = crate::mesh::capture::proxy_view(&m, &p, "cluster.local");
    let names = |t: &str| v[t].keys().cloned().collect::<Vec<_>>();
    // 9080 is the first egress listener's, with demo's services only; the catch-all
    // adds db's other port.
    assert_eq!(
        names(LISTENER),
        [
            "0.0.0.0_5432",
            "0.0.0.0_9080",
            "virtualInbound",
            "virtualOutbound"
        ]
    );
    let vhosts = v[ROUTE]["9080"]["virtual_hosts"].as_array().unwrap();
    let hosts: Vec<_> = vhosts.iter().map(|h| h["name"].clone()).collect();
    assert_eq!(hosts, [json!("echo.demo:9080"), json!("block_all")]);
    assert_eq!(vhosts[1]["routes"][0]["direct_response"]["status"], 502);
    assert!(!v[CLUSTER].contains_key("outbound|9080||db.data"));
    assert!(v[CLUSTER].contains_key("outbound|5432||db.data"));
    // REGISTRY_ONLY: the unknown goes nowhere.
    assert_eq!(
        v[LISTENER]["virtualOutbound"]["filter_chains"][0]["filters"][0]["typed_config"]["cluster"],
        "BlackHoleCluster"
    );
    assert_eq!(v[CLUSTER]["BlackHoleCluster"]["type"], "STATIC");
    // The ingress entry replaces the service's port: 7070 to the default endpoint.
    let chains = v[LISTENER]["virtualInbound"]["filter_chains"]
        .as_array()
        .unwrap();
    assert_eq!(chains[0]["filter_chain_match"]["destination_port"], 7070);
    assert_eq!(chains.len(), 2);
    let c = &v[CLUSTER]["inbound|7070||"];
    assert_eq!(c["type"], "STATIC");
    assert_eq!(
        c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["port_value"],
        7171
    );
    assert!(!v[CLUSTER].contains_key("inbound|9001||"));
    // Uncaptured, the same Sidecar binds its listeners on loopback.
    p.capture = false;
    let v = crate::mesh::capture::proxy_view(&m, &p, "cluster.local");
    let l = &v[LISTENER]["127.0.0.1_5432"];
    assert_eq!(l["address"]["socket_address"]["address"], "127.0.0.1");
    assert!(l.get("bind_to_port").is_none());
    assert!(v[LISTENER].contains_key("127.0.0.1_9080"));
}

#[test]
fn sidecar_egress_and_traffic_policy_errors_name_the_field() {
    for (spec, field) in [
        (
            "egress: [{hosts: [./*]}, {port: {number: 80, protocol: HTTP, name: h}, hosts: [./*]}]",
            "spec.egress[0].port: only the last",
        ),
        (
            "outboundTrafficPolicy: {mode: DENY}",
            "spec.outboundTrafficPolicy.mode",
        ),
        (
            "egress: [{hosts: [./*], captureMode: TPROXY}]",
            "spec.egress[0].captureMode",
        ),
    ] {
        let err = refused(&format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: s, namespace: demo}}\nspec: {{{spec}}}\n"
        ));
        assert!(err.contains(field), "{err}");
    }
}

#[test]
fn consistent_hashing_sets_the_cluster_balancer_and_the_routes_hash_policy() {
    let text = MESH.replace(
        "outlierDetection: {consecutiveGatewayErrors: 2, baseEjectionTime: 1m}",
        "outlierDetection: {consecutiveGatewayErrors: 2, baseEjectionTime: 1m}\n    loadBalancer: {consistentHash: {useSourceIp: true, ringHash: {minimumRingSize: 4096}}}",
    );
    let text = text.replace(
        "subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]",
        "subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 251}}}}}]",
    );
    let m = Mesh::build(parse_text(&text, "m.yaml").unwrap()).unwrap();
    let p = Proxy::identify(&m, "client.demo", None, BTreeMap::new());
    let v = crate::mesh::capture::proxy_view(&m, &p, "cluster.local");
    let v1 = &v[CLUSTER]["outbound|9080|v1|echo.demo"];
    assert_eq!(v1["lb_policy"], "RING_HASH");
    assert_eq!(v1["ring_hash_lb_config"]["minimum_ring_size"], 4096);
    let v2 = &v[CLUSTER]["outbound|9080|v2|echo.demo"];
    assert_eq!(v2["lb_policy"], "MAGLEV");
    assert_eq!(v2["maglev_lb_config"]["table_size"], 251);
    let routes = v[ROUTE]["127.0.0.1_9080"]["virtual_hosts"][0]["routes"]
        .as_array()
        .unwrap();
    // /v2 goes to v2 alone: its subset's key; the 90/10 split gets none.
    assert_eq!(
        routes[0]["route"]["hash_policy"],
        json!([{"header": {"header_name": "x-user"}}])
    );
    assert!(routes[1]["route"].get("hash_policy").is_none());
    for (lb, field) in [
        (
            "{simple: ROUND_ROBIN, consistentHash: {useSourceIp: true}}",
            "`simple` and `consistentHash`",
        ),
        (
            "{consistentHash: {httpHeaderName: a, useSourceIp: true}}",
            "one of httpHeaderName",
        ),
        (
            "{consistentHash: {useSourceIp: true, maglev: {tableSize: 1000}}}",
            "maglev.tableSize: 1000 is not a prime",
        ),
    ] {
        let err = refused(&format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d, namespace: demo}}\nspec: {{host: a.demo, trafficPolicy: {{loadBalancer: {lb}}}}}\n"
        ));
        assert!(err.contains(field), "{err}");
    }
}

#[test]
fn a_domain_two_services_claim_goes_to_the_first_only() {
    let text = format!(
        "{MESH}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: a, namespace: demo}}
spec: {{hosts: [a.demo], addresses: [10.0.0.9], ports: [{{number: 9080, name: http, protocol: HTTP}}], resolution: STATIC}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: b, namespace: demo}}
spec: {{hosts: [b.demo, a.demo], addresses: [10.0.0.9], ports: [{{number: 9080, name: http, protocol: HTTP}}], resolution: STATIC}}
"
    );
    let m = Mesh::build(parse_text(&text, "m.yaml").unwrap()).unwrap();
    let p = Proxy::identify(&m, "client.demo", None, BTreeMap::new());
    let v = crate::mesh::capture::proxy_view(&m, &p, "cluster.local");
    let mut all = Vec::new();
    for vh in v[ROUTE]["127.0.0.1_9080"]["virtual_hosts"]
        .as_array()
        .unwrap()
    {
        all.extend(vh["domains"].as_array().unwrap().iter().cloned());
    }
    let unique: std::collections::BTreeSet<_> = all.iter().map(|d| d.to_string()).collect();
    assert_eq!(unique.len(), all.len(), "{all:?}");
    assert!(all.contains(&json!("b.demo")));
}
