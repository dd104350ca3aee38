//! Building the RBAC filters (HTTP and network) from the raw YAML: policies compiled
//! into the engine's tree (`crate::rbac`), checked as Envoy's proto validation checks
//! them, every error with its field path; and their counters, named as Envoy names them.
//! Part of `config::build`.

use std::net::IpAddr;

use super::super::raw_rbac::*;
use super::Builder;
use crate::http::filter::rbac::RbacFilter;
use crate::listener::rbac::{Enforcement, NetworkFilter, NetworkRbac};
use crate::rbac::{Action, Cidr, Counters, Engine, Permission, Policy, Principal, Rules};

/// Envoy's `statPrefixJoin`: a `.` between the two unless the prefix ends with one.
fn join(prefix: &str, token: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('.') {
        format!("{prefix}{token}")
    } else {
        format!("{prefix}.{token}")
    }
}

impl Builder {
    /// Envoy's `generateStats`: `<prefix>.rbac.<rules_prefix>allowed`, `denied`, and
    /// the shadow counters under `<shadow_prefix>` after that, each part joined with a
    /// `.` unless it ends with one (`tcp` and `tcp.` both give `tcp.rbac.denied`, as
    /// Envoy 1.40 names them).
    fn rbac_counters(&mut self, prefix: &str, rules: &str, shadow: &str) -> Counters {
        let main = join(&join(prefix, "rbac."), rules);
        let shadow = join(&main, shadow);
        Counters {
            allowed: self.counter(join(&main, "allowed")),
            denied: self.counter(join(&main, "denied")),
            shadow_allowed: self.counter(join(&shadow, "shadow_allowed")),
            shadow_denied: self.counter(join(&shadow, "shadow_denied")),
        }
    }

    /// An HTTP `rbac` filter of the connection manager whose stats prefix is
    /// `stat_prefix` (its counters are `http.<stat_prefix>.rbac.*`).
    pub(super) fn rbac_filter(
        &mut self,
        p: &str,
        raw: &RawRbacFilter,
        stat_prefix: &str,
    ) -> RbacFilter {
        RbacFilter {
            rules: self.rbac_rules(p, raw),
            counters: self.rbac_counters(
                &format!("http.{stat_prefix}."),
                &raw.rules_stat_prefix,
                &raw.shadow_rules_stat_prefix,
            ),
        }
    }

    /// The enforced and shadow rules of an HTTP filter or a route's replacement.
    pub(super) fn rbac_rules(&mut self, p: &str, raw: &RawRbacFilter) -> Rules {
        Rules {
            rules: raw
                .rules
                .as_ref()
                .map(|r| self.rbac_engine(&format!("{p}.rules"), r)),
            shadow: raw
                .shadow_rules
                .as_ref()
                .map(|r| self.rbac_engine(&format!("{p}.shadow_rules"), r)),
        }
    }

    /// A chain's `network_filters`.
    pub(super) fn network_filters(
        &mut self,
        p: &str,
        raw: &[RawNetworkFilter],
        clusters: &[std::sync::Arc<crate::config::Cluster>],
    ) -> Vec<NetworkFilter> {
        let mut out = Vec::new();
        for (k, f) in raw.iter().enumerate() {
            let fp = format!("{p}.network_filters[{k}]");
            if f.name.is_empty() {
                self.err(format!("{fp}.name"), "must not be empty");
            }
            let r = match (&f.rbac, &f.ext_authz) {
                (Some(r), None) => r,
                (None, Some(e)) => {
                    let ep = format!("{fp}.ext_authz");
                    if let Some(x) = self.network_ext_authz(&ep, &f.name, e, clusters) {
                        out.push(NetworkFilter::ExtAuthz(Box::new(x)));
                    }
                    continue;
                }
                _ => {
                    self.err(fp, "set the filter's type: one of `rbac`, `ext_authz`");
                    continue;
                }
            };
            let rp = format!("{fp}.rbac");
            if r.stat_prefix.is_empty() {
                self.err(format!("{rp}.stat_prefix"), "is required");
            }
            let enforcement = match r.enforcement_type.as_deref() {
                None | Some("ONE_TIME_ON_FIRST_BYTE") => Enforcement::OneTime,
                Some("CONTINUOUS") => Enforcement::Continuous,
                Some(other) => {
                    self.err(
                        format!("{rp}.enforcement_type"),
                        format!("unknown value `{other}` (ONE_TIME_ON_FIRST_BYTE, CONTINUOUS)"),
                    );
                    Enforcement::OneTime
                }
            };
            let rules = Rules {
                rules: r
                    .rules
                    .as_ref()
                    .map(|e| self.rbac_engine(&format!("{rp}.rules"), e)),
                shadow: r
                    .shadow_rules
                    .as_ref()
                    .map(|e| self.rbac_engine(&format!("{rp}.shadow_rules"), e)),
            };
            let counters = self.rbac_counters(&r.stat_prefix, "", &r.shadow_rules_stat_prefix);
            out.push(NetworkFilter::Rbac(NetworkRbac {
                name: f.name.clone(),
                rules,
                counters,
                enforcement,
            }));
        }
        out
    }

