//! The upstream side: per-core cluster state (load balancer, connection pool, stats)
//! and the connector that opens upstream connections.

pub(crate) mod cluster;
pub(crate) mod h2conn;
pub(crate) mod lb;
pub(crate) mod pool;
pub(crate) mod request;

use std::net::SocketAddr;
use std::time::Duration;

use crate::http::io::Io;

/// Opens upstream connections. Production uses glommio TCP; tests use memory pipes.
pub trait Connector {
    type Conn: Io + 'static;
    #[allow(async_fn_in_trait)]
    async fn connect(&self, addr: SocketAddr, timeout: Duration) -> std::io::Result<Self::Conn>;
}

/// TCP connections on the current glommio executor.
pub struct TcpConnector;

impl Connector for TcpConnector {
    type Conn = glommio::net::TcpStream;

    async fn connect(&self, addr: SocketAddr, timeout: Duration) -> std::io::Result<Self::Conn> {
        let s = glommio::net::TcpStream::connect_timeout(addr, timeout)
            .await
            .map_err(std::io::Error::from)?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }
}
