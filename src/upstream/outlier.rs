//! Outlier detection on the request path (Envoy's `DetectorHostMonitorImpl::putResult`):
//! what a try's outcome means for its endpoint.
//!
//! Called by the attempt loop (`request::run`: connects, resets, per-try timeouts,
//! retried response heads) and by the adapters for the final response head
//! (`request::count_response`). A cluster without `outlier_detection` pays one branch.
//! The consecutive runs are process-wide atomics (`config::outlier::HostCounters`);
//! the interval detectors' request counts are this core's `Cell`s, gathered by the
//! control executor once per interval. A run that reaches its threshold queues an
//! event here and rings the worker's alarm: its housekeeping sends the event to the
//! control executor (`FromWorker::Outlier`), which decides the ejection.

use std::cell::Cell;

use crate::config::outlier::Consecutive;

use super::cluster::ClusterState;

/// A try's outcome, as Envoy's router reports it to a host's outlier monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response head with this status (Envoy: `putHttpResponseCode`).
    Status(u16),
    /// The connection was made (`LOCAL_ORIGIN_CONNECT_SUCCESS`).
    Connected,
    /// The connect failed, or the upstream reset or broke the protocol before a
    /// response head (`LOCAL_ORIGIN_CONNECT_FAILED`: a 503 without the split).
    ConnectFailed,
    /// A per-try or route timeout before the response head (`LOCAL_ORIGIN_TIMEOUT`:
    /// a 504 without the split).
    Timeout,
}

fn inc(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

impl<C: 'static> ClusterState<C> {
    /// Records a try's outcome for endpoint `ep`.
    pub fn outlier(&self, ep: usize, outcome: Outcome) {
        let Some(o) = self.cfg.outlier.as_deref() else {
            return;
        };
        let (Some(h), Some(rate)) = (o.hosts.get(ep), self.rates.get(ep)) else {
            return;
        };
        let cfg = &o.cfg;
        let status = |s: u16| {
            inc(&rate.external_total);
            if !(500..600).contains(&s) {
                inc(&rate.external_success);
            }
            h.http_status(cfg, s, |k| self.outlier_event(ep, k));
        };
        if !cfg.split_external_local_origin_errors {
            // Everything is an HTTP status (Envoy's `resultToHttpCode`); a connection
            // made says nothing about the response.
            match outcome {
                Outcome::Status(s) => status(s),
                Outcome::Connected => {}
                Outcome::ConnectFailed => status(503),
                Outcome::Timeout => status(504),
            }
            return;
        }
        match outcome {
            Outcome::Status(s) => status(s),
            Outcome::Connected => {
                inc(&rate.local_total);
                inc(&rate.local_success);
                h.local_success();
            }
            Outcome::ConnectFailed | Outcome::Timeout => {
                inc(&rate.local_total);
                if h.local_failure(cfg) {
                    self.outlier_event(ep, Consecutive::LocalOriginFailure);
                }
            }
        }
    }

    /// A run reached its threshold: queued for the control executor (rare: once per
    /// run of failures, not per request).
    #[cold]
    fn outlier_event(&self, ep: usize, kind: Consecutive) {
        self.outlier_events.borrow_mut().push((ep, kind));
        if let Some(a) = self.alarm.get() {
            a.ring_at(std::time::Instant::now());
        }
    }

    /// The events queued since the last call, with their endpoint's address.
    pub fn take_outlier_events(&self) -> Vec<(std::net::SocketAddr, Consecutive)> {
        let events = std::mem::take(&mut *self.outlier_events.borrow_mut());
        events
            .into_iter()
            .filter_map(|(ep, k)| Some((self.cfg.endpoints.get(ep)?.addr, k)))
            .collect()
    }
}
