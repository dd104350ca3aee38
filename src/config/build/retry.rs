//! Building a route's retry policy (`config::RetryPolicy`) from the raw one, with
//! Envoy's defaults: one retry, 25 ms base back-off, a maximum of 10 times the base,
//! one host re-selection. Part of `config::build`; `routes.rs` picks the route's
//! policy or, when it has none, its virtual host's (Envoy: no merge).

use std::time::Duration;

use super::super::raw_retry::RawRetryPolicy;
use super::super::retry_model::{parse_config_retry_on, RetryPolicy};
use super::Builder;

const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";

impl Builder {
    pub(super) fn retry_policy(&mut self, p: &str, r: &RawRetryPolicy) -> RetryPolicy {
        let retry_on = match r.retry_on.as_deref() {
            None => 0,
            Some(list) => {
                let (bits, unknown) = parse_config_retry_on(list);
                if let Some(u) = unknown {
                    self.err(
                        format!("{p}.retry_on"),
                        format!("unknown retry condition `{u}`"),
                    );
                }
                bits
            }
        };
        let per_try_timeout = self.duration(
            format!("{p}.per_try_timeout"),
            &r.per_try_timeout,
            Duration::ZERO,
        );
        let per_try_idle_timeout = self.duration(
            format!("{p}.per_try_idle_timeout"),
            &r.per_try_idle_timeout,
            Duration::ZERO,
        );
        let (base_interval, max_interval) = match &r.retry_back_off {
            None => (Duration::from_millis(25), Duration::from_millis(250)),
            Some(b) => {
                let bp = format!("{p}.retry_back_off");
                let base = self.duration(
                    format!("{bp}.base_interval"),
                    &Some(b.base_interval.clone()),
                    Duration::from_millis(25),
                );
                // Envoy requires at least 1 ms.
                if base < Duration::from_millis(1) {
                    self.err(format!("{bp}.base_interval"), "must be at least 1ms");
                }
                let max = self.duration(format!("{bp}.max_interval"), &b.max_interval, base * 10);
                if max < base {
                    self.err(
                        format!("{bp}.max_interval"),
                        "must not be less than base_interval",
                    );
                }
                (base, max)
            }
        };
        for (k, c) in r.retriable_status_codes.iter().enumerate() {
            if !(100..=599).contains(c) {
                self.err(
                    format!("{p}.retriable_status_codes[{k}]"),
                    "not an HTTP status code",
                );
            }
        }
        let retriable_headers = r
            .retriable_headers
            .iter()
            .enumerate()
            .filter_map(|(k, h)| self.header_match(&format!("{p}.retriable_headers[{k}]"), h))
            .collect();
        let retriable_request_headers = r
            .retriable_request_headers
            .iter()
            .enumerate()
            .filter_map(|(k, h)| {
                self.header_match(&format!("{p}.retriable_request_headers[{k}]"), h)
            })
            .collect();
        let mut previous_hosts = false;
        for (k, n) in r.retry_host_predicate.iter().enumerate() {
            if n.name == PREVIOUS_HOSTS {
                previous_hosts = true;
            } else {
                self.err(
                    format!("{p}.retry_host_predicate[{k}].name"),
                    format!(
                        "unknown retry host predicate `{}` (only `{PREVIOUS_HOSTS}`)",
                        n.name
                    ),
                );
            }
        }
        RetryPolicy {
            retry_on,
            num_retries: r.num_retries.unwrap_or(1),
            per_try_timeout,
            per_try_idle_timeout,
            base_interval,
            max_interval,
            retriable_status_codes: r.retriable_status_codes.clone(),
            retriable_headers,
            retriable_request_headers,
            previous_hosts,
            host_selection_max_attempts: r.host_selection_retry_max_attempts.unwrap_or(1),
        }
    }
}
