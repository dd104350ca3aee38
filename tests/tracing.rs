//! Distributed tracing through the real binary (docs/tracing.md): an OTLP/HTTP
//! collector in the test receives the spans; the upstream sees the propagated context.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP collector: records each export request, answers 200 (or waits long
/// before answering, to hold the exporter).
fn collector(stall: bool) -> Upstream {
    Upstream::start(Arc::new(move |ctx, _req, s| {
        if stall {
            ctx.sleep(Duration::from_secs(20));
        }
        use std::io::Write;
        s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )?;
        Ok(true)
    }))
}

/// A config whose listener traces to `otel` with these `tracing` fields (indented by 6).
fn config(upstream: SocketAddr, otel: SocketAddr, fields: &str) -> String {
    let extra = format!(
        "    proxy_headers:\n      generate_request_id: true\n      preserve_external_request_id: true\n    tracing:\n      collector_cluster: otel\n      service_name: sidecar\n      flush_interval: 50ms\n      batch_spans: 1\n{fields}"
    );
    format!(
        "{}  - name: otel\n    connect_timeout: 1s\n    endpoints:\n      - address: 127.0.0.1\n        port: {}\n",
        proxy_config_with(upstream, "5s", &extra),
        otel.port()
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every span the collector received so far, with its resource's service name.
fn spans(c: &Upstream) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    for r in c.requests() {
        assert_eq!(r.target, "/v1/traces");
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        let req =
            ExportTraceServiceRequest::decode(&r.body[..]).expect("an ExportTraceServiceRequest");
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                out.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
    }
    out
}

fn wait_spans(c: &Upstream, n: usize) -> Vec<(String, Span)> {
    wait_until(Duration::from_secs(10), || {
        let s = spans(c);
        (s.len() >= n).then_some(s)
    })
    .unwrap_or_else(|| panic!("expected {n} spans, got {}", spans(c).len()))
}

fn attr(s: &Span, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
}

#[test]
fn a_sampled_parent_gives_a_child_span_and_the_upstream_a_child_context() {
    let up = Upstream::echo();
    let otel = collector(false);
    let proxy = Proxy::start(&config(up.addr, otel.addr, ""));
    let r = exchange(
        proxy.listen,
        &format!(
            "GET /a/b?q=1 HTTP/1.1\r\nHost: svc\r\ntraceparent: 00-{TRACE_ID}-{PARENT_ID}-01\r\ntracestate: k=v\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 200);
    let got = wait_spans(&otel, 1);
    assert_eq!(got.len(), 1);
    let (service, span) = &got[0];
    assert_eq!(service, "sidecar");
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), PARENT_ID);
    assert_eq!(span.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(span.name, "ingress");
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0);
    for (k, v) in [
        ("http.method", "GET"),
        ("http.url", "http://svc/a/b?q=1"),
        ("http.status_code", "200"),
        ("http.protocol", "HTTP/1.1"),
        ("upstream_cluster", "backend"),
        ("response_flags", "-"),
        ("component", "proxy"),
        ("peer.address", "127.0.0.1"),
    ] {
        assert_eq!(
            attr(span, k).as_deref(),
            Some(v),
            "{k}: {:?}",
            span.attributes
        );
    }
    // The upstream's parent is the proxy's span, in the same trace; tracestate passes.
    let seen = up.last_request();
    let tp = seen.header("traceparent").expect("traceparent upstream");
    assert_eq!(tp, format!("00-{TRACE_ID}-{}-01", hex(&span.span_id)));
    assert_eq!(seen.headers_named("traceparent").len(), 1);
    assert_eq!(seen.header("tracestate"), Some("k=v"));
    // The request id the proxy made carries the decision (Envoy's mark `9`: sampled),
    // and is the span's guid.
    let rid = seen.header("x-request-id").unwrap();
    assert_eq!(rid.len(), 36);
    assert_eq!(&rid[14..15], "9", "{rid}");
    assert_eq!(attr(span, "guid:x-request-id").as_deref(), Some(rid));
    let sent = wait_until(Duration::from_secs(10), || {
        let n = proxy.stats()["tracing.opentelemetry.spans_sent"].as_u64()?;
        (n == 1).then_some(n)
    });
    assert_eq!(sent, Some(1), "spans_sent");
}

/// Batches go over one kept-alive connection to an OTLP/HTTP collector (a connection
/// per batch could not keep up with a busy worker at 100% sampling).
#[test]
fn batches_share_one_collector_connection() {
    let up = Upstream::echo();
    let otel = collector(false);
    let proxy = Proxy::start(&config(up.addr, otel.addr, ""));
    for i in 1..=4 {
        let r = get(proxy.listen, "svc", &format!("/b{i}"));
        assert_eq!(r.status, 200);
        // One span per batch: each export is its own request.
        assert_eq!(wait_spans(&otel, i).len(), i);
    }
    assert_eq!(otel.requests().len(), 4, "one export request per batch");
    assert_eq!(
        otel.connections(),
        1,
        "exports share the kept-alive connection"
    );
}

#[test]
fn unsampled_requests_send_no_span_and_force_trace_does() {
    let up = Upstream::echo();
    let otel = collector(false);
    let proxy = Proxy::start(&config(up.addr, otel.addr, "      random_sampling: 0\n"));
    // A root request under 0% sampling: no span, an unsampled context upstream.
    let r = get(proxy.listen, "svc", "/none");
    assert_eq!(r.status, 200);
    let tp = up.last_request().header("traceparent").unwrap().to_string();
    assert!(tp.starts_with("00-") && tp.ends_with("-00"), "{tp}");
    assert_eq!(
        &up.last_request().header("x-request-id").unwrap()[14..15],
        "4"
    );
    // A request id that is not a UUID carries no decision: never traced (Envoy).
    let r = exchange(
        proxy.listen,
        &format!("GET /rid HTTP/1.1\r\nHost: svc\r\nx-request-id: rid\r\nx-envoy-force-trace: 1\r\ntraceparent: 00-{TRACE_ID}-{PARENT_ID}-01\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 200);
    assert!(up
        .last_request()
        .header("traceparent")
        .unwrap()
        .ends_with("-00"));
    // A parent that did not sample: none either.
    let r = exchange(
        proxy.listen,
        &format!("GET /parent HTTP/1.1\r\nHost: svc\r\ntraceparent: 00-{TRACE_ID}-{PARENT_ID}-00\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 200);
    // x-envoy-force-trace (a trusted peer: the native format does not sanitize it).
    let r = exchange(
        proxy.listen,
        "GET /forced HTTP/1.1\r\nHost: svc\r\nx-envoy-force-trace: true\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let got = wait_spans(&otel, 1);
    // Spans of one worker leave in order: the earlier requests would be here by now.
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        attr(&got[0].1, "http.url").as_deref(),
        Some("http://svc/forced")
    );
    let tp = up.last_request().header("traceparent").unwrap().to_string();
    assert!(tp.ends_with("-01"), "{tp}");
    assert_eq!(
        &up.last_request().header("x-request-id").unwrap()[14..15],
        "a"
    );
}

#[test]
fn b3_headers_are_read_and_written_when_configured() {
    let up = Upstream::echo();
    let otel = collector(false);
    let proxy = Proxy::start(&config(
        up.addr,
        otel.addr,
        "      propagation: [b3, b3_single]\n      custom_tags:\n        - { tag: env, literal: test }\n        - { tag: who, request_header: x-who, default_value: nobody }\n",
    ));
    let r = exchange(
        proxy.listen,
        &format!("GET / HTTP/1.1\r\nHost: svc\r\nx-b3-traceid: {TRACE_ID}\r\nx-b3-spanid: {PARENT_ID}\r\nx-b3-parentspanid: 0000000000000001\r\nx-b3-sampled: 1\r\ntraceparent: 00-{TRACE_ID}-{PARENT_ID}-00\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 200);
    let got = wait_spans(&otel, 1);
    let span = &got[0].1;
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), PARENT_ID);
    assert_eq!(attr(span, "env").as_deref(), Some("test"));
    assert_eq!(attr(span, "who").as_deref(), Some("nobody"));
    let seen = up.last_request();
    let id = hex(&span.span_id);
    assert_eq!(seen.header("x-b3-traceid"), Some(TRACE_ID));
    assert_eq!(seen.header("x-b3-spanid"), Some(id.as_str()));
    assert_eq!(seen.header("x-b3-sampled"), Some("1"));
    assert_eq!(seen.header("x-b3-parentspanid"), None);
    assert_eq!(
        seen.header("b3"),
        Some(format!("{TRACE_ID}-{id}-1").as_str())
    );
    // W3C is not configured here: the incoming traceparent passes untouched.
    assert_eq!(
        seen.header("traceparent"),
        Some(format!("00-{TRACE_ID}-{PARENT_ID}-00").as_str())
    );
}

#[test]
fn a_full_queue_drops_spans_and_counts_them() {
    let up = Upstream::echo();
    // The collector holds the exporter on its first request; the worker's queue (2
    // spans) fills and the rest are dropped.
    let otel = collector(true);
    let proxy = Proxy::start(&config(up.addr, otel.addr, "      queue_spans: 2\n"));
    let mut c = Conn::connect(proxy.listen);
    for _ in 0..20 {
        c.send("GET / HTTP/1.1\r\nHost: svc\r\n\r\n");
        assert_eq!(c.read_response().unwrap().status, 200);
    }
    let dropped = wait_until(Duration::from_secs(10), || {
        let n = proxy.stats()["tracing.opentelemetry.spans_dropped"].as_u64()?;
        (n > 0).then_some(n)
    })
    .expect("dropped spans counted");
    assert!(dropped <= 20);
    let prom = proxy.prometheus();
    assert!(
        metric(&prom, "outrigger_tracing_opentelemetry_spans_dropped_total")
            .is_some_and(|n| n >= 1.0),
        "{prom}"
    );
    // Every request was still answered and proxied.
    assert_eq!(up.request_count(), 20);
}

#[test]
fn tracing_needs_a_known_collector_cluster() {
    let up = Upstream::echo();
    let cfg = proxy_config_with(
        up.addr,
        "5s",
        "    tracing:\n      collector_cluster: nowhere\n      random_sampling: 101\n",
    );
    let dir = TempDir::new("tracing-bad");
    let path = dir.join("c.yaml");
    std::fs::write(
        &path,
        cfg.replace("@ADMIN_PORT@", "1").replace("@PORT@", "2"),
    )
    .unwrap();
    let out = run_cli(
        &["validate", "-c", path.to_str().unwrap()],
        Duration::from_secs(10),
    );
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        err.contains("listeners[0].tracing.collector_cluster"),
        "{err}"
    );
    assert!(
        err.contains("listeners[0].tracing.random_sampling"),
        "{err}"
    );
}

/// An OTLP/gRPC collector (opentelemetry-proto's tonic service on hyper's HTTP/2 server,
/// on a tokio runtime of its own), recording each export request.
struct GrpcCollector {
    addr: SocketAddr,
    got: Arc<std::sync::Mutex<Vec<ExportTraceServiceRequest>>>,
    _rt: tokio::runtime::Runtime,
}

#[derive(Clone)]
struct Traces(Arc<std::sync::Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Traces
{
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        self.0.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

impl GrpcCollector {
    fn start() -> GrpcCollector {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(std_listener).unwrap()
        };
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let svc = TraceServiceServer::new(Traces(got.clone()));
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let svc = hyper_util::service::TowerToHyperService::new(svc.clone());
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
                });
            }
        });
        GrpcCollector { addr, got, _rt: rt }
    }

    fn spans(&self) -> Vec<Span> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| ss.spans.clone())
            .collect()
    }
}

