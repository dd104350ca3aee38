//! A small HTTP/2 client for the black-box tests, for what curl and h2load cannot do:
//! stall a stream on purpose, send exact pseudo-headers and headers, CONNECT, read
//! trailers and resets. It is the h2 crate on a glommio executor (the proxy's own
//! stack, so no other runtime is needed), one executor per call of [`run`].
//!
//! Every wait is bounded: [`within`] fails the test instead of hanging.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::RecvStream;
use tokio_util::compat::FuturesAsyncReadCompatExt;

/// How long any single step may take before the test fails.
pub const STEP: Duration = Duration::from_secs(10);

/// Runs the future `make` builds on a fresh single-threaded glommio executor, on its own
/// thread: io_uring completions that arrive after the executor is gone would interrupt
/// the test thread's blocking socket reads (EINTR) if it ran here.
pub fn run<T, F>(make: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + 'static,
{
    let t = std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 * 1024)
            .make()
            .expect("a glommio executor for the test client (io_uring, RLIMIT_MEMLOCK)")
            .run(make())
    });
    match t.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// `f`, or a panic naming `what` if it takes longer than `d`.
pub async fn within<T>(d: Duration, what: &str, f: impl Future<Output = T>) -> T {
    let expire = async {
        glommio::timer::sleep(d).await;
        None
    };
    match futures_lite::future::or(async { Some(f.await) }, expire).await {
        Some(v) => v,
        None => panic!("{what}: no progress within {d:?}"),
    }
}

/// Opens an h2c connection (prior knowledge) and drives it in a background task.
pub async fn connect(addr: SocketAddr) -> SendRequest<Bytes> {
    connect_with(addr, &h2::client::Builder::new()).await
}

/// `connect` with the client's own settings (a small window, say).
pub async fn connect_with(addr: SocketAddr, settings: &h2::client::Builder) -> SendRequest<Bytes> {
    let s = glommio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    let (send, conn) = settings
        .handshake(s.compat())
        .await
        .expect("h2 handshake with the proxy");
    glommio::spawn_local(async move {
        let _ = conn.await;
    })
    .detach();
    within(STEP, "h2 connection ready", send.ready())
        .await
        .expect("h2 connection ready")
}

/// A request builder for `method` on `uri` (absolute, to set :scheme and :authority).
pub fn request(method: &str, uri: &str) -> http::request::Builder {
    http::Request::builder().method(method).uri(uri)
}

/// What came back on a stream.
#[derive(Debug, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<http::HeaderMap>,
    /// The stream ended with RST_STREAM (or a connection error) instead of END_STREAM.
    pub reset: Option<String>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads a whole body (releasing window as it goes), then the trailers.
pub async fn read_body(mut body: RecvStream, reply: &mut Reply) {
    while let Some(chunk) = within(STEP, "response body", body.data()).await {
        match chunk {
            Ok(c) => {
                let _ = body.flow_control().release_capacity(c.len());
                reply.body.extend_from_slice(&c);
            }
            Err(e) => {
                reply.reset = Some(e.to_string());
                return;
            }
        }
    }
    match within(STEP, "response trailers", body.trailers()).await {
        Ok(t) => reply.trailers = t,
        Err(e) => reply.reset = Some(e.to_string()),
    }
}

/// Sends `req` with `body` (empty: END_STREAM on the headers) and reads the reply.
pub async fn send(client: &mut SendRequest<Bytes>, req: http::Request<()>, body: &[u8]) -> Reply {
    let mut c = within(STEP, "stream slot", client.clone().ready())
        .await
        .expect("h2 connection ready");
    let (response, mut stream) = c
        .send_request(req, body.is_empty())
        .expect("send request headers");
    if !body.is_empty() {
        stream.reserve_capacity(body.len());
        stream
            .send_data(Bytes::copy_from_slice(body), true)
            .expect("send request body");
    }
    read_reply(response).await
}

/// Waits for the response head, then reads the body and trailers.
pub async fn read_reply(response: h2::client::ResponseFuture) -> Reply {
    let mut reply = Reply::default();
    match within(STEP, "response head", response).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            reply.status = parts.status.as_u16();
            reply.headers = parts.headers;
            read_body(body, &mut reply).await;
        }
        Err(e) => reply.reset = Some(e.to_string()),
    }
    reply
}

