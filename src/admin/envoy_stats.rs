//! `/stats` with Envoy's query parameters (admin server, control executor; never on
//! the request path): the merged report flattened into Envoy-style stat names, filtered
//! by `filter=<regex>` (RE2 syntax; the `regex` crate is linear-time like RE2),
//! `usedonly` and `type=`, and written in Envoy's `text` or `json` shape, or as the
//! Prometheus text of `/stats/prometheus` filtered the same way.
//!
//! Names follow Envoy's where Envoy has the stat: `cluster.<name>.upstream_rq_total`,
//! `cluster.<name>.health_check.attempt`, `cluster.<name>.outlier_detection.*`,
//! `cluster.<name>.circuit_breakers.default.*`, the filters' counters as they are
//! (`http.<stat_prefix>.rbac.allowed`). A listener's counters sit under
//! `listener.<listener name>.` with Envoy's suffixes (`downstream_cx_total`,
//! `downstream_rq_2xx`, `ssl.handshake`, ...). Histograms are in milliseconds, their
//! quantiles estimated from the buckets; Outrigger keeps no interval (since the last
//! flush) values, so a quantile's `interval` is `null` (JSON) or `nan` (text).

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::observe::buckets::format_g;
use crate::observe::stats::{
    HistogramReport, StatsReport, DURATION_BUCKETS_US, UPSTREAM_RQ_TIME_BUCKETS_US,
};

/// Envoy's `supported_quantiles`, in percent.
const QUANTILES: [f64; 10] = [0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 100.0];

/// The query of `/stats` when it asks for Envoy's behaviour.
pub struct Query {
    filter: Option<regex::Regex>,
    used_only: bool,
    kind: Kind,
    buckets: Buckets,
    pub format: Format,
}

/// Envoy's `histogram_buckets=`: how histograms are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Buckets {
    /// Quantiles (Envoy's default, and `summary`, `none`).
    Summary,
    /// Each bucket's count of samples at or below its bound.
    Cumulative,
    /// Each bucket's count of samples between the previous bound and its own.
    Disjoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Prometheus,
}

/// Envoy's `type=`: which stats to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    All,
    Counters,
    Gauges,
    Histograms,
}

/// A counter or a gauge.
struct Scalar {
    name: String,
    value: u64,
    gauge: bool,
}

/// A histogram: bucket upper bounds (microseconds; the last count is above them), and
/// as shown (milliseconds).
struct Hist<'a> {
    name: String,
    bounds: &'a [u64],
    shown: std::borrow::Cow<'a, [f64]>,
    report: &'a HistogramReport,
}

impl<'a> Hist<'a> {
    /// `report` under `name`, with its configured bounds or else `default` (µs).
    fn new(name: String, default: &'a [u64], report: &'a HistogramReport) -> Hist<'a> {
        match report.bounds.as_deref() {
            Some(b) => Hist {
                name,
                bounds: b.us(),
                shown: std::borrow::Cow::Borrowed(b.ms()),
                report,
            },
            None => Hist {
                name,
                bounds: default,
                shown: default.iter().map(|&u| u as f64 / 1000.0).collect(),
                report,
            },
        }
    }

    /// Per bound: the samples at or below it (`cumulative`), or since the previous one.
    fn counts(&self, cumulative: bool) -> Vec<u64> {
        let mut sum = 0;
        (0..self.shown.len())
            .map(|i| {
                let n = self.report.buckets.get(i).copied().unwrap_or(0);
                sum += n;
                if cumulative {
                    sum
                } else {
                    n
                }
            })
            .collect()
    }
}

impl Query {
    /// Parses `/stats`'s query pairs; `None` when none of Envoy's parameters is there
    /// (the caller keeps Outrigger's own JSON report). `Err`: a 400 with Envoy's text.
    pub fn parse(pairs: &[(String, String)]) -> Option<Result<Query, String>> {
        let known = ["filter", "usedonly", "format", "type", "histogram_buckets"];
        if !pairs.iter().any(|(k, _)| known.contains(&k.as_str())) {
            return None;
        }
        Some(Self::parse_known(pairs))
    }

