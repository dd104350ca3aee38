//! tokio's IO traits over the proxy's futures-io streams, for the h2 crate: the
//! downstream HTTP/2 codec (`http/h2`), the HTTP/2 upstream connections
//! (`upstream/h2conn.rs`) and the xDS gRPC channel all hand their stream to h2 through
//! `TokioIo`.
//!
//! Why not tokio-util's `Compat`: a futures-io reader takes an initialized `&mut [u8]`,
//! so `Compat` zero-fills the unfilled part of tokio's `ReadBuf` before every read. h2's
//! frame reader passes a fresh, uninitialized `ReadBuf` over the spare capacity of its
//! buffer (about 8 KiB) on each read, so every read paid a memset of the whole spare
//! capacity for the few dozen bytes a request's frames take (about 4,300 instructions
//! per request on `h2-streams`, docs/benchmarks/h2-regression.md). Here the read goes
//! into a per-thread scratch buffer that is zeroed once, when it grows, and only the
//! bytes read are copied into the `ReadBuf`. Nothing unsafe: the caller's uninitialized
//! memory is only ever written through `ReadBuf::put_slice`.
//!
//! Writes pass through unchanged, as with `Compat` (no vectored writes).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use tokio::io::ReadBuf;

/// The largest read made through the scratch buffer: two maximum-size default frames.
/// A caller with more room gets it filled over several reads.
const SCRATCH_MAX: usize = 32 * 1024;

thread_local! {
    /// The scratch buffer of this thread (a worker's core, or the control thread). A
    /// read fills it and empties it into the caller's buffer before returning, so one
    /// per thread serves every connection on it.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A futures-io stream as a tokio one.
pub struct TokioIo<T> {
    inner: T,
}

impl<T> TokioIo<T> {
    pub fn new(inner: T) -> Self {
        TokioIo { inner }
    }
}

impl<T: AsyncRead + Unpin> tokio::io::AsyncRead for TokioIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = &mut self.get_mut().inner;
        let want = buf.remaining();
        // Room that is initialized already (a caller that reuses its `ReadBuf`), or none
        // at all: read in place, as `Compat` did (`initialize_unfilled` zeroes nothing
        // then).
        if want == 0 || buf.initialized().len() == buf.capacity() {
            let n = ready!(Pin::new(inner).poll_read(cx, buf.initialize_unfilled()))?;
            buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        SCRATCH.with(|scratch| {
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                // Only a reader that reads another `TokioIo` from inside its own read
                // could get here; it pays the zeroing instead.
                let n = ready!(Pin::new(&mut *inner).poll_read(cx, buf.initialize_unfilled()))?;
                buf.advance(n);
                return Poll::Ready(Ok(()));
            };
            let len = want.min(SCRATCH_MAX);
            if scratch.len() < len {
                scratch.resize(len, 0);
            }
            let Some(room) = scratch.get_mut(..len) else {
                return Poll::Ready(Err(io::Error::other("scratch buffer too short")));
            };
            let n = ready!(Pin::new(&mut *inner).poll_read(cx, room))?;
            let Some(read) = room.get(..n) else {
                return Poll::Ready(Err(io::Error::other("reader returned more than asked")));
            };
            buf.put_slice(read);
            Poll::Ready(Ok(()))
        })
    }
}

impl<T: AsyncWrite + Unpin> tokio::io::AsyncWrite for TokioIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::MaybeUninit;

    /// A reader that yields its chunks one per read, checking the slice it is given.
    struct Chunks(Vec<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.0.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let c = self.0.remove(0);
            let n = c.len().min(buf.len());
            buf[..n].copy_from_slice(&c[..n]);
            Poll::Ready(Ok(n))
        }
    }

    fn read_into(io: &mut TokioIo<Chunks>, room: &mut [MaybeUninit<u8>]) -> Vec<u8> {
        let mut buf = ReadBuf::uninit(room);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let r = tokio::io::AsyncRead::poll_read(Pin::new(io), &mut cx, &mut buf);
        assert!(matches!(r, Poll::Ready(Ok(()))));
        buf.filled().to_vec()
    }

    #[test]
    fn reads_go_through_the_scratch_into_uninitialized_room() {
        let mut io = TokioIo::new(Chunks(vec![b"hello".to_vec(), vec![7; 40_000], vec![]]));
        let mut room = [MaybeUninit::uninit(); 8192];
        assert_eq!(read_into(&mut io, &mut room), b"hello");
        // A read larger than the scratch's bound is cut to it; the rest stays with the
        // reader (`Chunks` drops it, which is fine for this check).
        let mut big = vec![MaybeUninit::uninit(); 64 * 1024];
        assert_eq!(read_into(&mut io, &mut big).len(), SCRATCH_MAX);
        // End of stream: nothing filled.
        assert!(read_into(&mut io, &mut room).is_empty());
    }

    #[test]
    fn initialized_room_is_read_in_place() {
        let mut io = TokioIo::new(Chunks(vec![b"abc".to_vec()]));
        let mut room = [0u8; 16];
        let mut buf = ReadBuf::new(&mut room);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let r = tokio::io::AsyncRead::poll_read(Pin::new(&mut io), &mut cx, &mut buf);
        assert!(matches!(r, Poll::Ready(Ok(()))));
        assert_eq!(buf.filled(), b"abc");
    }
}
