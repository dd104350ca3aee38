//! A proxy-wasm VM: the compiled module (one per plugin, compiled at config load and
//! shared read-only by the workers: a wasmtime `Module` is immutable and `Send`), and
//! the instance each worker runs it in (`Vm`: a wasmtime `Store` and `Instance` of its
//! own, never shared, reused by every request of that worker).
//!
//! Every call into the module runs with a fuel budget (`max_fuel_per_call`) and the
//! store's memory limit (`max_memory_bytes`); a trap (including running out of fuel)
//! comes back as an error, never unwinds through the worker, and marks the VM failed
//! (`Vm::failed`), as Envoy's `FailState::RuntimeError`.

use std::sync::{Arc, OnceLock};

use wasmtime::{Engine, Instance, Linker, Module, Store, StoreLimitsBuilder, Val};

use super::abi;
pub use super::host::{Call, FailurePolicy, Host, LocalResponse, Plugin};

/// The root context's id in every VM (Envoy numbers contexts per VM too); HTTP
/// contexts take the ids after it.
pub const ROOT_CONTEXT: i32 = 1;

/// The ABI versions the host speaks (the module exports one as a marker function).
pub const ABI_EXPORTS: [&str; 2] = ["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"];

/// The process's wasmtime engine: compiled code is tied to it, so one is shared.
pub(super) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut c = wasmtime::Config::new();
        c.consume_fuel(true);
        // The default config cannot fail on this target; if it ever did, the defaults
        // without fuel would run the modules unbounded, so refuse instead.
        Engine::new(&c).unwrap_or_else(|e| panic!("wasmtime engine: {e}"))
    })
}

/// Compiles and checks a module: the ABI marker, the memory export and the exports'
/// signatures. Imports are checked when it is instantiated (`Vm::start`).
pub fn compile(code: &[u8]) -> Result<Module, String> {
    let module = Module::new(engine(), code).map_err(|e| format!("invalid Wasm module: {e}"))?;
    let mut abi_found = false;
    let mut memory = false;
    for e in module.exports() {
        match (e.name(), e.ty()) {
            (n, wasmtime::ExternType::Func(_)) if ABI_EXPORTS.contains(&n) => abi_found = true,
            ("memory", wasmtime::ExternType::Memory(_)) => memory = true,
            (n, wasmtime::ExternType::Func(f)) => abi::check_export(n, &f)?,
            _ => {}
        }
    }
    if !abi_found {
        let other = module
            .exports()
            .map(|e| e.name())
            .find(|n| n.starts_with("proxy_abi_version_"));
        return Err(match other {
            Some(v) => format!("unsupported proxy-wasm ABI version `{v}` (supported: 0_2_1, 0_2_0)"),
            None => "unknown proxy-wasm ABI version: the module exports no `proxy_abi_version_*` function (supported: 0_2_1, 0_2_0)".into(),
        });
    }
    if !memory {
        return Err("the module exports no memory (`memory`)".into());
    }
    Ok(module)
}

/// One worker's instance of a plugin.
pub struct Vm {
    store: Store<Host>,
    instance: Instance,
    /// A call trapped (or ran out of fuel); Envoy's `FailState::RuntimeError`.
    pub failed: bool,
    /// When it failed (`fail_reload` waits a second before a new instance).
    pub failed_at: Option<std::time::Instant>,
    next_context: i32,
    /// Which instance this is (a `fail_reload` replaces the instance in the same
    /// worker slot; tasks of the old one must not deliver to the new one).
    pub serial: u64,
}

