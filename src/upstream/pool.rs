//! Per-core keep-alive pool of idle upstream connections, one stack per endpoint.
//! LIFO reuse keeps the hottest connection warm and lets the others age out.
//!
//! Aged-out connections are closed by the worker's housekeeping sweep, which the pool
//! asks for (through the worker's [`Alarm`]) only while it holds idle connections: an
//! empty pool arms no timer.

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::counted::Live;
use crate::alarm::Alarm;

pub(crate) struct Pool<C> {
    idle: RefCell<Vec<Vec<(C, Instant)>>>,
    /// Open connections per endpoint on this core and the requests waiting for one
    /// (`max_connections`); a pooled connection wakes them.
    live: Rc<Live>,
    max_idle: usize,
    idle_timeout: Duration,
    /// The worker's housekeeping alarm (unset outside a worker: nothing is swept).
    alarm: OnceCell<Rc<Alarm>>,
    /// A sweep is asked for: set when a connection is pooled, cleared by a sweep that
    /// leaves the pool empty.
    swept: Cell<bool>,
}

impl<C> Pool<C> {
    pub fn new(endpoints: usize, max_idle: usize, idle_timeout: Duration) -> Self {
        Pool {
            idle: RefCell::new((0..endpoints).map(|_| Vec::new()).collect()),
            live: Live::new(endpoints),
            max_idle,
            idle_timeout,
            alarm: OnceCell::new(),
            swept: Cell::new(false),
        }
    }

    /// The pool's per-endpoint connection counts (`upstream::counted`).
    pub fn live(&self) -> &Rc<Live> {
        &self.live
    }

    /// Has the worker's housekeeping close this pool's aged-out connections.
    pub fn sweep_with(&self, alarm: Rc<Alarm>) {
        let _ = self.alarm.set(alarm);
    }

    /// Takes the most recently used idle connection to `endpoint` that has not aged out.
    pub fn take(&self, endpoint: usize) -> Option<C> {
        let mut idle = self.idle.borrow_mut();
        let stack = idle.get_mut(endpoint)?;
        let now = crate::rt::poll_clock::now();
        while let Some((c, since)) = stack.pop() {
            if now.duration_since(since) < self.idle_timeout {
                return Some(c);
            }
        }
        None
    }

    /// Returns a connection for reuse; drops it if the pool for that endpoint is full.
    /// Either way a request waiting for a connection to the endpoint is woken.
    pub fn put(&self, endpoint: usize, c: C) {
        {
            let mut idle = self.idle.borrow_mut();
            if let Some(stack) = idle.get_mut(endpoint) {
                if stack.len() < self.max_idle {
                    let now = crate::rt::poll_clock::now();
                    stack.push((c, now));
                    if !self.swept.get() {
                        if let Some(a) = self.alarm.get() {
                            a.ring_at(now + self.idle_timeout);
                            self.swept.set(true);
                        }
                    }
                }
            }
        }
        self.live.wake(endpoint);
    }

    /// Moves `other`'s idle connections to its endpoint `from` into this pool's `to`
    /// (an endpoint both cluster versions have: an EDS update keeps its connections);
    /// `rehome` moves each one's per-endpoint count to this pool.
    pub fn adopt(
        &self,
        other: &Pool<C>,
        from: usize,
        to: usize,
        rehome: impl Fn(&mut C, &Rc<Live>, usize),
    ) {
        let mut moved: Vec<(C, Instant)> = match other.idle.borrow_mut().get_mut(from) {
            Some(stack) => std::mem::take(stack),
            None => return,
        };
        for (c, _) in &mut moved {
            rehome(c, &self.live, to);
        }
        let mut idle = self.idle.borrow_mut();
        let Some(stack) = idle.get_mut(to) else {
            return;
        };
        for (c, since) in moved {
            if stack.len() < self.max_idle {
                stack.push((c, since));
            }
        }
        if let (Some((_, oldest)), false, Some(a)) =
            (stack.first(), self.swept.get(), self.alarm.get())
        {
            a.ring_at(*oldest + self.idle_timeout);
            self.swept.set(true);
        }
    }

    pub fn idle_count(&self, endpoint: usize) -> usize {
        self.idle.borrow().get(endpoint).map_or(0, Vec::len)
    }

    /// Drops connections idle for longer than the timeout. Returns when the next one
    /// ages out (and asks the alarm for it), `None` if the pool is now empty, and how
    /// many were dropped.
    pub fn evict_expired(&self) -> (Option<Instant>, usize) {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let mut dropped = 0;
        for stack in self.idle.borrow_mut().iter_mut() {
            let before = stack.len();
            stack.retain(|(_, since)| now.duration_since(*since) < self.idle_timeout);
            dropped += before - stack.len();
            // The bottom of a stack is its oldest connection.
            if let Some((_, since)) = stack.first() {
                let at = *since + self.idle_timeout;
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.swept.set(next.is_some());
        if let (Some(at), Some(a)) = (next, self.alarm.get()) {
            a.ring_at(at);
        }
        (next, dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifo_with_limit() {
        let p = Pool::new(1, 2, Duration::from_secs(60));
        p.put(0, 1);
        p.put(0, 2);
        p.put(0, 3);
        assert_eq!(p.idle_count(0), 2);
        assert_eq!(p.take(0), Some(2));
        assert_eq!(p.take(0), Some(1));
        assert_eq!(p.take(0), None);
        assert_eq!(p.take(5), None);
        let q = Pool::new(2, 2, Duration::from_secs(60));
        p.put(0, 7);
        q.adopt(&p, 0, 1, |_, _, _| {});
        assert_eq!(p.idle_count(0), 0);
        assert_eq!(q.take(1), Some(7));
        q.adopt(&p, 9, 0, |_, _, _| {});
        q.adopt(&p, 0, 9, |_, _, _| {});
    }

    #[test]
    fn a_sweep_is_asked_for_only_while_connections_are_pooled() {
        let alarm = Rc::new(Alarm::default());
        let p = Pool::new(2, 4, Duration::from_secs(60));
        p.sweep_with(alarm.clone());
        assert!(!p.swept.get(), "an empty pool asks for nothing");
        p.put(1, 7);
        assert!(p.swept.get());
        let (next, _) = p.evict_expired();
        assert!(next.is_some_and(|at| at > Instant::now()));
        assert!(
            p.swept.get(),
            "a connection is left: the next sweep stays asked for"
        );
        assert_eq!(p.take(1), Some(7));
        assert_eq!(p.evict_expired(), (None, 0));
        assert!(!p.swept.get(), "nothing left: no sweep asked for");
    }
}
