//! The one-line mode: `outrigger run --listen A --upstream B [--admin C]` as config text.
//!
//! It produces the same YAML a user would write, so it runs through the same parser and
//! checks as a file. Like a mesh sidecar (Istio passes WebSockets by default), the one
//! route allows `websocket` upgrades.

fn split_host_port(flag: &str, s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{flag}: `{s}` is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{flag}: `{port}` is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{flag}: `{s}` has no host"));
    }
    Ok((host.to_string(), port))
}

/// Builds config text for one listener that routes everything to one upstream; with
/// `tcp`, the listener proxies plain TCP instead of HTTP.
pub fn config_text(
    listen: &str,
    upstream: &str,
    admin: Option<&str>,
    tcp: bool,
    upstream_protocol: Option<&str>,
) -> Result<String, String> {
    let protocol = match upstream_protocol {
        None => "http1",
        Some(p @ ("http1" | "http2" | "downstream")) => p,
        Some(other) => {
            return Err(format!(
                "--upstream-protocol: `{other}` is not http1, http2 or downstream"
            ))
        }
    };
    let (lh, lp) = split_host_port("--listen", listen)?;
    let (uh, up) = split_host_port("--upstream", upstream)?;
    let mut text = String::new();
    if let Some(a) = admin {
        let (ah, ap) = split_host_port("--admin", a)?;
        text.push_str(&format!("admin:\n  address: \"{ah}\"\n  port: {ap}\n"));
    }
    if tcp {
        text.push_str(&format!(
            "listeners:
  - name: main
    address: \"{lh}\"
    port: {lp}
    tcp_proxy: {{ cluster: upstream }}
clusters:
  - name: upstream
    endpoints:
      - address: \"{uh}\"
        port: {up}
"
        ));
        return Ok(text);
    }
    text.push_str(&format!(
        "listeners:
  - name: main
    address: \"{lh}\"
    port: {lp}
    route_table: main
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: upstream
            upgrades: [websocket]
clusters:
  - name: upstream
    protocol: {protocol}
    endpoints:
      - address: \"{uh}\"
        port: {up}
"
    ));
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_valid_config() {
        let t = config_text(
            "127.0.0.1:10000",
            "127.0.0.1:9000",
            Some("127.0.0.1:9901"),
            false,
            None,
        )
        .unwrap();
        let s = crate::config::parse_str(&t).unwrap();
        assert_eq!(s.listeners[0].addr.port(), 10000);
        let route = &s.route_tables[0].virtual_hosts[0].routes[0];
        assert!(matches!(
            &route.action,
            crate::config::RouteAction::Cluster(f) if f.upgrades == ["websocket"]
        ));
        assert_eq!(s.clusters[0].endpoints[0].addr.port(), 9000);
        assert_eq!(s.admin.unwrap().port(), 9901);
        let t = config_text("127.0.0.1:10000", "127.0.0.1:9000", None, true, None).unwrap();
        let s = crate::config::parse_str(&t).unwrap();
        assert!(matches!(
            s.listeners[0].filter_chains[0].terminal,
            crate::config::NetworkTerminal::Tcp(_)
        ));
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(
            config_text("127.0.0.1", "127.0.0.1:9000", None, false, None)
                .unwrap_err()
                .contains("--listen")
        );
        assert!(config_text("127.0.0.1:1", "h:x", None, false, None)
            .unwrap_err()
            .contains("--upstream"));
    }
}
