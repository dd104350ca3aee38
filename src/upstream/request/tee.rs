//! The request body teed to its shadows (`request_mirror_policies`) as it streams to the
//! primary cluster: Envoy's streaming shadows, without their back-pressure.
//!
//! ```text
//!  the primary's body path (conn/upload.rs, h1_to_h2.rs, h2/to_h1.rs, h2/to_h2.rs)
//!     │  each chunk as it goes upstream: `TeeTx::push` (one copy, shared by all
//!     │  shadows; an HTTP/2 DATA frame is shared without a copy), then `finish`
//!     ▼
//!  one bounded queue per shadow ─► the shadow's task (shadow.rs) pulls with `TeeRx::next`
//! ```
//!
//! The primary never waits for a shadow: a push only queues. A shadow whose queue would
//! pass `BOUND` bytes (its upstream is slower than the client, or stalled), or the
//! core's queues together `CORE_BOUND`, is abandoned:
//! its queue is dropped, its task sees `Next::Aborted` and resets its upstream request,
//! and it is counted (`rq_shadow_abandoned` on its cluster). A primary that stops
//! before the end of the body (the client went away, a local reply) drops the sender
//! unfinished: every shadow is aborted, as Envoy cancels its shadow streams.
//!
//! Only a mirrored request with a body that streams has a tee: every other request
//! carries `None` and allocates nothing.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::Bytes;

use crate::observe::stats::ClusterStats;

/// Bytes a shadow may fall behind the primary before it is abandoned: Envoy's default
/// per-request buffer limit (1 MiB).
pub(crate) const BOUND: usize = 1 << 20;

/// Bytes all the shadows of one core may hold queued together: with up to
/// `shadow::MAX_IN_FLIGHT` shadows, `BOUND` each would allow a gigabyte per core. A
/// push that would pass it abandons that shadow, as its own bound does.
pub(crate) const CORE_BOUND: usize = 64 << 20;

thread_local! {
    /// Bytes queued in this core's tees (every worker is one thread; a tee never
    /// leaves its worker).
    static QUEUED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// What a queued chunk costs besides its bytes: its queue slot, and on HTTP/1 its own
/// allocation. Counted against the core's bound (which caps memory; a shadow's own
/// bound counts body bytes, as Envoy's buffer limit does), so a body of tiny chunks
/// (1-byte chunked pieces or DATA frames) cannot hold many times that bound.
const CHUNK_OVERHEAD: usize = 64;

/// A chunk's charge against the bounds.
fn cost(chunk: &Bytes) -> usize {
    chunk.len().saturating_add(CHUNK_OVERHEAD)
}

fn queued_on_core() -> usize {
    QUEUED.with(|q| q.get())
}

fn add_queued(n: usize) {
    QUEUED.with(|q| q.set(q.get().saturating_add(n)));
}

fn sub_queued(n: usize) {
    QUEUED.with(|q| q.set(q.get().saturating_sub(n)));
}

#[derive(Default)]
enum State {
    #[default]
    Open,
    /// The body ended, with these trailers (HTTP/2), after the queued chunks.
    Ended(Option<http::HeaderMap>),
    /// Abandoned or cut off: the shadow resets.
    Aborted,
}

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Bytes>,
    /// Body bytes queued (against the shadow's bound).
    queued: usize,
    /// What the queue charges the core's bound: bytes plus `CHUNK_OVERHEAD` a chunk.
    charged: usize,
    state: State,
    waker: Option<Waker>,
}

impl Queue {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn abort(&mut self) {
        self.chunks.clear();
        sub_queued(self.charged);
        self.queued = 0;
        self.charged = 0;
        self.state = State::Aborted;
        self.wake();
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        sub_queued(self.charged);
    }
}

/// One shadow's queue, with its cluster's stats (its abandonment is counted there).
struct Slot {
    queue: Rc<RefCell<Queue>>,
    stats: Rc<ClusterStats>,
}

/// The primary's side: every shadow of one request.
pub(crate) struct TeeTx {
    slots: Vec<Slot>,
    bound: usize,
    finished: std::cell::Cell<bool>,
}

/// One shadow's side.
pub(crate) struct TeeRx(Rc<RefCell<Queue>>);

