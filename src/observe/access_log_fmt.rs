//! Formats one access-log line from a finished stream's record (`StreamInfo`), as text or
//! as one JSON object. Runs on the worker, only for listeners that log, at the end of a
//! stream; it appends to the sink's batch buffer and uses one reused scratch buffer, so
//! a line allocates nothing once the buffers have grown.
//!
//! Values follow Envoy 1.40: an absent value is `-` in text and `null` as a typed JSON
//! value; numbers (status, bytes, durations, ids, attempts) are JSON numbers when the
//! JSON value is exactly one operator.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::access_log_format::{HeaderSource, LogField, Op};
use crate::config::access_log_json::{JsonNode, LogFormat};
use crate::http::flags::ResponseFlag;
use crate::http::h1::encode::push_u64;

use super::stream_info::{find_header, StreamInfo};

/// What one operator wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Nothing: the value is absent (`-`, or JSON `null`).
    Missing,
    Number,
    Str,
}

/// The stream and where it ran.
pub struct Ctx<'a> {
    pub rec: &'a StreamInfo,
    pub peer: SocketAddr,
    pub listener: &'a str,
}

/// Appends one line (with its newline) to `out`; `scratch` is reused between lines.
pub fn format_line(out: &mut Vec<u8>, scratch: &mut Vec<u8>, f: &LogFormat, cx: &Ctx<'_>) {
    match f {
        LogFormat::Text(t) => text(out, &t.fields, cx),
        LogFormat::Json(j) => json(out, scratch, &j.root, cx),
    }
    out.push(b'\n');
}

fn text(out: &mut Vec<u8>, fields: &[LogField], cx: &Ctx<'_>) {
    for field in fields {
        match field {
            LogField::Literal(s) => out.extend_from_slice(s.as_bytes()),
            LogField::Op { op, max } => {
                if one(out, op, *max, cx) == Kind::Missing {
                    out.push(b'-');
                }
            }
        }
    }
}

fn json(out: &mut Vec<u8>, scratch: &mut Vec<u8>, node: &JsonNode, cx: &Ctx<'_>) {
    match node {
        JsonNode::Object(members) => {
            out.push(b'{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(key.as_bytes());
                out.push(b':');
                json(out, scratch, value, cx);
            }
            out.push(b'}');
        }
        JsonNode::Constant(c) => out.extend_from_slice(c.as_bytes()),
        JsonNode::Format(t) => {
            scratch.clear();
            let kind = match t.single() {
                Some((op, max)) => one(scratch, op, max, cx),
                None => {
                    text(scratch, &t.fields, cx);
                    Kind::Str
                }
            };
            match kind {
                Kind::Missing => out.extend_from_slice(b"null"),
                Kind::Number => out.extend_from_slice(scratch),
                Kind::Str => json_string(out, scratch),
            }
        }
    }
}

/// Writes `s` as a JSON string: quotes, escapes, and U+FFFD for bytes that are not
/// UTF-8 (header values are peer bytes).
fn json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    out.push(b'"');
}

/// One operator, cut to `max` bytes (Envoy cuts bytes too).
fn one(out: &mut Vec<u8>, op: &Op, max: Option<usize>, cx: &Ctx<'_>) -> Kind {
    let mark = out.len();
    let kind = value(out, op, cx);
    if let Some(m) = max {
        out.truncate(mark.saturating_add(m).max(mark));
    }
    kind
}

fn num(out: &mut Vec<u8>, n: u64) -> Kind {
    push_u64(out, n);
    Kind::Number
}

fn bytes(out: &mut Vec<u8>, s: &[u8]) -> Kind {
    out.extend_from_slice(s);
    Kind::Str
}

fn nonempty(out: &mut Vec<u8>, s: &str) -> Kind {
    if s.is_empty() {
        Kind::Missing
    } else {
        bytes(out, s.as_bytes())
    }
}

fn addr(out: &mut Vec<u8>, a: Option<SocketAddr>, port: bool) -> Kind {
    match a {
        Some(a) if port => {
            let _ = write!(out, "{a}");
            Kind::Str
        }
        Some(a) => {
            let _ = write!(out, "{}", a.ip());
            Kind::Str
        }
        None => Kind::Missing,
    }
}

