//! Futures boxed in memory the current thread keeps for reuse.
//!
//! A connection's task lives as long as the connection, and a boxed future is as large
//! as its largest state: an idle HTTP/1 keep-alive connection would hold the whole
//! request path's state (about 15 KiB) while it waits for its next request. Instead
//! the task keeps only what lives between requests and runs each request's future in
//! [`Recycled`] memory: taken from the thread's spares when the request begins, given
//! back when it ends, so the memory is held only by connections that are busy, and the
//! request path allocates nothing once the spares cover the busy connections (issue
//! 12: "release read buffers of idle connections back to the worker's pool", here the
//! request's state as well). An HTTP/2 stream's task does the same with the stream's
//! future (about 10 KiB): built here in place, not copied into a new box at spawn.
//!
//! Spares are kept per memory layout (size and alignment), so any future of a layout
//! reuses them; at most `KEEP` per layout, the rest go back to the allocator.

use std::alloc::Layout;
use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// The most spares kept per layout: more requests or streams busy at once than this take
/// memory from the allocator and give it back (in a steady state one ends as the next
/// begins, so the spares serve them).
const KEEP: usize = 128;

/// The thread's spare blocks, by layout.
struct Spares(Vec<(Layout, Vec<NonNull<u8>>)>);

impl Drop for Spares {
    fn drop(&mut self) {
        for (layout, blocks) in self.0.drain(..) {
            for b in blocks {
                // SAFETY: every block here was allocated with this layout (`take`) and
                // is owned by this list alone.
                unsafe { std::alloc::dealloc(b.as_ptr(), layout) };
            }
        }
    }
}

thread_local! {
    static SPARES: RefCell<Spares> = const { RefCell::new(Spares(Vec::new())) };
}

/// A block for `layout` (size > 0): a spare, or a new one.
fn take(layout: Layout) -> NonNull<u8> {
    let spare = SPARES
        .try_with(|s| {
            let mut s = s.borrow_mut();
            s.0.iter_mut()
                .find(|(l, _)| *l == layout)
                .and_then(|(_, blocks)| blocks.pop())
        })
        .ok()
        .flatten();
    if let Some(b) = spare {
        return b;
    }
    // SAFETY: `layout` has a non-zero size (checked by the caller).
    let p = unsafe { std::alloc::alloc(layout) };
    NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
}

/// Gives a block of `layout` back: kept as a spare while there is room.
fn give(layout: Layout, b: NonNull<u8>) {
    let kept = SPARES
        .try_with(|s| {
            let mut s = s.borrow_mut();
            let at = match s.0.iter().position(|(l, _)| *l == layout) {
                Some(i) => i,
                None => {
                    s.0.push((layout, Vec::new()));
                    s.0.len() - 1
                }
            };
            match s.0.get_mut(at) {
                Some((_, blocks)) if blocks.len() < KEEP => {
                    blocks.push(b);
                    true
                }
                _ => false,
            }
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: `b` was allocated with `layout` (`take`) and nothing else holds it.
        unsafe { std::alloc::dealloc(b.as_ptr(), layout) };
    }
}

/// A block of a layout, given back to the spares when dropped (a zero-sized layout's
/// dangling pointer is no block).
struct Back(Layout, NonNull<u8>);

impl Drop for Back {
    fn drop(&mut self) {
        if self.0.size() > 0 {
            give(self.0, self.1);
        }
    }
}

/// A future in a block of the thread's spares (see the module's doc). It never moves
/// once built, so it is polled pinned where it lies; dropping it drops the future and
/// gives the block back.
pub struct Recycled<F: Future> {
    ptr: NonNull<F>,
    _owns: PhantomData<F>,
}

/// Builds `make()`'s future in a spare block (built where it lies: the future is not
/// copied into place after being built elsewhere, where the compiler can avoid it).
pub fn recycled<F: Future>(make: impl FnOnce() -> F) -> Recycled<F> {
    let layout = Layout::new::<F>();
    let ptr = if layout.size() == 0 {
        NonNull::dangling()
    } else {
        take(layout).cast::<F>()
    };
    // The block goes back if `make` panics before the future is in it.
    let unfilled = Back(layout, ptr.cast());
    // SAFETY: `ptr` is valid for writes of an `F` and suitably aligned (a block of
    // `F`'s layout, or dangling for a zero-sized `F`); nothing is there to drop.
    unsafe { ptr.as_ptr().write(make()) };
    std::mem::forget(unfilled);
    Recycled {
        ptr,
        _owns: PhantomData,
    }
}

// The future is pinned in its block, not in the handle: moving the handle moves a
// pointer.
impl<F: Future> Unpin for Recycled<F> {}

impl<F: Future> Future for Recycled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // SAFETY: the future was written at `ptr` in `recycled`, is dropped only in
        // `drop`, and is never moved out of its block: pinning it there holds.
        unsafe { Pin::new_unchecked(this.ptr.as_mut()) }.poll(cx)
    }
}

