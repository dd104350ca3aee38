//! What the HTTP filters may read of a request and its connection on the request-head
//! hook. Its own module so that each filter's file can name it without depending on
//! the chain (`filter/mod.rs`) that runs it.

use std::rc::Rc;

use crate::config::Forwarding;
use crate::http::router::Request;
use crate::observe::stats::Counter;

/// What filters may read of a request and its connection, for the request-head hook.
#[derive(Clone, Copy)]
pub struct RequestCtx<'a> {
    /// The head as the router saw it (after the connection manager's port stripping).
    pub req: &'a Request<'a>,
    pub conn: crate::rbac::Conn<'a>,
    /// The connection manager's `x-forwarded-for` trust (Envoy's remote address).
    pub forwarding: &'a Forwarding,
    /// The worker's named counters (`Snapshot::counters`).
    pub counters: &'a [Rc<Counter>],
}
