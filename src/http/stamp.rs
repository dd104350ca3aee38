//! The proxy's own per-message headers (a [`Stamp`]) and their values: `date`,
//! `x-envoy-upstream-service-time`, `x-request-id`, `x-envoy-expected-rq-timeout-ms` and
//! `x-envoy-external-address`, as Envoy's connection manager and router write them.
//! Which ones a message gets is decided in `own_headers`; a stamp rides in the message's
//! `filter::headers::Edits`, so every encoder that applies header edits writes it. Nothing here allocates on the HTTP/1 path: the date is formatted
//! into a per-thread buffer once a second (on the first response of that second; no
//! timer, so an idle worker never wakes for it), numbers, addresses and UUIDs into stack
//! buffers; the request id comes from the thread's `fastrand` generator (no lock, no
//! syscall). HTTP/2 responses reuse a per-thread `HeaderValue` of the date (a `Bytes`
//! clone) for the rest of the second.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::IpAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::observe::phases;
use crate::observe::trace::context::{self, Outgoing};

pub const DATE: &str = "date";
pub const SERVICE_TIME: &str = "x-envoy-upstream-service-time";
pub const REQUEST_ID: &str = "x-request-id";
pub const EXPECTED_TIMEOUT: &str = "x-envoy-expected-rq-timeout-ms";
pub const EXTERNAL_ADDRESS: &str = "x-envoy-external-address";
pub const GRPC_TIMEOUT: &str = "grpc-timeout";
pub const ATTEMPT_COUNT: &str = "x-envoy-attempt-count";
pub const RATELIMIT_LIMIT: &str = "x-ratelimit-limit";
pub const RATELIMIT_REMAINING: &str = "x-ratelimit-remaining";
pub const RATELIMIT_RESET: &str = "x-ratelimit-reset";

/// The local rate limit's `x-ratelimit-*` response headers (draft 03), appended as
/// Envoy's filter adds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub reset: u64,
}

/// When the upstream request gets an `x-request-id` (Envoy's `generate_request_id`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RequestId {
    #[default]
    Off,
    /// Only when the request has none.
    IfAbsent,
    /// Always a fresh one (an edge request, unless `preserve_external_request_id`).
    Always,
}

/// The proxy's own headers for one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp {
    /// Response: `date`, when the message has none.
    pub date: bool,
    /// Response: `x-envoy-upstream-service-time`, the milliseconds since this instant.
    /// Only proxied responses get it ([`Stamp::local_reply`] clears it).
    pub service_since: Option<Instant>,
    /// Request: `x-request-id`.
    pub request_id: RequestId,
    /// Request: `x-envoy-expected-rq-timeout-ms` (the route timeout).
    pub expected_timeout_ms: Option<u64>,
    /// Request: `x-envoy-external-address` (an edge request's client).
    pub external_address: Option<IpAddr>,
    /// Request: `grpc-timeout` in place of the client's (`router::timeouts`).
    pub grpc_timeout: Option<std::time::Duration>,
    /// Response: the `grpc-status` of a local reply's gRPC form when the reply's reason
    /// fixes it (`http::failure::Failure::grpc_status`); not a header of its own.
    pub grpc_status: Option<u8>,
    /// Request and response: `x-envoy-attempt-count`, the number of the try (the
    /// virtual host's `include_request_attempt_count` / `include_attempt_count_in_response`).
    pub attempt_count: Option<u32>,
    /// Response: `x-ratelimit-limit`, `-remaining` and `-reset`.
    pub ratelimit: Option<RateLimitHeaders>,
    /// Request: the proxy's span as the upstream's parent (`traceparent`, B3), when the
    /// connection manager traces (`observe::trace`).
    pub trace: Option<Outgoing>,
    /// Response: the debug header `x-outrigger-phases` (`proxy_headers.phases_header`),
    /// from these marks; written only once the upstream side filled them in.
    pub phases: Option<crate::observe::phases::Marks>,
    /// Request: the client is internal (`http::forwarding::is_internal`). Not written
    /// here: it chose the request's plan (`x-envoy-internal: true`) and makes it no edge
    /// request (no fresh `x-request-id`, no `x-envoy-external-address`).
    pub internal: bool,
}

