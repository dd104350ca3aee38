//! External authorization (Envoy's `envoy.filters.http.ext_authz`): on each routed
//! request head the filter asks an authorization service, over gRPC
//! (`envoy.service.auth.v3.Authorization/Check`, `check.rs` builds the `CheckRequest`) or
//! plain HTTP (`http_service.rs`), and waits for the answer without blocking the worker
//! (the hook is `async`; the call goes over the worker's own connection to the
//! service's cluster, `upstream::grpc_call`).
//!
//! - **OK**: the service's header mutations apply to the upstream request (set, append,
//!   add-if-absent, overwrite-if-exists, `headers_to_remove`) and its
//!   `response_headers_to_add` to the response the client gets; they ride in the
//!   stream's request and response `SetHeaders`, which every encoder writes.
//! - **Denied**: the client gets the service's status (default `403`), headers and body;
//!   response flag `UAEX`.
//! - **Error** (service down, timeout, reset, a malformed answer, an `error_response`):
//!   with `failure_mode_allow` the request goes on (and gets
//!   `x-envoy-auth-failure-mode-allowed: true` with `failure_mode_allow_header_add`),
//!   else the client gets `status_on_error` (default `403`), empty body, `UAEX`.
//!
//! With `with_request_body` (or a route's `check_settings.with_request_body`; a route's
//! `disable_request_body_buffering` turns it off there) the check of a request whose
//! body follows waits for the body (`body.rs`), which the stream holds through the chain
//! (`http/hold.rs`). A later ext_authz filter of the chain then checks after it, with
//! the body if it wants it too, as Envoy's filters run one after the other.
//!
//! A request without a route is not checked (Envoy skips the call); a route may disable
//! the filter (`per_filter_config: {NAME: {disabled: true}}`, Envoy's
//! `ExtAuthzPerRoute.disabled`) or give `context_extensions` for its check requests.
//!
//! Counters, as Envoy names them: `http.<stat_prefix>.ext_authz.[<filter stat_prefix>.]`
//! `ok`, `denied`, `error`, `failure_mode_allowed`, `disabled`; and in the scope of the
//! cluster the request's route names (Envoy's `decoder_callbacks_->clusterInfo()`):
//! `cluster.<cluster>.ext_authz.[<filter stat_prefix>.]` `ok`, `denied`, `error`,
//! `failure_mode_allowed` (`observe::authz_stats`), and for a denial the cluster's
//! `upstream_rq_<class>` (Envoy's `charge_cluster_response_stats`, on by default).
//!
//! The check request's `size` is Envoy's `bytesReceived()` when the check goes out: the
//! body bytes read so far (0 on the head; on the body, every byte seen by then).

pub mod body;
pub mod check;
pub mod http_service;

use std::borrow::Cow;
use std::time::Duration;

use super::ctx::RequestCtx;
use super::set_headers::SetHeaders;
use super::status::{LocalReply, Status};
use crate::config::StringMatch;
use crate::http::flags::ResponseFlag;
use crate::http::router::EntryCluster;
use crate::observe::authz_stats::AuthzStat;
use crate::observe::stats::ClusterStats;

/// Envoy's `failure_mode_allow_header_add` header.
pub const FAILURE_MODE_ALLOWED: &str = "x-envoy-auth-failure-mode-allowed";

/// Envoy's header telling the service whether the body it got was cut
/// (`with_request_body`, `body.rs`).
pub const PARTIAL_BODY: &str = "x-envoy-auth-partial-body";

/// The gRPC method the filter calls.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The filter as configured on a listener, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtAuthzFilter {
    pub service: Service,
    pub failure_mode_allow: bool,
    pub failure_mode_allow_header_add: bool,
    /// The status of a local reply after an error (Envoy's `status_on_error`, 403).
    pub status_on_error: u16,
    /// Which request headers go to the service (Envoy's `allowed_headers`; `None`: all
    /// for gRPC, the defaults for HTTP).
    pub allowed_headers: Option<Vec<StringMatch>>,
    /// `with_request_body`: the check waits for the request body (`body.rs`).
    pub body: Option<body::BodySettings>,
    pub counters: Counters,
    /// The filter's own `stat_prefix` (empty: none), for its cluster-scope counters.
    pub stat_prefix: String,
    /// Envoy's `charge_cluster_response_stats` (default true): a denial counts in the
    /// route's cluster's `upstream_rq_<class>`.
    pub charge_cluster_response_stats: bool,
}