/// An HTTP/2 (h2c) upstream on 127.0.0.1 that answers every request with `status` and
/// an empty body, on its own thread. It stops by itself after a minute.
pub fn h2_upstream(status: u16) -> SocketAddr {
    h2_upstream_counted(status).0
}

/// The connections an HTTP/2 test upstream saw: accepted in all, and still open (its
/// side of the connection has not ended: the peer closed it, or sent GOAWAY and its
/// streams are done).
#[derive(Default)]
pub struct H2Counts {
    pub total: std::sync::atomic::AtomicUsize,
    pub open: std::sync::atomic::AtomicUsize,
}

/// How long [`h2_upstream_counted`] takes to answer a request whose path starts with
/// `/slow`.
pub const SLOW: Duration = Duration::from_millis(1500);

/// [`h2_upstream`], with the connections it sees counted; a path starting with `/slow`
/// is answered after [`SLOW`].
pub fn h2_upstream_counted(status: u16) -> (SocketAddr, std::sync::Arc<H2Counts>) {
    use std::sync::atomic::Ordering::SeqCst;
    struct Open(std::sync::Arc<H2Counts>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.open.fetch_sub(1, SeqCst);
        }
    }
    let counts = std::sync::Arc::new(H2Counts::default());
    let seen = counts.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 * 1024)
            .make()
            .expect("a glommio executor for the test upstream")
            .run(async move {
                let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let _ = tx.send(l.local_addr().expect("local addr"));
                let serve = async {
                    while let Ok(s) = l.accept().await {
                        seen.total.fetch_add(1, SeqCst);
                        seen.open.fetch_add(1, SeqCst);
                        let open = Open(seen.clone());
                        glommio::spawn_local(async move {
                            let _open = open;
                            let Ok(mut conn) = h2::server::handshake(s.compat()).await else {
                                return;
                            };
                            while let Some(Ok((req, mut respond))) = conn.accept().await {
                                let slow = req.uri().path().starts_with("/slow");
                                glommio::spawn_local(async move {
                                    if slow {
                                        glommio::timer::sleep(SLOW).await;
                                    }
                                    let resp = http::Response::builder()
                                        .status(status)
                                        .body(())
                                        .expect("a response");
                                    let _ = respond.send_response(resp, true);
                                })
                                .detach();
                            }
                        })
                        .detach();
                    }
                };
                futures_lite::future::or(serve, glommio::timer::sleep(Duration::from_secs(60)))
                    .await;
            })
    });
    (
        rx.recv_timeout(STEP).expect("the h2 upstream started"),
        counts,
    )
}

/// What [`h2_upstream_answering`] sends back for a request: the status and headers,
/// a body (empty: none), trailers (empty: none; the body then ends the stream).
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: &'static [u8],
    pub trailers: Vec<(&'static str, &'static str)>,
}

/// An HTTP/2 (h2c) upstream that answers every request with 200, `headers`, `body` in
/// one DATA frame, and then `trailers` (a trailing HEADERS frame; none: END_STREAM on
/// the DATA), as a gRPC server does. On its own thread; it stops by itself after a
/// minute.
pub fn h2_upstream_with(
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    trailers: &'static [(&'static str, &'static str)],
) -> SocketAddr {
    h2_upstream_answering(move |_| Answer {
        status: 200,
        headers: headers.to_vec(),
        body: body.as_bytes(),
        trailers: trailers.to_vec(),
    })
}

/// An HTTP/2 (h2c) upstream that reads each request whole and sends what `answer`
/// says for its head (gRPC responses with trailers, trailers-only ones, plain ones).
/// On its own thread; it stops by itself after a minute.
pub fn h2_upstream_answering(
    answer: impl Fn(&http::request::Parts) -> Answer + Send + Sync + 'static,
) -> SocketAddr {
    let answer = std::sync::Arc::new(answer);
    h2_serve(move |req, respond| answer_whole(req, respond, answer.clone()))
}

