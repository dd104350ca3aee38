//! A cluster's priorities and localities: each endpoint's `priority`, `locality` and
//! `health_status`, the cluster's `locality_weights`, `locality_weighted_lb` and
//! `overprovisioning_factor` (Envoy's `ClusterLoadAssignment` fields, flattened), checked
//! as Envoy checks them, and the per-policy settings (slow start, least request's bias,
//! peak EWMA's). Control plane only.

use super::super::model::{EndpointHealth, LbPolicy, Localities, Locality, SlowStart};
use super::super::raw::{RawCluster, RawEndpoint};
use super::super::PeakEwma;
use super::Builder;

impl Builder {
    /// Every locality the endpoints name, in first-seen order (an endpoint without one
    /// is in the unnamed locality, `""`), weighted from `locality_weights` (0: none).
    pub(super) fn localities(
        &mut self,
        p: &str,
        c: &RawCluster,
        eps: &[RawEndpoint],
    ) -> Localities {
        let mut list: Vec<Locality> = Vec::new();
        for e in eps {
            let name = e.locality.as_deref().unwrap_or("");
            if !list.iter().any(|l| l.name == name) {
                let weight = c
                    .locality_weights
                    .as_ref()
                    .and_then(|w| w.get(name).copied())
                    .unwrap_or(0);
                list.push(Locality {
                    name: name.to_string(),
                    weight,
                });
            }
        }
        if let Some(w) = &c.locality_weights {
            for (name, weight) in w {
                if !list.iter().any(|l| &l.name == name) {
                    self.err(
                        format!("{p}.locality_weights.{name}"),
                        "no endpoint is in this locality",
                    );
                }
                if *weight == 0 {
                    // Envoy: a locality weight is at least 1 (unset means no load).
                    self.err(format!("{p}.locality_weights.{name}"), "must be at least 1");
                }
            }
        }
        let overprovisioning_factor = c.overprovisioning_factor.unwrap_or(140);
        if overprovisioning_factor == 0 {
            self.err(format!("{p}.overprovisioning_factor"), "must be at least 1");
        }
        for (j, e) in eps.iter().enumerate() {
            // Envoy's priorities are bounded by its proto (at most 128 levels make sense;
            // each level is a set on every core).
            if e.priority.is_some_and(|p| p > 127) {
                self.err(
                    format!("{p}.endpoints[{j}].priority"),
                    "must be at most 127",
                );
            }
        }
        let weighted = c.locality_weighted_lb.unwrap_or(false);
        if weighted && matches!(c.lb_policy.as_deref(), Some("ring_hash" | "maglev")) {
            // Envoy folds locality weights into the ring's or table's weights; not done
            // here, so refused rather than silently different.
            self.err(
                format!("{p}.locality_weighted_lb"),
                "not supported with `ring_hash` or `maglev`",
            );
        }
        Localities {
            overprovisioning_factor: overprovisioning_factor.max(1),
            weighted,
            list,
        }
    }

    /// Envoy's `slow_start_config`: a positive window, a positive aggression (1.0),
    /// a minimum weight percentage (10); round robin and least request only.
    pub(super) fn slow_start(
        &mut self,
        p: &str,
        c: &RawCluster,
        policy: LbPolicy,
    ) -> Option<SlowStart> {
        let s = c.slow_start.as_ref()?;
        let p = format!("{p}.slow_start");
        if !matches!(
            policy,
            LbPolicy::RoundRobin | LbPolicy::LeastRequest | LbPolicy::PeakEwma
        ) {
            self.err(
                p.clone(),
                "goes with `round_robin`, `least_request` or `peak_ewma` only",
            );
        }
        let window = if s.slow_start_window.is_none() {
            self.err(format!("{p}.slow_start_window"), "is required");
            std::time::Duration::ZERO
        } else {
            self.positive_duration(
                format!("{p}.slow_start_window"),
                &s.slow_start_window,
                std::time::Duration::ZERO,
            )
        };
        let aggression = s.aggression.unwrap_or(1.0);
        if !(aggression > 0.0 && aggression.is_finite()) {
            self.err(format!("{p}.aggression"), "must be greater than 0");
        }
        let min_weight_percent = s.min_weight_percent.unwrap_or(10.0);
        if !(0.0..=100.0).contains(&min_weight_percent) {
            self.err(
                format!("{p}.min_weight_percent"),
                "must be a percentage between 0 and 100",
            );
        }
        Some(SlowStart {
            window,
            aggression,
            min_weight_percent,
        })
    }

