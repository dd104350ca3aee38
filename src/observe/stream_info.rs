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

use super::istio::cells::Amounts;
use super::istio::{IstioStats, Reporter, StreamFacts as IstioFacts};
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
    /// The retry state's own flag (`URX`: the retries ran out; `UO`: the circuit
    /// breakers refused one), logged before `flag` as Envoy does (`URX,UF`).
    pub retry_flag: Option<ResponseFlag>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: Duration,
    pub upstream: Option<SocketAddr>,
    pub cluster: Option<Arc<str>>,
    /// The cluster's index in the snapshot (HTTP/1 sets it for every proxied request;
    /// the name above only when logging).
    pub cluster_index: Option<usize>,
    /// The route's stats (`observe::route_stats`, an index into
    /// `WorkerView::route_stats`) when the router picked a cluster for a route that
    /// keeps them.
    pub route_stats: Option<usize>,
    /// The downstream connection's TLS facts (kept across its requests).
    pub tls: Option<std::rc::Rc<crate::tls::TlsInfo>>,
    /// The TLS facts of the upstream connection the last try used, kept only when the
    /// chain wants them ([`UpstreamWants::tls`]).
    pub upstream_tls: Option<std::rc::Rc<crate::tls::TlsInfo>>,
    /// A gRPC request (`content-type: application/grpc*`), and the `grpc-status` its
    /// response carried when the path knows it (Istio's `request_protocol` and
    /// `grpc_response_status`).
    pub grpc: bool,
    pub grpc_status: Option<u16>,
    /// The route timeout ran out (`route_stats::Ended::route_timeout`).
    pub route_timeout: bool,
    /// How long the request spent in each phase (`observe::phases`).
    pub phases: super::phases::Times,
    /// What only the access log reads (filled only when the listener logs).
    pub log: LogFacts,
}

/// Which facts of a try's upstream connection a stream's record keeps, decided per
/// chain when the config is built, so that no other stream asks the connection: its
/// local address (`%UPSTREAM_LOCAL_ADDRESS%`, a `getsockname` per new HTTP/1
/// connection) and its TLS facts (`%UPSTREAM_PEER_URI_SAN%` and the other upstream TLS
/// operators, and an outbound Istio reporter's principals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamWants {
    pub local: bool,
    pub tls: bool,
}

/// Which heads an HTTP/2 stream copies for its access log, decided per chain when the
/// config is built (`config::AccessLog`): the request head as it went upstream whenever
/// the chain logs, the response head when the format prints a response header, the
/// trailers when it prints a trailer. A stream without a log copies nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseWants {
    pub request: bool,
    pub head: bool,
    pub trailers: bool,
}

/// The facts only the access log reads. The head buffers keep their capacity across a
/// connection's requests, so a keep-alive connection copies heads without allocating.
#[derive(Default)]
pub struct LogFacts {
    /// The request head as it went upstream (after the filter chain's edits), or as it
    /// came in when it did not go upstream: a start line, then `name: value` lines.
    pub request_head: Vec<u8>,
    /// The response head as sent downstream, in the same form.
    pub response_head: Vec<u8>,
    /// The response trailers, as `name: value` lines after an empty start line.
    pub trailers: Vec<u8>,
    /// Envoy's `%RESPONSE_CODE_DETAILS%` when the path knows it (empty: derived from
    /// the flag at format time).
    pub details: &'static str,
    /// The client address the connection manager trusts (from `x-forwarded-for` when
    /// so configured), when the request was routed to a cluster.
    pub client: Option<std::net::IpAddr>,
    /// The response is a local reply without a body: its `content-length: 0` is the
    /// codec's, which Envoy does not log as a response header.
    pub empty_local_reply: bool,
    /// The downstream connection's local address and its id (`%CONNECTION_ID%`).
    pub local: Option<SocketAddr>,
    pub connection_id: u64,
    /// Upstream attempts made (`%UPSTREAM_REQUEST_ATTEMPT_COUNT%`).
    pub attempts: u32,
    /// Since the start: the request was complete / the response began.
    pub request_done: Option<Duration>,
    pub response_began: Option<Duration>,
    /// The HTTP/1 head bytes within `bytes_received` / `bytes_sent`: Envoy's
    /// `%BYTES_RECEIVED%`/`%BYTES_SENT%` of an HTTP stream count body bytes only.
    pub head_in: u64,
    pub head_out: u64,
    /// The matched route's `name` (`%ROUTE_NAME%`; none: unnamed or no route).
    pub route_name: Option<Arc<str>>,
    /// The trace id of the request's span, when tracing sampled it (`%TRACE_ID%`).
    pub trace_id: Option<[u8; 16]>,
    /// The local address of the upstream connection the response came on
    /// (`%UPSTREAM_LOCAL_ADDRESS%`), known per connection, not looked up per request.
    pub upstream_local: Option<SocketAddr>,
    /// Why the connection to the upstream failed (`%UPSTREAM_TRANSPORT_FAILURE_REASON%`).
    pub transport_failure: Option<super::transport_failure::TransportFailure>,
}

