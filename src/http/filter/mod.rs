//! The HTTP filter chain of a connection manager (listener), Envoy's shape: filters run
//! in order on the request head, the router is the last step, and on the response head
//! the route's edits apply first, then the filters' in reverse order.
//!
//! Filters are a closed enum, dispatched statically: no allocation per request, no Send
//! bounds, and a hook's future lives on the stream's stack. A hook returns
//! [`Status::Continue`] or answers locally with [`Status::Respond`]; hooks are `async`, so
//! a filter may wait (for a rate-limit token, an authorization service) without blocking
//! the worker.
//!
//! After the request head a stream keeps its [`Chain`] (in [`StreamEdits`]) for the later
//! hooks: the response head (`Chain::on_response_head`, called where the upstream's
//! response head is about to go to the client on each of the four protocol paths) and
//! completion (`Chain::on_complete`, called by both connection managers). Which hooks a
//! filter kind has is a constant ([`FilterKind::hooks`]), and a chain without them pays
//! one branch per hook point.
//!
//! The body hooks: `Chain::on_request_data` sees the request body chunk by chunk (the
//! decoded payload of an HTTP/1 body, each HTTP/2 DATA frame), then an end-of-stream
//! call; it may continue, hold the chunk (`StopAndBuffer`) or answer locally.
//! `Chain::on_request_trailers` (Envoy's `decodeTrailers`) sees an HTTP/2 request's
//! trailers, which end its body instead of the end-of-stream data call; it may continue
//! or answer locally. A chain with either hook (on HTTP/1, the body hook only: its
//! trailers never reach the chain) reads the request body through it before
//! the upstream request starts (`http/hold.rs`, called by both connection managers):
//! nothing goes upstream until the chain has seen the end, and the held body goes with
//! a Content-Length (and its trailers, where the upstream protocol can carry them).
//! `Chain::on_request_piece` rewrites the request body piece by piece while the upstream
//! request runs, on the streams a filter asked for it (`Hooks::request_stream`: ext_proc's
//! `STREAMED` request body mode, `http/request_stream.rs` and the four paths; never
//! together with the hold: when another filter holds the body, ext_proc's pieces go
//! through `on_request_data` with it). `Chain::on_response_data` sees each response body chunk (the
//! payload of an HTTP/1 upstream's body, each DATA frame of an HTTP/2 one) before it
//! goes to the client, on all four paths (`http/body_hooks.rs` for HTTP/1 upstreams);
//! answering there, after the head went out, resets the stream (HTTP/2 client) or
//! closes the connection (HTTP/1 client), as Envoy does. The fault filter uses it, on
//! the streams it rate-limits (a kind's hooks are constant, but a stream gets this one
//! only when the filter injected a response rate limit on its request head).
//!
//! `Chain::on_response_piece` rewrites a response body piece by piece as it streams,
//! on the streams a filter asked for it (`Hooks::response_stream`: ext_proc's
//! `STREAMED` response body mode, `http/body_stream.rs` and the four paths): what the
//! chain made of each piece goes to the client in its place, the head without its
//! Content-Length (`Chain::seal_response_head` makes its plan just before it goes).
//!
//! `Chain::on_response_body` sees a whole response body before its head goes out, on
//! the streams a filter asked for it (ext_proc's `BUFFERED` response body mode, and
//! `STREAMED` when a wasm module holds the body too, on every path: `http/conn/held_response.rs`, `http/h2/held.rs` and
//! `http/h1_to_h2_held.rs` hold the response, and show each piece as it comes to
//! `Chain::on_held_response_data`, where `STREAMED` sends it to the processor; a wasm
//! module's `proxy_on_response_body`, on every path too); it may replace the body or
//! answer.
//!
//! Per-route overrides (Envoy's `typed_per_filter_config`): a route can disable a filter
//! by name or give it its own configuration for requests on that route.
//!
//! Adding a filter: a file here with its raw config (serde), its checked config and its
//! hooks; a variant in [`FilterKind`] (and in [`FilterOverride`] if it has per-route
//! config); the raw variant in `RawHttpFilter`. The connection managers do not change.

pub mod buffer;
pub mod cors;
pub mod ctx;
pub mod ext_authz;
pub mod ext_proc;
pub mod fault;
pub mod header_mutation;
pub mod headers;
pub mod local_ratelimit;
pub mod rbac;
mod request_head;
pub mod set_headers;
pub mod status;
pub mod throttle;
pub mod wasm;
mod wasm_body;
mod wasm_trailers;

