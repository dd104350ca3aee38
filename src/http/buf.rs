//! The per-connection read buffer: bytes are read once and parsed and forwarded in place.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use futures_lite::io::{AsyncRead, AsyncReadExt};

/// A growable byte window `[start, end)` over an initialised buffer that is reused for
/// every request on the connection.
pub(crate) struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    pub fn new(capacity: usize) -> Self {
        ReadBuf {
            buf: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    /// A buffer whose window is all of `bytes` (a body read ahead, `http/hold.rs`).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        let end = bytes.len();
        ReadBuf {
            buf: bytes,
            start: 0,
            end,
        }
    }

    pub fn data(&self) -> &[u8] {
        // Invariant: start <= end <= buf.len(); an empty window if it were ever broken.
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// True if no more bytes fit without growing.
    pub fn is_full(&self) -> bool {
        self.start == 0 && self.end == self.buf.len()
    }

    /// Doubles the buffer, up to `max` bytes. Returns false if it is already that large.
    pub fn grow(&mut self, max: usize) -> bool {
        if self.buf.len() >= max {
            return false;
        }
        let new = (self.buf.len() * 2).min(max);
        self.buf.resize(new, 0);
        true
    }

    /// Grows the buffer to at least `size` bytes.
    pub fn grow_to(&mut self, size: usize) {
        if self.buf.len() < size {
            self.buf.resize(size, 0);
        }
    }

    /// Reads once from `r` into the free space. Returns the number of bytes read (0 at
    /// end of stream). The caller must not call this when `is_full()`.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> std::io::Result<usize> {
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let Some(free) = self.buf.get_mut(self.end..) else {
            return Err(std::io::Error::other("read buffer window out of range"));
        };
        let n = r.read(free).await?;
        // A reader that claims more than it was given must not move `end` past the buffer.
        self.end = (self.end + n).min(self.buf.len());
        Ok(n)
    }
}

/// The capacity of an HTTP/1 connection's write buffer (heads, small bodies), kept in
/// `BufPool` while the connection idles.
pub(crate) const WRITE_BUF_BYTES: usize = 1024;

/// A worker's free list of read buffers, lent to requests that need one only while they
/// run (the upstream response buffer), so idle connections hold none; and of write
/// buffers, which an HTTP/1 connection gives back while it waits for its next request.
pub(crate) struct BufPool {
    free: std::cell::RefCell<Vec<ReadBuf>>,
    size: usize,
    keep: usize,
    vecs: std::cell::RefCell<Vec<Vec<u8>>>,
}

impl BufPool {
    pub fn new(size: usize, keep: usize) -> Self {
        BufPool {
            free: std::cell::RefCell::new(Vec::new()),
            size,
            keep,
            vecs: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// An empty write buffer of `WRITE_BUF_BYTES`.
    pub fn take_vec(&self) -> Vec<u8> {
        self.vecs
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(WRITE_BUF_BYTES))
    }

    /// Takes a write buffer back; kept if it has the usual size (one grown for a large
    /// head goes back to the allocator), up to `keep` of them.
    pub fn put_vec(&self, mut v: Vec<u8>) {
        if v.capacity() != WRITE_BUF_BYTES {
            return;
        }
        v.clear();
        let mut vecs = self.vecs.borrow_mut();
        if vecs.len() < self.keep {
            vecs.push(v);
        }
    }

    /// A write buffer for one use (an HTTP/2 stream's upstream request head), back in
    /// the pool when the lease is dropped, whichever way its user returns.
    pub fn lend_vec(&self) -> LentVec<'_> {
        LentVec {
            pool: self,
            v: self.take_vec(),
        }
    }

    pub fn take(&self) -> ReadBuf {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| ReadBuf::new(self.size))
    }

    /// Takes a buffer back; only one of the pool's size is kept (one grown for a large
    /// head goes back to the allocator), up to `keep` of them.
    pub fn put(&self, mut b: ReadBuf) {
        if b.capacity() != self.size {
            return;
        }
        b.consume(b.len());
        let mut free = self.free.borrow_mut();
        if free.len() < self.keep {
            free.push(b);
        }
    }
}

/// A write buffer on lease from a `BufPool` (`BufPool::lend_vec`).
pub(crate) struct LentVec<'a> {
    pool: &'a BufPool,
    v: Vec<u8>,
}

impl std::ops::Deref for LentVec<'_> {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.v
    }
}

impl std::ops::DerefMut for LentVec<'_> {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.v
    }
}

impl Drop for LentVec<'_> {
    fn drop(&mut self) {
        self.pool.put_vec(std::mem::take(&mut self.v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_compacts_and_grows() {
        let mut b = ReadBuf::new(4);
        let mut src: &[u8] = b"abcdefgh";
        futures_lite::future::block_on(async {
            assert_eq!(b.fill(&mut src).await.unwrap(), 4);
            assert!(b.is_full());
            b.consume(3);
            assert_eq!(b.fill(&mut src).await.unwrap(), 3);
            assert_eq!(b.data(), b"defg");
            assert!(b.grow(16));
            assert_eq!(b.fill(&mut src).await.unwrap(), 1);
            assert_eq!(b.data(), b"defgh");
        });
    }
}
