//! Variant `--io poll`: the same relay over monoio's poll-io streams (`TcpStreamPoll`,
//! tokio's `AsyncRead`/`AsyncWrite`), each connection reading into and writing from
//! its own buffers by reference, as a poll-based IO trait does.

use crate::relay::{self, Bad, BUF_SIZE};
use monoio::io::IntoPollIo;
use monoio::net::tcp::stream_poll::TcpStreamPoll;
use monoio::net::TcpStream;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub async fn serve(down: TcpStream, upstream: std::net::SocketAddr) -> io::Result<()> {
    down.set_nodelay(true)?;
    let up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let mut down = down.into_poll_io()?;
    let mut up = up.into_poll_io()?;
    let mut req = vec![0u8; BUF_SIZE].into_boxed_slice();
    let mut resp = vec![0u8; BUF_SIZE].into_boxed_slice();
    let (mut req_filled, mut resp_filled) = (0, 0);
    loop {
        if !relay_message(&mut down, &mut up, &mut req, &mut req_filled).await? {
            return Ok(());
        }
        if !relay_message(&mut up, &mut down, &mut resp, &mut resp_filled).await? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

async fn read(s: &mut TcpStreamPoll, buf: &mut [u8]) -> io::Result<usize> {
    let mut rb = ReadBuf::new(buf);
    poll_fn(|cx| Pin::new(&mut *s).poll_read(cx, &mut rb)).await?;
    Ok(rb.filled().len())
}

async fn write_all(s: &mut TcpStreamPoll, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *s).poll_write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = buf.get(n..).unwrap_or(&[]);
    }
    Ok(())
}

/// Same steps as `relay_message` in main.rs.
async fn relay_message(
    src: &mut TcpStreamPoll,
    dst: &mut TcpStreamPoll,
    buf: &mut [u8],
    filled: &mut usize,
) -> io::Result<bool> {
    let mut scanned = 0;
    let head = loop {
        if let Some(h) = relay::head_end(buf.get(..*filled).unwrap_or(&[]), scanned) {
            break h;
        }
        scanned = *filled;
        let Some(room) = buf.get_mut(*filled..) else {
            return Err(crate::bad(Bad::Framing));
        };
        if room.is_empty() {
            return Err(crate::bad(Bad::HeadTooLarge));
        }
        let n = read(src, room).await?;
        if n == 0 {
            return if *filled == 0 {
                Ok(false)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        *filled += n;
    };
    let f = relay::frame(buf, *filled, head).map_err(crate::bad)?;
    write_all(dst, buf.get(..f.send).unwrap_or(&[])).await?;
    buf.copy_within(f.send..*filled, 0);
    *filled = f.keep;
    let mut left = f.body_left;
    while left > 0 {
        let chunk = buf.get_mut(..left.min(BUF_SIZE)).unwrap_or(&mut []);
        let n = read(src, chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        write_all(dst, buf.get(..n).unwrap_or(&[])).await?;
        left -= n;
    }
    Ok(true)
}
