//! proxy-wasm HTTP filters (Envoy's `envoy.filters.http.wasm`), ABI 0.2.1 (and 0.2.0),
//! on wasmtime.
//!
//! - `config.rs`: the filter's config (native and from Envoy's `PluginConfig`), and
//!   the load: the module is compiled once (`vm::compile`) and started once on the
//!   control thread to check it (its imports, `proxy_on_vm_start` and
//!   `proxy_on_configure`), so a bad module is refused with the reason and the running
//!   config keeps serving.
//! - `vm.rs`: one instance per worker and plugin (`worker_vm`), made when the worker
//!   applies the config (`start_for_worker`) and reused by every request; fuel and
//!   memory limits; traps.
//! - `abi.rs`, `host_headers.rs`, `host_body.rs`, `shared.rs`, `http_call.rs`: the host functions.
//! - `calls.rs`: what runs outside a stream's callbacks, as tasks of the worker: the
//!   module's HTTP calls, its timer, and the wake-up of the streams it paused.
//! - The filter's hooks are in `http/filter/wasm.rs`.

pub mod abi;
pub mod calls;
pub mod config;
pub mod host;
pub mod host_body;
pub mod host_headers;
pub mod http_call;
pub mod shared;
pub mod vm;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Weak};

pub use self::host::{FailurePolicy, Plugin};
pub use self::vm::Vm;

/// How long a failed VM stays failed before `fail_reload` makes a new one (Envoy's
/// default reload back-off base interval).
pub const RELOAD_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

thread_local! {
    /// This worker's VMs, one per plugin of the configs it has served (a plugin of a
    /// replaced config goes when its `Plugin` is dropped: swept on the next insert).
    static VMS: RefCell<Vec<WorkerEntry>> = const { RefCell::new(Vec::new()) };
}

/// One plugin's VM on this worker.
type WorkerEntry = (Weak<Plugin>, Rc<RefCell<WorkerVm>>);

/// A worker's VM of one plugin: running, or failed to start (then every request sees
/// a failed VM).
pub type WorkerVm = Option<Vm>;

/// The running (not failed) VM in `rc`, unless it is in use (a callback of this VM
/// is on the stack: the caller answers as for a failed VM).
pub fn running(rc: &Rc<RefCell<WorkerVm>>) -> Option<std::cell::RefMut<'_, Vm>> {
    let slot = rc.try_borrow_mut().ok()?;
    std::cell::RefMut::filter_map(slot, |s| s.as_mut().filter(|vm| !vm.failed)).ok()
}

/// This worker's VM for `plugin`, started on first use. A VM that failed and whose
/// plugin says `fail_reload` is replaced by a new one here.
pub fn worker_vm(plugin: &Arc<Plugin>) -> Rc<RefCell<WorkerVm>> {
    VMS.with(|v| {
        let mut v = v.borrow_mut();
        let found = v
            .iter()
            .find(|(p, _)| std::ptr::eq(p.as_ptr(), Arc::as_ptr(plugin)))
            .map(|(_, vm)| vm.clone());
        let vm = match found {
            Some(vm) => vm,
            None => {
                v.retain(|(p, _)| p.strong_count() > 0);
                let vm = Rc::new(RefCell::new(start(plugin)));
                v.push((Arc::downgrade(plugin), vm.clone()));
                vm
            }
        };
        if plugin.failure_policy == FailurePolicy::FailReload {
            if let Ok(mut slot) = vm.try_borrow_mut() {
                // Envoy reloads after a back-off (`ReloadConfig.backoff`, base 1 s).
                let due = |m: &Vm| {
                    m.failed && m.failed_at.is_none_or(|t| t.elapsed() >= RELOAD_BACKOFF)
                };
                if slot.as_ref().is_none_or(due) {
                    tracing::warn!(plugin = %plugin.name, "wasm VM failed: reloading it (fail_reload)");
                    *slot = start(plugin);
                }
            }
        }
        vm
    })
}

/// Starts this worker's VM of `plugin` now (the worker applies a config that has it,
/// as Envoy starts its VMs at config load), so that its timer, if its
/// `proxy_on_configure` set one, ticks from now on. `upstreams`: the worker's
/// clusters, for the module's HTTP calls.
pub fn start_for_worker(plugin: &Arc<Plugin>, upstreams: Option<host::Upstreams>) {
    let rc = worker_vm(plugin);
    let Ok(mut slot) = rc.try_borrow_mut() else {
        return;
    };
    if let Some(vm) = slot.as_mut().filter(|v| !v.failed) {
        if vm.host().upstreams.is_none() {
            vm.host().upstreams = upstreams;
        }
        calls::pump(vm, &rc);
    }
}

fn start(plugin: &Arc<Plugin>) -> WorkerVm {
    match Vm::start(plugin) {
        Ok(vm) => Some(vm),
        Err(e) => {
            tracing::error!(plugin = %plugin.name, "wasm VM did not start on this worker: {e}");
            None
        }
    }
}