/// An HTTP/2 (h2c) upstream for trailer tests: it reads each request whole and answers
/// 200 with `x-req-trailers` (the request's trailers as sorted `name=value` pairs,
/// comma-joined), the body `body`, and the trailers `x-trail: t` and
/// `x-trailer-drop: 1`. On its own thread; it stops by itself after a minute.
pub fn h2_trailer_echo() -> SocketAddr {
    h2_serve(|req, mut respond| async move {
        let (_, mut body) = req.into_parts();
        while let Some(Ok(c)) = body.data().await {
            let _ = body.flow_control().release_capacity(c.len());
        }
        let t = body.trailers().await.ok().flatten().unwrap_or_default();
        let mut got: Vec<String> = t
            .iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap_or("?")))
            .collect();
        got.sort();
        let resp = http::Response::builder()
            .status(200)
            .header("x-req-trailers", got.join(","))
            .body(())
            .expect("a response");
        let Ok(mut send) = respond.send_response(resp, false) else {
            return;
        };
        send.reserve_capacity(4);
        let _ = send.send_data(Bytes::from_static(b"body"), false);
        let mut t = http::HeaderMap::new();
        t.insert("x-trail", http::HeaderValue::from_static("t"));
        t.insert("x-trailer-drop", http::HeaderValue::from_static("1"));
        let _ = send.send_trailers(t);
    })
}

/// An HTTP/2 POST of `body` to `uri` on `addr`, ended by the trailers `trailers`.
pub fn post_with_trailers(
    addr: SocketAddr,
    uri: String,
    body: &'static [u8],
    trailers: &'static [(&'static str, &'static str)],
) -> Reply {
    run(move || async move {
        let client = connect(addr).await;
        let mut c = within(STEP, "stream slot", client.ready())
            .await
            .expect("h2 connection ready");
        let req = request("POST", &uri).body(()).expect("a request");
        let (response, mut stream) = c.send_request(req, false).expect("send request");
        stream.reserve_capacity(body.len());
        stream
            .send_data(Bytes::from_static(body), false)
            .expect("data");
        let mut t = http::HeaderMap::new();
        for (n, v) in trailers {
            t.append(*n, http::HeaderValue::from_static(v));
        }
        stream.send_trailers(t).expect("trailers");
        read_reply(response).await
    })
}

/// An HTTP/2 (h2c) upstream on 127.0.0.1 that runs `stream` for each stream it
/// accepts, each in its own task, on every connection. On its own thread (a glommio
/// executor); it stops by itself after a minute.
pub fn h2_serve<F, Fut>(stream: F) -> SocketAddr
where
    F: Fn(http::Request<RecvStream>, h2::server::SendResponse<Bytes>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 * 1024)
            .make()
            .expect("a glommio executor for the test upstream")
            .run(async move {
                let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let _ = tx.send(l.local_addr().expect("local addr"));
                let stream = std::rc::Rc::new(stream);
                let serve = async {
                    while let Ok(s) = l.accept().await {
                        let stream = stream.clone();
                        glommio::spawn_local(async move {
                            let Ok(mut conn) = h2::server::handshake(s.compat()).await else {
                                return;
                            };
                            while let Some(Ok((req, respond))) = conn.accept().await {
                                glommio::spawn_local(stream(req, respond)).detach();
                            }
                        })
                        .detach();
                    }
                };
                futures_lite::future::or(serve, glommio::timer::sleep(Duration::from_secs(60)))
                    .await;
            })
    });
    rx.recv_timeout(STEP).expect("the h2 upstream started")
}

async fn answer_whole(
    req: http::Request<RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    answer: std::sync::Arc<impl Fn(&http::request::Parts) -> Answer>,
) {
    let (parts, mut body) = req.into_parts();
    while let Some(chunk) = body.data().await {
        let Ok(c) = chunk else { return };
        let _ = body.flow_control().release_capacity(c.len());
    }
    let a = answer(&parts);
    let mut resp = http::Response::builder().status(a.status);
    for (n, v) in &a.headers {
        resp = resp.header(*n, *v);
    }
    let resp = resp.body(()).expect("a response");
    let end = a.body.is_empty() && a.trailers.is_empty();
    let Ok(mut send) = respond.send_response(resp, end) else {
        return;
    };
    if !a.body.is_empty() {
        send.reserve_capacity(a.body.len());
        let _ = send.send_data(Bytes::from_static(a.body), a.trailers.is_empty());
    }
    if !a.trailers.is_empty() {
        let mut t = http::HeaderMap::new();
        for (n, v) in &a.trailers {
            t.append(*n, http::HeaderValue::from_static(v));
        }
        let _ = send.send_trailers(t);
    }
}