use serde::Deserialize;

use self::buffer::{BufferFilter, RawBuffer};
use self::cors::{CorsFilter, CorsPolicy};
pub use self::ctx::{ConnState, HeadFields, RequestCtx};
use self::ext_proc::config::{RawExtProc, RawExtProcOverride};
use self::ext_proc::{ExtProcFilter, ExtProcOverride};
use self::fault::{FaultFilter, FaultSettings};
use self::header_mutation::{HeaderMutationFilter, RawHeaderMutation};
use self::headers::{Edits, HeaderPlan};
use self::local_ratelimit::{LocalRateLimitFilter, RawLocalRateLimit, RouteRateLimits};
use self::rbac::RbacFilter;
use self::set_headers::SetHeaders;
pub use self::status::{DataStatus, LocalReply, Status};
use self::wasm::WasmFilter;
use super::flags::ResponseFlag;
use super::router::EntryCluster;
use crate::config::raw_fault_cors::{RawCorsFilter, RawCorsPolicy, RawFault};
use crate::config::raw_rbac::RawRbacFilter;

pub use self::headers::MAX_HEADER_MUTATION_FILTERS;
pub use request_head::on_request_head;

/// One entry of a listener's `http_filters`, as written in the YAML (`Default`: a
/// translation names its one filter's field and leaves the rest empty).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpFilter {
    pub name: String,
    #[serde(default)]
    pub header_mutation: Option<RawHeaderMutation>,
    #[serde(default)]
    pub buffer: Option<RawBuffer>,
    #[serde(default)]
    pub local_ratelimit: Option<RawLocalRateLimit>,
    #[serde(default)]
    pub rbac: Option<RawRbacFilter>,
    #[serde(default)]
    pub fault: Option<RawFault>,
    #[serde(default)]
    pub cors: Option<RawCorsFilter>,
    #[serde(default)]
    pub ext_proc: Option<RawExtProc>,
    #[serde(default)]
    pub ext_authz: Option<crate::config::raw_ext_authz::RawExtAuthz>,
    /// A proxy-wasm filter (Envoy's `envoy.filters.http.wasm`).
    #[serde(default)]
    pub wasm: Option<Box<crate::wasm::config::RawWasm>>,
}

/// A route's override for one filter, as written in the YAML (`per_filter_config`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilterOverride {
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub header_mutation: Option<RawHeaderMutation>,
    #[serde(default)]
    pub buffer: Option<RawBuffer>,
    #[serde(default)]
    pub local_ratelimit: Option<RawLocalRateLimit>,
    #[serde(default)]
    pub rbac: Option<RawRbacFilter>,
    #[serde(default)]
    pub fault: Option<RawFault>,
    /// The route's CORS policy (Envoy's `CorsPolicy`).
    #[serde(default)]
    pub cors: Option<RawCorsPolicy>,
    /// Envoy's `ExtProcPerRoute.overrides` (its `disabled` is `disabled: true`).
    #[serde(default)]
    pub ext_proc: Option<RawExtProcOverride>,
    /// The route's `check_settings` (Envoy's `ExtAuthzPerRoute`).
    #[serde(default)]
    pub ext_authz: Option<crate::config::raw_ext_authz::RawExtAuthzPerRoute>,
}

/// A configured filter.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpFilter {
    pub name: String,
    pub kind: FilterKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FilterKind {
    HeaderMutation(HeaderMutationFilter),
    Buffer(BufferFilter),
    LocalRateLimit(LocalRateLimitFilter),
    Rbac(Box<RbacFilter>),
    Fault(Box<FaultFilter>),
    Cors(CorsFilter),
    ExtProc(Box<ExtProcFilter>),
    ExtAuthz(Box<ext_authz::ExtAuthzFilter>),
    Wasm(WasmFilter),
}

