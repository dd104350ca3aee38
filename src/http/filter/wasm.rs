//! The proxy-wasm HTTP filter's hooks (Envoy's `envoy.filters.http.wasm`): each
//! stream gets an HTTP context in this worker's VM of the plugin (`wasm::worker_vm`);
//! the request head runs `proxy_on_context_create` and `proxy_on_request_headers`, the
//! response head `proxy_on_response_headers`, and the stream's end `proxy_on_done`,
//! `proxy_on_log` and `proxy_on_delete`. A request-headers or response-headers
//! callback may pause the stream; the hook then waits until a later callback on the
//! context resolves it (`wasm/calls.rs` runs those: HTTP call answers and ticks), at
//! most the listener's `stream_idle_timeout`. The body callbacks are in `wasm_body.rs`.
//!
//! Header edits go into the stream's `SetHeaders` (request: `StreamEdits::request_store`,
//! response: `StreamEdits::store`), which every encoder applies. A trap (or fuel run
//! out) fails the VM and its request gets a 503; the later requests of the VM get a
//! 503 too (Envoy's `failure_policy` `FAIL_CLOSED`, the default), or skip the filter
//! (`FAIL_OPEN`), or get a new instance a second after the failure (`FAIL_RELOAD`),
//! as Envoy 1.40 does.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Val;

use super::ctx::RequestCtx;
use super::set_headers::{SetHeaders, StreamContext};
use super::status::{LocalReply, Status};
use crate::http::flags::ResponseFlag;
use crate::wasm::abi::Props;
use crate::wasm::calls;
use crate::wasm::host::Parked;
use crate::wasm::host_headers::{HeaderMap, HeaderOp};
use crate::wasm::vm::{Call, LocalResponse};
use crate::wasm::{running, worker_vm, FailurePolicy, Plugin};

/// A configured wasm filter: the loaded plugin (shared by the workers; each runs its
/// own instance).
#[derive(Debug, Clone)]
pub struct WasmFilter(pub Arc<Plugin>);

impl PartialEq for WasmFilter {
    fn eq(&self, o: &WasmFilter) -> bool {
        Arc::ptr_eq(&self.0, &o.0)
    }
}

/// The answer to a stream paused longer than the stream idle timeout (Envoy's, for a
/// request the client has sent whole).
const STREAM_TIMEOUT: LocalReply = LocalReply {
    status: 504,
    body: Cow::Borrowed("stream timeout"),
    flag: ResponseFlag::StreamIdleTimeout,
};

/// The reply to a request whose VM failed (Envoy's `failStream`: 503, no body).
pub(super) const FAILED: LocalReply = LocalReply {
    status: 503,
    body: Cow::Borrowed(""),
    flag: ResponseFlag::None,
};

pub(super) fn key(p: &Arc<Plugin>) -> usize {
    Arc::as_ptr(p) as usize
}

