//! The admin server, on the control executor at its own address.
//!
//! | path | |
//! |---|---|
//! | `GET /ready` | 200 once every worker serves the current config (and the first round of health checks is done), 503 before and while draining |
//! | `GET /stats` | merged per-core counters as JSON (plus `allocations` in an `alloc-count` build); with Envoy's `filter`, `usedonly`, `type` or `format` (`text`, `json`, `prometheus`), Envoy's flat names and shapes (`envoy_stats`) |
//! | `GET /stats/prometheus` | the same in Prometheus text exposition format |
//! | `GET /config_dump` | the active config as JSON, with its version (`?include_eds`: with xDS endpoints, as in Envoy) |
//! | `GET /clusters` | Envoy's text format: per cluster its limits and per endpoint its counters and flags (`?format=json`: Envoy's `ClusterStatuses`, and Outrigger's report under `clusters`) |
//! | `POST /reload` | re-read the config source; 200 with the new version or 400 with errors |

mod clusters;
mod envoy_stats;
mod prom_text;
mod prometheus;
mod prometheus_routes;

use std::mem::MaybeUninit;
use std::rc::Rc;
use std::time::Duration;

use crate::rt::net::TcpStream;
use crate::rt::spawn_local;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::h1::encode;
use crate::observe::stats::StatsReport;
use crate::observe::{alloc_count, log_levels};

/// What the admin server asks of the process. The control executor implements it
/// (`runtime::control`); the admin server knows nothing else of the runtime, so the
/// dependency runs one way.
pub(crate) trait AdminApi {
    /// Every worker serves the current config and nothing is draining or dead.
    fn is_ready(&self) -> bool;
    fn is_draining(&self) -> bool;
    /// `{"version": N, "config": {...}}`.
    /// `include_eds`: the xDS endpoint configs too (Envoy's `?include_eds`).
    fn config_dump(&self, include_eds: bool) -> serde_json::Value;
    /// Every worker's counters, merged.
    fn stats(&self) -> impl std::future::Future<Output = StatsReport>;
    /// Re-reads the config source: the new version, or every error.
    fn reload(&self) -> impl std::future::Future<Output = Result<u64, String>>;
}

/// Accepts admin connections until the control executor stops.
pub(crate) async fn serve<A: AdminApi + 'static>(control: Rc<A>, socket: socket2::Socket) {
    let listener = match crate::rt::net::listener_from(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "admin listener: the runtime refused the socket");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok(stream) => {
                spawn_local(handle(control.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                crate::rt::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    fn json(v: &impl serde::Serialize) -> Reply {
        let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
        body.push(b'\n');
        Reply {
            status: 200,
            content_type: "application/json",
            body,
        }
    }
}

async fn handle<A: AdminApi>(control: Rc<A>, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    let (method, path) = loop {
        match stream.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 64];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(&buf[..len], &mut slots) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                );
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => {
                let _ = respond(&mut stream, Reply::text(400, "bad request\n")).await;
                return;
            }
        }
    };
    let (path_only, query) = path.split_once('?').unwrap_or((&path, ""));
    let reply = route(&*control, &method, path_only, query).await;
    let _ = respond(&mut stream, reply).await;
}

