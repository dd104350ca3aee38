//! A process-wide allocation counter for measurement builds (cargo feature
//! `alloc-count`, off by default).
//!
//! Not on the request path in a normal build: without the feature this module is one
//! function that returns `None`, and the admin endpoints add nothing. With the feature,
//! the binary's global allocator is a thin wrapper around `std::alloc::System` that
//! adds one relaxed atomic increment to every allocation, on every thread: the
//! executors' (glommio's reactor included), the control thread's and the access-log
//! thread's. The admin API then shows the running total (`allocations` in `GET
//! /stats`, `outrigger_process_allocations_total` in Prometheus), and the load test
//! reads it before and after a fixed number of requests on real sockets
//! (`loadtest/run`, docs/benchmarks/README.md). The shared atomic breaks the
//! project's "no atomics on the request path" rule on purpose, which is why it only
//! exists in this build and is never timed.
//!
//! Counted: `alloc`, `alloc_zeroed` and `realloc` (a growth that may move the block);
//! `dealloc` is not an allocation.

/// Allocations made by this process since it started, or `None` in a build without
/// the `alloc-count` feature.
#[inline]
pub fn allocations() -> Option<u64> {
    #[cfg(feature = "alloc-count")]
    {
        Some(imp::ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed))
    }
    #[cfg(not(feature = "alloc-count"))]
    {
        None
    }
}

#[cfg(feature = "alloc-count")]
mod imp {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(super) static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

    /// `System`, counting each allocation in [`ALLOCATIONS`].
    pub(super) struct Counting;

    // SAFETY: every method defers to the system allocator with the same arguments;
    // the counter is the only addition and does not touch the memory.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: same contract as ours.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    // Not in the library's own unit-test binary: src/http/alloc_tests.rs installs its
    // per-thread counter there, and a program has one global allocator. The tests
    // below call the wrapper directly instead.
    #[cfg(not(test))]
    #[global_allocator]
    static GLOBAL: Counting = Counting;
}

#[cfg(all(test, feature = "alloc-count"))]
mod tests {
    use std::alloc::{GlobalAlloc, Layout};

    use super::imp::Counting;
    use super::*;

    /// In the unit-test binary nothing else goes through `Counting` (it is not the
    /// global allocator there), so the counter moves only by what this test does.
    #[test]
    fn counts_alloc_zeroed_and_realloc_but_not_dealloc() {
        let layout = Layout::from_size_align(64, 8).expect("valid layout");
        let before = allocations().expect("the feature is on");
        // SAFETY: non-zero size; each block is freed with the layout it has.
        unsafe {
            let a = Counting.alloc(layout);
            assert!(!a.is_null());
            assert_eq!(allocations(), Some(before + 1));
            let z = Counting.alloc_zeroed(layout);
            assert!(!z.is_null());
            assert_eq!(z.read(), 0);
            assert_eq!(allocations(), Some(before + 2));
            let a = Counting.realloc(a, layout, 4096);
            assert!(!a.is_null());
            assert_eq!(allocations(), Some(before + 3));
            Counting.dealloc(a, Layout::from_size_align(4096, 8).expect("valid layout"));
            Counting.dealloc(z, layout);
        }
        assert_eq!(allocations(), Some(before + 3));
    }
}
