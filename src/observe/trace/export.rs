//! The span exporter: a plain thread (`outrigger-trace`) that takes finished spans from
//! the workers, batches them and sends them to the collector over OTLP/HTTP
//! (`POST /v1/traces`, protobuf) or OTLP/gRPC (`TraceService/Export` over HTTP/2).
//!
//! A worker never waits for it: each worker has its own bounded lock-free queue
//! (crossbeam's `ArrayQueue`, used single-producer single-consumer), made on its first
//! sampled span, and hands over the span's record as it finished it: the thread encodes
//! the spans (`otlp::encode_after`) and gives each record back to its worker through a second
//! queue (`Lane::spare`), where `trace::start` takes it for a later span, so the worker
//! neither allocates a span nor frees one made on another thread. A span that finds
//! the queue full is dropped and counted (`tracing.opentelemetry.spans_dropped`). The
//! worker wakes the thread only when its queue was empty (the first span of a batch)
//! or reaches a batch, so a busy worker does not pay a wake-up per span; an idle
//! exporter sleeps without a timer. Exports to one collector start at least
//! `EXPORT_GAP` (100 ms) apart unless `PROMPT_SPANS` (256) are waiting, and after an
//! export the thread sleeps the gap out, so a traced proxy sends one request per
//! 100 ms or per 256 spans, not one per five spans, and the exporter wakes about twice
//! per request.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use super::span::ActiveSpan;
use super::Collector;

/// One worker's queues: its finished spans to the thread, exported records back (at
/// most two prompt exports' worth, about 350 KiB at the default 256).
struct Lane {
    /// Each span with its collector's address (`Arc::as_ptr`), by which the thread
    /// batches it without reading the record (`run`).
    spans: ArrayQueue<(Box<ActiveSpan>, usize)>,
    spare: ArrayQueue<Box<ActiveSpan>>,
}

/// The exporter's counters, as Envoy's `tracing.opentelemetry.*` stats.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub spans_sent: u64,
    pub spans_dropped: u64,
    pub export_failures: u64,
}

struct Shared {
    queues: Mutex<Vec<Arc<Lane>>>,
    thread: Thread,
    sent: AtomicU64,
    dropped: AtomicU64,
    failures: AtomicU64,
    /// The exporter sleeps with no batch pending (no timer): the next span must wake
    /// it. While a batch is pending its flush timer wakes it, and spans wait for that.
    idle: AtomicBool,
    /// The exporter holds a full batch back for at most `EXPORT_GAP` (`run`) and will
    /// wake by itself to send it: a span that fills another batch meanwhile must not
    /// wake it again.
    paced: AtomicBool,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// The most spans one export request carries (OpenTelemetry SDKs' default
/// `max_export_batch_size`), unless `batch_spans` asks for more.
const MAX_EXPORT_SPANS: usize = 512;

/// A batch this large goes at once, whatever the gap (`EXPORT_GAP`), and a worker's
/// queue this full wakes the thread for it: at 20k spans a second an export every
/// 13 ms. Larger batches cost more per span (the spans are colder by the time they
/// are encoded: 512-span exports cost 1.8 us per span at 20k/s where ~200-span ones
/// cost 1.2-1.5), smaller ones more per export.
const PROMPT_SPANS: usize = 256;

/// How long a batch that reached `batch_spans` waits after its collector's last export
/// started, unless it holds `PROMPT_SPANS`, which go at once. An export costs the
/// thread a fixed ~85 us (two sleeps, a write and the collector's answer) on top of
/// the spans' own cost: at Envoy's `min_flush_spans` (5) that fixed cost was most of
/// tracing's CPU per request. With this gap a proxy sends at most ten requests a
/// second below ~2.5k spans a second, and one per `PROMPT_SPANS` above it (at 5k
/// traced requests a second a 10 ms gap left the exporter at 2.4 us per request, 50
/// spans sharing each export's cost; docs/tracing.md). A span waits at most this much
/// longer than it would in Envoy, whose own flush interval is 5 s.
const EXPORT_GAP: Duration = Duration::from_millis(100);

thread_local! {
    static QUEUE: OnceCell<Option<Arc<Lane>>> = const { OnceCell::new() };
}

/// The exporter's counters (`None`: no span was ever sampled, the thread never ran).
pub fn report() -> Option<Report> {
    SHARED.get().map(|s| Report {
        spans_sent: s.sent.load(Ordering::Relaxed),
        spans_dropped: s.dropped.load(Ordering::Relaxed),
        export_failures: s.failures.load(Ordering::Relaxed),
    })
}

fn shared() -> Option<&'static Shared> {
    if let Some(s) = SHARED.get() {
        return Some(s);
    }
    let handle = std::thread::Builder::new()
        .name("outrigger-trace".into())
        .spawn(run)
        .ok()?;
    let s = SHARED.get_or_init(|| Shared {
        queues: Mutex::new(Vec::new()),
        thread: handle.thread().clone(),
        sent: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        idle: AtomicBool::new(false),
        paced: AtomicBool::new(false),
    });
    // Two threads racing here start two exporters; the loser's finds `SHARED` set to
    // the winner and reads the same queues, which is harmless (both drain and send).
    s.thread.unpark();
    Some(s)
}

