//! Envoy's `LocalRateLimit` (the HTTP filter's config and its per-route config) and
//! `RateLimit` (route and virtual-host `rate_limits`) -> the native local rate limit
//! (`http::filter::local_ratelimit`). Envoy's validation rules that name a field are
//! checked here, so their errors carry the Envoy path. Control plane only.

use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::route::v3::{rate_limit::action::ActionSpecifier, RateLimit};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    VhRateLimitsOptions, XRateLimitHeadersRfcVersion,
};
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, TokenBucket};

use super::convert::{duration, header_adds, native_duration, R};
use super::err;
use crate::config::raw_match::RawQueryParameterMatch;
use crate::http::filter::local_ratelimit::config::{
    RawDescriptor, RawEntry, RawFraction, RawPercent, RawTokenBucket,
};
use crate::http::filter::local_ratelimit::descriptors::{
    RawAction, RawEmpty, RawGenericKey, RawHeaderValueMatch, RawMasked, RawQueryValueMatch,
    RawRateLimit, RawRequestHeaders,
};
use crate::http::filter::local_ratelimit::RawLocalRateLimit;
use envoy_types::pb::envoy::config::route::v3::query_parameter_matcher::QueryParameterMatchSpecifier;

pub(super) const LOCAL_RATELIMIT: &str =
    "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

fn bucket(t: &TokenBucket, p: &str) -> R<RawTokenBucket> {
    if t.max_tokens == 0 {
        return Err(err(format!("{p}.max_tokens"), "must be greater than 0"));
    }
    if t.tokens_per_fill.is_some_and(|v| v.value == 0) {
        return Err(err(
            format!("{p}.tokens_per_fill"),
            "must be greater than 0",
        ));
    }
    let fill = duration(&t.fill_interval, &format!("{p}.fill_interval"))?
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            err(
                format!("{p}.fill_interval"),
                "is required and must be greater than 0",
            )
        })?;
    Ok(RawTokenBucket {
        max_tokens: u64::from(t.max_tokens),
        tokens_per_fill: t.tokens_per_fill.map(|v| u64::from(v.value)),
        fill_interval: native_duration(fill),
    })
}

fn fraction(f: &Option<RuntimeFractionalPercent>, p: &str) -> R<Option<RawFraction>> {
    let Some(f) = f else { return Ok(None) };
    let d: FractionalPercent = f
        .default_value
        .ok_or_else(|| err(format!("{p}.default_value"), "is required"))?;
    let denominator =
        envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType::try_from(
            d.denominator,
        )
        .map_err(|_| err(format!("{p}.default_value.denominator"), "unknown value"))?;
    Ok(Some(RawFraction {
        default_value: RawPercent {
            numerator: d.numerator,
            denominator: Some(denominator.as_str_name().to_string()),
        },
        runtime_key: Some(f.runtime_key.clone()).filter(|k| !k.is_empty()),
    }))
}

/// A `LocalRateLimit` at `p` (a filter's `typed_config`, or a per-route config).
pub(super) fn translate(l: &LocalRateLimit, p: &str, per_route: bool) -> R<RawLocalRateLimit> {
    if l.stat_prefix.is_empty() {
        return Err(err(format!("{p}.stat_prefix"), "is required"));
    }
    let token_bucket = match &l.token_bucket {
        Some(t) => Some(bucket(t, &format!("{p}.token_bucket"))?),
        None if per_route => {
            return Err(err(
                format!("{p}.token_bucket"),
                "local rate limit token bucket must be set for per filter configs",
            ))
        }
        None => None,
    };
    let mut descriptors = Vec::new();
    for (i, d) in l.descriptors.iter().enumerate() {
        let dp = format!("{p}.descriptors[{i}]");
        let mut entries = Vec::new();
        for (j, e) in d.entries.iter().enumerate() {
            if e.key.is_empty() {
                return Err(err(format!("{dp}.entries[{j}].key"), "must not be empty"));
            }
            if e.value.is_empty() {
                return Err(err(
                    format!("{dp}.entries[{j}].value"),
                    "wildcard descriptors (an entry without a value) are not supported by Outrigger",
                ));
            }
            entries.push(RawEntry {
                key: e.key.clone(),
                value: e.value.clone(),
            });
        }
        let t = d
            .token_bucket
            .as_ref()
            .ok_or_else(|| err(format!("{dp}.token_bucket"), "is required"))?;
        descriptors.push(RawDescriptor {
            entries,
            token_bucket: bucket(t, &format!("{dp}.token_bucket"))?,
        });
    }
    let x = XRateLimitHeadersRfcVersion::try_from(l.enable_x_ratelimit_headers)
        .map_err(|_| err(format!("{p}.enable_x_ratelimit_headers"), "unknown value"))?;
    let vh = VhRateLimitsOptions::try_from(l.vh_rate_limits)
        .map_err(|_| err(format!("{p}.vh_rate_limits"), "unknown value"))?;
    Ok(RawLocalRateLimit {
        stat_prefix: l.stat_prefix.clone(),
        // Envoy's HttpStatus code enum; unset (0) is 429, as is any code below 400.
        status: l.status.map(|s| u32::try_from(s.code).unwrap_or(0)),
        token_bucket,
        filter_enabled: fraction(&l.filter_enabled, &format!("{p}.filter_enabled"))?,
        filter_enforced: fraction(&l.filter_enforced, &format!("{p}.filter_enforced"))?,
        request_headers_to_add_when_not_enforced: header_adds(
            &l.request_headers_to_add_when_not_enforced,
            &format!("{p}.request_headers_to_add_when_not_enforced"),
        )?,
        response_headers_to_add: header_adds(
            &l.response_headers_to_add,
            &format!("{p}.response_headers_to_add"),
        )?,
        descriptors,
        stage: l.stage,
        local_rate_limit_per_downstream_connection: l.local_rate_limit_per_downstream_connection,
        enable_x_ratelimit_headers: x == XRateLimitHeadersRfcVersion::DraftVersion03,
        vh_rate_limits: Some(vh.as_str_name().to_string()),
        always_consume_default_token_bucket: l.always_consume_default_token_bucket.map(|b| b.value),
        rate_limits: rate_limits(&l.rate_limits, &format!("{p}.rate_limits"))?,
    })
}

