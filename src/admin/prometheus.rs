//! Prometheus text exposition (version 0.0.4) of the merged stats.

use std::fmt::Write;

use super::prom_text::{esc, family, le_seconds};
use crate::observe::stats::{StatsReport, DURATION_BUCKETS_US, UPSTREAM_RQ_TIME_BUCKETS_US};

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub fn render(r: &StatsReport) -> String {
    let mut out = String::new();
    let ls = &r.listeners;
    let cs = &r.clusters;

    macro_rules! per_listener {
        ($name:literal, $kind:literal, $help:literal, $field:ident) => {
            family(&mut out, $name, $kind, $help);
            for l in ls {
                let _ = writeln!(
                    out,
                    "{}{{listener=\"{}\"}} {}",
                    $name,
                    esc(&l.name),
                    l.$field
                );
            }
        };
    }
    per_listener!(
        "outrigger_downstream_cx_total",
        "counter",
        "Downstream connections accepted.",
        cx_total
    );
    per_listener!(
        "outrigger_downstream_cx_active",
        "gauge",
        "Downstream connections open.",
        cx_active
    );
    per_listener!(
        "outrigger_downstream_rq_total",
        "counter",
        "Downstream requests completed.",
        rq_total
    );
    per_listener!(
        "outrigger_downstream_bytes_received_total",
        "counter",
        "Request bytes received.",
        bytes_received
    );
    per_listener!(
        "outrigger_downstream_bytes_sent_total",
        "counter",
        "Response bytes sent.",
        bytes_sent
    );
    per_listener!(
        "outrigger_access_log_dropped_total",
        "counter",
        "Access-log lines dropped because the flush thread fell behind.",
        access_log_dropped
    );
    per_listener!(
        "outrigger_downstream_cx_panic_total",
        "counter",
        "Connections or HTTP/2 streams cut off because their handling panicked (a bug; see the error log).",
        cx_panic
    );
    per_listener!(
        "outrigger_downstream_cx_overflow_total",
        "counter",
        "Connections closed at accept because a connection limit was reached.",
        cx_overflow
    );
    per_listener!(
        "outrigger_no_filter_chain_match_total",
        "counter",
        "Connections closed because no filter chain matched them and the listener has no default chain.",
        no_filter_chain_match
    );
    per_listener!(
        "outrigger_downstream_pre_cx_timeout_total",
        "counter",
        "Connections whose listener filters did not finish within the listener filters timeout.",
        pre_cx_timeout
    );
    tls(&mut out, ls);
    super::prometheus_routes::counters(&mut out, &r.counters);
    family(
        &mut out,
        "outrigger_filter_counter_total",
        "counter",
        "Filter counters by Envoy's stat name (http.<stat_prefix>.rbac.allowed, <stat_prefix>.http_local_rate_limit.rate_limited, ...).",
    );
    for (name, n) in &r.counters {
        if super::prometheus_routes::split(name).is_some() {
            continue;
        }
        let _ = writeln!(
            out,
            "outrigger_filter_counter_total{{name=\"{}\"}} {n}",
            esc(name)
        );
    }

    family(
        &mut out,
        "outrigger_downstream_rq_xx_total",
        "counter",
        "Downstream requests by response code class.",
    );
    for l in ls {
        for (i, n) in l.rq_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "outrigger_downstream_rq_xx_total{{listener=\"{}\",class=\"{}\"}} {n}",
                esc(&l.name),
                CLASSES[i]
            );
        }
    }
    family(
        &mut out,
        "outrigger_downstream_rq_flag_total",
        "counter",
        "Downstream requests by Envoy-style response flag.",
    );
    for l in ls {
        for (flag, n) in &l.rq_flags {
            let _ = writeln!(
                out,
                "outrigger_downstream_rq_flag_total{{listener=\"{}\",flag=\"{flag}\"}} {n}",
                esc(&l.name)
            );
        }
    }
    family(
        &mut out,
        "outrigger_downstream_rq_time_seconds",
        "histogram",
        "Request duration from complete head to end of response.",
    );
    for l in ls {
        let mut cum = 0;
        for (i, n) in l.rq_time.buckets.iter().enumerate() {
            cum += n;
            let le = le_seconds(&l.rq_time, &DURATION_BUCKETS_US, i);
            let _ = writeln!(
                out,
                "outrigger_downstream_rq_time_seconds_bucket{{listener=\"{}\",le=\"{le}\"}} {cum}",
                esc(&l.name)
            );
        }
        let _ = writeln!(
            out,
            "outrigger_downstream_rq_time_seconds_sum{{listener=\"{}\"}} {}",
            esc(&l.name),
            l.rq_time.sum_us as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "outrigger_downstream_rq_time_seconds_count{{listener=\"{}\"}} {cum}",
            esc(&l.name)
        );
    }

    upstream_rq_time(&mut out, cs);
    super::prometheus_routes::rq_time(&mut out, &r.histograms);
    phase_histograms(&mut out, ls);

    macro_rules! per_cluster {
        ($name:literal, $kind:literal, $help:literal, $field:ident) => {
            family(&mut out, $name, $kind, $help);
            for c in cs {
                let _ = writeln!(
                    out,
                    "{}{{cluster=\"{}\"}} {}",
                    $name,
                    esc(&c.name),
                    c.$field
                );
            }
        };
    }
    per_cluster!(
        "outrigger_upstream_rq_total",
        "counter",
        "Requests sent to the cluster (or refused for it).",
        rq_total
    );
    per_cluster!(
        "outrigger_upstream_rq_timeout_total",
        "counter",
        "Requests that hit the route timeout.",
        rq_timeout
    );
    per_cluster!(
        "outrigger_upstream_cx_total",
        "counter",
        "Upstream connections opened.",
        cx_total
    );
    per_cluster!(
        "outrigger_upstream_cx_connect_fail_total",
        "counter",
        "Upstream connection attempts that failed.",
        cx_connect_fail
    );
    per_cluster!(
        "outrigger_upstream_cx_reused_total",
        "counter",
        "Requests sent on a pooled keep-alive connection.",
        cx_reused
    );
    per_cluster!(
        "outrigger_upstream_rq_no_healthy_total",
        "counter",
        "Requests refused because the cluster had no endpoint.",
        rq_no_healthy
    );
    per_cluster!(
        "outrigger_upstream_rq_reset_total",
        "counter",
        "Requests whose upstream connection closed or reset.",
        rq_reset
    );
    per_cluster!(
        "outrigger_upstream_rq_protocol_error_total",
        "counter",
        "Malformed upstream responses.",
        rq_protocol_error
    );
    per_cluster!(
        "outrigger_upstream_rq_retry_total",
        "counter",
        "Retries made (Envoy's upstream_rq_retry).",
        rq_retry
    );
    per_cluster!(
        "outrigger_upstream_rq_retry_success_total",
        "counter",
        "Requests that succeeded after a retry.",
        rq_retry_success
    );
    per_cluster!(
        "outrigger_upstream_rq_retry_overflow_total",
        "counter",
        "Retries refused by the circuit breakers (max_retries or the retry budget).",
        rq_retry_overflow
    );
    per_cluster!(
        "outrigger_upstream_rq_pending_overflow_total",
        "counter",
        "Requests refused by max_pending_requests (503 UO).",
        rq_pending_overflow
    );
    per_cluster!(
        "outrigger_upstream_rq_active_overflow_total",
        "counter",
        "Requests refused by max_requests (503 UO).",
        rq_active_overflow
    );
    per_cluster!(
        "outrigger_upstream_cx_overflow_total",
        "counter",
        "New connections max_connections refused (the request waited, or one was opened anyway).",
        cx_overflow
    );
    per_cluster!(
        "outrigger_upstream_cx_pool_overflow_total",
        "counter",
        "Requests refused because a new connection pool would pass max_connection_pools (503 UH).",
        cx_pool_overflow
    );
    per_cluster!(
        "outrigger_upstream_cx_max_requests_total",
        "counter",
        "Connections closed for reaching max_requests_per_connection.",
        cx_max_requests
    );
    per_cluster!(
        "outrigger_upstream_cx_idle_timeout_total",
        "counter",
        "Connections closed after the cluster's idle timeout with no request.",
        cx_idle_timeout
    );
    per_cluster!(
        "outrigger_upstream_rq_retry_limit_exceeded_total",
        "counter",
        "Retriable requests whose retries ran out.",
        rq_retry_limit_exceeded
    );
    per_cluster!(
        "outrigger_upstream_rq_retry_backoff_exponential_total",
        "counter",
        "Retries that waited the exponential back-off.",
        rq_retry_backoff_exponential
    );
    per_cluster!(
        "outrigger_upstream_rq_per_try_timeout_total",
        "counter",
        "Tries that hit the per-try timeout.",
        rq_per_try_timeout
    );
    per_cluster!(
        "outrigger_upstream_rq_per_try_idle_timeout_total",
        "counter",
        "Tries that hit the per-try idle timeout.",
        rq_per_try_idle_timeout
    );
    per_cluster!(
        "outrigger_upstream_rq_max_duration_reached_total",
        "counter",
        "Tries ended by the cluster's max_stream_duration.",
        rq_max_duration_reached
    );
    per_cluster!(
        "outrigger_upstream_rq_shadow_total",
        "counter",
        "Shadow requests sent to this cluster by request mirroring.",
        rq_shadow
    );
    per_cluster!(
        "outrigger_upstream_rq_shadow_failed_total",
        "counter",
        "Shadow requests that got no response (connect failure, reset, timeout).",
        rq_shadow_failed
    );
    per_cluster!(
        "outrigger_upstream_rq_shadow_dropped_total",
        "counter",
        "Shadow requests not sent (too many in flight on a core).",
        rq_shadow_dropped
    );
    per_cluster!(
        "outrigger_upstream_rq_shadow_abandoned_total",
        "counter",
        "Shadow requests reset because they fell behind the request body past the bound.",
        rq_shadow_abandoned
    );
    per_cluster!(
        "outrigger_retry_or_shadow_abandoned_total",
        "counter",
        "Requests not retried because their body outgrew the retry buffer limit.",
        retry_or_shadow_abandoned
    );
    per_cluster!(
        "outrigger_upstream_lb_healthy_panic_total",
        "counter",
        "Picks among all endpoints because too few passed their health checks.",
        lb_healthy_panic
    );
    ext_authz(&mut out, cs);
    health_checks(&mut out, cs);
    outlier_detection(&mut out, cs);
    circuit_breakers(&mut out, cs);
    family(
        &mut out,
        "outrigger_upstream_rq_xx_total",
        "counter",
        "Upstream requests by response code class (local 5xx included).",
    );
    for c in cs {
        for (i, n) in c.rq_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "outrigger_upstream_rq_xx_total{{cluster=\"{}\",class=\"{}\"}} {n}",
                esc(&c.name),
                CLASSES[i]
            );
        }
    }
    if let Some(t) = crate::observe::trace::export::report() {
        for (name, help, n) in [
            (
                "spans_sent",
                "Spans the exporter sent to the collector.",
                t.spans_sent,
            ),
            (
                "spans_dropped",
                "Spans dropped because a worker's queue to the exporter was full.",
                t.spans_dropped,
            ),
            (
                "export_failures",
                "Export requests that failed (not answered 2xx).",
                t.export_failures,
            ),
        ] {
            let full = format!("outrigger_tracing_opentelemetry_{name}_total");
            family(&mut out, &full, "counter", help);
            let _ = writeln!(out, "{full} {n}");
        }
    }
    if let Some(n) = crate::observe::alloc_count::allocations() {
        family(
            &mut out,
            "outrigger_process_allocations_total",
            "counter",
            "Heap allocations by the whole process (alloc-count builds only).",
        );
        let _ = writeln!(out, "outrigger_process_allocations_total {n}");
    }
    crate::observe::istio::render::render(&mut out, &r.istio);
    out
}

