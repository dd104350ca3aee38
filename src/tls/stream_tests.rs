//! `TlsStream` over memory: what reaches the socket, send by send.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::future::{block_on, poll_once};
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::server::provider;
use super::TlsStream;
use crate::http::io::Io;

/// One end of a socket: bytes the peer sent wait in `inbox`; every write call of the
/// stream is one send in `sends` (a vectored one joins its slices, as the runtime's
/// socket does).
#[derive(Clone, Default)]
struct Socket {
    inbox: Rc<RefCell<VecDeque<u8>>>,
    sends: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut inbox = self.inbox.borrow_mut();
        if inbox.is_empty() {
            return Poll::Pending;
        }
        Poll::Ready(inbox.read(buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.sends.borrow_mut().push(buf.to_vec());
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let send: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        let n = send.len();
        self.sends.borrow_mut().push(send);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Io for Socket {
    fn set_read_timeout(&self, _: Option<Duration>) {}
    fn set_write_timeout(&self, _: Option<Duration>) {}
}

fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["svc.local".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = CertificateDer::from(cert.der().to_vec());
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Moves what the client has to say into the server's inbox.
fn client_says(client: &mut rustls::ClientConnection, socket: &Socket) {
    let mut out = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut out).unwrap();
    }
    socket.inbox.borrow_mut().extend(out);
}

/// Hands the client what the server sent.
fn client_hears(client: &mut rustls::ClientConnection, send: &[u8]) {
    let mut rest = send;
    while !rest.is_empty() {
        client.read_tls(&mut rest).unwrap();
        client.process_new_packets().unwrap();
    }
}

/// Polls once: the memory socket never wakes anyone, so a step that would wait fails
/// the test instead of hanging it.
fn now<T>(f: impl std::future::Future<Output = T>) -> T {
    block_on(poll_once(f)).expect("ready without waiting")
}

/// The TLS records in one send.
fn records(send: &[u8]) -> usize {
    let (mut n, mut at) = (0, 0);
    while at + 5 <= send.len() {
        let len = u16::from_be_bytes([send[at + 3], send[at + 4]]) as usize;
        at += 5 + len;
        n += 1;
    }
    n
}

#[test]
fn a_tls13_servers_flight_is_one_send_and_its_tickets_ride_with_the_first_response() {
    let (server, client) = configs();
    let mut client =
        rustls::ClientConnection::new(client, ServerName::try_from("svc.local").unwrap()).unwrap();
    let socket = Socket::default();
    let mut s = TlsStream::new(
        socket.clone(),
        rustls::ServerConnection::new(server).unwrap(),
        &[],
    );

    // ClientHello in; the server's whole flight out in one send, then it waits.
    client_says(&mut client, &socket);
    assert!(block_on(poll_once(s.handshake())).is_none());
    assert_eq!(socket.sends.borrow().len(), 1, "the flight is one send");
    let flight = socket.sends.borrow()[0].clone();
    client_hears(&mut client, &flight);
    assert!(!client.is_handshaking());

    // The client's Finished and its request: the handshake ends, and the session
    // tickets the server now owes are not sent on their own.
    client.writer().write_all(b"ping").unwrap();
    client_says(&mut client, &socket);
    now(s.handshake()).unwrap();
    assert_eq!(
        socket.sends.borrow().len(),
        1,
        "no send for the tickets alone"
    );
    let mut got = [0u8; 4];
    now(s.read_exact(&mut got)).unwrap();
    assert_eq!(&got, b"ping");
    assert_eq!(socket.sends.borrow().len(), 1);

    // The response takes them along: one send, tickets first, then the data.
    now(s.write_all(b"pong")).unwrap();
    let sends = socket.sends.borrow().clone();
    assert_eq!(sends.len(), 2, "tickets and response in one send");
    assert!(records(&sends[1]) >= 2, "{} records", records(&sends[1]));
    client_hears(&mut client, &sends[1]);
    let mut back = [0u8; 4];
    client.reader().read_exact(&mut back).unwrap();
    assert_eq!(&back, b"pong");
}

#[test]
fn owed_tickets_go_out_before_a_read_waits() {
    let (server, client) = configs();
    let mut client =
        rustls::ClientConnection::new(client, ServerName::try_from("svc.local").unwrap()).unwrap();
    let socket = Socket::default();
    let mut s = TlsStream::new(
        socket.clone(),
        rustls::ServerConnection::new(server).unwrap(),
        &[],
    );
    client_says(&mut client, &socket);
    assert!(block_on(poll_once(s.handshake())).is_none());
    let flight = socket.sends.borrow()[0].clone();
    client_hears(&mut client, &flight);
    // Finished alone, no request yet: a server that waits to read sends what it owes.
    client_says(&mut client, &socket);
    now(s.handshake()).unwrap();
    let mut buf = [0u8; 16];
    assert!(block_on(poll_once(s.read(&mut buf))).is_none());
    let sends = socket.sends.borrow().clone();
    assert_eq!(
        sends.len(),
        2,
        "the tickets went out before the read waited"
    );
    client_hears(&mut client, &sends[1]);
}