    fn rbac_engine(&mut self, p: &str, r: &RawRbac) -> Engine {
        let action = match r.action.as_deref() {
            None | Some("ALLOW") => Action::Allow,
            Some("DENY") => Action::Deny,
            Some("LOG") => Action::Log,
            Some(other) => {
                self.err(
                    format!("{p}.action"),
                    format!("unknown action `{other}` (ALLOW, DENY, LOG)"),
                );
                Action::Allow
            }
        };
        // A BTreeMap: already in name order, as Envoy evaluates them.
        let mut policies = Vec::new();
        for (name, policy) in &r.policies {
            let pp = format!("{p}.policies.{name}");
            // Envoy's validation: both lists need at least one entry.
            if policy.permissions.is_empty() {
                self.err(format!("{pp}.permissions"), "must have at least one entry");
            }
            if policy.principals.is_empty() {
                self.err(format!("{pp}.principals"), "must have at least one entry");
            }
            let permissions = policy
                .permissions
                .iter()
                .enumerate()
                .filter_map(|(k, x)| self.permission(&format!("{pp}.permissions[{k}]"), x))
                .collect();
            let principals = policy
                .principals
                .iter()
                .enumerate()
                .filter_map(|(k, x)| self.principal(&format!("{pp}.principals[{k}]"), x))
                .collect();
            policies.push((
                name.clone(),
                Policy {
                    permissions,
                    principals,
                },
            ));
        }
        Engine { action, policies }
    }

    /// Whether exactly one of a oneof's fields is set (`set`: field name, whether it
    /// is set); records the error if not.
    fn one_of(&mut self, p: &str, set: &[(&str, bool)]) -> bool {
        if set.iter().filter(|(_, s)| *s).count() == 1 {
            return true;
        }
        let names: Vec<String> = set.iter().map(|(f, _)| format!("`{f}`")).collect();
        self.err(
            p.to_string(),
            format!("set exactly one of {}", names.join(", ")),
        );
        false
    }

    fn any(&mut self, p: &str, v: bool) -> bool {
        if !v {
            // Envoy's validation: `any` must be true.
            self.err(format!("{p}.any"), "must be true");
        }
        v
    }

    fn permission(&mut self, p: &str, r: &RawPermission) -> Option<Permission> {
        let set = [
            ("and_rules", r.and_rules.is_some()),
            ("or_rules", r.or_rules.is_some()),
            ("not_rule", r.not_rule.is_some()),
            ("any", r.any.is_some()),
            ("header", r.header.is_some()),
            ("url_path", r.url_path.is_some()),
            ("destination_ip", r.destination_ip.is_some()),
            ("destination_port", r.destination_port.is_some()),
            ("destination_port_range", r.destination_port_range.is_some()),
            ("requested_server_name", r.requested_server_name.is_some()),
        ];
        if !self.one_of(p, &set) {
            return None;
        }
        let list = |b: &mut Self, f: &str, s: &RawPermissionSet| {
            let v: Vec<Permission> = s
                .rules
                .iter()
                .enumerate()
                .filter_map(|(k, x)| b.permission(&format!("{p}.{f}.rules[{k}]"), x))
                .collect();
            (v.len() == s.rules.len()).then_some(v)
        };
        Some(if let Some(s) = &r.and_rules {
            Permission::And(list(self, "and_rules", s)?)
        } else if let Some(s) = &r.or_rules {
            Permission::Or(list(self, "or_rules", s)?)
        } else if let Some(n) = &r.not_rule {
            Permission::Not(Box::new(self.permission(&format!("{p}.not_rule"), n)?))
        } else if let Some(v) = r.any {
            self.any(p, v).then_some(Permission::Any)?
        } else if let Some(h) = &r.header {
            Permission::Header(self.header_match(&format!("{p}.header"), h)?)
        } else if let Some(u) = &r.url_path {
            Permission::UrlPath(self.string_match(&format!("{p}.url_path.path"), &u.path)?)
        } else if let Some(c) = &r.destination_ip {
            Permission::DestinationIp(self.rbac_cidr(&format!("{p}.destination_ip"), c)?)
        } else if let Some(port) = r.destination_port {
            if port > 65535 {
                self.err(format!("{p}.destination_port"), "must be at most 65535");
                return None;
            }
            Permission::DestinationPort(port)
        } else if let Some(range) = &r.destination_port_range {
            // Envoy's PortRangeMatcher bounds.
            let ok = |v: i64| (0..=65536).contains(&v);
            if !ok(range.start) || !ok(range.end) || range.start >= range.end {
                self.err(
                    format!("{p}.destination_port_range"),
                    "needs 0 <= start < end <= 65536",
                );
                return None;
            }
            Permission::DestinationPortRange(range.start as u32, range.end as u32)
        } else if let Some(s) = &r.requested_server_name {
            Permission::RequestedServerName(
                self.string_match(&format!("{p}.requested_server_name"), s)?,
            )
        } else {
            return None;
        })
    }