impl FilterKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            FilterKind::HeaderMutation(_) => "header_mutation",
            FilterKind::Buffer(_) => "buffer",
            FilterKind::LocalRateLimit(_) => "local_ratelimit",
            FilterKind::Rbac(_) => "rbac",
            FilterKind::Fault(_) => "fault",
            FilterKind::Cors(_) => "cors",
            FilterKind::ExtProc(_) => "ext_proc",
            FilterKind::ExtAuthz(_) => "ext_authz",
            FilterKind::Wasm(_) => "wasm",
        }
    }

    /// The hooks this kind has after the request head.
    pub const fn hooks(&self) -> Hooks {
        match self {
            // Its response edits are applied by the encoders (`StreamEdits`); RBAC, fault
            // injection and the local rate limit decide on the request head alone; CORS's
            // and the rate limit's response headers ride in the edits too.
            FilterKind::HeaderMutation(_)
            | FilterKind::Rbac(_)
            | FilterKind::LocalRateLimit(_)
            | FilterKind::Fault(_)
            | FilterKind::Cors(_)
            | FilterKind::ExtAuthz(_) => Hooks::NONE,
            // Decided per stream on the request head, from its processing mode and
            // what the processor answered (`ext_proc::run::on_request_head`).
            FilterKind::ExtProc(_) => Hooks::NONE,
            FilterKind::Buffer(_) => Hooks {
                request_data: true,
                ..Hooks::NONE
            },
            // proxy_on_response_headers, and the context's end (on_done/log/delete).
            FilterKind::Wasm(_) => Hooks {
                response_head: true,
                complete: true,
                ..Hooks::NONE
            },
        }
    }
}

/// The hooks a filter kind has after the request head, known per kind at compile time.
/// A stream runs a hook only when a filter of its chain has it, so a chain without such
/// filters costs one branch per hook point and nothing more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `on_response_head`: sees the upstream's response status before it goes to the
    /// client, and may answer instead.
    pub response_head: bool,
    /// `on_complete`: sees how the stream ended.
    pub complete: bool,
    /// `on_request_data`: sees the request body before anything goes upstream.
    pub request_data: bool,
    /// `on_request_piece`: each piece of the request body goes through the chain as it
    /// comes, and what the chain made of it goes upstream in its place; the upstream
    /// request goes without a Content-Length (ext_proc's `STREAMED` request body mode,
    /// `http/request_stream.rs` and the four paths). Never with `request_data`.
    pub request_stream: bool,
    /// `on_request_trailers`: sees the request's trailers (HTTP/2 trailing HEADERS)
    /// before anything goes upstream.
    pub request_trailers: bool,
    /// `on_response_data`: sees each response body chunk before it goes to the client.
    pub response_data: bool,
    /// `on_response_body`: the response (head and whole body) is held until the chain
    /// saw its body (`http/held_body.rs` and the paths that use it).
    pub response_body: bool,
    /// `on_response_piece`: each piece of the response body goes through the chain,
    /// and what the chain made of it goes to the client in its place; the response
    /// goes without a Content-Length (ext_proc's `STREAMED` response body mode).
    pub response_stream: bool,
    /// `on_response_trailers`: sees an HTTP/2 upstream response's trailers before they
    /// go to the client.
    pub response_trailers: bool,
}

impl Hooks {
    pub const NONE: Hooks = Hooks {
        response_head: false,
        complete: false,
        request_data: false,
        request_stream: false,
        request_trailers: false,
        response_data: false,
        response_body: false,
        response_stream: false,
        response_trailers: false,
    };

    const fn or(self, o: Hooks) -> Hooks {
        Hooks {
            response_head: self.response_head || o.response_head,
            complete: self.complete || o.complete,
            request_data: self.request_data || o.request_data,
            request_stream: self.request_stream || o.request_stream,
            request_trailers: self.request_trailers || o.request_trailers,
            response_data: self.response_data || o.response_data,
            response_body: self.response_body || o.response_body,
            response_stream: self.response_stream || o.response_stream,
            response_trailers: self.response_trailers || o.response_trailers,
        }
    }
}

/// How a stream ended, for `on_complete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEnd {
    /// Status sent to the client (0: none was).
    pub status: u16,
    pub flag: ResponseFlag,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

