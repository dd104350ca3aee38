//! A TCP socket's two directions as io_uring `recv` and `send` operations, behind the
//! poll-based `AsyncRead`/`AsyncWrite` the proxy is written against.
//!
//! Why not monoio's poll-io streams: their readiness comes from an epoll instance the
//! ring watches, so every wake-up costs an `epoll_wait`, and every read and write is a
//! `recv`/`send` syscall, plus the one that answers `EAGAIN` (7.3 syscalls per proxied
//! request against HAProxy's 4.5, docs/benchmarks/runtime-prototypes.md). Here the
//! kernel does the I/O inside the ring: a read or write is an SQE that goes out with the
//! executor's next `io_uring_enter`, and its completion is reaped in the same call, so a
//! request costs no syscall of its own.
//!
//! The price is one copy: an operation owns its buffer until the kernel is done with it,
//! which a `poll_read(&mut [u8])` caller's slice cannot promise, so each operation gets
//! a buffer of its own (2-64 KiB: a read's size follows how full the last one came back,
//! a write's is its bytes') and bytes are copied between it and the caller's. At the
//! sizes the proxy moves, a copy costs far less than the syscalls it replaces. Buffers
//! of the smallest size are kept per worker and reused (`spare`): a write's goes back
//! once the kernel has sent it and the stream next reads, or, on a connection idling
//! between requests, when the send's completion wakes it (`Writer::settle`); the read
//! an idle connection keeps in flight is of the smallest size, so an idle connection
//! holds 2 KiB here and nothing else.
//!
//! Each direction runs its operations in one long-lived future (the *driver*, boxed once
//! per connection) that owns that direction's half of the socket and loops: take a
//! buffer from its slot, run the operation, put the result back. `poll_read` and
//! `poll_write` hand the driver a buffer and poll it with their own context, so the
//! operation's completion wakes the task that waits for it. A read outlives a caller
//! that gives up on it (a timeout, a dropped future): its bytes wait in the buffer for
//! the next call, so no byte read is ever lost. A write is a buffered one: it returns
//! once its bytes are handed over, and the next write, a flush or the close waits for
//! the kernel (`Writer`); the kernel may take a send in parts, and the driver sends the
//! rest when next polled, so a stream that waits to read after a large message also
//! polls the write (`net::TcpStream::poll_read`). Dropping the stream cancels its read;
//! a write in flight is finished by a task of its own.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use monoio::buf::IoBuf;
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf};
use monoio::BufResult;

/// The smallest and largest buffer an operation gets. The smallest is also the size of
/// the read a direction keeps in flight while it waits (`Reader::poll_read`'s re-arm):
/// a connection idle between requests holds this much and no more.
const MIN_BUF: usize = 2 * 1024;
const MAX_BUF: usize = 64 * 1024;

/// A worker's spare `MIN_BUF` buffers: a write's buffer comes back here once the kernel
/// has sent it, so an idle connection holds no write buffer, and the next operation on
/// any connection of the worker takes it again without an allocation.
mod spare {
    use std::cell::RefCell;

    /// The most kept per worker (`MIN_BUF` each): what operations in flight at a burst
    /// need; past it, buffers go back to the allocator.
    const KEEP: usize = 256;

    thread_local! {
        static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty buffer with room for `want` bytes: a spare one when `want` fits the
    /// spare size.
    pub(super) fn take(want: usize) -> Vec<u8> {
        if want <= super::MIN_BUF {
            if let Some(b) = SPARE.with(|s| s.borrow_mut().pop()) {
                return b;
            }
            return Vec::with_capacity(super::MIN_BUF);
        }
        Vec::with_capacity(want)
    }

    /// Gives a buffer back: kept if it has the spare size and there is room.
    pub(super) fn put(mut b: Vec<u8>) {
        if b.capacity() != super::MIN_BUF {
            return;
        }
        b.clear();
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < KEEP {
                s.push(b);
            }
        });
    }
}

/// What a caller and its driver pass each other: a buffer to work on, and the
/// operation's result with the buffer back.
#[derive(Default)]
struct Slot {
    todo: Cell<Option<Vec<u8>>>,
    done: Cell<Option<BufResult<usize, Vec<u8>>>>,
    /// The stream is gone: the driver ends after the operation in flight.
    closed: Cell<bool>,
}

