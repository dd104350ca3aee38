//! The HTTP/1.1 health check of one endpoint (Envoy's `HttpHealthCheckerImpl`): a
//! request on a connection kept between checks (`reuse_connection`), the status against
//! `expected_statuses` / `retriable_statuses`. Runs on the control executor; the caller
//! bounds each check by the check's `timeout` and drops the connection when it runs out.

use std::net::SocketAddr;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::session::Outcome;
use super::Conn;
use crate::config::{Cluster, HealthCheck, HttpCheck};
use crate::http::h1::chunked::{ChunkedDecoder, Piece};
use crate::http::h1::head::BodyKind;
use crate::http::h1::response::{self, Asked, Kind};
use crate::http::io::Io;
use crate::upstream::{Connector, TcpConnector};

/// Most response body bytes read to keep a connection (a longer body closes it).
const MAX_BODY: u64 = 64 * 1024;

#[derive(Default)]
pub(super) struct HttpProbe {
    conn: Option<Conn>,
    /// Bytes read and not yet used.
    buf: Vec<u8>,
}

/// How a response body was read.
enum Body {
    Complete,
    /// Not reusable (read to close, too long, or bad framing).
    Spent,
}

impl HttpProbe {
    /// Forgets the connection (after a timeout cut a check short).
    pub fn reset(&mut self) {
        self.conn = None;
        self.buf.clear();
    }

    pub async fn check(
        &mut self,
        cluster: &Cluster,
        addr: SocketAddr,
        hc: &HealthCheck,
        c: &HttpCheck,
    ) -> Outcome {
        // A kept connection the upstream closed (or wrote to) while idle is dropped, as
        // Envoy drops its client on the close event, and a new one is opened.
        let mut conn = match self.conn.take().filter(|c| c.idle_is_clean()) {
            Some(c) => c,
            None => match TcpConnector.connect_to(cluster, addr, hc.timeout).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(upstream = %addr, error = %e, "health check connect failed");
                    return Outcome::Network;
                }
            },
        };
        self.buf.clear();
        let host = c.host.as_deref().unwrap_or(&cluster.name);
        let mut req = format!(
            "{} {} HTTP/1.1\r\nhost: {host}\r\nuser-agent: Envoy/HC\r\n",
            c.method, c.path
        );
        if matches!(c.method.as_str(), "POST" | "PUT" | "PATCH") {
            req.push_str("content-length: 0\r\n");
        }
        req.push_str("\r\n");
        if conn.write_all(req.as_bytes()).await.is_err() || conn.flush().await.is_err() {
            return Outcome::Network;
        }
        let asked = Asked {
            head: c.method == "HEAD",
            upgrade: false,
        };
        // Read until a final response head.
        let (status, body, keep_alive, head_len) = loop {
            let mut slots = response::header_slots();
            match response::parse(&self.buf, asked, &mut slots) {
                Ok(Some(h)) => match h.kind {
                    Kind::Interim => {
                        let n = h.head_len;
                        self.buf.drain(..n.min(self.buf.len()));
                        continue;
                    }
                    Kind::Final { body, framing } => {
                        break (h.status, body, framing.keep_alive, h.head_len)
                    }
                    Kind::Upgraded { .. } => return Outcome::Network,
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(upstream = %addr, error = e.0, "health check: bad response");
                    return Outcome::Network;
                }
            }
            if read_more(&mut conn, &mut self.buf).await == 0 {
                return Outcome::Network;
            }
        };
        self.buf.drain(..head_len.min(self.buf.len()));
        let read = self.read_body(&mut conn, body).await;
        let outcome = if in_ranges(status, &c.expected_statuses) {
            Outcome::Success
        } else {
            Outcome::Active {
                retriable: in_ranges(status, &c.retriable_statuses),
            }
        };
        if hc.reuse_connection
            && keep_alive
            && matches!(read, Body::Complete)
            && self.buf.is_empty()
        {
            self.conn = Some(conn);
        }
        outcome
    }

    /// Reads and drops the body, so the connection can carry the next check.
    async fn read_body(&mut self, conn: &mut Conn, body: BodyKind) -> Body {
        match body {
            BodyKind::Empty => Body::Complete,
            BodyKind::UntilClose => Body::Spent,
            BodyKind::Length(n) if n > MAX_BODY => Body::Spent,
            BodyKind::Length(n) => {
                let n = n as usize;
                while self.buf.len() < n {
                    if read_more(conn, &mut self.buf).await == 0 {
                        return Body::Spent;
                    }
                }
                self.buf.drain(..n);
                Body::Complete
            }
            BodyKind::Chunked => {
                let mut dec = ChunkedDecoder::new(8 * 1024);
                let mut total = 0u64;
                loop {
                    while !self.buf.is_empty() && !dec.is_done() {
                        let used = match dec.next(&self.buf) {
                            Ok(Piece::Framing(n) | Piece::Data(n)) => n,
                            Err(_) => return Body::Spent,
                        };
                        if used == 0 {
                            break;
                        }
                        total += used as u64;
                        self.buf.drain(..used.min(self.buf.len()));
                    }
                    if dec.is_done() {
                        return Body::Complete;
                    }
                    if total > MAX_BODY || read_more(conn, &mut self.buf).await == 0 {
                        return Body::Spent;
                    }
                }
            }
        }
    }
}

/// Reads what is there onto `buf`; 0 on end of stream or an error.
pub(super) async fn read_more(conn: &mut Conn, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 4096];
    match conn.read(&mut chunk).await {
        Ok(n) => {
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            n
        }
        Err(_) => 0,
    }
}

/// Envoy's half-open status ranges.
fn in_ranges(status: u16, ranges: &[(u16, u16)]) -> bool {
    ranges.iter().any(|&(s, e)| (s..e).contains(&status))
}

#[cfg(test)]
mod tests {
    use super::in_ranges;

    #[test]
    fn ranges_are_half_open() {
        assert!(in_ranges(200, &[(200, 201)]));
        assert!(!in_ranges(201, &[(200, 201)]));
        assert!(in_ranges(204, &[(200, 201), (204, 300)]));
        assert!(!in_ranges(200, &[]));
    }
}
