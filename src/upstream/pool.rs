//! Per-core keep-alive pool of idle upstream connections, one stack per endpoint.
//! LIFO reuse keeps the hottest connection warm and lets the others age out.

use std::cell::RefCell;
use std::time::{Duration, Instant};

pub(crate) struct Pool<C> {
    idle: RefCell<Vec<Vec<(C, Instant)>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl<C> Pool<C> {
    pub fn new(endpoints: usize, max_idle: usize, idle_timeout: Duration) -> Self {
        Pool {
            idle: RefCell::new((0..endpoints).map(|_| Vec::new()).collect()),
            max_idle,
            idle_timeout,
        }
    }

    /// Takes the most recently used idle connection to `endpoint` that has not aged out.
    pub fn take(&self, endpoint: usize) -> Option<C> {
        let mut idle = self.idle.borrow_mut();
        let stack = idle.get_mut(endpoint)?;
        let now = Instant::now();
        while let Some((c, since)) = stack.pop() {
            if now.duration_since(since) < self.idle_timeout {
                return Some(c);
            }
        }
        None
    }

    /// Returns a connection for reuse; drops it if the pool for that endpoint is full.
    pub fn put(&self, endpoint: usize, c: C) {
        let mut idle = self.idle.borrow_mut();
        if let Some(stack) = idle.get_mut(endpoint) {
            if stack.len() < self.max_idle {
                stack.push((c, Instant::now()));
            }
        }
    }

    pub fn idle_count(&self, endpoint: usize) -> usize {
        self.idle.borrow().get(endpoint).map_or(0, Vec::len)
    }

    /// Drops connections idle for longer than the timeout.
    pub fn evict_expired(&self) {
        let now = Instant::now();
        for stack in self.idle.borrow_mut().iter_mut() {
            stack.retain(|(_, since)| now.duration_since(*since) < self.idle_timeout);
        }
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
    }
}