/// What a shadow reads next.
pub(crate) enum Next {
    Chunk(Bytes),
    /// The body ended (with its trailers, if any).
    End(Option<http::HeaderMap>),
    /// The shadow is abandoned: reset its request.
    Aborted,
}

impl TeeTx {
    /// A tee with no shadow yet, each shadow bounded to `bound` queued bytes.
    pub(crate) fn new(bound: usize) -> TeeTx {
        TeeTx {
            slots: Vec::new(),
            bound,
            finished: std::cell::Cell::new(false),
        }
    }

    /// Adds a shadow to the cluster with `stats`, which count it
    /// (`rq_shadow_abandoned`) if it falls behind past the bound.
    pub(crate) fn shadow(&mut self, stats: Rc<ClusterStats>) -> TeeRx {
        let queue = Rc::new(RefCell::new(Queue::default()));
        self.slots.push(Slot {
            queue: queue.clone(),
            stats,
        });
        TeeRx(queue)
    }

    /// Whether any shadow still takes the body.
    pub(crate) fn is_live(&self) -> bool {
        self.slots.iter().any(|s| {
            // A shadow whose task is gone holds no reference any more.
            Rc::strong_count(&s.queue) > 1 && matches!(s.queue.borrow().state, State::Open)
        })
    }

    /// A chunk of the body as it goes to the primary (copied once, for all shadows).
    pub(crate) fn push(&self, chunk: &[u8]) {
        if chunk.is_empty() || !self.is_live() {
            return;
        }
        self.push_bytes(Bytes::copy_from_slice(chunk));
    }

    /// A chunk the caller already owns as `Bytes` (an HTTP/2 DATA frame: no copy).
    pub(crate) fn push_bytes(&self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        for s in &self.slots {
            let mut q = s.queue.borrow_mut();
            if !matches!(q.state, State::Open) {
                continue;
            }
            if Rc::strong_count(&s.queue) == 1 {
                // Its task ended (a response came early, a timeout): nothing reads.
                q.abort();
                continue;
            }
            let c = cost(&chunk);
            let over_core = queued_on_core().saturating_add(c) > CORE_BOUND;
            if q.queued.saturating_add(chunk.len()) > self.bound || over_core {
                q.abort();
                s.stats.rq_shadow_abandoned.inc();
                continue;
            }
            q.queued += chunk.len();
            q.charged += c;
            add_queued(c);
            q.chunks.push_back(chunk.clone());
            q.wake();
        }
    }

    /// The body ended (`trailers`: an HTTP/2 request's, which the shadows get too).
    pub(crate) fn finish(&self, trailers: Option<&http::HeaderMap>) {
        self.finished.set(true);
        for s in &self.slots {
            let mut q = s.queue.borrow_mut();
            if matches!(q.state, State::Open) {
                q.state = State::Ended(trailers.cloned());
                q.wake();
            }
        }
    }
}

impl Drop for TeeTx {
    fn drop(&mut self) {
        if !self.finished.get() {
            for s in &self.slots {
                s.queue.borrow_mut().abort();
            }
        }
    }
}

