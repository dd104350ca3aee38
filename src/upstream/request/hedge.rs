//! Hedged tries: Envoy's `hedge_on_per_try_timeout`. A try whose per-try timeout fires
//! is not cut; a retry starts next to it (after the back-off, within the retries left
//! and the circuit breakers' retry slots), and the first good response head wins; the
//! other tries are reset (their connections dropped, never pooled).
//!
//! ```text
//!  run: first try (the adapter's Exchange) ──per-try timeout──► race
//!  race: { first try, still reading its head } + { hedged tries: a copy of the request
//!         on a connection of their own (UpstreamCodec::hedge_try), each with its
//!         per-try clock } + { retries waiting their back-off }
//!    a head that is not retried wins ─► the first's: as usual; a hedge's: the adapter
//!                                        adopts its connection and buffer (Exchange::adopt)
//!    every try failed ─► the last failure, as a local reply
//! ```
//!
//! As in Envoy's router: a timed-out try is reported to outlier detection as a timeout
//! but not counted in `upstream_rq_per_try_timeout`; it is never retried again, and its
//! retriable answer is dropped while another try may still answer (else it goes to the
//! client); a retriable answer the retries cannot cover waits for the others too; a try
//! that fails while others go on is charged its failure (`count_failure`), as Envoy
//! charges every reset upstream request. Only HTTP/1.1 upstreams hedge (from HTTP/1
//! clients, `http/conn/exchange.rs`, and HTTP/2 ones, `http/h2/to_h1.rs`), and only the
//! exchanges that keep a copy of the request (`Exchange::hedge_copy`); the copy is made
//! only for requests that hedge.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::clock::Progress;
use super::retry::RetryState;
use super::{
    count_failure, outlier_failure, per_try_clock, repick, PerTry, Picked, Tried, UpstreamCodec,
};
use crate::http::buf::ReadBuf;
use crate::http::failure::Failure;
use crate::http::h1::response::{self, Asked, Kind};
use crate::upstream::cluster::ClusterState;
use crate::upstream::outlier::Outcome;
use crate::upstream::Connector;

/// The complete request as an HTTP/1.1 upstream gets it (head and body), filled in by
/// the exchange once the request is complete; empty until then, or when the body did
/// not fit the retry buffer (no hedge is made then).
pub(crate) type Copy = Rc<RefCell<Vec<u8>>>;

/// A new, empty request copy, for a request that hedges.
pub(crate) fn copy() -> Copy {
    Rc::new(RefCell::new(Vec::new()))
}

/// Fills `copy` (if the request hedges) with the request head and its body.
pub(crate) fn fill(copy: &Option<Copy>, head: &[u8], body: Option<&[u8]>) {
    if let Some(c) = copy {
        let mut v = c.borrow_mut();
        v.clear();
        v.extend_from_slice(head);
        v.extend_from_slice(body.unwrap_or_default());
    }
}

/// What the first try knows of the race it runs in (through `Attempt::hedge`).
#[derive(Default)]
pub(crate) struct Hedged {
    /// Its per-try timeout fired: it goes on, but is never retried again.
    pub soft: Cell<bool>,
    /// Other tries in flight, and retries waiting for their back-off.
    pub others: Cell<u32>,
}

/// How the race ended.
pub(crate) enum Raced<'c, C, H> {
    /// The first try's response head won.
    First(H),
    /// A hedged try's response head won: its connection, its buffer (the head at the
    /// front), and its endpoint, held in flight.
    Hedge(C, ReadBuf, Picked<'c>),
    /// Every try failed: the last failure, reported to outlier detection but not yet
    /// counted for the cluster.
    Failed(Failure),
}

/// How big a hedged try's response buffer starts (it grows for a large head).
const HEDGE_BUF: usize = 8 * 1024;

