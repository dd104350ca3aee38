//! Bidirectional byte copying between two connections on one worker: the body of the
//! TCP proxy and of upgraded HTTP connections (WebSocket).
//!
//! Each direction copies until its reader reaches end of stream, then shuts the other
//! side down for writing (half-close). The connection ends when both directions have. A
//! failure in one direction shuts both sockets down so the other ends at once. The idle
//! timeout applies to the connection as a whole: a direction that has been quiet keeps
//! waiting while the other one moves bytes.

use std::cell::Cell;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::flags::ResponseFlag;
use crate::http::io::Io;

/// Copy buffer per direction.
const BUF_BYTES: usize = 16 * 1024;

/// How a direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The reader reached end of stream and the writer was shut down for writing.
    Closed,
    /// Neither direction moved a byte for the idle timeout.
    Idle,
    /// The reader failed or reset.
    ReadError,
    /// The writer failed or reset.
    WriteError,
}

/// What a finished tunnel did.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Direction a -> b.
    pub a_to_b: End,
    /// Direction b -> a.
    pub b_to_a: End,
    pub bytes_a_to_b: u64,
    pub bytes_b_to_a: u64,
}

async fn pump<R: Io, W: Io>(
    from: &mut R,
    to: &mut W,
    idle: Duration,
    last: &Cell<Instant>,
    bytes: &Cell<u64>,
) -> End {
    let mut buf = vec![0u8; BUF_BYTES];
    from.set_read_timeout(Some(idle));
    to.set_write_timeout(Some(idle));
    loop {
        match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.close().await;
                return End::Closed;
            }
            Ok(n) => {
                last.set(Instant::now());
                if to.write_all(&buf[..n]).await.is_err() {
                    return End::WriteError;
                }
                bytes.set(bytes.get() + n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                let quiet = last.get().elapsed();
                if quiet >= idle {
                    return End::Idle;
                }
                from.set_read_timeout(Some(idle - quiet));
            }
            Err(_) => return End::ReadError,
        }
    }
}

/// Copies between `a` and `b` both ways until both directions end. `a2` and `b2` are
/// second handles on the same sockets (see `Io::try_clone`), used for writing.
pub async fn run<A: Io, B: Io>(
    a: &mut A,
    a2: &mut A,
    b: &mut B,
    b2: &mut B,
    idle: Duration,
) -> Outcome {
    let fds = [a.raw_fd(), b.raw_fd()];
    // A failed direction shuts both sockets down, so the other one ends at once too.
    let abort = || {
        for fd in fds.into_iter().flatten() {
            // SAFETY: the descriptors belong to streams that outlive this call; shutdown
            // does not close them.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    };
    let last = Cell::new(Instant::now());
    let (ab, ba) = (Cell::new(0u64), Cell::new(0u64));
    let a_to_b = async {
        let e = pump(a, b2, idle, &last, &ab).await;
        if e != End::Closed {
            abort();
        }
        e
    };
    let b_to_a = async {
        let e = pump(b, a2, idle, &last, &ba).await;
        if e != End::Closed {
            abort();
        }
        e
    };
    let (a_to_b, b_to_a) = futures_lite::future::zip(a_to_b, b_to_a).await;
    Outcome {
        a_to_b,
        b_to_a,
        bytes_a_to_b: ab.get(),
        bytes_b_to_a: ba.get(),
    }
}

/// The response flag for a finished tunnel whose `a` side is the client.
pub fn flag_for(t: Outcome) -> ResponseFlag {
    match (t.a_to_b, t.b_to_a) {
        (End::Closed, End::Closed) => ResponseFlag::None,
        (End::Idle, _) | (_, End::Idle) => ResponseFlag::DownstreamIdleTimeout,
        (End::ReadError, _) | (_, End::WriteError) => ResponseFlag::DownstreamConnectionTermination,
        _ => ResponseFlag::UpstreamConnectionTermination,
    }
}
