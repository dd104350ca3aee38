//! The HTTP RBAC filter (Envoy's `envoy.filters.http.rbac`): on each request head, the
//! shadow rules are evaluated and counted, then the enforced rules decide; a denied
//! request is answered `403` with `RBAC: access denied` (Envoy's reply, no response
//! flag) and never reaches the router. The policy engine is `crate::rbac`.
//!
//! Configured natively as a listener's `http_filters` entry `rbac: {rules,
//! shadow_rules, rules_stat_prefix, shadow_rules_stat_prefix}` (Envoy's fields), and
//! per route (`per_filter_config`) with `disabled: true` or `rbac: {...}` (Envoy's
//! `RBACPerRoute`: the route's rules replace the filter's, an empty one allows all).
//!
//! Counters, per Envoy: `http.<stat_prefix>.rbac.allowed`, `.denied`,
//! `.shadow_allowed`, `.shadow_denied`; a route's rules count in its filter's.

use super::ctx::RequestCtx;
use super::status::{LocalReply, Status};
use crate::http::flags::ResponseFlag;
use crate::rbac::{self, Counters, Input, Rules};

/// Envoy's local reply for a denied request.
pub const DENIED: LocalReply = LocalReply {
    status: 403,
    body: std::borrow::Cow::Borrowed("RBAC: access denied"),
    flag: ResponseFlag::None,
};

/// The filter as configured on a listener, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct RbacFilter {
    pub rules: Rules,
    pub counters: Counters,
}

impl RbacFilter {
    /// Decides one request with `rules` (the filter's, or its route's replacement).
    pub fn on_request_head(&self, rules: &Rules, ctx: &RequestCtx<'_>) -> Status {
        let input = Input {
            conn: ctx.conn,
            http: Some((ctx.req, ctx.forwarding)),
        };
        let inc = |i: usize| {
            if let Some(c) = ctx.counters.get(i) {
                c.inc();
            }
        };
        match rbac::evaluate(rules, &self.counters, &input, inc) {
            Some(d) if !d.allowed => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    tracing::debug!(
                        details = %rbac::denial_details(d.policy),
                        path = ctx.req.path,
                        "rbac: enforced denied"
                    );
                }
                Status::Respond(DENIED)
            }
            _ => Status::Continue,
        }
    }
}