fn value(out: &mut Vec<u8>, op: &Op, cx: &Ctx<'_>) -> Kind {
    let r = cx.rec;
    let tls = r.tls.as_deref();
    let up_tls = r.upstream_tls.as_deref();
    match op {
        Op::StartTime(fmt) => match r.start {
            Some(t) => {
                match fmt {
                    Some(f) => strftime(out, t, f),
                    None => rfc3339(out, t),
                }
                Kind::Str
            }
            None => Kind::Missing,
        },
        Op::Protocol => nonempty(out, r.protocol),
        Op::ResponseCode => num(out, u64::from(r.status)),
        Op::ResponseCodeDetails => nonempty(out, details(r)),
        Op::ResponseFlags => {
            flags(out, r);
            Kind::Str
        }
        Op::BytesReceived => num(out, r.bytes_received.saturating_sub(r.log.head_in)),
        Op::BytesSent => num(out, r.bytes_sent.saturating_sub(r.log.head_out)),
        Op::Duration => num(out, r.duration.as_millis() as u64),
        Op::RequestDuration => match r.log.request_done {
            Some(d) => num(out, d.as_millis() as u64),
            None => Kind::Missing,
        },
        Op::ResponseDuration => match r.log.response_began {
            Some(d) => num(out, d.as_millis() as u64),
            None => Kind::Missing,
        },
        Op::UpstreamHost => addr(out, r.upstream, true),
        Op::UpstreamCluster => nonempty(out, r.cluster.as_deref().unwrap_or("")),
        Op::UpstreamRequestAttemptCount => {
            // The router counts an attempt once it has a cluster, host or not.
            let n = if r.log.attempts > 0 {
                r.log.attempts
            } else {
                u32::from(r.cluster.is_some())
            };
            num(out, u64::from(n))
        }
        Op::UpstreamLocalAddress => addr(out, r.log.upstream_local, true),
        Op::UpstreamTransportFailureReason => match r.log.transport_failure {
            Some(f) => {
                f.render(out);
                Kind::Str
            }
            None => Kind::Missing,
        },
        Op::RouteName => nonempty(out, r.log.route_name.as_deref().unwrap_or("")),
        Op::TraceId => match r.log.trace_id {
            Some(id) => {
                hex(out, &id);
                Kind::Str
            }
            None => Kind::Missing,
        },
        Op::DownstreamRemoteAddress => addr(out, Some(remote(r, cx.peer)), true),
        Op::DownstreamRemoteAddressWithoutPort => addr(out, Some(remote(r, cx.peer)), false),
        Op::DownstreamDirectRemoteAddress => addr(out, Some(cx.peer), true),
        Op::DownstreamDirectRemoteAddressWithoutPort => addr(out, Some(cx.peer), false),
        Op::DownstreamLocalAddress => addr(out, r.log.local, true),
        Op::DownstreamLocalAddressWithoutPort => addr(out, r.log.local, false),
        Op::DownstreamLocalPort => match r.log.local {
            Some(a) => num(out, u64::from(a.port())),
            None => Kind::Missing,
        },
        Op::DownstreamPeerUriSan => joined(out, tls.map(|t| &t.peer.uri)),
        Op::DownstreamPeerDnsSan => joined(out, tls.map(|t| &t.peer.dns)),
        Op::DownstreamTlsVersion => nonempty(out, tls.map_or("", |t| t.version)),
        Op::DownstreamTlsCipher => nonempty(out, tls.map_or("", |t| t.cipher)),
        Op::RequestedServerName => nonempty(out, tls.map_or("", |t| t.sni.as_str())),
        Op::UpstreamPeerUriSan => joined(out, up_tls.map(|t| &t.peer.uri)),
        Op::UpstreamPeerDnsSan => joined(out, up_tls.map(|t| &t.peer.dns)),
        Op::UpstreamLocalUriSan => nonempty(
            out,
            up_tls
                .and_then(|t| t.local_uri_san.as_deref())
                .unwrap_or(""),
        ),
        Op::UpstreamTlsVersion => nonempty(out, up_tls.map_or("", |t| t.version)),
        Op::UpstreamTlsCipher => nonempty(out, up_tls.map_or("", |t| t.cipher)),
        Op::ConnectionId => num(out, r.log.connection_id),
        Op::ListenerName => nonempty(out, cx.listener),
        Op::Hostname => hostname(out),
        Op::Header { src, main, alt } => {
            match header(r, *src, main).or_else(|| alt.as_deref().and_then(|a| header(r, *src, a)))
            {
                Some(v) => bytes(out, v),
                None => Kind::Missing,
            }
        }
    }
}

