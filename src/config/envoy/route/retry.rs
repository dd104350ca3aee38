//! Envoy `RetryPolicy` (on a route's `RouteAction` or a virtual host) -> the native
//! `retry_policy`, which has Envoy's field names and defaults; the native builder
//! (`config::build::retry`) checks the values and its error paths are mapped back to
//! the Envoy fields here. Control plane only.

use envoy_types::pb::envoy::config::route::v3::retry_policy::retry_host_predicate::ConfigType;
use envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, HedgePolicy, RetryPolicy};

use super::super::super::raw_match::RawHeaderMatch;
use super::super::super::raw_retry::{RawBackOff, RawNamed, RawRetryPolicy};
use super::super::super::raw_route::RawHedgePolicy;
use super::super::convert::{duration, native_duration, R};
use super::super::{err, walk, PathMap};
use super::matching::{header_match, At};

/// The previous-hosts predicate: the only retry host predicate Outrigger implements.
const PREVIOUS_HOSTS_TYPE: &str =
    "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate";
const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";

pub(in super::super) fn retry_policy(
    r: &RetryPolicy,
    at: &At<'_>,
    paths: &mut PathMap,
) -> R<RawRetryPolicy> {
    paths.add(at.native.to_string(), at.envoy.to_string());
    let field = |f: &str| format!("{}.{f}", at.envoy);
    // Zero is Envoy's "no per-try timeout".
    let nonzero = |d: Option<std::time::Duration>| d.filter(|d| !d.is_zero()).map(native_duration);
    let per_try_timeout = nonzero(duration(&r.per_try_timeout, &field("per_try_timeout"))?);
    let per_try_idle_timeout = nonzero(duration(
        &r.per_try_idle_timeout,
        &field("per_try_idle_timeout"),
    )?);
    let retry_back_off = match &r.retry_back_off {
        None => None,
        Some(b) => {
            let bp = field("retry_back_off");
            let base = duration(&b.base_interval, &format!("{bp}.base_interval"))?
                .ok_or_else(|| err(format!("{bp}.base_interval"), "is required"))?;
            let max = duration(&b.max_interval, &format!("{bp}.max_interval"))?;
            Some(RawBackOff {
                base_interval: native_duration(base),
                max_interval: max.map(native_duration),
            })
        }
    };
    let mut retry_host_predicate = Vec::new();
    for (k, h) in r.retry_host_predicate.iter().enumerate() {
        let hp = format!("{}[{k}]", field("retry_host_predicate"));
        // Envoy picks the extension by its type; the name is only a label.
        let ty = h
            .config_type
            .as_ref()
            .map(|ConfigType::TypedConfig(a)| walk::type_name(&a.type_url).to_string());
        match ty.as_deref() {
            Some(PREVIOUS_HOSTS_TYPE) => {}
            None if h.name == PREVIOUS_HOSTS => {}
            _ => {
                return Err(err(
                    hp,
                    format!("only the previous_hosts predicate ({PREVIOUS_HOSTS_TYPE}) is supported by Outrigger"),
                ))
            }
        }
        retry_host_predicate.push(RawNamed {
            name: PREVIOUS_HOSTS.to_string(),
        });
    }
    let mut matchers = |name: &str, list: &[HeaderMatcher]| -> R<Vec<RawHeaderMatch>> {
        let mut out = Vec::with_capacity(list.len());
        for (k, h) in list.iter().enumerate() {
            let sub = At {
                envoy: &format!("{}[{k}]", field(name)),
                native: &format!("{}.{name}[{k}]", at.native),
            };
            paths.add(sub.native.to_string(), sub.envoy.to_string());
            out.push(header_match(h, &sub, paths)?);
        }
        Ok(out)
    };
    let retriable_headers = matchers("retriable_headers", &r.retriable_headers)?;
    let retriable_request_headers =
        matchers("retriable_request_headers", &r.retriable_request_headers)?;
    let mut retriable_status_codes = Vec::new();
    for (k, c) in r.retriable_status_codes.iter().enumerate() {
        let code = u16::try_from(*c).map_err(|_| {
            err(
                format!("{}[{k}]", field("retriable_status_codes")),
                "not an HTTP status code",
            )
        })?;
        retriable_status_codes.push(code);
    }
    let host_selection_retry_max_attempts = match r.host_selection_retry_max_attempts {
        0 => None,
        n => Some(u32::try_from(n).map_err(|_| {
            err(
                field("host_selection_retry_max_attempts"),
                "must be between 0 and 4294967295",
            )
        })?),
    };
    Ok(RawRetryPolicy {
        retry_on: Some(r.retry_on.clone()).filter(|s| !s.is_empty()),
        num_retries: r.num_retries.as_ref().map(|n| n.value),
        per_try_timeout,
        per_try_idle_timeout,
        retry_back_off,
        retriable_status_codes,
        retriable_headers,
        retriable_request_headers,
        retry_host_predicate,
        host_selection_retry_max_attempts,
    })
}

/// Envoy's `HedgePolicy` (on a route's `RouteAction` or a virtual host), as the native
/// `hedge_policy`: `hedge_on_per_try_timeout` is Outrigger's hedging
/// (`upstream::request::hedge`). Refused, each by its field: `initial_requests` above 1
/// and `additional_request_chance`, which Envoy 1.40 accepts but does not implement.
pub(in super::super) fn hedge_policy(h: &HedgePolicy, at: &str) -> R<RawHedgePolicy> {
    match h.initial_requests.as_ref().map(|n| n.value) {
        // Envoy's own validation: `uint32 = {gte: 1}`.
        Some(0) => return Err(err(format!("{at}.initial_requests"), "must be at least 1")),
        Some(n) if n > 1 => {
            return Err(err(
                format!("{at}.initial_requests"),
                "more than 1 initial request is not supported by Outrigger",
            ))
        }
        _ => {}
    }
    if h.additional_request_chance.is_some() {
        return Err(err(
            format!("{at}.additional_request_chance"),
            "not supported by Outrigger",
        ));
    }
    Ok(RawHedgePolicy {
        hedge_on_per_try_timeout: h.hedge_on_per_try_timeout,
    })
}
