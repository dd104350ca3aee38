//! The stream clocks of one HTTP/2 connection: every proxied stream's `Progress` (the
//! route and stream idle clocks, `upstream::request::clock`) is registered here and
//! swept by the connection task.
//!
//! No stream owns a timer: a glommio timer per stream cost the HTTP/2 path about a tenth
//! of its CPU per request (measured in the load tests). The connection task, which
//! already keeps a timer for its own clocks, arms it for the earliest stream deadline
//! and sweeps the streams when it fires. Moving bytes only stores a timestamp, so a busy
//! stream costs nothing per DATA frame; a deadline that moved is found at the sweep and
//! re-noted. The connection task sleeps until its earliest deadline and no longer: a
//! stream that registers an earlier deadline, and anything else that changes what the
//! connection waits for, wakes it ([`Clocks::poke`]), so an idle connection arms no timer
//! it does not need (issue 12). When a clock expires the stream's proxying future (run
//! under `Progress::run`) is dropped, which closes its upstream connection or resets its
//! upstream stream, and `Progress` tells the caller whether a response head already
//! went out: a local reply if not, a RST_STREAM if so.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;
use std::time::Instant;

pub(crate) use crate::upstream::request::clock::{Expiry, Progress};

/// The stream clocks of one HTTP/2 connection, swept by the connection task.
#[derive(Default)]
pub(crate) struct Clocks {
    /// Streams whose clocks run; a slot is freed when its stream ends (`Registered`).
    streams: RefCell<Vec<Option<Rc<Progress>>>>,
    free: RefCell<Vec<usize>>,
    /// The earliest instant a registered clock may run out (`None`: none runs).
    next: Cell<Option<Instant>>,
    /// Set by `poke`, taken by the connection task's `sleep`.
    poked: Cell<bool>,
    /// The connection task, while it sleeps.
    waker: Cell<Option<Waker>>,
}

/// A stream's registration; dropping it (when the stream ends) frees its slot.
pub(crate) struct Registered<'c> {
    clocks: &'c Clocks,
    slot: Option<usize>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            if let Some(s) = self.clocks.streams.borrow_mut().get_mut(i) {
                *s = None;
            }
            let mut free = self.clocks.free.borrow_mut();
            free.push(i);
            // The last stream ended: no deadline is left to sweep for.
            if free.len() == self.clocks.streams.borrow().len() {
                self.clocks.next.set(None);
            }
        }
    }
}

impl Clocks {
    /// Starts watching a stream's clocks until the returned registration is dropped.
    pub fn register(&self, p: &Rc<Progress>) -> Registered<'_> {
        self.register_at(p, Instant::now())
    }

    /// As `register`, with the clock read the caller has just made (`now`).
    pub fn register_at(&self, p: &Rc<Progress>, now: Instant) -> Registered<'_> {
        let at = match p.check(now) {
            Ok(Some(at)) if p.has_clocks() => at,
            _ => {
                return Registered {
                    clocks: self,
                    slot: None,
                }
            }
        };
        let mut streams = self.streams.borrow_mut();
        let slot = match self.free.borrow_mut().pop() {
            Some(i) => {
                if let Some(s) = streams.get_mut(i) {
                    *s = Some(p.clone());
                }
                i
            }
            None => {
                streams.push(Some(p.clone()));
                streams.len() - 1
            }
        };
        drop(streams);
        match self.next.get() {
            Some(n) if n <= at => {}
            _ => {
                // Earlier than the connection task sleeps for: have it look again.
                self.next.set(Some(at));
                self.poke();
            }
        }
        Registered {
            clocks: self,
            slot: Some(slot),
        }
    }

    /// When the connection should sweep next, if any clock runs.
    pub fn next(&self) -> Option<Instant> {
        self.next.get()
    }

    /// Wakes the connection task from `sleep` to look at its clocks again.
    pub fn poke(&self) {
        self.poked.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Registers the connection task to be woken by `poke`; true if it was poked since
    /// it last looked (and clears that).
    pub fn poll_poked(&self, waker: &Waker) -> bool {
        if self.poked.replace(false) {
            return true;
        }
        let w = match self.waker.take() {
            Some(w) if w.will_wake(waker) => w,
            _ => waker.clone(),
        };
        self.waker.set(Some(w));
        false
    }

    /// Fires every clock that ran out by `now`; notes when to look again.
    pub fn sweep(&self, now: Instant) {
        let mut next: Option<Instant> = None;
        for p in self.streams.borrow().iter().flatten() {
            if let Ok(Some(at)) = p.check(now) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.next.set(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_sweep_fires_what_ran_out_and_wakes_it() {
        let clocks = Clocks::default();
        let p = Rc::new(Progress::new(Duration::from_millis(50), Duration::ZERO));
        p.request_done();
        let start = p.deadline().unwrap() - Duration::from_millis(50);
        let q = Rc::new(Progress::new(Duration::ZERO, Duration::from_secs(60)));
        let _rp = clocks.register(&p);
        let rq = clocks.register(&q);
        assert_eq!(clocks.next(), Some(start + Duration::from_millis(50)));
        clocks.sweep(start + Duration::from_millis(10));
        assert_eq!(p.fired_clock(), None);
        clocks.sweep(start + Duration::from_millis(60));
        assert_eq!(p.fired_clock(), Some(Expiry::Route));
        assert_eq!(q.fired_clock(), None);
        // The route clock is gone; the idle clock is next.
        assert!(clocks
            .next()
            .is_some_and(|n| n >= start + Duration::from_secs(59)));
        drop(rq);
        clocks.sweep(start + Duration::from_millis(70));
        assert_eq!(clocks.next(), None);
        assert_eq!(
            clocks.free.borrow().len(),
            1,
            "the ended stream's slot is reused"
        );
    }

    #[test]
    fn an_earlier_deadline_pokes_the_connection_and_the_last_stream_clears_them() {
        let clocks = Clocks::default();
        let waker = std::task::Waker::noop();
        assert!(!clocks.poll_poked(waker));
        let late = Rc::new(Progress::new(Duration::from_secs(60), Duration::ZERO));
        let early = Rc::new(Progress::new(Duration::from_secs(5), Duration::ZERO));
        let r_late = clocks.register(&late);
        assert!(clocks.poll_poked(waker), "a first deadline is news");
        let r_early = clocks.register(&early);
        assert!(clocks.poll_poked(waker), "an earlier deadline is news");
        let again = Rc::new(Progress::new(Duration::from_secs(30), Duration::ZERO));
        let r_again = clocks.register(&again);
        assert!(!clocks.poll_poked(waker), "a later one is not");
        drop((r_late, r_early));
        assert!(clocks.next().is_some(), "a stream is left");
        drop(r_again);
        assert_eq!(clocks.next(), None, "no stream left: nothing to sweep for");
    }
}
