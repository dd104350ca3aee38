//! The HTTP/1 connection manager's answers when the upstream side cannot serve a
//! request: no endpoint to pick (`503 UH`), or every try failed before a response head
//! was sent downstream (`exchange`'s attempt loop counted them); both become local
//! replies.

use crate::upstream::Connector;

use super::super::failure::Failure;
use super::super::h1::head::BodyKind;
use super::super::io::Io;
use super::super::view::WorkerView;
use super::{Conn, LocalBody, Outcome, Plan};

impl Conn {
    /// Counts the request for `cluster` and picks its endpoint (noting both for the
    /// access log), or answers `503 UH` when the cluster has none.
    pub(super) async fn begin_upstream<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        cluster: usize,
    ) -> Result<usize, Outcome> {
        let cs = &view.clusters[cluster];
        if self.logging {
            self.rec.cluster = Some(cs.name.clone());
        }
        match cs.start_request(None) {
            Some(ep) => {
                if self.logging {
                    self.rec.upstream = Some(cs.cfg.endpoints[ep].addr);
                }
                Ok(ep)
            }
            None => Err(self
                .fail_locally(down, view, plan, Failure::NoHealthyUpstream)
                .await),
        }
    }

    /// The upstream failed before a response head was sent downstream: answer locally
    /// (the attempt loop counted it). `body_touched`: forwarding of the request body has
    /// begun (it may be half read, or all of it may be gone), so it cannot be read again
    /// to keep the connection in step. The stream idle timeout closes the connection.
    pub(super) async fn upstream_failed<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        f: Failure,
        body_touched: bool,
        retried: bool,
    ) -> Outcome {
        let text = if retried { f.retried_body() } else { f.body() };
        let (status, msg, flag) = (f.status(), text.as_bytes(), f.flag());
        if let Some(d) = f.details().filter(|_| self.logging) {
            self.rec.log.details = d;
        }
        // A request still arriving when its stream timed out is not read on.
        let stalled = matches!(
            f,
            Failure::StreamIdle { .. }
                | Failure::MaxDuration {
                    request_complete: false
                }
        );
        let mut edits = plan.response_edits;
        edits.stamp.grpc_status = f.grpc_status().or(edits.stamp.grpc_status);
        if body_touched || stalled {
            return self
                .reply_and_close_with(down, plan, (status, flag), msg, edits)
                .await;
        }
        let reply = LocalBody {
            content_type: None,
            location: None,
            body: msg,
        };
        let mut o = self
            .local_with_edits(down, view, plan, (status, flag), reply, edits)
            .await;
        // Reading the body to discard it may have failed half way; never keep a
        // connection whose request had a body.
        if plan.framing.body != BodyKind::Empty {
            o.keep_alive = false;
        }
        o
    }
}
