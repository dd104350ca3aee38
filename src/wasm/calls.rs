//! What runs in a worker VM outside a stream's own callbacks: the HTTP calls its
//! module asked for (`proxy_http_call`) and its timer (`proxy_on_tick`), each a task
//! of the worker's executor (no thread of its own), and the wake-up of streams a
//! callback paused (`Parked`).
//!
//! After every callback on a worker the caller runs [`pump`]: it sends the queued
//! calls (a task each, over the worker's HTTP/1.1 pool for the cluster, with the
//! call's timeout), starts the tick task when the root context set a period, and
//! wakes the paused streams that a callback resolved (continued or answered) or
//! that the VM's failure ended. A call's answer runs `proxy_on_http_call_response`
//! on the root context, whichever context made the call, as Envoy (proxy-wasm's
//! host) does: the module switches to the stream's context with
//! `proxy_set_effective_context`, as the SDKs do. A call that times out gets the
//! `504 upstream request timeout` answer Envoy's async client gets from its router;
//! one that fails otherwise (no endpoint, connect or read error) gets 0 headers and
//! 0 body, as Envoy's `onHttpCallFailure` (Envoy answers some of those with its
//! router's local `503` instead). Calls are the root
//! context's, so they are not cancelled when the stream that asked ends (only when
//! the VM goes). A trap in either callback fails the VM as any other (the failure
//! policy decides the later requests) and never reaches the worker.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;

use wasmtime::Val;

use super::host::{CallResponse, OutCall};
use super::host_headers::HeaderMap;
use super::vm::ROOT_CONTEXT;
use super::{Vm, WorkerVm};

/// Most bytes of a call's response body read (a larger one fails the call).
const MAX_BODY: usize = 1 << 20;

/// Sends `vm`'s queued calls, starts its tick task if a period is set, and wakes
/// the paused streams a callback resolved. `rc`: the worker's slot holding `vm`.
pub fn pump(vm: &mut Vm, rc: &Rc<RefCell<WorkerVm>>) {
    let serial = vm.serial;
    let outgoing = std::mem::take(&mut vm.host().outgoing);
    if !vm.failed {
        for call in outgoing {
            let token = call.token;
            let task = crate::rt::spawn_local(send(Rc::downgrade(rc), serial, call));
            vm.host().inflight.push((token, task));
        }
        let h = vm.host();
        if h.tick_ms > 0 && h.ticking.is_none() {
            h.ticking = Some(crate::rt::spawn_local(tick(Rc::downgrade(rc), serial)));
        }
    }
    wake(vm);
}

/// Wakes each paused stream that is resolved, or every one if the VM failed.
pub fn wake(vm: &mut Vm) {
    let failed = vm.failed;
    for p in &mut vm.host().parked {
        if failed || p.resolved() {
            if let Some(w) = p.waker.take() {
                w.wake();
            }
        }
    }
}

/// The context `id` ended: its paused state is dropped.
pub fn forget(vm: &mut Vm, id: i32) {
    vm.host().parked.retain(|p| p.call.id != id);
}

/// Runs `f` on the VM of `slot` if it is still instance `serial` and has not failed.
fn with_vm(
    slot: &Weak<RefCell<WorkerVm>>,
    serial: u64,
    f: impl FnOnce(&mut Vm, &Rc<RefCell<WorkerVm>>),
) {
    let Some(rc) = slot.upgrade() else { return };
    let Ok(mut s) = rc.try_borrow_mut() else {
        return;
    };
    if let Some(vm) = s.as_mut().filter(|v| v.serial == serial && !v.failed) {
        f(vm, &rc);
    }
}

async fn send(slot: Weak<RefCell<WorkerVm>>, serial: u64, call: OutCall) {
    let newest = slot
        .upgrade()
        .and_then(|rc| rc.try_borrow().ok()?.as_ref()?.upstreams_handle());
    let up = newest.and_then(|n| n());
    let answer = match up
        .as_ref()
        .and_then(|u| Some((u, u.cluster_index(&call.cluster)?)))
    {
        None => None,
        Some((u, cluster)) => {
            let exchange = async {
                u.h1_exchange(cluster, call.head, &call.body, MAX_BODY)
                    .await
                    .ok()
            };
            match call.timeout {
                Some(t) => {
                    let deadline = async {
                        crate::rt::sleep(t).await;
                        Some(timed_out())
                    };
                    futures_lite::future::or(exchange, deadline).await
                }
                None => exchange.await,
            }
        }
    };
    drop(up);
    with_vm(&slot, serial, |vm, rc| {
        let h = vm.host();
        let Some(i) = h.inflight.iter().position(|(t, _)| *t == call.token) else {
            return;
        };
        // This task's own handle: dropping it now cancels nothing (no await is left).
        let _own = h.inflight.swap_remove(i);
        let (n, len) = match answer {
            Some(r) => {
                let mut pairs = Vec::with_capacity(r.headers.len() + 1);
                pairs.push((":status".to_string(), r.status.to_string()));
                pairs.extend(r.headers);
                let n = pairs.len() as i32;
                let len = r.body.len() as i32;
                h.call_response = Some(CallResponse {
                    headers: HeaderMap {
                        pairs,
                        ops: Vec::new(),
                    },
                    body: r.body,
                });
                (n, len)
            }
            None => (0, 0),
        };
        let args = [
            Val::I32(ROOT_CONTEXT),
            Val::I32(call.token as i32),
            Val::I32(n),
            Val::I32(len),
            Val::I32(0),
        ];
        if let Err(e) = vm.call("proxy_on_http_call_response", &args) {
            tracing::warn!(plugin = %vm.host().plugin.name, "wasm filter failed: {e}");
        }
        vm.host().call_response = None;
        pump(vm, rc);
    });
}

/// What a call that timed out answers: Envoy's async client gets its router's local
/// reply, `504` with `upstream request timeout`.
fn timed_out() -> crate::upstream::grpc_call::H1Response {
    const BODY: &str = "upstream request timeout";
    crate::upstream::grpc_call::H1Response {
        status: 504,
        headers: vec![
            ("content-length".into(), BODY.len().to_string()),
            ("content-type".into(), "text/plain".into()),
        ],
        body: BODY.as_bytes().to_vec(),
    }
}

/// The root context's timer: `proxy_on_tick` every period the module set (read
/// before each tick; 0 stops it), until the VM goes or fails.
async fn tick(slot: Weak<RefCell<WorkerVm>>, serial: u64) {
    loop {
        let mut period = 0;
        with_vm(&slot, serial, |vm, _| period = vm.host().tick_ms);
        if period == 0 {
            with_vm(&slot, serial, |vm, _| vm.host().ticking = None);
            return;
        }
        crate::rt::sleep(Duration::from_millis(u64::from(period))).await;
        with_vm(&slot, serial, |vm, rc| {
            if let Err(e) = vm.call("proxy_on_tick", &[Val::I32(ROOT_CONTEXT)]) {
                tracing::warn!(plugin = %vm.host().plugin.name, "wasm filter failed: {e}");
            }
            pump(vm, rc);
        });
    }
}