impl Stamp {
    pub fn is_empty(&self) -> bool {
        *self == Stamp::default()
    }

    /// The stamp for a reply the proxy makes itself: no upstream service time.
    pub fn local_reply(mut self) -> Stamp {
        self.service_since = None;
        self.phases = None;
        self
    }

    /// True if an incoming header called `name` is dropped because the stamp writes
    /// its own value (Envoy sets these, replacing what came).
    pub fn replaces(&self, name: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        (self.service_since.is_some() && name.eq_ignore_ascii_case(SERVICE_TIME))
            || (self.request_id == RequestId::Always && name.eq_ignore_ascii_case(REQUEST_ID))
            || (self.expected_timeout_ms.is_some() && name.eq_ignore_ascii_case(EXPECTED_TIMEOUT))
            || (self.external_address.is_some() && name.eq_ignore_ascii_case(EXTERNAL_ADDRESS))
            || (self.grpc_timeout.is_some() && name.eq_ignore_ascii_case(GRPC_TIMEOUT))
            || (self.attempt_count.is_some() && name.eq_ignore_ascii_case(ATTEMPT_COUNT))
            || self.trace.as_ref().is_some_and(|t| t.replaces(name))
            || (self.phases.is_some() && name.eq_ignore_ascii_case(phases::HEADER))
    }

    /// Calls `emit` for every header the stamp adds; `has` tells whether the message
    /// (as it arrived) carries a header of that name.
    pub fn for_each(&self, has: impl Fn(&str) -> bool, mut emit: impl FnMut(&str, &str)) {
        if self.is_empty() {
            return;
        }
        if self.date && !has(DATE) {
            let d = http_date();
            emit(DATE, ascii(&d));
        }
        let mut num = [0u8; 20];
        if let Some(since) = self.service_since {
            let ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
            emit(SERVICE_TIME, decimal(&mut num, ms));
        }
        let id = match self.request_id {
            RequestId::Off => false,
            RequestId::IfAbsent => !has(REQUEST_ID),
            RequestId::Always => true,
        };
        if id {
            // The id tracing made for the request (its span's guid), else a fresh one;
            // Envoy keeps a request's trace decision in its UUID (`observe::trace`).
            let u = match self.trace {
                Some(t) => t.request_id.unwrap_or_else(|| {
                    let mut u = uuid_v4();
                    if let Some(c) = u.get_mut(14) {
                        *c = t.request_id_status;
                    }
                    u
                }),
                None => uuid_v4(),
            };
            emit(REQUEST_ID, ascii(&u));
        }
        if let Some(ms) = self.expected_timeout_ms {
            emit(EXPECTED_TIMEOUT, decimal(&mut num, ms));
        }
        if let Some(ip) = self.external_address {
            let mut buf = [0u8; 48];
            let len = {
                let mut cur = std::io::Cursor::new(&mut buf[..]);
                let _ = write!(cur, "{ip}");
                cur.position() as usize
            };
            emit(EXTERNAL_ADDRESS, ascii(buf.get(..len).unwrap_or_default()));
        }
        if let Some(n) = self.attempt_count {
            emit(ATTEMPT_COUNT, decimal(&mut num, u64::from(n)));
        }
        if let Some(t) = self.grpc_timeout {
            let mut buf = [0u8; 21];
            emit(GRPC_TIMEOUT, grpc_timeout(&mut buf, t));
        }
        if let Some(r) = self.ratelimit {
            emit(RATELIMIT_LIMIT, decimal(&mut num, r.limit));
            emit(RATELIMIT_REMAINING, decimal(&mut num, r.remaining));
            emit(RATELIMIT_RESET, decimal(&mut num, r.reset));
        }
        if let Some(t) = self.trace {
            t.for_each(&mut emit);
        }
        if let Some(mut m) = self.phases.filter(|m| m.wait_from.is_some()) {
            // The response head goes now: the upstream wait ends here at the latest.
            m.head_at = m.head_at.or_else(|| Some(Instant::now()));
            let mut buf = [0u8; 160];
            let n = m.header_value(&mut buf);
            emit(phases::HEADER, ascii(buf.get(..n).unwrap_or_default()));
        }
    }