/// Envoy's `cluster.<name>.circuit_breakers.{default,high}.*` gauges (`remaining_*`
/// only with `track_remaining`).
/// Envoy's `cluster.<name>.upstream_rq_time`, in seconds as Prometheus prefers (Envoy's
/// default buckets: 0.5 ms to 1 h).
fn upstream_rq_time(out: &mut String, cs: &[crate::observe::stats::ClusterReport]) {
    const NAME: &str = "outrigger_upstream_rq_time_seconds";
    family(
        out,
        NAME,
        "histogram",
        "Upstream request time: from the filters' end to the end of the upstream response (Envoy's upstream_rq_time).",
    );
    for c in cs {
        let name = esc(&c.name);
        let mut cum = 0;
        for (i, n) in c.rq_time.buckets.iter().enumerate() {
            cum += n;
            let le = le_seconds(&c.rq_time, &UPSTREAM_RQ_TIME_BUCKETS_US, i);
            let _ = writeln!(out, "{NAME}_bucket{{cluster=\"{name}\",le=\"{le}\"}} {cum}");
        }
        let sum = c.rq_time.sum_us as f64 / 1e6;
        let _ = writeln!(out, "{NAME}_sum{{cluster=\"{name}\"}} {sum}");
        let _ = writeln!(out, "{NAME}_count{{cluster=\"{name}\"}} {cum}");
    }
}