impl Slot {
    /// The operation in flight has its result, left in the slot for the next caller.
    fn finished(&self) -> bool {
        let done = self.done.take();
        let finished = done.is_some();
        self.done.set(done);
        finished
    }

    /// The driver's wait for work; `None` once the stream is gone. The caller fills
    /// `todo` before it polls the driver, so no waker is needed: an empty slot is only
    /// ever seen right after an operation finished, and the next call polls again.
    fn next(&self) -> impl Future<Output = Option<Vec<u8>>> + '_ {
        std::future::poll_fn(move |_| match self.todo.take() {
            Some(b) => Poll::Ready(Some(b)),
            None if self.closed.get() => Poll::Ready(None),
            None => Poll::Pending,
        })
    }
}

type Driver = Pin<Box<dyn Future<Output = ()>>>;

/// One direction: its buffer, its driver and whether an operation is in flight.
struct Side {
    slot: Rc<Slot>,
    driver: Driver,
    /// The buffer while no operation holds it.
    buf: Option<Vec<u8>>,
    busy: bool,
}

impl Side {
    fn new(slot: Rc<Slot>, driver: Driver) -> Self {
        Side {
            slot,
            driver,
            buf: None,
            busy: false,
        }
    }

    /// This direction's buffer, emptied, with room for `want` bytes within the bounds:
    /// its own while that is large enough and less than twice too large (a buffer grown
    /// for a bulk transfer is given back when smaller reads follow), else a spare or a
    /// new one.
    fn take_buf(&mut self, want: usize) -> Vec<u8> {
        let want = want.clamp(MIN_BUF, MAX_BUF);
        match self.buf.take() {
            Some(mut b) if b.capacity() >= want && b.capacity() < want * 2 => {
                b.clear();
                b
            }
            Some(b) => {
                spare::put(b);
                spare::take(want)
            }
            None => spare::take(want),
        }
    }

    /// Starts an operation on `b`.
    fn start(&mut self, b: Vec<u8>) {
        self.slot.todo.set(Some(b));
        self.busy = true;
    }

    /// Drives the operation in flight; its result once it has one.
    fn poll_done(&mut self, cx: &mut Context<'_>) -> Option<io::Result<usize>> {
        // The driver ends only once the stream is gone; until then it loops back to wait
        // for the next buffer.
        let _ = self.driver.as_mut().poll(cx);
        let (res, b) = self.slot.done.take()?;
        self.busy = false;
        self.buf = Some(b);
        Some(res)
    }
}

/// The read direction. Bytes read and not yet handed out stay in its buffer.
pub struct Reader {
    side: Side,
    /// How much of the buffer's filled part was handed out.
    pos: usize,
}

impl Reader {
    pub fn new(mut half: OwnedReadHalf<monoio::net::TcpStream>) -> Self {
        let slot = Rc::new(Slot::default());
        let s = slot.clone();
        let driver = Box::pin(async move {
            while let Some(b) = s.next().await {
                let r = half.read(b).await;
                s.done.set(Some(r));
            }
        });
        Reader {
            side: Side::new(slot, driver),
            pos: 0,
        }
    }

    /// Copies buffered bytes out, if any are left.
    fn drain(&mut self, out: &mut [u8]) -> Option<usize> {
        let b = self.side.buf.as_ref()?;
        let left = b.get(self.pos..).filter(|l| !l.is_empty())?;
        let n = left.len().min(out.len());
        out.get_mut(..n)?.copy_from_slice(left.get(..n)?);
        self.pos += n;
        Some(n)
    }

    /// Starts the next read into the (drained) buffer and hands it to the kernel.
    fn arm(&mut self, cx: &mut Context<'_>, want: usize) {
        let b = self.side.take_buf(want);
        self.pos = 0;
        self.side.start(b);
        let _ = self.side.driver.as_mut().poll(cx);
    }

    /// The size of the read kept in flight after the buffer is used up, from how the
    /// last read went: a read that filled its buffer means more is coming (a body), so
    /// the next gets twice as much, up to `MAX_BUF`; one that did not means the peer
    /// sent what it had (a request head, a response), so the next is sized to that (the
    /// power of two that holds it): a peer that sends messages of one size gets each
    /// in one read, and a connection whose last request was small waits with the
    /// smallest buffer, which is what it then holds while idle.
    fn next_size(&self) -> usize {
        match &self.side.buf {
            Some(b) if b.len() >= b.capacity() => b.capacity().saturating_mul(2),
            Some(b) => b.len().next_power_of_two(),
            None => MIN_BUF,
        }
    }

