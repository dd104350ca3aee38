//! Tracing's cost on the worker per request: `trace::start` (the decision, the ids,
//! the span and its tags) and `trace::finish` (the last tags, the hand-off to the
//! exporter's queue), for a sampled request with the headers oha sends, and the
//! unsampled path. The exporter thread runs beside the bench (it drains the queue,
//! encodes the spans, fails to reach the collector, a closed port, and gives the
//! records back), so its share here is not the real one; the loadtest's
//! `h1-traced-ab` measures the whole (docs/tracing.md).
//!
//! `cargo bench --bench tracing` (add `-- --quick` for a fast smoke run). Time on a
//! shared VM drifts by tens of percent between runs (and this one has no hardware
//! counters to count instructions); to compare two builds, `-- --case N --count M`
//! runs only case N (0, 1, 2), M times: time it pinned, `taskset -c 1 perf stat -e
//! task-clock`, several runs of each build in turn (docs/tracing.md).

mod support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use outrigger::observe::trace::{self, Collector, Propagation, SpanKind, Tracing};

fn tracing(random_sampling: u32) -> Arc<Tracing> {
    Arc::new(Tracing {
        kind: SpanKind::Server,
        random_sampling,
        client_sampling: 10_000,
        overall_sampling: 10_000,
        propagation: Propagation {
            w3c: true,
            ..Propagation::default()
        },
        custom_tags: vec![],
        max_path_tag_length: 256,
        node_id: "sidecar~10.0.0.1~bench.default~default.svc.cluster.local".into(),
        zone: String::new(),
        collector: Arc::new(Collector {
            addr: ([127, 0, 0, 1], 1).into(),
            authority: "otel".into(),
            path: "/v1/traces".into(),
            grpc: false,
            service_name: "bench".into(),
            batch_spans: 256,
            flush_interval: Duration::from_secs(5),
            queue_spans: 4096,
        }),
    })
}

fn main() {
    let headers: [(&str, &[u8]); 3] = [
        ("host", b"127.0.0.1:18080"),
        ("user-agent", b"oha/1.4.6"),
        ("accept", b"*/*"),
    ];
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| *v)
    };
    let req = trace::Request {
        method: "GET",
        scheme: "http",
        authority: b"127.0.0.1:18080",
        path: "/",
        protocol: "HTTP/1.1",
        peer: IpAddr::from([127, 0, 0, 1]),
        trusted: true,
        generates_request_id: true,
    };
    let end = trace::End {
        status: 200,
        flags: [None; 3],
        bytes_received: 0,
        bytes_sent: 612,
        upstream: Some(([127, 0, 0, 1], 18081).into()),
    };
    let unsampled = tracing(0);
    let sampled = tracing(10_000);
    let cases: [(&str, &dyn Fn() -> trace::Outgoing); 3] = [
        ("start, not sampled", &|| {
            trace::start(&unsampled, &req, header).0
        }),
        ("start, sampled (span dropped unfinished)", &|| {
            trace::start(&sampled, &req, header).0
        }),
        ("start + set_cluster + finish, sampled", &|| {
            let (out, span) = trace::start(&sampled, &req, header);
            if let Some(mut s) = span {
                s.set_cluster("backend");
                trace::finish(s, &end);
            }
            out
        }),
    ];
    let arg = |name: &str| {
        let mut args = std::env::args().skip_while(|a| a != name).skip(1);
        args.next().and_then(|v| v.parse::<usize>().ok())
    };
    if let (Some(case), Some(count)) = (arg("--case"), arg("--count")) {
        let (_, f) = cases[case];
        for _ in 0..count {
            std::hint::black_box(f());
        }
        return;
    }
    for (name, f) in cases {
        support::bench(name, f);
    }
}
