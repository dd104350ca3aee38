//! Hedged tries on HTTP/1.1 connections (`hedge::race`): the request copy is its bytes
//! (head and body, as the first try sent them), and a try that won holds its read
//! buffer, the final response head at the front.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use futures_lite::io::AsyncWriteExt;

use super::clock::Progress;
use super::hedge::{Copy, Hedgeable, Judge};
use super::Tried;
use crate::http::body::BodyError;
use crate::http::buf::ReadBuf;
use crate::http::failure::Failure;
use crate::http::h1::response::{self, Asked, BadResponse, Kind};
use crate::http::restamp::Restamp;

/// How big a hedged try's response buffer starts (it grows for a large head).
const HEDGE_BUF: usize = 8 * 1024;

/// On an HTTP/1.1 connection a hedged try sends the request's bytes (head and body, as
/// the first try sent them), and a try that won holds its read buffer, the final
/// response head at the front.
impl<T: crate::http::io::Io> Hedgeable for T {
    type Request = Vec<u8>;
    type Won = ReadBuf;

    fn stamped(copy: &Vec<u8>, restamp: &Restamp) -> Vec<u8> {
        let mut request = copy.clone();
        restamp.apply_h1(&mut request);
        request
    }

    fn judge<J: Judge>(buf: &ReadBuf, judge: J) -> Option<J::Out> {
        let mut slots = response::header_slots();
        let asked = Asked {
            head: false,
            upgrade: false,
        };
        match response::parse(buf.data(), asked, &mut slots) {
            Ok(Some(r)) if !matches!(r.kind, Kind::Interim) => {
                Some(judge.judge(r.status, r.headers))
            }
            _ => None,
        }
    }
}

/// Fills `copy` (if the request hedges) with the request head and its body.
pub(crate) fn fill_hedge(copy: &Option<Copy<Vec<u8>>>, head: &[u8], body: Option<&[u8]>) {
    if let Some(c) = copy {
        let mut c = c.borrow_mut();
        let v = c.get_or_insert_with(Vec::new);
        v.clear();
        v.extend_from_slice(head);
        v.extend_from_slice(body.unwrap_or_default());
    }
}

/// A hedged try on an HTTP/1.1 connection (`hedge::race`): the whole request, then
/// reads until a final response head is at the front of `buf` (interim ones skipped).
/// Every read and write is bounded by the time left on the request's clocks.
pub(super) async fn hedge_try<C: crate::http::io::Io>(
    up: &mut C,
    request: &[u8],
    progress: &Progress,
) -> Result<ReadBuf, Tried> {
    let mut buf = ReadBuf::new(HEDGE_BUF);
    match read_head(up, request, &mut buf, progress).await {
        Ok(()) => Ok(buf),
        Err(f) => Err(Tried::failed(f, false, true)),
    }
}

/// Sends `request` and reads until a final response head is at the front of `buf`.
async fn read_head<C: crate::http::io::Io>(
    up: &mut C,
    request: &[u8],
    buf: &mut ReadBuf,
    progress: &Progress,
) -> Result<(), Failure> {
    enum Step {
        Interim(usize),
        Final,
        More,
    }
    let left = progress.time_left();
    up.set_read_timeout(left);
    up.set_write_timeout(left);
    if up.write_all(request).await.is_err() {
        return Err(Failure::ConnectionTermination);
    }
    progress.touch();
    loop {
        if !buf.is_empty() {
            let mut slots = response::header_slots();
            let asked = Asked {
                head: false,
                upgrade: false,
            };
            let step = match response::parse(buf.data(), asked, &mut slots) {
                Ok(Some(r)) if matches!(r.kind, Kind::Interim) => Step::Interim(r.head_len),
                Ok(Some(_)) => Step::Final,
                Ok(None) => Step::More,
                Err(BadResponse(why)) => {
                    tracing::debug!(reason = why, "invalid upstream response to a hedged try");
                    return Err(Failure::ProtocolError);
                }
            };
            match step {
                Step::Interim(n) => {
                    buf.consume(n);
                    continue;
                }
                Step::Final => return Ok(()),
                Step::More if buf.is_full() => {
                    buf.grow(response::MAX_RESPONSE_HEAD_BYTES + 1);
                }
                Step::More => {}
            }
        }
        match crate::http::body::fill_from(up, buf, Some(progress)).await {
            Ok(n) if n > 0 => {}
            Err(BodyError::Timeout) => {
                return Err(match progress.expired() {
                    Some(super::clock::Expiry::PerTryIdle) => Failure::PerTryTimeout,
                    _ => Failure::RouteTimeout,
                })
            }
            _ => return Err(Failure::ConnectionTermination),
        }
    }
}
