//! Runtime prototype (c): the keep-alive HTTP/1.1 relay loop on monoio, a maintained
//! completion-based runtime (io_uring recv/send ops with owned buffers, one submit
//! per turn of its loop). `--uring-flags coop` adds COOP_TASKRUN + SINGLE_ISSUER to
//! its ring (default: monoio's own setup). One task per downstream connection, one
//! upstream keep-alive connection per downstream connection; the HTTP logic is
//! `common/relay.rs`, shared with the other prototypes.
//!
//! `--io poll` moves the bytes through monoio's poll-io streams instead (readiness from
//! an epoll instance watched by the ring, then plain recv/send into borrowed buffers):
//! the shape a poll-based `AsyncRead`/`AsyncWrite` trait such as the proxy's `Io`
//! would run on, without owned-buffer operations (`pollio.rs`).

#[path = "../../common/relay.rs"]
mod relay;

mod pollio;

#[global_allocator]
static ALLOC: relay::allocs::Counting = relay::allocs::Counting;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use relay::{Args, Bad, BUF_SIZE};
use std::io;

fn main() {
    relay::allocs::report_on_sigusr1();
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("proto-monoio: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = relay::pin_to(args.cpu) {
        eprintln!("proto-monoio: {e}");
        std::process::exit(1);
    }
    let mut urb = io_uring::IoUring::builder();
    match args.get("uring-flags").unwrap_or("default") {
        "default" => {}
        "coop" => {
            urb.setup_coop_taskrun().setup_single_issuer();
        }
        other => {
            eprintln!("proto-monoio: --uring-flags {other}: expected default or coop");
            std::process::exit(2);
        }
    }
    let mut rt = match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(1024)
        .uring_builder(urb)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proto-monoio: runtime: {e}");
            std::process::exit(1);
        }
    };
    let poll_io = match args.get("io").unwrap_or("owned") {
        "owned" => false,
        "poll" => true,
        other => {
            eprintln!("proto-monoio: --io {other}: expected owned or poll");
            std::process::exit(2);
        }
    };
    let (listen, upstream) = (args.listen, args.upstream);
    rt.block_on(async move {
        let opts = ListenerOpts::new().reuse_port(true).backlog(1024);
        let listener = match TcpListener::bind_with_config(listen, &opts) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("proto-monoio: bind {listen}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!("proto-monoio listening on {listen}, upstream {upstream}");
        loop {
            let Ok((down, _)) = listener.accept().await else {
                continue;
            };
            monoio::spawn(async move {
                let _ = if poll_io {
                    pollio::serve(down, upstream).await
                } else {
                    serve(down, upstream).await
                };
            });
        }
    });
}

async fn serve(down: TcpStream, upstream: std::net::SocketAddr) -> io::Result<()> {
    let mut down = down;
    down.set_nodelay(true)?;
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    // Both buffers live as long as the connection and travel to the kernel and back
    // by ownership: nothing is allocated per request.
    let mut req = Some(vec![0u8; BUF_SIZE].into_boxed_slice());
    let mut resp = Some(vec![0u8; BUF_SIZE].into_boxed_slice());
    let (mut req_filled, mut resp_filled) = (0, 0);
    loop {
        if !relay_message(&mut down, &mut up, &mut req, &mut req_filled).await? {
            return Ok(()); // downstream closed between requests
        }
        if !relay_message(&mut up, &mut down, &mut resp, &mut resp_filled).await? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Relay one message from `src` to `dst` (same steps as the glommio prototype).
/// `slot` holds the connection's buffer between operations; `buf[..*filled]` holds
/// bytes already read. Ok(false): `src` closed before the first byte of a message.
async fn relay_message(
    src: &mut TcpStream,
    dst: &mut TcpStream,
    slot: &mut Option<Box<[u8]>>,
    filled: &mut usize,
) -> io::Result<bool> {
    let mut buf = slot.take().ok_or_else(|| bad(Bad::Framing))?;
    let mut scanned = 0;
    let head = loop {
        if let Some(h) = relay::head_end(buf.get(..*filled).unwrap_or(&[]), scanned) {
            break h;
        }
        scanned = *filled;
        if *filled >= BUF_SIZE {
            return Err(bad(Bad::HeadTooLarge));
        }
        let (res, b) = src.read(buf.slice_mut(*filled..BUF_SIZE)).await;
        buf = b.into_inner();
        let n = res?;
        if n == 0 {
            return if *filled == 0 {
                *slot = Some(buf);
                Ok(false)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        *filled += n;
    };
    let f = relay::frame(&buf, *filled, head).map_err(bad)?;
    let (res, b) = dst.write_all(buf.slice(..f.send)).await;
    buf = b.into_inner();
    res?;
    buf.copy_within(f.send..*filled, 0);
    *filled = f.keep;
    let mut left = f.body_left;
    while left > 0 {
        let (res, b) = src.read(buf.slice_mut(..left.min(BUF_SIZE))).await;
        buf = b.into_inner();
        let n = res?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let (res, b) = dst.write_all(buf.slice(..n)).await;
        buf = b.into_inner();
        res?;
        left -= n;
    }
    *slot = Some(buf);
    Ok(true)
}

pub(crate) fn bad(b: Bad) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{b:?}"))
}
