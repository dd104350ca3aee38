//! The finished request's record (`observe::stream_info`): the request head kept for
//! the access log, and what the end of a request feeds to the listener's stats, the
//! access log, Istio's metrics and the cluster's `upstream_rq_time`. Part of the HTTP/1
//! connection manager (`conn.rs`), after each request.

use std::time::Duration;

use crate::http::stamp::{uuid_v4, REQUEST_ID};
use crate::observe::route_stats;
use crate::observe::stream_info::{self, LogFacts};
use crate::upstream::Connector;

use super::super::h1::head::BodyKind;
use super::super::own_headers;
use super::super::view::{ChainRef, WorkerView};
use super::{Action, Conn, Plan};

impl Conn {
    /// Keeps the request head for the access log: as it goes upstream (after the filter
    /// chain's edits), or as it came when it does not go upstream (Envoy logs the
    /// headers the router saw, and only the router adds its route's headers).
    pub(super) fn keep_request_head(
        &mut self,
        plan: &Plan<'_>,
        l: &crate::config::HttpConnectionManager,
    ) {
        let log = &mut self.rec.log;
        match &plan.action {
            Action::Proxy { h2: Some(r), .. } => {
                stream_info::keep_header_map(&mut log.request_head, r.headers())
            }
            Action::Proxy { h2: None, .. } => {
                LogFacts::keep_head(&mut log.request_head, &self.wbuf);
            }
            _ => {
                LogFacts::keep_head(&mut log.request_head, self.rbuf.data());
            }
        }
        match plan.action {
            Action::Direct(..) | Action::Redirect { .. } => log.details = "direct_response",
            _ => {}
        }
        if !matches!(plan.action, Action::Proxy { .. }) {
            // The connection manager made an x-request-id for the request even though
            // it goes nowhere (Envoy logs it).
            let has = stream_info::find_header(&log.request_head, REQUEST_ID).is_some();
            if own_headers::generates_request_id(&l.own, &l.forwarding, has, plan.internal) && !has
            {
                LogFacts::add_header(&mut log.request_head, REQUEST_ID, &uuid_v4());
            }
        }
        log.head_in = plan.head_len as u64;
        log.local = Some(self.local);
        log.connection_id = self.id;
        // The request head is in; a body, if any, is still to come.
        log.request_done = (plan.framing.body == BodyKind::Empty).then_some(Duration::ZERO);
    }

    /// Feeds the finished request's record to the listener's stats and access log and
    /// its cluster's `upstream_rq_time` (by index: the record keeps names only to log).
    pub(super) fn complete<C: Connector>(&self, view: &WorkerView<C>, at: ChainRef) {
        if let Some(stats) = view.listener_stats.get(at.listener) {
            let cs = self.rec.cluster_index.and_then(|c| view.clusters.get(c));
            if let Some(c) = cs {
                c.stats.rq_time.record(self.rec.duration, &self.rec.phases);
            }
            if let Some(r) = self.rec.route_stats.and_then(|i| view.route_stats.get(i)) {
                r.charge(&route_stats::Ended {
                    status: self.rec.status,
                    flag: self.rec.flag,
                    route_timeout: self.rec.route_timeout,
                    duration: self.rec.duration,
                    phases: &self.rec.phases,
                });
            }
            let cluster = cs.map_or("", |c| c.cfg.name.as_str());
            let istio = view.istio(at).map(|i| (i, cluster));
            let (log, kind) = (view.access_log(at), stream_info::Kind::Request);
            stream_info::complete(stats, log, istio, &self.rec, self.peer, kind);
        }
    }
}
