//! Connection limits: `max_connections` per listener and `runtime.max_connections` for
//! the process, checked when a worker accepts a connection.
//!
//! A listener's connections are spread over all workers by SO_REUSEPORT, so its count is
//! one atomic shared by the workers (kept by listener name, so it survives reloads), as
//! is the process count. They are touched once when a connection opens and once when it
//! closes, never per request. Above a limit the new connection is closed at once and
//! counted (`downstream_cx_overflow`); open connections are not affected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Open-connection counts shared by every worker.
#[derive(Default)]
pub struct ConnCounts {
    process: Arc<AtomicU64>,
    listeners: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl ConnCounts {
    /// The shared count of one listener (created on first use). Called when a listener
    /// starts on a worker, not per connection.
    pub fn listener(&self, name: &str) -> ListenerCount {
        let mut map = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let own = map.entry(name.to_string()).or_default().clone();
        ListenerCount {
            own,
            process: self.process.clone(),
        }
    }
}

/// The counts one listener's accept loop admits against.
#[derive(Clone)]
pub struct ListenerCount {
    own: Arc<AtomicU64>,
    process: Arc<AtomicU64>,
}

impl ListenerCount {
    /// Counts a new connection, or refuses it when the listener's or the process's limit
    /// is reached. The permit gives the slot back when dropped.
    pub fn admit(&self, listener_max: Option<u64>, process_max: Option<u64>) -> Option<Permit> {
        if !take(&self.own, listener_max) {
            return None;
        }
        if !take(&self.process, process_max) {
            self.own.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Permit(self.clone()))
    }
}

/// Takes one slot of `count` if it stays within `max`.
fn take(count: &AtomicU64, max: Option<u64>) -> bool {
    let before = count.fetch_add(1, Ordering::Relaxed);
    if max.is_some_and(|m| before >= m) {
        count.fetch_sub(1, Ordering::Relaxed);
        return false;
    }
    true
}

/// One admitted connection.
pub struct Permit(ListenerCount);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.own.fetch_sub(1, Ordering::Relaxed);
        self.0.process.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_and_slots_come_back() {
        let counts = ConnCounts::default();
        let a = counts.listener("a");
        let b = counts.listener("b");
        let p1 = a.admit(Some(2), Some(3)).unwrap();
        let _p2 = a.admit(Some(2), Some(3)).unwrap();
        assert!(a.admit(Some(2), Some(3)).is_none(), "listener limit");
        let _p3 = b.admit(None, Some(3)).unwrap();
        assert!(b.admit(None, Some(3)).is_none(), "process limit");
        drop(p1);
        assert!(b.admit(None, Some(3)).is_some());
        assert!(counts.listener("a").admit(Some(2), None).is_some());
    }
}
