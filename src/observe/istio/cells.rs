//! The per-core series of Istio's metrics: one table per listener per worker, owned by
//! that worker (`RefCell`, never shared, never locked), copied out at scrape time and
//! merged by label text in the admin server.
//!
//! A finished stream finds its series by a small key of integers: the chain's config id
//! and the ids this core gave the stream's strings (cluster, Host, peer and local SANs),
//! with the status, gRPC status and flags. Looking up a string id borrows the string, so
//! a stream whose strings and combination were seen before allocates nothing.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use super::{IstioStats, StreamFacts, BUCKETS, LABELS};

/// A per-core count (this module sits below `observe::stats`, which holds the tables).
#[derive(Default)]
struct Counter(Cell<u64>);

impl Counter {
    fn inc(&self) {
        self.add(1);
    }
    fn add(&self, n: u64) {
        self.0.set(self.0.get().wrapping_add(n));
    }
    fn get(&self) -> u64 {
        self.0.get()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    chain: u64,
    cluster: u32,
    host: u32,
    peer: u32,
    local: u32,
    status: u16,
    grpc: u16,
    flags: u32,
    /// 0: TCP, 1: HTTP, 2: gRPC.
    proto: u8,
}

#[derive(Default)]
struct Hist {
    buckets: [Counter; BUCKETS.len() + 1],
    sum: Counter,
}

impl Hist {
    fn record(&self, v: u64) {
        let i = BUCKETS.partition_point(|b| *b < v as f64);
        if let Some(c) = self.buckets.get(i) {
            c.inc();
        }
        self.sum.add(v);
    }

    fn report(&self) -> HistReport {
        HistReport {
            buckets: self.buckets.iter().map(Counter::get).collect(),
            sum: self.sum.get(),
        }
    }
}

/// One label combination's counts.
struct Series {
    /// `name="value",...` in Istio's label order, escaped for Prometheus.
    labels: Box<str>,
    tcp: bool,
    requests: Counter,
    duration_ms: Hist,
    request_bytes: Hist,
    response_bytes: Hist,
    tcp_opened: Counter,
    tcp_closed: Counter,
    tcp_sent: Counter,
    tcp_received: Counter,
}

/// One listener's series on one core.
#[derive(Default)]
pub struct IstioCells {
    series: RefCell<HashMap<Key, Series>>,
    strings: RefCell<HashMap<Box<str>, u32>>,
}

/// A finished stream's numbers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Amounts {
    pub duration_ms: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

impl IstioCells {
    fn id(&self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        if let Some(id) = self.strings.borrow().get(s) {
            return *id;
        }
        let mut strings = self.strings.borrow_mut();
        let id = strings.len() as u32 + 1;
        strings.insert(s.into(), id);
        id
    }

    /// Counts a finished stream: an HTTP request (`facts.http` set) into the request
    /// families, a TCP connection into the `istio_tcp_*` families.
    pub fn record(&self, cfg: &IstioStats, facts: &StreamFacts<'_>, n: Amounts) {
        let host = if cfg.wants_host() { facts.host } else { "" };
        let key = Key {
            chain: cfg.id,
            cluster: self.id(facts.cluster),
            host: self.id(host),
            peer: self.id(facts.peer_san),
            local: self.id(facts.local_san),
            status: facts.status,
            grpc: facts.grpc_status.unwrap_or(u16::MAX),
            flags: self.id(facts.flags),
            proto: match facts.http {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            },
        };
        let mut series = self.series.borrow_mut();
        let s = series.entry(key).or_insert_with(|| Series {
            labels: render_labels(&cfg.label_values(facts)).into(),
            tcp: facts.http.is_none(),
            requests: Counter::default(),
            duration_ms: Hist::default(),
            request_bytes: Hist::default(),
            response_bytes: Hist::default(),
            tcp_opened: Counter::default(),
            tcp_closed: Counter::default(),
            tcp_sent: Counter::default(),
            tcp_received: Counter::default(),
        });
        if s.tcp {
            // Without metadata exchange Istio reports a connection once, at its close.
            s.tcp_opened.inc();
            s.tcp_closed.inc();
            s.tcp_sent.add(n.bytes_sent);
            s.tcp_received.add(n.bytes_received);
        } else {
            s.requests.inc();
            s.duration_ms.record(n.duration_ms);
            s.request_bytes.record(n.bytes_received);
            s.response_bytes.record(n.bytes_sent);
        }
    }