    fn principal(&mut self, p: &str, r: &RawPrincipal) -> Option<Principal> {
        let set = [
            ("and_ids", r.and_ids.is_some()),
            ("or_ids", r.or_ids.is_some()),
            ("not_id", r.not_id.is_some()),
            ("any", r.any.is_some()),
            ("authenticated", r.authenticated.is_some()),
            ("source_ip", r.source_ip.is_some()),
            ("direct_remote_ip", r.direct_remote_ip.is_some()),
            ("remote_ip", r.remote_ip.is_some()),
            ("header", r.header.is_some()),
            ("url_path", r.url_path.is_some()),
        ];
        if !self.one_of(p, &set) {
            return None;
        }
        let list = |b: &mut Self, f: &str, s: &RawPrincipalSet| {
            let v: Vec<Principal> = s
                .ids
                .iter()
                .enumerate()
                .filter_map(|(k, x)| b.principal(&format!("{p}.{f}.ids[{k}]"), x))
                .collect();
            (v.len() == s.ids.len()).then_some(v)
        };
        Some(if let Some(s) = &r.and_ids {
            Principal::And(list(self, "and_ids", s)?)
        } else if let Some(s) = &r.or_ids {
            Principal::Or(list(self, "or_ids", s)?)
        } else if let Some(n) = &r.not_id {
            Principal::Not(Box::new(self.principal(&format!("{p}.not_id"), n)?))
        } else if let Some(v) = r.any {
            self.any(p, v).then_some(Principal::Any)?
        } else if let Some(a) = &r.authenticated {
            let m = match &a.principal_name {
                Some(m) => {
                    Some(self.string_match(&format!("{p}.authenticated.principal_name"), m)?)
                }
                None => None,
            };
            Principal::Authenticated(m)
        } else if let Some(c) = &r.source_ip {
            Principal::SourceIp(self.rbac_cidr(&format!("{p}.source_ip"), c)?)
        } else if let Some(c) = &r.direct_remote_ip {
            Principal::DirectRemoteIp(self.rbac_cidr(&format!("{p}.direct_remote_ip"), c)?)
        } else if let Some(c) = &r.remote_ip {
            Principal::RemoteIp(self.rbac_cidr(&format!("{p}.remote_ip"), c)?)
        } else if let Some(h) = &r.header {
            Principal::Header(self.header_match(&format!("{p}.header"), h)?)
        } else if let Some(u) = &r.url_path {
            Principal::UrlPath(self.string_match(&format!("{p}.url_path.path"), &u.path)?)
        } else {
            return None;
        })
    }

    fn rbac_cidr(&mut self, p: &str, c: &RawCidr) -> Option<Cidr> {
        let Ok(addr) = c.address_prefix.parse::<IpAddr>() else {
            self.err(
                format!("{p}.address_prefix"),
                format!("`{}` is not an IP address", c.address_prefix),
            );
            return None;
        };
        let len = c.prefix_len.unwrap_or(0);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            self.err(
                format!("{p}.prefix_len"),
                format!("must be at most {max} for this address"),
            );
            return None;
        }
        Some(Cidr::new(addr, len))
    }
}
