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
//! which a `poll_read(&mut [u8])` caller's slice cannot promise, so each direction keeps
//! one buffer of its own (sized to the caller's requests, 4-64 KiB, allocated once per
//! connection and reused) and bytes are copied between it and the caller's. At the sizes
//! the proxy moves, a copy costs far less than the syscalls it replaces.
//!
//! Each direction runs its operations in one long-lived future (the *driver*, boxed once
//! per connection) that owns that direction's half of the socket and loops: take a
//! buffer from its slot, run the operation, put the result back. `poll_read` and
//! `poll_write` hand the driver a buffer and poll it with their own context, so the
//! operation's completion wakes the task that waits for it. An operation outlives a
//! caller that gives up on it (a timeout, a dropped future): its result waits in the
//! slot for the next call, so no byte read is ever lost. Dropping the stream drops the
//! drivers, which cancels their operations; monoio keeps the buffers until the kernel
//! lets go of them.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf};
use monoio::BufResult;

/// The smallest and largest buffer a direction keeps.
const MIN_BUF: usize = 4 * 1024;
const MAX_BUF: usize = 64 * 1024;

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

    /// This direction's buffer, emptied, with room for `want` bytes within the bounds.
    fn take_buf(&mut self, want: usize) -> Vec<u8> {
        let want = want.clamp(MIN_BUF, MAX_BUF);
        match self.buf.take() {
            Some(mut b) if b.capacity() >= want => {
                b.clear();
                b
            }
            _ => Vec::with_capacity(want),
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
                    let cap = self.side.buf.as_ref().map_or(0, Vec::capacity);
                    self.arm(cx, cap);
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
        let done = self.side.slot.done.take();
        let clean = done.is_none();
        self.side.slot.done.set(done);
        clean
    }
}

/// The write direction.
pub struct Writer {
    side: Side,
}

impl Writer {
    pub fn new(mut half: OwnedWriteHalf<monoio::net::TcpStream>) -> Self {
        let slot = Rc::new(Slot::default());
        let s = slot.clone();
        let driver = Box::pin(async move {
            while let Some(b) = s.next().await {
                let r = half.write(b).await;
                s.done.set(Some(r));
            }
        });
        Writer {
            side: Side::new(slot, driver),
        }
    }

    /// A write of the bytes of `bufs` (as many as fit the buffer): they are copied once,
    /// when the operation starts. A caller that gets `Pending` calls again with the same
    /// bytes, as `AsyncWrite` callers do, and gets the count the kernel took.
    pub fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !self.side.busy {
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            let mut b = self.side.take_buf(total);
            let room = b.capacity();
            for s in bufs {
                let n = s.len().min(room - b.len());
                b.extend_from_slice(s.get(..n).unwrap_or_default());
                if b.len() == room {
                    break;
                }
            }
            // An empty write still goes to the kernel: on a socket still connecting it
            // completes once the connect has (`upstream::bound`).
            self.side.start(b);
        }
        match self.side.poll_done(cx) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    /// Waits for a write still in flight (one whose caller gave up on it).
    /// (See `Drop` for a stream dropped meanwhile.)
    pub fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.side.busy {
            return Poll::Ready(());
        }
        match self.side.poll_done(cx) {
            Some(_) => Poll::Ready(()),
            None => Poll::Pending,
        }
    }
}

impl Drop for Writer {
    /// A write in flight is finished, not cancelled: its caller may have given up on it
    /// (a best-effort write, such as the TLS alert sent before a failed handshake's
    /// connection closes), but its bytes were handed over. Its driver runs on as a task
    /// of its own until the kernel is done, which also keeps the socket open until then.
    fn drop(&mut self) {
        self.side.slot.closed.set(true);
        if self.side.busy {
            let driver = std::mem::replace(&mut self.side.driver, Box::pin(std::future::ready(())));
            super::spawn_local(driver).detach();
        }
    }
}
