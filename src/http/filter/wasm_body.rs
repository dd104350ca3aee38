//! The proxy-wasm filter's body callbacks (`proxy_on_request_body`,
//! `proxy_on_response_body`), for modules that export them (`Plugin::request_body`,
//! `Plugin::response_body`): the chain's body hooks call them, the stream's context
//! being the one its request head made (`filter/wasm.rs`).
//!
//! Request body (`Chain::on_request_data`; the stream holds its body, `http/hold.rs`):
//! each chunk is a callback, given the size of what the context holds plus the chunk.
//! `Continue` passes what it saw on; `Pause` (Envoy's `StopIterationAndBuffer`) holds
//! it, and the next callback sees the held bytes and its chunk as one buffer, as
//! Envoy's host hands a buffering filter the whole decoding buffer. Edits
//! (`proxy_set_buffer_bytes`) apply to that buffer; when any was made the upstream gets
//! the body the callbacks left (`request_body`, read at the end of the hold) instead
//! of the bytes as they came. A pause on the last chunk waits, as a paused request
//! head does, for a later callback (an HTTP call's answer, a tick) to continue the
//! stream or answer it.
//!
//! Response body: the response is held whole, on every path (`Hooks::response_body`:
//! `http/conn/held_response.rs`, `http/h2/held.rs`, `http/h1_to_h2_held.rs`), and one
//! callback sees the whole body with `end_of_stream`, and may edit it, pause (then
//! wait as above) or answer instead (the head has not gone out).
//!
//! A trap in either fails the request as on the head: a `503` (or the request goes
//! on with the deprecated `fail_open`), the VM failed for the failure policy.

use std::sync::Arc;

use wasmtime::Val;

use super::ext_proc::response::BodyOutcome;
use super::set_headers::{SetHeaders, WasmBody};
use super::status::{DataStatus, Status};
use super::wasm::{failed, failed_request, key, local, wait_parked, WasmFilter};
use crate::wasm::abi::{HTTP_REQUEST_BODY, HTTP_RESPONSE_BODY};
use crate::wasm::calls;
use crate::wasm::host::{BodyBuf, Parked};
use crate::wasm::vm::Call;
use crate::wasm::{running, worker_vm, Plugin};

/// What a body callback decided.
enum Outcome {
    /// Go on with this body (edited: it was changed).
    Continue(BodyBuf),
    /// Hold it for the next callback.
    Pause(BodyBuf),
    Respond(Status),
}

/// How a body callback is made.
struct Callback<'a> {
    plugin: &'a Arc<Plugin>,
    store: &'a SetHeaders,
    name: &'static str,
    id: i32,
    /// The last chunk (`end_of_stream`).
    end: bool,
    /// A pause on the last chunk waits until a later callback resolves it (false: the
    /// chunk is on its way anyway).
    wait: bool,
}

/// Runs the callback with `body`.
async fn run(cb: Callback<'_>, body: BodyBuf) -> Outcome {
    let Callback {
        plugin,
        store,
        name: callback,
        id,
        end,
        wait,
    } = cb;
    let rc = worker_vm(plugin);
    let serial = {
        let Some(mut vm) = running(&rc) else {
            return Outcome::Respond(failed(plugin));
        };
        let size = body.bytes.len() as i32;
        vm.host().call = Call {
            id,
            body: Some(body),
            ..Call::default()
        };
        let args = [Val::I32(id), Val::I32(size), Val::I32(i32::from(end))];
        let result = vm.call(callback, &args);
        let mut call = std::mem::take(&mut vm.host().call);
        let action = match result {
            Ok(a) => a.unwrap_or(0),
            Err(e) => {
                calls::pump(&mut vm, &rc);
                return Outcome::Respond(failed_request(plugin, &e));
            }
        };
        if call.local.is_some() {
            calls::pump(&mut vm, &rc);
            return Outcome::Respond(resolved(plugin, call, store));
        }
        let body = call.body.take().unwrap_or_default();
        if action == 0 || call.continued {
            calls::pump(&mut vm, &rc);
            return Outcome::Continue(body);
        }
        if !(end && wait) {
            calls::pump(&mut vm, &rc);
            return Outcome::Pause(body);
        }
        call.body = Some(body);
        vm.host().parked.push(Parked { call, waker: None });
        calls::pump(&mut vm, &rc);
        vm.serial
    };
    let call = match wait_parked(&rc, plugin, store, (serial, id)).await {
        Ok(call) => call,
        Err(timeout) => return Outcome::Respond(timeout),
    };
    match call {
        None => Outcome::Respond(failed_request(
            plugin,
            "the VM failed while the body was paused",
        )),
        Some(call) if call.local.is_some() => Outcome::Respond(resolved(plugin, call, store)),
        Some(mut call) => Outcome::Continue(call.body.take().unwrap_or_default()),
    }
}

