//! STRICT_DNS and LOGICAL_DNS clusters: their names and refresh settings
//! (`config::dns_model`). Nothing is resolved here: the control executor does it.

use std::time::Duration;

use super::super::dns_model::{Dns, DnsFamily, DnsTarget};
use super::super::model::Endpoint;
use super::super::raw::RawCluster;
use super::Builder;

/// Envoy's default `dns_refresh_rate`.
const DEFAULT_REFRESH: Duration = Duration::from_millis(5000);

impl Builder {
    /// The DNS fields of a cluster that is not a DNS cluster are refused (Envoy ignores
    /// them; a native config that sets them means something it does not get).
    pub(super) fn dns_fields(&mut self, p: &str, c: &RawCluster, dns: bool) {
        if dns {
            return;
        }
        for (set, f) in [
            (c.dns_refresh_rate.is_some(), "dns_refresh_rate"),
            (
                c.dns_failure_refresh_rate.is_some(),
                "dns_failure_refresh_rate",
            ),
            (c.dns_lookup_family.is_some(), "dns_lookup_family"),
        ] {
            if set {
                self.err(
                    format!("{p}.{f}"),
                    "is for a strict_dns or logical_dns cluster only",
                );
            }
        }
    }

    pub(super) fn dns(
        &mut self,
        p: &str,
        c: &RawCluster,
        logical: bool,
        targets: Vec<(String, u16, Endpoint)>,
    ) -> Dns {
        // Envoy: "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a
        // single lb_endpoint".
        if logical && targets.len() != 1 {
            self.err(
                format!("{p}.endpoints"),
                "a logical_dns cluster has exactly one endpoint",
            );
        }
        // Envoy's validation: greater than 1 ms.
        let at_least = |b: &mut Builder, at: String, d: Duration| {
            if d <= Duration::from_millis(1) {
                b.err(at, "must be greater than 1ms");
            }
            d
        };
        let refresh_rate = self.duration(
            format!("{p}.dns_refresh_rate"),
            &c.dns_refresh_rate,
            DEFAULT_REFRESH,
        );
        let refresh_rate = at_least(self, format!("{p}.dns_refresh_rate"), refresh_rate);
        let failure_refresh = c.dns_failure_refresh_rate.as_ref().map(|r| {
            let at = format!("{p}.dns_failure_refresh_rate");
            let base = self.duration(
                format!("{at}.base_interval"),
                &Some(r.base_interval.clone()),
                DEFAULT_REFRESH,
            );
            let base = at_least(self, format!("{at}.base_interval"), base);
            // Envoy's default maximum is ten times the base.
            let max = self.duration(format!("{at}.max_interval"), &r.max_interval, base * 10);
            let max = at_least(self, format!("{at}.max_interval"), max);
            if max < base {
                self.err(
                    format!("{at}.max_interval"),
                    "must be at least base_interval",
                );
            }
            (base, max)
        });
        let family = match c.dns_lookup_family.as_deref() {
            None => DnsFamily::Auto,
            Some(f) => DnsFamily::parse(f).unwrap_or_else(|| {
                self.err(
                    format!("{p}.dns_lookup_family"),
                    format!(
                        "unknown family `{f}` (use auto, v4_only, v6_only, v4_preferred or all)"
                    ),
                );
                DnsFamily::Auto
            }),
        };
        Dns {
            logical,
            refresh_rate,
            failure_refresh,
            family,
            targets: targets
                .into_iter()
                .map(|(host, port, template)| DnsTarget {
                    host,
                    port,
                    template,
                })
                .collect(),
        }
    }
}
