//! Runtime prototype (a): the keep-alive HTTP/1.1 relay loop on glommio 0.9, the
//! proxy's current runtime, configured as the proxy configures its workers
//! (`Placement::Fixed(cpu)`, 128 KiB io_memory). Optional `--spin-us N` sets
//! `spin_before_park`. One task per downstream connection, one upstream keep-alive
//! connection per downstream connection; the HTTP logic is `common/relay.rs`.

#[path = "../../common/relay.rs"]
mod relay;

#[global_allocator]
static ALLOC: relay::allocs::Counting = relay::allocs::Counting;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use relay::{Args, Bad, BUF_SIZE};
use std::io;
use std::time::Duration;

fn main() {
    relay::allocs::report_on_sigusr1();
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("proto-glommio: {e}");
            std::process::exit(2);
        }
    };
    let spin = args
        .get("spin-us")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0u64);
    let mut builder = LocalExecutorBuilder::new(Placement::Fixed(args.cpu))
        .name("proto-glommio")
        .io_memory(128 * 1024);
    if spin > 0 {
        builder = builder.spin_before_park(Duration::from_micros(spin));
    }
    let (listen, upstream) = (args.listen, args.upstream);
    let res = builder
        .spawn(move || async move {
            // glommio's bind sets SO_REUSEPORT.
            let listener = TcpListener::bind(listen).expect("bind");
            eprintln!("proto-glommio listening on {listen}, upstream {upstream}");
            loop {
                let Ok(down) = listener.accept().await else {
                    continue;
                };
                glommio::spawn_local(async move {
                    let _ = serve(down, upstream).await;
                })
                .detach();
            }
        })
        .map(|h| h.join());
    if let Err(e) = res {
        eprintln!("proto-glommio: {e}");
        std::process::exit(1);
    }
}

async fn serve(mut down: TcpStream, upstream: std::net::SocketAddr) -> io::Result<()> {
    down.set_nodelay(true)?;
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    // Both buffers live as long as the connection: nothing is allocated per request.
    let mut req = vec![0u8; BUF_SIZE].into_boxed_slice();
    let mut resp = vec![0u8; BUF_SIZE].into_boxed_slice();
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

/// Relay one message from `src` to `dst`. `buf[..*filled]` holds bytes already read
/// (a pipelined message); on return it holds the bytes read past this message.
/// Ok(false): `src` closed before the first byte of a message.
async fn relay_message(
    src: &mut TcpStream,
    dst: &mut TcpStream,
    buf: &mut [u8],
    filled: &mut usize,
) -> io::Result<bool> {
    let mut scanned = 0;
    let head = loop {
        if let Some(h) = relay::head_end(buf.get(..*filled).unwrap_or(&[]), scanned) {
            break h;
        }
        scanned = *filled;
        let Some(space) = buf.get_mut(*filled..).filter(|s| !s.is_empty()) else {
            return Err(bad(Bad::HeadTooLarge));
        };
        let n = src.read(space).await?;
        if n == 0 {
            return if *filled == 0 {
                Ok(false)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        *filled += n;
    };
    let f = relay::frame(buf, *filled, head).map_err(bad)?;
    dst.write_all(buf.get(..f.send).unwrap_or(&[])).await?;
    buf.copy_within(f.send..*filled, 0);
    *filled = f.keep;
    let mut left = f.body_left;
    while left > 0 {
        let chunk = buf.get_mut(..left.min(BUF_SIZE)).unwrap_or(&mut []);
        let n = src.read(chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        dst.write_all(chunk.get(..n).unwrap_or(&[])).await?;
        left -= n;
    }
    Ok(true)
}

fn bad(b: Bad) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{b:?}"))
}