impl WasmFilter {
    /// The request head: a new context and `proxy_on_request_headers`. Edits go to
    /// `request_store`; a local response is returned as `Respond` (its headers go to
    /// `store`). `store`: the stream's storage (`None`: the context ends here). A
    /// callback that pauses the stream (`Action::Pause`) holds it here until a later
    /// callback on its context (an HTTP call's answer, a tick) continues it or sends
    /// a local response (Envoy's `StopIteration` and `continueDecoding`).
    pub async fn on_request_head(
        &self,
        ctx: &RequestCtx<'_>,
        store: Option<&SetHeaders>,
        req_store: Option<&SetHeaders>,
    ) -> Status {
        let plugin = &self.0;
        let rc = worker_vm(plugin);
        let (id, serial) = {
            let Some(mut vm) = running(&rc) else {
                return failed(plugin);
            };
            if vm.host().upstreams.is_none() {
                vm.host().upstreams = ctx.upstream.and_then(|u| u.newest());
            }
            let id = vm.new_context();
            let (call, n) = request_call(id, ctx);
            vm.host().call = call;
            let root = Val::I32(crate::wasm::vm::ROOT_CONTEXT);
            let mut result = vm.call("proxy_on_context_create", &[Val::I32(id), root]);
            if result.is_ok() {
                result = vm.call(
                    "proxy_on_request_headers",
                    &[Val::I32(id), Val::I32(n), Val::I32(0)],
                );
            }
            let call = std::mem::take(&mut vm.host().call);
            let action = match result {
                Ok(a) => a.unwrap_or(0),
                Err(e) => {
                    calls::pump(&mut vm, &rc);
                    return failed_request(plugin, &e);
                }
            };
            let local = call.local.is_some();
            let resolved_now = local || action == 0 || call.continued;
            if !remember(plugin, store, (id, ctx.stream_idle_timeout), local) && resolved_now {
                end(&mut vm, id);
            }
            if action == 0 || call.continued || local {
                calls::pump(&mut vm, &rc);
                return resolved(call, store, req_store);
            }
            vm.host().parked.push(Parked { call, waker: None });
            calls::pump(&mut vm, &rc);
            (id, vm.serial)
        };
        // Paused: wait for the plugin's word on this context.
        let guard = ParkGuard {
            rc: &rc,
            serial,
            id,
        };
        let call = match guard.wait_at_most(ctx.stream_idle_timeout).await {
            Ok(call) => call,
            Err(timeout) => return timeout,
        };
        let Some(call) = call else {
            return failed_request(plugin, "the VM failed while the request was paused");
        };
        if store.is_none() {
            if let Ok(mut slot) = rc.try_borrow_mut() {
                if let Some(vm) = slot.as_mut().filter(|v| v.serial == serial && !v.failed) {
                    end(vm, id);
                }
            }
        } else if call.local.is_some() {
            if let Some(s) = store {
                s.wasm_contexts(|c| {
                    if let Some(x) = c.iter_mut().find(|x| x.plugin == key(plugin) && x.id == id) {
                        x.response_done = true;
                    }
                });
            }
        }
        resolved(call, store, req_store)
    }

    /// The upstream's response head with `status`: `proxy_on_response_headers` if it
    /// has not run for this stream (`before_response_head`), and what it answered. A
    /// callback that paused the response (`Action::Pause`, Envoy's
    /// `StopAllIterationAndWatermark` for ABI 0.2) holds it here until a later
    /// callback on its context continues it (its edits made meanwhile apply) or
    /// answers instead, as Envoy's `continueEncoding`.
    pub async fn on_response_head(&self, status: u16, store: Option<&SetHeaders>) -> Status {
        let Some(store) = store else {
            return Status::Continue;
        };
        self.before_response_head(status, Some(store));
        let plugin = key(&self.0);
        let mut paused = None;
        store.wasm_contexts(|c| {
            if let Some(s) = c.iter_mut().find(|s| s.plugin == plugin) {
                if let Some(serial) = s.response_paused.take() {
                    s.head_late = true;
                    paused = Some((s.id, serial));
                }
            }
        });
        if let Some((id, serial)) = paused {
            let rc = worker_vm(&self.0);
            let guard = ParkGuard {
                rc: &rc,
                serial,
                id,
            };
            let limit = idle_limit(store, (plugin, id));
            match guard.wait_at_most(limit).await {
                Err(Status::Respond(r)) => set_reply(store, (plugin, id), Some(r)),
                Err(Status::Continue) => {}
                Ok(Some(call)) => head_resolved(call, store, (plugin, id)),
                Ok(None) => {
                    let why = "the VM failed while the response was paused";
                    if let Status::Respond(r) = failed_request(&self.0, why) {
                        set_reply(store, (plugin, id), Some(r));
                    }
                }
            }
        }
        let mut out = Status::Continue;
        store.wasm_contexts(|c| {
            if let Some(r) = c
                .iter_mut()
                .find(|s| s.plugin == plugin)
                .and_then(|s| s.reply.take())
            {
                out = Status::Respond(r);
            }
        });
        out
    }

