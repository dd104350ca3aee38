//! Header slots for a request head, lent per request from a per-thread spare list.
//!
//! The HTTP/1 connection parses a request head into `MAX_HEADERS_CAP` slots (8 KiB),
//! and the parsed headers stay borrowed while the filter chain runs, across its
//! awaits. Kept on the stack, the slots were part of every connection's future: 8 KiB
//! of each idle keep-alive connection's memory, for a head that is parsed in
//! microseconds. Lent from the worker thread's spares instead (`Lent`), they are held
//! only while a head is being handled; a thread keeps as many arrays as it has heads in
//! flight at once, up to `KEPT`, so a request takes no allocation.

#![deny(clippy::indexing_slicing)]

use std::cell::RefCell;
use std::mem::MaybeUninit;

use crate::config::MAX_HEADERS_CAP;

/// An array between loans: its slots are uninitialised as far as anyone may know.
type Slots = [MaybeUninit<httparse::Header<'static>>; MAX_HEADERS_CAP];

/// The most spare arrays a thread keeps: more heads in flight at once than this take
/// an allocation each beyond it.
const KEPT: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Box<Slots>>> = const { RefCell::new(Vec::new()) };
}

/// One array of header slots on loan; it goes back to the thread's spares on drop.
pub struct Lent(Option<Box<Slots>>);

impl Lent {
    pub fn take() -> Lent {
        let spare = SPARE.with(|s| s.borrow_mut().pop());
        Lent(Some(spare.unwrap_or_else(|| {
            Box::new([const { MaybeUninit::uninit() }; MAX_HEADERS_CAP])
        })))
    }

    /// The slots, for headers that borrow a buffer living at least as long as this
    /// loan of them.
    pub fn slots<'b>(&'b mut self) -> &'b mut [MaybeUninit<httparse::Header<'b>>] {
        let Some(array) = self.0.as_mut() else {
            return &mut [];
        };
        let slots: *mut [MaybeUninit<httparse::Header<'static>>] = array.as_mut_slice();
        // SAFETY: `Header<'static>` and `Header<'b>` have the same layout, and the slots
        // are `MaybeUninit`: nothing here reads one as initialised. Headers written
        // during the loan may outlive their buffer inside the array, but only as
        // uninitialised bytes: the next loan hands them out as `MaybeUninit` again,
        // and a reader must write a slot before it reads it (httparse does).
        // (clippy sees one type: the cast changes only the lifetime, which it needs.)
        #[allow(clippy::unnecessary_cast)]
        unsafe {
            &mut *(slots as *mut [MaybeUninit<httparse::Header<'b>>])
        }
    }

    /// The headers `given` yields, written into the slots (any past `MAX_HEADERS_CAP`
    /// are left out): the HTTP/2 path's view of a `HeaderMap` for the router and the
    /// filters, where it was a `Vec` made per stream.
    pub fn fill<'b>(
        &'b mut self,
        given: impl Iterator<Item = httparse::Header<'b>>,
    ) -> &'b [httparse::Header<'b>] {
        let slots = self.slots();
        let mut n = 0;
        for (slot, h) in slots.iter_mut().zip(given) {
            slot.write(h);
            n += 1;
        }
        let slots: &'b [MaybeUninit<httparse::Header<'b>>] = slots;
        let written = slots.get(..n).unwrap_or_default();
        // SAFETY: each of the first `n` slots was written just above.
        unsafe { written.assume_init_ref() }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(array) = self.0.take() {
            SPARE.with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < KEPT {
                    s.push(array);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_array_is_lent_again_and_parses_a_new_head() {
        let first = {
            let mut lent = Lent::take();
            let data = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
            let mut req = httparse::Request::new(&mut []);
            let parsed = req.parse_with_uninit_headers(&data, lent.slots()).unwrap();
            assert!(parsed.is_complete());
            assert_eq!(req.headers.len(), 1);
            lent.0.as_ref().map(|a| a.as_ptr())
        };
        let mut lent = Lent::take();
        assert_eq!(
            lent.0.as_ref().map(|a| a.as_ptr()),
            first,
            "the spare is reused"
        );
        let data = b"GET /x HTTP/1.1\r\nHost: b\r\nX-A: 1\r\n\r\n".to_vec();
        let mut req = httparse::Request::new(&mut []);
        assert!(req
            .parse_with_uninit_headers(&data, lent.slots())
            .unwrap()
            .is_complete());
        assert_eq!(req.headers.len(), 2);
        assert_eq!(req.headers.first().map(|h| h.value), Some(&b"b"[..]));
    }

    #[test]
    fn fill_writes_what_it_is_given_up_to_the_cap() {
        let names: Vec<String> = (0..MAX_HEADERS_CAP + 3).map(|i| format!("h{i}")).collect();
        let mut lent = Lent::take();
        let given = names.iter().map(|n| httparse::Header {
            name: n,
            value: b"v",
        });
        let filled = lent.fill(given);
        assert_eq!(filled.len(), MAX_HEADERS_CAP);
        assert_eq!(filled.last().map(|h| h.name), Some("h255"));
        let mut again = Lent::take();
        assert!(again.fill(std::iter::empty()).is_empty());
    }
}
