//! The self-time breakdown of a request: how long it spent in each phase of the
//! proxy's path, counted into per-core histograms (merged at scrape time, as the
//! request-duration histogram is) and, when asked for, written into a debug response
//! header (`x-outrigger-phases`).
//!
//! The phases, in the order a request goes through them:
//!
//! | phase | from | to |
//! |---|---|---|
//! | `accept_queue` | the accept | the first request's head parse starts (once per connection: listener filters, TLS handshake, the executor's queue, the first bytes) |
//! | `parse` | the head parse starts | the head is parsed (HTTP/2: the codec's checks of a decoded head) |
//! | `filters` | the head is parsed | the HTTP filters and the router decided |
//! | `upstream_connect` | a new upstream connection is asked for | it is up (TCP and TLS; zero on a pooled connection) |
//! | `upstream_wait` | the request is sent (whole) and a connection is up | the response head is ready to go downstream |
//! | `response_write` | the response head is ready | the stream ends (head and body written downstream) |
//!
//! The request path only stores timestamps it mostly takes anyway (the route clock's,
//! the stream clocks'); what this module adds per request is the two marks around the
//! head parse and one at the end. Nothing here allocates, locks or touches an atomic:
//! the histograms (`stats::PhaseStats`) are plain per-core `Cell` counters.

use std::time::{Duration, Instant};

/// Upper bounds of the phase histograms, in microseconds: finer than the request
/// duration's, since a proxy's own phases take microseconds.
pub const PHASE_BUCKETS_US: [u64; 20] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 30_000_000,
];

/// The phases' names, as the metrics' `phase` label and the header's keys use them.
pub const PHASE_NAMES: [&str; PHASE_COUNT] = [
    "accept_queue",
    "parse",
    "filters",
    "upstream_connect",
    "upstream_wait",
    "response_write",
];
pub const PHASE_COUNT: usize = 6;

pub const QUEUE: usize = 0;
pub const PARSE: usize = 1;
const FILTERS: usize = 2;
const CONNECT: usize = 3;
pub const WAIT: usize = 4;
const WRITE: usize = 5;

/// The debug response header that carries a request's phases up to its response head.
pub const HEADER: &str = "x-outrigger-phases";

/// The marks one request's path takes; [`Marks::times`] turns them into durations.
/// A phase the request never entered (a local reply has no upstream phases) stays
/// `None` and is not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// The connection's accept, on its first request only.
    pub accepted: Option<Instant>,
    /// The head parse began.
    pub parse_start: Option<Instant>,
    /// The head was parsed.
    pub parsed: Option<Instant>,
    /// The filters and the router decided.
    pub decided: Option<Instant>,
    /// Time spent opening upstream connections (zero when a pooled one was used).
    pub connect: Option<Duration>,
    /// The request went whole to a connection that is up: the upstream's turn.
    pub wait_from: Option<Instant>,
    /// The response head is ready to go downstream.
    pub head_at: Option<Instant>,
}

/// One request's phase durations (`None`: not entered), in [`PHASE_NAMES`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times(pub [Option<Duration>; PHASE_COUNT]);

impl Times {
    /// Of a request's `total` duration, the part after the filters (upstream connect,
    /// request body, waiting, response): Envoy's `upstream_rq_time`, for a request that
    /// got an upstream response head (`None` otherwise).
    pub fn upstream(&self, total: Duration) -> Option<Duration> {
        self.0.get(WAIT).copied().flatten()?;
        let before = |i: usize| self.0.get(i).copied().flatten().unwrap_or_default();
        Some(total.saturating_sub(before(PARSE) + before(FILTERS)))
    }
}

fn between(a: Option<Instant>, b: Option<Instant>) -> Option<Duration> {
    Some(b?.saturating_duration_since(a?))
}

impl Marks {
    /// The durations, the stream having ended at `end` (`None`: the phases up to the
    /// response head only, for the debug header).
    pub fn times(&self, end: Option<Instant>) -> Times {
        let mut t = [None; PHASE_COUNT];
        t[QUEUE] = between(self.accepted, self.parse_start);
        t[PARSE] = between(self.parse_start, self.parsed);
        t[FILTERS] = between(self.parsed, self.decided);
        t[CONNECT] = self.connect;
        t[WAIT] = between(self.wait_from, self.head_at);
        t[WRITE] = between(self.head_at, end);
        Times(t)
    }

    /// Takes the upstream side's marks (`Progress::phase_marks`), if the request got
    /// that far (a connection up, or the request sent whole).
    pub fn set_upstream(
        &mut self,
        (connect, wait_from, head_at): (Duration, Option<Instant>, Option<Instant>),
    ) {
        if wait_from.is_none() && connect.is_zero() {
            return;
        }
        self.connect = Some(connect);
        self.wait_from = wait_from;
        self.head_at = head_at;
    }

    /// These marks with the upstream side's (see [`Marks::set_upstream`]).
    pub fn with_upstream(mut self, up: (Duration, Option<Instant>, Option<Instant>)) -> Marks {
        self.set_upstream(up);
        self
    }

    /// Writes the header's value (`parse=12us,filters=3us,...`, entered phases only)
    /// into `buf`; returns its length.
    pub fn header_value(&self, buf: &mut [u8; 160]) -> usize {
        use std::io::Write;
        let t = self.times(None);
        let mut cur = std::io::Cursor::new(&mut buf[..]);
        let mut first = true;
        for (name, d) in PHASE_NAMES.iter().zip(t.0) {
            let Some(d) = d else { continue };
            let sep = if first { "" } else { "," };
            first = false;
            let _ = write!(cur, "{sep}{name}={}us", d.as_micros());
        }
        cur.position() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_become_phases_and_a_header() {
        let t0 = Instant::now();
        let us = Duration::from_micros;
        let m = Marks {
            accepted: None,
            parse_start: Some(t0),
            parsed: Some(t0 + us(12)),
            decided: Some(t0 + us(15)),
            connect: Some(Duration::ZERO),
            wait_from: Some(t0 + us(20)),
            head_at: Some(t0 + us(1020)),
        };
        let t = m.times(Some(t0 + us(1030)));
        assert_eq!(t.0[QUEUE], None);
        assert_eq!(t.0[PARSE], Some(us(12)));
        assert_eq!(t.0[FILTERS], Some(us(3)));
        assert_eq!(t.0[WAIT], Some(us(1000)));
        assert_eq!(t.0[WRITE], Some(us(10)));
        let mut buf = [0u8; 160];
        let n = m.header_value(&mut buf);
        assert_eq!(
            &buf[..n],
            b"parse=12us,filters=3us,upstream_connect=0us,upstream_wait=1000us"
        );
    }
}