/// Lower-case hex, as Envoy prints a trace id.
fn hex(out: &mut Vec<u8>, b: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for x in b {
        out.push(DIGITS[usize::from(x >> 4)]);
        out.push(DIGITS[usize::from(x & 0xf)]);
    }
}

/// The trusted client address (from x-forwarded-for, without a port: Envoy's `:0`),
/// else the connection's peer.
fn remote(r: &StreamInfo, peer: SocketAddr) -> SocketAddr {
    match r.log.client {
        Some(ip) if ip != peer.ip() => (ip, 0).into(),
        _ => peer,
    }
}

/// A header of the kept request or response head, or a trailer; pseudo-headers come
/// from the record itself.
fn header<'a>(r: &'a StreamInfo, src: HeaderSource, name: &str) -> Option<&'a [u8]> {
    let nonempty = |s: &'a str| (!s.is_empty()).then_some(s.as_bytes());
    match (src, name) {
        (HeaderSource::Request, ":method") => nonempty(&r.method),
        (HeaderSource::Request, ":path") => nonempty(&r.path),
        (HeaderSource::Request, ":authority") => nonempty(&r.authority),
        (HeaderSource::Request, ":scheme") => {
            Some(if r.tls.is_some() { b"https" } else { b"http" })
        }
        (HeaderSource::Request, "user-agent") if r.log.request_head.is_empty() => {
            nonempty(&r.user_agent)
        }
        (HeaderSource::Request, n) => find_header(&r.log.request_head, n),
        // Envoy's response header map holds the status sent.
        (HeaderSource::Response, ":status") => status_text(r.status),
        (HeaderSource::Response, "content-length") if r.log.empty_local_reply => None,
        (HeaderSource::Response, n) => find_header(&r.log.response_head, n),
        (HeaderSource::Trailer, n) => find_header(&r.log.trailers, n),
    }
}

/// A status code's three digits (`None`: no response, or not a three-digit code).
fn status_text(status: u16) -> Option<&'static [u8]> {
    static DIGITS: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    if !(100..=999).contains(&status) {
        return None;
    }
    let all = DIGITS.get_or_init(|| {
        (0..1000)
            .flat_map(|c| format!("{c:03}").into_bytes())
            .collect()
    });
    let at = usize::from(status) * 3;
    all.get(at..at + 3)
}

/// Envoy's list rendering: values joined by `,`; absent when there are none.
fn joined(out: &mut Vec<u8>, values: Option<&Vec<String>>) -> Kind {
    match values {
        Some(v) if !v.is_empty() => {
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(s.as_bytes());
            }
            Kind::Str
        }
        _ => Kind::Missing,
    }
}

fn flags(out: &mut Vec<u8>, r: &StreamInfo) {
    let mut any = false;
    for f in r.flags().into_iter().flatten() {
        if any {
            out.push(b',');
        }
        out.extend_from_slice(f.as_str().as_bytes());
        any = true;
    }
    if !any {
        out.push(b'-');
    }
}

/// `%RESPONSE_CODE_DETAILS%`: what the path recorded, else Envoy's detail for the flag.
fn details(r: &StreamInfo) -> &'static str {
    if !r.log.details.is_empty() {
        return r.log.details;
    }
    match r.flag.unwrap_or(ResponseFlag::None) {
        ResponseFlag::NoRoute => "route_not_found",
        ResponseFlag::NoClusterFound => "cluster_not_found",
        ResponseFlag::NoHealthyUpstream => "no_healthy_upstream",
        ResponseFlag::UpstreamTimeout => "response_timeout",
        ResponseFlag::UpstreamOverflow => "upstream_reset_before_response_started{overflow}",
        ResponseFlag::UpstreamConnectFailure => {
            "upstream_reset_before_response_started{remote_connection_failure}"
        }
        ResponseFlag::UpstreamConnectionTermination => {
            "upstream_reset_before_response_started{connection_termination}"
        }
        ResponseFlag::RateLimited => "local_rate_limited",
        ResponseFlag::FaultInjected => "fault_filter_abort",
        ResponseFlag::UnauthorizedExternalService => "ext_authz_denied",
        ResponseFlag::UpstreamMaxStreamDurationReached => "upstream_max_stream_duration_reached",
        ResponseFlag::None if r.upstream.is_some() => "via_upstream",
        _ => "",
    }
}