/// Envoy's `cluster.<name>.ext_authz.[<prefix>.]<stat>`, made by their first count:
/// `outrigger_cluster_ext_authz_<stat>_total{cluster, ext_authz_prefix}` (the filter's
/// own `stat_prefix`, empty without one), as Envoy's tag extraction labels them.
fn ext_authz(out: &mut String, cs: &[crate::observe::stats::ClusterReport]) {
    use crate::observe::authz_stats::NAMES;
    for (i, stat) in NAMES.iter().enumerate() {
        let series = format!("outrigger_cluster_ext_authz_{stat}_total");
        let mut wrote = false;
        for c in cs {
            for a in &c.ext_authz {
                let n = a.counts.get(i).copied().unwrap_or(0);
                if n == 0 {
                    continue;
                }
                if !wrote {
                    family(
                        out,
                        &series,
                        "counter",
                        "ext_authz checks of requests routed to the cluster, by result.",
                    );
                    wrote = true;
                }
                let _ = writeln!(
                    out,
                    "{series}{{cluster=\"{}\",ext_authz_prefix=\"{}\"}} {n}",
                    esc(&c.name),
                    esc(&a.prefix)
                );
            }
        }
    }
}

fn circuit_breakers(out: &mut String, cs: &[crate::observe::stats::ClusterReport]) {
    type Field = fn(&crate::config::circuit::BreakerReport) -> Option<u64>;
    let gauges: [(&str, &str, Field); 10] = [
        ("cx_open", "1 while max_connections is reached.", |b| {
            Some(b.cx_open)
        }),
        (
            "rq_pending_open",
            "1 while max_pending_requests is reached.",
            |b| Some(b.rq_pending_open),
        ),
        ("rq_open", "1 while max_requests is reached.", |b| {
            Some(b.rq_open)
        }),
        (
            "rq_retry_open",
            "1 while max_retries (or the retry budget) is reached.",
            |b| Some(b.rq_retry_open),
        ),
        (
            "remaining_cx",
            "Connections left before max_connections.",
            |b| b.remaining_cx,
        ),
        (
            "remaining_pending",
            "Pending requests left before max_pending_requests.",
            |b| b.remaining_pending,
        ),
        ("remaining_rq", "Requests left before max_requests.", |b| {
            b.remaining_rq
        }),
        (
            "remaining_retries",
            "Retries left before max_retries.",
            |b| b.remaining_retries,
        ),
        (
            "cx_pool_open",
            "1 while max_connection_pools is reached.",
            |b| Some(b.cx_pool_open),
        ),
        (
            "remaining_cx_pools",
            "Connection pools left before max_connection_pools.",
            |b| b.remaining_cx_pools,
        ),
    ];
    for (name, help, get) in gauges {
        let series = format!("outrigger_circuit_breakers_{name}");
        family(out, &series, "gauge", help);
        for c in cs {
            let priorities = [
                ("default", &c.circuit_breakers),
                ("high", &c.circuit_breakers_high),
            ];
            for (p, b) in priorities {
                if let Some(v) = b.as_ref().and_then(get) {
                    let _ = writeln!(
                        out,
                        "{series}{{cluster=\"{}\",priority=\"{p}\"}} {v}",
                        esc(&c.name)
                    );
                }
            }
        }
    }
}

