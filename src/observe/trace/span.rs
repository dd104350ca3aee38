//! A sampled request's span while the request runs: one record with the span's fixed
//! facts (ids, times, name) and a slot per standard tag, all values in one text buffer.
//!
//! Envoy's connection manager tags every span with the same keys (`Key`), each set
//! once per request, so the span keeps a fixed array of ranges into its text instead of
//! a list of keys and values: setting a tag is a store, not a search of the tags set so
//! far, and the span costs two allocations (the record and its text) where the list
//! made it three. Only `custom_tags` have keys of their own, kept by their index in the
//! config (no allocation when none are configured). The exporter's encoding reads the
//! slots in `Key` order (`otlp.rs`), then hands the record back to its worker, which
//! starts a later span in it (`ActiveSpan::reuse`) instead of allocating one.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;

use super::model::Tracing;

/// The standard span tags, in the order they are exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    RequestId,
    HttpUrl,
    HttpMethod,
    DownstreamCluster,
    UserAgent,
    HttpProtocol,
    PeerAddress,
    ClientTraceId,
    NodeId,
    Zone,
    RequestSize,
    ResponseSize,
    Component,
    UpstreamCluster,
    UpstreamClusterName,
    HttpStatusCode,
    ResponseFlags,
    Error,
    UpstreamAddress,
}

/// How many `Key`s there are.
const KEYS: usize = 19;

impl Key {
    const ALL: [Key; KEYS] = [
        Key::RequestId,
        Key::HttpUrl,
        Key::HttpMethod,
        Key::DownstreamCluster,
        Key::UserAgent,
        Key::HttpProtocol,
        Key::PeerAddress,
        Key::ClientTraceId,
        Key::NodeId,
        Key::Zone,
        Key::RequestSize,
        Key::ResponseSize,
        Key::Component,
        Key::UpstreamCluster,
        Key::UpstreamClusterName,
        Key::HttpStatusCode,
        Key::ResponseFlags,
        Key::Error,
        Key::UpstreamAddress,
    ];

    /// The tag's name, as Envoy's (`Tracing::Tags`).
    pub fn name(self) -> &'static str {
        match self {
            Key::RequestId => "guid:x-request-id",
            Key::HttpUrl => "http.url",
            Key::HttpMethod => "http.method",
            Key::DownstreamCluster => "downstream_cluster",
            Key::UserAgent => "user_agent",
            Key::HttpProtocol => "http.protocol",
            Key::PeerAddress => "peer.address",
            Key::ClientTraceId => "guid:x-client-trace-id",
            Key::NodeId => "node_id",
            Key::Zone => "zone",
            Key::RequestSize => "request_size",
            Key::ResponseSize => "response_size",
            Key::Component => "component",
            Key::UpstreamCluster => "upstream_cluster",
            Key::UpstreamClusterName => "upstream_cluster.name",
            Key::HttpStatusCode => "http.status_code",
            Key::ResponseFlags => "response_flags",
            Key::Error => "error",
            Key::UpstreamAddress => "upstream_address",
        }
    }

    fn of(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// An address to tag: a peer's IP, or an upstream's socket address.
#[derive(Debug, Clone, Copy)]
pub enum Addr {
    Ip(IpAddr),
    Socket(SocketAddr),
}

/// A tag's value: a range of the span's text (`start == UNSET`: not set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: u32,
    end: u32,
}

const UNSET: Range = Range {
    start: u32::MAX,
    end: u32::MAX,
};

/// What a span's text usually holds (ids, the URL, addresses, sizes): enough that it
/// is allocated once.
const TEXT_BYTES: usize = 384;

/// The largest text, and the most custom slots, a record kept for reuse may have
/// (`ActiveSpan::fits_spare`).
const SPARE_TEXT_BYTES: usize = 4 * TEXT_BYTES;
const SPARE_CUSTOM: usize = 32;

/// A sampled request's span.
pub struct ActiveSpan {
    pub(super) tracing: Arc<Tracing>,
    pub(super) trace_id: [u8; 16],
    pub(super) span_id: [u8; 8],
    pub(super) parent: Option<[u8; 8]>,
    pub(super) start: SystemTime,
    /// When `trace::finish` closed it (`start` until then).
    pub(super) end: SystemTime,
    pub(super) name: Cow<'static, str>,
    /// The tags' values, one after the other.
    text: String,
    /// Each standard tag's value, by `Key`.
    tags: [Range; KEYS],
    /// Each of the config's `custom_tags`' values whose key is not a standard one.
    custom: Vec<Range>,
}

impl ActiveSpan {
    /// A record for `tracing`'s spans, its text allocated; `reuse` sets its facts.
    pub(super) fn blank(tracing: &Arc<Tracing>) -> Box<ActiveSpan> {
        Box::new(ActiveSpan {
            tracing: tracing.clone(),
            trace_id: [0; 16],
            span_id: [0; 8],
            parent: None,
            start: SystemTime::UNIX_EPOCH,
            end: SystemTime::UNIX_EPOCH,
            name: Cow::Borrowed(""),
            text: String::with_capacity(TEXT_BYTES),
            tags: [UNSET; KEYS],
            custom: Vec::new(),
        })
    }