/// A level's `rate_limits`.
pub(super) fn rate_limits(list: &[RateLimit], p: &str) -> R<Vec<RawRateLimit>> {
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let rp = format!("{p}[{i}]");
        let mut actions = Vec::new();
        for (j, a) in r.actions.iter().enumerate() {
            let ap = format!("{rp}.actions[{j}]");
            let mut raw = RawAction::default();
            match &a.action_specifier {
                Some(ActionSpecifier::RequestHeaders(h)) => {
                    raw.request_headers = Some(RawRequestHeaders {
                        header_name: h.header_name.clone(),
                        descriptor_key: h.descriptor_key.clone(),
                        skip_if_absent: h.skip_if_absent,
                    })
                }
                Some(ActionSpecifier::GenericKey(g)) => {
                    raw.generic_key = Some(RawGenericKey {
                        descriptor_value: g.descriptor_value.clone(),
                        descriptor_key: Some(g.descriptor_key.clone()).filter(|k| !k.is_empty()),
                    })
                }
                Some(ActionSpecifier::RemoteAddress(_)) => raw.remote_address = Some(RawEmpty {}),
                Some(ActionSpecifier::MaskedRemoteAddress(m)) => {
                    raw.masked_remote_address = Some(RawMasked {
                        v4_prefix_mask_len: m.v4_prefix_mask_len.map(|v| v.value),
                        v6_prefix_mask_len: m.v6_prefix_mask_len.map(|v| v.value),
                    })
                }
                Some(ActionSpecifier::DestinationCluster(_)) => {
                    raw.destination_cluster = Some(RawEmpty {})
                }
                Some(ActionSpecifier::HeaderValueMatch(h)) => {
                    let mp = format!("{ap}.header_value_match");
                    raw.header_value_match = Some(RawHeaderValueMatch {
                        descriptor_value: h.descriptor_value.clone(),
                        descriptor_key: Some(h.descriptor_key.clone()).filter(|k| !k.is_empty()),
                        expect_match: h.expect_match.map(|b| b.value),
                        headers: h
                            .headers
                            .iter()
                            .enumerate()
                            .map(|(k, m)| super::rbac::header(m, &format!("{mp}.headers[{k}]")))
                            .collect::<R<Vec<_>>>()?,
                    })
                }
                Some(ActionSpecifier::QueryParameterValueMatch(q)) => {
                    let mp = format!("{ap}.query_parameter_value_match");
                    let mut params = Vec::new();
                    for (k, m) in q.query_parameters.iter().enumerate() {
                        let string_match = match &m.query_parameter_match_specifier {
                            Some(QueryParameterMatchSpecifier::StringMatch(s)) => Some(
                                super::rbac::string(
                                    s,
                                    &format!("{mp}.query_parameters[{k}].string_match"),
                                )?,
                            ),
                            // Envoy: `present_match` and no specifier both match a
                            // present parameter.
                            Some(QueryParameterMatchSpecifier::PresentMatch(_)) | None => None,
                        };
                        params.push(RawQueryParameterMatch {
                            name: m.name.clone(),
                            string_match,
                            present_match: None,
                        });
                    }
                    raw.query_parameter_value_match = Some(RawQueryValueMatch {
                        descriptor_value: q.descriptor_value.clone(),
                        descriptor_key: Some(q.descriptor_key.clone()).filter(|k| !k.is_empty()),
                        expect_match: q.expect_match.map(|b| b.value),
                        query_parameters: params,
                    })
                }
                _ => {
                    return Err(err(
                        ap,
                        "only the request_headers, generic_key, remote_address, masked_remote_address, destination_cluster, header_value_match and query_parameter_value_match actions are supported by Outrigger",
                    ))
                }
            }
            actions.push(raw);
        }
        out.push(RawRateLimit {
            stage: r.stage.map_or(0, |s| s.value),
            disable_key: r.disable_key.clone(),
            actions,
        });
    }
    Ok(out)
}
