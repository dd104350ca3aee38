//! The local rate-limit filter's config as written in the YAML (Envoy's `LocalRateLimit`
//! with the same field names; `enable_x_ratelimit_headers` is a bool, Envoy's
//! `DRAFT_VERSION_03`), checked into a [`Limiter`]. Control plane only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use serde::Deserialize;

use super::super::header_mutation::{ops, RawHeaderAdd};
use super::super::headers::HeaderPlan;
use super::bucket::{SharedBucket, Spec};
use super::descriptors::{self, RawRateLimit};
use super::model::{next_id, Bucket, Descriptor, Fraction, Limiter, VhRateLimits};
use super::stats;
use crate::config::duration::parse_duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLocalRateLimit {
    pub stat_prefix: String,
    #[serde(default)]
    pub status: Option<u32>,
    #[serde(default)]
    pub token_bucket: Option<RawTokenBucket>,
    #[serde(default)]
    pub filter_enabled: Option<RawFraction>,
    #[serde(default)]
    pub filter_enforced: Option<RawFraction>,
    #[serde(default)]
    pub request_headers_to_add_when_not_enforced: Vec<RawHeaderAdd>,
    #[serde(default)]
    pub response_headers_to_add: Vec<RawHeaderAdd>,
    #[serde(default)]
    pub descriptors: Vec<RawDescriptor>,
    #[serde(default)]
    pub stage: u32,
    #[serde(default)]
    pub local_rate_limit_per_downstream_connection: bool,
    #[serde(default)]
    pub enable_x_ratelimit_headers: bool,
    /// `OVERRIDE` (default), `INCLUDE` or `IGNORE`.
    #[serde(default)]
    pub vh_rate_limits: Option<String>,
    #[serde(default)]
    pub always_consume_default_token_bucket: Option<bool>,
    #[serde(default)]
    pub rate_limits: Vec<RawRateLimit>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTokenBucket {
    pub max_tokens: u64,
    #[serde(default)]
    pub tokens_per_fill: Option<u64>,
    pub fill_interval: String,
}

/// Envoy's `RuntimeFractionalPercent` (there is no runtime layer: the default value is
/// the fraction).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFraction {
    pub default_value: RawPercent,
    #[serde(default)]
    #[allow(dead_code)]
    pub runtime_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPercent {
    #[serde(default)]
    pub numerator: u32,
    /// `HUNDRED` (default), `TEN_THOUSAND` or `MILLION`.
    #[serde(default)]
    pub denominator: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDescriptor {
    pub entries: Vec<RawEntry>,
    pub token_bucket: RawTokenBucket,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEntry {
    pub key: String,
    pub value: String,
}

type Errors = Vec<(String, String)>;

fn spec(raw: &RawTokenBucket, p: &str, errors: &mut Errors) -> Option<Spec> {
    let mut ok = true;
    if raw.max_tokens == 0 || raw.max_tokens > u64::from(u32::MAX) {
        errors.push((
            format!("{p}.max_tokens"),
            "must be between 1 and 2^32-1".into(),
        ));
        ok = false;
    }
    let per = raw.tokens_per_fill.unwrap_or(1);
    if per == 0 || per > u64::from(u32::MAX) {
        errors.push((
            format!("{p}.tokens_per_fill"),
            "must be between 1 and 2^32-1".into(),
        ));
        ok = false;
    }
    let interval = match parse_duration(&raw.fill_interval) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            errors.push((
                format!("{p}.fill_interval"),
                "must be greater than zero".into(),
            ));
            None
        }
        Err(e) => {
            errors.push((format!("{p}.fill_interval"), e));
            None
        }
    };
    Some(Spec {
        max_tokens: raw.max_tokens,
        tokens_per_fill: per,
        fill_interval: interval?,
    })
    .filter(|_| ok)
}

fn fraction(raw: &Option<RawFraction>, p: &str, errors: &mut Errors) -> Fraction {
    let Some(f) = raw else {
        // Envoy: unset is 0% ("for safety").
        return Fraction::NEVER;
    };
    let denominator = match f.default_value.denominator.as_deref() {
        None | Some("HUNDRED") => 100,
        Some("TEN_THOUSAND") => 10_000,
        Some("MILLION") => 1_000_000,
        Some(other) => {
            errors.push((
                format!("{p}.default_value.denominator"),
                format!("unknown denominator `{other}` (HUNDRED, TEN_THOUSAND, MILLION)"),
            ));
            100
        }
    };
    Fraction {
        numerator: f.default_value.numerator.min(denominator),
        denominator,
    }
}

/// Shared buckets live across reloads: a config that keeps a bucket's place (its field
/// path) and its token bucket gets the same `Arc`, so a reload or an xDS update does not
/// hand out a fresh budget. Read on the control side only, when a config is built.
fn shared(path: &str, spec: Spec) -> Arc<SharedBucket> {
    static LIVE: Mutex<Option<HashMap<String, Weak<SharedBucket>>>> = Mutex::new(None);
    let mut guard = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let live = guard.get_or_insert_with(HashMap::new);
    if let Some(b) = live.get(path).and_then(Weak::upgrade) {
        if b.spec == spec {
            return b;
        }
    }
    live.retain(|_, w| w.strong_count() > 0);
    let b = Arc::new(SharedBucket::new(spec));
    live.insert(path.to_string(), Arc::downgrade(&b));
    b
}

fn bucket(path: &str, spec: Spec, per_connection: bool) -> Bucket {
    if per_connection {
        Bucket::PerConnection(spec, next_id())
    } else {
        Bucket::Shared(shared(path, spec))
    }
}

impl RawLocalRateLimit {
    /// Checks the config found at `p` (a listener's filter, or a route's override when
    /// `per_route`: Envoy requires the token bucket there). `counters`: the indices of
    /// the counters `stats::names(&self.stat_prefix)` in the snapshot's.
    pub(crate) fn build(
        &self,
        p: &str,
        per_route: bool,
        counters: stats::Counters,
        errors: &mut Errors,
        matchers: &mut dyn descriptors::Matchers,
    ) -> Option<Limiter> {
        let before = errors.len();
        if self.stat_prefix.is_empty() {
            errors.push((format!("{p}.stat_prefix"), "is required".into()));
        }
        let per_connection = self.local_rate_limit_per_downstream_connection;
        let default = match &self.token_bucket {
            Some(t) => spec(t, &format!("{p}.token_bucket"), errors)
                .map(|s| bucket(&format!("{p}.token_bucket"), s, per_connection)),
            None if per_route => {
                errors.push((
                    format!("{p}.token_bucket"),
                    "is required in a per-route config (Envoy's rule)".into(),
                ));
                None
            }
            None => None,
        };
        let mut descriptors: Vec<Descriptor> = Vec::new();
        for (i, d) in self.descriptors.iter().enumerate() {
            let dp = format!("{p}.descriptors[{i}]");
            if d.entries.is_empty() {
                errors.push((
                    format!("{dp}.entries"),
                    "must list at least one entry".into(),
                ));
            }
            for (j, e) in d.entries.iter().enumerate() {
                if e.key.is_empty() {
                    errors.push((format!("{dp}.entries[{j}].key"), "must not be empty".into()));
                }
                if e.value.is_empty() {
                    errors.push((
                        format!("{dp}.entries[{j}].value"),
                        "must not be empty (wildcard descriptors are not supported by Outrigger)"
                            .into(),
                    ));
                }
            }
            let entries: Vec<(String, String)> = d
                .entries
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect();
            if descriptors.iter().any(|o| o.entries == entries) {
                errors.push((dp.clone(), "duplicate descriptor (Envoy refuses it)".into()));
            }
            let tp = format!("{dp}.token_bucket");
            if let Some(s) = spec(&d.token_bucket, &tp, errors) {
                descriptors.push(Descriptor {
                    entries,
                    bucket: bucket(&tp, s, per_connection),
                });
            }
        }
        // Envoy consumes the matched descriptors slowest-filling first.
        descriptors.sort_by(|a, b| a.bucket.spec().rate().total_cmp(&b.bucket.spec().rate()));
        let status = match self.status {
            None => 429,
            // Envoy: a code below 400 means 429.
            Some(s) if s < 400 => 429,
            Some(s) if s <= 599 => s as u16,
            Some(_) => {
                errors.push((
                    format!("{p}.status"),
                    "must be an HTTP status below 600".into(),
                ));
                429
            }
        };
        let vh = match self.vh_rate_limits.as_deref() {
            None | Some("OVERRIDE") => VhRateLimits::Override,
            Some("INCLUDE") => VhRateLimits::Include,
            Some("IGNORE") => VhRateLimits::Ignore,
            Some(other) => {
                errors.push((
                    format!("{p}.vh_rate_limits"),
                    format!("unknown value `{other}` (OVERRIDE, INCLUDE, IGNORE)"),
                ));
                VhRateLimits::Override
            }
        };
        if self.stage > 10 {
            errors.push((format!("{p}.stage"), "must be between 0 and 10".into()));
        }
        let rate_limits = descriptors::build(
            &self.rate_limits,
            &format!("{p}.rate_limits"),
            errors,
            matchers,
        );
        let req = ops(
            &self.request_headers_to_add_when_not_enforced,
            &[],
            &format!("{p}.request_headers_to_add_when_not_enforced"),
            "",
            errors,
        );
        let resp = ops(
            &self.response_headers_to_add,
            &[],
            &format!("{p}.response_headers_to_add"),
            "",
            errors,
        );
        let limiter = Limiter {
            counters,
            status,
            enabled: fraction(&self.filter_enabled, &format!("{p}.filter_enabled"), errors),
            enforced: fraction(
                &self.filter_enforced,
                &format!("{p}.filter_enforced"),
                errors,
            ),
            default,
            descriptors,
            rate_limits: (!self.rate_limits.is_empty()).then_some(rate_limits),
            stage: self.stage,
            vh,
            always_consume_default: self.always_consume_default_token_bucket.unwrap_or(true),
            x_headers: self.enable_x_ratelimit_headers,
            request_headers: HeaderPlan::compile([&req]),
            response_headers: HeaderPlan::compile([&resp]),
        };
        (errors.len() == before).then_some(limiter)
    }
}
