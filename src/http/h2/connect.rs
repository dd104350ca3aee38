//! HTTP/2 CONNECT (RFC 9113 section 8.5) on a route that allows it (`upgrades:
//! [connect]`): a TCP connection to an endpoint of the route's cluster, `200`, then the
//! stream's DATA frames and the connection's bytes are carried both ways.
//!
//! Flow control holds end to end: client DATA is acknowledged (its window reopened)
//! only once written upstream, and upstream bytes are read only as fast as the client's
//! window lets them go out. END_STREAM from the client becomes a write shutdown towards
//! the upstream; end of stream from the upstream becomes END_STREAM. The tunnel ends
//! when both directions have, at once if either fails, or when the listener's
//! `idle_timeout` finds it quiet, or the cluster's `max_stream_duration` runs out (a
//! reset, `UMSDR`). Neither the route timeout nor `stream_idle_timeout` applies (as for
//! HTTP/1.1 tunnels).

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::cell::Cell;

use super::respond::Respond;
use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use h2::{RecvStream, SendStream};
use http::{Response, StatusCode};

use super::clock::{Expiry, Progress};
use super::reply::{count_class, endpoint, expired, fail, Done};
use crate::http::failure::Failure;
use crate::http::filter::headers::Edits;
use crate::http::flags::ResponseFlag;
use crate::http::io::Io;
use crate::http::view::WorkerView;
use crate::upstream::cluster::ClusterState;
use crate::upstream::Connector;

/// Largest read from the upstream per DATA frame sent.
const READ_BYTES: usize = 16 * 1024;

/// Why a tunnel direction stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broken {
    /// The client reset the stream or went away.
    Client,
    /// The upstream connection failed.
    Upstream,
}

pub(crate) async fn tunnel<C: Connector>(
    body: RecvStream,
    respond: &mut Respond,
    view: &WorkerView<C>,
    cs: &ClusterState<C::Conn>,
    progress: &Progress,
    edits: Edits<'_>,
) -> Done {
    let Some(ep) = cs.start_request(None) else {
        return fail(respond, false, Failure::NoHealthyUpstream, edits);
    };
    let Some((endpoint, es)) = endpoint(cs, ep) else {
        return fail(respond, false, Failure::NoHealthyUpstream, edits);
    };
    let mut done = match view
        .connector
        .connect_to(&cs.cfg, endpoint.addr, cs.cfg.connect_timeout)
        .await
    {
        Ok(up) => {
            progress.note_upstream(&up);
            // Envoy's router bounds a CONNECT's upstream by the cluster's
            // max_stream_duration: the stream is reset then, flag UMSDR.
            let cluster = cs.cfg.pool.max_stream_duration;
            progress.streaming_until(crate::upstream::request::bound::ends(progress, cluster));
            cs.stats.cx_total.inc();
            es.cx_total.inc();
            es.rq_active.inc();
            let d = carry(body, respond, up, cs, progress, edits).await;
            es.rq_active.dec();
            d
        }
        Err(e) => {
            // `%UPSTREAM_TRANSPORT_FAILURE_REASON%`, as on the other paths.
            progress.connect_failed(&e);
            cs.stats.cx_connect_fail.inc();
            es.cx_connect_fail.inc();
            count_class(&cs.stats, 503);
            fail(respond, false, Failure::ConnectFailure, edits)
        }
    };
    done.upstream = Some(endpoint.addr);
    done
}

