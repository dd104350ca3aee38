//! The HTTP connection manager and its codecs.
//!
//! `conn` drives one downstream connection: read a request head, route it, proxy it to
//! an upstream (or answer locally), stream bodies both ways, repeat. The HTTP/1 codec in
//! `h1` is the project's own, on httparse. `conn` talks to the codec through the small
//! set of facts in `h1::head` (framing, keep-alive, routing keys), which is the seam the
//! HTTP/2 codec plugs into next.

#[cfg(test)]
mod alloc_tests;
pub(crate) mod authority;
pub(crate) mod body;
pub(crate) mod body_hooks;
pub(crate) mod body_stream;
pub(crate) mod buf;
pub(crate) mod conn;
pub(crate) mod early_answer;
pub(crate) mod failure;
pub mod filter;
pub(crate) mod flags;
pub(crate) mod forwarding;
pub(crate) mod grpc_frame;
pub(crate) mod grpc_local;
pub mod h1;
mod h1_to_h2;
mod h1_to_h2_body;
mod h1_to_h2_head;
mod h1_to_h2_held;
pub mod h2;
pub(crate) mod held_body;
pub(crate) mod hold;
pub mod hop;
pub(crate) mod io;
pub(crate) mod mirror;
pub mod own_headers;
pub(crate) mod request_stream;
pub(crate) mod restamp;
pub mod router;
pub mod stamp;
mod upstreams;
pub mod view;
pub(crate) mod xfcc;
