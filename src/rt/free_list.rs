//! A worker's list of spare objects (buffers, future blocks, header slots) that keeps
//! as many as its load needs, up to a ceiling.
//!
//! The worker's spare lists kept a fixed number each (128 to 256). A load with more
//! requests in flight than that (h2-streams: 4 connections of 100 streams) gave the
//! surplus back to the allocator whenever a burst of streams ended, and took it again
//! when the next burst began: zeroed 8 KiB read buffers and 10 KiB stream futures,
//! fresh from the allocator and cold in cache, for a third of the requests. Here the
//! list keeps what comes back up to a ceiling, and gives back what its load no longer
//! uses: the spares that none of the last `WINDOW` takes needed (the fewest the list
//! held in that time) go back to the allocator, oldest first. A steady load of any
//! concurrency up to the ceiling then allocates nothing, and a burst's spares are shed
//! as the load that follows it runs, without a timer. A worker that goes idle right
//! after a burst keeps its spares (at most the ceiling) until it next works.

#![deny(clippy::indexing_slicing)]

/// Takes per window: the spares the list held throughout this many takes were not
/// needed, and are given back.
const WINDOW: u32 = 1024;

pub struct FreeList<T> {
    items: Vec<T>,
    /// The most spares kept.
    ceiling: usize,
    /// Takes in the current window.
    takes: u32,
    /// The fewest spares held in the current window.
    low: usize,
}

impl<T> FreeList<T> {
    pub const fn new(ceiling: usize) -> Self {
        FreeList {
            items: Vec::new(),
            ceiling,
            takes: 0,
            low: 0,
        }
    }

    /// A spare, if any (the last one given back: the warmest).
    pub fn take(&mut self) -> Option<T> {
        let got = self.items.pop();
        self.low = self.low.min(self.items.len());
        self.takes += 1;
        if self.takes >= WINDOW {
            // The `low` oldest spares sat unused for the whole window.
            let unused = self.low.min(self.items.len());
            self.items.drain(..unused);
            self.takes = 0;
            self.low = self.items.len();
        }
        got
    }

    /// Keeps `t` while below the ceiling; `Err(t)` (for the caller to free) past it.
    pub fn put(&mut self, t: T) -> Result<(), T> {
        if self.items.len() >= self.ceiling {
            return Err(t);
        }
        self.items.push(t);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A load of `n` in flight: `n` taken (made where the list has none), then given
    /// back. Returns how many had to be made.
    fn cycle(list: &mut FreeList<u32>, n: usize) -> usize {
        let mut made = 0;
        let out: Vec<u32> = (0..n)
            .map(|_| {
                list.take().unwrap_or_else(|| {
                    made += 1;
                    0
                })
            })
            .collect();
        for t in out {
            let _ = list.put(t);
        }
        made
    }

    /// Whatever the load's concurrency, up to the ceiling, a steady load makes nothing
    /// once the list has grown to it; past the ceiling, only the surplus is made.
    #[test]
    fn a_steady_load_up_to_the_ceiling_makes_nothing() {
        let mut list = FreeList::new(500);
        assert_eq!(cycle(&mut list, 400), 400);
        for _ in 0..10 {
            assert_eq!(cycle(&mut list, 400), 0);
        }
        assert_eq!(list.len(), 400);
        assert_eq!(cycle(&mut list, 600), 200);
        assert_eq!(list.len(), 500);
        assert_eq!(cycle(&mut list, 600), 100);
    }

    /// After a burst, a smaller load sheds the spares it does not use within a window
    /// or two of takes, and keeps what it uses.
    #[test]
    fn spares_a_lighter_load_does_not_use_are_given_back() {
        let mut list = FreeList::new(1000);
        cycle(&mut list, 800);
        assert_eq!(list.len(), 800);
        for _ in 0..(2 * WINDOW as usize / 10 + 1) {
            assert_eq!(cycle(&mut list, 10), 0);
        }
        assert_eq!(list.len(), 10);
        // The load it kept for still makes nothing.
        assert_eq!(cycle(&mut list, 10), 0);
    }

    /// A list that empties in each window (every spare used) keeps them all.
    #[test]
    fn spares_used_in_every_window_stay() {
        let mut list = FreeList::new(1000);
        for _ in 0..(3 * WINDOW as usize / 300 + 3) {
            cycle(&mut list, 300);
        }
        assert_eq!(list.len(), 300);
    }
}