    /// `proxy_on_response_headers`, once per stream, where the HTTP/1 exchange
    /// encodes the upstream's head (before `on_response_head`, which then returns its
    /// answer). The filter sees `:status`; the upstream's other headers are not passed
    /// to it. Its edits go to the stream's response store.
    pub fn before_response_head(&self, status: u16, store: Option<&SetHeaders>) {
        let plugin = &self.0;
        let Some(store) = store else {
            return;
        };
        let mut ctx = None;
        store.wasm_contexts(|c| {
            if let Some(s) = c
                .iter_mut()
                .find(|s| s.plugin == key(plugin) && !s.response_done)
            {
                s.response_done = true;
                ctx = Some(s.id);
            }
        });
        let Some(id) = ctx else {
            return;
        };
        let rc = worker_vm(plugin);
        let status_of = |s: Status| match s {
            Status::Respond(r) => Some(r),
            Status::Continue => None,
        };
        let answer = |reply: Option<LocalReply>| {
            store.wasm_contexts(|c| {
                if let Some(s) = c.iter_mut().find(|s| s.plugin == key(plugin)) {
                    s.reply = reply;
                }
            })
        };
        let Some(mut vm) = running(&rc) else {
            return answer(status_of(failed(plugin)));
        };
        vm.host().call = Call {
            id,
            response: Some(HeaderMap {
                pairs: vec![(":status".to_string(), status.to_string())],
                ops: Vec::new(),
            }),
            props: Some(Props {
                response_code: Some(status),
                ..Props::default()
            }),
            ..Call::default()
        };
        let result = vm.call(
            "proxy_on_response_headers",
            &[Val::I32(id), Val::I32(1), Val::I32(0)],
        );
        let call = std::mem::take(&mut vm.host().call);
        let action = match result {
            Ok(a) => a.unwrap_or(0),
            Err(e) => {
                calls::pump(&mut vm, &rc);
                tracing::warn!(plugin = %plugin.name, "wasm filter failed: {e}");
                return answer((!plugin.fail_open_failed_request).then_some(FAILED));
            }
        };
        if action != 0 && !call.continued && call.local.is_none() {
            // Paused: `on_response_head` waits for the plugin's word.
            let serial = vm.serial;
            vm.host().parked.push(Parked { call, waker: None });
            calls::pump(&mut vm, &rc);
            store.wasm_contexts(|c| {
                if let Some(s) = c.iter_mut().find(|s| (s.plugin, s.id) == (key(plugin), id)) {
                    s.response_paused = Some(serial);
                }
            });
            return;
        }
        calls::pump(&mut vm, &rc);
        head_resolved(call, store, (key(plugin), id));
    }
}

/// The response-headers callbacks of context `id` are over: their edits apply, and
/// its local response, if it sent one, is kept for `on_response_head`.
fn head_resolved(call: Call, store: &SetHeaders, who: (usize, i32)) {
    {
        // A local response replaces the upstream's: the edits made to its head are
        // dropped with it, as in Envoy.
        if let (Some(m), None) = (&call.response, &call.local) {
            replay(&m.ops, store);
            let length = m.ops.iter().rev().find_map(|op| match op {
                HeaderOp::Set(n, _) | HeaderOp::Add(n, _) => {
                    (n == "content-length").then_some(true)
                }
                HeaderOp::Remove(n) => (n == "content-length").then_some(false),
            });
            if length.is_some() {
                store.wasm_contexts(|c| {
                    if let Some(s) = c.iter_mut().find(|s| (s.plugin, s.id) == who) {
                        s.response_length = length;
                    }
                });
            }
        }
        if let Some(l) = call.local {
            if let Status::Respond(r) = local(l, Some(store)) {
                set_reply(store, who, Some(r));
            }
        }
    }
}

/// The stream idle timeout context `who` was made with.
pub(super) fn idle_limit(store: &SetHeaders, who: (usize, i32)) -> Duration {
    let mut limit = Duration::ZERO;
    store.wasm_contexts(|c| {
        if let Some(s) = c.iter().find(|s| (s.plugin, s.id) == who) {
            limit = s.idle_timeout;
        }
    });
    limit
}

/// Keeps the local response context `id` answered with, for `on_response_head`.
fn set_reply(store: &SetHeaders, who: (usize, i32), reply: Option<LocalReply>) {
    store.wasm_contexts(|c| {
        if let Some(s) = c.iter_mut().find(|s| (s.plugin, s.id) == who) {
            s.reply = reply;
        }
    })
}