    /// A new span in `self`, a blank record or an exported one (its text's and custom
    /// slots' allocations kept): every fact of the span is set here.
    pub(super) fn reuse(
        mut self: Box<ActiveSpan>,
        tracing: &Arc<Tracing>,
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent: Option<[u8; 8]>,
    ) -> Box<ActiveSpan> {
        if !Arc::ptr_eq(&self.tracing, tracing) {
            self.tracing = tracing.clone();
        }
        self.trace_id = trace_id;
        self.span_id = span_id;
        self.parent = parent;
        self.start = SystemTime::now();
        self.end = self.start;
        self.name = Cow::Borrowed(tracing.kind.operation());
        self.text.clear();
        self.tags = [UNSET; KEYS];
        self.custom.clear();
        self.custom.resize(tracing.custom_tags.len(), UNSET);
        self
    }

    /// Whether the record may wait in its worker's spare queue for a later span: not
    /// when a request made its text (or custom slots) grow far past what a span
    /// usually holds, which a worker would otherwise keep for good, up to the queue's
    /// length, from one long header per record.
    pub(super) fn fits_spare(&self) -> bool {
        self.text.capacity() <= SPARE_TEXT_BYTES && self.custom.capacity() <= SPARE_CUSTOM
    }

    /// The span's trace id (the access log's `%TRACE_ID%`).
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The upstream cluster the route chose (`upstream_cluster` and
    /// `upstream_cluster.name`).
    pub fn set_cluster(&mut self, name: &str) {
        let at = self.mark();
        self.text.push_str(name);
        self.close(Key::UpstreamCluster, at);
        self.close(Key::UpstreamClusterName, at);
    }

    /// Where the next value starts in the text.
    pub(super) fn mark(&self) -> u32 {
        u32::try_from(self.text.len()).unwrap_or(u32::MAX)
    }

    /// The text written since `at` is `k`'s value (Envoy's `setTag`: a later value
    /// replaces an earlier one).
    pub(super) fn close(&mut self, k: Key, at: u32) {
        let end = self.mark();
        if let Some(slot) = self.tags.get_mut(k as usize) {
            *slot = Range { start: at, end };
        }
    }

    /// The text the value being written goes into.
    pub(super) fn text(&mut self) -> &mut String {
        &mut self.text
    }

    pub(super) fn put(&mut self, k: Key, v: &str) {
        let at = self.mark();
        self.text.push_str(v);
        self.close(k, at);
    }

    /// A header's value, as text (invalid UTF-8 replaced).
    pub(super) fn put_lossy(&mut self, k: Key, v: &[u8]) {
        let at = self.mark();
        push_lossy(&mut self.text, v);
        self.close(k, at);
    }

    pub(super) fn put_u64(&mut self, k: Key, n: u64) {
        let at = self.mark();
        push_u64(&mut self.text, n);
        self.close(k, at);
    }

    /// An address, as Rust and Envoy print it (`10.0.0.1`, `10.0.0.1:80`,
    /// `[::1]:80`): an IPv4 one without `fmt`, an IPv6 one through it.
    pub(super) fn put_addr(&mut self, k: Key, addr: Addr) {
        let at = self.mark();
        let (ip, port) = match addr {
            Addr::Ip(ip) => (ip, None),
            Addr::Socket(a) => (a.ip(), Some(a.port())),
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, o) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.text.push('.');
                    }
                    push_u64(&mut self.text, u64::from(o));
                }
                if let Some(p) = port {
                    self.text.push(':');
                    push_u64(&mut self.text, u64::from(p));
                }
            }
            IpAddr::V6(_) => {
                let _ = match addr {
                    Addr::Ip(ip) => write!(self.text, "{ip}"),
                    Addr::Socket(a) => write!(self.text, "{a}"),
                };
            }
        }
        self.close(k, at);
    }

    /// The value of the config's `custom_tags[i]`, in the slot of the standard tag of
    /// the same name if there is one.
    pub(super) fn put_custom(&mut self, i: usize, v: &[u8]) {
        let Some(name) = self.tracing.custom_tags.get(i).map(|c| c.tag()) else {
            return;
        };
        if let Some(k) = Key::of(name) {
            return self.put_lossy(k, v);
        }
        let at = self.mark();
        push_lossy(&mut self.text, v);
        let end = self.mark();
        if let Some(slot) = self.custom.get_mut(i) {
            *slot = Range { start: at, end };
        }
    }

    /// A value's bytes. Slicing the bytes checks the range against the text's length
    /// only, which the record holds: the text itself is not read (a `str`'s slice
    /// reads it to check character boundaries, which every range here is on anyway).
    fn value(&self, r: Range) -> &[u8] {
        self.text
            .as_bytes()
            .get(r.start as usize..r.end as usize)
            .unwrap_or_default()
    }

    /// The span's attributes as key and value: the standard tags set, in `Key` order,
    /// then the custom ones. Each value is text (the ranges are written whole `str`s);
    /// the exporter's lengths read no more than the record (`value`).
    pub fn attribute_bytes(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let standard = Key::ALL
            .iter()
            .zip(self.tags.iter())
            .filter(|(_, r)| r.start != u32::MAX)
            .map(|(k, r)| (k.name(), self.value(*r)));
        let custom = self
            .tracing
            .custom_tags
            .iter()
            .zip(self.custom.iter())
            .filter(|(_, r)| r.start != u32::MAX)
            .map(|(c, r)| (c.tag(), self.value(*r)));
        standard.chain(custom)
    }

    /// [`ActiveSpan::attribute_bytes`] as text.
    #[cfg(test)]
    pub fn attributes(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
        self.attribute_bytes()
            .map(|(k, v)| (k, String::from_utf8_lossy(v)))
    }

    /// Asks the CPU to start loading the record into the cache, ahead of the
    /// exporter's encoding. A record reaches the exporter tens of milliseconds after
    /// its worker wrote it, out of the cache by then: the first loads of the record
    /// and of its text were a fifth of the exporter thread's samples, each miss waited
    /// out in turn (docs/tracing.md).
    pub(super) fn prefetch_record(&self) {
        let size = std::mem::size_of::<Self>();
        prefetch((self as *const ActiveSpan).cast(), size);
    }

    /// As [`ActiveSpan::prefetch_record`], for the span's text (found through the
    /// record, so the record should be in the cache first).
    pub(super) fn prefetch_text(&self) {
        prefetch(self.text.as_ptr(), self.text.len());
    }
}