/// The filters that run on one stream (the route's overrides applied), kept from the
/// request-head hook for the stream's later hooks.
#[derive(Clone, Copy, Default)]
pub struct Chain<'c> {
    filters: &'c [HttpFilter],
    overrides: &'c [(String, FilterOverride)],
    hooks: Hooks,
    /// A response flag a filter recorded without answering (the fault filter's `DI`),
    /// for the stream's access log and stats beside the flag of how it ended.
    flag: Option<ResponseFlag>,
    /// The stream's per-request store (the fault filter's rate limit lives there).
    store: Option<&'c SetHeaders>,
    /// The worker's upstream clusters, for a filter that calls a service from the body
    /// hooks (ext_authz with `with_request_body`); set by the connection managers.
    upstream: Option<&'c dyn crate::upstream::grpc_call::Upstreams>,
}

impl<'c> Chain<'c> {
    /// The later hooks some filter of this stream has.
    pub fn hooks(&self) -> Hooks {
        self.hooks
    }

    /// The flag a filter recorded on the request head without answering (`DI`).
    pub fn flag(&self) -> Option<ResponseFlag> {
        self.flag
    }

    /// Whether the request body goes through the chain before the upstream request
    /// starts (`http/hold.rs`): some filter has a request-body or request-trailers hook.
    pub fn holds_request_body(&self) -> bool {
        self.hooks.request_data || self.hooks.request_trailers
    }

    /// The filters of the chain the route does not disable, in order.
    fn active(&self) -> impl DoubleEndedIterator<Item = &'c HttpFilter> + 'c {
        let overrides = self.overrides;
        self.filters.iter().filter(move |f| {
            !overrides
                .iter()
                .any(|(n, o)| *n == f.name && *o == FilterOverride::Disabled)
        })
    }

