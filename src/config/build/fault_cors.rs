//! Building the fault-injection and CORS filters from the raw YAML: their settings
//! checked as Envoy's proto validation checks them (every error with its field path),
//! and their counters, named as Envoy names them. Part of `config::build`.

use std::sync::Arc;

use super::super::duration::parse_duration;
use super::super::raw_fault_cors::*;
use super::Builder;
use crate::config::Fraction;
use crate::http::filter::cors::{CorsFilter, CorsPolicy};
use crate::http::filter::fault::{
    Abort, AbortKind, Delay, DelayKind, FaultCounters, FaultFilter, FaultSettings, LimitKind,
    RateLimit,
};

impl Builder {
    /// A `fault` filter of the connection manager whose stats prefix is `stat_prefix`
    /// (its counters are `http.<stat_prefix>.fault.*`).
    pub(super) fn fault_filter(
        &mut self,
        p: &str,
        raw: &RawFault,
        stat_prefix: &str,
    ) -> Option<FaultFilter> {
        let settings = self.fault_settings(p, raw)?;
        let name = |n: &str| format!("http.{stat_prefix}.fault.{n}");
        let counters = FaultCounters {
            delays_injected: self.counter(name("delays_injected")),
            aborts_injected: self.counter(name("aborts_injected")),
            faults_overflow: self.counter(name("faults_overflow")),
            active_faults: self.counter(name("active_faults")),
            response_rl_injected: self.counter(name("response_rl_injected")),
        };
        Some(FaultFilter {
            settings,
            counters,
            active: Arc::default(),
        })
    }