/// One hedged try: obtain a connection to `ep`, send the request copy, read until a
/// final response head.
async fn hedge_once<K: Connector, U: UpstreamCodec<K>>(
    codec: &U,
    cs: &ClusterState<K::Conn>,
    ep: usize,
    connector: &K,
    progress: &Progress,
    request: Vec<u8>,
) -> Result<(U::Conn, ReadBuf), Failure> {
    let (mut conn, _) = codec.obtain(cs, ep, connector, progress).await?;
    cs.outlier(ep, Outcome::Connected);
    let mut buf = ReadBuf::new(HEDGE_BUF);
    codec
        .hedge_try(&mut conn, &request, &mut buf, progress)
        .await?;
    Ok((conn, buf))
}

/// The status and fields of the final response head at the front of `buf`, given to
/// `judge` (`None`: not a head; `hedge_try` only returns with one).
fn judge_head<T>(
    buf: &ReadBuf,
    judge: impl FnOnce(u16, &[httparse::Header<'_>]) -> T,
) -> Option<T> {
    let mut slots = response::header_slots();
    let asked = Asked {
        head: false,
        upgrade: false,
    };
    match response::parse(buf.data(), asked, &mut slots) {
        Ok(Some(r)) if !matches!(r.kind, Kind::Interim) => Some(judge(r.status, r.headers)),
        _ => None,
    }
}

/// A back-off under way, and whether its retry starts when it ends (`false`: the route
/// clock ends first).
type Nap = (Pin<Box<dyn Future<Output = ()>>>, bool);

/// A retry decided now starts after its back-off; one that the route clock would cut
/// first never starts, and the race ends on the route timeout.
fn schedule(retry: &RetryState<'_>, progress: &Progress, pending: &mut Vec<Nap>) {
    let wait = retry.backoff();
    let now = Instant::now();
    let (d, starts) = match progress.deadline() {
        Some(d) if now + wait >= d => (d.saturating_duration_since(now), false),
        _ => (wait, true),
    };
    pending.push((Box::pin(crate::rt::sleep(d)), starts));
}

/// What woke the race.
enum Event<H, R> {
    First(Result<H, Tried>),
    Done(usize, R),
    Soft(usize),
    Wake(usize),
}

/// Runs the first try (whose per-try timeout just fired, at endpoint `first_ep`) and the
/// hedged tries next to it until one response head wins or every try failed.
/// `clocks`: the per-try timeout and idle timeout of each hedged try.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn race<'c, K, U, F, H>(
    codec: &U,
    retry: &RetryState<'_>,
    cs: &'c ClusterState<K::Conn>,
    first_ep: usize,
    connector: &K,
    progress: &Progress,
    clocks: (Duration, Duration),
    first: Pin<&mut F>,
    flags: &Hedged,
    copy: &Copy,
) -> Raced<'c, U::Conn, H>
where
    K: Connector,
    U: UpstreamCodec<K>,
    F: Future<Output = Result<H, Tried>>,
{
    let stats = &cs.stats;
    let breakers = &cs.cfg.breakers;
    let mut first = Some(first);
    // Each hedged try: its endpoint (held in flight), whether its per-try timeout
    // fired, the try, its per-try clock.
    #[allow(clippy::type_complexity)]
    let mut flights: Vec<(
        Picked<'c>,
        bool,
        Pin<Box<dyn Future<Output = Result<(U::Conn, ReadBuf), Failure>> + '_>>,
        Pin<Box<dyn Future<Output = PerTry> + '_>>,
    )> = Vec::new();
    let mut pending: Vec<Nap> = Vec::new();
    let mut last = Failure::PerTryTimeout;
    // The first try's soft timeout: Envoy's `onSoftPerTryTimeout`.
    cs.outlier(first_ep, Outcome::Timeout);
    flags.soft.set(true);
    if retry.on_hedge(!copy.borrow().is_empty(), stats, breakers) {
        schedule(retry, progress, &mut pending);
    }
    loop {
        flags.others.set((flights.len() + pending.len()) as u32);
        if first.is_none() && flights.is_empty() && pending.is_empty() {
            return Raced::Failed(last);
        }
        let event = std::future::poll_fn(|cx| {
            if let Some(f) = first.as_mut() {
                if let Poll::Ready(r) = f.as_mut().poll(cx) {
                    return Poll::Ready(Event::First(r));
                }
            }
            for (i, (_, soft, try_, clock)) in flights.iter_mut().enumerate() {
                if let Poll::Ready(r) = try_.as_mut().poll(cx) {
                    return Poll::Ready(Event::Done(i, r));
                }
                if !*soft && clock.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Soft(i));
                }
            }
            for (j, (nap, _)) in pending.iter_mut().enumerate() {
                if nap.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Wake(j));
                }
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::First(Ok(head)) => return Raced::First(head),
            Event::First(Err(t)) => {
                first = None;
                // A retriable answer dropped for the others was reported when judged.
                if !t.judged {
                    outlier_failure(cs, first_ep, t.failure);
                    last = t.failure;
                    if !flights.is_empty() || !pending.is_empty() {
                        count_failure(stats, t.failure);
                    }
                }
            }
            Event::Done(i, r) => {
                let (picked, soft, _, _) = flights.swap_remove(i);
                let ep: usize = picked.ep;
                let others = first.is_some() || !flights.is_empty() || !pending.is_empty();
                match r {
                    Ok((conn, buf)) => {
                        let verdict = judge_head(&buf, |status, headers| {
                            let retried =
                                !soft && retry.on_response(status, headers, true, stats, breakers);
                            let dropped = others
                                && if soft {
                                    retry.would_retry(status, headers)
                                } else {
                                    retry.could_not()
                                };
                            (status, retried, dropped)
                        });
                        match verdict {
                            Some((status, retried, dropped)) if retried || dropped => {
                                cs.outlier(ep, Outcome::Status(status));
                                if retried {
                                    schedule(retry, progress, &mut pending);
                                }
                            }
                            Some(_) => return Raced::Hedge(conn, buf, picked),
                            None => {
                                outlier_failure(cs, ep, Failure::ProtocolError);
                                last = Failure::ProtocolError;
                                if others {
                                    count_failure(stats, last);
                                }
                            }
                        }
                    }
                    Err(f) => {
                        outlier_failure(cs, ep, f);
                        if !soft && retry.on_failure(f, false, true, stats, breakers) {
                            schedule(retry, progress, &mut pending);
                        } else {
                            last = f;
                            if others {
                                count_failure(stats, f);
                            }
                        }
                    }
                }
            }
            Event::Soft(i) => {
                if let Some(f) = flights.get_mut(i) {
                    f.1 = true;
                    cs.outlier(f.0.ep, Outcome::Timeout);
                    if retry.on_hedge(true, stats, breakers) {
                        schedule(retry, progress, &mut pending);
                    }
                }
            }
            Event::Wake(j) => {
                let (_, starts) = pending.swap_remove(j);
                if !starts {
                    last = Failure::RouteTimeout;
                    continue;
                }
                retry.started(stats);
                let Some(picked) = retry
                    .select(|attempt| cs.pick(retry.hash, attempt))
                    .and_then(|e| repick(cs, e))
                else {
                    last = Failure::NoHealthyUpstream;
                    continue;
                };
                retry.tried(picked.ep);
                let mut request = copy.borrow().clone();
                if retry.attempt_count_request {
                    crate::http::stamp::set_attempt_count(&mut request, retry.attempt());
                }
                let (timeout, idle) = clocks;
                let ep = picked.ep;
                flights.push((
                    picked,
                    false,
                    Box::pin(hedge_once(codec, cs, ep, connector, progress, request)),
                    Box::pin(per_try_clock(Instant::now(), timeout, idle, progress)),
                ));
            }
        }
    }
}