/// Envoy's `cluster.<name>.outlier_detection.*`, for clusters with outlier detection:
/// `ejections_active` a gauge, the rest counters (`_total` appended, so Envoy's
/// `ejections_enforced_total` is `outrigger_outlier_detection_ejections_enforced_total`).
fn outlier_detection(out: &mut String, cs: &[crate::observe::stats::ClusterReport]) {
    let Some(names) = cs
        .iter()
        .find_map(|c| c.outlier_detection.as_ref())
        .map(|o| o.fields().map(|(n, _)| n))
    else {
        return;
    };
    for (k, name) in names.iter().enumerate() {
        let gauge = *name == "ejections_active";
        let series = if gauge || name.ends_with("_total") {
            format!("outrigger_outlier_detection_{name}")
        } else {
            format!("outrigger_outlier_detection_{name}_total")
        };
        let kind = if gauge { "gauge" } else { "counter" };
        family(
            out,
            &series,
            kind,
            &format!("Envoy's outlier_detection.{name}."),
        );
        for c in cs {
            if let Some((_, v)) = c
                .outlier_detection
                .as_ref()
                .and_then(|o| o.fields().get(k).copied())
            {
                let _ = writeln!(out, "{series}{{cluster=\"{}\"}} {v}", esc(&c.name));
            }
        }
    }
}