    /// One level's `HTTPFault` (the filter's, or a route's replacement).
    pub(super) fn fault_settings(&mut self, p: &str, raw: &RawFault) -> Option<FaultSettings> {
        let mut ok = true;
        // Envoy's default percentage is its message's default: 0%.
        let none = Fraction {
            numerator: 0,
            denominator: 100,
        };
        let pct = |b: &mut Builder, at: String, f: &Option<_>| match f {
            None => Some(none),
            Some(f) => b.percent(&at, f),
        };
        let delay = match &raw.delay {
            None => None,
            Some(d) => {
                let dp = format!("{p}.delay");
                let kind = match (&d.fixed_delay, &d.header_delay) {
                    (Some(s), None) => match parse_duration(s) {
                        Ok(len) if !len.is_zero() => Some(DelayKind::Fixed(len)),
                        Ok(_) => {
                            self.err(format!("{dp}.fixed_delay"), "must be greater than 0");
                            None
                        }
                        Err(e) => {
                            self.err(format!("{dp}.fixed_delay"), e);
                            None
                        }
                    },
                    (None, Some(_)) => Some(DelayKind::Header),
                    _ => {
                        self.err(
                            dp.clone(),
                            "set exactly one of `fixed_delay`, `header_delay`",
                        );
                        None
                    }
                };
                let percentage = pct(self, format!("{dp}.percentage"), &d.percentage);
                match (kind, percentage) {
                    (Some(kind), Some(percentage)) => Some(Delay { kind, percentage }),
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
        };
        let abort = match &raw.abort {
            None => None,
            Some(a) => {
                let ap = format!("{p}.abort");
                let kind = match (a.http_status, a.grpc_status, &a.header_abort) {
                    (Some(s), None, None) => match u16::try_from(s) {
                        Ok(s) if (200..600).contains(&s) => Some(AbortKind::Http(s)),
                        _ => {
                            self.err(format!("{ap}.http_status"), "must be in [200, 600)");
                            None
                        }
                    },
                    (None, Some(g), None) => Some(AbortKind::Grpc(g)),
                    (None, None, Some(_)) => Some(AbortKind::Header),
                    _ => {
                        self.err(
                            ap.clone(),
                            "set exactly one of `http_status`, `grpc_status`, `header_abort`",
                        );
                        None
                    }
                };
                let percentage = pct(self, format!("{ap}.percentage"), &a.percentage);
                match (kind, percentage) {
                    (Some(kind), Some(percentage)) => Some(Abort { kind, percentage }),
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
        };
        let response_rate_limit = match &raw.response_rate_limit {
            None => None,
            Some(r) => {
                let rp = format!("{p}.response_rate_limit");
                let kind = match (&r.fixed_limit, &r.header_limit) {
                    (Some(f), None) if f.limit_kbps >= 1 => Some(LimitKind::Fixed(f.limit_kbps)),
                    (Some(_), None) => {
                        self.err(format!("{rp}.fixed_limit.limit_kbps"), "must be at least 1");
                        None
                    }
                    (None, Some(_)) => Some(LimitKind::Header),
                    _ => {
                        self.err(
                            rp.clone(),
                            "set exactly one of `fixed_limit`, `header_limit`",
                        );
                        None
                    }
                };
                let percentage = pct(self, format!("{rp}.percentage"), &r.percentage);
                match (kind, percentage) {
                    (Some(kind), Some(percentage)) => Some(RateLimit { kind, percentage }),
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
        };
        let mut headers = Vec::new();
        for (k, h) in raw.headers.iter().enumerate() {
            match self.header_match(&format!("{p}.headers[{k}]"), h) {
                Some(m) => headers.push(m),
                None => ok = false,
            }
        }
        if let Some(m) = raw.max_active_faults {
            if m > u64::from(u32::MAX) {
                self.err(
                    format!("{p}.max_active_faults"),
                    "must fit in 32 bits (Envoy's UInt32Value)",
                );
                ok = false;
            }
        }
        ok.then(|| FaultSettings {
            delay,
            abort,
            response_rate_limit,
            upstream_cluster: raw.upstream_cluster.clone().filter(|c| !c.is_empty()),
            headers,
            downstream_nodes: raw.downstream_nodes.clone(),
            max_active_faults: raw.max_active_faults,
        })
    }

    /// A `cors` filter: its counters are `http.<stat_prefix>.cors.*`.
    pub(super) fn cors_filter(&mut self, stat_prefix: &str) -> CorsFilter {
        CorsFilter {
            origin_valid: self.counter(format!("http.{stat_prefix}.cors.origin_valid")),
            origin_invalid: self.counter(format!("http.{stat_prefix}.cors.origin_invalid")),
        }
    }

    /// A route's `CorsPolicy`.
    pub(super) fn cors_policy(&mut self, p: &str, raw: &RawCorsPolicy) -> Option<CorsPolicy> {
        let mut ok = true;
        let mut allow_origin = Vec::new();
        for (k, m) in raw.allow_origin_string_match.iter().enumerate() {
            match self.string_match(&format!("{p}.allow_origin_string_match[{k}]"), m) {
                Some(m) => allow_origin.push(m),
                None => ok = false,
            }
        }
        let fraction = |b: &mut Builder, field: &str, f: &Option<_>| match f {
            None => Some(None),
            Some(f) => b.fraction(&format!("{p}.{field}"), f).map(Some),
        };
        let filter_enabled = fraction(self, "filter_enabled", &raw.filter_enabled);
        let shadow_enabled = fraction(self, "shadow_enabled", &raw.shadow_enabled);
        let string = |s: &Option<String>| s.clone().unwrap_or_default();
        // Header values go out as they are: no line breaks.
        for (field, v) in [
            ("allow_methods", &raw.allow_methods),
            ("allow_headers", &raw.allow_headers),
            ("expose_headers", &raw.expose_headers),
            ("max_age", &raw.max_age),
        ] {
            if v.as_deref()
                .is_some_and(|v| v.bytes().any(|b| b < b' ' && b != b'\t'))
            {
                self.err(
                    format!("{p}.{field}"),
                    "must not contain control characters",
                );
                ok = false;
            }
        }
        match (ok, filter_enabled, shadow_enabled) {
            (true, Some(filter_enabled), Some(shadow_enabled)) => Some(CorsPolicy {
                allow_origin,
                allow_methods: string(&raw.allow_methods),
                allow_headers: string(&raw.allow_headers),
                expose_headers: string(&raw.expose_headers),
                max_age: string(&raw.max_age),
                allow_credentials: raw.allow_credentials.unwrap_or(false),
                filter_enabled,
                shadow_enabled,
                allow_private_network_access: raw.allow_private_network_access.unwrap_or(false),
                forward_not_matching_preflights: raw
                    .forward_not_matching_preflights
                    .unwrap_or(true),
            }),
            _ => None,
        }
    }
}
