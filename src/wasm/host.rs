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
    /// The module has `proxy_on_request_body` (its streams read the request body
    /// through the chain's body hook) and `proxy_on_response_body`.
    pub request_body: bool,
    pub response_body: bool,
    /// The module has `proxy_on_request_trailers` (an HTTP/2 request's trailers, its
    /// body held for them) and `proxy_on_response_trailers`.
    pub request_trailers: bool,
    pub response_trailers: bool,
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
    /// The HTTP context these are of (0: none).
    pub id: i32,
    pub request: Option<HeaderMap>,
    pub response: Option<HeaderMap>,
    pub props: Option<Props>,
    pub local: Option<LocalResponse>,
    pub continued: bool,
    /// The body buffer of a body callback (`HttpRequestBody` or `HttpResponseBody`).
    pub body: Option<BodyBuf>,
    /// The trailers of a trailers callback, with their `MapType`
    /// (`HttpRequestTrailers` or `HttpResponseTrailers`).
    pub trailers: Option<(i32, HeaderMap)>,
}

/// The body a body callback reads and edits (`proxy_get_buffer_bytes`,
/// `proxy_set_buffer_bytes`): the chunk, or everything buffered so far.
#[derive(Debug, Default)]
pub struct BodyBuf {
    /// The ABI's `BufferType`: 0 `HttpRequestBody`, 1 `HttpResponseBody`.
    pub kind: i32,
    pub bytes: Vec<u8>,
    /// `proxy_set_buffer_bytes` may change it (false: a chunk already on its way,
    /// which Envoy's host hands over read-only too).
    pub writable: bool,
    /// It was changed.
    pub edited: bool,
}

/// `proxy_send_local_response`'s answer.
#[derive(Debug, Clone)]
pub struct LocalResponse {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

/// A stream whose request-headers callback paused it (`Action::Pause`): its maps and
/// what later callbacks on its context asked, until it continues or answers.
pub struct Parked {
    pub call: Call,
    /// The stream's task, woken when a callback resolved it or the VM failed.
    pub waker: Option<std::task::Waker>,
}

impl Parked {
    /// The plugin let the stream go on or answered it.
    pub fn resolved(&self) -> bool {
        self.call.continued || self.call.local.is_some()
    }
}

/// A `proxy_http_call` not yet sent (`calls.rs` sends it from a task of the worker).
pub struct OutCall {
    pub token: u32,
    pub cluster: String,
    /// The HTTP/1.1 request head and body.
    pub head: Vec<u8>,
    pub body: Vec<u8>,
    /// `None`: no timeout (Envoy's 0).
    pub timeout: Option<std::time::Duration>,
}

/// The answer of an HTTP call, readable during its `proxy_on_http_call_response`
/// (`HttpCallResponseHeaders`, `HttpCallResponseBody`).
pub struct CallResponse {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// This worker's newest view of its upstream clusters (`upstream::grpc_call::Newest`).
pub type Upstreams = crate::upstream::grpc_call::Newest;

/// The store's data: the plugin, the limits and the current call.
pub struct Host {
    pub(super) limits: StoreLimits,
    pub plugin: Arc<Plugin>,
    pub call: Call,
    /// `proxy_set_effective_context`'s context.
    pub effective: i32,
    pub tick_ms: u32,
    /// Paused streams of this VM, by context.
    pub parked: Vec<Parked>,
    /// HTTP calls asked for and not yet sent.
    pub outgoing: Vec<OutCall>,
    /// HTTP calls under way: token and task (dropped with the VM: cancelled).
    pub inflight: Vec<(u32, crate::rt::Task<()>)>,
    pub next_token: u32,
    pub call_response: Option<CallResponse>,
    /// The worker's clusters (set when the worker starts the VM, or by its first
    /// request; `None` in the control thread's check).
    pub upstreams: Option<Upstreams>,
    /// The tick task, while a period is set.
    pub ticking: Option<crate::rt::Task<()>>,
}

impl Host {
    /// The stream state of the effective context: the current call's, or a paused
    /// stream's (a later callback, or a context switched to with
    /// `proxy_set_effective_context`).
    pub fn cur(&mut self) -> &mut Call {
        if self.effective != self.call.id {
            let e = self.effective;
            if let Some(i) = self.parked.iter().position(|p| p.call.id == e) {
                if let Some(p) = self.parked.get_mut(i) {
                    return &mut p.call;
                }
            }
        }
        &mut self.call
    }

    /// The effective context's body of buffer type `t`, during a body callback.
    pub fn body(&mut self, t: i32) -> Option<&mut BodyBuf> {
        self.cur().body.as_mut().filter(|b| b.kind == t)
    }

    /// `cur` for reading.
    pub fn cur_ref(&self) -> &Call {
        if self.effective != self.call.id {
            if let Some(p) = self.parked.iter().find(|p| p.call.id == self.effective) {
                return &p.call;
            }
        }
        &self.call
    }
}
