//! The upstream side: per-core cluster state (load balancer, connection pool, stats)
//! and the connector that opens upstream connections.

pub(crate) mod cluster;
pub(crate) mod counted;
pub mod grpc_call;
pub(crate) mod grpc_stream;
pub mod h1_call;
pub(crate) mod h2conn;
pub(crate) mod lb;
pub(crate) mod original_dst;
pub(crate) mod outlier;
pub(crate) mod pool;
pub(crate) mod request;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustls::ClientConnection;

use crate::config::Cluster;
use crate::http::io::Io;
use crate::tls::{TlsStream, Transport};

/// Opens upstream connections. Production uses glommio TCP; tests use memory pipes.
pub trait Connector: 'static {
    type Conn: Io + 'static;
    #[allow(async_fn_in_trait)]
    async fn connect(&self, addr: SocketAddr, timeout: Duration) -> std::io::Result<Self::Conn>;

    /// A connection to an endpoint of `cluster`, with its transport socket (TLS when the
    /// cluster has `tls`; the handshake is part of the connect, within `timeout`).
    #[allow(async_fn_in_trait)]
    async fn connect_to(
        &self,
        _cluster: &Cluster,
        addr: SocketAddr,
        timeout: Duration,
    ) -> std::io::Result<Self::Conn> {
        self.connect(addr, timeout).await
    }
}

/// TCP connections on the current glommio executor, with TLS for clusters that have it.
pub struct TcpConnector;

impl Connector for TcpConnector {
    type Conn = Transport<crate::rt::net::TcpStream, ClientConnection>;

    async fn connect(&self, addr: SocketAddr, timeout: Duration) -> std::io::Result<Self::Conn> {
        tcp(addr, None, timeout).await.map(Transport::Plain)
    }

    async fn connect_to(
        &self,
        cluster: &Cluster,
        addr: SocketAddr,
        timeout: Duration,
    ) -> std::io::Result<Self::Conn> {
        let started = std::time::Instant::now();
        let s = tcp(addr, cluster.source_address, timeout).await?;
        if let Some(k) = &cluster.pool.tcp_keepalive {
            keepalive(&s, k)?;
        }
        let Some(tls) = cluster.tls_for(addr) else {
            return Ok(Transport::Plain(s));
        };
        let session = ClientConnection::new(tls.config.clone(), tls.server_name(addr))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // The handshake shares the connect timeout.
        let left = timeout.saturating_sub(started.elapsed());
        Io::set_read_timeout(&s, Some(left));
        Io::set_write_timeout(&s, Some(left));
        let mut t = TlsStream::new(s, session, &[]);
        if let Err(e) = t.handshake().await {
            tracing::debug!(upstream = %addr, error = %e, "upstream TLS handshake failed");
            return Err(e);
        }
        // Once per connection: the peer's SANs for the access log's upstream TLS
        // operators and an outbound Istio reporter's `destination_principal`.
        let info = crate::tls::TlsInfo::of(
            t.session(),
            tls.spec.sni.as_deref(),
            tls.local_uri_san.as_deref(),
        );
        t.set_info(info);
        Ok(Transport::Tls(Box::new(t)))
    }
}

// The glommio backend's errors convert into io::Error; the monoio backend's already are.
#[allow(clippy::useless_conversion)]
async fn tcp(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> std::io::Result<crate::rt::net::TcpStream> {
    let s = match source {
        None => crate::rt::net::TcpStream::connect_timeout(addr, timeout)
            .await
            .map_err(std::io::Error::from)?,
        Some(ip) => bound(addr, ip, timeout).await?,
    };
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Envoy's `upstream_connection_options.tcp_keepalive` on a connected socket:
/// SO_KEEPALIVE, and each TCP_KEEP* option the cluster sets (an unset one keeps the
/// kernel's default). As in Envoy, a socket that refuses an option is not used.
fn keepalive(
    s: &crate::rt::net::TcpStream,
    k: &crate::config::TcpKeepalive,
) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    let mut params = socket2::TcpKeepalive::new();
    if let Some(t) = k.time {
        params = params.with_time(Duration::from_secs(t.into()));
    }
    if let Some(i) = k.interval {
        params = params.with_interval(Duration::from_secs(i.into()));
    }
    if let Some(n) = k.probes {
        params = params.with_retries(n);
    }
    // SAFETY: the stream owns this socket and outlives the borrow, which ends here.
    let fd = unsafe { BorrowedFd::borrow_raw(s.as_raw_fd()) };
    socket2::SockRef::from(&fd).set_tcp_keepalive(&params)
}

/// Connects from a chosen source address (the cluster's `source_address`). The
/// runtime's connect creates its own socket, so this one is bound and connected without
/// blocking by hand, then handed to the runtime, whose zero-byte write completes once
/// the connect has (the kernel answers EAGAIN while it is in progress, the connect's
/// error if it failed).
#[allow(clippy::useless_conversion)]
async fn bound(
    addr: SocketAddr,
    source: IpAddr,
    timeout: Duration,
) -> std::io::Result<crate::rt::net::TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.bind(&SocketAddr::new(source, 0).into())?;
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let mut s = crate::rt::net::stream_from(sock)?;
    s.set_write_timeout(Some(timeout))
        .map_err(std::io::Error::from)?;
    futures_lite::AsyncWriteExt::write(&mut s, &[]).await?;
    // A connect that failed after the write completed leaves no peer.
    s.peer_addr().map_err(std::io::Error::from)?;
    s.set_write_timeout(None).map_err(std::io::Error::from)?;
    Ok(s)
}