impl Vm {
    /// Instantiates the module and runs its start: `_initialize` (or `_start`), the root
    /// context, `proxy_on_vm_start` and `proxy_on_configure`. `Err` names what failed.
    pub fn start(plugin: &Arc<Plugin>) -> Result<Vm, String> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(plugin.max_memory_bytes)
            .instances(1)
            .build();
        let host = Host {
            limits,
            plugin: plugin.clone(),
            call: Call::default(),
            effective: ROOT_CONTEXT,
            tick_ms: 0,
            parked: Vec::new(),
            outgoing: Vec::new(),
            inflight: Vec::new(),
            next_token: 1,
            call_response: None,
            upstreams: None,
            ticking: None,
        };
        let mut store = Store::new(engine(), host);
        store.limiter(|h| &mut h.limits);
        let linker = linker();
        let instance = linker
            .instantiate(&mut store, &plugin.module)
            .map_err(|e| format!("cannot instantiate the module: {e:#}"))?;
        let mut vm = Vm {
            store,
            instance,
            failed: false,
            failed_at: None,
            next_context: ROOT_CONTEXT + 1,
            serial: {
                static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        };
        for init in ["_initialize", "_start"] {
            if vm.instance.get_func(&mut vm.store, init).is_some() {
                vm.call(init, &[])
                    .map_err(|e| format!("`{init}` failed: {e}"))?;
                break;
            }
        }
        vm.call(
            "proxy_on_context_create",
            &[Val::I32(ROOT_CONTEXT), Val::I32(0)],
        )
        .map_err(|e| format!("proxy_on_context_create (root) failed: {e}"))?;
        let n = plugin.vm_configuration.len() as i32;
        if vm
            .call("proxy_on_vm_start", &[Val::I32(ROOT_CONTEXT), Val::I32(n)])
            .map_err(|e| format!("proxy_on_vm_start failed: {e}"))?
            == Some(0)
        {
            return Err("proxy_on_vm_start returned false".into());
        }
        let n = plugin.configuration.len() as i32;
        if vm
            .call("proxy_on_configure", &[Val::I32(ROOT_CONTEXT), Val::I32(n)])
            .map_err(|e| format!("proxy_on_configure failed: {e}"))?
            == Some(0)
        {
            return Err("proxy_on_configure returned false".into());
        }
        Ok(vm)
    }

    pub fn host(&mut self) -> &mut Host {
        self.store.data_mut()
    }

    /// The worker's clusters as the VM's HTTP calls reach them.
    pub fn upstreams_handle(&self) -> Option<super::host::Upstreams> {
        self.store.data().upstreams.clone()
    }

    /// A new HTTP context id.
    pub fn new_context(&mut self) -> i32 {
        let id = self.next_context;
        self.next_context = self.next_context.checked_add(1).unwrap_or(ROOT_CONTEXT + 1);
        id
    }

    /// Calls the export `name` if the module has it, with a fresh fuel budget.
    /// `Ok(None)`: no such export, or it returns nothing; `Ok(Some(v))`: its i32
    /// result; `Err`: it trapped or ran out of fuel (the VM is then failed).
    pub fn call(&mut self, name: &str, args: &[Val]) -> Result<Option<i32>, String> {
        let Some(f) = self.instance.get_func(&mut self.store, name) else {
            return Ok(None);
        };
        let fuel = self.store.data().plugin.max_fuel_per_call;
        if self.store.set_fuel(fuel).is_err() {
            self.failed = true;
            self.failed_at = Some(std::time::Instant::now());
            return Err("cannot set the fuel budget".into());
        }
        self.store.data_mut().effective = args.first().and_then(Val::i32).unwrap_or(ROOT_CONTEXT);
        let mut out = [Val::I32(0)];
        let n = f.ty(&self.store).results().len().min(1);
        match f.call(&mut self.store, args, &mut out[..n]) {
            Ok(()) => Ok(if n == 1 { out[0].i32() } else { None }),
            Err(e) => {
                self.failed = true;
                self.failed_at = Some(std::time::Instant::now());
                let out_of_fuel = matches!(
                    e.downcast_ref::<wasmtime::Trap>(),
                    Some(wasmtime::Trap::OutOfFuel)
                );
                Err(if out_of_fuel {
                    format!("`{name}` ran out of fuel ({fuel} units)")
                } else {
                    format!("`{name}` trapped: {e}")
                })
            }
        }
    }
}

/// The host functions, linked once per process (a `Linker` holds only the engine
/// and the function definitions).
fn linker() -> Linker<Host> {
    let mut l = Linker::new(engine());
    abi::define(&mut l);
    super::http_call::define(&mut l);
    super::host_body::define(&mut l);
    l
}
