//! A try's duration bound before its response head: Envoy's cluster
//! `common_http_protocol_options.max_stream_duration` (the native `pool.max_stream_duration`),
//! or a request's `x-envoy-upstream-stream-duration-ms` in its place.
//!
//! As Envoy's `UpstreamRequest`, each try's clock starts when the try has its connection
//! (`onPoolReady`), so it covers sending the request, waiting for the response and its
//! body. Before the response head the attempt loop races the try against it here: a try
//! it ends is counted `upstream_rq_max_duration_reached`, reported to no outlier
//! detector, and retried as a local reset would be (`5xx`, `gateway-error`, `reset`);
//! not retried, the request gets `408` (still arriving) or `504`, flag `UMSDR`, body
//! `upstream max stream duration reached`, and no upstream status is charged (Envoy's
//! `onStreamMaxDurationReached`). Once the head is here the bound moves to the stream's
//! clocks (`Progress::streaming_until`). Tunnels are bounded too, as Envoy's router
//! bounds their upstream request: an upgrade (WebSocket) from its try's connection, a
//! CONNECT from its connection; the tunnel is then closed (HTTP/1) or its stream reset
//! (HTTP/2), flag `UMSDR`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::clock::Progress;
use super::Tried;
use crate::http::failure::Failure;
use crate::observe::stats::ClusterStats;

pin_project_lite::pin_project! {
    /// `work` raced against a try's bound (`None`: unbounded, `work` alone), `work`
    /// polled first; `None` when the bound ran out first.
    pub(crate) struct Bounded<W, S> {
        #[pin]
        work: W,
        #[pin]
        sleep: Option<S>,
    }
}

impl<W: Future, S: Future<Output = ()>> Future for Bounded<W, S> {
    type Output = Option<W::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.work.poll(cx) {
            return Poll::Ready(Some(out));
        }
        match this.sleep.as_pin_mut().map(|s| s.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}

/// `work`, unless the bound ending at `ends` runs out first.
pub(crate) fn bounded<W: Future>(
    work: W,
    ends: Option<Instant>,
) -> Bounded<W, impl Future<Output = ()>> {
    Bounded {
        work,
        sleep: ends.map(|at| crate::rt::sleep(at.saturating_duration_since(Instant::now()))),
    }
}

/// When a try that got its connection now reaches its bound (`None`: it has none).
/// `cluster`: the cluster's `max_stream_duration` (zero: none).
pub(crate) fn ends(progress: &Progress, cluster: Duration) -> Option<Instant> {
    progress.try_bound(cluster).map(|d| Instant::now() + d)
}

/// `ends` for a tunnel with no request clocks (an HTTP/1 CONNECT): the cluster's bound.
pub(crate) fn ends_unless_zero(cluster: Duration) -> Option<Instant> {
    (!cluster.is_zero()).then(|| Instant::now() + cluster)
}

/// The failed try a bound that ran out makes (counted): `resend`, whether the request
/// can go again as it was.
pub(crate) fn reached(progress: &Progress, stats: &ClusterStats, resend: bool) -> Tried {
    stats.rq_max_duration_reached.inc();
    let failure = Failure::UpstreamMaxDuration {
        request_complete: progress.request_complete(),
    };
    Tried::failed(failure, false, resend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unbounded_try_is_its_work_and_a_bound_ends_a_pending_one() {
        let done = futures_lite::future::block_on(bounded(async { 7 }, None));
        assert_eq!(done, Some(7));
        let ready_first = bounded(async { 7 }, Some(Instant::now()));
        assert_eq!(futures_lite::future::block_on(ready_first), Some(7));
    }

    #[test]
    fn a_bound_counts_and_answers_by_the_request() {
        let stats = ClusterStats::default();
        let p = Progress::new(Duration::ZERO, Duration::ZERO);
        let t = reached(&p, &stats, true);
        assert_eq!(stats.rq_max_duration_reached.get(), 1);
        assert_eq!(t.failure.status(), 408, "the request is still arriving");
        assert!(t.resend);
        p.request_done();
        assert_eq!(reached(&p, &stats, false).failure.status(), 504);
        assert!(p.try_bound(Duration::ZERO).is_none());
        let header =
            Progress::new(Duration::ZERO, Duration::ZERO).upstream_duration(Some(Duration::ZERO));
        assert!(
            header.try_bound(Duration::from_secs(1)).is_none(),
            "the header's 0 turns the cluster's bound off, as in Envoy"
        );
    }
}
