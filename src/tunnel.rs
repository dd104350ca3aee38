//! Bidirectional byte copying between two connections on one worker: the body of the
//! TCP proxy and of HTTP/1 tunnels (CONNECT, upgrades such as WebSocket).
//!
//! Each connection is split into a read half and a write half (`io::split`: one stream,
//! one descriptor, so a TLS session on it would be shared correctly); one direction reads
//! `a`'s half and writes `b`'s, the other the reverse, both in one task. Each direction
//! copies until its reader reaches end of stream, then shuts the other side down for
//! writing (half-close). The connection ends when both directions have. A failure in one
//! direction shuts both sockets down so the other ends at once. The idle timeout applies
//! to the connection as a whole: a direction that has been quiet keeps waiting while the
//! other one moves bytes.

use std::cell::Cell;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use crate::http::flags::ResponseFlag;
use crate::http::io::{split, Io, ReadHalf, WriteHalf};

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
    /// The tunnel's deadline came (a cluster's `max_stream_duration`): both sides were
    /// shut down.
    Deadline,
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
    from: &mut ReadHalf<R>,
    to: &mut WriteHalf<W>,
    idle: Duration,
    last: &Cell<Instant>,
    bytes: &Cell<u64>,
) -> End {
    let mut buf = vec![0u8; BUF_BYTES];
    if from.set_read_timeout(Some(idle)).is_err() {
        return End::ReadError;
    }
    if to.set_write_timeout(Some(idle)).is_err() {
        return End::WriteError;
    }
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
                if from.set_read_timeout(Some(idle - quiet)).is_err() {
                    return End::ReadError;
                }
            }
            Err(_) => return End::ReadError,
        }
    }
}

/// Copies between `a` and `b` both ways until both directions end, or `deadline`
/// comes (then both are shut down).
pub async fn run<A: Io, B: Io>(a: A, b: B, idle: Duration, deadline: Option<Instant>) -> Outcome {
    let fds = [a.raw_fd(), b.raw_fd()];
    // A failed direction shuts both sockets down, so the other one ends at once too.
    let abort = || {
        for fd in fds.into_iter().flatten() {
            // SAFETY: the descriptors belong to the streams the halves below own, which
            // live until this function returns; shutdown does not close them.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    };
    let last = Cell::new(Instant::now());
    let (ab, ba) = (Cell::new(0u64), Cell::new(0u64));
    // The halves stay here, not in the directions, so that no stream (and descriptor)
    // is dropped before both directions have ended.
    let (mut a_read, mut a_write) = split(a);
    let (mut b_read, mut b_write) = split(b);
    let a_to_b = async {
        let e = pump(&mut a_read, &mut b_write, idle, &last, &ab).await;
        if e != End::Closed {
            abort();
        }
        e
    };
    let b_to_a = async {
        let e = pump(&mut b_read, &mut a_write, idle, &last, &ba).await;
        if e != End::Closed {
            abort();
        }
        e
    };
    let cut = async {
        match deadline {
            Some(at) => crate::rt::sleep(at.saturating_duration_since(Instant::now())).await,
            None => std::future::pending().await,
        }
        abort();
        (End::Deadline, End::Deadline)
    };
    let both = futures_lite::future::zip(a_to_b, b_to_a);
    let (a_to_b, b_to_a) = futures_lite::future::or(both, cut).await;
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
        (End::Deadline, _) | (_, End::Deadline) => ResponseFlag::UpstreamMaxStreamDurationReached,
        (End::Closed, End::Closed) => ResponseFlag::None,
        (End::Idle, _) | (_, End::Idle) => ResponseFlag::DownstreamIdleTimeout,
        (End::ReadError, _) | (_, End::WriteError) => ResponseFlag::DownstreamConnectionTermination,
        _ => ResponseFlag::UpstreamConnectionTermination,
    }
}
