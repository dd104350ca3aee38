//! A cluster's `circuit_breakers`: Envoy's thresholds per priority, checked into the
//! DEFAULT priority's `Thresholds` (routes have no priority here, so HIGH is accepted
//! and never applies). A later entry for the same priority replaces an earlier one,
//! as in Envoy.

use super::super::circuit::{Breakers, RetryBudget, Thresholds};
use super::super::raw_circuit::RawCircuitBreakers;
use super::Builder;

impl Builder {
    pub(super) fn circuit_breakers(
        &mut self,
        p: &str,
        raw: Option<&RawCircuitBreakers>,
    ) -> Breakers {
        let mut default = Thresholds::default();
        let Some(raw) = raw else {
            return Breakers::new(default);
        };
        for (i, t) in raw.thresholds.iter().enumerate() {
            let tp = format!("{p}.circuit_breakers.thresholds[{i}]");
            let high = match t.priority.as_deref() {
                None | Some("DEFAULT") => false,
                Some("HIGH") => true,
                Some(_) => {
                    self.err(format!("{tp}.priority"), "must be `DEFAULT` or `HIGH`");
                    continue;
                }
            };
            if t.max_connection_pools.is_some() {
                self.err(
                    format!("{tp}.max_connection_pools"),
                    "not supported by Outrigger (its pools are one per endpoint and core)",
                );
            }
            let d = Thresholds::default();
            let retry_budget = t.retry_budget.as_ref().map(|b| RetryBudget {
                budget_percent: b.budget_percent.as_ref().map_or(20.0, |v| v.value),
                min_retry_concurrency: b.min_retry_concurrency.map_or(3, u64::from),
            });
            if let Some(b) = retry_budget {
                if !(0.0..=100.0).contains(&b.budget_percent) {
                    self.err(
                        format!("{tp}.retry_budget.budget_percent.value"),
                        "must be a percentage between 0 and 100",
                    );
                }
            }
            let th = Thresholds {
                max_connections: t.max_connections.map_or(d.max_connections, u64::from),
                max_pending_requests: t
                    .max_pending_requests
                    .map_or(d.max_pending_requests, u64::from),
                max_requests: t.max_requests.map_or(d.max_requests, u64::from),
                max_retries: t.max_retries.map_or(d.max_retries, u64::from),
                retry_budget,
                track_remaining: t.track_remaining,
            };
            if !high {
                default = th;
            }
        }
        Breakers::new(default)
    }
}
