//! An HTTP/2 stream proxied to an HTTP/2 upstream over the per-core multiplexed
//! connection: headers, DATA and trailers pass through, in both directions at once (so
//! gRPC streaming calls work), with flow-control capacity released to the sender only
//! as the receiver takes the data.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use std::io::Write as _;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderValue, Response, Uri};

use super::clock::Progress;
use super::reply::{expired, fail, reject, Done};
use super::to_h1::{expiry_failure, Request};
use crate::http::failure::Failure;
use crate::http::flags::ResponseFlag;
use crate::http::forwarding::Decision;
use crate::http::h1::head::HeadError;
use crate::http::h1::response;
use crate::http::hop::{self, Fate, Message, Nominated, Special};
use crate::http::view::WorkerView;
use crate::upstream::cluster::ClusterState;
use crate::upstream::request::{self, RetryPolicy};
use crate::upstream::Connector;

/// Copies the fields of a `msg` that pass to the next hop (`http::hop`). Host does not:
/// on HTTP/2 the authority travels as `:authority`, and a Host field in a response
/// means nothing.
fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap, msg: Message) {
    for (name, value) in from {
        let n = name.as_str();
        let special = hop::classify(n);
        if special == Special::Host {
            continue;
        }
        // HTTP/2 has no Connection header: nothing is named by one.
        match hop::fate(special, n, value.as_bytes(), msg, Nominated::NONE) {
            Fate::Forward => {
                to.append(name.clone(), value.clone());
            }
            Fate::TeTrailers => {
                to.append(http::header::TE, HeaderValue::from_static("trailers"));
            }
            Fate::Drop => {}
        }
    }
}