impl<F: Future> Drop for Recycled<F> {
    fn drop(&mut self) {
        // The block goes back even if the future's drop panics.
        let _back = Back(Layout::new::<F>(), self.ptr.cast());
        // SAFETY: the future at `ptr` is initialized and owned by this handle alone;
        // it is dropped once, here, in place (as pinning requires).
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Counts its drops.
    struct Dropped(Rc<Cell<u32>>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    fn layout_of<F: Future>(_: &Recycled<F>) -> Layout {
        Layout::new::<F>()
    }

    fn spares_of(layout: Layout) -> usize {
        SPARES.with(|s| {
            s.borrow()
                .0
                .iter()
                .find(|(l, _)| *l == layout)
                .map_or(0, |(_, b)| b.len())
        })
    }

    #[test]
    fn runs_the_future_and_reuses_its_block() {
        let drops = Rc::new(Cell::new(0));
        let make = |d: Rc<Cell<u32>>| {
            let held = Dropped(d);
            move || async move {
                let big = [7u8; 4096];
                std::future::ready(()).await;
                drop(held);
                big.iter().map(|&b| u32::from(b)).sum::<u32>()
            }
        };
        let first = recycled(make(drops.clone()));
        let at = first.ptr.cast::<u8>();
        let layout = layout_of(&first);
        assert_eq!(crate::rt::executor::block_on(first), 7 * 4096);
        assert_eq!(drops.get(), 1);
        assert_eq!(spares_of(layout), 1);
        // The next future of the same layout takes the same block.
        let second = recycled(make(drops.clone()));
        assert_eq!(second.ptr.cast::<u8>(), at);
        assert_eq!(spares_of(layout), 0);
        // Dropped before it ran: what it holds is dropped, the block comes back.
        drop(second);
        assert_eq!(spares_of(layout), 1);
        assert_eq!(drops.get(), 2);
    }

    #[test]
    fn a_panic_while_building_gives_the_block_back() {
        fn boom() -> std::future::Ready<[u8; 300]> {
            panic!("no future")
        }
        let layout = Layout::new::<std::future::Ready<[u8; 300]>>();
        let before = spares_of(layout);
        drop(recycled(|| std::future::ready([0u8; 300])));
        let after_one = spares_of(layout);
        assert_eq!(after_one, before.max(1));
        assert!(std::panic::catch_unwind(|| recycled(boom)).is_err());
        assert_eq!(spares_of(layout), after_one);
    }

    #[test]
    fn keeps_at_most_keep_spares() {
        let make = || async { [1u8; 100] };
        let many: Vec<_> = (0..KEEP + 10).map(|_| recycled(make)).collect();
        let layout = many.first().map(layout_of).unwrap();
        drop(many);
        assert_eq!(spares_of(layout), KEEP);
    }
}