impl TeeRx {
    /// The next chunk, the end, or the abort; waits while the queue is empty.
    pub(crate) async fn next(&self) -> Next {
        std::future::poll_fn(|cx| {
            let mut q = self.0.borrow_mut();
            if let Some(c) = q.chunks.pop_front() {
                q.queued = q.queued.saturating_sub(c.len());
                q.charged = q.charged.saturating_sub(cost(&c));
                sub_queued(cost(&c));
                return Poll::Ready(Next::Chunk(c));
            }
            match &mut q.state {
                State::Open => {
                    q.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
                State::Ended(t) => Poll::Ready(Next::End(t.take())),
                State::Aborted => Poll::Ready(Next::Aborted),
            }
        })
        .await
    }

    /// A second handle on the same queue, to watch for the abort beside the reader.
    pub(crate) fn watch(&self) -> TeeRx {
        TeeRx(self.0.clone())
    }

    /// Resolves once the shadow is abandoned (never, for one that completes).
    pub(crate) async fn aborted(&self) {
        std::future::poll_fn(|cx| {
            let mut q = self.0.borrow_mut();
            if matches!(q.state, State::Aborted) {
                return Poll::Ready(());
            }
            q.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        futures_lite::future::block_on(f)
    }

    #[test]
    fn chunks_then_the_end_reach_each_shadow() {
        let mut tx = TeeTx::new(10);
        let (a, b) = (tx.shadow(Rc::default()), tx.shadow(Rc::default()));
        tx.push(b"abc");
        tx.push_bytes(Bytes::from_static(b"de"));
        let mut t = http::HeaderMap::new();
        t.insert("x-t", "1".parse().unwrap());
        tx.finish(Some(&t));
        for rx in [&a, &b] {
            assert!(matches!(block(rx.next()), Next::Chunk(c) if c == "abc"));
            assert!(matches!(block(rx.next()), Next::Chunk(c) if c == "de"));
            assert!(
                matches!(block(rx.next()), Next::End(Some(t)) if t.get("x-t").is_some_and(|v| v == "1"))
            );
        }
    }

    #[test]
    fn a_shadow_behind_past_the_bound_is_abandoned_and_counted_alone() {
        let mut tx = TeeTx::new(4);
        let c: Rc<ClusterStats> = Rc::default();
        let slow = tx.shadow(c.clone());
        let fast = tx.shadow(Rc::default());
        tx.push(b"abc");
        assert!(matches!(block(fast.next()), Next::Chunk(_)));
        tx.push(b"de");
        // `slow` holds 3 + 2 > 4 bytes: abandoned; `fast` holds 2.
        assert!(matches!(block(slow.next()), Next::Aborted));
        assert_eq!(c.rq_shadow_abandoned.get(), 1);
        assert!(matches!(block(fast.next()), Next::Chunk(c) if c == "de"));
        tx.finish(None);
        assert!(matches!(block(fast.next()), Next::End(None)));
    }

    #[test]
    fn an_unfinished_body_aborts_its_shadows() {
        let mut tx = TeeTx::new(4);
        let rx = tx.shadow(Rc::default());
        tx.push(b"ab");
        drop(tx);
        assert!(matches!(block(rx.next()), Next::Aborted));
        block(rx.aborted());
    }

    #[test]
    fn the_core_bound_caps_all_queues_together() {
        let before = queued_on_core();
        // No bound of its own: only the core's applies.
        let mut tx = TeeTx::new(usize::MAX);
        let stats: Rc<ClusterStats> = Rc::default();
        let rx = tx.shadow(stats.clone());
        let big = vec![0u8; CORE_BOUND / 2];
        tx.push(&big);
        assert_eq!(queued_on_core(), before + big.len() + CHUNK_OVERHEAD);
        assert!(matches!(block(rx.next()), Next::Chunk(_)));
        assert_eq!(queued_on_core(), before);
        tx.push(&big);
        tx.push(&big);
        // A third half would pass the core's bound: the shadow is abandoned, and its
        // queue no longer counts.
        tx.push(&big);
        assert_eq!(stats.rq_shadow_abandoned.get(), 1);
        assert_eq!(queued_on_core(), before);
        drop((tx, rx));
        assert_eq!(queued_on_core(), before);
    }

    #[test]
    fn tiny_chunks_are_charged_their_overhead_against_the_core_bound() {
        // A body of 1-byte chunks to a shadow that reads nothing: each chunk costs its
        // queue slot too, so the core's bound abandons the shadow after about
        // CORE_BOUND / CHUNK_OVERHEAD chunks, not after CORE_BOUND of them.
        let mut tx = TeeTx::new(usize::MAX);
        let stats: Rc<ClusterStats> = Rc::default();
        let rx = tx.shadow(stats.clone());
        let one = Bytes::from_static(b"x");
        for _ in 0..CORE_BOUND / CHUNK_OVERHEAD + 1 {
            tx.push_bytes(one.clone());
        }
        assert_eq!(stats.rq_shadow_abandoned.get(), 1);
        drop((tx, rx));
    }

    #[test]
    fn a_shadow_whose_task_ended_stops_taking_chunks() {
        let mut tx = TeeTx::new(4);
        let rx = tx.shadow(Rc::default());
        assert!(tx.is_live());
        drop(rx);
        assert!(!tx.is_live());
        tx.push(b"abcdef");
    }
}