/// Indices into the worker's named counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub ok: usize,
    pub denied: usize,
    pub error: usize,
    pub failure_mode_allowed: usize,
    pub disabled: usize,
}

/// Where the authorization service is.
#[derive(Debug, Clone, PartialEq)]
pub enum Service {
    /// `grpc_service.envoy_grpc`: an HTTP/2 cluster (index into the snapshot's
    /// clusters) and the call's deadline (Envoy's default 200 ms).
    Grpc {
        cluster: usize,
        timeout: Duration,
    },
    Http(Box<http_service::HttpService>),
}

/// A route's `ExtAuthzPerRoute.check_settings` (its `disabled` is the chain's
/// `FilterOverride::Disabled`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerRoute {
    pub context_extensions: Vec<(String, String)>,
    /// `disable_request_body_buffering`: the filter's `with_request_body` does not
    /// apply on this route.
    pub disable_request_body_buffering: bool,
    /// `with_request_body` for this route (its `max_request_bytes` and
    /// `allow_partial_message`; `pack_as_bytes` stays the filter's, as in Envoy).
    pub with_request_body: Option<body::BodySettings>,
}

/// Envoy's `HeaderValueOption.append_action`, for the service's mutations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Append,
    /// The deprecated `append: true` of a gRPC answer: Envoy's `appendCopy`, which joins the value
    /// to the header's existing one with `,`; nothing when the request lacks it.
    AppendJoin,
    AddIfAbsent,
    Overwrite,
    OverwriteIfExists,
}

/// One header mutation the service asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    pub name: String,
    pub value: String,
    pub action: Action,
}

/// The service's answer, whatever the transport.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Allowed {
    pub request: Vec<Mutation>,
    pub remove: Vec<String>,
    pub response: Vec<Mutation>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Ok(Allowed),
    /// A denial: status, headers for the client, body.
    Denied {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// The call failed or the service said so (`error_response`).
    Error,
}

/// What the request-head hook did.
pub struct Head {
    pub status: Status,
    /// The request's (`.0`) and the response's (`.1`) store were written.
    pub set: (bool, bool),
    /// The check waits for the request body (`body.rs`): the stream needs the body hooks.
    pub deferred: bool,
}

impl ExtAuthzFilter {
    /// Checks one request. `request_store` and `store` are the stream's request and
    /// response `SetHeaders`. With `with_request_body`, a request of a forwarding route
    /// whose body follows is checked once the body is buffered (`body.rs`), a bodiless
    /// one at once (Envoy's `decodeHeaders`).
    pub async fn on_request_head(
        &self,
        ctx: &RequestCtx<'_>,
        per_route: Option<&PerRoute>,
        req_store: Option<&SetHeaders>,
        store: Option<&SetHeaders>,
        forwards: bool,
        cluster: EntryCluster<'_>,
    ) -> Head {
        let cluster = cluster_name(ctx, cluster);
        if let (true, true, Some(s)) = (ctx.body, forwards, store) {
            // With its own body settings, or after an earlier filter that waits for the
            // body (Envoy's filter runs once the one before it continues).
            let settings = self.body_settings(per_route);
            let waits = settings.is_some();
            // After an earlier filter that waits, the body it read goes in the check
            // even where this route disables buffering (Envoy: the stream's buffer).
            let carried = settings.or(self.body);
            if (waits || body::waiting(s))
                && body::defer(self, ctx, per_route, s, carried, waits, cluster)
            {
                return Head {
                    status: Status::Continue,
                    set: (false, true),
                    deferred: true,
                };
            }
        }
        let answer = match ctx.upstream {
            None => Answer::Error,
            Some(up) => match &self.service {
                Service::Grpc { cluster, timeout } => {
                    let req = check::request(ctx, self.allowed_headers.as_deref(), per_route);
                    check::call(up, *cluster, *timeout, &req).await
                }
                Service::Http(h) => {
                    let head = h.head(ctx, self.allowed_headers.as_deref());
                    h.call(up, head, None).await
                }
            },
        };
        let inc = |i: usize| {
            if let Some(c) = ctx.counters.get(i) {
                c.inc();
            }
        };
        let values = |name: &str| -> Vec<String> {
            ctx.req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
                .collect()
        };
        let stats = cluster.and_then(|c| ctx.upstream?.cluster_stats(c));
        let (status, req_set, resp_set) =
            self.settle(answer, &inc, stats, &values, req_store, store);
        Head {
            status,
            set: (req_set, resp_set),
            deferred: false,
        }
    }

