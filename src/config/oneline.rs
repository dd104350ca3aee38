//! The one-line mode: `outrigger run --listen A --upstream B [--admin C]` as config text.
//!
//! It produces the same YAML a user would write, so it runs through the same parser and
//! checks as a file. Like a mesh sidecar (Istio passes WebSockets by default), the one
//! route allows `websocket` upgrades.
//!
//! The TLS flags cover the common sidecar case: `--tls-cert/--tls-key` terminate TLS on
//! the listener (ALPN `h2`, `http/1.1`), `--tls-client-ca` makes it mutual TLS, and
//! `--upstream-tls-ca` originates TLS to the upstream, verified against that CA, with
//! `--upstream-tls-cert/--upstream-tls-key` as the proxy's client certificate and
//! `--upstream-sni` as the server name sent and required in the server's certificate.

/// The one-line flags, as given.
#[derive(Debug, Default, Clone)]
pub struct Flags<'a> {
    pub listen: &'a str,
    pub upstream: &'a str,
    pub admin: Option<&'a str>,
    /// A plain TCP proxy instead of HTTP.
    pub tcp: bool,
    pub upstream_protocol: Option<&'a str>,
    /// `--tls-cert`, `--tls-key`: the listener's certificate chain and key (PEM).
    pub tls_cert: Option<&'a str>,
    pub tls_key: Option<&'a str>,
    /// `--tls-client-ca`: clients must present a certificate from this CA.
    pub tls_client_ca: Option<&'a str>,
    /// `--upstream-tls-ca`: originate TLS, the server verified against this CA.
    pub upstream_tls_ca: Option<&'a str>,
    /// `--upstream-tls-cert`, `--upstream-tls-key`: the proxy's client certificate.
    pub upstream_tls_cert: Option<&'a str>,
    pub upstream_tls_key: Option<&'a str>,
    /// `--upstream-sni`: sent as SNI; the server certificate must have it as a DNS SAN.
    pub upstream_sni: Option<&'a str>,
}

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

/// A YAML double-quoted scalar holding `s` exactly (a JSON string is one), so a file
/// path with quotes, backslashes or `#` stays one value.
fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Refuses a flag given without the one it belongs with, naming both.
fn needs(flag: &str, given: Option<&str>, other: &str, present: bool) -> Result<(), String> {
    match (given, present) {
        (Some(_), false) => Err(format!("{flag} needs {other}")),
        _ => Ok(()),
    }
}

