//! One HTTP/1.1 exchange for a filter that calls a plain-HTTP service (ext_authz's
//! `http_service`): write a request head (and body) on a connection of the worker's pool,
//! read the response head with the proxy's own parser (`h1::response`) and its body
//! (length, chunked or to close), bounded. The caller puts the connection back in the
//! pool when the answer says it can be reused.

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::grpc_call::H1Response;
use crate::http::h1::chunked::{ChunkedDecoder, Piece};
use crate::http::h1::head::BodyKind;
use crate::http::h1::response::{self, Asked, Kind};
use crate::http::io::Io;

/// Writes `head` and `body` on `conn` and reads the response (at most `max_body` body
/// bytes). The flag: the connection is in step for another request.
pub async fn exchange<C: Io>(
    conn: &mut C,
    head: &[u8],
    body: &[u8],
    max_body: usize,
) -> std::io::Result<(H1Response, bool)> {
    conn.write_all(head).await?;
    if !body.is_empty() {
        conn.write_all(body).await?;
    }
    conn.flush().await?;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let asked = Asked {
        head: false,
        upgrade: false,
    };
    let (mut out, kind, keep_alive) = loop {
        let mut slots = response::header_slots();
        match response::parse(&buf, asked, &mut slots) {
            Ok(Some(h)) => match h.kind {
                Kind::Interim => {
                    buf.drain(..h.head_len.min(buf.len()));
                    continue;
                }
                Kind::Final { body, framing } => {
                    let out = H1Response {
                        status: h.status,
                        headers: h
                            .headers
                            .iter()
                            .map(|x| {
                                (
                                    x.name.to_ascii_lowercase(),
                                    String::from_utf8_lossy(x.value).into_owned(),
                                )
                            })
                            .collect(),
                        body: Vec::new(),
                    };
                    let n = h.head_len;
                    let keep = framing.keep_alive;
                    buf.drain(..n.min(buf.len()));
                    break (out, body, keep);
                }
                Kind::Upgraded { .. } => return Err(bad("unsolicited upgrade")),
            },
            Ok(None) => {}
            Err(e) => return Err(bad(e.0)),
        }
        if buf.len() > 64 * 1024 || read_more(conn, &mut buf).await? == 0 {
            return Err(bad("no complete response head"));
        }
    };
    let reuse = match kind {
        BodyKind::Empty => keep_alive,
        BodyKind::Length(n) => {
            let n = usize::try_from(n).map_err(|_| bad("body too large"))?;
            if n > max_body {
                return Err(bad("body too large"));
            }
            while buf.len() < n {
                if read_more(conn, &mut buf).await? == 0 {
                    return Err(bad("body cut short"));
                }
            }
            out.body = buf.drain(..n).collect();
            keep_alive && buf.is_empty()
        }
        BodyKind::UntilClose => {
            while read_more(conn, &mut buf).await? > 0 {
                if buf.len() > max_body {
                    return Err(bad("body too large"));
                }
            }
            out.body = std::mem::take(&mut buf);
            false
        }
        BodyKind::Chunked => {
            let mut dec = ChunkedDecoder::new(8 * 1024);
            loop {
                while !buf.is_empty() && !dec.is_done() {
                    let used = match dec.next(&buf).map_err(|_| bad("bad chunked body"))? {
                        Piece::Framing(n) => n,
                        Piece::Data(n) => {
                            out.body.extend_from_slice(buf.get(..n).unwrap_or_default());
                            n
                        }
                    };
                    if used == 0 {
                        break;
                    }
                    buf.drain(..used.min(buf.len()));
                }
                if dec.is_done() {
                    break;
                }
                if out.body.len() > max_body {
                    return Err(bad("body too large"));
                }
                if read_more(conn, &mut buf).await? == 0 {
                    return Err(bad("body cut short"));
                }
            }
            keep_alive && buf.is_empty()
        }
    };
    Ok((out, reuse))
}

fn bad(m: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string())
}

async fn read_more<C: Io>(conn: &mut C, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let n = conn.read(&mut chunk).await?;
    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    Ok(n)
}