/// A callback's local response (its headers go to the stream's response edits, and
/// the response-headers callback does not run for it).
pub(super) fn resolved(plugin: &Arc<Plugin>, call: Call, store: &SetHeaders) -> Status {
    let Some(l) = call.local else {
        return Status::Continue;
    };
    store.wasm_contexts(|c| {
        if let Some(x) = c
            .iter_mut()
            .find(|x| x.plugin == key(plugin) && x.id == call.id)
        {
            x.response_done = true;
        }
    });
    local(l, Some(store))
}

/// The stream's context of `plugin` and what `f` takes from it.
pub(super) fn context<T>(
    plugin: &Arc<Plugin>,
    store: &SetHeaders,
    f: impl FnOnce(&mut super::set_headers::StreamContext) -> T,
) -> Option<T> {
    let mut out = None;
    store.wasm_contexts(|c| {
        if let Some(s) = c.iter_mut().find(|s| s.plugin == key(plugin)) {
            out = Some(f(s));
        }
    });
    out
}

impl WasmFilter {
    /// One chunk of the request body (see the module doc).
    pub async fn on_request_data(
        &self,
        store: Option<&SetHeaders>,
        chunk: &[u8],
        end_stream: bool,
    ) -> DataStatus {
        let plugin = &self.0;
        let (Some(store), true) = (store, plugin.request_body) else {
            return DataStatus::Continue;
        };
        let Some((id, mut state)) = context(plugin, store, |c| {
            (c.id, std::mem::take(&mut c.request_body))
        }) else {
            return DataStatus::Continue;
        };
        state.held.extend_from_slice(chunk);
        let body = BodyBuf {
            kind: HTTP_REQUEST_BODY,
            bytes: std::mem::take(&mut state.held),
            writable: true,
            edited: false,
        };
        let cb = Callback {
            plugin,
            store,
            name: "proxy_on_request_body",
            id,
            end: end_stream,
            wait: true,
        };
        let out = run(cb, body).await;
        let status = match out {
            Outcome::Continue(b) => {
                state.edited |= b.edited;
                state.out.extend_from_slice(&b.bytes);
                DataStatus::Continue
            }
            Outcome::Pause(b) => {
                state.edited |= b.edited;
                state.held = b.bytes;
                DataStatus::StopAndBuffer
            }
            // The deprecated `fail_open`: the body goes on as it came.
            Outcome::Respond(Status::Continue) => {
                state = WasmBody::default();
                DataStatus::Continue
            }
            Outcome::Respond(Status::Respond(r)) => return DataStatus::Respond(r),
        };
        let _ = context(plugin, store, |c| c.request_body = state);
        status
    }

    /// The whole response body, held before its head goes out (`None`: the response
    /// has none, and no callback runs, as in Envoy). The body is edited in place.
    pub async fn on_response_body(
        &self,
        store: Option<&SetHeaders>,
        body: Option<&mut Vec<u8>>,
    ) -> BodyOutcome {
        let plugin = &self.0;
        let go_on = BodyOutcome {
            status: Status::Continue,
            keep_length: true,
        };
        let (Some(store), Some(body), true) = (store, body, plugin.response_body) else {
            return go_on;
        };
        let Some((id, length)) = context(plugin, store, |c| {
            let first = !c.response_body_done;
            c.response_body_done = true;
            first.then_some((c.id, c.response_length))
        })
        .flatten() else {
            return go_on;
        };
        let buf = BodyBuf {
            kind: HTTP_RESPONSE_BODY,
            bytes: std::mem::take(body),
            writable: true,
            edited: false,
        };
        let cb = Callback {
            plugin,
            store,
            name: "proxy_on_response_body",
            id,
            end: true,
            wait: true,
        };
        match run(cb, buf).await {
            Outcome::Continue(b) | Outcome::Pause(b) => {
                *body = b.bytes;
                BodyOutcome {
                    status: Status::Continue,
                    keep_length: keep_length(length, b.edited),
                }
            }
            Outcome::Respond(status) => BodyOutcome {
                status,
                keep_length: true,
            },
        }
    }
}

/// Whether the held response keeps a Content-Length: the one the response-headers
/// callback set; none when it removed it (the body goes chunked); else the
/// upstream's, unless the body was edited.
fn keep_length(header: Option<bool>, edited: bool) -> bool {
    header.unwrap_or(!edited)
}

/// The request body to send upstream in place of the one held, when a wasm filter's
/// callbacks edited it: what they passed on, then what they still hold (a body ended
/// by HTTP/2 trailers never had its end-of-stream callback, and Envoy then passes the
/// held bytes on with the trailers).
pub(crate) fn request_body(store: Option<&SetHeaders>) -> Option<Vec<u8>> {
    let mut out = None;
    store?.wasm_contexts(|c| {
        for s in c.iter_mut().filter(|s| s.request_body.edited) {
            let WasmBody {
                out: mut o, held, ..
            } = std::mem::take(&mut s.request_body);
            o.extend_from_slice(&held);
            out = Some(o);
        }
    });
    out
}