    /// Writes the stamp into an HTTP/2 (or `http`) header map: replaced headers are
    /// overwritten, `date` is the thread's cached value.
    pub fn apply_to_map(&self, map: &mut http::HeaderMap) {
        if self.is_empty() {
            return;
        }
        if self.date && !map.contains_key(http::header::DATE) {
            map.insert(http::header::DATE, cached_date_value());
        }
        if self.trace.is_some_and(|t| t.propagation.b3) {
            // Stale parts of an incoming B3 context the new one does not write.
            map.remove(context::B3_PARENT_SPAN_ID);
            map.remove(context::B3_FLAGS);
        }
        let has = |n: &str| map.contains_key(n);
        let mut add: [Option<(&'static str, http::HeaderValue)>; 15] = Default::default();
        let mut k = 0;
        let no_date = Stamp {
            date: false,
            ..*self
        };
        no_date.for_each(has, |name, value| {
            let name = [
                SERVICE_TIME,
                REQUEST_ID,
                EXPECTED_TIMEOUT,
                EXTERNAL_ADDRESS,
                ATTEMPT_COUNT,
                GRPC_TIMEOUT,
                RATELIMIT_LIMIT,
                RATELIMIT_REMAINING,
                RATELIMIT_RESET,
                context::TRACEPARENT,
                context::B3,
                context::B3_TRACE_ID,
                context::B3_SPAN_ID,
                context::B3_SAMPLED,
                phases::HEADER,
            ]
            .into_iter()
            .find(|n| *n == name);
            if let (Some(name), Ok(v), Some(slot)) =
                (name, http::HeaderValue::from_str(value), add.get_mut(k))
            {
                *slot = Some((name, v));
                k += 1;
            }
        });
        for (name, value) in add.into_iter().flatten() {
            if name.starts_with("x-ratelimit-") {
                // Added, as Envoy's filter does (`addReferenceKey`).
                map.append(name, value);
            } else {
                map.insert(name, value);
            }
        }
    }
}

/// Bytes known to be ASCII (the formatters above write nothing else) as `&str`.
fn ascii(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

/// A `grpc-timeout` value as Envoy's `toGrpcTimeout` writes it: milliseconds while
/// they fit in 8 digits, else the coarsest of seconds, minutes and hours that does.
pub(crate) fn grpc_timeout(buf: &mut [u8; 21], d: std::time::Duration) -> &str {
    let mut n = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut unit = b'm';
    for (next, by) in [(b'S', 1000), (b'M', 60), (b'H', 60)] {
        if n <= 99_999_999 {
            break;
        }
        n /= by;
        unit = next;
    }
    let n = n.min(99_999_999);
    let mut num = [0u8; 20];
    let digits = decimal(&mut num, n).as_bytes();
    let len = digits.len();
    if let Some(slot) = buf.get_mut(..len) {
        slot.copy_from_slice(digits);
    }
    if let Some(u) = buf.get_mut(len) {
        *u = unit;
    }
    ascii(buf.get(..=len).unwrap_or_default())
}

/// The decimal form of `n` in `buf`.
pub(crate) fn decimal(buf: &mut [u8; 20], mut n: u64) -> &str {
    let mut i = buf.len();
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        i -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    ascii(buf.get(i..).unwrap_or_default())
}

/// A random (version 4) UUID in Envoy's lower-case 8-4-4-4-12 form, from the thread's
/// generator.
pub fn uuid_v4() -> [u8; 36] {
    let mut bytes = fastrand::u128(..).to_be_bytes();
    // Version 4, variant 10xx (RFC 9562 section 5.4).
    if let Some(b) = bytes.get_mut(6) {
        *b = (*b & 0x0f) | 0x40;
    }
    if let Some(b) = bytes.get_mut(8) {
        *b = (*b & 0x3f) | 0x80;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex = |n: u8| HEX.get(usize::from(n & 0xf)).copied().unwrap_or(b'0');
    let mut out = [b'-'; 36];
    // Each byte's two digits, skipping the dashes before bytes 4, 6, 8 and 10.
    let mut at = 0;
    for (i, b) in bytes.into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        if let Some([hi, lo]) = out.get_mut(at..at + 2) {
            *hi = hex(b >> 4);
            *lo = hex(b);
        }
        at += 2;
    }
    out
}

thread_local! {
    /// The second the cached date is for, and its IMF-fixdate form.
    static DATE_CACHE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    /// The same as an HTTP/2 header value.
    static DATE_VALUE: RefCell<Option<(u64, http::HeaderValue)>> = const { RefCell::new(None) };
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The current time as an HTTP date (`Tue, 01 Dec 2026 06:38:12 GMT`), formatted at
/// most once a second per thread.
pub fn http_date() -> [u8; 29] {
    let now = unix_now();
    DATE_CACHE.with(|c| {
        let (at, text) = c.get();
        if at == now {
            return text;
        }
        let text = format_http_date(now);
        c.set((now, text));
        text
    })
}

/// The date as a header value, rebuilt at most once a second per thread.
fn cached_date_value() -> http::HeaderValue {
    let now = unix_now();
    DATE_VALUE.with(|c| {
        let mut c = c.borrow_mut();
        match &*c {
            Some((at, v)) if *at == now => v.clone(),
            _ => {
                let v = http::HeaderValue::from_bytes(&http_date())
                    .unwrap_or_else(|_| http::HeaderValue::from_static(""));
                *c = Some((now, v.clone()));
                v
            }
        }
    })
}

/// IMF-fixdate (RFC 9110 section 5.6.7) of a Unix time in seconds.
pub fn format_http_date(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hour, min, sec) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar, in
    // 400-year eras starting on March 1st).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    let two = |n: u64| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    let name = DAYS.get((days % 7) as usize).copied().unwrap_or(b"Thu");
    let mon = MONTHS
        .get((month.saturating_sub(1)) as usize)
        .copied()
        .unwrap_or(b"Jan");
    let y = [
        b'0' + (year / 1000 % 10) as u8,
        b'0' + (year / 100 % 10) as u8,
        b'0' + (year / 10 % 10) as u8,
        b'0' + (year % 10) as u8,
    ];
    let parts: [(usize, &[u8]); 8] = [
        (0, name),
        (5, &two(day)),
        (8, mon),
        (12, &y),
        (17, &two(hour)),
        (20, &two(min)),
        (23, &two(sec)),
        (26, b"GMT"),
    ];
    for (at, bytes) in parts {
        if let Some(dst) = out.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)]
mod tests {
    use super::*;

    #[test]
    fn formats_http_dates() {
        assert_eq!(&format_http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &format_http_date(1_796_107_092),
            b"Tue, 01 Dec 2026 06:38:12 GMT"
        );
        assert_eq!(
            &format_http_date(951_782_400),
            b"Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            &format_http_date(4_102_444_799),
            b"Thu, 31 Dec 2099 23:59:59 GMT"
        );
    }

    #[test]
    fn uuids_are_version_4() {
        let a = uuid_v4();
        let b = uuid_v4();
        assert_ne!(a, b);
        let s = std::str::from_utf8(&a).unwrap();
        let parts: Vec<&str> = s.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{s}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{s}");
        assert!(s
            .bytes()
            .all(|c| c == b'-' || c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }

    #[test]
    fn stamp_writes_and_replaces() {
        let s = Stamp {
            request_id: RequestId::IfAbsent,
            expected_timeout_ms: Some(15000),
            external_address: Some("127.0.0.1".parse().unwrap()),
            ..Stamp::default()
        };
        let mut got = Vec::new();
        s.for_each(
            |n| n == REQUEST_ID,
            |n, v| got.push((n.to_string(), v.to_string())),
        );
        assert_eq!(
            got,
            [
                (EXPECTED_TIMEOUT.to_string(), "15000".to_string()),
                (EXTERNAL_ADDRESS.to_string(), "127.0.0.1".to_string())
            ]
        );
        assert!(!s.replaces("X-Request-Id"));
        assert!(s.replaces("X-Envoy-Expected-Rq-Timeout-Ms"));
        let mut map = http::HeaderMap::new();
        map.insert("x-envoy-external-address", "9.9.9.9".parse().unwrap());
        Stamp {
            date: true,
            request_id: RequestId::Always,
            ..s
        }
        .apply_to_map(&mut map);
        assert_eq!(map["x-envoy-external-address"], "127.0.0.1");
        assert_eq!(map["x-request-id"].len(), 36);
        assert_eq!(map["date"].len(), 29);
    }
}
