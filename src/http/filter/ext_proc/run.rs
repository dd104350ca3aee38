//! The ext_proc filter's hooks and its per-stream state.
//!
//! On the request head the filter opens the stream and, in `SEND` mode, sends the
//! request headers and waits (up to `message_timeout`) for the answer; the header
//! mutations become a plan the encoders apply to the upstream request
//! (`Edits::dynamic`). A request-body mode gives the stream the request-body hook
//! (`http/hold.rs` holds the body): `BUFFERED` sends the whole body at its end,
//! `STREAMED` each chunk as it comes; the body that goes upstream is what the processor
//! made of it (`Chain::request_body_override`). In `SEND` mode for the response
//! headers, the response-head hook sends them and their mutations become the response's
//! plan, read when the head is encoded. A response-body mode holds the response for
//! the response-body hook (`response.rs`), which also gives the response its plan. An
//! immediate response at any point answers the client (after the response head: the
//! upstream's response is dropped).
//!
//! The state lives in the stream's store (`SetHeaders::ext`, one box per request with
//! the filter), so it ends with the request, and the gRPC stream with it.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap as PbHeaderMap, HeaderValue};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;
use envoy_types::pb::envoy::service::ext_proc::v3::body_mutation::Mutation;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Req;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Resp;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    CommonResponse, HttpBody, HttpHeaders, ImmediateResponse, ProcessingRequest, ProcessingResponse,
};

use super::{BodyMode, ExtProcFilter, HeaderMode, Mode, MAX_BUFFERED_BODY};
use crate::http::filter::ctx::{HeadFields, RequestCtx};
use crate::http::filter::headers::{Edits, HeaderOps, HeaderPlan};
use crate::http::filter::set_headers::SetHeaders;
use crate::http::filter::status::{DataStatus, LocalReply, Status};
use crate::http::flags::ResponseFlag;
use crate::observe::stats::Counter;
use crate::upstream::grpc_stream::GrpcStream;

const PATH: &str = "/envoy.service.ext_proc.v3.ExternalProcessor/Process";

/// One request's processing.
pub struct State {
    pub request_plan: OnceCell<HeaderPlan>,
    pub response_plan: OnceCell<HeaderPlan>,
    /// A held response's header mutations (from its headers' answer), made its plan
    /// once the body's answer added its own (`response.rs`).
    pub(super) response_ops: RefCell<HeaderOps>,
    /// The live stream; `None` once processing is over (done, failed open, closed).
    call: RefCell<Option<GrpcStream>>,
    pub(super) mode: Cell<Mode>,
    /// The request headers ended the request (no body).
    request_ended: bool,
    /// The request's body ended (its end-of-stream call, or its trailers): no request
    /// trailers can come any more.
    request_done: Cell<bool>,
    /// The request body as it goes upstream, once the filter processed it.
    body: RefCell<Vec<u8>>,
    body_owned: Cell<bool>,
    /// `CONTINUE_AND_REPLACE` on the request headers gave the body: the client's is
    /// read and dropped.
    body_replaced: Cell<bool>,
    /// Streamed mode: the last chunk, held back until the next call says whether it
    /// ends the body (Envoy's codec hands the last data over with the end of stream).
    pending: RefCell<Option<Vec<u8>>>,
    /// A `STREAMED` response body as the processor made it, piece by piece
    /// (`response.rs`), and the bytes gathered for its next message.
    pub(super) response_out: RefCell<Vec<u8>>,
    pub(super) response_pending: RefCell<Vec<u8>>,
    /// A `STREAMED` response body message was answered.
    pub(super) response_piece_answered: Cell<bool>,
    failure_mode_allow: bool,
    message_timeout: Duration,
    /// The filter's counters, in `super::COUNTER_NAMES` order.
    counters: Vec<Rc<Counter>>,
    /// The request's and the response's sides take turns on the stream.
    turn: super::turn::Turn,
}