    /// `Ready` once a read would not wait: bytes are buffered, or the read in flight
    /// finished (with bytes, the peer's close or an error, left for `poll_read`). Arms
    /// a smallest-size read if none is in flight. The caller lends no buffer while it
    /// waits (`Io::poll_read_ready`).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.drained() {
            return Poll::Ready(());
        }
        if !self.side.busy {
            self.arm(cx, MIN_BUF);
        } else {
            let _ = self.side.driver.as_mut().poll(cx);
        }
        if self.side.slot.finished() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn drained(&self) -> bool {
        self.side.buf.as_ref().is_none_or(|b| self.pos >= b.len())
    }

    /// A read into `out`: `Pending` while the operation is in flight (the caller's
    /// timeout, if any, is the caller's business).
    pub fn poll_read(&mut self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if let Some(n) = self.drain(out) {
                // The next read is in flight as soon as this one is used up, so bytes
                // the peer sends meanwhile (or its close) are known without a syscall
                // (`idle_is_clean`), and the next call finds them ready.
                if self.drained() && !self.side.busy {
                    self.arm(cx, self.next_size());
                }
                return Poll::Ready(Ok(n));
            }
            if !self.side.busy {
                let b = self.side.take_buf(out.len());
                self.pos = 0;
                self.side.start(b);
            }
            match self.side.poll_done(cx) {
                None => return Poll::Pending,
                Some(Ok(0)) => return Poll::Ready(Ok(0)),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// For a connection that sat idle in a pool: true while nothing arrived and the peer
    /// did not close. The read armed when the last one was used up (`poll_read`) is
    /// still in flight, so the answer is the ring's: no syscall. A stream with no read
    /// in flight (never read from) asks the kernel with a one-byte peek instead, and
    /// arms one.
    pub fn idle_is_clean(&mut self, cx: &mut Context<'_>, fd: std::os::fd::RawFd) -> bool {
        if !self.drained() {
            return false;
        }
        if !self.side.busy {
            if !super::super::peek::peek_is_clean(fd) {
                return false;
            }
            self.arm(cx, MIN_BUF);
        }
        let _ = self.side.driver.as_mut().poll(cx);
        // A finished read (bytes, a close or an error) stays in the slot for the
        // caller's next read; the pool drops the connection anyway.
        !self.side.slot.finished()
    }
}

impl Drop for Reader {
    /// The buffer, unless a read in flight holds it (cancelled with the driver), goes
    /// back to the worker's spares.
    fn drop(&mut self) {
        if let Some(b) = self.side.buf.take() {
            spare::put(b);
        }
    }
}

/// The write direction: a buffered writer whose buffer the kernel sends from. A write
/// returns as soon as its bytes are copied into the buffer and handed to the ring; the
/// next write (or a flush, or the close) waits until the kernel has sent all of them,
/// and reports the error if it could not. A caller that gives up on a write therefore
/// never leaves a result behind for the next one to mistake for its own.
pub struct Writer {
    side: Side,
    /// An empty write is in flight and its caller waits for it (`poll_write`).
    empty: bool,
    /// The write in flight was handed over and no caller waits for it: its driver was
    /// last polled without a waker (`settle`). A caller that waits (a flush, the next
    /// write, an idle connection's `settle_cx`) registers its waker, which `settle`
    /// must then not replace.
    unattended: bool,
}

impl Writer {
    pub fn new(mut half: OwnedWriteHalf<monoio::net::TcpStream>) -> Self {
        let slot = Rc::new(Slot::default());
        let s = slot.clone();
        let driver = Box::pin(async move {
            while let Some(mut b) = s.next().await {
                // The whole buffer goes out: the kernel may take it in parts.
                let (len, mut sent) = (b.len(), 0);
                let res = loop {
                    let (r, part) = half.write(b.slice(sent..len)).await;
                    b = part.into_inner();
                    match r {
                        Ok(n) if len == 0 => break Ok(n),
                        Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            sent += n;
                            if sent >= len {
                                break Ok(len);
                            }
                        }
                        Err(e) => break Err(e),
                    }
                };
                // The buffer goes back to the worker's spares now, not with the next
                // write: a connection that then idles holds none.
                spare::put(b);
                s.done.set(Some((res, Vec::new())));
            }
        });
        Writer {
            side: Side::new(slot, driver),
            empty: false,
            unattended: false,
        }
    }

    /// Runs the driver without a waker: it queues a write just handed over, or takes
    /// back a finished write's buffer (which then goes to the worker's spares). The
    /// result stays in the slot for the next caller that waits.
    pub fn settle(&mut self) {
        if self.side.busy && self.unattended {
            let _ = self
                .side
                .driver
                .as_mut()
                .poll(&mut Context::from_waker(std::task::Waker::noop()));
        }
    }

    /// As `settle`, with the caller's waker: a caller about to idle (a keep-alive
    /// connection between requests) is woken once the write in flight finishes, to
    /// take its buffer back (`settle` again), so an idle connection holds none; a
    /// caller that waits for the answer to a large message is woken to drive the
    /// write on if the kernel took only a part of it (the driver's loop sends the rest
    /// when polled: `TcpStream::poll_read`).
    pub fn settle_cx(&mut self, cx: &mut Context<'_>) {
        if self.side.busy && !self.finished() {
            self.unattended = false;
            let _ = self.side.driver.as_mut().poll(cx);
        }
    }

    /// A write was handed over whose result no caller has taken yet.
    pub fn busy(&self) -> bool {
        self.side.busy
    }

    /// A write was handed over that is not known to have finished.
    pub fn in_flight(&self) -> bool {
        self.side.busy && !self.finished()
    }

    /// Drives a write a caller already waits for (`settle_cx`, a flush) with that
    /// caller's waker: the rest of a send the kernel took in part goes out, and a
    /// finished one is known to be (`in_flight`).
    pub fn poll_attended(&mut self, cx: &mut Context<'_>) {
        if self.side.busy && !self.unattended && !self.finished() {
            let _ = self.side.driver.as_mut().poll(cx);
        }
    }

    /// The write in flight, if any, has its result (held for the next caller).
    fn finished(&self) -> bool {
        self.side.slot.finished()
    }

    /// Waits until the kernel has sent everything handed to it; its error, if any.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.side.busy {
            return Poll::Ready(Ok(()));
        }
        self.unattended = false;
        match self.side.poll_done(cx) {
            None => Poll::Pending,
            Some(r) => Poll::Ready(r.map(|_| ())),
        }
    }

    /// Copies as many bytes of `bufs` as fit the buffer, once the previous write is
    /// out, and hands them to the kernel: `Ready` with that count. An empty write waits
    /// for the kernel's answer instead: on a socket still connecting it comes once the
    /// connect has (`upstream::bound`).
    pub fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let waited_empty = std::mem::take(&mut self.empty);
        match self.poll_flush(cx) {
            Poll::Pending => {
                self.empty = waited_empty;
                return Poll::Pending;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) if waited_empty && total == 0 => return Poll::Ready(Ok(0)),
            Poll::Ready(Ok(())) => {}
        }
        let mut b = self.side.take_buf(total);
        let room = b.capacity();
        for s in bufs {
            let n = s.len().min(room - b.len());
            b.extend_from_slice(s.get(..n).unwrap_or_default());
            if b.len() == room {
                break;
            }
        }
        let copied = b.len();
        self.side.start(b);
        if total == 0 {
            self.empty = true;
            return match self.poll_flush(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(r) => {
                    self.empty = false;
                    Poll::Ready(r.map(|()| 0))
                }
            };
        }
        // The driver takes the buffer and queues the send for the next ring submission.
        // Polled without the caller's waker: the caller does not wait for the send, and
        // its completion would wake the caller's task for nothing (a spurious poll per
        // request). Whoever waits next (a write, a flush, the close) polls with theirs.
        self.unattended = true;
        self.settle();
        Poll::Ready(Ok(copied))
    }
}

impl Drop for Writer {
    /// A write in flight is finished, not cancelled: its bytes were handed over (the
    /// response before a close, the TLS alert before a failed handshake's close). Its driver runs on as a task
    /// of its own until the kernel is done, which also keeps the socket open until then.
    fn drop(&mut self) {
        self.side.slot.closed.set(true);
        // A write that finished unseen needs no task to finish it (nobody waits for
        // it any more).
        self.unattended = true;
        self.settle();
        if self.side.busy && self.side.slot.done.take().is_none() {
            let driver = std::mem::replace(&mut self.side.driver, Box::pin(std::future::ready(())));
            super::spawn_local(driver).detach();
        }
    }
}

#[cfg(test)]
#[path = "ring_io_tests.rs"]
mod tests;
