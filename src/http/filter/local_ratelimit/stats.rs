//! The filter's counters with Envoy's names: `<stat_prefix>.http_local_rate_limit.`
//! `enabled`, `enforced`, `ok`, `rate_limited` and `shadow_mode` (always 0: shadow-mode
//! descriptors are not supported). Counted per core in a thread-local table indexed by
//! the stat prefix's number (given when a config is built, kept across reloads, so a
//! counter lives by name as the other stats do); `/stats` merges the cores' reports.

use std::cell::RefCell;
use std::sync::Mutex;

pub const ENABLED: usize = 0;
pub const ENFORCED: usize = 1;
pub const OK: usize = 2;
pub const RATE_LIMITED: usize = 3;
const SHADOW_MODE: usize = 4;
const NAMES: [&str; 5] = ["enabled", "enforced", "ok", "rate_limited", "shadow_mode"];

/// Stat prefixes by number. Written when a config is built, read when stats are
/// reported: never on the request path.
static PREFIXES: Mutex<Vec<String>> = Mutex::new(Vec::new());

thread_local! {
    static COUNTS: RefCell<Vec<[u64; 5]>> = const { RefCell::new(Vec::new()) };
}

/// The number of a stat prefix (the same for the same prefix, across reloads).
pub fn register(prefix: &str) -> usize {
    let mut p = PREFIXES.lock().unwrap_or_else(|e| e.into_inner());
    match p.iter().position(|x| x == prefix) {
        Some(i) => i,
        None => {
            p.push(prefix.to_string());
            p.len() - 1
        }
    }
}

/// One stat prefix's counters on this core.
#[derive(Clone, Copy)]
pub struct Counters(pub usize);

impl Counters {
    pub fn inc(self, which: usize) {
        COUNTS.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() <= self.0 {
                c.resize(self.0 + 1, [0; 5]);
            }
            if let Some(slot) = c.get_mut(self.0).and_then(|s| s.get_mut(which)) {
                *slot += 1;
            }
        });
    }
}

/// This core's counters of every registered prefix, by Envoy name.
pub fn report(out: &mut Vec<(String, u64)>) {
    let prefixes = PREFIXES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    COUNTS.with(|c| {
        let c = c.borrow();
        for (i, prefix) in prefixes.iter().enumerate() {
            let counts = c.get(i).copied().unwrap_or_default();
            for (k, name) in NAMES.iter().enumerate() {
                let v = if k == SHADOW_MODE {
                    0
                } else {
                    counts.get(k).copied().unwrap_or(0)
                };
                out.push((format!("{prefix}.http_local_rate_limit.{name}"), v));
            }
        }
    });
}