async fn route<A: AdminApi>(control: &A, method: &str, path: &str, query: &str) -> Reply {
    match (method, path) {
        ("GET" | "HEAD", "/ready") => {
            if control.is_ready() {
                Reply::text(200, "LIVE\n")
            } else if control.is_draining() {
                Reply::text(503, "DRAINING\n")
            } else {
                Reply::text(503, "PRE_INITIALIZING\n")
            }
        }
        ("GET", "/stats") => match envoy_stats::Query::parse(&query_pairs(query)) {
            None => stats_json(control).await,
            Some(Err(e)) => Reply::text(400, format!("{e}\n")),
            Some(Ok(q)) => envoy_shaped(control, &q).await,
        },
        ("GET", "/stats/prometheus") => Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: prometheus::render(&control.stats().await).into_bytes(),
        },
        ("GET", "/config_dump") => {
            let include_eds = query
                .split('&')
                .any(|p| p == "include_eds" || p.starts_with("include_eds="));
            Reply::json(&control.config_dump(include_eds))
        }
        ("GET", "/clusters") => {
            let clusters = control.stats().await.clusters;
            if query_pairs(query)
                .iter()
                .any(|(k, v)| k == "format" && v == "json")
            {
                Reply::json(&clusters::json(&clusters))
            } else {
                Reply::text(200, clusters::text(&clusters))
            }
        }
        ("POST", "/reload") => match control.reload().await {
            Ok(v) => Reply::text(200, format!("reloaded: version {v}\n")),
            Err(e) => {
                tracing::error!("reload refused, keeping the running config:\n{e}");
                Reply::text(400, format!("{e}\n"))
            }
        },
        // Envoy's `/logging`: it changes the server's state, so POST only (as Envoy).
        ("POST", "/logging") => match log_levels::change(&query_pairs(query)) {
            Ok(()) => Reply::text(200, log_levels::listing()),
            Err(e) => Reply::text(
                400,
                format!(
                    "error: {e}\n\n{}{}",
                    log_levels::usage(),
                    log_levels::listing()
                ),
            ),
        },
        (
            _,
            "/ready" | "/stats" | "/stats/prometheus" | "/config_dump" | "/clusters" | "/reload"
            | "/logging",
        ) => Reply::text(405, "method not allowed\n"),
        _ => Reply::text(
            404,
            "not found; try /ready /stats /stats/prometheus /config_dump /clusters, POST /reload /logging\n",
        ),
    }
}

/// The merged stats; in an `alloc-count` build also the process's allocation total as
/// a top-level `allocations` field (the load test's allocations per request); once a
/// span was sampled, the span exporter's counters (`tracing.opentelemetry.*`).
async fn stats_json<A: AdminApi>(control: &A) -> Reply {
    let report = control.stats().await;
    let tracing = crate::observe::trace::export::report();
    if alloc_count::allocations().is_none() && tracing.is_none() {
        return Reply::json(&report);
    }
    let mut v = serde_json::to_value(&report).unwrap_or_default();
    if let serde_json::Value::Object(m) = &mut v {
        if let Some(n) = alloc_count::allocations() {
            m.insert("allocations".to_string(), n.into());
        }
        if let Some(t) = tracing {
            for (k, n) in [
                ("spans_sent", t.spans_sent),
                ("spans_dropped", t.spans_dropped),
                ("export_failures", t.export_failures),
            ] {
                m.insert(format!("tracing.opentelemetry.{k}"), n.into());
            }
        }
    }
    Reply::json(&v)
}

/// `/stats` with Envoy's parameters (`envoy_stats`): text, JSON or Prometheus.
async fn envoy_shaped<A: AdminApi>(control: &A, q: &envoy_stats::Query) -> Reply {
    let report = control.stats().await;
    let extra: Vec<(String, u64)> = crate::observe::trace::export::report()
        .map(|t| {
            [
                ("spans_sent", t.spans_sent),
                ("spans_dropped", t.spans_dropped),
                ("export_failures", t.export_failures),
            ]
            .map(|(k, n)| (format!("tracing.opentelemetry.{k}"), n))
            .to_vec()
        })
        .unwrap_or_default();
    match q.format {
        envoy_stats::Format::Json => {
            let mut body = serde_json::to_vec(&q.json(&report, &extra)).unwrap_or_default();
            body.push(b'\n');
            Reply {
                status: 200,
                content_type: "application/json",
                body,
            }
        }
        envoy_stats::Format::Text => Reply::text(200, q.text(&report, &extra)),
        envoy_stats::Format::Prometheus => Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: q.prometheus(&prometheus::render(&report)).into_bytes(),
        },
    }
}

async fn respond(stream: &mut TcpStream, r: Reply) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(r.body.len() + 128);
    out.extend_from_slice(b"HTTP/1.1 ");
    encode::push_u64(&mut out, u64::from(r.status));
    out.push(b' ');
    out.extend_from_slice(encode::reason(r.status).as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(r.content_type.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: ");
    encode::push_u64(&mut out, r.body.len() as u64);
    out.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    out.extend_from_slice(&r.body);
    stream.write_all(&out).await?;
    stream.close().await
}

/// A query string's `key=value` pairs, percent-decoded (`+` is a space), in order.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            let hex = b
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (c, hex) {
                (b'%', Some(v)) => {
                    out.push(v);
                    i += 3;
                }
                (b'+', _) => {
                    out.push(b' ');
                    i += 1;
                }
                _ => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