    /// The route's override of the filter named `name`, if any.
    fn override_for(&self, name: &str) -> Option<&'c FilterOverride> {
        self.overrides
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| o)
    }

    /// One chunk of the request body (`end_stream`: the last call, possibly with an
    /// empty chunk). `buffered`: the body bytes held so far, this chunk not included.
    /// Filters see it in order; the first to answer ends the request, and a chunk any
    /// filter holds is held. Callers check `hooks().request_data` first.
    pub async fn on_request_data(
        &self,
        chunk: &[u8],
        end_stream: bool,
        buffered: u64,
    ) -> DataStatus {
        let mut out = DataStatus::Continue;
        for f in self.active() {
            let status = match &f.kind {
                FilterKind::HeaderMutation(_)
                | FilterKind::Rbac(_)
                | FilterKind::LocalRateLimit(_)
                | FilterKind::Fault(_)
                | FilterKind::Cors(_) => DataStatus::Continue,
                FilterKind::Wasm(w) => w.on_request_data(self.store, chunk, end_stream).await,
                FilterKind::ExtAuthz(own) => {
                    own.on_request_data(self.store, self.upstream, chunk, end_stream, buffered)
                        .await
                }
                FilterKind::ExtProc(_) => {
                    ext_proc::run::on_request_data(self.store, chunk, end_stream).await
                }
                FilterKind::Buffer(own) => {
                    let b = match self.override_for(&f.name) {
                        Some(FilterOverride::Buffer(b)) => b,
                        _ => own,
                    };
                    b.on_request_data(chunk, end_stream, buffered)
                }
            };
            match status {
                DataStatus::Continue => {}
                DataStatus::StopAndBuffer => out = DataStatus::StopAndBuffer,
                DataStatus::Respond(r) => return DataStatus::Respond(r),
            }
        }
        out
    }

    /// The request's trailers (Envoy's `decodeTrailers`), after its last body chunk,
    /// before anything goes upstream; there is then no end-of-stream call of
    /// `on_request_data` (the trailers end the stream). Filters see them in order; the
    /// first to answer ends the request. Callers check `hooks().request_trailers` first.
    pub async fn on_request_trailers(&self, trailers: &mut http::HeaderMap) -> Status {
        for f in self.active() {
            match &f.kind {
                // The buffer filter's trailers hook only sets the Content-Length, which
                // the hold sets for every held body.
                FilterKind::HeaderMutation(_)
                | FilterKind::Buffer(_)
                | FilterKind::Rbac(_)
                | FilterKind::LocalRateLimit(_)
                | FilterKind::Fault(_)
                | FilterKind::Cors(_) => {}
                FilterKind::Wasm(w) => {
                    if let Status::Respond(r) = w.on_request_trailers(self.store, trailers).await {
                        return Status::Respond(r);
                    }
                }
                FilterKind::ExtAuthz(own) => {
                    if let Status::Respond(r) =
                        own.on_request_trailers(self.store, self.upstream).await
                    {
                        return Status::Respond(r);
                    }
                }
                FilterKind::ExtProc(_) => {
                    let s = ext_proc::trailers::on_request_trailers(self.store, trailers);
                    if let Status::Respond(r) = s.await {
                        return Status::Respond(r);
                    }
                }
            }
        }
        Status::Continue
    }

    /// An HTTP/2 upstream response's trailers, before they go to the client (on every
    /// path; an HTTP/1 client then drops them). Filters see them in reverse order and
    /// may change them (ext_proc's `response_trailer_mode: SEND`, a wasm module's
    /// `proxy_on_response_trailers`) or answer: after a
    /// head that went out, the caller resets the stream (HTTP/2) or closes the
    /// connection (HTTP/1). Callers check `hooks().response_trailers` first.
    pub async fn on_response_trailers(&self, trailers: &mut http::HeaderMap) -> Status {
        for f in self.active().rev() {
            let s = match &f.kind {
                FilterKind::ExtProc(_) => {
                    ext_proc::trailers::on_response_trailers(self.store, trailers).await
                }
                FilterKind::Wasm(w) => w.on_response_trailers(self.store, trailers).await,
                _ => continue,
            };
            if let Status::Respond(r) = s {
                return Status::Respond(r);
            }
        }
        Status::Continue
    }

    /// One chunk of the response body, before it goes to the client (`end_stream`: the
    /// last). Filters see it in reverse order. The response head has gone out, so
    /// `Respond` cannot be sent: the caller resets the stream (HTTP/2) or closes the
    /// connection (HTTP/1), as Envoy does. Callers check `hooks().response_data` first.
    pub async fn on_response_data(&self, chunk: &[u8], end_stream: bool) -> Status {
        let mut paced = false;
        for f in self.active().rev() {
            match &f.kind {
                FilterKind::HeaderMutation(_)
                | FilterKind::Buffer(_)
                | FilterKind::Rbac(_)
                | FilterKind::LocalRateLimit(_)
                | FilterKind::ExtProc(_)
                | FilterKind::Cors(_)
                | FilterKind::ExtAuthz(_) => {}
                // A wasm module's response body is held (`on_response_body`).
                FilterKind::Wasm(_) => {}
                // The stream's rate limit, if its request drew one: the chunk waits for
                // its tokens (one limit per stream, whichever fault filter set it).
                FilterKind::Fault(_) => {
                    if let (Some(store), false) = (self.store, paced) {
                        fault::on_response_data(store, chunk.len()).await;
                        paced = true;
                    }
                }
            }
        }
        let _ = end_stream;
        Status::Continue
    }

    /// The upstream's response head with `status` is about to go to the client. Filters
    /// see it in reverse order (Envoy's encoder filters); one may answer instead (the
    /// upstream's response is then dropped). Callers check `hooks().response_head`
    /// first, so a chain without the hook never builds this future.
    pub async fn on_response_head(&self, status: u16, fields: &dyn HeadFields) -> Status {
        for f in self.active().rev() {
            match &f.kind {
                FilterKind::HeaderMutation(_)
                | FilterKind::Buffer(_)
                | FilterKind::Rbac(_)
                | FilterKind::LocalRateLimit(_)
                | FilterKind::Fault(_)
                | FilterKind::Cors(_)
                | FilterKind::ExtAuthz(_) => {}
                FilterKind::ExtProc(_) => {
                    let s = ext_proc::run::on_response_head(self.store, status, fields).await;
                    if let Status::Respond(r) = s {
                        return Status::Respond(r);
                    }
                }
                FilterKind::Wasm(w) => {
                    if let Status::Respond(r) = w.on_response_head(status, self.store).await {
                        return Status::Respond(r);
                    }
                }
            }
        }
        Status::Continue
    }

    /// The whole response body, held with its head before either goes to the client
    /// (`body`: `None` when the response has none; `length`: its Content-Length;
    /// `trailers`: trailers follow the body, which then did not end the stream).
    /// Filters (ext_proc, wasm) may replace it, or answer instead, since nothing went
    /// out yet. Callers check `hooks().response_body` first.
    pub async fn on_response_body(
        &self,
        mut body: Option<&mut Vec<u8>>,
        length: Option<u64>,
        trailers: bool,
    ) -> ext_proc::response::BodyOutcome {
        let mut out = ext_proc::response::BodyOutcome {
            status: Status::Continue,
            keep_length: true,
        };
        for f in self.active().rev() {
            let o = match &f.kind {
                FilterKind::ExtProc(_) => {
                    let body = body.as_deref_mut();
                    ext_proc::response::on_response_body(self.store, body, length, trailers).await
                }
                FilterKind::Wasm(w) => w.on_response_body(self.store, body.as_deref_mut()).await,
                _ => continue,
            };
            out.keep_length &= o.keep_length;
            if let Status::Respond(_) = o.status {
                return o;
            }
        }
        out
    }

    /// One piece of a response body being held for `on_response_body`, as it comes
    /// from the upstream (`end`: the last call; `trailers`: trailers, not the stream's
    /// end, ended the body). ext_proc's `STREAMED` response body mode sends it to the
    /// processor now; what the processor made of the pieces replaces the body in
    /// `on_response_body`. A filter may answer instead: nothing went out yet.
    pub async fn on_held_response_data(&self, chunk: &[u8], end: bool, trailers: bool) -> Status {
        for f in self.active().rev() {
            if let FilterKind::ExtProc(_) = &f.kind {
                let s = ext_proc::response::on_response_chunk(self.store, chunk, end, trailers);
                if let Status::Respond(r) = s.await {
                    return Status::Respond(r);
                }
            }
        }
        Status::Continue
    }

    /// One piece of the response body (`end`: it ends the body; `head_out`: the head
    /// went out already), on the streams whose hooks have `response_stream`: what goes
    /// to the client in its place is appended to `out`. A filter may answer: before the
    /// head went out the answer replaces the response; after it, the caller resets the
    /// stream (HTTP/2) or closes the connection (HTTP/1).
    pub async fn on_response_piece(
        &self,
        chunk: &[u8],
        end: bool,
        head_out: bool,
        out: &mut Vec<u8>,
    ) -> Status {
        // (Only ext_proc rewrites pieces; without its state on the stream the piece
        // passes as it came.)
        ext_proc::stream::on_response_piece(self.store, chunk, end, head_out, out).await
    }

    /// One piece of the request body (`end`: it ends the body), on the streams whose
    /// hooks have `request_stream`: what goes upstream in its place is appended to
    /// `out`. A filter may answer: the caller drops the upstream request and answers
    /// the client (if its response has not started; else resets or closes).
    pub async fn on_request_piece(&self, chunk: &[u8], end: bool, out: &mut Vec<u8>) -> Status {
        ext_proc::stream::on_request_piece(self.store, chunk, end, out).await
    }

    /// On a `request_stream` stream, trailers ended the request body (its last piece
    /// went without `end`): nothing more of it goes to the filters.
    pub fn end_request_stream(&self) {
        ext_proc::stream::end_request(self.store);
    }

    /// On a `response_stream` stream, the response head is about to be encoded: the
    /// header mutations the filters gathered for it become its plan.
    pub fn seal_response_head(&self) {
        ext_proc::stream::seal_head(self.store);
    }

    /// Lends the chain the worker's upstream clusters (see `upstream`).
    pub fn set_upstream(&mut self, up: &'c dyn crate::upstream::grpc_call::Upstreams) {
        self.upstream = Some(up);
    }

    /// The upstream request's header edits a filter made while the body was held (an
    /// ext_authz check on the body), which the upstream head written before the body
    /// was read does not carry yet: the connection managers apply them once the body is
    /// held.
    pub fn late_request_headers(&self) -> Option<&'c SetHeaders> {
        ext_authz::body::late_request_headers(self.store)
    }

    /// The request body to send upstream in place of the one held, when a filter
    /// rewrote it (ext_proc's body mutations, a wasm filter's edits). Called by
    /// `http/hold.rs` at the end.
    pub fn request_body_override(&self) -> Option<Vec<u8>> {
        ext_proc::run::request_body(self.store).or_else(|| wasm_body::request_body(self.store))
    }

    /// The upstream's response head is about to be encoded (the HTTP/1 exchange
    /// writes it before `on_response_head` runs): filters that edit the response head
    /// per stream (wasm) run here; what they answer comes from `on_response_head`.
    /// Callers check `hooks().response_head` first.
    pub fn before_response_head(&self, status: u16) {
        for f in self.active().rev() {
            if let FilterKind::Wasm(w) = &f.kind {
                w.before_response_head(status, self.store);
            }
        }
    }

    /// A filter changed the response head's edits after the HTTP/1 exchange encoded
    /// it (a wasm filter's paused response headers, resumed): it is encoded again.
    pub fn late_response_head(&self) -> bool {
        self.active().any(|f| match &f.kind {
            FilterKind::Wasm(w) => w.late_response_head(self.store),
            _ => false,
        })
    }

    /// The stream ended: the last hook, for every stream whose request head the chain
    /// saw (proxied, answered locally or failed).
    pub fn on_complete(&self, end: &StreamEnd) {
        if !self.hooks.complete {
            return;
        }
        for f in self.active() {
            match &f.kind {
                FilterKind::HeaderMutation(_)
                | FilterKind::Buffer(_)
                | FilterKind::Rbac(_)
                | FilterKind::LocalRateLimit(_)
                | FilterKind::Fault(_)
                | FilterKind::ExtProc(_)
                | FilterKind::Cors(_)
                | FilterKind::ExtAuthz(_) => {}
                FilterKind::Wasm(w) => w.on_complete(self.store),
            }
        }
        let _ = end;
    }
}