#[derive(Clone, Copy)]
pub(super) enum C {
    StreamsStarted = 0,
    MsgsSent = 1,
    MsgsReceived = 2,
    Spurious = 3,
    Closed = 4,
    Failed = 5,
    FailureModeAllowed = 6,
    MessageTimeouts = 7,
    Rejected = 8,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
}

/// Why a stream failed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// A reset, a refused connection, or a non-OK gRPC status.
    Grpc,
    Timeout,
    /// An answer of the wrong kind.
    Spurious,
}

pub(super) enum Answer {
    Common(CommonResponse, Option<ProcessingMode>),
    Immediate(ImmediateResponse),
    /// The processor ended the stream cleanly: processing is over, the request goes on.
    Closed,
    Failed(Failure),
}

impl State {
    pub(super) fn inc(&self, c: C) {
        if let Some(c) = self.counters.get(c as usize) {
            c.inc();
        }
    }

    fn add(&self, c: C, n: u64) {
        if let Some(c) = self.counters.get(c as usize) {
            c.add(n);
        }
    }

    pub(super) fn live(&self) -> bool {
        self.turn.busy() || self.call.try_borrow().is_ok_and(|c| c.is_some())
    }

    /// Ends the stream normally (half-close; the reset that follows on drop ends it).
    pub(super) fn close(&self) {
        if let Some(mut s) = self.call.try_borrow_mut().ok().and_then(|mut c| c.take()) {
            s.close_send();
            self.inc(C::Closed);
        }
    }

    /// Sends one message and waits for the answer to it.
    pub(super) async fn exchange(&self, req: Req, phase: Phase) -> Answer {
        let _turn = self.turn.take().await;
        let Some(mut stream) = self.call.try_borrow_mut().ok().and_then(|mut c| c.take()) else {
            return Answer::Closed;
        };
        let msg = ProcessingRequest {
            request: Some(req),
            ..Default::default()
        };
        if stream.send(&msg).is_err() {
            return Answer::Failed(Failure::Grpc);
        }
        self.inc(C::MsgsSent);
        let recv = async { Some(stream.recv::<ProcessingResponse>().await) };
        let expire = async {
            crate::rt::sleep(self.message_timeout).await;
            None
        };
        let got = futures_lite::future::or(recv, expire).await;
        let answer = match got {
            None => {
                // Envoy closes the stream on a message timeout.
                stream.close_send();
                self.inc(C::Closed);
                return Answer::Failed(Failure::Timeout);
            }
            Some(Err(Ok(ended))) if ended.grpc_status == 0 => {
                self.inc(C::Closed);
                return Answer::Closed;
            }
            Some(Err(e)) => {
                tracing::debug!(error = ?e, "ext_proc stream failed");
                return Answer::Failed(Failure::Grpc);
            }
            Some(Ok(m)) => m,
        };
        self.inc(C::MsgsReceived);
        let r = match (answer.response, phase) {
            (Some(Resp::ImmediateResponse(i)), _) => {
                stream.close_send();
                self.inc(C::Closed);
                return Answer::Immediate(i);
            }
            (Some(Resp::RequestHeaders(h)), Phase::RequestHeaders)
            | (Some(Resp::ResponseHeaders(h)), Phase::ResponseHeaders) => h.response,
            (Some(Resp::RequestBody(b)), Phase::RequestBody)
            | (Some(Resp::ResponseBody(b)), Phase::ResponseBody) => b.response,
            // A trailers answer holds only a header mutation.
            (Some(Resp::RequestTrailers(t)), Phase::RequestTrailers)
            | (Some(Resp::ResponseTrailers(t)), Phase::ResponseTrailers) => Some(CommonResponse {
                header_mutation: t.header_mutation,
                ..Default::default()
            }),
            _ => return Answer::Failed(Failure::Spurious),
        };
        if let Ok(mut c) = self.call.try_borrow_mut() {
            *c = Some(stream);
        }
        Answer::Common(r.unwrap_or_default(), answer.mode_override)
    }

