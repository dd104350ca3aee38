//! The proxy-wasm filter's trailer callbacks (`proxy_on_request_trailers`,
//! `proxy_on_response_trailers`, ABI 0.2.1), for modules that export them
//! (`Plugin::request_trailers`, `Plugin::response_trailers`): the chain's trailer hooks
//! call them with an HTTP/2 request's trailers (its body held for them,
//! `http/hold.rs`) or an HTTP/2 upstream response's, before they go on. The callback
//! reads and edits them as map type `HttpRequestTrailers` (1) or
//! `HttpResponseTrailers` (3); its edits are applied to the trailers in place.
//! `Continue` lets them go; `Pause` (Envoy's `StopIteration`) waits, as a paused head
//! does, for a later callback to continue the stream (the edits made until then
//! apply) or answer it; a local response answers the client (after a response head
//! that went out, the caller resets the stream). A trap fails the request as in the
//! other callbacks. HTTP/1 trailers never reach them (Envoy's HTTP/1 codec drops them
//! by default).

use std::sync::Arc;

use wasmtime::Val;

use super::set_headers::SetHeaders;
use super::status::Status;
use super::wasm::{failed, failed_request, wait_parked, WasmFilter};
use super::wasm_body::{context, resolved};
use crate::wasm::abi::{REQUEST_TRAILERS, RESPONSE_TRAILERS};
use crate::wasm::calls;
use crate::wasm::host::Parked;
use crate::wasm::host_headers::{HeaderMap, HeaderOp};
use crate::wasm::vm::Call;
use crate::wasm::{running, worker_vm, Plugin};

impl WasmFilter {
    /// An HTTP/2 request's trailers, which ended its held body.
    pub async fn on_request_trailers(
        &self,
        store: Option<&SetHeaders>,
        trailers: &mut http::HeaderMap,
    ) -> Status {
        let (Some(store), true) = (store, self.0.request_trailers) else {
            return Status::Continue;
        };
        let cb = ("proxy_on_request_trailers", REQUEST_TRAILERS);
        run(&self.0, store, cb, trailers).await
    }

    /// An HTTP/2 upstream response's trailers, before they go to the client.
    pub async fn on_response_trailers(
        &self,
        store: Option<&SetHeaders>,
        trailers: &mut http::HeaderMap,
    ) -> Status {
        let (Some(store), true) = (store, self.0.response_trailers) else {
            return Status::Continue;
        };
        let cb = ("proxy_on_response_trailers", RESPONSE_TRAILERS);
        run(&self.0, store, cb, trailers).await
    }
}

/// Runs the callback `name` on the stream's context with a copy of `trailers` as map
/// `kind`, then applies its edits to them.
async fn run(
    plugin: &Arc<Plugin>,
    store: &SetHeaders,
    (name, kind): (&'static str, i32),
    trailers: &mut http::HeaderMap,
) -> Status {
    let Some(id) = context(plugin, store, |c| c.id) else {
        return Status::Continue;
    };
    let rc = worker_vm(plugin);
    let serial = {
        let Some(mut vm) = running(&rc) else {
            return failed(plugin);
        };
        let map = copy(trailers);
        let n = map.pairs.len() as i32;
        vm.host().call = Call {
            id,
            trailers: Some((kind, map)),
            ..Call::default()
        };
        let result = vm.call(name, &[Val::I32(id), Val::I32(n)]);
        let call = std::mem::take(&mut vm.host().call);
        let action = match result {
            Ok(a) => a.unwrap_or(0),
            Err(e) => {
                calls::pump(&mut vm, &rc);
                return failed_request(plugin, &e);
            }
        };
        if call.local.is_some() {
            calls::pump(&mut vm, &rc);
            return resolved(plugin, call, store);
        }
        if action == 0 || call.continued {
            calls::pump(&mut vm, &rc);
            apply(call, trailers);
            return Status::Continue;
        }
        vm.host().parked.push(Parked { call, waker: None });
        calls::pump(&mut vm, &rc);
        vm.serial
    };
    match wait_parked(&rc, plugin, store, (serial, id)).await {
        Err(timeout) => timeout,
        Ok(None) => failed_request(plugin, "the VM failed while the trailers were paused"),
        Ok(Some(call)) if call.local.is_some() => resolved(plugin, call, store),
        Ok(Some(call)) => {
            apply(call, trailers);
            Status::Continue
        }
    }
}

/// The trailers as the filter sees them (lower-case names, in order).
fn copy(t: &http::HeaderMap) -> HeaderMap {
    HeaderMap {
        pairs: t
            .iter()
            .map(|(n, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_string(), v)
            })
            .collect(),
        ops: Vec::new(),
    }
}

/// Replays the callback's edits of its copy onto the trailers.
fn apply(call: Call, t: &mut http::HeaderMap) {
    let Some((_, map)) = call.trailers else {
        return;
    };
    for op in map.ops {
        let (name, value) = match &op {
            HeaderOp::Set(n, v) | HeaderOp::Add(n, v) => (n, Some(v)),
            HeaderOp::Remove(n) => (n, None),
        };
        let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        let value = value.and_then(|v| http::HeaderValue::from_str(v).ok());
        match (op, value) {
            (HeaderOp::Set(..), Some(v)) => {
                t.insert(name, v);
            }
            (HeaderOp::Add(..), Some(v)) => {
                t.append(name, v);
            }
            (HeaderOp::Remove(_), _) => {
                t.remove(name);
            }
            _ => {}
        }
    }
}
