//! What the proxy process holds open, from /proc (Linux): which loopback TCP socket has
//! given addresses, and on how many of the process's descriptors it sits. Tunnels split
//! one stream per side, so each of their sockets must sit on exactly one.

#![allow(dead_code)]

use std::net::SocketAddr;

/// The inode of the loopback IPv4 TCP socket whose remote address is `remote` (and
/// local address `local`, if given), from /proc/net/tcp. Addresses there are the
/// native-endian hex of the network-order word, ports plain hex.
pub fn tcp_inode(local: Option<SocketAddr>, remote: SocketAddr) -> Option<String> {
    let parse = |field: &str| -> Option<SocketAddr> {
        let (ip, port) = field.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?.to_ne_bytes();
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(SocketAddr::from((ip, port)))
    };
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (l, r) = (parse(f.get(1)?)?, parse(f.get(2)?)?);
        // Inode 0: a connection that no descriptor holds any more (TIME_WAIT), maybe an
        // earlier test's to the same port; never the one asked for.
        let inode = f.get(9).filter(|i| **i != "0")?;
        if r == remote && local.is_none_or(|a| a == l) {
            Some(inode.to_string())
        } else {
            None
        }
    })
}

/// How many of process `pid`'s descriptors refer to the socket with this inode.
pub fn descriptors_of(pid: u32, inode: &str) -> usize {
    let want = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == want.as_str()))
        .count()
}