impl Flags<'_> {
    /// Checks the TLS flags go together: a key with its certificate, client checks and
    /// client certificates only with the TLS they belong to.
    fn check_tls(&self) -> Result<(), String> {
        needs(
            "--tls-cert",
            self.tls_cert,
            "--tls-key",
            self.tls_key.is_some(),
        )?;
        needs(
            "--tls-key",
            self.tls_key,
            "--tls-cert",
            self.tls_cert.is_some(),
        )?;
        needs(
            "--tls-client-ca",
            self.tls_client_ca,
            "--tls-cert and --tls-key (mutual TLS is TLS on the listener)",
            self.tls_cert.is_some(),
        )?;
        needs(
            "--upstream-tls-cert",
            self.upstream_tls_cert,
            "--upstream-tls-key",
            self.upstream_tls_key.is_some(),
        )?;
        needs(
            "--upstream-tls-key",
            self.upstream_tls_key,
            "--upstream-tls-cert",
            self.upstream_tls_cert.is_some(),
        )?;
        let ca = self.upstream_tls_ca.is_some();
        let why = "--upstream-tls-ca (TLS to the upstream is always verified)";
        needs("--upstream-tls-cert", self.upstream_tls_cert, why, ca)?;
        needs("--upstream-sni", self.upstream_sni, why, ca)?;
        Ok(())
    }

    /// The filter chain's `tls:` block (indented for a chain), if TLS is terminated.
    fn downstream_tls(&self) -> String {
        let (Some(cert), Some(key)) = (self.tls_cert, self.tls_key) else {
            return String::new();
        };
        let mut t = format!(
            "        tls:
          certificates:
            - cert_chain_file: {}
              private_key_file: {}
",
            quoted(cert),
            quoted(key)
        );
        if !self.tcp {
            t.push_str("          alpn_protocols: [h2, http/1.1]\n");
        }
        if let Some(ca) = self.tls_client_ca {
            t.push_str(&format!(
                "          require_client_certificate: true
          validation_context:
            trusted_ca_file: {}
",
                quoted(ca)
            ));
        }
        t
    }

    /// The cluster's `tls:` block (indented for a cluster), if TLS is originated. The
    /// SNI is also required as a DNS SAN of the server's certificate, as Envoy's
    /// `auto_sni_san_validation` does: a one-line sidecar has no other way to name the
    /// server it expects.
    fn upstream_tls(&self) -> String {
        let Some(ca) = self.upstream_tls_ca else {
            return String::new();
        };
        let mut t = String::from("    tls:\n");
        if let Some(sni) = self.upstream_sni {
            t.push_str(&format!("      sni: {}\n", quoted(sni)));
        }
        if let (Some(cert), Some(key)) = (self.upstream_tls_cert, self.upstream_tls_key) {
            t.push_str(&format!(
                "      certificates:
        - cert_chain_file: {}
          private_key_file: {}
",
                quoted(cert),
                quoted(key)
            ));
        }
        t.push_str(&format!(
            "      validation_context:\n        trusted_ca_file: {}\n",
            quoted(ca)
        ));
        if let Some(sni) = self.upstream_sni {
            t.push_str(&format!(
                "        match_subject_alt_names:
          - {{ exact: {}, san_type: dns, ignore_case: true }}
",
                quoted(sni)
            ));
        }
        t
    }
}