    fn parse_known(pairs: &[(String, String)]) -> Result<Query, String> {
        let mut q = Query {
            filter: None,
            used_only: false,
            kind: Kind::All,
            buckets: Buckets::Summary,
            format: Format::Text,
        };
        for (k, v) in pairs {
            match k.as_str() {
                "filter" if !v.is_empty() => {
                    let re = regex::Regex::new(v).map_err(|e| {
                        let why = e.to_string();
                        let last = why.lines().last().unwrap_or("").trim();
                        let last = last.strip_prefix("error: ").unwrap_or(last);
                        format!("Invalid re2 regex: {last}: {v}")
                    })?;
                    q.filter = Some(re);
                }
                "usedonly" => q.used_only = true,
                "histogram_buckets" => {
                    q.buckets = match v.as_str() {
                        "summary" | "none" => Buckets::Summary,
                        "cumulative" => Buckets::Cumulative,
                        "disjoint" => Buckets::Disjoint,
                        _ => {
                            return Err(
                                "usage: /stats?histogram_buckets=(cumulative|disjoint|summary)"
                                    .into(),
                            )
                        }
                    }
                }
                "format" => {
                    q.format = match v.as_str() {
                        "text" => Format::Text,
                        "json" => Format::Json,
                        "prometheus" => Format::Prometheus,
                        _ => {
                            return Err(
                                "usage: /stats?format=(html|active-html|json|prometheus|text)"
                                    .into(),
                            )
                        }
                    }
                }
                "type" => {
                    q.kind = match v.as_str() {
                        "All" => Kind::All,
                        "Counters" => Kind::Counters,
                        "Gauges" => Kind::Gauges,
                        "Histograms" => Kind::Histograms,
                        _ => {
                            return Err(format!(
                                "invalid &type= param: '{v}' should be one of All, Counters, Gauges, Histograms"
                            ))
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(q)
    }

    fn keeps(&self, name: &str) -> bool {
        self.filter.as_ref().is_none_or(|re| re.is_match(name))
    }

    /// Envoy's text format: `name: value` lines, sorted, then the histograms.
    pub fn text(&self, r: &StatsReport, extra: &[(String, u64)]) -> String {
        let mut out = String::new();
        for s in self.scalars(r, extra) {
            let _ = writeln!(out, "{}: {}", s.name, s.value);
        }
        for h in self.hists(r) {
            let _ = write!(out, "{}: ", h.name);
            if count(h.report) == 0 {
                out.push_str("No recorded values\n");
                continue;
            }
            if self.buckets != Buckets::Summary {
                // Envoy's `B<bound>(<interval>,<total>)`; no interval is kept.
                let counts = h.counts(self.buckets == Buckets::Cumulative);
                let values: Vec<String> = h
                    .shown
                    .iter()
                    .zip(counts)
                    .map(|(b, n)| format!("B{}(nan,{n})", format_g(*b)))
                    .collect();
                let _ = writeln!(out, "{}", values.join(" "));
                continue;
            }
            let values: Vec<String> = QUANTILES
                .iter()
                .map(|q| format!("P{q}(nan,{})", quantile(&h, *q)))
                .collect();
            let _ = writeln!(out, "{}", values.join(" "));
        }
        out
    }

    /// Envoy's JSON: `{"stats": [{"name", "value"}, ..., {"histograms": {...}}]}`.
    pub fn json(&self, r: &StatsReport, extra: &[(String, u64)]) -> Value {
        let mut stats: Vec<Value> = self
            .scalars(r, extra)
            .into_iter()
            .map(|s| json!({"name": s.name, "value": s.value}))
            .collect();
        let hists = self.hists(r);
        if !hists.is_empty() && self.buckets != Buckets::Summary {
            // Envoy's bucket views: a list of histograms, each with its buckets.
            let cumulative = self.buckets == Buckets::Cumulative;
            let list: Vec<Value> = hists
                .iter()
                .map(|h| {
                    let buckets: Vec<Value> = h
                        .shown
                        .iter()
                        .zip(h.counts(cumulative))
                        .map(|(b, n)| {
                            json!({"upper_bound": number(*b), "interval": null, "cumulative": n})
                        })
                        .collect();
                    json!({"name": h.name, "buckets": buckets})
                })
                .collect();
            stats.push(json!({ "histograms": list }));
        } else if !hists.is_empty() {
            let computed: Vec<Value> = hists
                .iter()
                .map(|h| {
                    let empty = count(h.report) == 0;
                    let values: Vec<Value> = QUANTILES
                        .iter()
                        .map(|q| {
                            let c = if empty {
                                Value::Null
                            } else {
                                number(quantile(h, *q))
                            };
                            json!({"cumulative": c, "interval": null})
                        })
                        .collect();
                    json!({"name": h.name, "values": values})
                })
                .collect();
            stats.push(json!({"histograms": {
                "supported_quantiles": QUANTILES.map(number).to_vec(),
                "computed_quantiles": computed,
            }}));
        }
        json!({ "stats": stats })
    }

    /// The Prometheus text filtered: the filter is matched against each sample's series
    /// (its name and labels); `usedonly` drops samples whose value is 0; a family's
    /// `# HELP`/`# TYPE` lines stay only with a sample of it.
    pub fn prometheus(&self, text: &str) -> String {
        let mut out = String::new();
        let mut header = String::new();
        for line in text.lines() {
            if line.starts_with("# HELP") {
                header.clear();
            }
            if line.starts_with('#') {
                header.push_str(line);
                header.push('\n');
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or((line, ""));
            if !self.keeps(series) || (self.used_only && value.parse::<f64>() == Ok(0.0)) {
                continue;
            }
            out.push_str(&header);
            header.clear();
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    fn scalars(&self, r: &StatsReport, extra: &[(String, u64)]) -> Vec<Scalar> {
        if matches!(self.kind, Kind::Histograms) {
            return Vec::new();
        }
        let mut all = scalars(r);
        all.extend(extra.iter().map(|(n, v)| Scalar {
            name: n.clone(),
            value: *v,
            gauge: false,
        }));
        all.retain(|s| {
            self.keeps(&s.name)
                && !(self.used_only && s.value == 0)
                && match self.kind {
                    Kind::Counters => !s.gauge,
                    Kind::Gauges => s.gauge,
                    _ => true,
                }
        });
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn hists<'a>(&self, r: &'a StatsReport) -> Vec<Hist<'a>> {
        if matches!(self.kind, Kind::Counters | Kind::Gauges) {
            return Vec::new();
        }
        let mut all = hists(r);
        all.retain(|h| self.keeps(&h.name) && !(self.used_only && count(h.report) == 0));
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// A number as Envoy's JSON writes it: whole values without a fraction (`25`, `99.5`).
fn number(f: f64) -> Value {
    if f.fract() == 0.0 && (0.0..9e15).contains(&f) {
        json!(f as u64)
    } else {
        json!(f)
    }
}

fn count(h: &HistogramReport) -> u64 {
    h.buckets.iter().sum()
}

/// The `q` percent quantile in milliseconds, interpolated linearly inside its bucket
/// (the last bucket, above every bound, answers its lower bound).
fn quantile(h: &Hist<'_>, q: f64) -> f64 {
    let total = count(h.report);
    let rank = (q / 100.0 * total as f64).max(1.0);
    let mut seen = 0u64;
    let mut lower = 0u64;
    for (i, &n) in h.report.buckets.iter().enumerate() {
        let Some(&upper) = h.bounds.get(i) else {
            return lower as f64 / 1000.0;
        };
        if n > 0 && (seen + n) as f64 >= rank {
            let within = (rank - seen as f64) / n as f64;
            let us = lower as f64 + within * (upper - lower) as f64;
            return (us / 10.0).round() / 100.0;
        }
        seen += n;
        lower = upper;
    }
    lower as f64 / 1000.0
}

fn scalars(r: &StatsReport) -> Vec<Scalar> {
    let mut out = Vec::new();
    let mut put = |name: String, value: u64, gauge: bool| out.push(Scalar { name, value, gauge });
    const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    for l in &r.listeners {
        let p = format!("listener.{}.", l.name);
        put(format!("{p}downstream_cx_total"), l.cx_total, false);
        put(format!("{p}downstream_cx_active"), l.cx_active, true);
        put(format!("{p}downstream_cx_overflow"), l.cx_overflow, false);
        put(format!("{p}downstream_cx_panic"), l.cx_panic, false);
        put(
            format!("{p}downstream_pre_cx_timeout"),
            l.pre_cx_timeout,
            false,
        );
        put(
            format!("{p}no_filter_chain_match"),
            l.no_filter_chain_match,
            false,
        );
        put(format!("{p}downstream_rq_total"), l.rq_total, false);
        for (c, n) in CLASSES.iter().zip(&l.rq_class) {
            put(format!("{p}downstream_rq_{c}"), *n, false);
        }
        for (f, n) in &l.rq_flags {
            put(format!("{p}downstream_rq_flag.{f}"), *n, false);
        }
        put(
            format!("{p}downstream_cx_rx_bytes_total"),
            l.bytes_received,
            false,
        );
        put(
            format!("{p}downstream_cx_tx_bytes_total"),
            l.bytes_sent,
            false,
        );
        put(
            format!("{p}access_log_dropped"),
            l.access_log_dropped,
            false,
        );
        let s = &l.ssl;
        for (k, n) in [
            ("handshake", s.handshake),
            ("connection_error", s.connection_error),
            ("fail_verify_error", s.fail_verify_error),
            ("fail_verify_san", s.fail_verify_san),
            ("fail_verify_no_cert", s.fail_verify_no_cert),
            ("no_certificate", s.no_certificate),
            ("session_reused", s.session_reused),
        ] {
            put(format!("{p}ssl.{k}"), n, false);
        }
        for (group, m) in [
            ("versions", &s.versions),
            ("ciphers", &s.ciphers),
            ("curves", &s.curves),
        ] {
            for (k, n) in m {
                put(format!("{p}ssl.{group}.{k}"), *n, false);
            }
        }
    }
    for c in &r.clusters {
        let p = format!("cluster.{}.", c.name);
        for (k, n) in [
            ("upstream_rq_total", c.rq_total),
            ("upstream_rq_timeout", c.rq_timeout),
            ("upstream_cx_total", c.cx_total),
            ("upstream_cx_connect_fail", c.cx_connect_fail),
            ("upstream_cx_reused", c.cx_reused),
            ("upstream_cx_none_healthy", c.rq_no_healthy),
            ("upstream_rq_rx_reset", c.rq_reset),
            ("upstream_cx_protocol_error", c.rq_protocol_error),
            ("upstream_rq_retry", c.rq_retry),
            ("upstream_rq_retry_success", c.rq_retry_success),
            ("upstream_rq_retry_overflow", c.rq_retry_overflow),
            (
                "upstream_rq_retry_limit_exceeded",
                c.rq_retry_limit_exceeded,
            ),
            (
                "upstream_rq_retry_backoff_exponential",
                c.rq_retry_backoff_exponential,
            ),
            ("upstream_rq_per_try_timeout", c.rq_per_try_timeout),
            (
                "upstream_rq_per_try_idle_timeout",
                c.rq_per_try_idle_timeout,
            ),
            (
                "upstream_rq_max_duration_reached",
                c.rq_max_duration_reached,
            ),
            ("upstream_rq_pending_overflow", c.rq_pending_overflow),
            ("upstream_rq_active_overflow", c.rq_active_overflow),
            ("upstream_cx_overflow", c.cx_overflow),
            ("upstream_cx_pool_overflow", c.cx_pool_overflow),
            ("upstream_cx_max_requests", c.cx_max_requests),
            ("upstream_cx_idle_timeout", c.cx_idle_timeout),
            ("upstream_rq_shadow", c.rq_shadow),
            ("upstream_rq_shadow_failed", c.rq_shadow_failed),
            ("upstream_rq_shadow_dropped", c.rq_shadow_dropped),
            ("upstream_rq_shadow_abandoned", c.rq_shadow_abandoned),
            ("lb_healthy_panic", c.lb_healthy_panic),
        ] {
            put(format!("{p}{k}"), n, false);
        }
        for (cl, n) in CLASSES.iter().zip(&c.rq_class) {
            put(format!("{p}upstream_rq_{cl}"), *n, false);
        }
        for (k, n) in c.ext_authz.iter().flat_map(|a| a.named()) {
            put(format!("{p}{k}"), n, false);
        }
        // The nested reports already carry Envoy's field names; their gauges are
        // the ones Envoy calls gauges.
        let gauges = ["healthy", "ejections_active", "cx_open", "rq_pending_open"];
        let gauges = [&gauges[..], &["rq_open", "rq_retry_open", "cx_pool_open"]].concat();
        let nested = [
            ("", serde_json::to_value(&c.dns)),
            ("health_check.", serde_json::to_value(&c.health_check)),
            (
                "outlier_detection.",
                serde_json::to_value(&c.outlier_detection),
            ),
            (
                "circuit_breakers.default.",
                serde_json::to_value(&c.circuit_breakers),
            ),
            (
                "circuit_breakers.high.",
                serde_json::to_value(&c.circuit_breakers_high),
            ),
        ];
        for (sub, v) in nested {
            if let Ok(Value::Object(m)) = v {
                for (k, v) in m {
                    if let Some(n) = v.as_u64() {
                        let gauge = gauges.contains(&k.as_str()) || k.starts_with("remaining_");
                        put(format!("{p}{sub}{k}"), n, gauge);
                    }
                }
            }
        }
    }
    for (name, n) in &r.counters {
        put(name.clone(), *n, false);
    }
    out
}

fn hists(r: &StatsReport) -> Vec<Hist<'_>> {
    let mut out = Vec::new();
    for c in &r.clusters {
        out.push(Hist::new(
            format!("cluster.{}.upstream_rq_time", c.name),
            &UPSTREAM_RQ_TIME_BUCKETS_US,
            &c.rq_time,
        ));
    }
    // Named histograms (the routes' `upstream_rq_time`), made by their first sample as
    // Envoy makes them.
    for (name, h) in &r.histograms {
        if count(h) > 0 {
            out.push(Hist::new(name.clone(), &UPSTREAM_RQ_TIME_BUCKETS_US, h));
        }
    }
    for l in &r.listeners {
        out.push(Hist::new(
            format!("listener.{}.downstream_rq_time", l.name),
            &DURATION_BUCKETS_US,
            &l.rq_time,
        ));
        for (phase, h) in crate::observe::phases::PHASE_NAMES.iter().zip(&l.phases) {
            out.push(Hist::new(
                format!("listener.{}.phase.{phase}", l.name),
                &crate::observe::phases::PHASE_BUCKETS_US,
                h,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::stats::{ClusterReport, ListenerReport};

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn report() -> StatsReport {
        let mut rq_time = HistogramReport {
            buckets: vec![0; DURATION_BUCKETS_US.len() + 1],
            sum_us: 0,
            bounds: None,
        };
        rq_time.buckets[2] = 4; // 500us..1ms
        StatsReport {
            listeners: vec![ListenerReport {
                name: "in".into(),
                rq_total: 4,
                rq_class: vec![0, 4, 0, 0, 0],
                rq_time,
                ..Default::default()
            }],
            clusters: vec![ClusterReport {
                name: "backend".into(),
                rq_total: 4,
                rq_class: vec![0, 4, 0, 0, 0],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn no_envoy_parameter_keeps_the_native_report() {
        assert!(Query::parse(&pairs("include_eds")).is_none());
        assert!(Query::parse(&[]).is_none());
    }

    #[test]
    fn filter_usedonly_and_type() {
        let q = Query::parse(&pairs("filter=^cluster\\.backend\\.upstream_rq_&usedonly"))
            .unwrap()
            .unwrap();
        assert_eq!(
            q.text(&report(), &[]),
            "cluster.backend.upstream_rq_2xx: 4\ncluster.backend.upstream_rq_total: 4\n"
        );
        let q = Query::parse(&pairs("type=Histograms&format=json"))
            .unwrap()
            .unwrap();
        let v = q.json(&report(), &[]);
        let stats = v["stats"].as_array().unwrap();
        assert_eq!(stats.len(), 1, "{v}");
        let h = &stats[0]["histograms"];
        assert_eq!(h["supported_quantiles"][9], 100);
        assert_eq!(h["supported_quantiles"][7], 99.5);
        // Sorted by name: the cluster's upstream_rq_time (no sample), then the listener's.
        assert_eq!(
            h["computed_quantiles"][0]["name"],
            "cluster.backend.upstream_rq_time"
        );
        assert_eq!(
            h["computed_quantiles"][0]["values"][2]["cumulative"],
            Value::Null
        );
        let c = &h["computed_quantiles"][1];
        assert_eq!(c["name"], "listener.in.downstream_rq_time");
        // Four samples between 0.5 and 1 ms: the median halfway.
        assert_eq!(c["values"][2]["cumulative"], 0.75);
        assert_eq!(c["values"][2]["interval"], Value::Null);
    }

    #[test]
    fn bucket_views_show_the_bounds_with_counts() {
        let mut r = report();
        let bounds = crate::observe::buckets::Bounds::from_ms(&[0.5, 1.0, 3600000.0]).unwrap();
        r.clusters[0].rq_time = HistogramReport {
            buckets: vec![1, 2, 0, 1],
            sum_us: 0,
            bounds: Some(std::sync::Arc::new(bounds)),
        };
        let q = Query::parse(&pairs("filter=cluster&histogram_buckets=cumulative"))
            .unwrap()
            .unwrap();
        assert_eq!(
            q.text(&r, &[]).lines().last().unwrap(),
            "cluster.backend.upstream_rq_time: B0.5(nan,1) B1(nan,3) B3.6e+06(nan,3)"
        );
        let q = Query::parse(&pairs(
            "filter=cluster&histogram_buckets=disjoint&type=Histograms&format=json",
        ))
        .unwrap()
        .unwrap();
        let v = q.json(&r, &[]);
        let h = &v["stats"][0]["histograms"][0];
        assert_eq!(h["name"], "cluster.backend.upstream_rq_time");
        assert_eq!(h["buckets"][0]["upper_bound"], 0.5);
        assert_eq!(h["buckets"][1]["cumulative"], 2);
        assert_eq!(h["buckets"][2]["upper_bound"], 3600000);
        assert_eq!(h["buckets"].as_array().unwrap().len(), 3);
        assert!(Query::parse(&pairs("histogram_buckets=x"))
            .unwrap()
            .is_err());
    }

    #[test]
    fn bad_parameters_are_envoys_400s() {
        let e = Query::parse(&pairs("filter=(")).unwrap().err().unwrap();
        assert!(e.starts_with("Invalid re2 regex: "), "{e}");
        let e = Query::parse(&pairs("format=xml")).unwrap().err().unwrap();
        assert!(e.starts_with("usage: /stats?format="), "{e}");
        assert!(Query::parse(&pairs("type=Nope")).unwrap().is_err());
    }

    #[test]
    fn prometheus_lines_are_filtered_with_their_family() {
        let q = Query::parse(&pairs("format=prometheus&filter=cluster=\"b\"&usedonly"))
            .unwrap()
            .unwrap();
        let text = "# HELP x_total X.\n# TYPE x_total counter\nx_total{cluster=\"a\"} 1\nx_total{cluster=\"b\"} 2\n# HELP y Y.\n# TYPE y gauge\ny{cluster=\"b\"} 0\n";
        assert_eq!(
            q.prometheus(text),
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{cluster=\"b\"} 2\n"
        );
    }
}