fn hostname(out: &mut Vec<u8>) -> Kind {
    thread_local! {
        static HOST: String = {
            let mut b = [0u8; 256];
            // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
            // within it or truncates, and we stop at the first NUL either way.
            let rc = unsafe { libc::gethostname(b.as_mut_ptr().cast(), b.len()) };
            let n = b.iter().position(|c| *c == 0).unwrap_or(b.len());
            if rc == 0 { String::from_utf8_lossy(b.get(..n).unwrap_or_default()).into_owned() } else { String::new() }
        };
    }
    HOST.with(|h| nonempty(out, h))
}

/// Civil date and time of day (UTC) of `t`, and its nanoseconds.
fn civil(t: SystemTime) -> ([u64; 6], u32, u64) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        [
            year.max(0) as u64,
            month as u64,
            day as u64,
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
        ],
        d.subsec_nanos(),
        secs,
    )
}

fn two(out: &mut Vec<u8>, n: u64) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

/// The first `digits` digits of the nanoseconds.
fn fraction(out: &mut Vec<u8>, nanos: u32, digits: usize) {
    let s = [
        b'0' + (nanos / 100_000_000 % 10) as u8,
        b'0' + (nanos / 10_000_000 % 10) as u8,
        b'0' + (nanos / 1_000_000 % 10) as u8,
        b'0' + (nanos / 100_000 % 10) as u8,
        b'0' + (nanos / 10_000 % 10) as u8,
        b'0' + (nanos / 1_000 % 10) as u8,
        b'0' + (nanos / 100 % 10) as u8,
        b'0' + (nanos / 10 % 10) as u8,
        b'0' + (nanos % 10) as u8,
    ];
    out.extend_from_slice(s.get(..digits.min(9)).unwrap_or(&s));
}

/// Formats a time as `2026-11-24T04:05:06.789Z` (Envoy's default `START_TIME`).
pub fn rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    let ([y, mo, d, h, mi, s], nanos, _) = civil(t);
    push_u64(out, y);
    out.push(b'-');
    two(out, mo);
    out.push(b'-');
    two(out, d);
    out.push(b'T');
    two(out, h);
    out.push(b':');
    two(out, mi);
    out.push(b':');
    two(out, s);
    out.push(b'.');
    fraction(out, nanos, 3);
    out.push(b'Z');
}

/// `%START_TIME(fmt)%`: strftime's common specifiers in UTC, plus Envoy's `%s`,
/// `%f`/`%1f`..`%9f` (fractional seconds) and `%E3S`-style seconds with a fraction.
/// An unknown specifier is written as it is.
fn strftime(out: &mut Vec<u8>, t: SystemTime, fmt: &str) {
    let ([y, mo, d, h, mi, s], nanos, epoch) = civil(t);
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            continue;
        }
        // An optional digit count (`%3f`) or `E<digit>S` (`%E3S`).
        let mut digits = None;
        let mut extended = false;
        if chars.peek() == Some(&'E') {
            chars.next();
            extended = true;
        }
        if let Some(n) = chars.peek().and_then(|c| c.to_digit(10)) {
            chars.next();
            digits = Some(n as usize);
        }
        match chars.next() {
            Some('Y') => push_u64(out, y),
            Some('y') => two(out, y % 100),
            Some('m') => two(out, mo),
            Some('d') => two(out, d),
            Some('e') => {
                out.push(if d < 10 { b' ' } else { b'0' + (d / 10) as u8 });
                out.push(b'0' + (d % 10) as u8);
            }
            Some('H') => two(out, h),
            Some('M') => two(out, mi),
            Some('S') => {
                two(out, s);
                if extended {
                    out.push(b'.');
                    fraction(out, nanos, digits.unwrap_or(9));
                }
            }
            Some('s') => push_u64(out, epoch),
            Some('f') => fraction(out, nanos, digits.unwrap_or(9)),
            Some('z') => out.extend_from_slice(b"+0000"),
            Some('Z') => out.extend_from_slice(b"UTC"),
            Some('T') => {
                two(out, h);
                out.push(b':');
                two(out, mi);
                out.push(b':');
                two(out, s);
            }
            Some('F') => {
                push_u64(out, y);
                out.push(b'-');
                two(out, mo);
                out.push(b'-');
                two(out, d);
            }
            Some('%') => out.push(b'%'),
            other => {
                out.push(b'%');
                if extended {
                    out.push(b'E');
                }
                if let Some(n) = digits {
                    push_u64(out, n as u64);
                }
                if let Some(c) = other {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "access_log_fmt_tests.rs"]
mod tests;
