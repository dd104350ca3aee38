//! Runtime-independent part of the keep-alive relay prototypes (included by each of
//! them with `#[path]`, so the three binaries share byte for byte the same HTTP logic
//! and differ only in how they move bytes): command line, CPU pinning, the end-of-head
//! scan and Content-Length framing.
//!
//! Deliberately minimal: requests and responses must be framed by Content-Length (or
//! have no body); `Transfer-Encoding` closes the connection. Heads must fit in one
//! buffer. Peer bytes are only read through iterators and `get`, never indexed.

#![allow(dead_code)]

use std::net::SocketAddr;

/// Bytes of each per-connection buffer (one for requests, one for responses).
pub const BUF_SIZE: usize = 16 * 1024;

/// Command line shared by every prototype: `--listen ADDR --upstream ADDR --cpu N`.
pub struct Args {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub cpu: usize,
    /// Extra `--key value` options a prototype may read (e.g. io_uring flags).
    pub extra: Vec<(String, String)>,
}

impl Args {
    pub fn parse() -> Result<Args, String> {
        let mut it = std::env::args().skip(1);
        let (mut listen, mut upstream, mut cpu, mut extra) = (None, None, None, Vec::new());
        while let Some(k) = it.next() {
            let v = it.next().ok_or_else(|| format!("{k}: missing value"))?;
            match k.as_str() {
                "--listen" => listen = Some(v.parse().map_err(|e| format!("--listen: {e}"))?),
                "--upstream" => upstream = Some(v.parse().map_err(|e| format!("--upstream: {e}"))?),
                "--cpu" => cpu = Some(v.parse().map_err(|e| format!("--cpu: {e}"))?),
                _ if k.starts_with("--") => extra.push((k[2..].to_string(), v)),
                _ => return Err(format!("unexpected argument {k}")),
            }
        }
        Ok(Args {
            listen: listen.ok_or("--listen ADDR is required")?,
            upstream: upstream.ok_or("--upstream ADDR is required")?,
            cpu: cpu.ok_or("--cpu N is required")?,
            extra,
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Pin the calling thread to one CPU (the glommio prototype lets glommio do it).
pub fn pin_to(cpu: usize) -> Result<(), String> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays in bounds for
    // cpu < CPU_SETSIZE, checked first.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(format!("cpu {cpu} out of range"));
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!(
                "sched_setaffinity({cpu}): {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Why a message could not be relayed; the connection is closed either way.
#[derive(Debug)]
pub enum Bad {
    HeadTooLarge,
    Framing,
}

/// Length of the head (through the blank line) if `buf` holds a complete one.
/// `from` is where the previous scan stopped (bytes before it held no end of head),
/// so a head arriving in pieces is scanned once.
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let tail = buf.get(start..)?;
    tail.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| start + i + 4)
}

/// Body length of a message whose head is `head`: the Content-Length value, 0 when
/// absent. Transfer-Encoding (chunked) is out of scope for the prototype.
pub fn body_len(head: &[u8]) -> Result<usize, Bad> {
    let mut len = None;
    // Skip the start line; then one header per CRLF-terminated line.
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or(&[]);
        if name.eq_ignore_ascii_case(b"content-length") {
            let v = parse_decimal(value).ok_or(Bad::Framing)?;
            if len.is_some_and(|l| l != v) {
                return Err(Bad::Framing);
            }
            len = Some(v);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(Bad::Framing);
        }
    }
    Ok(len.unwrap_or(0))
}

fn parse_decimal(v: &[u8]) -> Option<usize> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 15 {
        return None;
    }
    v.iter().try_fold(0usize, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + usize::from(b - b'0'))
    })
}

/// What to do with a buffer that holds `filled` bytes and a complete head of
/// `head` bytes: forward `send` bytes now, then relay `body_left` more bytes.
pub struct Framed {
    pub send: usize,
    pub body_left: usize,
    /// Bytes past the message (a pipelined next one) to keep after forwarding.
    pub keep: usize,
}

pub fn frame(buf: &[u8], filled: usize, head: usize) -> Result<Framed, Bad> {
    let total = head + body_len(buf.get(..head).ok_or(Bad::Framing)?)?;
    let send = filled.min(total);
    Ok(Framed {
        send,
        body_left: total - send,
        keep: filled - send,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_lengths() {
        let m = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET";
        assert_eq!(head_end(m, 0), Some(27));
        assert_eq!(head_end(&m[..20], 0), None);
        assert_eq!(head_end(m, 20), Some(27));
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nhello world\n";
        let h = head_end(r, 0).unwrap();
        let f = frame(r, r.len(), h).unwrap();
        assert_eq!((f.send, f.body_left, f.keep), (r.len(), 0, 0));
        let f = frame(r, h + 2, h).unwrap();
        assert_eq!((f.send, f.body_left, f.keep), (h + 2, 10, 0));
        assert!(body_len(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(body_len(b"X\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err());
    }
}

/// Heap allocations of the whole process (relay code and runtime), counted so the
/// harness can report allocations per request: `kill -USR1 PID` makes a reporter
/// thread print `allocs N` on stderr. The counter is one uncontended atomic add.
pub mod allocs {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicU64, Ordering};

    pub static COUNT: AtomicU64 = AtomicU64::new(0);

    pub struct Counting;

    // SAFETY: defers every call to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            COUNT.fetch_add(1, Ordering::Relaxed);
            System.alloc(l)
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            System.dealloc(p, l)
        }
        unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
            COUNT.fetch_add(1, Ordering::Relaxed);
            System.alloc_zeroed(l)
        }
        unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
            COUNT.fetch_add(1, Ordering::Relaxed);
            System.realloc(p, l, n)
        }
    }

    /// Call first thing in main, before any other thread exists: SIGUSR1 is blocked
    /// in every thread (they inherit the mask) and taken by a sleeping reporter
    /// thread with sigwait, so the event loop is never interrupted.
    pub fn report_on_sigusr1() {
        // SAFETY: sigset manipulation on local values; pthread_sigmask on this thread.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            set
        };
        let _ = std::thread::Builder::new()
            .name("allocs".into())
            .spawn(move || loop {
                let mut sig = 0;
                // SAFETY: `set` is a valid signal set; sig is a valid out pointer.
                if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                    eprintln!("allocs {}", COUNT.load(Ordering::Relaxed));
                }
            });
    }
}
