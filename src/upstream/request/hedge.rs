//! Hedged tries: Envoy's `hedge_on_per_try_timeout`. A try whose per-try timeout fires
//! is not cut; a retry starts next to it (after the back-off, within the retries left
//! and the circuit breakers' retry slots), and the first good response head wins; the
//! other tries are reset (their connections dropped, never pooled; on HTTP/2 their
//! streams reset).
//!
//! ```text
//!  run: first try (the adapter's Exchange) ──per-try timeout──► race
//!  race: { first try, still waiting for its head } + { hedged tries: a copy of the
//!         request on a connection (HTTP/1.1) or a stream (HTTP/2) of their own
//!         (UpstreamCodec::hedge_try), each with its per-try clock } + { retries
//!         waiting their back-off }
//!    a head that is not retried wins ─► the first's: as usual; a hedge's: the adapter
//!                                        adopts it (Exchange::adopt)
//!    every try failed ─► the last failure, as a local reply
//! ```
//!
//! As in Envoy's router: a timed-out try is reported to outlier detection as a timeout
//! but not counted in `upstream_rq_per_try_timeout`; it is never retried again, and its
//! retriable answer is dropped while another try may still answer (else it goes to the
//! client); a retriable answer the retries cannot cover waits for the others too; a try
//! that fails while others go on is charged its failure (`count_failure`), as Envoy
//! charges every reset upstream request. Both upstream protocols hedge, from HTTP/1 and
//! HTTP/2 clients alike, but only the exchanges that keep a copy of the request
//! (`Exchange::hedge_copy`); the copy is made only for requests that hedge. What a copy
//! is and what a winning try holds is the connection's (`Hedgeable`): the request's
//! bytes and the response buffer on HTTP/1.1 (`http1.rs`), the request's parts and the
//! response stream on HTTP/2 (`http2.rs`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::clock::Progress;
use super::retry::RetryState;
use super::{
    bound, count_failure, outlier_failure, per_try_clock, repick, PerTry, Picked, Tried,
    UpstreamCodec,
};
use crate::http::failure::Failure;
use crate::http::restamp::Restamp;
use crate::upstream::cluster::ClusterState;
use crate::upstream::outlier::Outcome;
use crate::upstream::Connector;

/// The complete request as hedged tries send it, filled in by the exchange once the
/// request is complete; `None` until then, or when the body did not fit the retry
/// buffer (no hedge is made then).
pub(crate) type Copy<T> = Rc<RefCell<Option<T>>>;

/// A new, empty request copy, for a request that hedges.
pub(crate) fn copy<T>() -> Copy<T> {
    Rc::new(RefCell::new(None))
}

/// What hedged tries need of a connection type: the request copy they send, and what a
/// try that got a final response head holds for the adapter to adopt.
pub(crate) trait Hedgeable {
    /// The request as a hedged try sends it.
    type Request;
    /// A hedged try's final response head (and what goes with it).
    type Won;

    /// The copy a hedged try sends: `copy` with its attempt number, when the upstream
    /// is told it (`include_request_attempt_count`), and what is left of its expected
    /// timeout (`http::restamp`).
    fn stamped(copy: &Self::Request, restamp: &Restamp) -> Self::Request;

    /// `judge` asked about the final response head a try won (`None`: none there).
    fn judge<J: Judge>(won: &Self::Won, judge: J) -> Option<J::Out>;
}

