//! The HTTP/1 connection manager's local replies to a request it has read: a reply
//! that keeps the connection in step (reading a small request body first), a failure
//! from the shared table, and a reply that closes at once.

use futures_lite::io::AsyncWriteExt;

use crate::observe::stream_info::LogFacts;
use crate::upstream::Connector;

use super::super::body;
use super::super::failure::Failure;
use super::super::filter::headers::Edits;
use super::super::flags::ResponseFlag;
use super::super::h1::encode;
use super::super::h1::head::BodyKind;
use super::super::io::Io;
use super::super::view::WorkerView;
use super::{Conn, LocalBody, Outcome, Plan, DISCARD_LIMIT};

impl Conn {
    /// Sends a locally generated response (see `local_with`).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn local<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
        flag: ResponseFlag,
    ) -> Outcome {
        let reply = LocalBody {
            content_type,
            location: None,
            body,
        };
        self.local_with(down, view, plan, status, reply, flag).await
    }

    /// Sends a locally generated response, first reading and discarding a small request
    /// body so the connection stays in step; anything else closes the connection.
    pub(super) async fn local_with<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        status: u16,
        reply: LocalBody<'_>,
        flag: ResponseFlag,
    ) -> Outcome {
        let edits = plan.response_edits;
        self.local_with_edits(down, view, plan, (status, flag), reply, edits)
            .await
    }

    /// `local_with`, with these response edits in place of the plan's.
    pub(super) async fn local_with_edits<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        (status, flag): (u16, ResponseFlag),
        reply: LocalBody<'_>,
        edits: Edits<'_>,
    ) -> Outcome {
        let LocalBody {
            content_type,
            location,
            body,
        } = reply;
        let mut close = !plan.framing.keep_alive || plan.closing(view);
        if plan.framing.body != BodyKind::Empty {
            if plan.framing.expect_continue {
                close = true;
            } else {
                let mut sink = futures_lite::io::sink();
                match body::forward(
                    down,
                    &mut self.rbuf,
                    &mut sink,
                    plan.framing.body,
                    body::Chunks::Strip,
                    None,
                    Some(DISCARD_LIMIT),
                )
                .await
                {
                    Ok(n) => self.rec.bytes_received += n,
                    Err(_) => close = true,
                }
            }
            // Whatever of the body was not read is still coming.
            self.linger |= close;
        }
        self.wbuf.clear();
        let form = encode::ReplyForm {
            grpc: plan.grpc,
            head_only: plan.is_head,
            close,
        };
        let status = encode::write_reply(
            &mut self.wbuf,
            form,
            (status, flag),
            content_type,
            location,
            body,
            edits,
        );
        if self.logging {
            self.rec.log.head_out =
                LogFacts::keep_head(&mut self.rec.log.response_head, &self.wbuf);
            self.rec.log.empty_local_reply = body.is_empty();
        }
        let keep_alive = down.write_all(&self.wbuf).await.is_ok() && !close;
        self.rec.bytes_sent = self.wbuf.len() as u64;
        Outcome {
            status,
            flag,
            keep_alive,
        }
    }

    /// Answers a failure from the shared table (`http::failure`): its status, flag and
    /// Envoy's text.
    pub(super) async fn fail_locally<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        f: Failure,
    ) -> Outcome {
        self.local(
            down,
            view,
            plan,
            f.status(),
            None,
            f.body().as_bytes(),
            f.flag(),
        )
        .await
    }

    /// Sends a local reply with `connection: close` at once, without reading anything
    /// more of the request; the connection closes after it.
    pub(super) async fn reply_and_close<D: Io>(
        &mut self,
        down: &mut D,
        plan: &Plan<'_>,
        status: u16,
        msg: &[u8],
        flag: ResponseFlag,
    ) -> Outcome {
        let edits = plan.response_edits;
        self.reply_and_close_with(down, plan, (status, flag), msg, edits)
            .await
    }

    /// `reply_and_close`, with these response edits in place of the plan's.
    pub(super) async fn reply_and_close_with<D: Io>(
        &mut self,
        down: &mut D,
        plan: &Plan<'_>,
        (status, flag): (u16, ResponseFlag),
        msg: &[u8],
        edits: Edits<'_>,
    ) -> Outcome {
        self.linger = true;
        self.wbuf.clear();
        let form = encode::ReplyForm {
            grpc: plan.grpc,
            head_only: plan.is_head,
            close: true,
        };
        let status =
            encode::write_reply(&mut self.wbuf, form, (status, flag), None, None, msg, edits);
        let _ = down.write_all(&self.wbuf).await;
        self.rec.bytes_sent = self.wbuf.len() as u64;
        Outcome {
            status,
            flag,
            keep_alive: false,
        }
    }
}