/// An HTTP/2 (h2c) upstream that answers before the request body is complete: for each
/// request it reads at least `read_first` bytes of the body (releasing their window),
/// then sends `status` with `body` and END_STREAM, and then does what `after` says. On
/// its own thread; it stops by itself after a minute.
pub fn h2_upstream_early(
    status: u16,
    body: &'static str,
    read_first: usize,
    after: AfterAnswer,
) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 * 1024)
            .make()
            .expect("a glommio executor for the test upstream")
            .run(async move {
                let l = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let _ = tx.send(l.local_addr().expect("local addr"));
                let serve = async {
                    while let Ok(s) = l.accept().await {
                        glommio::spawn_local(async move {
                            let Ok(mut conn) = h2::server::handshake(s.compat()).await else {
                                return;
                            };
                            while let Some(Ok((req, respond))) = conn.accept().await {
                                glommio::spawn_local(answer_early(
                                    req, respond, status, body, read_first, after,
                                ))
                                .detach();
                            }
                        })
                        .detach();
                    }
                };
                futures_lite::future::or(serve, glommio::timer::sleep(Duration::from_secs(60)))
                    .await;
            })
    });
    rx.recv_timeout(STEP).expect("the h2 upstream started")
}

async fn answer_early(
    req: http::Request<RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    status: u16,
    body: &'static str,
    read_first: usize,
    after: AfterAnswer,
) {
    let mut request_body = req.into_body();
    let mut read = 0;
    while read < read_first {
        match request_body.data().await {
            Some(Ok(c)) => {
                read += c.len();
                let _ = request_body.flow_control().release_capacity(c.len());
            }
            _ => return,
        }
    }
    let resp = http::Response::builder()
        .status(status)
        .header("content-length", body.len())
        .body(())
        .expect("a response");
    let Ok(mut send) = respond.send_response(resp, false) else {
        return;
    };
    let _ = send.send_data(Bytes::from_static(body.as_bytes()), true);
    match after {
        AfterAnswer::Hold => {
            // Take what arrives (so a reset is seen) but open no window for more.
            let wait = async { while let Some(Ok(_)) = request_body.data().await {} };
            futures_lite::future::or(wait, glommio::timer::sleep(Duration::from_secs(10))).await;
        }
        AfterAnswer::Drain => {
            while let Some(Ok(c)) = request_body.data().await {
                let _ = request_body.flow_control().release_capacity(c.len());
            }
        }
        AfterAnswer::Drop => {}
    }
}

/// What `h2_upstream_early` does after its answer.
#[derive(Clone, Copy, Debug)]
pub enum AfterAnswer {
    /// Keeps the request stream open and releases no more window, so a sender that
    /// waits for the whole body to go out is stuck on flow control (until the stream is
    /// reset, or 10 s).
    Hold,
    /// Drops the request body, which h2 answers with RST_STREAM(NO_ERROR) (RFC 9113
    /// section 8.1).
    Drop,
    /// Reads the rest of the request body and releases its window.
    Drain,
}

/// A POST of `n` bytes that does not end its stream (no `content-length`, no
/// END_STREAM): the proxy must answer before the request is complete (a request-body
/// filter's `413`). Unlike curl, which may drop a response whose stream is reset while
/// it is still uploading, this reads the response head and body whatever follows.
pub fn post_unfinished(addr: SocketAddr, path: &str, n: usize) -> Reply {
    let uri = format!("http://{addr}{path}");
    run(move || async move {
        let client = connect(addr).await;
        let mut c = within(STEP, "stream slot", client.ready())
            .await
            .expect("h2 connection ready");
        let req = request("POST", &uri).body(()).expect("request");
        let (response, mut stream) = c.send_request(req, false).expect("send request headers");
        stream.reserve_capacity(n);
        stream
            .send_data(Bytes::from(vec![b'x'; n]), false)
            .expect("send request body");
        let reply = read_reply(response).await;
        drop(stream);
        reply
    })
}

/// Reads raw HTTP/2 frames from `s` (a connection the test drives by hand, past its
/// preface), answering PINGs, until one of type `want` arrives or the connection
/// closes (or its read timeout passes); returns the frame types seen.
pub fn frames_until(s: &mut std::net::TcpStream, want: u8) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut types = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return types,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let kind = buf[3];
            types.push(kind);
            if kind == 6 && buf[4] & 1 == 0 && len == 8 {
                let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                ack.extend_from_slice(&buf[9..17]);
                let _ = s.write_all(&ack);
            }
            buf.drain(..9 + len);
            if kind == want {
                return types;
            }
        }
    }
}