/// Builds config text for one listener that routes everything to one upstream; with
/// `tcp`, the listener proxies plain TCP instead of HTTP.
pub fn config_text(f: &Flags<'_>) -> Result<String, String> {
    let protocol = match f.upstream_protocol {
        None => "http1",
        Some(p @ ("http1" | "http2" | "downstream")) => p,
        Some(other) => {
            return Err(format!(
                "--upstream-protocol: `{other}` is not http1, http2 or downstream"
            ))
        }
    };
    let (lh, lp) = split_host_port("--listen", f.listen)?;
    let (uh, up) = split_host_port("--upstream", f.upstream)?;
    f.check_tls()?;
    let mut text = String::new();
    if let Some(a) = f.admin {
        let (ah, ap) = split_host_port("--admin", a)?;
        text.push_str(&format!("admin:\n  address: \"{ah}\"\n  port: {ap}\n"));
    }
    // The listener's terminal, on the listener itself or, with TLS, on its one chain.
    let terminal = if f.tcp {
        "tcp_proxy: { cluster: upstream }"
    } else {
        "route_table: main"
    };
    text.push_str(&format!(
        "listeners:\n  - name: main\n    address: \"{lh}\"\n    port: {lp}\n"
    ));
    let tls = f.downstream_tls();
    if tls.is_empty() {
        text.push_str(&format!("    {terminal}\n"));
    } else {
        text.push_str(&format!(
            "    filter_chains:\n      - name: main\n        {terminal}\n{tls}"
        ));
    }
    if !f.tcp {
        text.push_str(
            "route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: { prefix: / }
            cluster: upstream
            upgrades: [websocket]
",
        );
    }
    text.push_str("clusters:\n  - name: upstream\n");
    if !f.tcp {
        text.push_str(&format!("    protocol: {protocol}\n"));
    }
    text.push_str(&format!(
        "    endpoints:\n      - address: \"{uh}\"\n        port: {up}\n"
    ));
    text.push_str(&f.upstream_tls());
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags<'a>(listen: &'a str, upstream: &'a str) -> Flags<'a> {
        Flags {
            listen,
            upstream,
            ..Flags::default()
        }
    }

    #[test]
    fn builds_a_valid_config() {
        let t = config_text(&Flags {
            admin: Some("127.0.0.1:9901"),
            ..flags("127.0.0.1:10000", "127.0.0.1:9000")
        })
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
        let t = config_text(&Flags {
            tcp: true,
            ..flags("127.0.0.1:10000", "127.0.0.1:9000")
        })
        .unwrap();
        let s = crate::config::parse_str(&t).unwrap();
        assert!(matches!(
            s.listeners[0].filter_chains[0].terminal,
            crate::config::NetworkTerminal::Tcp(_)
        ));
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(config_text(&flags("127.0.0.1", "127.0.0.1:9000"))
            .unwrap_err()
            .contains("--listen"));
        assert!(config_text(&flags("127.0.0.1:1", "h:x"))
            .unwrap_err()
            .contains("--upstream"));
    }

    /// The TLS flags' YAML, checked by the file parser's first stage (paths are read
    /// only when the snapshot is built, which the black-box tests do).
    #[test]
    fn tls_flags_make_the_tls_blocks() {
        let t = config_text(&Flags {
            tls_cert: Some("/c/server.pem"),
            tls_key: Some("/c/server \"key\".pem"),
            tls_client_ca: Some("/c/ca.pem"),
            upstream_tls_ca: Some("/c/up-ca.pem"),
            upstream_tls_cert: Some("/c/client.pem"),
            upstream_tls_key: Some("/c/client.key"),
            upstream_sni: Some("backend.local"),
            upstream_protocol: Some("http2"),
            ..flags("127.0.0.1:10000", "127.0.0.1:9000")
        })
        .unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&t).unwrap();
        let chain = &v["listeners"][0]["filter_chains"][0];
        assert_eq!(chain["route_table"], "main");
        let tls = &chain["tls"];
        assert_eq!(
            tls["certificates"][0]["private_key_file"],
            "/c/server \"key\".pem"
        );
        assert_eq!(tls["require_client_certificate"], true);
        assert_eq!(tls["validation_context"]["trusted_ca_file"], "/c/ca.pem");
        assert_eq!(tls["alpn_protocols"][1], "http/1.1");
        let up = &v["clusters"][0]["tls"];
        assert_eq!(up["sni"], "backend.local");
        assert_eq!(up["certificates"][0]["cert_chain_file"], "/c/client.pem");
        assert_eq!(up["validation_context"]["trusted_ca_file"], "/c/up-ca.pem");
        let san = &up["validation_context"]["match_subject_alt_names"][0];
        assert_eq!(san["exact"], "backend.local");
        assert_eq!(san["san_type"], "dns");
    }

    #[test]
    fn tls_flags_that_do_not_go_together_are_refused_by_name() {
        let base = flags("127.0.0.1:1", "127.0.0.1:2");
        for (f, want) in [
            (
                Flags {
                    tls_key: Some("k"),
                    ..base.clone()
                },
                "--tls-key needs --tls-cert",
            ),
            (
                Flags {
                    tls_cert: Some("c"),
                    ..base.clone()
                },
                "--tls-cert needs --tls-key",
            ),
            (
                Flags {
                    tls_client_ca: Some("ca"),
                    ..base.clone()
                },
                "--tls-client-ca needs --tls-cert",
            ),
            (
                Flags {
                    upstream_tls_ca: Some("ca"),
                    upstream_tls_cert: Some("c"),
                    ..base.clone()
                },
                "--upstream-tls-cert needs --upstream-tls-key",
            ),
            (
                Flags {
                    upstream_tls_ca: Some("ca"),
                    upstream_tls_key: Some("k"),
                    ..base.clone()
                },
                "--upstream-tls-key needs --upstream-tls-cert",
            ),
            (
                Flags {
                    upstream_tls_cert: Some("c"),
                    upstream_tls_key: Some("k"),
                    ..base.clone()
                },
                "--upstream-tls-cert needs --upstream-tls-ca",
            ),
            (
                Flags {
                    upstream_sni: Some("a.test"),
                    ..base.clone()
                },
                "--upstream-sni needs --upstream-tls-ca",
            ),
        ] {
            assert!(
                config_text(&f).unwrap_err().starts_with(want),
                "{f:?}: {:?}",
                config_text(&f)
            );
        }
    }
}