/// An exported span's record, for this thread's next span (`None`: none came back yet).
pub fn spare() -> Option<Box<ActiveSpan>> {
    QUEUE.with(|q| q.get().and_then(Option::as_ref).and_then(|l| l.spare.pop()))
}

/// Hands a finished span to the exporter; never blocks.
pub fn submit(span: Box<ActiveSpan>) {
    let collector = &span.tracing.collector;
    let cap = collector.queue_spans.max(1);
    let batch = collector.batch_spans.max(1);
    let prompt = prompt(collector);
    let key = Arc::as_ptr(collector) as usize;
    QUEUE.with(|q| {
        let q = q.get_or_init(|| {
            let s = shared()?;
            // Records enough for two prompt exports in flight come back; more (after a
            // burst that filled the queue) are freed, not kept for good.
            let q = Arc::new(Lane {
                spans: ArrayQueue::new(cap),
                spare: ArrayQueue::new(cap.min(prompt.saturating_mul(2))),
            });
            if let Ok(mut all) = s.queues.lock() {
                all.push(q.clone());
            }
            Some(q)
        });
        let (Some(lane), Some(s)) = (q, SHARED.get()) else {
            return;
        };
        let q = &lane.spans;
        if q.push((span, key)).is_err() {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Wake the exporter only when a batch is full, or when it sleeps without a
        // timer; otherwise the pending batch's flush timer collects this span, so a
        // sampled request costs no futex wake (and no context switch) of its own. The
        // span that fills half the queue, or a full export request, wakes it even while
        // it sleeps out its gap (`EXPORT_GAP`): it then sends those spans, so a worker
        // faster than the queue holds in one gap (Envoy's `max_cache_size`, 1024 under
        // a bootstrap, is 100 ms of 10k spans a second) loses none to the gap.
        let len = q.len();
        let wake = (len >= batch && !s.paced.load(Ordering::Relaxed))
            || len == q.capacity().div_ceil(2).min(prompt)
            || (s.idle.load(Ordering::Relaxed) && s.idle.swap(false, Ordering::AcqRel));
        if wake {
            s.thread.unpark();
        }
    });
}

/// The spans pending for one collector, since the first of them came, and the lane
/// (the index in `run`'s `queues`) each came from.
struct Batch {
    collector: Arc<Collector>,
    first: Instant,
    /// Boxed as the workers made them: each record goes back to its worker whole.
    #[allow(clippy::vec_box)]
    spans: Vec<Box<ActiveSpan>>,
    lanes: Vec<usize>,
}

/// The pending batch of `c`: the same `Arc`, or failing that an equal collector (a
/// reload's new `Arc` for the same one), or a new batch.
fn batch_for<'p>(pending: &'p mut Vec<Batch>, c: &Arc<Collector>) -> Option<&'p mut Batch> {
    let at = pending
        .iter()
        .position(|b| Arc::ptr_eq(&b.collector, c))
        .or_else(|| pending.iter().position(|b| b.collector == *c));
    let at = at.unwrap_or_else(|| {
        pending.push(Batch {
            collector: c.clone(),
            first: Instant::now(),
            spans: Vec::new(),
            lanes: Vec::new(),
        });
        pending.len() - 1
    });
    pending.get_mut(at)
}