impl LogFacts {
    /// Resets for the next request; the buffers keep their capacity.
    pub fn clear(&mut self) {
        self.request_head.clear();
        self.response_head.clear();
        self.trailers.clear();
        self.details = "";
        self.attempts = 0;
        self.request_done = None;
        self.response_began = None;
        self.head_in = 0;
        self.head_out = 0;
        self.client = None;
        self.empty_local_reply = false;
        self.route_name = None;
        self.trace_id = None;
        self.upstream_local = None;
        self.transport_failure = None;
    }

    /// The route's name and the span's trace id, as the stream ends.
    pub fn note_route(&mut self, route: Option<&Arc<str>>, trace_id: Option<[u8; 16]>) {
        self.route_name = route.cloned();
        self.trace_id = trace_id;
    }

    /// Adds a header line to a kept head (before its blank line).
    pub fn add_header(head: &mut Vec<u8>, name: &str, value: &[u8]) {
        if head.ends_with(b"\r\n\r\n") {
            head.truncate(head.len() - 2);
        }
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n\r\n");
    }

    /// Keeps a copy of a message head (start line and header lines, up to the blank
    /// line; body bytes after it are not copied). Returns the head's length.
    pub fn keep_head(into: &mut Vec<u8>, data: &[u8]) -> u64 {
        into.clear();
        let end = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(data.len(), |i| i + 4);
        into.extend_from_slice(data.get(..end).unwrap_or(data));
        into.len() as u64
    }
}

/// A new connection's id for `%CONNECTION_ID%`: a per-worker count (no atomic is
/// shared between workers) from a random base in the high bits, so that ids of
/// different workers are unlikely to meet. Never 0, which stands for none.
pub fn next_connection_id() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static NEXT: Cell<u64> = Cell::new((u64::from(fastrand::u16(..)) << 40) + 1);
    }
    NEXT.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    })
}

/// Keeps an HTTP/2 header map in the head form [`find_header`] reads.
pub fn keep_header_map(into: &mut Vec<u8>, h: &http::HeaderMap) {
    into.clear();
    into.extend_from_slice(b"-\r\n");
    for (name, value) in h {
        into.extend_from_slice(name.as_str().as_bytes());
        into.extend_from_slice(b": ");
        into.extend_from_slice(value.as_bytes());
        into.extend_from_slice(b"\r\n");
    }
    into.extend_from_slice(b"\r\n");
}

