//! Messages between the control executor and the workers (glommio shared channels).

use std::sync::Arc;
use std::time::Duration;

use socket2::Socket;

use crate::config::Snapshot;
use crate::observe::stats::StatsReport;

/// Control -> worker.
pub enum ToWorker {
    /// Switch to this snapshot. `sockets` holds this worker's socket for every listener
    /// that is new or moved to a new address; the worker keeps the rest.
    Config {
        snapshot: Arc<Snapshot>,
        sockets: Vec<(String, Socket)>,
    },
    /// Send a `FromWorker::Stats`.
    StatsRequest,
    /// An endpoint's new active health-check flags (the checker runs on the control
    /// executor, once per process).
    Health(crate::health::Update),
    /// An endpoint ejected or brought back by outlier detection (decided on the
    /// control executor, once per process).
    Outlier(crate::outlier::Update),
    /// Stop accepting, finish in-flight requests, exit within `timeout`.
    Drain { timeout: Duration },
}

/// Worker -> control.
pub enum FromWorker {
    /// The worker now serves this config version.
    Applied(u64),
    Stats(Box<StatsReport>),
    /// This cluster had its first request on this worker (sent once per cluster name).
    ClusterUsed(String),
    /// A consecutive-failure run of an endpoint reached its threshold on this worker
    /// (sent once per event, never per request).
    Outlier(crate::outlier::Event),
}
