//! The control plane's admin port: `/ready` (200 once the mesh is loaded, which it is
//! before the port opens), `/proxies` (each connected proxy's sent, ACKed and NACKed
//! versions per type, and the last load's errors, as JSON) and `/config_dump` (one
//! proxy's resources as proto3 JSON: `?node=ID`). HTTP/1.1, one request per
//! connection.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::plane::Plane;
use super::translate::{self, Proxy};

const MAX_HEAD: usize = 8192;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve_connection(plane: Rc<Plane>, mut tcp: crate::rt::net::TcpStream) {
    let _ = tcp.set_read_timeout(Some(READ_TIMEOUT));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let target = loop {
        let n = match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                )
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            _ => {
                let _ = tcp
                    .write_all(&response(400, "text/plain", "bad request\n"))
                    .await;
                return;
            }
        }
    };
    let (method, path) = target;
    let out = if method != "GET" {
        response(405, "text/plain", "GET only\n")
    } else {
        answer(&plane, &path)
    };
    let _ = tcp.write_all(&out).await;
    let _ = tcp.flush().await;
}

fn answer(plane: &Plane, path: &str) -> Vec<u8> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    match route {
        "/ready" => response(200, "text/plain", "LIVE\n"),
        "/proxies" => response(200, "application/json", &pretty(&plane.status())),
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
            let view = translate::view(&mesh, &proxy, &plane.trust_domain);
            response(200, "application/json", &pretty(&serde_json::json!(view)))
        }
        _ => response(
            404,
            "text/plain",
            "not found: /ready, /proxies, /config_dump?node=ID\n",
        ),
    }
}

fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

fn response(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
