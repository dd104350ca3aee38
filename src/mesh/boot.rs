//! A sidecar's bootstrap from flags (`outrigger run --control ADDR --workload
//! NAME.NAMESPACE --token-file FILE`): everything else comes from the control plane,
//! so no bootstrap file is written by hand. It is the Envoy bootstrap a user would
//! write (docs/control-plane.md shows it): the node, the admin port, and ADS to the
//! control plane over HTTP/2 with the workload's token as `authorization: Bearer`.

use std::net::SocketAddr;

use serde_json::json;

pub struct Flags<'a> {
    pub control: &'a str,
    pub workload: &'a str,
    pub token_file: Option<&'a str>,
    pub admin: Option<&'a str>,
    pub sotw: bool,
    /// iptables captures the pod's traffic (`outrigger iptables`): the node says
    /// `INTERCEPTION_MODE: REDIRECT` and gets istiod's capture-mode listeners.
    pub capture: bool,
}

/// istio-proxy's admin port.
const ADMIN: &str = "127.0.0.1:15000";

/// The bootstrap (JSON) for `f`; errors name the flag.
pub fn bootstrap(f: &Flags) -> Result<String, String> {
    let control: SocketAddr = f
        .control
        .parse()
        .map_err(|_| format!("--control: `{}` is not IP:PORT", f.control))?;
    let admin_text = f.admin.unwrap_or(ADMIN);
    let admin: SocketAddr = admin_text
        .parse()
        .map_err(|_| format!("--admin: `{admin_text}` is not IP:PORT"))?;
    let Some((name, namespace)) = f.workload.split_once('.') else {
        return Err(format!(
            "--workload: `{}` is not NAME.NAMESPACE (the WorkloadEntry)",
            f.workload
        ));
    };
    if name.is_empty() || namespace.is_empty() || namespace.contains('.') {
        return Err(format!(
            "--workload: `{}` is not NAME.NAMESPACE (the WorkloadEntry)",
            f.workload
        ));
    }
    let mut service = json!({"envoy_grpc": {"cluster_name": "xds-grpc"}});
    if let Some(path) = f.token_file {
        let token = std::fs::read_to_string(path)
            .map_err(|e| format!("--token-file: {path}: {e}"))?
            .trim()
            .to_string();
        if token.is_empty() || token.contains(['\r', '\n']) {
            return Err(format!("--token-file: {path}: not one token on one line"));
        }
        service["initial_metadata"] =
            json!([{"key": "authorization", "value": format!("Bearer {token}")}]);
    }
    let source = json!({"ads": {}, "resource_api_version": "V3"});
    let mut node = json!({"id": f.workload, "cluster": name});
    if f.capture {
        node["metadata"] = json!({"INTERCEPTION_MODE": "REDIRECT"});
    }
    let boot = json!({
        "node": node,
        "admin": {"address": {"socket_address": {
            "address": admin.ip().to_string(), "port_value": admin.port()
        }}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": if f.sotw { "GRPC" } else { "DELTA_GRPC" },
                "transport_api_version": "V3",
                "grpc_services": [service]
            },
            "lds_config": source,
            "cds_config": source
        },
        "static_resources": {"clusters": [{
            "name": "xds-grpc",
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}
                }
            },
            "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {
                    "address": control.ip().to_string(), "port_value": control.port()
                }}}
            }]}]}
        }]}
    });
    serde_json::to_string_pretty(&boot).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_reads_as_an_xds_bootstrap_and_bad_flags_are_named() {
        let f = Flags {
            control: "127.0.0.1:15010",
            workload: "web.demo",
            token_file: None,
            admin: None,
            sotw: false,
            capture: false,
        };
        let text = bootstrap(&f).unwrap();
        let x = crate::config::xds::xds_bootstrap(&text).unwrap().unwrap();
        assert_eq!(x.node.id, "web.demo");
        assert!(x.delta);
        assert_eq!(x.ads_cluster, "xds-grpc");
        let bad = Flags {
            workload: "web",
            ..f
        };
        assert!(bootstrap(&bad).unwrap_err().starts_with("--workload:"));
        let bad = Flags {
            control: "istiod:15010",
            workload: "web.demo",
            ..bad
        };
        assert!(bootstrap(&bad).unwrap_err().starts_with("--control:"));
    }
}