/// Envoy's `cluster.<name>.health_check.*`, for clusters with health checks.
fn health_checks(out: &mut String, cs: &[crate::observe::stats::ClusterReport]) {
    type Field = fn(&crate::observe::stats::HealthCheckReport) -> u64;
    let families: [(&str, &str, &str, Field); 6] = [
        ("attempt", "counter", "Health checks started.", |h| {
            h.attempt
        }),
        ("success", "counter", "Health checks passed.", |h| h.success),
        (
            "failure",
            "counter",
            "Health checks failed (any reason).",
            |h| h.failure,
        ),
        (
            "network_failure",
            "counter",
            "Health checks failed by a network error or timeout.",
            |h| h.network_failure,
        ),
        (
            "verify_cluster",
            "counter",
            "Health checks that verified the service name.",
            |h| h.verify_cluster,
        ),
        (
            "healthy",
            "gauge",
            "Endpoints passing their health checks.",
            |h| h.healthy,
        ),
    ];
    for (name, kind, help, get) in families {
        let series = if kind == "counter" {
            format!("outrigger_health_check_{name}_total")
        } else {
            format!("outrigger_health_check_{name}")
        };
        family(out, &series, kind, help);
        for c in cs {
            if let Some(h) = &c.health_check {
                let _ = writeln!(out, "{series}{{cluster=\"{}\"}} {}", esc(&c.name), get(h));
            }
        }
    }
}

