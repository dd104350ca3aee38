//! One record of what happened to a stream (an HTTP request, or a TCP-proxied
//! connection): timings, bytes, status, response flag, upstream host, protocol. Every
//! protocol path fills one and hands it to [`complete`], the single place that feeds the
//! listener's stats and its access log. The log is reached through [`StreamLog`], which
//! `access_log::LogSink` implements, so that this record does not depend on the log
//! that formats it.
//!
//! The numbers are always kept; the strings (method, path, authority, user agent) are
//! filled only when the listener has an access log, so a path without one copies none.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::stats::ListenerStats;
use crate::http::flags::ResponseFlag;

/// What one stream did.
#[derive(Default)]
pub struct StreamInfo {
    pub start: Option<SystemTime>,
    pub method: String,
    pub path: String,
    pub authority: String,
    pub user_agent: String,
    pub protocol: &'static str,
    /// Status sent to the client (0: none was).
    pub status: u16,
    pub flag: Option<ResponseFlag>,
    /// A flag a filter recorded without ending the stream (the fault filter's `DI`),
    /// logged and counted beside `flag`.
    pub filter_flag: Option<ResponseFlag>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: Duration,
    pub upstream: Option<SocketAddr>,
    pub cluster: Option<Arc<str>>,
    /// The downstream connection's TLS facts (kept across its requests).
    pub tls: Option<std::rc::Rc<crate::tls::TlsInfo>>,
}

impl StreamInfo {
    /// Resets the record for the next request on a keep-alive connection; the strings
    /// keep their capacity.
    pub fn clear(&mut self) {
        self.start = None;
        self.method.clear();
        self.path.clear();
        self.authority.clear();
        self.user_agent.clear();
        self.reset_counts();
        self.upstream = None;
        self.cluster = None;
    }

    /// Resets only what every stream sets (cheap; for connections without a log).
    pub fn reset_counts(&mut self) {
        self.status = 0;
        self.flag = None;
        self.filter_flag = None;
        self.bytes_received = 0;
        self.bytes_sent = 0;
        self.duration = Duration::ZERO;
    }
}

/// Where a finished stream's record goes when its listener has an access log.
pub trait StreamLog {
    fn log(&self, info: &StreamInfo, peer: SocketAddr);
}

/// What kind of stream finished: an HTTP request counts as a request; a TCP-proxied
/// connection counts only its bytes and flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Connection,
}

/// Records a finished stream: the listener's counters always, its access log line when
/// the listener has one.
pub fn complete<L: StreamLog>(
    stats: &ListenerStats,
    log: Option<&L>,
    info: &StreamInfo,
    peer: SocketAddr,
    kind: Kind,
) {
    stats.bytes_received.add(info.bytes_received);
    stats.bytes_sent.add(info.bytes_sent);
    let flag = info.flag.unwrap_or(ResponseFlag::None);
    if let Some(f) = info.filter_flag.filter(|f| *f != flag) {
        if let Some(c) = stats.rq_flags.get(f as usize) {
            c.inc();
        }
    }
    match kind {
        Kind::Request => stats.request_done(info.status, flag, info.duration.as_micros() as u64),
        Kind::Connection => {
            if flag != ResponseFlag::None {
                if let Some(c) = stats.rq_flags.get(flag as usize) {
                    c.inc();
                }
            }
        }
    }
    if let Some(sink) = log {
        sink.log(info, peer);
    }
}
