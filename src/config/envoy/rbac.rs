//! Envoy's RBAC filters -> the native `rbac` configs (`config::raw_rbac`): the HTTP
//! filter (`envoy.extensions.filters.http.rbac.v3.RBAC`), its per-route `RBACPerRoute`,
//! and the network filter (`envoy.extensions.filters.network.rbac.v3.RBAC`). The native
//! format has Envoy's fields, so this is a field-for-field copy; the walker
//! (`walk.rs`) has already refused the fields Outrigger does not implement (`matcher`,
//! `condition`, `metadata`, ...), and the native builder checks the rest. Control plane
//! only.

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::rbac::v3::{
    permission, principal, rbac::Action, Permission, Principal, Rbac,
};
use envoy_types::pb::envoy::config::route::v3::HeaderMatcher;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::{
    Rbac as PbHttpRbac, RbacPerRoute,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::{
    rbac::EnforcementType, Rbac as PbNetworkRbac,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{path_matcher, PathMatcher, StringMatcher};

use envoy_types::pb::google::protobuf::Any;

use super::super::raw::{RawHeaderMatch, RawStringMatch};
use super::super::raw_rbac::*;
use super::convert::{payload, R};
use super::route::matching::{self, At};
use super::{err, PathMap};

pub(super) const HTTP: &str = "envoy.extensions.filters.http.rbac.v3.RBAC";
pub(super) const PER_ROUTE: &str = "envoy.extensions.filters.http.rbac.v3.RBACPerRoute";
pub(super) const NETWORK: &str = "envoy.extensions.filters.network.rbac.v3.RBAC";

/// The HTTP filter's config.
pub(super) fn http(r: &PbHttpRbac, p: &str) -> R<RawRbacFilter> {
    if r.track_per_rule_stats {
        return Err(err(
            format!("{p}.track_per_rule_stats"),
            "per-policy stats are not supported by Outrigger",
        ));
    }
    Ok(RawRbacFilter {
        rules: r
            .rules
            .as_ref()
            .map(|x| rbac(x, &format!("{p}.rules")))
            .transpose()?,
        shadow_rules: r
            .shadow_rules
            .as_ref()
            .map(|x| rbac(x, &format!("{p}.shadow_rules")))
            .transpose()?,
        rules_stat_prefix: r.rules_stat_prefix.clone(),
        shadow_rules_stat_prefix: r.shadow_rules_stat_prefix.clone(),
    })
}

/// A route's `RBACPerRoute`: its `rbac` replaces the filter's rules; without one, the
/// filter allows every request on the route (Envoy's documented meaning).
pub(super) fn per_route(r: &RbacPerRoute, p: &str) -> R<RawRbacFilter> {
    match &r.rbac {
        Some(x) => http(x, &format!("{p}.rbac")),
        None => Ok(RawRbacFilter::default()),
    }
}

/// The network filter (`name`: the filter's name in the chain).
pub(super) fn network(r: &PbNetworkRbac, name: &str, p: &str) -> R<RawNetworkFilter> {
    if r.stat_prefix.is_empty() {
        return Err(err(format!("{p}.stat_prefix"), "is required"));
    }
    let enforcement = EnforcementType::try_from(r.enforcement_type)
        .map_err(|_| err(format!("{p}.enforcement_type"), "unknown value"))?;
    Ok(RawNetworkFilter {
        name: name.to_string(),
        rbac: Some(RawNetworkRbac {
            rules: r
                .rules
                .as_ref()
                .map(|x| rbac(x, &format!("{p}.rules")))
                .transpose()?,
            shadow_rules: r
                .shadow_rules
                .as_ref()
                .map(|x| rbac(x, &format!("{p}.shadow_rules")))
                .transpose()?,
            stat_prefix: r.stat_prefix.clone(),
            shadow_rules_stat_prefix: r.shadow_rules_stat_prefix.clone(),
            enforcement_type: Some(
                match enforcement {
                    EnforcementType::OneTimeOnFirstByte => "ONE_TIME_ON_FIRST_BYTE",
                    EnforcementType::Continuous => "CONTINUOUS",
                }
                .into(),
            ),
        }),
        ext_authz: None,
    })
}

fn rbac(r: &Rbac, p: &str) -> R<RawRbac> {
    let action =
        Action::try_from(r.action).map_err(|_| err(format!("{p}.action"), "unknown value"))?;
    let mut policies = std::collections::BTreeMap::new();
    for (name, policy) in &r.policies {
        let pp = format!("{p}.policies[\"{name}\"]");
        let permissions = policy
            .permissions
            .iter()
            .enumerate()
            .map(|(k, x)| permission(x, &format!("{pp}.permissions[{k}]")))
            .collect::<R<_>>()?;
        let principals = policy
            .principals
            .iter()
            .enumerate()
            .map(|(k, x)| principal(x, &format!("{pp}.principals[{k}]")))
            .collect::<R<_>>()?;
        policies.insert(
            name.clone(),
            RawPolicy {
                permissions,
                principals,
            },
        );
    }
    Ok(RawRbac {
        action: Some(
            match action {
                Action::Allow => "ALLOW",
                Action::Deny => "DENY",
                Action::Log => "LOG",
            }
            .into(),
        ),
        policies,
    })
}

fn permission(x: &Permission, p: &str) -> R<RawPermission> {
    use permission::Rule;
    let mut out = RawPermission::default();
    let set = |s: &permission::Set, f: &str| -> R<RawPermissionSet> {
        Ok(RawPermissionSet {
            rules: s
                .rules
                .iter()
                .enumerate()
                .map(|(k, x)| permission(x, &format!("{p}.{f}.rules[{k}]")))
                .collect::<R<_>>()?,
        })
    };
    match &x.rule {
        Some(Rule::AndRules(s)) => out.and_rules = Some(set(s, "and_rules")?),
        Some(Rule::OrRules(s)) => out.or_rules = Some(set(s, "or_rules")?),
        Some(Rule::NotRule(n)) => {
            out.not_rule = Some(Box::new(permission(n, &format!("{p}.not_rule"))?))
        }
        Some(Rule::Any(b)) => out.any = Some(*b),
        Some(Rule::Header(h)) => out.header = Some(header(h, &format!("{p}.header"))?),
        Some(Rule::UrlPath(m)) => out.url_path = Some(path(m, &format!("{p}.url_path"))?),
        Some(Rule::DestinationIp(c)) => out.destination_ip = Some(cidr(c)),
        Some(Rule::DestinationPort(v)) => out.destination_port = Some(*v),
        Some(Rule::DestinationPortRange(r)) => {
            out.destination_port_range = Some(RawPortRange {
                start: i64::from(r.start),
                end: i64::from(r.end),
            })
        }
        Some(Rule::RequestedServerName(s)) => {
            out.requested_server_name = Some(string(s, &format!("{p}.requested_server_name"))?)
        }
        // The walker refused the others by field; a rule-less permission is refused by
        // the native builder.
        _ => {}
    }
    Ok(out)
}

// `source_ip` is deprecated in favour of `direct_remote_ip`, and still supported.
#[allow(deprecated)]
fn principal(x: &Principal, p: &str) -> R<RawPrincipal> {
    use principal::Identifier;
    let mut out = RawPrincipal::default();
    let set = |s: &principal::Set, f: &str| -> R<RawPrincipalSet> {
        Ok(RawPrincipalSet {
            ids: s
                .ids
                .iter()
                .enumerate()
                .map(|(k, x)| principal(x, &format!("{p}.{f}.ids[{k}]")))
                .collect::<R<_>>()?,
        })
    };
    match &x.identifier {
        Some(Identifier::AndIds(s)) => out.and_ids = Some(set(s, "and_ids")?),
        Some(Identifier::OrIds(s)) => out.or_ids = Some(set(s, "or_ids")?),
        Some(Identifier::NotId(n)) => {
            out.not_id = Some(Box::new(principal(n, &format!("{p}.not_id"))?))
        }
        Some(Identifier::Any(b)) => out.any = Some(*b),
        Some(Identifier::Authenticated(a)) => {
            out.authenticated = Some(RawAuthenticated {
                principal_name: a
                    .principal_name
                    .as_ref()
                    .map(|s| string(s, &format!("{p}.authenticated.principal_name")))
                    .transpose()?,
            })
        }
        Some(Identifier::SourceIp(c)) => out.source_ip = Some(cidr(c)),
        Some(Identifier::DirectRemoteIp(c)) => out.direct_remote_ip = Some(cidr(c)),
        Some(Identifier::RemoteIp(c)) => out.remote_ip = Some(cidr(c)),
        Some(Identifier::Header(h)) => out.header = Some(header(h, &format!("{p}.header"))?),
        Some(Identifier::UrlPath(m)) => out.url_path = Some(path(m, &format!("{p}.url_path"))?),
        _ => {}
    }
    Ok(out)
}

fn cidr(c: &CidrRange) -> RawCidr {
    RawCidr {
        address_prefix: c.address_prefix.clone(),
        prefix_len: c.prefix_len.as_ref().map(|v| v.value),
    }
}

fn path(m: &PathMatcher, p: &str) -> R<RawPathMatcher> {
    match &m.rule {
        Some(path_matcher::Rule::Path(s)) => Ok(RawPathMatcher {
            path: string(s, &format!("{p}.path"))?,
        }),
        None => Err(err(format!("{p}.path"), "is required")),
    }
}

/// Envoy's `StringMatcher`, through the route translation's (one translation for every
/// matcher). RBAC's errors are reported at the Envoy path, so the native paths it
/// records are not needed.
pub(super) fn string(s: &StringMatcher, p: &str) -> R<RawStringMatch> {
    let at = At {
        envoy: p,
        native: p,
    };
    matching::string_match(s, &at, &mut PathMap::default())
}

/// Envoy's `HeaderMatcher`, through the route translation's.
pub(super) fn header(h: &HeaderMatcher, p: &str) -> R<RawHeaderMatch> {
    let at = At {
        envoy: p,
        native: p,
    };
    matching::header_match(h, &at, &mut PathMap::default())
}

/// A `typed_per_filter_config` entry that is an `RBACPerRoute`.
pub(super) fn per_route_any(any: &Any, p: &str) -> R<RawRbacFilter> {
    let r: RbacPerRoute = payload(any, PER_ROUTE, p)?;
    per_route(&r, p)
}
