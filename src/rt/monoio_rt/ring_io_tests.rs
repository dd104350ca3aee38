//! What a connection's two directions hold between operations (issue 12: memory per
//! idle connection), on a real loopback socket.

use std::io::{Read, Write};
use std::task::Poll;

use monoio::io::Splitable;

use super::*;

/// A connected pair: our `Reader`/`Writer` on one end, a blocking std socket on the other.
async fn pair() -> (Reader, Writer, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let s = monoio::net::TcpStream::connect_addr(addr).await.unwrap();
    let (peer, _) = l.accept().unwrap();
    let (r, w) = s.into_split();
    (Reader::new(r), Writer::new(w), peer)
}

async fn read_some(r: &mut Reader, out: &mut [u8]) -> usize {
    std::future::poll_fn(|cx| r.poll_read(cx, out))
        .await
        .unwrap()
}

#[test]
fn a_small_message_leaves_the_smallest_read_in_flight() {
    super::super::executor::block_on(async {
        let (mut r, _w, mut peer) = pair().await;
        peer.write_all(&[b'x'; 100]).unwrap();
        let mut out = [0u8; 8192];
        let mut got = 0;
        while got < 100 {
            got += read_some(&mut r, &mut out).await;
        }
        assert!(r.side.busy, "the next read is in flight");
        // What arrives next lands in that read's buffer: the smallest one.
        peer.write_all(&[b'y'; 5000]).unwrap();
        let n = read_some(&mut r, &mut out).await;
        assert!(n > 0 && n <= MIN_BUF, "{n}");
    });
}

#[test]
fn a_read_that_fills_its_buffer_doubles_the_next() {
    super::super::executor::block_on(async {
        let (mut r, _w, _peer) = pair().await;
        r.side.buf = Some(vec![0; MIN_BUF]);
        assert_eq!(r.next_size(), 2 * MIN_BUF);
        let mut b = Vec::with_capacity(8192);
        b.resize(3000, 0);
        r.side.buf = Some(b);
        assert_eq!(r.next_size(), 4096);
        let mut b = Vec::with_capacity(MAX_BUF);
        b.resize(5000, 0);
        r.side.buf = Some(b);
        assert_eq!(r.next_size(), 8192);
        // A large buffer is not kept for a small read.
        let b = r.side.take_buf(MIN_BUF);
        assert_eq!(b.capacity(), MIN_BUF);
    });
}

#[test]
fn ready_waits_without_losing_bytes_or_the_close() {
    super::super::executor::block_on(async {
        let (mut r, _w, mut peer) = pair().await;
        let pending = std::future::poll_fn(|cx| Poll::Ready(r.poll_ready(cx).is_pending())).await;
        assert!(pending, "nothing sent yet");
        peer.write_all(b"hello").unwrap();
        std::future::poll_fn(|cx| r.poll_ready(cx)).await;
        // Ready again at once: the bytes wait for the read.
        std::future::poll_fn(|cx| r.poll_ready(cx)).await;
        let mut out = [0u8; 16];
        let n = read_some(&mut r, &mut out).await;
        assert_eq!(&out[..n], b"hello");
        drop(peer);
        std::future::poll_fn(|cx| r.poll_ready(cx)).await;
        assert_eq!(
            read_some(&mut r, &mut out).await,
            0,
            "the close is kept for the read"
        );
    });
}

#[test]
fn a_sent_write_holds_no_buffer() {
    super::super::executor::block_on(async {
        let (_r, mut w, mut peer) = pair().await;
        let n = std::future::poll_fn(|cx| w.poll_write(cx, &[io::IoSlice::new(b"ping")]))
            .await
            .unwrap();
        assert_eq!(n, 4);
        std::future::poll_fn(|cx| w.poll_flush(cx)).await.unwrap();
        assert_eq!(w.side.buf.as_ref().map_or(0, Vec::capacity), 0);
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        // The next write takes the spare back.
        let spare = spare::take(1);
        assert_eq!(spare.capacity(), MIN_BUF);
    });
}

/// Counts the wakes it gets.
struct Counting(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Counting {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn counting() -> (std::sync::Arc<Counting>, std::task::Waker) {
    let c = std::sync::Arc::new(Counting(0.into()));
    (c.clone(), std::task::Waker::from(c))
}

fn wakes(c: &Counting) -> usize {
    c.0.load(std::sync::atomic::Ordering::SeqCst)
}

/// A writer that has just handed "ping" over, polled with a waker that counts its wakes
/// (the reader kept so the socket stays whole).
async fn handed_over() -> (
    Reader,
    Writer,
    std::net::TcpStream,
    std::sync::Arc<Counting>,
    std::task::Waker,
) {
    let (r, mut w, peer) = pair().await;
    let (c, waker) = counting();
    let mut cx = std::task::Context::from_waker(&waker);
    let sent = w.poll_write(&mut cx, &[io::IoSlice::new(b"ping")]);
    assert!(matches!(sent, Poll::Ready(Ok(4))));
    (r, w, peer, c, waker)
}

#[test]
fn a_write_nobody_waits_for_wakes_no_one_and_its_result_waits_for_the_next_caller() {
    super::super::executor::block_on(async {
        let (_r, mut w, mut peer, c, waker) = handed_over().await;
        let mut cx = std::task::Context::from_waker(&waker);
        // The ring runs the send while the executor waits (the peer then has its
        // bytes), and the completion wakes no task of the writer's.
        crate::rt::sleep(std::time::Duration::from_millis(5)).await;
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(wakes(&c), 0, "the send's completion wakes no one");
        assert!(w.busy(), "its result waits");
        w.settle();
        assert!(w.finished(), "settled: the result is in the slot");
        assert!(matches!(w.poll_flush(&mut cx), Poll::Ready(Ok(()))));
        assert!(!w.busy());
    });
}

#[test]
fn settling_does_not_take_the_wake_of_a_caller_that_waits() {
    super::super::executor::block_on(async {
        let (_r, mut w, mut peer, c, waker) = handed_over().await;
        let mut cx = std::task::Context::from_waker(&waker);
        // A flush waits: the send is queued, not yet run by the ring.
        assert!(w.poll_flush(&mut cx).is_pending());
        // A read that completes meanwhile settles the writer (`net::TcpStream`): the
        // waiting flush keeps its wake.
        w.settle();
        crate::rt::sleep(std::time::Duration::from_millis(5)).await;
        let mut got = [0u8; 4];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(wakes(&c), 1, "the flush is woken when the send is done");
        assert!(matches!(w.poll_flush(&mut cx), Poll::Ready(Ok(()))));
    });
}