/// A decision on a response head, whichever form its fields take.
pub(crate) trait Judge {
    type Out;
    fn judge<H: super::retry::Headers + ?Sized>(self, status: u16, headers: &H) -> Self::Out;
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
pub(crate) enum Raced<'c, C: Hedgeable, H, W = <C as Hedgeable>::Won> {
    /// The first try's response head won.
    First(H),
    /// A hedged try's response head won: its connection, its response, its endpoint,
    /// held in flight, and when it reaches its duration bound (`bound`).
    Hedge(C, W, Picked<'c>, Option<Instant>),
    /// Every try failed: the last failure, reported to outlier detection but not yet
    /// counted for the cluster.
    Failed(Failure),
}

/// What a hedged try that got a final response head holds: its connection, the head,
/// and when it reaches its duration bound.
type Landed<C> = (C, <C as Hedgeable>::Won, Option<Instant>);

/// One hedged try: obtain a connection to `ep`, send the request copy, wait for a
/// final response head, within the try's duration bound (`bound`).
async fn hedge_once<K: Connector, U: UpstreamCodec<K>>(
    codec: &U,
    cs: &ClusterState<K::Conn>,
    ep: usize,
    connector: &K,
    progress: &Progress,
    request: <U::Conn as Hedgeable>::Request,
) -> Result<Landed<U::Conn>, Tried> {
    let (mut conn, _) = codec
        .obtain(cs, ep, connector, progress)
        .await
        .map_err(|f| Tried::failed(f, false, true))?;
    cs.outlier(ep, Outcome::Connected);
    let ends = bound::ends(progress, cs.cfg.pool.max_stream_duration);
    let tried = bound::bounded(codec.hedge_try(&mut conn, &request, progress), ends).await;
    match tried {
        Some(won) => Ok((conn, won?, ends)),
        None => Err(bound::reached(progress, &cs.stats, true)),
    }
}

/// The race's decision on a hedged try's response head: `(status, retried, dropped)`.
struct Verdict<'a, 'r> {
    retry: &'a RetryState<'r>,
    soft: bool,
    others: bool,
    stats: &'a crate::observe::stats::ClusterStats,
    breakers: &'a std::sync::Arc<crate::config::circuit::Breakers>,
}

impl Judge for Verdict<'_, '_> {
    type Out = (u16, bool, bool);
    fn judge<H: super::retry::Headers + ?Sized>(self, status: u16, headers: &H) -> Self::Out {
        let retried = !self.soft
            && self
                .retry
                .on_response(status, headers, true, self.stats, self.breakers);
        let dropped = self.others
            && if self.soft {
                self.retry.would_retry(status, headers)
            } else {
                self.retry.could_not()
            };
        (status, retried, dropped)
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
    copy: &Copy<<U::Conn as Hedgeable>::Request>,
) -> Raced<'c, U::Conn, H>
where
    K: Connector,
    U: UpstreamCodec<K>,
    F: Future<Output = Result<H, Tried>>,
{
    let stats = &cs.stats;
    let breakers = cs.cfg.breakers.at(progress.priority());
    let mut first = Some(first);
    // Each hedged try: its endpoint (held in flight), whether its per-try timeout
    // fired, the try, its per-try clock.
    #[allow(clippy::type_complexity)]
    let mut flights: Vec<(
        Picked<'c>,
        bool,
        Pin<Box<dyn Future<Output = Result<Landed<U::Conn>, Tried>> + '_>>,
        Pin<Box<dyn Future<Output = PerTry> + '_>>,
    )> = Vec::new();
    let mut pending: Vec<Nap> = Vec::new();
    let mut last = Failure::PerTryTimeout;
    // The first try's soft timeout: Envoy's `onSoftPerTryTimeout`.
    cs.outlier(first_ep, Outcome::Timeout);
    flags.soft.set(true);
    if retry.on_hedge(copy.borrow().is_some(), stats, breakers) {
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
            // Its duration bound ended the first try, which is never retried once hedged:
            // Envoy's router then resets every try and answers.
            Event::First(Err(t)) if matches!(t.failure, Failure::UpstreamMaxDuration { .. }) => {
                return Raced::Failed(t.failure);
            }
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
                    Ok((conn, won, ends)) => {
                        let verdict = Verdict {
                            retry,
                            soft,
                            others,
                            stats,
                            breakers,
                        };
                        match <U::Conn as Hedgeable>::judge(&won, verdict) {
                            Some((status, retried, dropped)) if retried || dropped => {
                                cs.outlier(ep, Outcome::Status(status));
                                if retried {
                                    schedule(retry, progress, &mut pending);
                                }
                            }
                            Some(_) => return Raced::Hedge(conn, won, picked, ends),
                            None => {
                                outlier_failure(cs, ep, Failure::ProtocolError);
                                last = Failure::ProtocolError;
                                if others {
                                    count_failure(stats, last);
                                }
                            }
                        }
                    }
                    Err(t) => {
                        let f = t.failure;
                        outlier_failure(cs, ep, f);
                        if !soft && retry.on_failure(f, t.refused, t.resend, stats, breakers) {
                            schedule(retry, progress, &mut pending);
                        } else if matches!(f, Failure::UpstreamMaxDuration { .. }) {
                            // Not retried, a try's bound ends the request (Envoy's router).
                            return Raced::Failed(f);
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
                let restamp = retry.restamp(progress.deadline());
                let Some(request) = copy
                    .borrow()
                    .as_ref()
                    .map(|c| <U::Conn as Hedgeable>::stamped(c, &restamp))
                else {
                    // Never: a retry is scheduled only with the copy at hand.
                    last = Failure::ConnectionTermination;
                    continue;
                };
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