/// The exporter thread: drain every queue into per-collector batches; send a batch
/// when it is full or its flush interval has passed since its first span.
fn run() {
    let s = loop {
        match SHARED.get() {
            Some(s) => break s,
            None => std::thread::park(),
        }
    };
    // Each collector's pending batch, found by its `Arc` (a few collectors at most: a
    // scan of pointers costs less per span than hashing the collector's strings).
    let mut pending: Vec<Batch> = Vec::new();
    // Each export request, head (or gRPC framing) and body, written again for each
    // (its allocation kept), and its spans' lengths (`otlp::encode_after`).
    let mut body = Vec::new();
    let mut lens = Vec::new();
    // OTLP/HTTP: each collector's kept-alive connection.
    let mut kept: HashMap<std::net::SocketAddr, TcpStream> = HashMap::new();
    let mut queues: Vec<Arc<Lane>> = Vec::new();
    // When each collector's last export started (`EXPORT_GAP`).
    let mut last: HashMap<std::net::SocketAddr, Instant> = HashMap::new();
    loop {
        if let Ok(all) = s.queues.lock() {
            if all.len() != queues.len() {
                queues.clone_from(&all);
            }
        }
        for (lane, q) in queues.iter().enumerate() {
            // Take at most one queue's worth per pass, so a busy worker cannot keep the
            // thread from sending.
            // A span joins the batch of its collector's `Arc` by the address its worker
            // gave, without a read of its record: records come here out of the cache,
            // and reading each in turn stalled the thread on each (a tenth of its
            // samples); the encoding reads them with prefetches ahead
            // (`otlp::encode_after`). A span with no such batch yet is read.
            for _ in 0..q.spans.capacity() {
                let Some((f, key)) = q.spans.pop() else { break };
                let known = pending
                    .iter()
                    .position(|b| Arc::as_ptr(&b.collector) as usize == key);
                let b = match known {
                    Some(at) => pending.get_mut(at),
                    None => batch_for(&mut pending, &f.tracing.collector),
                };
                if let Some(b) = b {
                    b.spans.push(f);
                    b.lanes.push(lane);
                }
            }
        }
        let now = Instant::now();
        // A full batch goes once `EXPORT_GAP` has passed since its collector's last
        // export, or at once when it fills an export request; until then it is held
        // (`held`: when it may go).
        let mut held: Option<Instant> = None;
        let mut due = Vec::new();
        let mut i = 0;
        while let Some(b) = pending.get(i) {
            let c = &b.collector;
            let go = if now.duration_since(b.first) >= c.flush_interval {
                true
            } else if b.spans.len() < c.batch_spans.max(1) {
                false
            } else if b.spans.len() >= prompt(c) {
                true
            } else {
                match last.get(&c.addr).map(|t| *t + EXPORT_GAP) {
                    Some(at) if at > now => {
                        held = Some(held.map_or(at, |h| h.min(at)));
                        false
                    }
                    _ => true,
                }
            };
            if go {
                due.push(pending.swap_remove(i));
            } else {
                i += 1;
            }
        }
        let exported = !due.is_empty();
        for Batch {
            collector: c,
            mut spans,
            mut lanes,
            ..
        } in due
        {
            last.insert(c.addr, Instant::now());
            {
                // Everything pending goes in one request, as Envoy's flush does (its
                // `min_flush_spans` starts a flush, it does not size it), up to
                // `MAX_EXPORT_SPANS`: behind a slow collector, a backlog cut into
                // 5-span requests would fall further behind.
                let per_request = c.batch_spans.max(MAX_EXPORT_SPANS);
                while !spans.is_empty() {
                    let take = spans.len().min(per_request);
                    let n = take as u64;
                    body.clear();
                    let batch = spans.get(..take).unwrap_or(&[]);
                    super::otlp::encode_after(
                        &c.service_name,
                        batch,
                        &mut lens,
                        &mut body,
                        |n, out| {
                            if c.grpc {
                                crate::http::grpc_frame::put_prefix(n, out);
                            } else {
                                http_head(&c, n, out);
                            }
                        },
                    );
                    // Each record goes back to its worker for a later span (one grown
                    // past a span's usual size, or finding the spare queue full, is
                    // freed here).
                    for (span, lane) in spans.drain(..take).zip(lanes.drain(..take)) {
                        if let Some(l) = queues.get(lane).filter(|_| span.fits_spare()) {
                            let _ = l.spare.push(span);
                        }
                    }
                    let sent = if c.grpc {
                        post_grpc(&c, &body)
                    } else {
                        let mut conn = kept.remove(&c.addr);
                        let sent = post(&c, &body, &mut conn);
                        if let Some(conn) = conn {
                            kept.insert(c.addr, conn);
                        }
                        sent
                    };
                    match sent {
                        Ok(()) => s.sent.fetch_add(n, Ordering::Relaxed),
                        Err(e) => {
                            tracing::debug!(collector = %c.addr, error = %e, "span export failed");
                            s.failures.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }
        }
        // After an export, and while a full batch waits for its gap, sleep the gap out
        // without being woken for the spans that arrive meanwhile: they go with the
        // next export. A busy proxy's exporter then wakes once per export (and once
        // more for the collector's answer), where waking for the span that filled a
        // batch, then again at the gap, cost four context switches per export, most
        // of the exporter's CPU.
        let nap = if exported {
            Some(Instant::now() + EXPORT_GAP)
        } else {
            held
        };
        if let Some(at) = nap {
            s.paced.store(true, Ordering::Relaxed);
            std::thread::park_timeout(at.saturating_duration_since(Instant::now()));
            s.paced.store(false, Ordering::Relaxed);
            continue;
        }
        if queues.iter().any(|q| !q.spans.is_empty()) {
            continue;
        }
        // Sleep until a worker wakes us, or the oldest batch is due.
        let next = pending
            .iter()
            .map(|b| {
                (b.first + b.collector.flush_interval).saturating_duration_since(Instant::now())
            })
            .min();
        match next {
            Some(d) => std::thread::park_timeout(d.max(Duration::from_millis(1))),
            None => {
                // Say so before the last look at the queues: a span pushed after the
                // look sees `idle` and unparks (an unpark before `park` is not lost).
                s.idle.store(true, Ordering::Release);
                if queues.iter().any(|q| !q.spans.is_empty()) {
                    s.idle.store(false, Ordering::Relaxed);
                    continue;
                }
                std::thread::park();
                s.idle.store(false, Ordering::Relaxed);
            }
        }
    }
}

/// How many waiting spans make a batch for `c` go at once, whatever the gap (and wake
/// the thread for it): `PROMPT_SPANS`, or `batch_spans` when that is more (a batch
/// below it does not go before its flush interval anyway).
fn prompt(c: &Collector) -> usize {
    PROMPT_SPANS.max(c.batch_spans)
}

/// An OTLP/HTTP export request's head, for a body of `len` bytes.
fn http_head(c: &Collector, len: usize, out: &mut Vec<u8>) {
    // Writing into a `Vec` cannot fail.
    let _ = write!(
        out,
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-protobuf\r\n\
         content-length: {len}\r\n\r\n",
        c.path, c.authority,
    );
}

/// One OTLP/HTTP export (`req`: the request, head and body), answered 2xx, on the
/// collector's kept-alive connection in `kept` when there is one (at 100% sampling a
/// busy worker fills a batch every few hundred microseconds: a connection per batch
/// cannot keep up). A kept connection that fails (the collector closed it while idle)
/// is replaced once by a new one.
fn post(c: &Collector, req: &[u8], kept: &mut Option<TcpStream>) -> std::io::Result<()> {
    if let Some(sock) = kept.take() {
        if let Ok((answer, sock)) = exchange(req, sock) {
            *kept = sock;
            return answer;
        }
    }
    let timeout = Duration::from_secs(5);
    let sock = TcpStream::connect_timeout(&c.addr, timeout)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    sock.set_nodelay(true)?;
    let (answer, sock) = exchange(req, sock)?;
    *kept = sock;
    answer
}

/// The largest response head and body an export reads before giving up the connection.
const MAX_ANSWER: usize = 64 * 1024;

/// Sends one export request on `sock` and reads its answer. `Err`: the connection
/// failed. `Ok((answer, sock))`: the collector's verdict, and the connection if it can
/// carry the next export (its answer had a length, read in full, and no close).
#[allow(clippy::type_complexity)]
fn exchange(
    req: &[u8],
    mut sock: TcpStream,
) -> std::io::Result<(std::io::Result<()>, Option<TcpStream>)> {
    sock.write_all(req)?;
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    let (code, head_len, length, close) = loop {
        let Some(room) = buf.get_mut(have..) else {
            return Err(std::io::Error::other("collector answer head too large"));
        };
        match sock.read(room)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => have += n,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf.get(..have).unwrap_or_default()) {
            Ok(httparse::Status::Complete(head_len)) => {
                let mut length = None;
                let mut close = resp.version == Some(0);
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok());
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        close = true;
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close |= h.value.eq_ignore_ascii_case(b"close");
                    }
                }
                break (resp.code.unwrap_or(0), head_len, length, close);
            }
            Ok(httparse::Status::Partial) if have < buf.len() => {}
            Ok(httparse::Status::Partial) if buf.len() < MAX_ANSWER => buf.resize(buf.len() * 2, 0),
            _ => return Err(std::io::Error::other("collector answer unreadable")),
        }
    };
    let answer = if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("collector answered {code}")))
    };
    // Read the rest of the body, so the next answer starts where it should.
    let keep = match length {
        Some(len) if !close && len <= MAX_ANSWER => {
            let mut left = len.saturating_sub(have.saturating_sub(head_len));
            let mut sink = [0u8; 1024];
            while left > 0 {
                let want = left.min(sink.len());
                match sock.read(sink.get_mut(..want).unwrap_or_default())? {
                    0 => return Ok((answer, None)),
                    n => left -= n,
                }
            }
            true
        }
        _ => false,
    };
    Ok((answer, keep.then_some(sock)))
}