impl WasmFilter {
    /// Whether a paused response-headers callback was resumed (its edits came after
    /// the HTTP/1 exchange encoded the head, which is then encoded again).
    pub fn late_response_head(&self, store: Option<&SetHeaders>) -> bool {
        let mut late = false;
        if let Some(s) = store {
            s.wasm_contexts(|c| late = c.iter().any(|x| x.plugin == key(&self.0) && x.head_late));
        }
        late
    }

    /// The stream ended: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    pub fn on_complete(&self, store: Option<&SetHeaders>) {
        let plugin = &self.0;
        let Some(store) = store else { return };
        let mut ctx = None;
        store.wasm_contexts(|c| {
            if let Some(i) = c.iter().position(|s| s.plugin == key(plugin)) {
                ctx = Some(c.swap_remove(i).id);
            }
        });
        let Some(id) = ctx else { return };
        let rc = worker_vm(plugin);
        // Bound first: as the block's tail `if let`, the borrow would outlive `rc`.
        let vm = running(&rc);
        if let Some(mut vm) = vm {
            end(&mut vm, id);
        }
    }
}

/// The request's context and its maps for `proxy_on_request_headers`, and the
/// number of headers.
fn request_call(id: i32, ctx: &RequestCtx<'_>) -> (Call, i32) {
    let r = ctx.req;
    let mut pairs = Vec::with_capacity(r.headers.len() + 4);
    pairs.push((
        ":authority".to_string(),
        String::from_utf8_lossy(r.authority).into_owned(),
    ));
    pairs.push((":path".to_string(), r.path.to_string()));
    pairs.push((":method".to_string(), r.method.to_string()));
    pairs.push((":scheme".to_string(), r.scheme.to_string()));
    for h in r.headers {
        pairs.push((
            h.name.to_ascii_lowercase(),
            String::from_utf8_lossy(h.value).into_owned(),
        ));
    }
    let n = pairs.len() as i32;
    let call = Call {
        id,
        request: Some(HeaderMap {
            pairs,
            ops: Vec::new(),
        }),
        props: Some(Props {
            path: r.path.to_string(),
            method: r.method.to_string(),
            host: String::from_utf8_lossy(r.authority).into_owned(),
            scheme: r.scheme.to_string(),
            source: Some(ctx.conn.peer),
            destination: Some(ctx.conn.local),
            response_code: None,
        }),
        ..Call::default()
    };
    (call, n)
}

/// Keeps the stream's context in its storage, for the response and the end
/// (`response_done`: no response-headers callback). False: no storage.
fn remember(
    plugin: &Arc<Plugin>,
    store: Option<&SetHeaders>,
    (id, idle_timeout): (i32, Duration),
    response_done: bool,
) -> bool {
    let Some(s) = store else { return false };
    s.wasm_contexts(|c| {
        c.push(StreamContext {
            plugin: key(plugin),
            id,
            response_done,
            idle_timeout,
            ..StreamContext::default()
        })
    });
    true
}

/// The request-headers callbacks are over: the edits apply, and the stream goes on
/// or gets the plugin's local response.
fn resolved(call: Call, store: Option<&SetHeaders>, req_store: Option<&SetHeaders>) -> Status {
    if let (Some(m), Some(s)) = (&call.request, req_store) {
        replay(&m.ops, s);
    }
    match call.local {
        Some(l) => local(l, store),
        None => Status::Continue,
    }
}

/// The request whose callback failed gets the 503 whatever the policy (Envoy's),
/// unless the deprecated `fail_open` is set; the policy decides for the later ones.
pub(super) fn failed_request(plugin: &Plugin, e: &str) -> Status {
    tracing::warn!(plugin = %plugin.name, "wasm filter failed: {e}");
    if plugin.fail_open_failed_request {
        Status::Continue
    } else {
        Status::Respond(FAILED)
    }
}

/// A paused stream's wait: ready with its state once a callback resolved it, `None`
/// if its VM failed or went. Dropped while waiting (the client left), it drops the
/// stream's paused state.
pub(super) struct ParkGuard<'a> {
    pub(super) rc: &'a Rc<RefCell<crate::wasm::WorkerVm>>,
    pub(super) serial: u64,
    /// 0: no longer parked.
    pub(super) id: i32,
}

