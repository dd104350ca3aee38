//! Resources and bootstraps for the xDS tests, written in proto3 JSON and encoded with
//! the descriptors Outrigger itself uses.

// Each test binary uses its own part of these.
#![allow(dead_code)]

use std::net::SocketAddr;

use serde_json::{json, Value};

use super::*;

pub fn encode(type_url: &str, v: Value) -> Vec<u8> {
    let name = type_url.rsplit('/').next().unwrap();
    outrigger::config::xds::encode_json(name, &v).unwrap()
}

pub fn bootstrap(mgmt: SocketAddr, api: &str) -> String {
    format!(
        r#"node: {{id: test-node, cluster: test}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: @ADMIN_PORT@}}}}
dynamic_resources:
  ads_config:
    api_type: {api}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]
  lds_config: {{ads: {{}}, resource_api_version: V3, initial_fetch_timeout: 2s}}
  cds_config: {{ads: {{}}, resource_api_version: V3, initial_fetch_timeout: 2s}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}}}]}}]
"#,
        mgmt.port()
    )
}

pub fn listener(name: &str, port: u16, rds: &str) -> Vec<u8> {
    encode(
        LISTENER,
        json!({
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": name,
                    "rds": {"config_source": {"ads": {}, "resource_api_version": "V3"}, "route_config_name": rds},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                }
            }]}]
        }),
    )
}

pub fn route(name: &str, cluster: &str) -> Vec<u8> {
    encode(
        ROUTE,
        json!({
            "name": name,
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                {"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "5s"}}
            ]}]
        }),
    )
}

pub fn eds_cluster(name: &str) -> Vec<u8> {
    encode(
        CLUSTER,
        json!({
            "name": name,
            "type": "EDS",
            "connect_timeout": "1s",
            "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}
        }),
    )
}

pub fn endpoints(cluster: &str, ports: &[u16]) -> Vec<u8> {
    let eps: Vec<Value> = ports
        .iter()
        .map(|p| json!({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}))
        .collect();
    encode(
        ENDPOINT,
        json!({"cluster_name": cluster, "endpoints": [{"lb_endpoints": eps}]}),
    )
}

/// An `SdsSecretConfig` naming a secret delivered over ADS. Its initial fetch times
/// out after 1 s, so that a proxy whose secret the test withholds is ready (the
/// helpers wait for `/ready`, which, as in Envoy, waits for each secret's initial
/// fetch) while its listener or cluster still waits for the secret.
fn ads_secret(name: &str) -> Value {
    json!({"name": name, "sds_config": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "1s"}})
}

/// A TLS listener whose certificate is the ADS secret `secret`, answering every request
/// `200 from ads` (an inline route: no RDS).
pub fn tls_listener(name: &str, port: u16, secret: &str) -> Vec<u8> {
    encode(
        LISTENER,
        json!({
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "common_tls_context": {"tls_certificate_sds_secret_configs": [ads_secret(secret)]}
                }},
                "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": name,
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "from ads"}}}
                        ]}]},
                        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                    }
                }]
            }]
        }),
    )
}

/// A STATIC cluster at `upstream` over TLS, verified against the ADS secret `ca_secret`
/// (SNI `upstream.test`).
pub fn tls_cluster(name: &str, upstream: SocketAddr, ca_secret: &str) -> Vec<u8> {
    encode(
        CLUSTER,
        json!({
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream.port()}}}}]}]},
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": "upstream.test",
                "common_tls_context": {"validation_context_sds_secret_config": ads_secret(ca_secret)}
            }}
        }),
    )
}

/// A `tls_certificate` secret with inline PEM.
pub fn ads_cert_secret(name: &str, cert_pem: &str, key_pem: &str) -> Vec<u8> {
    encode(
        SECRET,
        json!({"name": name, "tls_certificate": {
            "certificate_chain": {"inline_string": cert_pem},
            "private_key": {"inline_string": key_pem}
        }}),
    )
}

/// A `validation_context` secret trusting the CA in `ca_pem`.
pub fn ads_ca_secret(name: &str, ca_pem: &str) -> Vec<u8> {
    encode(
        SECRET,
        json!({"name": name, "validation_context": {"trusted_ca": {"inline_string": ca_pem}}}),
    )
}