    pub fn report(&self, out: &mut Vec<IstioSeriesReport>) {
        for s in self.series.borrow().values() {
            out.push(IstioSeriesReport {
                labels: s.labels.to_string(),
                tcp: s.tcp,
                requests: s.requests.get(),
                duration_ms: s.duration_ms.report(),
                request_bytes: s.request_bytes.report(),
                response_bytes: s.response_bytes.report(),
                tcp_opened: s.tcp_opened.get(),
                tcp_closed: s.tcp_closed.get(),
                tcp_sent: s.tcp_sent.get(),
                tcp_received: s.tcp_received.get(),
            });
        }
    }
}

/// Escapes a Prometheus label value.
fn escape(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn render_labels(values: &[Option<String>]) -> String {
    let mut out = String::new();
    for (name, v) in LABELS.iter().zip(values) {
        let Some(v) = v else { continue };
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape(&mut out, v);
        out.push('"');
    }
    out
}

#[derive(Debug, Clone, Default)]
pub struct HistReport {
    /// Per bucket of [`BUCKETS`], then the overflow (not cumulative).
    pub buckets: Vec<u64>,
    pub sum: u64,
}

impl HistReport {
    fn merge(&mut self, o: &HistReport) {
        if self.buckets.len() < o.buckets.len() {
            self.buckets.resize(o.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.sum += o.sum;
    }
}

/// One series as a worker reports it.
#[derive(Debug, Clone, Default)]
pub struct IstioSeriesReport {
    pub labels: String,
    pub tcp: bool,
    pub requests: u64,
    pub duration_ms: HistReport,
    pub request_bytes: HistReport,
    pub response_bytes: HistReport,
    pub tcp_opened: u64,
    pub tcp_closed: u64,
    pub tcp_sent: u64,
    pub tcp_received: u64,
}

impl IstioSeriesReport {
    pub fn merge(&mut self, o: &IstioSeriesReport) {
        self.requests += o.requests;
        self.duration_ms.merge(&o.duration_ms);
        self.request_bytes.merge(&o.request_bytes);
        self.response_bytes.merge(&o.response_bytes);
        self.tcp_opened += o.tcp_opened;
        self.tcp_closed += o.tcp_closed;
        self.tcp_sent += o.tcp_sent;
        self.tcp_received += o.tcp_received;
    }
}

/// Adds `more` into `into`, matching series by label text.
pub fn merge_into(into: &mut Vec<IstioSeriesReport>, more: Vec<IstioSeriesReport>) {
    for s in more {
        match into
            .iter_mut()
            .find(|x| x.labels == s.labels && x.tcp == s.tcp)
        {
            Some(x) => x.merge(&s),
            None => into.push(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Reporter, Workload};
    use super::*;

    #[test]
    fn same_facts_count_into_one_series() {
        let cfg = IstioStats::new(Reporter::Destination, Workload::default(), false);
        let cells = IstioCells::default();
        let f = StreamFacts {
            cluster: "c",
            host: "h",
            http: Some(false),
            status: 200,
            flags: "-",
            ..Default::default()
        };
        let n = Amounts {
            duration_ms: 3,
            bytes_received: 10,
            bytes_sent: 2_000,
        };
        cells.record(&cfg, &f, n);
        cells.record(&cfg, &f, n);
        cells.record(&cfg, &StreamFacts { status: 503, ..f }, n);
        let mut out = Vec::new();
        cells.report(&mut out);
        assert_eq!(out.len(), 2);
        let ok = out
            .iter()
            .find(|s| s.labels.contains("response_code=\"200\""))
            .unwrap();
        assert_eq!(ok.requests, 2);
        // 3 ms falls in the `le=5` bucket (index 2).
        assert_eq!(ok.duration_ms.buckets[2], 2);
        assert_eq!(ok.response_bytes.sum, 4_000);
        assert!(ok.labels.starts_with("reporter=\"destination\","));
    }
}