/// Waits for a callback to resolve the context `id` parked on the VM instance
/// `serial`, for at most the stream's idle timeout (`ParkGuard::wait_at_most`).
pub(super) async fn wait_parked(
    rc: &Rc<RefCell<crate::wasm::WorkerVm>>,
    plugin: &Arc<Plugin>,
    store: &SetHeaders,
    (serial, id): (u64, i32),
) -> Result<Option<Call>, Status> {
    let limit = idle_limit(store, (key(plugin), id));
    ParkGuard { rc, serial, id }.wait_at_most(limit).await
}

impl ParkGuard<'_> {
    /// Waits until a callback resolved the parked context (see the type).
    pub(super) async fn wait(mut self) -> Option<Call> {
        let call = futures_lite::future::poll_fn(|cx| self.poll(cx)).await;
        self.id = 0;
        call
    }

    /// `wait`, for at most `limit` (the listener's `stream_idle_timeout`; zero: no
    /// limit): a paused stream moves no byte, and Envoy's stream idle timer ends it
    /// with `504 stream timeout` (flag `SI`). `Err`: that answer (the paused state is
    /// dropped with the guard).
    pub(super) async fn wait_at_most(self, limit: Duration) -> Result<Option<Call>, Status> {
        if limit.is_zero() {
            return Ok(self.wait().await);
        }
        let timeout = async {
            crate::rt::sleep(limit).await;
            Err(Status::Respond(STREAM_TIMEOUT))
        };
        futures_lite::future::or(async { Ok(self.wait().await) }, timeout).await
    }

    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Call>> {
        use std::task::Poll;
        let Ok(mut slot) = self.rc.try_borrow_mut() else {
            // Never held across an await; try again on the next turn.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        };
        let Some(vm) = slot
            .as_mut()
            .filter(|v| v.serial == self.serial && !v.failed)
        else {
            return Poll::Ready(None);
        };
        let h = vm.host();
        let Some(i) = h.parked.iter().position(|p| p.call.id == self.id) else {
            return Poll::Ready(None);
        };
        match h.parked.get_mut(i) {
            Some(p) if !p.resolved() => {
                p.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(Some(h.parked.swap_remove(i).call)),
        }
    }
}

impl Drop for ParkGuard<'_> {
    fn drop(&mut self) {
        if self.id == 0 {
            return;
        }
        if let Ok(mut slot) = self.rc.try_borrow_mut() {
            if let Some(vm) = slot.as_mut().filter(|v| v.serial == self.serial) {
                vm.host().parked.retain(|p| p.call.id != self.id);
            }
        }
    }
}

/// The end of a context.
pub(super) fn end(vm: &mut crate::wasm::Vm, id: i32) {
    calls::forget(vm, id);
    for f in ["proxy_on_done", "proxy_on_log", "proxy_on_delete"] {
        if let Err(e) = vm.call(f, &[Val::I32(id)]) {
            tracing::warn!("wasm filter failed: {e}");
            return;
        }
    }
}

pub(super) fn failed(plugin: &Plugin) -> Status {
    match plugin.failure_policy {
        FailurePolicy::FailOpen => Status::Continue,
        FailurePolicy::FailClosed | FailurePolicy::FailReload => Status::Respond(FAILED),
    }
}

pub(super) fn local(l: LocalResponse, store: Option<&SetHeaders>) -> Status {
    if let Some(s) = store {
        for (n, v) in &l.headers {
            s.set_owned(n, v);
        }
    }
    Status::Respond(LocalReply {
        status: l.status,
        body: Cow::Owned(l.body),
        flag: ResponseFlag::None,
    })
}

fn replay(ops: &[HeaderOp], s: &SetHeaders) {
    for op in ops {
        match op {
            HeaderOp::Set(n, v) => s.set_owned(n, v),
            HeaderOp::Add(n, v) => s.add_owned(n, v),
            HeaderOp::Remove(n) => s.remove(n.to_string()),
        }
    }
}
