//! The gRPC side of ext_authz: the `CheckRequest` as Envoy fills it
//! (`CheckRequestUtils::createHttpCheck`) and the `CheckResponse` read into an
//! [`Answer`].
//!
//! Attributes sent: the source (the downstream peer's address and, on a mutual-TLS
//! connection, its principal: the certificate's first URI SAN, else its first DNS SAN,
//! else its subject) and the destination (the local address and the proxy's own URI
//! SAN); the request's method, path, host, scheme, protocol and headers (names
//! lower-case, the pseudo-headers `:authority`, `:method`, `:path`, `:scheme` included,
//! repeated headers joined with `,`; filtered by `allowed_headers` when set); the route's
//! `context_extensions`.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{
    address::Address as AddressKind, socket_address::PortSpecifier, Address, SocketAddress,
};
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context::{HttpRequest, Peer, Request},
    check_response::HttpResponse,
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse,
};

use super::{header, matches_any, Action, Allowed, Answer, Mutation, PerRoute, CHECK_PATH};
use crate::config::StringMatch;
use crate::http::filter::ctx::RequestCtx;
use crate::upstream::grpc_call::{self, Upstreams};

/// The `CheckRequest` for one request head.
pub fn request(
    ctx: &RequestCtx<'_>,
    allowed: Option<&[StringMatch]>,
    per_route: Option<&PerRoute>,
) -> CheckRequest {
    let tls = ctx.conn.tls;
    let (source, destination) = peers(ctx.conn, ctx.peer_port);
    let r = ctx.req;
    let scheme = if tls.is_some() { "https" } else { r.scheme };
    let authority = String::from_utf8_lossy(r.authority).into_owned();
    let mut headers: HashMap<String, String> = HashMap::new();
    let mut put = |name: String, value: &str| {
        if allowed.is_some_and(|l| !matches_any(l, &name)) {
            return;
        }
        headers
            .entry(name)
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    };
    put(":authority".into(), &authority);
    put(":method".into(), r.method);
    put(":path".into(), r.path);
    put(":scheme".into(), scheme);
    for h in r.headers {
        let name = h.name.to_ascii_lowercase();
        // HTTP/1's Host is the `:authority` above; hop-by-hop headers never reach
        // Envoy's filters.
        if matches!(
            name.as_str(),
            "host"
                | "connection"
                | "keep-alive"
                | "proxy-connection"
                | "transfer-encoding"
                | "upgrade"
                | "te"
        ) || name == super::PARTIAL_BODY
        {
            // A client's `x-envoy-auth-partial-body` never reaches the service.
            continue;
        }
        put(name, &String::from_utf8_lossy(h.value));
    }
    let (path, query) = match r.path.split_once('?') {
        Some((p, q)) => (p, q),
        None => (r.path, ""),
    };
    let http = HttpRequest {
        method: r.method.to_string(),
        headers,
        path: r.path.to_string(),
        host: authority,
        scheme: scheme.to_string(),
        protocol: ctx.protocol.to_string(),
        // Envoy's `bytesReceived()`: no body byte is read when the head is checked (a
        // check on the body sets it, `set_size`).
        size: 0,
        ..HttpRequest::default()
    };
    // Envoy leaves `query` and `fragment` empty (the path carries the query).
    let _ = (path, query);
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(source),
            destination: Some(destination),
            request: Some(Request {
                http: Some(http),
                ..Request::default()
            }),
            context_extensions: per_route
                .map(|p| p.context_extensions.iter().cloned().collect())
                .unwrap_or_default(),
            ..AttributeContext::default()
        }),
    }
}

/// The check's `size`: the body bytes received when it goes out (Envoy's
/// `bytesReceived()`, whatever the Content-Length says).
pub fn set_size(req: &mut CheckRequest, seen: u64) {
    if let Some(http) = req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.size = i64::try_from(seen).unwrap_or(i64::MAX);
    }
}

/// The buffered request body in a check request (Envoy's `createHttpCheck` with a
/// decoding buffer): `raw_body` with `pack_as_bytes`, else `body` (as text; bytes that
/// are not UTF-8 are replaced), and `x-envoy-auth-partial-body` among the headers,
/// whatever `allowed_headers` says.
pub fn add_body(req: &mut CheckRequest, body: &[u8], partial: bool, pack_as_bytes: bool) {
    let Some(http) = req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    else {
        return;
    };
    if pack_as_bytes {
        http.raw_body = body.to_vec();
    } else {
        http.body = String::from_utf8_lossy(body).into_owned();
    }
    http.headers.insert(
        super::PARTIAL_BODY.to_string(),
        if partial { "true" } else { "false" }.to_string(),
    );
}

