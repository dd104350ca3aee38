//! The plugin (its checked config and compiled module) and the state a worker's VM
//! keeps for the host functions (wasmtime's store data). Its own module so that the
//! host functions (`abi.rs`) and the VM (`vm.rs`) both name it without depending on
//! each other.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use wasmtime::{Module, StoreLimits};

use super::host_headers::HeaderMap;

/// What Envoy's `PluginConfig.failure_policy` says after the VM failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Every later request of the VM gets a 503 (Envoy's default).
    FailClosed,
    /// The filter is skipped.
    FailOpen,
    /// A new instance is made for the next request.
    FailReload,
}

/// A plugin's checked configuration and its compiled module.
pub struct Plugin {
    pub name: String,
    pub root_id: String,
    pub vm_id: String,
    pub vm_configuration: Vec<u8>,
    pub configuration: Vec<u8>,
    pub failure_policy: FailurePolicy,
    /// The request whose callback failed continues (Envoy's deprecated `fail_open`).
    pub fail_open_failed_request: bool,
    pub max_memory_bytes: usize,
    pub max_fuel_per_call: u64,
    pub(super) module: Module,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("root_id", &self.root_id)
            .field("vm_id", &self.vm_id)
            .field("failure_policy", &self.failure_policy)
            .finish()
    }
}

/// What properties a request offers (copied when its context's callback starts).
#[derive(Debug, Clone, Default)]
pub struct Props {
    pub path: String,
    pub method: String,
    pub host: String,
    pub scheme: String,
    /// The peer's IP (its port is not known to the filters).
    pub source: Option<IpAddr>,
    pub destination: Option<SocketAddr>,
    pub response_code: Option<u16>,
}

/// What one call into the module may touch: its HTTP stream's maps and what it asked.
#[derive(Default)]
pub struct Call {
    pub request: Option<HeaderMap>,
    pub response: Option<HeaderMap>,
    pub props: Option<Props>,
    pub local: Option<LocalResponse>,
    pub continued: bool,
}

/// `proxy_send_local_response`'s answer.
#[derive(Debug, Clone)]
pub struct LocalResponse {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

/// The store's data: the plugin, the limits and the current call.
pub struct Host {
    pub(super) limits: StoreLimits,
    pub plugin: Arc<Plugin>,
    pub call: Call,
    /// `proxy_set_effective_context`'s context.
    pub effective: i32,
    pub tick_ms: u32,
}