/// The first value of header `name` (lower-case) in a head kept by [`LogFacts`]: its
/// first line is skipped, the blank line ends it. Never panics on any bytes.
pub fn find_header<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut lines = head.split(|b| *b == b'\n');
    lines.next();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (n, v) = line.split_at(colon);
        if n.eq_ignore_ascii_case(name.as_bytes()) {
            let v = v.get(1..).unwrap_or_default();
            return Some(v.trim_ascii());
        }
    }
    None
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
        self.log.clear();
    }

    /// An upstream's response head went to the client (encoded at the front of `out`):
    /// what the access log reads of it, and when it went.
    pub fn upstream_head_out(&mut self, out: &[u8]) {
        let log = &mut self.log;
        log.head_out = LogFacts::keep_head(&mut log.response_head, out);
        log.details = "via_upstream";
        log.response_began = self
            .start
            .and_then(|t| SystemTime::now().duration_since(t).ok());
    }

    /// The stream's flags, each once, in the order they were set, which is Envoy's
    /// order in its short string (1.40 keeps them as they come: `DI,FI`, `URX,UC`): a
    /// filter's (the fault filter's `DI`, before the request was routed), the retry
    /// state's (when a retry was refused), then the one that ended the stream.
    pub fn flags(&self) -> [Option<ResponseFlag>; 3] {
        ordered_flags(self.filter_flag, self.retry_flag, self.flag)
    }

    /// Resets only what every stream sets (cheap; for connections without a log).
    pub fn reset_counts(&mut self) {
        self.status = 0;
        self.flag = None;
        self.filter_flag = None;
        self.retry_flag = None;
        self.bytes_received = 0;
        self.bytes_sent = 0;
        self.duration = Duration::ZERO;
        self.grpc = false;
        self.grpc_status = None;
        self.cluster_index = None;
        self.route_stats = None;
        self.upstream_tls = None;
        self.route_timeout = false;
        self.phases = super::phases::Times::default();
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

/// Records a finished stream: the listener's counters always, Istio's metrics when the
/// chain has an `istio_stats` filter (with the name of the stream's cluster, empty for
/// none), its access log line when the listener has one.
pub fn complete<L: StreamLog>(
    stats: &ListenerStats,
    log: Option<&L>,
    istio: Option<(&IstioStats, &str)>,
    info: &StreamInfo,
    peer: SocketAddr,
    kind: Kind,
) {
    stats.bytes_received.add(info.bytes_received);
    stats.bytes_sent.add(info.bytes_sent);
    let flag = info.flag.unwrap_or(ResponseFlag::None);
    for f in info.flags().into_iter().flatten().filter(|f| *f != flag) {
        if let Some(c) = stats.rq_flags.get(f as usize) {
            c.inc();
        }
    }
    match kind {
        Kind::Request => {
            stats.request_done(info.status, flag, info.duration.as_micros() as u64);
            stats.phases.record(&info.phases);
        }
        Kind::Connection => {
            if flag != ResponseFlag::None {
                if let Some(c) = stats.rq_flags.get(flag as usize) {
                    c.inc();
                }
            }
        }
    }
    if let Some((cfg, cluster)) = istio {
        istio_record(stats, cfg, cluster, info, kind);
    }
    if let Some(sink) = log {
        sink.log(info, peer);
    }
}

/// A stream's flags once each, in the order they were set (`StreamInfo::flags`): a
/// filter's, the retry state's, the one that ended the stream.
pub fn ordered_flags(
    filter: Option<ResponseFlag>,
    retry: Option<ResponseFlag>,
    main: Option<ResponseFlag>,
) -> [Option<ResponseFlag>; 3] {
    let some = |f: Option<ResponseFlag>| f.filter(|f| *f != ResponseFlag::None);
    let filter = some(filter);
    let retry = some(retry).filter(|f| Some(*f) != filter);
    let main = some(main).filter(|f| Some(*f) != filter && Some(*f) != retry);
    [filter, retry, main]
}

/// Envoy's `ResponseFlagUtils::toShortString` of the stream's flags, in `buf`.
fn short_flags<'b>(info: &StreamInfo, buf: &'b mut [u8; 24]) -> &'b str {
    let mut n = 0;
    for f in info.flags().into_iter().flatten() {
        let name = f.as_str().as_bytes();
        let sep = usize::from(n > 0);
        let Some(out) = buf.get_mut(n..n + sep + name.len()) else {
            break;
        };
        let (comma, rest) = out.split_at_mut(sep);
        comma.copy_from_slice(&b","[..sep]);
        rest.copy_from_slice(name);
        n += sep + name.len();
    }
    match buf.get(..n) {
        Some(b) if n > 0 => std::str::from_utf8(b).unwrap_or("-"),
        _ => "-",
    }
}

/// Counts the stream into the listener's Istio series (allocates only for a label
/// combination this core has not seen).
fn istio_record(
    stats: &ListenerStats,
    cfg: &IstioStats,
    cluster: &str,
    info: &StreamInfo,
    kind: Kind,
) {
    let mut buf = [0u8; 24];
    let flags = short_flags(info, &mut buf);
    // The client side's peer is the upstream: its certificate, and the one this proxy
    // presented to it (istio_stats.cc reads the upstream connection there).
    let tls = match cfg.reporter {
        Reporter::Source => info.upstream_tls.as_deref(),
        _ => info.tls.as_deref(),
    };
    let (peer_san, local_san) = tls.map_or(("", ""), |t| {
        (
            t.peer.uri.first().map_or("", String::as_str),
            t.local_uri_san.as_deref().unwrap_or(""),
        )
    });
    let facts = IstioFacts {
        cluster,
        host: &info.authority,
        peer_san,
        local_san,
        http: (kind == Kind::Request).then_some(info.grpc),
        status: info.status,
        grpc_status: info.grpc_status,
        flags,
    };
    let amounts = Amounts {
        duration_ms: info.duration.as_millis() as u64,
        bytes_received: info.bytes_received,
        bytes_sent: info.bytes_sent,
    };
    stats.istio.record(cfg, &facts, amounts);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_come_once_each_in_the_order_they_were_set() {
        let mut info = StreamInfo {
            flag: Some(ResponseFlag::UpstreamConnectionTermination),
            retry_flag: Some(ResponseFlag::UpstreamRetryLimitExceeded),
            ..StreamInfo::default()
        };
        let mut buf = [0u8; 24];
        assert_eq!(short_flags(&info, &mut buf), "URX,UC");
        info.filter_flag = Some(ResponseFlag::DelayInjected);
        assert_eq!(short_flags(&info, &mut buf), "DI,URX,UC");
        // A retriable response that went out as it was: one URX.
        info.flag = Some(ResponseFlag::UpstreamRetryLimitExceeded);
        info.filter_flag = None;
        assert_eq!(short_flags(&info, &mut buf), "URX");
        info = StreamInfo::default();
        assert_eq!(short_flags(&info, &mut buf), "-");
        info.flag = Some(ResponseFlag::None);
        assert_eq!(short_flags(&info, &mut buf), "-");
    }
}
