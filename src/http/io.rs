//! The byte-stream abstraction the connection manager runs on.
//!
//! In production this is glommio's `TcpStream`; tests drive the same code over memory.

use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};

/// A full-duplex byte stream with per-operation timeouts.
pub trait Io: AsyncRead + AsyncWrite + Unpin {
    /// Timeout for each following read; `None` waits forever.
    fn set_read_timeout(&self, d: Option<Duration>);
    /// Timeout for each following write; `None` waits forever.
    fn set_write_timeout(&self, d: Option<Duration>);
}

impl Io for glommio::net::TcpStream {
    fn set_read_timeout(&self, d: Option<Duration>) {
        // glommio refuses a zero timeout; the smallest real one expires just as well.
        let d = d.map(|d| d.max(Duration::from_micros(1)));
        let _ = glommio::net::TcpStream::set_read_timeout(self, d);
    }

    fn set_write_timeout(&self, d: Option<Duration>) {
        let d = d.map(|d| d.max(Duration::from_micros(1)));
        let _ = glommio::net::TcpStream::set_write_timeout(self, d);
    }
}

/// True if the error is a timeout from `set_read_timeout` / `set_write_timeout`.
pub fn is_timeout(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::TimedOut
}
