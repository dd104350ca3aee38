//! Istio's metrics in Prometheus text, as Envoy's `/stats/prometheus` prints the `istio`
//! custom stat namespace: the bare `istio_*` names, a `# TYPE` line per family, and
//! histograms with cumulative `le` buckets, `_sum` and `_count`. Admin side only.

use std::fmt::Write;

use super::cells::{HistReport, IstioSeriesReport};
use super::BUCKETS;

fn counter(
    out: &mut String,
    name: &str,
    series: &[&IstioSeriesReport],
    get: fn(&IstioSeriesReport) -> u64,
) {
    if series.is_empty() {
        return;
    }
    let _ = writeln!(out, "# TYPE {name} counter");
    for s in series {
        let _ = writeln!(out, "{name}{{{}}} {}", s.labels, get(s));
    }
}

fn histogram(
    out: &mut String,
    name: &str,
    series: &[&IstioSeriesReport],
    get: fn(&IstioSeriesReport) -> &HistReport,
) {
    if series.is_empty() {
        return;
    }
    let _ = writeln!(out, "# TYPE {name} histogram");
    for s in series {
        let h = get(s);
        let mut cum = 0;
        for (i, n) in h.buckets.iter().enumerate() {
            cum += n;
            match BUCKETS.get(i) {
                Some(b) => {
                    let _ = writeln!(out, "{name}_bucket{{{},le=\"{b}\"}} {cum}", s.labels);
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{{},le=\"+Inf\"}} {cum}", s.labels);
                }
            }
        }
        let _ = writeln!(out, "{name}_sum{{{}}} {}", s.labels, h.sum);
        let _ = writeln!(out, "{name}_count{{{}}} {cum}", s.labels);
    }
}

/// Appends every Istio family that has a series.
pub fn render(out: &mut String, all: &[IstioSeriesReport]) {
    let mut http: Vec<&IstioSeriesReport> = all.iter().filter(|s| !s.tcp).collect();
    let mut tcp: Vec<&IstioSeriesReport> = all.iter().filter(|s| s.tcp).collect();
    http.sort_by(|a, b| a.labels.cmp(&b.labels));
    tcp.sort_by(|a, b| a.labels.cmp(&b.labels));
    counter(out, "istio_requests_total", &http, |s| s.requests);
    histogram(out, "istio_request_duration_milliseconds", &http, |s| {
        &s.duration_ms
    });
    histogram(out, "istio_request_bytes", &http, |s| &s.request_bytes);
    histogram(out, "istio_response_bytes", &http, |s| &s.response_bytes);
    counter(out, "istio_tcp_connections_opened_total", &tcp, |s| {
        s.tcp_opened
    });
    counter(out, "istio_tcp_connections_closed_total", &tcp, |s| {
        s.tcp_closed
    });
    counter(out, "istio_tcp_sent_bytes_total", &tcp, |s| s.tcp_sent);
    counter(out, "istio_tcp_received_bytes_total", &tcp, |s| {
        s.tcp_received
    });
}
