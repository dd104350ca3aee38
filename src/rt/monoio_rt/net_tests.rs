//! A write the kernel takes only in part is finished while its task waits to read
//! (`TcpStream`, `ring_io::Writer`), on a real loopback socket with small buffers.

use std::io::{Read, Write};
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A connected pair whose buffers hold a few KiB: our `TcpStream` (its send buffer
/// small) and a blocking std socket (its receive buffer small) on the other end.
fn small_pair() -> (socket2::Socket, std::net::TcpListener) {
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.set_recv_buffer_size(4096).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(1).unwrap();
    let addr = l.local_addr().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_send_buffer_size(4096).unwrap();
    s.connect(&addr).unwrap();
    s.set_nonblocking(true).unwrap();
    (s, l.into())
}

/// The peer takes `len` bytes, slowly at first, then answers `ok`.
fn slow_peer(l: std::net::TcpListener, len: usize) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let (mut peer, _) = l.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Until the sender's buffers are full and its send came back short.
        std::thread::sleep(Duration::from_millis(200));
        let mut got = vec![0u8; len];
        let mut n = 0;
        while n < len {
            match peer.read(&mut got[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        if n == len {
            peer.write_all(b"ok").unwrap();
        }
        n
    })
}

/// Waits for the answer, or gives up after `within`.
async fn answer(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let read = async {
        let mut out = [0u8; 16];
        let n = s.read(&mut out).await.ok()?;
        Some(out[..n].to_vec())
    };
    let expire = async {
        crate::rt::sleep(within).await;
        None
    };
    futures_lite::future::or(read, expire).await
}

#[test]
fn one_large_write_the_kernel_takes_in_parts_is_finished_while_the_task_reads() {
    super::super::executor::block_on(async {
        let (s, l) = small_pair();
        let len = 60 * 1024;
        let peer = slow_peer(l, len);
        let mut s = stream_from(s).unwrap();
        // One write, handed over whole (no flush after it): the kernel's socket buffers
        // hold far less, so its send comes back short.
        let body = vec![b'x'; len];
        assert_eq!(s.write(&body).await.unwrap(), len);
        let got = answer(&mut s, Duration::from_secs(5)).await;
        assert_eq!(
            got.as_deref(),
            Some(&b"ok"[..]),
            "the rest of the write was sent"
        );
        assert_eq!(peer.join().unwrap(), len);
    });
}

#[test]
fn the_last_small_write_of_a_stream_is_finished_while_the_task_reads() {
    super::super::executor::block_on(async {
        let (s, l) = small_pair();
        // A body streamed in pieces, each smaller than `quiet_send`: the last one finds
        // the socket's buffers full and goes in parts.
        let (piece, pieces) = (6000, 40);
        let peer = slow_peer(l, piece * pieces);
        let mut s = stream_from(s).unwrap();
        for _ in 0..pieces {
            s.write_all(&vec![b'y'; piece]).await.unwrap();
        }
        let got = answer(&mut s, Duration::from_secs(5)).await;
        assert_eq!(got.as_deref(), Some(&b"ok"[..]), "every piece was sent");
        assert_eq!(peer.join().unwrap(), piece * pieces);
    });
}

#[test]
fn an_answer_ends_the_watch_so_the_next_small_message_is_left_alone() {
    super::super::executor::block_on(async {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut p, _) = l.accept().unwrap();
            for len in [40 * 1024, 4] {
                let mut got = vec![0u8; len];
                p.read_exact(&mut got).unwrap();
                p.write_all(b"ok").unwrap();
            }
        });
        let mut s = TcpStream::connect_timeout(addr, Duration::from_secs(5))
            .await
            .unwrap();
        s.write_all(&vec![b'z'; 40 * 1024]).await.unwrap();
        assert!(s.since_read > quiet_send(), "a large message is watched");
        let got = answer(&mut s, Duration::from_secs(5)).await;
        assert_eq!(got.as_deref(), Some(&b"ok"[..]));
        assert_eq!(s.since_read, 0, "the answer ends the watch");
        s.write_all(b"ping").await.unwrap();
        assert_eq!(s.since_read, 4, "a small message is not watched");
        let got = answer(&mut s, Duration::from_secs(5)).await;
        assert_eq!(got.as_deref(), Some(&b"ok"[..]));
        peer.join().unwrap();
    });
}
