//! A sidecar's bootstrap from flags (`outrigger run --control ADDR --workload
//! NAME.NAMESPACE --token-file FILE`): everything else comes from the control plane,
//! so no bootstrap file is written by hand. It is the Envoy bootstrap a user would
//! write (docs/control-plane.md shows it): the node, the admin port, and ADS to the
//! control plane over HTTP/2 with the workload's token as `authorization: Bearer`,
//! over TLS (the control plane's `--xds-tls` port) when `--control-ca` names the mesh
//! root: SNI and the certificate's DNS SAN `--control-name`, ALPN h2, as the xds-grpc
//! cluster of istio-agent's bootstrap.

use std::net::SocketAddr;

use serde_json::json;

pub struct Flags<'a> {
    pub control: &'a str,
    pub workload: &'a str,
    pub token_file: Option<&'a str>,
    /// The mesh root to check the control plane's certificate with (ADS over TLS).
    pub control_ca: Option<&'a str>,
    /// The DNS name in its certificate (default istiod's).
    pub control_name: Option<&'a str>,
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
        "static_resources": {"clusters": [xds_cluster(control, f)?]}
    });
    serde_json::to_string_pretty(&boot).map_err(|e| e.to_string())
}

/// The static cluster of the control plane (istio-agent's `xds-grpc`).
fn xds_cluster(control: SocketAddr, f: &Flags) -> Result<serde_json::Value, String> {
    let mut c = json!({
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
    });
    if let Some(ca) = f.control_ca {
        std::fs::metadata(ca).map_err(|e| format!("--control-ca: {ca}: {e}"))?;
        let name = f.control_name.unwrap_or(super::xds_tls::DEFAULT_NAME);
        c["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": name,
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "validation_context": {
                        "trusted_ca": {"filename": ca},
                        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": name}}]
                    }
                }
            }
        });
    } else if f.control_name.is_some() {
        return Err("--control-name goes with --control-ca".into());
    }
    Ok(c)
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
            control_ca: None,
            control_name: None,
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