    /// A failed stream: the request goes on (`failure_mode_allow`) or is answered
    /// `500` (`504` for a message timeout), as Envoy does.
    pub(super) fn fail(&self, why: Failure) -> Status {
        if let Ok(mut c) = self.call.try_borrow_mut() {
            *c = None;
        }
        match why {
            Failure::Grpc => self.inc(C::Failed),
            Failure::Timeout => self.inc(C::MessageTimeouts),
            Failure::Spurious => self.inc(C::Spurious),
        }
        if self.failure_mode_allow && why != Failure::Spurious {
            // Envoy closes the failed stream when it lets the request go on, and
            // counts that close (it does not when it answers 500).
            if why == Failure::Grpc {
                self.inc(C::Closed);
            }
            self.inc(C::FailureModeAllowed);
            return Status::Continue;
        }
        Status::Respond(LocalReply {
            status: if why == Failure::Timeout { 504 } else { 500 },
            body: std::borrow::Cow::Borrowed(""),
            flag: ResponseFlag::None,
        })
    }

    /// An immediate response as the local reply, its headers in the response's plan.
    pub(super) fn immediate(&self, r: ImmediateResponse) -> Status {
        let status = r
            .status
            .map(|s| s.code)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (200..=599).contains(c))
            .unwrap_or(200);
        let mut rejected = 0;
        let mut ops = r
            .headers
            .as_ref()
            .map(|h| super::mutate::ops(h, true, &mut rejected))
            .unwrap_or_default();
        self.add(C::Rejected, rejected);
        if let Some(g) = r.grpc_status {
            ops.add.push(crate::http::filter::headers::HeaderAdd {
                name: "grpc-status".into(),
                value: g.status.to_string(),
                action: crate::http::filter::headers::AppendAction::OverwriteIfExistsOrAdd,
            });
        }
        if !ops.is_empty() {
            let _ = self.response_plan.set(HeaderPlan::compile([&ops]));
        }
        Status::Respond(LocalReply {
            status,
            body: std::borrow::Cow::Owned(String::from_utf8_lossy(&r.body).into_owned()),
            flag: ResponseFlag::None,
        })
    }

    /// The header mutation of an answer as a plan for `cell`.
    fn mutate(&self, r: &CommonResponse, cell: &OnceCell<HeaderPlan>) {
        let ops = self.ops(r);
        if !ops.is_empty() {
            let _ = cell.set(HeaderPlan::compile([&ops]));
        }
    }

    /// The header operations of an answer that the mutation rules allow.
    pub(super) fn ops(&self, r: &CommonResponse) -> HeaderOps {
        let Some(m) = &r.header_mutation else {
            return HeaderOps::default();
        };
        let mut rejected = 0;
        let ops = super::mutate::ops(m, false, &mut rejected);
        self.add(C::Rejected, rejected);
        ops
    }

    /// Whether anything of the request body is still to be processed.
    pub(super) fn wants_body(&self) -> bool {
        !self.request_ended
            && !self.request_done.get()
            && (self.body_replaced.get()
                || (self.live() && self.mode.get().request_body != BodyMode::None))
    }

    /// Whether the request's trailers may still come and are to be sent.
    fn wants_trailers(&self) -> bool {
        !self.request_ended
            && !self.request_done.get()
            && self.mode.get().request_trailers == HeaderMode::Send
    }

    /// The request's body ended.
    pub(super) fn request_done(&self) {
        self.request_done.set(true);
    }

    /// Closes the stream when no message is left to send.
    pub(super) fn finish_if_done(&self) {
        let m = self.mode.get();
        if self.live()
            && !self.wants_body()
            && !self.wants_trailers()
            && m.response_headers == HeaderMode::Skip
            && m.response_body == BodyMode::None
            && m.response_trailers == HeaderMode::Skip
        {
            self.close();
        }
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // A request that ended before processing did (a client gone, a local reply):
        // the stream is closed with it, as Envoy's filter closes it on destroy.
        self.close();
    }
}