#[test]
fn spans_go_over_otlp_grpc_when_configured() {
    let up = Upstream::echo();
    let otel = GrpcCollector::start();
    let proxy = Proxy::start(&config(up.addr, otel.addr, "      protocol: grpc\n"));
    for _ in 0..3 {
        let r = exchange(
            proxy.listen,
            &format!("GET /g HTTP/1.1\r\nHost: svc\r\ntraceparent: 00-{TRACE_ID}-{PARENT_ID}-01\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(r.status, 200);
    }
    let got = wait_until(Duration::from_secs(10), || {
        let s = otel.spans();
        (s.len() >= 3).then_some(s)
    })
    .expect("3 spans over gRPC");
    assert_eq!(got.len(), 3);
    for s in &got {
        assert_eq!(hex(&s.trace_id), TRACE_ID);
        assert_eq!(hex(&s.parent_span_id), PARENT_ID);
    }
    // Counted once the collector has answered.
    let sent = wait_until(Duration::from_secs(10), || {
        let n = proxy.stats()["tracing.opentelemetry.spans_sent"].as_u64()?;
        (n == 3).then_some(n)
    });
    assert_eq!(sent, Some(3));
    assert_eq!(proxy.stats()["tracing.opentelemetry.export_failures"], 0);
}

#[test]
fn an_http2_request_goes_upstream_with_the_request_id_its_span_names() {
    let up = Upstream::echo();
    let otel = collector(false);
    let proxy = Proxy::start(&config(up.addr, otel.addr, ""));
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--http2-prior-knowledge", "--max-time", "10"])
        .args(["-H", "Host: svc"])
        .args(["-H", &format!("traceparent: 00-{TRACE_ID}-{PARENT_ID}-01")])
        .arg(format!("http://{}/h2", proxy.listen))
        .output()
        .expect("these tests need curl with HTTP/2");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let got = wait_spans(&otel, 1);
    assert_eq!(got.len(), 1);
    let span = &got[0].1;
    assert_eq!(attr(span, "http.protocol").as_deref(), Some("HTTP/2"));
    assert_eq!(attr(span, "http.url").as_deref(), Some("http://svc/h2"));
    // The proxy made the id (the client sent none): the one upstream is the span's.
    let seen = up.last_request();
    let rid = seen.header("x-request-id").expect("x-request-id upstream");
    assert_eq!(&rid[14..15], "9", "{rid}");
    assert_eq!(attr(span, "guid:x-request-id").as_deref(), Some(rid));
}

/// The span's `response_flags` is Envoy's short string of every flag the stream got:
/// a reset after the retries ran out is `URX,UC`, as in the access log.
#[test]
fn a_spans_response_flags_carry_every_flag() {
    let up = Upstream::start(close_without_response());
    let otel = collector(false);
    let fields = "    forwarding:\n      internal_addresses: [127.0.0.0/8]\n";
    let proxy = Proxy::start(&config(up.addr, otel.addr, fields));
    let r = exchange(
        proxy.listen,
        "GET /x HTTP/1.1\r\nHost: svc\r\nx-envoy-force-trace: 1\r\nx-envoy-retry-on: reset\r\nx-envoy-max-retries: 1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 503);
    assert_eq!(up.request_count(), 2, "retried once");
    let got = wait_spans(&otel, 1);
    assert_eq!(attr(&got[0].1, "response_flags").as_deref(), Some("URX,UC"));
}