/// The connection's source and destination as Envoy reports them: addresses, and on a
/// TLS connection the principals (the peer's only when it presented a certificate).
pub fn peers(conn: crate::rbac::Conn<'_>, peer_port: u16) -> (Peer, Peer) {
    let tls = conn.tls;
    let source = Peer {
        address: Some(socket(conn.peer, peer_port)),
        principal: tls
            .filter(|t| t.peer_presented())
            .map(|t| principal(&t.peer))
            .unwrap_or_default(),
        ..Peer::default()
    };
    let destination = Peer {
        address: Some(socket(conn.local.ip(), conn.local.port())),
        principal: tls
            .and_then(|t| t.local_uri_san.clone())
            .unwrap_or_default(),
        ..Peer::default()
    };
    (source, destination)
}

fn socket(ip: std::net::IpAddr, port: u16) -> Address {
    Address {
        address: Some(AddressKind::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..SocketAddress::default()
        })),
    }
}

/// Envoy's `getPrincipal`: the first URI SAN, else the first DNS SAN, else the subject.
fn principal(s: &crate::tls::der::Sans) -> String {
    s.uri
        .first()
        .or(s.dns.first())
        .cloned()
        .unwrap_or_else(|| s.subject.clone())
}

/// Calls the service and reads its answer.
pub async fn call(
    up: &dyn Upstreams,
    cluster: usize,
    timeout: Duration,
    req: &CheckRequest,
) -> Answer {
    match grpc_call::unary::<_, CheckResponse>(up, cluster, CHECK_PATH, timeout, req).await {
        Ok(r) => answer(r),
        Err(e) => {
            tracing::debug!(error = %e, "ext_authz: check call failed");
            Answer::Error
        }
    }
}

/// A `CheckResponse` as an answer (Envoy's `GrpcClientImpl::onSuccess`).
pub fn answer(r: CheckResponse) -> Answer {
    let code = r.status.as_ref().map_or(0, |s| s.code);
    if code == 0 {
        let mut a = Allowed::default();
        if let Some(HttpResponse::OkResponse(ok)) = r.http_response {
            a.request = mutations(&ok.headers);
            a.response = mutations(&ok.response_headers_to_add);
            a.remove = ok
                .headers_to_remove
                .iter()
                .filter_map(|n| super::mutable_name(n))
                .collect();
        }
        return Answer::Ok(a);
    }
    match r.http_response {
        Some(HttpResponse::ErrorResponse(_)) => Answer::Error,
        Some(HttpResponse::DeniedResponse(d)) => denied(&d),
        _ => Answer::Denied {
            status: 403,
            headers: Vec::new(),
            body: String::new(),
        },
    }
}

fn denied(d: &DeniedHttpResponse) -> Answer {
    let status = d
        .status
        .as_ref()
        .map(|s| s.code)
        .filter(|c| *c > 0)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (200..=999).contains(c))
        .unwrap_or(403);
    let headers = mutations(&d.headers)
        .into_iter()
        .map(|m| (m.name, m.value))
        .collect();
    Answer::Denied {
        status,
        headers,
        body: d.body.clone(),
    }
}

/// The service's `HeaderValueOption`s: the deprecated `append` wins when set (true:
/// Envoy's `appendCopy`, joined with `,`; false: overwrite), else `append_action`.
#[allow(deprecated)]
fn mutations(
    list: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption],
) -> Vec<Mutation> {
    list.iter()
        .filter_map(|o| {
            let h = o.header.as_ref()?;
            let action = match (o.append.as_ref(), o.append_action) {
                (Some(a), _) if a.value => Action::AppendJoin,
                (Some(_), _) => Action::Overwrite,
                (None, 1) => Action::AddIfAbsent,
                (None, 2) => Action::Overwrite,
                (None, 3) => Action::OverwriteIfExists,
                (None, _) => Action::Append,
            };
            let value = if h.raw_value.is_empty() {
                h.value.clone()
            } else {
                String::from_utf8_lossy(&h.raw_value).into_owned()
            };
            header(&h.key, &value, action)
        })
        .collect()
}