/// A processor's `mode_override`, where the filter allows it: the header modes, and
/// the body modes where they are ones that are built (others are ignored).
fn overridden(mut m: Mode, o: &ProcessingMode) -> Mode {
    // DEFAULT is SEND for headers (Envoy replaces the whole mode).
    m.response_headers = match o.response_header_mode {
        2 => HeaderMode::Skip,
        _ => HeaderMode::Send,
    };
    // DEFAULT is SKIP for trailers.
    m.request_trailers = match o.request_trailer_mode {
        1 => HeaderMode::Send,
        _ => HeaderMode::Skip,
    };
    m.response_trailers = match o.response_trailer_mode {
        1 => HeaderMode::Send,
        _ => HeaderMode::Skip,
    };
    m.request_body = match o.request_body_mode {
        0 => BodyMode::None,
        1 => BodyMode::Streamed,
        2 => BodyMode::Buffered,
        _ => m.request_body,
    };
    m.response_body = match o.response_body_mode {
        0 => BodyMode::None,
        1 => BodyMode::Streamed,
        2 => BodyMode::Buffered,
        _ => m.response_body,
    };
    m
}

pub(super) fn header_value(key: &[u8], value: &[u8]) -> HeaderValue {
    HeaderValue {
        key: String::from_utf8_lossy(key).to_ascii_lowercase(),
        raw_value: value.to_vec(),
        ..Default::default()
    }
}

/// Whether the request head ended the request: no body by its framing (HTTP/1), or a
/// body-less method without a length (an HTTP/2 request's END_STREAM is not seen here).
fn request_ended(ctx: &RequestCtx<'_>) -> bool {
    let mut length = None;
    for h in ctx.req.headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return false;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
        }
    }
    match length {
        Some(n) => n == 0,
        None => matches!(
            ctx.req.method,
            "GET" | "HEAD" | "DELETE" | "OPTIONS" | "TRACE"
        ),
    }
}

/// What the request-head hook decided: its status and the later hooks the stream needs.
pub struct Head {
    pub status: Status,
    /// The request body is held for the processor (`http/hold.rs`).
    pub request_body: bool,
    /// The request body goes to the processor piece by piece as it comes, and each
    /// piece as the processor made it on upstream (`STREAMED`: `stream.rs`).
    pub request_stream: bool,
    pub response_head: bool,
    /// The response is held whole for the response-body hook (`BUFFERED`).
    pub response_body: bool,
    /// The response body goes to the processor piece by piece as it comes, and each
    /// piece as the processor made it on to the client (`STREAMED`: `stream.rs`).
    pub response_stream: bool,
    /// An HTTP/2 request's trailers go to the processor (its body is held for them).
    pub request_trailers: bool,
    /// An HTTP/2 upstream response's trailers go to the processor.
    pub response_trailers: bool,
}

impl Head {
    fn only(status: Status) -> Head {
        Head {
            status,
            request_body: false,
            request_stream: false,
            response_head: false,
            response_body: false,
            response_stream: false,
            request_trailers: false,
            response_trailers: false,
        }
    }
}

