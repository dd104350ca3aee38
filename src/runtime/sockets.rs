//! Listener sockets: one SO_REUSEPORT socket per worker per listener, bound by the
//! control side so a taken port is a clear error before any worker starts (and on
//! reload, a refused config rather than a dead listener).

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Binds one listening socket for `addr` with SO_REUSEPORT.
pub fn bind_reuseport(addr: SocketAddr, backlog: u32) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(s)
}

/// Binds `count` sockets for one listener, or explains which address could not be bound.
pub fn bind_group(
    name: &str,
    addr: SocketAddr,
    backlog: u32,
    count: usize,
) -> Result<Vec<Socket>, String> {
    (0..count)
        .map(|_| {
            bind_reuseport(addr, backlog)
                .map_err(|e| format!("listener `{name}`: cannot bind {addr}: {e}"))
        })
        .collect()
}

/// Binds a plain (not shared) socket, for the admin server.
pub fn bind_single(addr: SocketAddr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuseport_group_binds_and_conflicts_are_reported() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = first.local_addr().unwrap().as_socket().unwrap();
        assert_eq!(bind_group("l", addr, 16, 2).unwrap().len(), 2);
        let plain = bind_single("127.0.0.1:0".parse().unwrap()).unwrap();
        let taken = plain.local_addr().unwrap().as_socket().unwrap();
        let err = bind_group("l", taken, 16, 1).unwrap_err();
        assert!(err.contains("cannot bind"), "{err}");
    }
}
