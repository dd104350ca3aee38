//! Tracing parity with Envoy 1.40: one bootstrap (an inbound listener whose connection
//! manager traces with `envoy.tracers.opentelemetry` over OTLP/HTTP to a collector in
//! the test) runs under Envoy and under Outrigger; the same requests go to both, and the
//! spans each exports (kind, name, trace and parent ids, attributes) and the context the
//! upstream receives are compared case by case. Skips, saying why, when Envoy is not
//! installed.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::envoy::*;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const HCM: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const OTEL: &str = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn bootstrap(upstream: SocketAddr, otel: SocketAddr) -> String {
    format!(
        r#"node: {{ id: sidecar-1, locality: {{ zone: z1 }} }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: @ADMIN_PORT@ }} }}
static_resources:
  listeners:
  - name: web
    traffic_direction: INBOUND
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: @PORT@ }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {HCM}
          stat_prefix: web
          tracing:
            custom_tags:
            - {{ tag: case, request_header: {{ name: x-case }} }}
            - {{ tag: env, literal: {{ value: test }} }}
            - {{ tag: who, request_header: {{ name: x-who, default_value: nobody }} }}
            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": {OTEL}
                service_name: web-svc
                http_service:
                  http_uri:
                    uri: "http://127.0.0.1:{otel_port}/v1/traces"
                    cluster: otel
                    timeout: 1s
          route_config:
            name: main
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /app }}
                route: {{ cluster: backend }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {up_port} }} }} }}
  - name: otel
    connect_timeout: 1s
    load_assignment:
      cluster_name: otel
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {otel_port} }} }} }}
"#,
        up_port = upstream.port(),
        otel_port = otel.port(),
    )
}

/// The requests, by name (the `x-case` header, a custom tag): (case, path, extra
/// header lines).
const CASES: &[(&str, &str, &str)] = &[
    // A root request: a new trace (random sampling 100%, a fresh request id).
    ("root", "/app/root", "user-agent: ua/1\r\nx-who: me\r\n"),
    // A sampled parent: a child span in its trace.
    (
        "parent",
        "/app/parent?x=1",
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\ntracestate: k=v\r\n",
    ),
    // An unsampled parent: not traced, whatever the percentages.
    (
        "unsampled",
        "/app/unsampled",
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\r\n",
    ),
    // A request id that is not a UUID carries no decision: not traced.
    (
        "not-uuid",
        "/app/rid",
        "x-request-id: rid-1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
    ),
    // A client's trace id.
    ("client", "/app/client", "x-client-trace-id: c-1\r\n"),
    // No route: a local 404 with its flag.
    (
        "noroute",
        "/missing",
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
    ),
    // The last one: once it is exported, the earlier ones are too.
    (
        "marker",
        "/app/marker",
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
    ),
];

fn collector() -> Upstream {
    Upstream::start(Arc::new(|_, _req, s| {
        use std::io::Write;
        s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )?;
        Ok(true)
    }))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attrs(s: &Span) -> BTreeMap<String, String> {
    s.attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

/// Every span the collector received, with its resource's service name.
fn spans(c: &Upstream) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    for r in c.requests() {
        let Ok(req) = ExportTraceServiceRequest::decode(&r.body[..]) else {
            continue;
        };
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

/// Attributes whose values differ between the two by nature (addresses, sizes that
/// count differently) are compared by key only.
/// `guid:x-request-id` differs by design too (Envoy marks the id it keeps; docs/tracing.md).
const KEY_ONLY: &[&str] = &[
    "peer.address",
    "upstream_address",
    "request_size",
    "response_size",
    "guid:x-request-id",
];

/// What one proxy did for every case: the span it exported (described), and the
/// context the upstream saw.
fn observe(listen: SocketAddr, up: &Upstream, otel: &Upstream) -> BTreeMap<String, String> {
    for (id, path, extra) in CASES {
        let r = exchange(
            listen,
            &format!("GET {path} HTTP/1.1\r\nHost: svc\r\nx-case: {id}\r\n{extra}Connection: close\r\n\r\n"),
        );
        assert!(r.status == 200 || r.status == 404, "{id}: {}", r.status);
    }
    let got = wait_until(Duration::from_secs(20), || {
        let s = spans(otel);
        s.iter()
            .any(|(_, s)| attrs(s).get("case").map(String::as_str) == Some("marker"))
            .then_some(s)
    })
    .unwrap_or_else(|| {
        let s = spans(otel);
        panic!(
            "the marker span did not reach the collector: {} requests, spans {:?}",
            otel.requests().len(),
            s.iter().map(|(_, s)| attrs(s)).collect::<Vec<_>>()
        )
    });
    let mut out = BTreeMap::new();
    for (id, _, _) in CASES {
        let span = got
            .iter()
            .find(|(_, s)| attrs(s).get("case").map(String::as_str) == Some(id));
        let upstream_tp = up
            .requests()
            .iter()
            .find(|r| r.header("x-case") == Some(id))
            .and_then(|r| r.header("traceparent").map(str::to_string));
        let desc = match span {
            None => format!(
                "no span; upstream traceparent sampled: {:?}",
                upstream_tp.map(|t| t.ends_with("-01"))
            ),
            Some((service, s)) => {
                let mut a = attrs(s);
                for k in KEY_ONLY {
                    if let Some(v) = a.get_mut(*k) {
                        *v = "*".into();
                    }
                }
                let trace = hex(&s.trace_id);
                let trace = if trace == TRACE_ID {
                    "incoming".to_string()
                } else {
                    format!("new({})", trace.len())
                };
                let parent = hex(&s.parent_span_id);
                let parent = if parent == PARENT_ID {
                    "incoming".to_string()
                } else {
                    parent
                };
                // The upstream's parent is this span, in its trace.
                let child_ok = upstream_tp
                    .as_deref()
                    .map(|tp| tp == format!("00-{}-{}-01", hex(&s.trace_id), hex(&s.span_id)));
                format!(
                    "service {service} kind {} name {:?} trace {trace} parent {parent:?} upstream-child {child_ok:?} attrs {a:?}",
                    s.kind, s.name
                )
            }
        };
        out.insert(id.to_string(), desc);
    }
    out
}

#[test]
fn spans_and_propagation_match_envoy() {
    let Some(bin) = envoy_or_skip("spans_and_propagation_match_envoy") else {
        return;
    };
    let up = Upstream::echo();
    let otel = collector();
    let text = bootstrap(up.addr, otel.addr);
    let envoy = Envoy::start(&bin, &text);
    let from_envoy = observe(envoy.listen, &up, &otel);
    drop(envoy);
    let up2 = Upstream::echo();
    let otel2 = collector();
    // The same bootstrap, pointed at fresh servers (the ids must not mix).
    let text2 = text
        .replace(&up.addr.port().to_string(), &up2.addr.port().to_string())
        .replace(
            &otel.addr.port().to_string(),
            &otel2.addr.port().to_string(),
        );
    let proxy = Proxy::start(&text2);
    let from_ours = observe(proxy.listen, &up2, &otel2);
    let mut diffs = Vec::new();
    for (id, e) in &from_envoy {
        let o = from_ours.get(id).cloned().unwrap_or_default();
        if &o != e {
            diffs.push(format!("{id}\n  outrigger: {o}\n      envoy: {e}"));
        }
    }
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
}