/// The request-head hook.
pub async fn on_request_head<'c>(
    f: &ExtProcFilter,
    mode: Mode,
    ctx: &RequestCtx<'_>,
    store: Option<&'c SetHeaders>,
    request: &mut Edits<'c>,
    response: &mut Edits<'c>,
) -> Head {
    if mode.request_headers == HeaderMode::Skip
        && mode.response_headers == HeaderMode::Skip
        && mode.request_body == BodyMode::None
        && mode.response_body == BodyMode::None
        && mode.request_trailers == HeaderMode::Skip
        && mode.response_trailers == HeaderMode::Skip
    {
        return Head::only(Status::Continue);
    }
    let Some(store) = store else {
        return Head::only(Status::Continue);
    };
    let counters: Vec<Rc<Counter>> = {
        let c = &f.counters;
        [
            c.streams_started,
            c.stream_msgs_sent,
            c.stream_msgs_received,
            c.spurious_msgs_received,
            c.streams_closed,
            c.streams_failed,
            c.failure_mode_allowed,
            c.message_timeouts,
            c.rejected_header_mutations,
        ]
        .iter()
        .filter_map(|i| ctx.counters.get(*i).cloned())
        .collect()
    };
    let state = State {
        request_plan: OnceCell::new(),
        response_plan: OnceCell::new(),
        response_ops: RefCell::new(HeaderOps::default()),
        call: RefCell::new(None),
        mode: Cell::new(mode),
        request_ended: request_ended(ctx),
        request_done: Cell::new(false),
        body: RefCell::new(Vec::new()),
        body_owned: Cell::new(false),
        body_replaced: Cell::new(false),
        pending: RefCell::new(None),
        response_out: RefCell::new(Vec::new()),
        response_pending: RefCell::new(Vec::new()),
        response_piece_answered: Cell::new(false),
        failure_mode_allow: f.failure_mode_allow,
        message_timeout: f.message_timeout,
        counters,
        turn: Default::default(),
    };
    if store.ext.set(Box::new(state)).is_err() {
        // One ext_proc filter per chain (the config refuses more).
        return Head::only(Status::Continue);
    }
    let Some(state) = store.ext.get().and_then(|b| b.downcast_ref::<State>()) else {
        return Head::only(Status::Continue);
    };
    request.dynamic = Some(&state.request_plan);
    response.dynamic = Some(&state.response_plan);
    state.inc(C::StreamsStarted);
    let send = match ctx.grpc {
        Some(g) => g.ready(f.cluster).await,
        None => None,
    };
    let opened = send.and_then(|mut s| {
        GrpcStream::open(&mut s, &f.authority, PATH, f.grpc_timeout)
            .map_err(|e| tracing::debug!(error = %e, "ext_proc stream not opened"))
            .ok()
    });
    match opened {
        Some(s) => {
            if let Ok(mut c) = state.call.try_borrow_mut() {
                *c = Some(s);
            }
        }
        None => {
            // Envoy's gRPC client takes the first message before the connection
            // fails, and counts it sent.
            if mode.request_headers == HeaderMode::Send {
                state.inc(C::MsgsSent);
            }
            return Head::only(state.fail(Failure::Grpc));
        }
    }
    if mode.request_headers == HeaderMode::Send {
        let mut headers = vec![
            header_value(b":authority", ctx.req.authority),
            header_value(b":method", ctx.req.method.as_bytes()),
            header_value(b":path", ctx.req.path.as_bytes()),
            header_value(b":scheme", ctx.req.scheme.as_bytes()),
        ];
        for h in ctx.req.headers {
            if !h.name.eq_ignore_ascii_case("host") {
                headers.push(header_value(h.name.as_bytes(), h.value));
            }
        }
        let msg = Req::RequestHeaders(HttpHeaders {
            headers: Some(PbHeaderMap { headers }),
            end_of_stream: state.request_ended,
            ..Default::default()
        });
        match state.exchange(msg, Phase::RequestHeaders).await {
            Answer::Common(r, o) => {
                state.mutate(&r, &state.request_plan);
                if let (Some(o), true) = (o, f.allow_mode_override) {
                    state.mode.set(overridden(state.mode.get(), &o));
                }
                // CONTINUE_AND_REPLACE: its body replaces the request's, unprocessed.
                if r.status == 1 {
                    if let Some(m) = r.body_mutation.and_then(|b| b.mutation) {
                        let body = match m {
                            Mutation::Body(b) => b,
                            _ => Vec::new(),
                        };
                        *state.body.borrow_mut() = body;
                        state.body_owned.set(true);
                        state.body_replaced.set(true);
                    }
                }
            }
            Answer::Immediate(i) => return Head::only(state.immediate(i)),
            Answer::Closed => {}
            Answer::Failed(why) => return Head::only(state.fail(why)),
        }
    }
    state.finish_if_done();
    let m = state.mode.get();
    // A `STREAMED` body streams unless the trailers are to be sent too (an HTTP/2
    // request's trailers end a held body: `hold.rs`).
    let request_stream = state.wants_body()
        && !state.body_replaced.get()
        && m.request_body == BodyMode::Streamed
        && !state.wants_trailers();
    Head {
        status: Status::Continue,
        request_body: state.wants_body() && !request_stream,
        request_stream,
        response_head: state.live() && m.response_headers == HeaderMode::Send,
        response_body: state.live() && m.response_body == BodyMode::Buffered,
        response_stream: state.live() && m.response_body == BodyMode::Streamed,
        request_trailers: state.live() && state.wants_trailers(),
        response_trailers: state.live() && m.response_trailers == HeaderMode::Send,
    }
}