/// The OTLP/gRPC method.
const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// One OTLP/gRPC export (`framed`: the message behind its gRPC prefix): a unary call
/// on a fresh HTTP/2 connection (h2, driven here on the exporter's own thread),
/// answered `grpc-status: 0`.
fn post_grpc(c: &Collector, framed: &[u8]) -> std::io::Result<()> {
    let timeout = Duration::from_secs(5);
    let sock = TcpStream::connect_timeout(&c.addr, timeout)?;
    sock.set_nonblocking(true)?;
    sock.set_nodelay(true)?;
    let deadline = Instant::now() + timeout;
    let framed = bytes::Bytes::copy_from_slice(framed);
    let uri = format!("http://{}{GRPC_PATH}", c.authority);
    let call = async move {
        let (client, conn) = h2::client::handshake(Polled { sock, deadline })
            .await
            .map_err(std::io::Error::other)?;
        let conn = async move {
            // The connection ends when the call is done and the client dropped.
            let _ = conn.await;
            Err::<(), std::io::Error>(std::io::Error::other("connection closed"))
        };
        let unary = async move {
            let mut client = client.ready().await.map_err(std::io::Error::other)?;
            let req = http::Request::post(uri)
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .map_err(std::io::Error::other)?;
            let (resp, mut send) = client
                .send_request(req, false)
                .map_err(std::io::Error::other)?;
            send.send_data(framed, true)
                .map_err(std::io::Error::other)?;
            let resp = resp.await.map_err(std::io::Error::other)?;
            let head_status = resp.headers().get("grpc-status").cloned();
            let mut body = resp.into_body();
            while let Some(d) = body.data().await {
                let d = d.map_err(std::io::Error::other)?;
                let _ = body.flow_control().release_capacity(d.len());
            }
            let trailers = body.trailers().await.map_err(std::io::Error::other)?;
            let status = trailers
                .as_ref()
                .and_then(|t| t.get("grpc-status").cloned())
                .or(head_status);
            match status.as_ref().map(|v| v.as_bytes()) {
                Some(b"0") => Ok(()),
                other => Err(std::io::Error::other(format!(
                    "collector answered grpc-status {:?}",
                    other.map(String::from_utf8_lossy)
                ))),
            }
        };
        futures_lite::future::or(unary, conn).await
    };
    futures_lite::future::block_on(call)
}

/// A non-blocking socket for h2 on a thread without a reactor: a read or write that
/// would block sleeps a millisecond and asks to be polled again, until the deadline.
struct Polled {
    sock: TcpStream,
    deadline: Instant,
}

impl Polled {
    fn would_block<T>(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<T>> {
        if Instant::now() >= self.deadline {
            return std::task::Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
        }
        std::thread::sleep(Duration::from_millis(1));
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

impl tokio::io::AsyncRead for Polled {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match (&this.sock).read(buf.initialize_unfilled()) {
            Ok(n) => {
                buf.advance(n);
                std::task::Poll::Ready(Ok(()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => this.would_block(cx),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }
}

impl tokio::io::AsyncWrite for Polled {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match (&this.sock).write(data) {
            Ok(n) => std::task::Poll::Ready(Ok(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => this.would_block(cx),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
