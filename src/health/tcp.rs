//! The TCP health check of one endpoint (Envoy's `TcpHealthCheckerImpl`): a connect
//! alone passes (and closes); with `receive` payloads the `send` bytes go out and every
//! `receive` segment must appear, in order, in what comes back. The connection is kept
//! between checks when `reuse_connection` is set. Runs on the control executor; the
//! caller bounds each check by the check's `timeout`.

use std::net::SocketAddr;

use futures_lite::io::AsyncWriteExt;

use super::http::read_more;
use super::session::Outcome;
use super::Conn;
use crate::config::{Cluster, HealthCheck, TcpCheck};
use crate::http::io::Io;
use crate::upstream::{Connector, TcpConnector};

/// Bytes kept while waiting for the expected ones (then the check waits for its timeout).
const MAX_BUFFER: usize = 64 * 1024;

#[derive(Default)]
pub(super) struct TcpProbe {
    conn: Option<Conn>,
    buf: Vec<u8>,
}

impl TcpProbe {
    pub fn reset(&mut self) {
        self.conn = None;
        self.buf.clear();
    }

    pub async fn check(
        &mut self,
        cluster: &Cluster,
        addr: SocketAddr,
        hc: &HealthCheck,
        c: &TcpCheck,
    ) -> Outcome {
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
        if c.receive.is_empty() {
            // Connect only: the connection is closed at once (Envoy does the same).
            return Outcome::Success;
        }
        self.buf.clear();
        if !c.send.is_empty()
            && (conn.write_all(&c.send).await.is_err() || conn.flush().await.is_err())
        {
            return Outcome::Network;
        }
        loop {
            if payload_matches(&c.receive, &self.buf) {
                self.buf.clear();
                if hc.reuse_connection {
                    self.conn = Some(conn);
                }
                return Outcome::Success;
            }
            if self.buf.len() > MAX_BUFFER {
                // Never matches now; wait for the timeout as Envoy does.
                std::future::pending::<()>().await;
            }
            if read_more(&mut conn, &mut self.buf).await == 0 {
                return Outcome::Network;
            }
        }
    }
}

/// Every segment, in order, each after the end of the previous one (Envoy's
/// `PayloadMatcher::match`).
pub(super) fn payload_matches(segments: &[Vec<u8>], data: &[u8]) -> bool {
    let mut rest = data;
    for seg in segments {
        let Some(at) = rest
            .windows(seg.len().max(1))
            .position(|w| w == seg.as_slice())
        else {
            return false;
        };
        rest = rest.get(at + seg.len()..).unwrap_or_default();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::payload_matches;

    #[test]
    fn segments_match_in_order() {
        let segs = vec![b"PO".to_vec(), b"NG".to_vec()];
        assert!(payload_matches(&segs, b"xxPONGyy"));
        assert!(payload_matches(&segs, b"PO..NG"));
        assert!(!payload_matches(&segs, b"NGPO"));
        assert!(!payload_matches(&segs, b"PON"));
        assert!(payload_matches(&[], b""));
    }
}
