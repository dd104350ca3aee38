//! Envoy `RouteAction.hash_policy` -> the native route's `hash_policy`, field for field
//! (the walker refused `filter_state`, a header's `regex_rewrite` and a cookie's
//! `attributes`). Control plane only.

use std::time::Duration;

use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::PolicySpecifier;
use envoy_types::pb::envoy::config::route::v3::route_action::HashPolicy;

use super::super::super::raw_route::{
    RawHashConnection, RawHashCookie, RawHashHeader, RawHashPolicy, RawHashQuery,
};
use super::super::convert::{native_duration, R};
use super::super::{err, PathMap};

pub(super) fn hash_policies(
    list: &[HashPolicy],
    ap: &str,
    np: &str,
    paths: &mut PathMap,
) -> R<Vec<RawHashPolicy>> {
    let mut out = Vec::with_capacity(list.len());
    for (k, h) in list.iter().enumerate() {
        let hp = format!("{ap}.hash_policy[{k}]");
        paths.add(format!("{np}.hash_policy[{k}]"), hp.clone());
        let mut raw = RawHashPolicy {
            header: None,
            cookie: None,
            connection_properties: None,
            query_parameter: None,
            terminal: h.terminal,
        };
        match &h.policy_specifier {
            Some(PolicySpecifier::Header(x)) => {
                raw.header = Some(RawHashHeader {
                    header_name: x.header_name.clone(),
                })
            }
            Some(PolicySpecifier::Cookie(c)) => {
                raw.cookie = Some(RawHashCookie {
                    name: c.name.clone(),
                    // Envoy keeps whole seconds of the ttl.
                    ttl: c
                        .ttl
                        .as_ref()
                        .map(|t| native_duration(Duration::from_secs(t.seconds.max(0) as u64))),
                    path: Some(c.path.clone()).filter(|p| !p.is_empty()),
                })
            }
            Some(PolicySpecifier::ConnectionProperties(c)) => {
                raw.connection_properties = Some(RawHashConnection {
                    source_ip: c.source_ip,
                })
            }
            Some(PolicySpecifier::QueryParameter(q)) => {
                raw.query_parameter = Some(RawHashQuery {
                    name: q.name.clone(),
                })
            }
            Some(PolicySpecifier::FilterState(_)) => {
                return Err(err(
                    format!("{hp}.filter_state"),
                    "not supported by Outrigger",
                ))
            }
            None => {
                return Err(err(
                    hp,
                    "set one of `header`, `cookie`, `connection_properties` and `query_parameter`",
                ))
            }
        }
        out.push(raw);
    }
    Ok(out)
}
