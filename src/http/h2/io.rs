//! Adapters between the proxy's byte streams and the h2 crate.
//!
//! - `Rewind`: a stream that first yields bytes already read (the sniffed connection
//!   preface), then reads from the socket.
//! - `DataSink`: an `AsyncWrite` over an h2 `SendStream` that waits for flow-control
//!   capacity before each DATA frame, so a slow client pushes back on the upstream read
//!   loop and memory stays bounded by the window sizes.
//! - `Counted`: a writer that reports the bytes it passes on to the stream's `Progress`
//!   (which keeps the stream idle clock from running out on a busy stream).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncWrite};
use h2::SendStream;

use super::clock::Progress;

pub struct Rewind<T> {
    prefix: Vec<u8>,
    pos: usize,
    inner: T,
}

impl<T> Rewind<T> {
    pub fn new(prefix: Vec<u8>, inner: T) -> Self {
        Rewind {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.len());
            let start = self.pos;
            buf[..n].copy_from_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

pub struct DataSink<'a> {
    pub stream: &'a mut SendStream<Bytes>,
    /// Body bytes still to come when the body's length is known (a Content-Length
    /// response forwarded as it is): the write that completes it carries END_STREAM,
    /// so a small body goes in one DATA frame, not its bytes and then an empty frame
    /// to end the stream (Envoy and HAProxy send one). `Some(0)`: a write ended the
    /// stream.
    left: Option<u64>,
    /// Nothing written yet: a first write of at most `UNRESERVED` bytes is queued
    /// without asking for capacity first (see `poll_write`).
    first: bool,
}

/// The most a body's first write queues without reserving capacity: one DATA frame at
/// the default frame size. h2 requests the capacity for queued bytes itself and holds
/// them until the peer's window has room, so this bounds what a stream buffers past
/// the window to one frame; every later write waits for capacity as before.
const UNRESERVED: usize = 16 * 1024;

impl<'a> DataSink<'a> {
    /// A sink whose body ends with a frame of its own (`end_stream`, trailers).
    pub fn new(stream: &'a mut SendStream<Bytes>) -> Self {
        DataSink {
            stream,
            left: None,
            first: true,
        }
    }

    /// A sink for a body of `len` bytes (more than zero): its last write ends the stream.
    pub fn ending_after(stream: &'a mut SendStream<Bytes>, len: u64) -> Self {
        DataSink {
            stream,
            left: (len > 0).then_some(len),
            first: true,
        }
    }

    /// A write ended the stream (its body's last byte went): nothing may follow it.
    pub fn ended(&self) -> bool {
        self.left == Some(0)
    }
}

fn h2_err(e: h2::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, e)
}

impl AsyncWrite for DataSink<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.ended() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "write past the body's length",
            )));
        }
        let this = &mut *self;
        // A small body's only write (most responses) skips the reservation: each of
        // `reserve_capacity` and `capacity` takes the connection's lock, and
        // `send_data` requests what it queues by itself.
        let unreserved = std::mem::take(&mut this.first) && buf.len() <= UNRESERVED;
        let s = &mut *this.stream;
        if !unreserved {
            s.reserve_capacity(buf.len());
        }
        loop {
            let cap = if unreserved { buf.len() } else { s.capacity() };
            if cap > 0 {
                let n = cap.min(buf.len());
                let end = this.left == Some(n as u64);
                s.send_data(Bytes::copy_from_slice(&buf[..n]), end)
                    .map_err(h2_err)?;
                if let Some(left) = this.left.as_mut() {
                    *left = left.saturating_sub(n as u64);
                }
                return Poll::Ready(Ok(n));
            }
            match s.poll_capacity(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        "stream closed",
                    )))
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(h2_err(e))),
                Poll::Ready(Some(Ok(_))) => continue,
            }
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

pub struct Counted<'p, W> {
    pub inner: W,
    pub progress: &'p Progress,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counted<'_, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.progress.sent(n as u64);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Waits until `to` may send at least one byte and returns how many (asking for `want`);
/// `None` when the stream can no longer send (reset, connection gone).
pub(crate) async fn send_capacity(to: &mut SendStream<Bytes>, want: usize) -> Option<usize> {
    to.reserve_capacity(want);
    std::future::poll_fn(|cx| loop {
        let c = to.capacity();
        if c > 0 {
            return Poll::Ready(Some(c));
        }
        match to.poll_capacity(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(_))) => continue,
            Poll::Ready(_) => return Poll::Ready(None),
        }
    })
    .await
}

/// Sends `chunk` as the stream's send window lets it go (no END_STREAM), `moved`
/// hearing of each part. `Err`: the stream no longer takes data.
pub(crate) async fn send_all(
    to: &mut SendStream<Bytes>,
    mut chunk: Bytes,
    moved: &impl Fn(u64),
) -> Result<(), ()> {
    while !chunk.is_empty() {
        let cap = send_capacity(to, chunk.len()).await.ok_or(())?;
        let part = chunk.split_to(cap.min(chunk.len()));
        let len = part.len() as u64;
        to.send_data(part, false).map_err(|_| ())?;
        moved(len);
    }
    Ok(())
}

/// Sends a whole body as flow control allows, then its trailers or the end of the
/// stream (a retry's or a hedged try's copy of the request). `Err`: the stream no
/// longer takes data.
pub(crate) async fn send_whole(
    body: Bytes,
    trailers: Option<http::HeaderMap>,
    up: &mut SendStream<Bytes>,
) -> Result<(), ()> {
    send_all(up, body, &|_| {}).await?;
    match trailers {
        Some(t) => up.send_trailers(t).map_err(|_| ()),
        None => up.send_data(Bytes::new(), true).map_err(|_| ()),
    }
}