/// A route's override of one filter, by filter name.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterOverride {
    /// The filter does not run for requests on this route.
    Disabled,
    /// The header-mutation filter uses these edits instead of its own on this route.
    HeaderMutation(HeaderMutationFilter),
    /// The buffer filter uses this limit on this route (Envoy's `BufferPerRoute`).
    Buffer(BufferFilter),
    /// The RBAC filter uses these rules instead of its own on this route (Envoy's
    /// `RBACPerRoute`; both absent: every request passes).
    Rbac(Box<crate::rbac::Rules>),
    /// The local rate-limit filter uses this config, with its own buckets, on this
    /// route (Envoy's per-route `LocalRateLimit`).
    LocalRateLimit(LocalRateLimitFilter),
    /// The fault filter uses these settings instead of its own on this route (Envoy's
    /// most specific `HTTPFault`).
    Fault(Box<FaultSettings>),
    /// The CORS filter's policy on this route (Envoy's `CorsPolicy`; without one the
    /// filter does nothing).
    Cors(Box<CorsPolicy>),
    /// The ext_proc filter's processing mode on this route (Envoy's
    /// `ExtProcPerRoute.overrides`).
    ExtProc(ExtProcOverride),
    /// The ext_authz filter's check settings on this route (Envoy's
    /// `ExtAuthzPerRoute.check_settings`).
    ExtAuthz(Box<ext_authz::PerRoute>),
}

