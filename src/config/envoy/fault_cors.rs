//! Envoy's fault-injection and CORS filters -> their native config: `HTTPFault` (the
//! filter's and a route's), the CORS filter (empty) and `CorsPolicy` (per route, virtual
//! host or route configuration, merged into the route's policy as Envoy's filter reads
//! the levels). Control plane only.

use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_rate_limit::LimitType;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy as PbCorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    fault_abort::ErrorType, HttpFault,
};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent::DenominatorType, FractionalPercent};

use super::super::raw::{RawFractionalPercent, RawRuntimeFraction};
use super::super::raw_fault_cors::*;
use super::convert::{duration, native_duration, R};
use super::{err, rbac};

pub(super) const FAULT: &str = "envoy.extensions.filters.http.fault.v3.HTTPFault";
pub(super) const CORS: &str = "envoy.extensions.filters.http.cors.v3.Cors";
pub(super) const CORS_POLICY: &str = "envoy.extensions.filters.http.cors.v3.CorsPolicy";

fn percent(f: &Option<FractionalPercent>, p: &str) -> R<Option<RawFractionalPercent>> {
    let Some(f) = f else {
        return Ok(None);
    };
    let d = DenominatorType::try_from(f.denominator)
        .map_err(|_| err(format!("{p}.denominator"), "unknown value"))?;
    Ok(Some(RawFractionalPercent {
        numerator: f.numerator,
        denominator: Some(d.as_str_name().to_string()),
    }))
}

/// An `HTTPFault` (the filter's config, or a route's). The walker refuses the fields
/// Outrigger does not implement (`response_body`, the runtime keys, ...).
pub(super) fn fault(h: &HttpFault, p: &str) -> R<RawFault> {
    let delay = match &h.delay {
        None => None,
        Some(d) => {
            let dp = format!("{p}.delay");
            let (fixed_delay, header_delay) = match &d.fault_delay_secifier {
                Some(FaultDelaySecifier::FixedDelay(x)) => {
                    let len =
                        duration(&Some(*x), &format!("{dp}.fixed_delay"))?.unwrap_or_default();
                    (Some(native_duration(len)), None)
                }
                Some(FaultDelaySecifier::HeaderDelay(_)) => (None, Some(RawEmptyObject {})),
                None => return Err(err(dp, "set `fixed_delay` or `header_delay`")),
            };
            Some(RawDelay {
                fixed_delay,
                header_delay,
                percentage: percent(&d.percentage, &format!("{dp}.percentage"))?,
            })
        }
    };
    let abort = match &h.abort {
        None => None,
        Some(a) => {
            let ap = format!("{p}.abort");
            let mut out = RawAbort {
                percentage: percent(&a.percentage, &format!("{ap}.percentage"))?,
                ..RawAbort::default()
            };
            match &a.error_type {
                Some(ErrorType::HttpStatus(s)) => out.http_status = Some(*s),
                Some(ErrorType::GrpcStatus(g)) => out.grpc_status = Some(*g),
                Some(ErrorType::HeaderAbort(_)) => out.header_abort = Some(RawEmptyObject {}),
                None => {
                    return Err(err(
                        ap,
                        "set `http_status`, `grpc_status` or `header_abort`",
                    ))
                }
            }
            Some(out)
        }
    };
    let response_rate_limit = match &h.response_rate_limit {
        None => None,
        Some(r) => {
            let rp = format!("{p}.response_rate_limit");
            let mut out = RawRateLimit {
                percentage: percent(&r.percentage, &format!("{rp}.percentage"))?,
                ..RawRateLimit::default()
            };
            match &r.limit_type {
                Some(LimitType::FixedLimit(f)) => {
                    out.fixed_limit = Some(RawFixedLimit {
                        limit_kbps: f.limit_kbps,
                    })
                }
                Some(LimitType::HeaderLimit(_)) => out.header_limit = Some(RawEmptyObject {}),
                None => return Err(err(rp, "set `fixed_limit` or `header_limit`")),
            }
            Some(out)
        }
    };
    let headers = h
        .headers
        .iter()
        .enumerate()
        .map(|(k, m)| rbac::header(m, &format!("{p}.headers[{k}]")))
        .collect::<R<Vec<_>>>()?;
    Ok(RawFault {
        delay,
        abort,
        upstream_cluster: Some(h.upstream_cluster.clone()).filter(|c| !c.is_empty()),
        headers,
        downstream_nodes: h.downstream_nodes.clone(),
        max_active_faults: h.max_active_faults.map(|v| u64::from(v.value)),
        response_rate_limit,
    })
}

fn runtime_fraction(
    f: &Option<RuntimeFractionalPercent>,
    p: &str,
) -> R<Option<RawRuntimeFraction>> {
    let Some(f) = f else {
        return Ok(None);
    };
    let default_value = percent(&f.default_value, &format!("{p}.default_value"))?
        .ok_or_else(|| err(format!("{p}.default_value"), "is required"))?;
    Ok(Some(RawRuntimeFraction {
        default_value,
        runtime_key: Some(f.runtime_key.clone()).filter(|k| !k.is_empty()),
    }))
}

/// The route's CORS policy from the `CorsPolicy` of each level that has one, the most
/// specific first: each field from the first level that sets it (Envoy's filter reads
/// them so), `filter_enabled` and `shadow_enabled` from the most specific policy only.
pub(super) fn cors_policy(levels: &[(&PbCorsPolicy, String)]) -> R<RawCorsPolicy> {
    let mut out = RawCorsPolicy::default();
    if let Some((first, p)) = levels.first() {
        out.filter_enabled =
            runtime_fraction(&first.filter_enabled, &format!("{p}.filter_enabled"))?;
        out.shadow_enabled =
            runtime_fraction(&first.shadow_enabled, &format!("{p}.shadow_enabled"))?;
    }
    let text = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
    for (c, p) in levels {
        if out.allow_origin_string_match.is_empty() {
            for (k, m) in c.allow_origin_string_match.iter().enumerate() {
                let mp = format!("{p}.allow_origin_string_match[{k}]");
                out.allow_origin_string_match.push(rbac::string(m, &mp)?);
            }
        }
        out.allow_methods = out.allow_methods.or_else(|| text(&c.allow_methods));
        out.allow_headers = out.allow_headers.or_else(|| text(&c.allow_headers));
        out.expose_headers = out.expose_headers.or_else(|| text(&c.expose_headers));
        out.max_age = out.max_age.or_else(|| text(&c.max_age));
        out.allow_credentials = out
            .allow_credentials
            .or(c.allow_credentials.map(|b| b.value));
        out.allow_private_network_access = out
            .allow_private_network_access
            .or(c.allow_private_network_access.map(|b| b.value));
        out.forward_not_matching_preflights = out
            .forward_not_matching_preflights
            .or(c.forward_not_matching_preflights.map(|b| b.value));
    }
    Ok(out)
}