/// The stream's state, if the filter runs on it.
pub fn state(store: Option<&SetHeaders>) -> Option<&State> {
    store?.ext.get()?.downcast_ref::<State>()
}

/// One chunk of the request body (`end`: the last call).
pub async fn on_request_data(store: Option<&SetHeaders>, chunk: &[u8], end: bool) -> DataStatus {
    request_data(store, chunk, end, false).await
}

/// A request body chunk; `trailers`: the request's trailers end the body (and are
/// still to be sent: `trailers.rs` ends the request then).
async fn request_data(
    store: Option<&SetHeaders>,
    chunk: &[u8],
    end: bool,
    trailers: bool,
) -> DataStatus {
    let Some(s) = state(store) else {
        return DataStatus::Continue;
    };
    if end && !trailers {
        s.request_done();
    }
    if s.body_replaced.get() {
        return DataStatus::StopAndBuffer;
    }
    if !s.body_owned.get() && (s.mode.get().request_body == BodyMode::None || !s.live()) {
        // None of the body is processed (the stream is held for the trailers, or by
        // another filter): it goes upstream as the hold keeps it, without a copy here.
        if end {
            s.finish_if_done();
        }
        return DataStatus::Continue;
    }
    s.body_owned.set(true);
    if !s.live() {
        // The stream ended while the body was processed: the rest goes as it came.
        s.body.borrow_mut().extend_from_slice(chunk);
        return DataStatus::StopAndBuffer;
    }
    let status = match s.mode.get().request_body {
        BodyMode::None => {
            s.body.borrow_mut().extend_from_slice(chunk);
            if end {
                s.finish_if_done();
            }
            return DataStatus::StopAndBuffer;
        }
        BodyMode::Buffered => {
            let whole = {
                let mut b = s.body.borrow_mut();
                if b.len() + chunk.len() > MAX_BUFFERED_BODY {
                    return DataStatus::Respond(crate::http::filter::buffer::TOO_LARGE);
                }
                b.extend_from_slice(chunk);
                if !end {
                    return DataStatus::StopAndBuffer;
                }
                std::mem::take(&mut *b)
            };
            send_body(s, whole, true).await
        }
        BodyMode::Streamed => {
            // Held with the body (`http/hold.rs`: the trailers are sent too, or another
            // filter holds the body), as processed so far: bounded as a buffered one.
            // Otherwise a streamed body never comes here (`stream::on_request_piece`).
            let held = s.body.borrow().len() + s.pending.borrow().as_ref().map_or(0, Vec::len);
            if held + chunk.len() > MAX_BUFFERED_BODY {
                return DataStatus::Respond(crate::http::filter::buffer::TOO_LARGE);
            }
            let pending = s.pending.try_borrow_mut().ok().and_then(|mut p| p.take());
            if !end {
                let mut st = DataStatus::StopAndBuffer;
                if let Some(p) = pending {
                    st = send_body(s, p, false).await;
                }
                if let Ok(mut p) = s.pending.try_borrow_mut() {
                    *p = Some(chunk.to_vec());
                }
                return st;
            }
            match pending {
                // The last data and the end together, as Envoy sends them.
                Some(p) if chunk.is_empty() => send_body(s, p, true).await,
                Some(p) => match send_body(s, p, false).await {
                    DataStatus::Respond(r) => DataStatus::Respond(r),
                    _ => send_body(s, chunk.to_vec(), true).await,
                },
                None => send_body(s, chunk.to_vec(), true).await,
            }
        }
    };
    if end {
        s.finish_if_done();
    }
    status
}

