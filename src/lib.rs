//! Outrigger: a thread-per-core service-mesh sidecar proxy.
//!
//! Layers, top to bottom: `runtime` (threads, signals, config fan-out) -> `admin` ->
//! `listener` -> `http` (connection manager, HTTP/1 codec, router) -> `upstream`
//! (clusters, load balancing, pools) -> `observe` (stats, access log) -> `config`.

pub mod admin;
pub mod alarm;
pub mod config;
pub(crate) mod contain;
pub mod demo;
pub mod health;
pub mod http;
pub mod iptables;
pub mod listener;
pub mod mesh;
pub mod observe;
pub mod outlier;
pub mod rbac;
pub mod rt;
pub mod runtime;
pub mod tcp;
pub mod test_hooks;
pub mod tls;
pub mod tunnel;
pub mod upstream;
pub mod wasm;
pub mod xds;
