//! An HTTP/1 request to an HTTP/2 cluster: the HTTP/1 connection manager's side of
//! `h1_to_h2`, and how its result becomes the connection's outcome.

use std::time::{Duration, SystemTime};

use crate::observe::stream_info::{self, LogFacts};
use crate::upstream::request::{self, clock::Progress};
use crate::upstream::Connector;

use super::super::flags::ResponseFlag;
use super::super::io::Io;
use super::super::view::WorkerView;
use super::{Conn, Outcome, Plan};

impl Conn {
    /// An HTTP/1 request to an HTTP/2 cluster (`h1_to_h2`), with the request the
    /// connection manager built from the head.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn via_http2<D: Io, C: Connector>(
        &mut self,
        down: &mut D,
        view: &WorkerView<C>,
        plan: &Plan<'_>,
        (cs, ep): (&crate::upstream::cluster::ClusterState<C::Conn>, usize),
        req: http::Request<()>,
        progress: &Progress,
        (route_timeout, retry): (Duration, Option<&request::retry::RetryState<'_>>),
    ) -> Outcome {
        // The debug header's marks; the upstream side adds its own at the response head.
        let mut response_edits = plan.response_edits;
        response_edits.stamp.phases = response_edits.stamp.phases.map(|_| self.marks);
        let r = super::super::h1_to_h2::H1Request {
            body: plan.framing.body,
            minor: plan.minor,
            keep_alive: plan.framing.keep_alive,
            expect_continue: plan.framing.expect_continue,
            draining: &|| plan.closing(view),
            idle_timeout: plan.idle_timeout,
            response_edits,
            chain: plan.chain,
            tee: plan.tee.as_ref(),
            rewrite: super::held::streams(plan),
            retry,
            route_timeout,
            keep_trailers: self.log_trailers,
            h1_trailers: plan.down_trailers,
        };
        // The response head is written into `wbuf`, which holds no upstream head here.
        let res = super::super::h1_to_h2::exchange(
            down,
            &mut self.rbuf,
            &mut self.wbuf,
            req,
            r,
            view,
            cs,
            ep,
            progress,
        )
        .await;
        // A response forwarded before the body was all sent: close gently.
        self.linger |= res.body_cut;
        self.rec.bytes_received += res.bytes_received;
        self.rec.bytes_sent = res.bytes_sent;
        if let Some(reply) = res.reply {
            // A filter answered the upstream's response head instead.
            let body = reply.body.as_bytes();
            return self
                .reply_and_close(down, plan, reply.status, body, reply.flag)
                .await;
        }
        self.rec.log.upstream_local = progress.upstream_local();
        self.rec.upstream_tls = progress.upstream_tls();

        if let Some(f) = res.failed {
            self.rec.log.transport_failure = progress.transport_failure();
            if let Some(d) = f.details().filter(|_| self.logging) {
                self.rec.log.details = d;
            }
            // Nothing was sent yet: answer locally like the HTTP/1 path does. The
            // request body may be half read: answer and close, without trying to read
            // the rest of it.
            let (status, msg) = (f.status(), f.reply_body(res.retried).as_bytes());
            let mut edits = plan.response_edits;
            edits.stamp.grpc_status = f.grpc_status().or(edits.stamp.grpc_status);
            return self
                .reply_and_close_with(down, plan, (status, f.flag()), msg, edits)
                .await;
        }
        if res.status == 400 && res.flag == ResponseFlag::DownstreamProtocolError {
            return self
                .reply_and_close(down, plan, 400, b"bad request", res.flag)
                .await;
        }
        if self.logging {
            // What the access log reads of the response: the HTTP/1 head written into
            // `wbuf`, when it went out, and the upstream's trailers.
            let log = &mut self.rec.log;
            log.head_out = LogFacts::keep_head(&mut log.response_head, &self.wbuf);
            log.empty_local_reply = res.added_length;
            log.details = res
                .cut
                .and_then(crate::http::failure::Failure::details)
                .unwrap_or("via_upstream");
            log.response_began = progress.head_at().and_then(|at| {
                let start = self.rec.start?;
                let since = SystemTime::now().duration_since(start).ok()?;
                since.checked_sub(at.elapsed())
            });
            if let Some(t) = &res.trailers {
                stream_info::keep_header_map(&mut log.trailers, t);
            }
        }
        Outcome {
            status: res.status,
            flag: res.flag,
            keep_alive: res.keep_alive,
        }
    }
}