/// Sends one body message (or, once the stream is gone, keeps the bytes as they are)
/// and appends what the processor made of it to the body that goes upstream.
async fn send_body(s: &State, body: Vec<u8>, eos: bool) -> DataStatus {
    if !s.live() {
        s.body.borrow_mut().extend_from_slice(&body);
        return DataStatus::StopAndBuffer;
    }
    let original = body.clone();
    let msg = Req::RequestBody(HttpBody {
        body,
        end_of_stream: eos,
        ..Default::default()
    });
    let out = match s.exchange(msg, Phase::RequestBody).await {
        Answer::Common(r, _) => match r.body_mutation.and_then(|b| b.mutation) {
            Some(Mutation::Body(b)) => b,
            Some(Mutation::ClearBody(true)) => Vec::new(),
            _ => original,
        },
        Answer::Immediate(i) => {
            return match s.immediate(i) {
                Status::Respond(r) => DataStatus::Respond(r),
                Status::Continue => DataStatus::Continue,
            }
        }
        Answer::Closed => original,
        Answer::Failed(why) => match s.fail(why) {
            Status::Respond(r) => return DataStatus::Respond(r),
            Status::Continue => original,
        },
    };
    s.body.borrow_mut().extend_from_slice(&out);
    DataStatus::StopAndBuffer
}

/// The request's trailers ended its body: a buffered body goes to the processor now
/// (before the trailers, `trailers.rs`).
pub async fn on_request_trailers(store: Option<&SetHeaders>) -> Status {
    match request_data(store, &[], true, true).await {
        DataStatus::Respond(r) => Status::Respond(r),
        _ => Status::Continue,
    }
}

/// The body to send upstream instead of the one held, if the filter made one.
pub fn request_body(store: Option<&SetHeaders>) -> Option<Vec<u8>> {
    let s = state(store)?;
    s.body_owned
        .get()
        .then(|| std::mem::take(&mut *s.body.borrow_mut()))
}

/// The response-head hook.
pub async fn on_response_head(
    store: Option<&SetHeaders>,
    status: u16,
    fields: &dyn HeadFields,
) -> Status {
    let Some(s) = state(store) else {
        return Status::Continue;
    };
    if !s.live() || s.mode.get().response_headers != HeaderMode::Send {
        return Status::Continue;
    }
    let mut headers = vec![header_value(b":status", status.to_string().as_bytes())];
    fields.each(&mut |n, v| headers.push(header_value(n, v)));
    let msg = Req::ResponseHeaders(HttpHeaders {
        headers: Some(PbHeaderMap { headers }),
        end_of_stream: false,
        ..Default::default()
    });
    let held = s.mode.get().response_body != BodyMode::None;
    let trailers = s.mode.get().response_trailers == HeaderMode::Send;
    let out = match s.exchange(msg, Phase::ResponseHeaders).await {
        // A held response gets its plan once the body's answer is in.
        Answer::Common(r, _) if held => {
            *s.response_ops.borrow_mut() = s.ops(&r);
            Status::Continue
        }
        Answer::Common(r, _) => {
            s.mutate(&r, &s.response_plan);
            Status::Continue
        }
        Answer::Immediate(i) => s.immediate(i),
        Answer::Closed => Status::Continue,
        Answer::Failed(why) => s.fail(why),
    };
    // (Not while a request body still streams to the processor: its end closes it.)
    if !held && !trailers && !s.wants_body() {
        s.close();
    }
    out
}