/// Prefetches the cache lines of `len` bytes at `p` (nothing off x86-64).
fn prefetch(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for at in (0..len).step_by(64) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint: it reads nothing the program sees and never
        // faults, whatever the address (`wrapping_add` keeps it a mere computation).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(at).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// Appends `n` in decimal, without `fmt`'s machinery (a span's four numbers and its
/// IPv4 addresses' octets went through it).
fn push_u64(s: &mut String, n: u64) {
    s.push_str(crate::http::stamp::decimal(&mut [0; 20], n));
}

/// Appends `v` as text: as it is when it is UTF-8, else with replacement characters.
pub(super) fn push_lossy(s: &mut String, v: &[u8]) {
    match std::str::from_utf8(v) {
        Ok(v) => s.push_str(v),
        Err(_) => s.push_str(&String::from_utf8_lossy(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::trace::context::Propagation;
    use crate::observe::trace::model::{Collector, SpanKind};

    /// A tracing config with nothing of its own (the records' tests set their tags).
    fn tracing() -> Arc<Tracing> {
        Arc::new(Tracing {
            kind: SpanKind::Server,
            random_sampling: 0,
            client_sampling: 0,
            overall_sampling: 0,
            propagation: Propagation::default(),
            custom_tags: vec![],
            max_path_tag_length: 256,
            node_id: String::new(),
            zone: String::new(),
            collector: Arc::new(Collector {
                addr: ([127, 0, 0, 1], 1).into(),
                authority: String::new(),
                path: String::new(),
                grpc: false,
                service_name: String::new(),
                batch_spans: 1,
                flush_interval: std::time::Duration::from_secs(1),
                queue_spans: 1,
            }),
        })
    }

    /// A record whose text a long header grew is not kept for reuse; a usual one is.
    #[test]
    fn only_records_of_usual_size_are_kept_spare() {
        let t = tracing();
        let mut span = ActiveSpan::blank(&t).reuse(&t, [1; 16], [1; 8], None);
        span.put_lossy(Key::UserAgent, b"curl/8.5.0");
        assert!(span.fits_spare());
        span.put_lossy(Key::UserAgent, &[b'a'; 10_000]);
        assert!(!span.fits_spare());
        let span = span.reuse(&t, [2; 16], [2; 8], None);
        assert!(!span.fits_spare(), "reuse keeps the grown text");
    }

    /// Numbers and addresses are written as `fmt` writes them.
    #[test]
    fn numbers_and_addresses_print_as_fmt_does() {
        let t = tracing();
        let mut span = ActiveSpan::blank(&t).reuse(&t, [1; 16], [1; 8], None);
        let get = |s: &ActiveSpan, k: Key| {
            s.attributes()
                .find(|(n, _)| *n == k.name())
                .map(|(_, v)| v.to_string())
        };
        for n in [0, 7, 10, 404, 65_535, u64::MAX] {
            span.put_u64(Key::RequestSize, n);
            assert_eq!(get(&span, Key::RequestSize), Some(n.to_string()));
        }
        let addrs: [SocketAddr; 4] = [
            "10.0.255.1:80".parse().unwrap(),
            "0.0.0.0:0".parse().unwrap(),
            "[2001:db8::1]:8443".parse().unwrap(),
            "[fe80::1%2]:80".parse().unwrap(),
        ];
        for a in addrs {
            span.put_addr(Key::UpstreamAddress, Addr::Socket(a));
            assert_eq!(get(&span, Key::UpstreamAddress), Some(a.to_string()));
            span.put_addr(Key::PeerAddress, Addr::Ip(a.ip()));
            assert_eq!(get(&span, Key::PeerAddress), Some(a.ip().to_string()));
        }
    }
}
