//! The plain-HTTP authorization service (Envoy's `http_service`,
//! `ext_authz_http_impl.cc`): the request head goes to the service as an HTTP/1.1
//! request with the same method, the path behind `path_prefix`, no body
//! (`content-length: 0`; with `with_request_body`, the buffered body and
//! `x-envoy-auth-partial-body`, `body.rs`), the client's `Host`, `Authorization` and the headers
//! `allowed_headers` matches, and `headers_to_add`. A `200` allows the request (the
//! service's headers that `allowed_upstream_headers` matches overwrite the upstream
//! request's, `allowed_upstream_headers_to_append` ones are added beside them,
//! `allowed_client_headers_on_success` ones go to the client, and the names in
//! `x-envoy-auth-headers-to-remove` are removed upstream); any other status denies it
//! with that status, the service's body and its headers (those `allowed_client_headers`
//! matches, or all of them when it is not set); no answer is an error.

use std::time::Duration;

use super::{header, matches_any, mutable_name, Action, Allowed, Answer};
use crate::config::StringMatch;
use crate::http::filter::ctx::RequestCtx;
use crate::upstream::grpc_call::Upstreams;

/// Most bytes of the service's response body read.
const MAX_BODY: usize = 1 << 20;

/// Envoy's header listing the request headers to remove.
const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

/// Headers of the service's response that never go to the client: the local reply has
/// its own framing, date and server.
const NOT_TO_CLIENT: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "date",
    "server",
    "host",
    HEADERS_TO_REMOVE,
];

#[derive(Debug, Clone, PartialEq)]
pub struct HttpService {
    /// Index into the snapshot's clusters.
    pub cluster: usize,
    pub timeout: Duration,
    pub path_prefix: String,
    /// `authorization_request.headers_to_add`.
    pub headers_to_add: Vec<(String, String)>,
    /// `authorization_request.allowed_headers` (deprecated for the filter's own).
    pub allowed_headers: Option<Vec<StringMatch>>,
    pub allowed_upstream_headers: Vec<StringMatch>,
    pub allowed_upstream_headers_to_append: Vec<StringMatch>,
    /// `None`: every header of a denial goes to the client.
    pub allowed_client_headers: Option<Vec<StringMatch>>,
    pub allowed_client_headers_on_success: Vec<StringMatch>,
}

/// Request headers that always go to the service.
const ALWAYS: &[&str] = &["authorization"];

impl HttpService {
    /// The request head sent to the service for this request, without its
    /// `content-length` and the blank line that ends it (`call` writes them).
    pub fn head(&self, ctx: &RequestCtx<'_>, allowed: Option<&[StringMatch]>) -> Vec<u8> {
        let r = ctx.req;
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(r.method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(self.path_prefix.as_bytes());
        head.extend_from_slice(r.path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        head.extend_from_slice(r.authority);
        head.extend_from_slice(b"\r\n");
        // What Envoy's async client adds to the call.
        head.extend_from_slice(b"x-envoy-internal: true\r\nx-envoy-expected-rq-timeout-ms: ");
        head.extend_from_slice(self.timeout.as_millis().to_string().as_bytes());
        head.extend_from_slice(b"\r\n");
        let list = allowed.or(self.allowed_headers.as_deref());
        for h in r.headers {
            let name = h.name.to_ascii_lowercase();
            let skip = matches!(
                name.as_str(),
                "host" | "content-length" | "transfer-encoding" | "connection" | "expect"
            ) || name == super::PARTIAL_BODY
                || self.headers_to_add.iter().any(|(n, _)| *n == name);
            let wanted =
                ALWAYS.contains(&name.as_str()) || list.is_some_and(|l| matches_any(l, &name));
            if skip || !wanted {
                continue;
            }
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(h.value);
            head.extend_from_slice(b"\r\n");
        }
        for (n, v) in &self.headers_to_add {
            head.extend_from_slice(n.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(v.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head
    }

    /// Sends `head` (from [`HttpService::head`]) with the buffered request body, if the
    /// check waited for it (`(body, partial)`), and reads the answer.
    pub async fn call(
        &self,
        up: &dyn Upstreams,
        mut head: Vec<u8>,
        body: Option<(&[u8], bool)>,
    ) -> Answer {
        let (bytes, partial) = body.unwrap_or((&[], false));
        head.extend_from_slice(b"content-length: ");
        head.extend_from_slice(bytes.len().to_string().as_bytes());
        head.extend_from_slice(b"\r\n");
        if body.is_some() {
            head.extend_from_slice(super::PARTIAL_BODY.as_bytes());
            head.extend_from_slice(if partial {
                b": true\r\n"
            } else {
                b": false\r\n"
            });
        }
        head.extend_from_slice(b"\r\n");
        let exchange = async { Some(up.h1_exchange(self.cluster, head, bytes, MAX_BODY).await) };
        let deadline = async {
            crate::rt::sleep(self.timeout).await;
            None
        };
        let resp = match futures_lite::future::or(exchange, deadline).await {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "ext_authz: HTTP check failed");
                return Answer::Error;
            }
            None => {
                tracing::debug!("ext_authz: HTTP check timed out");
                return Answer::Error;
            }
        };
        self.answer(resp)
    }

    /// The service's response as an answer.
    pub fn answer(&self, resp: crate::upstream::grpc_call::H1Response) -> Answer {
        if resp.status == 200 {
            let mut a = Allowed::default();
            for (n, v) in &resp.headers {
                if n == HEADERS_TO_REMOVE {
                    a.remove
                        .extend(v.split(',').filter_map(|x| mutable_name(x.trim())));
                    continue;
                }
                if matches_any(&self.allowed_upstream_headers, n) {
                    a.request.extend(header(n, v, Action::Overwrite));
                } else if matches_any(&self.allowed_upstream_headers_to_append, n) {
                    a.request.extend(header(n, v, Action::Append));
                }
                if matches_any(&self.allowed_client_headers_on_success, n) {
                    a.response.extend(header(n, v, Action::Overwrite));
                }
            }
            return Answer::Ok(a);
        }
        let headers = resp
            .headers
            .iter()
            .filter(|(n, _)| !NOT_TO_CLIENT.contains(&n.as_str()))
            .filter(|(n, _)| {
                self.allowed_client_headers.as_ref().is_none_or(|l| {
                    matches_any(l, n) || matches!(n.as_str(), "www-authenticate" | "location")
                })
            })
            .filter_map(|(n, v)| header(n, v, Action::Overwrite))
            .map(|m| (m.name, m.value))
            .collect();
        Answer::Denied {
            status: resp.status,
            headers,
            body: String::from_utf8_lossy(&resp.body).into_owned(),
        }
    }
}
