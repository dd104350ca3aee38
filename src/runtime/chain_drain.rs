//! Draining the connections of a filter chain that an update changed or removed.
//!
//! Each worker gives every chain of a new snapshot a `ChainLife`: the one the chain had
//! in the previous view when the listener (name and address) is the same and a chain
//! of the same fingerprint (`config/build/fingerprint.rs`: the chain as configured) is
//! there, else a new one. The previous view's lives that no chain took over have ended:
//! their connections drain, the way a worker drains on SIGTERM but limited to them.
//! An HTTP/1 connection idle between requests has its read side shut (it sees the end
//! of the stream and closes); a busy one ends its response with `connection: close`
//! and closes. An HTTP/2 connection sends GOAWAY and closes once its streams finish.
//! What is left at the drain timeout (a TCP proxy connection, a tunnel, a stream still
//! running) is closed then: its task ends. Connections on chains that are kept, and
//! every connection after an update that changes only routes or clusters, are not
//! touched.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::rc::Rc;

use crate::config::Snapshot;
use crate::http::view::{ChainLife, ConnSlot, WorkerView};
use crate::upstream::Connector;

/// A worker's open connections: its socket and its slot, by connection id.
pub type Conns = RefCell<HashMap<u64, (RawFd, Rc<ConnSlot>)>>;

/// The lives of the chains of `snapshot` (indexed like its listeners, then by chain
/// index), carried over from `prev` where the chain is unchanged, and the lives of
/// `prev` that ended (their chain changed, or its listener went or moved).
pub fn lives<C: Connector>(
    prev: Option<&WorkerView<C>>,
    snapshot: &Snapshot,
) -> (Vec<Vec<Rc<ChainLife>>>, Vec<Rc<ChainLife>>) {
    let mut taken: Vec<Vec<bool>> = prev
        .map(|p| p.lives.iter().map(|l| vec![false; l.len()]).collect())
        .unwrap_or_default();
    let lives = snapshot
        .listeners
        .iter()
        .map(|l| {
            let old = prev.and_then(|p| {
                let i = p
                    .snapshot
                    .listeners
                    .iter()
                    .position(|o| o.name == l.name && o.addr == l.addr)?;
                Some((i, p.snapshot.listeners.get(i)?, p.lives.get(i)?))
            });
            l.chains()
                .map(|(_, c)| {
                    let kept = old.and_then(|(i, o, lives)| {
                        let (k, _) = o.chains().find(|(_, oc)| oc.fingerprint == c.fingerprint)?;
                        let flag = taken.get_mut(i)?.get_mut(k)?;
                        *flag = true;
                        lives.get(k).cloned()
                    });
                    kept.unwrap_or_default()
                })
                .collect()
        })
        .collect();
    let ended = prev
        .map(|p| {
            p.lives
                .iter()
                .zip(&taken)
                .flat_map(|(lives, taken)| lives.iter().zip(taken))
                .filter(|(_, taken)| !**taken)
                .map(|(l, _)| l.clone())
                .collect()
        })
        .unwrap_or_default();
    (lives, ended)
}

/// Starts draining the connections of the `ended` lives. Returns whether any such
/// connection is open (then the caller closes what is left at the drain timeout,
/// `close_left`).
pub fn start(ended: &[Rc<ChainLife>], conns: &Conns) -> bool {
    for life in ended {
        life.closing.set(true);
    }
    let mut any = false;
    for (fd, slot) in conns.borrow().values() {
        if !on(slot, ended) {
            continue;
        }
        any = true;
        if slot.idle.get() {
            // SAFETY: fd belongs to a live connection the worker tracks; shutdown does
            // not close it. An HTTP/1 connection waiting for its next request sees the
            // end of the stream and closes.
            unsafe { libc::shutdown(*fd, libc::SHUT_RD) };
        }
        // An HTTP/2 connection sleeping on its clocks sends GOAWAY.
        slot.wake_for_drain();
    }
    any
}

/// At the drain timeout: closes the connections of the `ended` lives still open.
pub fn close_left(ended: &[Rc<ChainLife>], conns: &Conns) -> usize {
    let mut n = 0;
    for (_, slot) in conns.borrow().values() {
        if on(slot, ended) {
            slot.kill();
            n += 1;
        }
    }
    n
}

/// The connection is on one of `lives`.
fn on(slot: &ConnSlot, lives: &[Rc<ChainLife>]) -> bool {
    slot.life
        .borrow()
        .as_ref()
        .is_some_and(|l| lives.iter().any(|e| Rc::ptr_eq(e, l)))
}