/// Envoy's `ssl.*` listener counters, as `outrigger_ssl_*_total{listener}`; versions,
/// ciphers and curves as one family each with the name as a label.
fn tls(out: &mut String, ls: &[crate::observe::stats::ListenerReport]) {
    type Get = fn(&crate::observe::tls_stats::TlsReport) -> u64;
    let counters: [(&str, &str, Get); 7] = [
        ("handshake", "Successful TLS handshakes.", |t| t.handshake),
        (
            "connection_error",
            "TLS handshakes that failed, other than certificate verification.",
            |t| t.connection_error,
        ),
        (
            "fail_verify_error",
            "TLS handshakes whose client certificate failed CA verification (unknown CA, expired, bad signature).",
            |t| t.fail_verify_error,
        ),
        (
            "fail_verify_san",
            "TLS handshakes whose client certificate had no allowed subject alternative name.",
            |t| t.fail_verify_san,
        ),
        (
            "fail_verify_no_cert",
            "TLS handshakes that failed because the client sent no certificate where one is required.",
            |t| t.fail_verify_no_cert,
        ),
        (
            "session_reused",
            "TLS handshakes that resumed a session.",
            |t| t.session_reused,
        ),
        (
            "no_certificate",
            "Successful TLS handshakes without a client certificate.",
            |t| t.no_certificate,
        ),
    ];
    for (name, help, get) in counters {
        let full = format!("outrigger_ssl_{name}_total");
        family(out, &full, "counter", help);
        for l in ls {
            let _ = writeln!(
                out,
                "{full}{{listener=\"{}\"}} {}",
                esc(&l.name),
                get(&l.ssl)
            );
        }
    }
    type Table =
        fn(&crate::observe::tls_stats::TlsReport) -> &std::collections::BTreeMap<String, u64>;
    let tables: [(&str, &str, &str, Table); 3] = [
        (
            "versions",
            "version",
            "TLS handshakes by protocol version.",
            |t| &t.versions,
        ),
        (
            "ciphers",
            "cipher",
            "TLS handshakes by cipher suite.",
            |t| &t.ciphers,
        ),
        (
            "curves",
            "curve",
            "TLS handshakes by key exchange group.",
            |t| &t.curves,
        ),
    ];
    for (name, label, help, get) in tables {
        let full = format!("outrigger_ssl_{name}_total");
        family(out, &full, "counter", help);
        for l in ls {
            for (k, n) in get(&l.ssl) {
                let _ = writeln!(
                    out,
                    "{full}{{listener=\"{}\",{label}=\"{}\"}} {n}",
                    esc(&l.name),
                    esc(k)
                );
            }
        }
    }
}

/// The self-time breakdown (`observe::phases`): one histogram per listener and phase.
fn phase_histograms(out: &mut String, ls: &[crate::observe::stats::ListenerReport]) {
    use crate::observe::phases::{PHASE_BUCKETS_US, PHASE_NAMES};
    const NAME: &str = "outrigger_downstream_rq_phase_seconds";
    family(
        out,
        NAME,
        "histogram",
        "Time requests spent in each phase of the proxy's path (accept_queue, parse, filters, upstream_connect, upstream_wait, response_write).",
    );
    for l in ls {
        let name = esc(&l.name);
        for (phase, h) in PHASE_NAMES.iter().zip(&l.phases) {
            let mut cum = 0;
            for (i, n) in h.buckets.iter().enumerate() {
                cum += n;
                let le = le_seconds(h, &PHASE_BUCKETS_US, i);
                let _ = writeln!(
                    out,
                    "{NAME}_bucket{{listener=\"{name}\",phase=\"{phase}\",le=\"{le}\"}} {cum}"
                );
            }
            let sum = h.sum_us as f64 / 1e6;
            let _ = writeln!(
                out,
                "{NAME}_sum{{listener=\"{name}\",phase=\"{phase}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "{NAME}_count{{listener=\"{name}\",phase=\"{phase}\"}} {cum}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::flags::ResponseFlag;
    use crate::observe::stats::ListenerStats;

    #[test]
    fn renders_histogram_cumulatively() {
        let l = ListenerStats::default();
        l.request_done(200, ResponseFlag::None, 100);
        l.request_done(200, ResponseFlag::None, 3_000);
        let r = StatsReport {
            listeners: vec![l.report("in")],
            clusters: vec![],
            ..Default::default()
        };
        let text = render(&r);
        assert!(
            text.contains("outrigger_downstream_rq_total{listener=\"in\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "outrigger_downstream_rq_time_seconds_bucket{listener=\"in\",le=\"0.00025\"} 1"
        ));
        assert!(text.contains(
            "outrigger_downstream_rq_time_seconds_bucket{listener=\"in\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("outrigger_downstream_rq_xx_total{listener=\"in\",class=\"2xx\"} 2"));
    }
}
