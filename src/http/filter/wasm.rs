//! The proxy-wasm HTTP filter's hooks (Envoy's `envoy.filters.http.wasm`): each
//! stream gets an HTTP context in this worker's VM of the plugin (`wasm::worker_vm`);
//! the request head runs `proxy_on_context_create` and `proxy_on_request_headers`, the
//! response head `proxy_on_response_headers`, and the stream's end `proxy_on_done`,
//! `proxy_on_log` and `proxy_on_delete`.
//!
//! Header edits go into the stream's `SetHeaders` (request: `StreamEdits::request_store`,
//! response: `StreamEdits::store`), which every encoder applies. A trap (or fuel run
//! out) fails the VM and its request gets a 503; the later requests of the VM get a
//! 503 too (Envoy's `failure_policy` `FAIL_CLOSED`, the default), or skip the filter
//! (`FAIL_OPEN`), or get a new instance a second after the failure (`FAIL_RELOAD`),
//! as Envoy 1.40 does.

use std::borrow::Cow;
use std::sync::Arc;

use wasmtime::Val;

use super::ctx::RequestCtx;
use super::set_headers::{SetHeaders, StreamContext};
use super::status::{LocalReply, Status};
use crate::http::flags::ResponseFlag;
use crate::wasm::abi::Props;
use crate::wasm::host_headers::{HeaderMap, HeaderOp};
use crate::wasm::vm::{Call, LocalResponse};
use crate::wasm::{worker_vm, FailurePolicy, Plugin};

/// A configured wasm filter: the loaded plugin (shared by the workers; each runs its
/// own instance).
#[derive(Debug, Clone)]
pub struct WasmFilter(pub Arc<Plugin>);

impl PartialEq for WasmFilter {
    fn eq(&self, o: &WasmFilter) -> bool {
        Arc::ptr_eq(&self.0, &o.0)
    }
}

/// The reply to a request whose VM failed (Envoy's `failStream`: 503, no body).
const FAILED: LocalReply = LocalReply {
    status: 503,
    body: Cow::Borrowed(""),
    flag: ResponseFlag::None,
};

fn key(p: &Arc<Plugin>) -> usize {
    Arc::as_ptr(p) as usize
}

impl WasmFilter {
    /// The request head: a new context and `proxy_on_request_headers`. Edits go to
    /// `request_store`; a local response is returned as `Respond` (its headers go to
    /// `store`). `store`: the stream's storage (`None`: the context ends here).
    pub fn on_request_head(
        &self,
        ctx: &RequestCtx<'_>,
        store: Option<&SetHeaders>,
        req_store: Option<&SetHeaders>,
    ) -> Status {
        let plugin = &self.0;
        let rc = worker_vm(plugin);
        let Ok(mut slot) = rc.try_borrow_mut() else {
            return failed(plugin);
        };
        let Some(vm) = slot.as_mut().filter(|vm| !vm.failed) else {
            return failed(plugin);
        };
        let id = vm.new_context();
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
        vm.host().call = Call {
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
                // The request whose callback failed gets the 503 whatever the policy
                // (Envoy's), unless the deprecated `fail_open` is set; the policy
                // decides for the later ones.
                tracing::warn!(plugin = %plugin.name, "wasm filter failed: {e}");
                if plugin.fail_open_failed_request {
                    return Status::Continue;
                }
                return Status::Respond(FAILED);
            }
        };
        if let (Some(m), Some(s)) = (&call.request, req_store) {
            replay(&m.ops, s);
        }
        let remember = |response_done| {
            if let Some(s) = store {
                s.wasm_contexts(|c| {
                    c.push(StreamContext {
                        plugin: key(plugin),
                        id,
                        response_done,
                        reply: None,
                    })
                });
                true
            } else {
                false
            }
        };
        if let Some(l) = call.local {
            if !remember(true) {
                end(vm, id);
            }
            return local(l, store);
        }
        if !remember(false) {
            end(vm, id);
        }
        if action != 0 && !call.continued {
            // Resuming needs a timer or an http_call, which this host does not deliver
            // yet (docs/configuration.md): fail the request rather than let it hang or
            // pass unchecked.
            tracing::warn!(plugin = %plugin.name, "wasm filter paused the request (StopIteration); resuming is not supported: 500");
            return Status::Respond(LocalReply {
                status: 500,
                body: Cow::Borrowed(""),
                flag: ResponseFlag::None,
            });
        }
        Status::Continue
    }

    /// The upstream's response head with `status`: `proxy_on_response_headers` if it
    /// has not run for this stream (`before_response_head`), and what it answered.
    pub fn on_response_head(&self, status: u16, store: Option<&SetHeaders>) -> Status {
        let Some(store) = store else {
            return Status::Continue;
        };
        self.before_response_head(status, Some(store));
        let mut out = Status::Continue;
        let plugin = key(&self.0);
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
        let Ok(mut slot) = rc.try_borrow_mut() else {
            return answer(status_of(failed(plugin)));
        };
        let Some(vm) = slot.as_mut().filter(|vm| !vm.failed) else {
            return answer(status_of(failed(plugin)));
        };
        vm.host().call = Call {
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
        if let Err(e) = result {
            tracing::warn!(plugin = %plugin.name, "wasm filter failed: {e}");
            return answer((!plugin.fail_open_failed_request).then_some(FAILED));
        }
        if let Some(m) = &call.response {
            replay(&m.ops, store);
        }
        if let Some(l) = call.local {
            answer(status_of(local(l, Some(store))));
        }
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
        let Ok(mut slot) = rc.try_borrow_mut() else {
            return;
        };
        if let Some(vm) = slot.as_mut().filter(|vm| !vm.failed) {
            end(vm, id);
        }
    }
}

/// The end of a context.
fn end(vm: &mut crate::wasm::Vm, id: i32) {
    for f in ["proxy_on_done", "proxy_on_log", "proxy_on_delete"] {
        if let Err(e) = vm.call(f, &[Val::I32(id)]) {
            tracing::warn!("wasm filter failed: {e}");
            return;
        }
    }
}

fn failed(plugin: &Plugin) -> Status {
    match plugin.failure_policy {
        FailurePolicy::FailOpen => Status::Continue,
        FailurePolicy::FailClosed | FailurePolicy::FailReload => Status::Respond(FAILED),
    }
}

fn local(l: LocalResponse, store: Option<&SetHeaders>) -> Status {
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