    /// What the service answered, applied: the status, and whether the request's and
    /// the response's store were written. `values`: the request's incoming values of a
    /// header name.
    fn settle(
        &self,
        answer: Answer,
        inc: &dyn Fn(usize),
        cluster: Option<&ClusterStats>,
        values: &dyn Fn(&str) -> Vec<String>,
        req_store: Option<&SetHeaders>,
        store: Option<&SetHeaders>,
    ) -> (Status, bool, bool) {
        match answer {
            Answer::Ok(a) => {
                inc(self.counters.ok);
                self.count_cluster(cluster, AuthzStat::Ok);
                let (mut req_set, mut resp_set) = (false, false);
                if let Some(rs) = req_store {
                    req_set = apply_request(values, &a, rs);
                }
                if let (Some(s), false) = (store, a.response.is_empty()) {
                    for m in &a.response {
                        match m.action {
                            Action::Append | Action::AppendJoin | Action::AddIfAbsent => {
                                s.add(Cow::Owned(m.name.clone()), m.value.clone())
                            }
                            Action::Overwrite | Action::OverwriteIfExists => {
                                s.set(Cow::Owned(m.name.clone()), &m.value)
                            }
                        }
                    }
                    resp_set = true;
                }
                (Status::Continue, req_set, resp_set)
            }
            Answer::Denied {
                status,
                headers,
                body,
            } => {
                inc(self.counters.denied);
                self.count_cluster(cluster, AuthzStat::Denied);
                if let (true, Some(c)) = (self.charge_cluster_response_stats, cluster) {
                    if let Some(n) = c.rq_class.get(crate::observe::stats::class_index(status)) {
                        n.inc();
                    }
                }
                let resp_set = !headers.is_empty() && store.is_some();
                if let Some(s) = store {
                    // Envoy removes each named header, then adds every value (several
                    // `set-cookie`s stay several).
                    let mut seen: Vec<&str> = Vec::new();
                    for (n, v) in &headers {
                        if seen.contains(&n.as_str()) {
                            s.add(Cow::Owned(n.clone()), v.clone());
                        } else {
                            s.set(Cow::Owned(n.clone()), v);
                            seen.push(n);
                        }
                    }
                }
                let reply = LocalReply {
                    status,
                    body: Cow::Owned(body),
                    flag: ResponseFlag::UnauthorizedExternalService,
                };
                (Status::Respond(reply), false, resp_set)
            }
            Answer::Error => {
                inc(self.counters.error);
                self.count_cluster(cluster, AuthzStat::Error);
                if self.failure_mode_allow {
                    inc(self.counters.failure_mode_allowed);
                    self.count_cluster(cluster, AuthzStat::FailureModeAllowed);
                    let mut req_set = false;
                    if let (true, Some(rs)) = (self.failure_mode_allow_header_add, req_store) {
                        rs.add(FAILURE_MODE_ALLOWED, "true".into());
                        req_set = true;
                    }
                    return (Status::Continue, req_set, false);
                }
                let reply = LocalReply {
                    status: self.status_on_error,
                    body: Cow::Borrowed(""),
                    flag: ResponseFlag::UnauthorizedExternalService,
                };
                (Status::Respond(reply), false, false)
            }
        }
    }
}

