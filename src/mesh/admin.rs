//! The control plane's admin port: `/ready` (200 once the mesh is loaded, which it is
//! before the port opens), `/proxies` (each connected proxy's sent, ACKed and NACKed
//! versions per type, and the last load's errors, as JSON), `/config_dump` (one
//! proxy's resources as proto3 JSON: `?node=ID`), and workload registration
//! (`/workloads`, `registration.rs`). HTTP/1.1, one request per connection; a body
//! only with `content-length`, at most 64 KiB.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::plane::Plane;
use super::translate::Proxy;

const MAX_HEAD: usize = 8192;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest request body (a WorkloadEntry spec).
const MAX_BODY: usize = 64 * 1024;

/// One request as the handlers see it.
struct Request {
    method: String,
    path: String,
    token: Option<String>,
    body: Vec<u8>,
}

pub async fn serve_connection(plane: Rc<Plane>, mut tcp: crate::rt::net::TcpStream) {
    let _ = tcp.set_read_timeout(Some(READ_TIMEOUT));
    let out = match read_request(&mut tcp).await {
        Ok(Some(req)) => handle(&plane, &req).await,
        Ok(None) => return,
        Err((status, why)) => response(status, "text/plain", &format!("{why}\n")),
    };
    let _ = tcp.write_all(&out).await;
    let _ = tcp.flush().await;
}

/// Reads one request (head and `content-length` body); `None` when the peer went.
async fn read_request(
    tcp: &mut crate::rt::net::TcpStream,
) -> Result<Option<Request>, (u16, &'static str)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (mut req, head_len, body_len) = loop {
        let n = match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => n,
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let header = |name: &str| {
                    parsed
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                };
                if header("transfer-encoding").is_some() {
                    return Err((400, "chunked bodies are not taken: send content-length"));
                }
                let body_len = match header("content-length") {
                    None => 0,
                    Some(v) => v
                        .trim()
                        .parse::<usize>()
                        .map_err(|_| (400, "bad content-length"))?,
                };
                if body_len > MAX_BODY {
                    return Err((413, "the body is larger than 64 KiB"));
                }
                let req = Request {
                    method: parsed.method.unwrap_or("").to_string(),
                    path: parsed.path.unwrap_or("").to_string(),
                    token: header("authorization")
                        .and_then(super::tokens::bearer)
                        .map(str::to_string),
                    body: Vec::new(),
                };
                break (req, head_len, body_len);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            _ => return Err((400, "bad request")),
        }
    };
    let mut body = buf.get(head_len..).unwrap_or(&[]).to_vec();
    while body.len() < body_len {
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => body.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
        }
    }
    body.truncate(body_len);
    req.body = body;
    Ok(Some(req))
}

async fn handle(plane: &Plane, req: &Request) -> Vec<u8> {
    let (route, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    if route.starts_with("/workloads/") {
        let (status, text) = super::registration::handle(
            plane,
            &req.method,
            route,
            query,
            req.token.as_deref(),
            &req.body,
        )
        .await;
        return response(status, "text/plain", &text);
    }
    if req.method != "GET" {
        return response(405, "text/plain", "GET only\n");
    }
    answer(plane, &req.path)
}

fn answer(plane: &Plane, path: &str) -> Vec<u8> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    match route {
        "/" => response(
            200,
            "text/html; charset=utf-8",
            &super::status_page::render(plane),
        ),
        "/ready" => response(200, "text/plain", "LIVE\n"),
        "/proxies" => response(200, "application/json", &pretty(&plane.status())),
        "/workloads" => response(
            200,
            "application/json",
            &pretty(&plane.registry.borrow().status()),
        ),
        "/config_dump" => {
            let Some(node) = query.split('&').find_map(|kv| kv.strip_prefix("node=")) else {
                return response(400, "text/plain", "config_dump needs ?node=ID\n");
            };
            let mesh = plane.mesh();
            let known = plane
                .proxies
                .borrow()
                .get(node)
                .map(|p| (p.namespace.clone(), p.labels.clone()));
            let (ns, labels) = known.unzip();
            let proxy = Proxy::identify(&mesh, node, ns.as_deref(), labels.unwrap_or_default());
            let view = super::capture::proxy_view(&mesh, &proxy, &plane.trust_domain);
            response(200, "application/json", &pretty(&serde_json::json!(view)))
        }
        _ => response(
            404,
            "text/plain",
            "not found: / (status page), /ready, /proxies, /workloads, /config_dump?node=ID\n",
        ),
    }
}

pub(super) fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

pub(super) fn response(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        503 => "Service Unavailable",
        _ => "Method Not Allowed",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