/// Sets the forwarding headers the policy (`http::forwarding`) decided on a request
/// whose end-to-end headers (incoming `x-forwarded-*` included) were already copied:
/// with an address to append, every incoming `x-forwarded-for` value in order, joined by
/// "," (as Envoy), then the address, as one value; `x-forwarded-proto: http` in place of the
/// client's when it is overwritten, else only where the client sent none.
fn set_forwarding(to: &mut HeaderMap, from: &HeaderMap, fwd: Decision) {
    if let Some(ip) = fwd.append {
        let mut xff = Vec::with_capacity(64);
        for v in from.get_all("x-forwarded-for") {
            xff.extend_from_slice(v.as_bytes());
            xff.extend_from_slice(b",");
        }
        let _ = write!(xff, "{ip}");
        // Incoming values are valid field values, and so is their join.
        if let Ok(v) = HeaderValue::from_bytes(&xff) {
            to.insert("x-forwarded-for", v);
        }
    }
    if fwd.overwrite_proto || !to.contains_key("x-forwarded-proto") {
        to.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PumpError {
    Read,
    Write,
}

/// Moves DATA and trailers from one stream to another; the sender's window reopens only
/// as the receiver accepts the bytes. `moved` hears of every byte passed on.
async fn pump(
    from: &mut RecvStream,
    to: &mut SendStream<Bytes>,
    moved: impl Fn(u64),
) -> Result<u64, PumpError> {
    let mut total = 0u64;
    while let Some(chunk) = from.data().await {
        let mut chunk = chunk.map_err(|_| PumpError::Read)?;
        let n = chunk.len();
        while !chunk.is_empty() {
            let cap = super::io::send_capacity(to, chunk.len())
                .await
                .ok_or(PumpError::Write)?;
            let part = chunk.split_to(cap.min(chunk.len()));
            let len = part.len() as u64;
            to.send_data(part, false).map_err(|_| PumpError::Write)?;
            moved(len);
        }
        let _ = from.flow_control().release_capacity(n);
        total += n as u64;
    }
    match from.trailers().await.map_err(|_| PumpError::Read)? {
        Some(t) => to.send_trailers(t).map_err(|_| PumpError::Write)?,
        None => to
            .send_data(Bytes::new(), true)
            .map_err(|_| PumpError::Write)?,
    }
    Ok(total)
}

pub(crate) async fn proxy<C: Connector>(
    r: Request<'_>,
    respond: &mut SendResponse<Bytes>,
    view: &WorkerView<C>,
    cs: &ClusterState<C::Conn>,
    progress: &Progress,
) -> Done
where
    C::Conn: 'static,
{
    let grpc = r.grpc;
    let response_edits = r.edits.response;
    let Some(picked) = request::pick(cs) else {
        return fail(respond, grpc, Failure::NoHealthyUpstream, response_edits);
    };
    // Dropping the exchange on expiry resets the upstream stream.
    let mut done = match progress
        .run(exchange(r, respond, view, cs, picked.ep, progress))
        .await
    {
        Ok(d) => d,
        Err(e) => {
            let f = expiry_failure(e, progress);
            if progress.status() == 0 {
                request::count_failure(&cs.stats, f);
            } else {
                request::count_late(&cs.stats, f);
            }
            expired(respond, grpc, progress, e, response_edits)
        }
    };
    done.upstream = Some(picked.endpoint.addr);
    done
}

async fn exchange<C: Connector>(
    mut r: Request<'_>,
    respond: &mut SendResponse<Bytes>,
    view: &WorkerView<C>,
    cs: &ClusterState<C::Conn>,
    ep: usize,
    progress: &Progress,
) -> Done
where
    C::Conn: 'static,
{
    let stats = &cs.stats;
    let grpc = r.grpc;
    let response_edits = r.edits.response;
    let failed = |respond: &mut SendResponse<Bytes>, f| {
        request::count_failure(stats, f);
        fail(respond, grpc, f, response_edits)
    };
    let uri = Uri::builder()
        .scheme("http")
        .authority(r.authority)
        .path_and_query(r.path)
        .build()
        .or_else(|_| Uri::builder().path_and_query(r.path).build());
    let Ok(uri) = uri else {
        return reject(
            respond,
            grpc,
            HeadError::BadRequest("invalid request target"),
        );
    };
    let mut req = http::Request::new(());
    *req.method_mut() = r.parts.method.clone();
    *req.uri_mut() = uri;
    copy_end_to_end(&r.parts.headers, req.headers_mut(), Message::Request);
    set_forwarding(req.headers_mut(), &r.parts.headers, r.forwarding);
    // Edits see the request as it would go out: end-to-end and forwarding headers.
    r.edits.request.apply_to_map(req.headers_mut());
    let end = r.body.is_end_stream();
    let mut open = request::H2Open {
        req: Some(req),
        end,
    };
    let (response, mut up_send) = match request::run(
        &request::Http2,
        RetryPolicy::NONE,
        cs,
        ep,
        &*view.connector,
        || progress.deadline(),
        &mut open,
    )
    .await
    {
        Ok((_, stream)) => stream,
        Err(f) => return fail(respond, grpc, f, response_edits),
    };
    // Request body upstream and response downstream run together (streaming calls).
    let upload = async {
        if end {
            return Ok(0);
        }
        let result = pump(&mut r.body, &mut up_send, |n| progress.received(n)).await;
        match result {
            Ok(_) => progress.request_done(),
            Err(_) => up_send.send_reset(h2::Reason::CANCEL),
        }
        result
    };
    let download = async {
        let resp = match response.await {
            Ok(resp) => resp,
            Err(_) => return failed(respond, Failure::ConnectionTermination),
        };
        let (parts, mut body) = resp.into_parts();
        let status = parts.status.as_u16();
        // The h2 crate accepts any three-digit :status (and consumes 1xx itself).
        // (Dropping the body resets the upstream stream.)
        if !response::valid_status(status) {
            return failed(respond, Failure::ProtocolError);
        }
        request::count_status(stats, status);
        let mut out = Response::new(());
        *out.status_mut() = parts.status;
        copy_end_to_end(&parts.headers, out.headers_mut(), Message::Response);
        r.edits.response.apply_to_map(out.headers_mut());
        let end = body.is_end_stream();
        let mut done = Done {
            status,
            flag: ResponseFlag::None,
            bytes_received: 0,
            bytes_sent: 0,
            upstream: None,
        };
        let mut down_send = match respond.send_response(out, end) {
            Ok(s) => s,
            Err(_) => {
                done.flag = ResponseFlag::DownstreamConnectionTermination;
                return done;
            }
        };
        progress.head_sent(status);
        if !end {
            match pump(&mut body, &mut down_send, |n| progress.sent(n)).await {
                Ok(n) => done.bytes_sent = n,
                Err(PumpError::Read) => {
                    request::count_late(stats, Failure::ConnectionTermination);
                    down_send.send_reset(h2::Reason::INTERNAL_ERROR);
                    done.flag = ResponseFlag::UpstreamConnectionTermination;
                }
                Err(PumpError::Write) => done.flag = ResponseFlag::DownstreamConnectionTermination,
            }
        }
        done
    };
    let (sent, mut done) = futures_lite::future::zip(upload, download).await;
    match sent {
        Ok(n) => done.bytes_received = n,
        Err(_) if done.flag == ResponseFlag::None => {
            done.flag = ResponseFlag::DownstreamConnectionTermination
        }
        Err(_) => {}
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(append: Option<&str>, overwrite_proto: bool) -> Decision {
        Decision {
            append: append.map(|a| a.parse().unwrap()),
            overwrite_proto,
            client: None,
        }
    }

    #[test]
    fn forwarding_follows_the_decision() {
        let mut from = HeaderMap::new();
        from.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        from.append(
            "x-forwarded-for",
            HeaderValue::from_static("10.0.0.2, 10.0.0.3"),
        );
        from.append("x-forwarded-proto", HeaderValue::from_static("https"));
        let forwarded = |d: Decision| {
            let mut to = HeaderMap::new();
            copy_end_to_end(&from, &mut to, Message::Request);
            set_forwarding(&mut to, &from, d);
            let all = |n: &str| -> Vec<String> {
                to.get_all(n)
                    .iter()
                    .map(|v| v.to_str().unwrap().to_string())
                    .collect()
            };
            (all("x-forwarded-for"), all("x-forwarded-proto"))
        };
        // Appended: every value kept, in order, as one; the proto overwritten.
        let (xff, xfp) = forwarded(decision(Some("127.0.0.1"), true));
        assert_eq!(xff, ["10.0.0.1,10.0.0.2, 10.0.0.3,127.0.0.1"]);
        assert_eq!(xfp, ["http"]);
        // Nothing appended: XFF unchanged; the incoming proto kept.
        let (xff, xfp) = forwarded(decision(None, false));
        assert_eq!(xff, ["10.0.0.1", "10.0.0.2, 10.0.0.3"]);
        assert_eq!(xfp, ["https"]);

        let mut to = HeaderMap::new();
        set_forwarding(&mut to, &HeaderMap::new(), decision(Some("::1"), false));
        assert_eq!(to.get("x-forwarded-for").unwrap(), "::1");
        assert_eq!(to.get("x-forwarded-proto").unwrap(), "http");
    }
}