/// What the chain decided for one request: the header edits the encoders apply, and
/// the chain itself for the stream's later hooks.
#[derive(Clone, Copy, Default)]
pub struct StreamEdits<'c> {
    pub request: Edits<'c>,
    pub response: Edits<'c>,
    pub chain: Chain<'c>,
    /// The stream's storage for response headers filters set per request, lent by the
    /// connection manager (`None`: filters that need it do nothing).
    pub store: Option<&'c SetHeaders>,
    /// The same for the upstream request's headers (ext_authz's mutations; the
    /// connection manager's `x-forwarded-client-cert` shares it).
    pub request_store: Option<&'c SetHeaders>,
}

/// The route-level inputs of the chain.
#[derive(Clone, Copy)]
pub struct RouteFilters<'c> {
    /// The route's compiled edits (route, virtual host and route table levels).
    pub request_headers: &'c HeaderPlan,
    pub response_headers: &'c HeaderPlan,
    /// `per_filter_config`, by filter name.
    pub overrides: &'c [(String, FilterOverride)],
    /// The route's and its virtual host's `rate_limits`.
    pub rate_limits: &'c RouteRateLimits,
    /// The route forwards to a cluster (Envoy's route entry; not a direct response or
    /// a redirect).
    pub forwards: bool,
    /// The cluster the route entry names for this request (Envoy's `clusterName()`:
    /// the weighted cluster picked for it, or the `cluster_header` value).
    pub cluster: EntryCluster<'c>,
}

impl<'c> RouteFilters<'c> {
    fn override_for(&self, name: &str) -> Option<&'c FilterOverride> {
        self.overrides
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| o)
    }
}

#[cfg(test)]
mod tests;