    /// Envoy's `least_request_lb_config.active_request_bias` (default 1.0): a number
    /// not below 0, with `lb_policy: least_request` only.
    pub(super) fn active_request_bias(&mut self, p: &str, c: &RawCluster, policy: LbPolicy) -> f64 {
        let Some(l) = c.least_request_lb_config.as_ref() else {
            return 1.0;
        };
        let p = format!("{p}.least_request_lb_config");
        if policy != LbPolicy::LeastRequest {
            self.err(p.clone(), "goes with `lb_policy: least_request`");
        }
        let bias = l.active_request_bias.unwrap_or(1.0);
        if !(bias >= 0.0 && bias.is_finite()) {
            self.err(
                format!("{p}.active_request_bias"),
                "must be a number not below 0",
            );
            return 1.0;
        }
        bias
    }

    /// Peak EWMA's `peak_ewma_lb_config` (Envoy's contrib `PeakEwma` defaults: 10s,
    /// 10ms, 1e6): positive durations and a positive penalty, with `lb_policy:
    /// peak_ewma` only.
    pub(super) fn peak_ewma(&mut self, p: &str, c: &RawCluster, policy: LbPolicy) -> PeakEwma {
        let d = PeakEwma::default();
        let Some(r) = c.peak_ewma_lb_config.as_ref() else {
            return d;
        };
        let p = format!("{p}.peak_ewma_lb_config");
        if policy != LbPolicy::PeakEwma {
            self.err(p.clone(), "goes with `lb_policy: peak_ewma`");
        }
        let decay = self.positive_duration(format!("{p}.decay_time"), &r.decay_time, d.decay);
        let default_rtt =
            self.positive_duration(format!("{p}.default_rtt"), &r.default_rtt, d.default_rtt);
        let penalty = r.penalty_value.unwrap_or(d.penalty);
        if !(penalty > 0.0 && penalty.is_finite()) {
            self.err(format!("{p}.penalty_value"), "must be a number above 0");
        }
        PeakEwma {
            decay,
            default_rtt,
            penalty: if penalty > 0.0 && penalty.is_finite() {
                penalty
            } else {
                d.penalty
            },
        }
    }

    /// Envoy's `health_status` in lower case: `unknown` and `healthy` are healthy;
    /// `unhealthy` and `timeout` take no load (except in panic) but count; `draining`
    /// endpoints are left out altogether by the caller (Envoy excludes them).
    pub(super) fn endpoint_health(&mut self, ep: &str, s: Option<&str>) -> EndpointHealth {
        match s {
            None | Some("unknown" | "healthy") => EndpointHealth::Healthy,
            Some("degraded") => EndpointHealth::Degraded,
            Some("unhealthy" | "draining" | "timeout") => EndpointHealth::Unhealthy,
            Some(other) => {
                self.err(
                    format!("{ep}.health_status"),
                    format!("`{other}` is not one of unknown, healthy, degraded, unhealthy, draining, timeout"),
                );
                EndpointHealth::Healthy
            }
        }
    }
}

/// The index of the locality `name` (the unnamed one for `None`) in `l.list`.
pub(super) fn index(l: &Localities, name: Option<&str>) -> usize {
    let name = name.unwrap_or("");
    l.list.iter().position(|x| x.name == name).unwrap_or(0)
}