impl ExtAuthzFilter {
    /// The body settings on a route: the route's own, none where it disables
    /// buffering, else the filter's.
    pub fn body_settings(&self, per_route: Option<&PerRoute>) -> Option<body::BodySettings> {
        match per_route {
            Some(p) if p.disable_request_body_buffering => None,
            Some(PerRoute {
                with_request_body: Some(b),
                ..
            }) => Some(body::BodySettings {
                pack_as_bytes: self.body.is_some_and(|f| f.pack_as_bytes),
                ..*b
            }),
            _ => self.body,
        }
    }

    fn count_cluster(&self, cluster: Option<&ClusterStats>, stat: AuthzStat) {
        if let Some(c) = cluster {
            c.ext_authz.count(&self.stat_prefix, stat);
        }
    }
}

/// The name of the cluster the route names for this request, if it forwards (a
/// `cluster_header` route's: the header's first value).
fn cluster_name<'a>(ctx: &RequestCtx<'a>, cluster: EntryCluster<'a>) -> Option<&'a str> {
    match cluster {
        EntryCluster::None => None,
        EntryCluster::Name(n) => Some(n),
        EntryCluster::Header(h) => ctx
            .req
            .headers
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(h))
            .and_then(|f| std::str::from_utf8(f.value).ok()),
    }
}

/// Applies an OK answer's request mutations; whether anything was written.
fn apply_request(values: &dyn Fn(&str) -> Vec<String>, a: &Allowed, rs: &SetHeaders) -> bool {
    let present = |name: &str| !values(name).is_empty();
    let mut wrote = false;
    // The joined values so far, for a name appended to more than once.
    let mut joined: Vec<(&str, String)> = Vec::new();
    for m in &a.request {
        let name = Cow::Owned(m.name.clone());
        match m.action {
            Action::Overwrite => rs.set(name, &m.value),
            Action::Append => rs.add(name, m.value.clone()),
            Action::AppendJoin => {
                let earlier = joined.iter_mut().find(|(n, _)| *n == m.name);
                let current = match earlier {
                    Some((_, v)) => Some(v),
                    None => {
                        let incoming = values(&m.name);
                        if incoming.is_empty() {
                            None
                        } else {
                            joined.push((&m.name, incoming.join(",")));
                            joined.last_mut().map(|(_, v)| v)
                        }
                    }
                };
                match current {
                    Some(v) => {
                        v.push(',');
                        v.push_str(&m.value);
                        rs.set(name, v);
                    }
                    // Envoy 1.40 appends only to a header the request has.
                    None => continue,
                }
            }
            Action::AddIfAbsent if !present(&m.name) => rs.add(name, m.value.clone()),
            Action::OverwriteIfExists if present(&m.name) => rs.set(name, &m.value),
            Action::AddIfAbsent | Action::OverwriteIfExists => continue,
        }
        wrote = true;
    }
    for r in &a.remove {
        rs.remove(Cow::Owned(r.clone()));
        wrote = true;
    }
    wrote
}

/// A header name the service may set or remove on the request: a valid field name,
/// not a pseudo-header and not `host` (Envoy's `isRemovableHeader`; the proxy's
/// encoders write the authority themselves), lower-cased.
pub fn mutable_name(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let ok = !lower.is_empty()
        && !lower.starts_with(':')
        && lower != "host"
        && http::HeaderName::from_bytes(lower.as_bytes()).is_ok();
    ok.then_some(lower)
}

/// A header the service sent, if its name and value can go on the wire.
pub fn header(name: &str, value: &str, action: Action) -> Option<Mutation> {
    let name = mutable_name(name)?;
    http::HeaderValue::from_str(value).ok()?;
    Some(Mutation {
        name,
        value: value.to_string(),
        action,
    })
}

/// Whether `name` matches any of `list`.
pub fn matches_any(list: &[StringMatch], name: &str) -> bool {
    list.iter()
        .any(|m| crate::http::router::string_matches(m, name.as_bytes()))
}

#[cfg(test)]
mod tests;