/// Answers `200` (with the stream's response header edits) and carries bytes until both
/// directions end.
async fn carry<U: Io>(
    mut body: RecvStream,
    respond: &mut Respond,
    up: U,
    cs: &ClusterState<U>,
    progress: &Progress,
    edits: Edits<'_>,
) -> Done {
    // One half reads while the other writes, over the one upstream stream.
    let (mut up_r, mut up_w) = crate::http::io::split(up);
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::OK;
    edits.apply_to_map(resp.headers_mut());
    let mut send = match respond.send_response(resp, false) {
        Ok(s) => s,
        Err(_) => {
            return Done {
                status: 200,
                flag: ResponseFlag::DownstreamConnectionTermination,
                bytes_received: 0,
                bytes_sent: 0,
                upstream: None,
                grpc_status: None,
            }
        }
    };
    count_class(&cs.stats, 200);
    progress.head_sent(200);
    // Each direction that ends cleanly waits for the other; the first failure ends both
    // (returning drops both socket handles, which closes the upstream connection).
    let ended = Cell::new(0u8);
    let both_or_first_failure = |r: Result<(), Broken>| {
        let ended = &ended;
        async move {
            r?;
            ended.set(ended.get() + 1);
            if ended.get() < 2 {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    };
    let to_up = async {
        let r = client_to_upstream(&mut body, &mut up_w, progress).await;
        both_or_first_failure(r).await
    };
    let to_client = async {
        let r = upstream_to_client(&mut up_r, &mut send, progress).await;
        both_or_first_failure(r).await
    };
    let result = progress
        .run(futures_lite::future::or(to_up, to_client))
        .await;
    let mut done = Done {
        status: 200,
        flag: ResponseFlag::None,
        bytes_received: progress.bytes_received(),
        bytes_sent: progress.bytes_sent(),
        upstream: None,
        grpc_status: None,
    };
    match result {
        Ok(Ok(())) => {}
        Ok(Err(Broken::Client)) => {
            done.flag = ResponseFlag::DownstreamConnectionTermination;
            send.send_reset(h2::Reason::CANCEL);
        }
        Ok(Err(Broken::Upstream)) => {
            // RFC 9113 section 8.5: a TCP failure is reported as CONNECT_ERROR.
            done.flag = ResponseFlag::UpstreamConnectionTermination;
            send.send_reset(h2::Reason::CONNECT_ERROR);
        }
        Err(e) => {
            if e == Expiry::UpstreamDuration {
                cs.stats.rq_max_duration_reached.inc();
            }
            let mut d = expired(respond, false, progress, e, edits);
            if e == Expiry::Idle {
                // A quiet tunnel is DRT, as HTTP/1.1 tunnels and TCP proxying report it.
                d.flag = ResponseFlag::DownstreamIdleTimeout;
            }
            return d;
        }
    }
    done
}

/// Client DATA to the upstream; END_STREAM becomes a write shutdown.
async fn client_to_upstream<W: AsyncWrite + Unpin>(
    body: &mut RecvStream,
    up: &mut W,
    progress: &Progress,
) -> Result<(), Broken> {
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|_| Broken::Client)?;
        progress.touch();
        up.write_all(&chunk).await.map_err(|_| Broken::Upstream)?;
        // The client may send more only once these bytes are with the upstream.
        let _ = body.flow_control().release_capacity(chunk.len());
        progress.received(chunk.len() as u64);
    }
    up.close().await.map_err(|_| Broken::Upstream)?;
    Ok(())
}

/// Upstream bytes to the client as DATA, within its window; end of stream becomes
/// END_STREAM.
async fn upstream_to_client<R: AsyncRead + Unpin>(
    up: &mut R,
    send: &mut SendStream<Bytes>,
    progress: &Progress,
) -> Result<(), Broken> {
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        // Wait for window first, so no more is read than the client can take.
        let cap = super::io::send_capacity(send, READ_BYTES)
            .await
            .ok_or(Broken::Client)?;
        let room = buf.get_mut(..cap.min(READ_BYTES)).ok_or(Broken::Client)?;
        let n = up.read(room).await.map_err(|_| Broken::Upstream)?;
        if n == 0 {
            send.send_data(Bytes::new(), true)
                .map_err(|_| Broken::Client)?;
            return Ok(());
        }
        let data = room.get(..n).ok_or(Broken::Upstream)?;
        send.send_data(Bytes::copy_from_slice(data), false)
            .map_err(|_| Broken::Client)?;
        progress.sent(n as u64);
    }
}
