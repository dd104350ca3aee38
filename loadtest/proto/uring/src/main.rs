//! Runtime prototype (b): the keep-alive HTTP/1.1 relay loop directly on the
//! `io-uring` crate, no async runtime. One thread, one ring, one `io_uring_enter`
//! per loop turn (submit what the previous turn queued and wait for a completion).
//!
//! - Ring setup (`--taskrun`): `defer` (default) = SINGLE_ISSUER + DEFER_TASKRUN:
//!   completions run as task work only inside our own `io_uring_enter`, no IPIs;
//!   `coop` = SINGLE_ISSUER + COOP_TASKRUN (+TASKRUN_FLAG); `none` = plain ring.
//! - Receives (`--recv`): `multishot` (default) = one RECV_MULTISHOT per socket with
//!   a provided buffer ring, re-armed only when the kernel ends it; the bytes are
//!   copied into the connection's buffer and the provided buffer is returned at once.
//!   `oneshot` = one IORING_OP_RECV into the connection's buffer per read.
//!   `--poll-first 1` sets IORING_RECVSEND_POLL_FIRST on oneshot receives.
//! - Sends: IORING_OP_SEND from the connection's buffer.
//! - Sockets: every connection's two sockets sit in the registered file table
//!   (IOSQE_FIXED_FILE), so no fget/fput per op. Accept is one ACCEPT_MULTISHOT;
//!   the upstream connect is an IORING_OP_CONNECT.
//!
//! The HTTP logic (end of head, Content-Length framing, keep-alive both sides) is
//! `common/relay.rs`, as in the glommio and monoio prototypes; the per-connection
//! steps below are those of their `relay_message`, written as a state machine.

#[path = "../../common/relay.rs"]
mod relay;

#[global_allocator]
static ALLOC: relay::allocs::Counting = relay::allocs::Counting;

use io_uring::{cqueue, opcode, squeue, types, IoUring, SubmissionQueue, Submitter};
use relay::{Args, BUF_SIZE};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};

const MAX_CONNS: usize = 4096;
const RING_ENTRIES: u32 = 4096;
/// Provided-buffer ring (multishot receives): count (power of two) and size.
const PBUF_COUNT: u16 = 1024;
const PBUF_SIZE: usize = 4096;
const BGID: u16 = 0;

// user_data = op | slot << 8 | generation << 32; a stale generation is ignored.
const OP_ACCEPT: u64 = 1;
const OP_CONNECT: u64 = 2;
const OP_RECV_DOWN: u64 = 3;
const OP_RECV_UP: u64 = 4;
const OP_SEND_DOWN: u64 = 5;
const OP_SEND_UP: u64 = 6;

fn ud(op: u64, slot: usize, gen: u32) -> u64 {
    op | (slot as u64) << 8 | u64::from(gen) << 32
}

#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Req,
    Resp,
}

#[derive(Clone, Copy)]
enum Phase {
    /// Waiting for bytes until the buffer holds a complete head.
    Head,
    /// A send of `buf[at..end]` is in flight; then `body_left` more bytes to relay.
    Send {
        at: usize,
        end: usize,
        body_left: usize,
    },
    /// Relaying the rest of a body.
    Body { left: usize },
}

/// One direction's buffer: bytes read from its source and not yet forwarded.
struct Half {
    buf: Box<[u8]>,
    filled: usize,
    scanned: usize,
}

struct Conn {
    live: bool,
    gen: u32,
    down: RawFd,
    up: RawFd,
    dir: Dir,
    phase: Phase,
    req: Half,
    resp: Half,
    /// Oneshot mode: a receive is in flight for the current direction.
    recv_armed: bool,
    /// Multishot mode: a peer closed; close once the bytes already here are relayed
    /// (a response followed by the upstream's FIN arrives in one batch).
    eof: bool,
}

impl Conn {
    fn half(&mut self, d: Dir) -> &mut Half {
        match d {
            Dir::Req => &mut self.req,
            Dir::Resp => &mut self.resp,
        }
    }
}

/// Fixed-file indexes: downstream 2*slot, upstream 2*slot+1.
fn fixed(slot: usize, d: Dir, src: bool) -> types::Fixed {
    let down = (d == Dir::Req) == src;
    types::Fixed((2 * slot + usize::from(!down)) as u32)
}

struct BufRing {
    entries: *mut types::BufRingEntry,
    bufs: *mut u8,
    tail: u16,
}

impl BufRing {
    fn new(submitter: &Submitter<'_>) -> io::Result<BufRing> {
        let ring_layout = std::alloc::Layout::from_size_align(
            usize::from(PBUF_COUNT) * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        let buf_layout =
            std::alloc::Layout::from_size_align(usize::from(PBUF_COUNT) * PBUF_SIZE, 4096)
                .map_err(io::Error::other)?;
        // SAFETY: non-zero sizes; the memory lives for the whole process (never freed).
        let (entries, bufs) = unsafe {
            (
                std::alloc::alloc_zeroed(ring_layout) as *mut types::BufRingEntry,
                std::alloc::alloc_zeroed(buf_layout),
            )
        };
        if entries.is_null() || bufs.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        // SAFETY: `entries` is a page-aligned array of PBUF_COUNT entries that outlives the ring.
        unsafe { submitter.register_buf_ring_with_flags(entries as u64, PBUF_COUNT, BGID, 0)? };
        let mut r = BufRing {
            entries,
            bufs,
            tail: 0,
        };
        for bid in 0..PBUF_COUNT {
            r.push(bid);
        }
        r.publish();
        Ok(r)
    }

    /// Queue buffer `bid` for the kernel again (visible after `publish`).
    fn push(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (PBUF_COUNT - 1));
        // SAFETY: idx < PBUF_COUNT; bid < PBUF_COUNT so the buffer is in bounds.
        unsafe {
            let e = &mut *self.entries.add(idx);
            e.set_addr(self.bufs.add(usize::from(bid) * PBUF_SIZE) as u64);
            e.set_len(PBUF_SIZE as u32);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives in the ring memory shared with the kernel.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn data(&self, bid: u16, len: usize) -> &[u8] {
        // SAFETY: bid < PBUF_COUNT (checked by caller), len <= PBUF_SIZE; the kernel
        // wrote these bytes and hands the buffer to us until we push it back.
        unsafe {
            std::slice::from_raw_parts(
                self.bufs.add(usize::from(bid) * PBUF_SIZE),
                len.min(PBUF_SIZE),
            )
        }
    }
}

struct Proxy {
    conns: Vec<Conn>,
    free: Vec<usize>,
    upstream: libc::sockaddr_in,
    listener: RawFd,
    multishot: bool,
    /// Oneshot receives with IORING_RECVSEND_POLL_FIRST: skip the first try, which
    /// finds nothing when the peer has not answered yet.
    poll_first: bool,
    pbufs: Option<BufRing>,
}

fn main() {
    relay::allocs::report_on_sigusr1();
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("proto-uring: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("proto-uring: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> io::Result<()> {
    relay::pin_to(args.cpu).map_err(io::Error::other)?;
    let multishot = match args.get("recv").unwrap_or("multishot") {
        "multishot" => true,
        "oneshot" => false,
        o => {
            return Err(io::Error::other(format!(
                "--recv {o}: expected multishot or oneshot"
            )))
        }
    };
    let mut b = IoUring::builder();
    match args.get("taskrun").unwrap_or("defer") {
        "defer" => b.setup_single_issuer().setup_defer_taskrun(),
        "coop" => b
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_taskrun_flag(),
        "none" => &mut b,
        o => {
            return Err(io::Error::other(format!(
                "--taskrun {o}: expected defer, coop or none"
            )))
        }
    };
    let mut ring: IoUring = b.build(RING_ENTRIES)?;
    let (submitter, mut sq, mut cq) = ring.split();
    submitter.register_files_sparse(2 * MAX_CONNS as u32)?;
    let pbufs = if multishot {
        Some(BufRing::new(&submitter)?)
    } else {
        None
    };

    let lfd = listen_reuseport(args.listen)?;
    let std::net::SocketAddr::V4(up) = args.upstream else {
        return Err(io::Error::other("--upstream must be an IPv4 address"));
    };
    let upstream = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: up.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*up.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut p = Proxy {
        conns: (0..MAX_CONNS)
            .map(|_| Conn {
                live: false,
                gen: 0,
                down: -1,
                up: -1,
                dir: Dir::Req,
                phase: Phase::Head,
                req: Half {
                    buf: Box::default(),
                    filled: 0,
                    scanned: 0,
                },
                resp: Half {
                    buf: Box::default(),
                    filled: 0,
                    scanned: 0,
                },
                recv_armed: false,
                eof: false,
            })
            .collect(),
        free: (0..MAX_CONNS).rev().collect(),
        upstream,
        listener: lfd,
        multishot,
        poll_first: args.get("poll-first") == Some("1"),
        pbufs,
    };
    eprintln!(
        "proto-uring listening on {}, upstream {}, recv {}, taskrun {}",
        args.listen,
        args.upstream,
        if multishot { "multishot" } else { "oneshot" },
        args.get("taskrun").unwrap_or("defer")
    );
    push(
        &submitter,
        &mut sq,
        opcode::AcceptMulti::new(types::Fd(lfd))
            .build()
            .user_data(OP_ACCEPT),
    );
    // Completions of one turn, copied out so handling them can queue new SQEs.
    let mut batch: Vec<(u64, i32, u32)> = Vec::with_capacity(RING_ENTRIES as usize * 2);
    loop {
        sq.sync();
        match submitter.submit_and_wait(1) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) => {}
            Err(e) => return Err(e),
        }
        cq.sync();
        batch.clear();
        batch.extend((&mut cq).map(|c| (c.user_data(), c.result(), c.flags())));
        for &(data, res, flags) in &batch {
            p.complete(&submitter, &mut sq, data, res, flags);
        }
        if let Some(r) = &p.pbufs {
            r.publish();
        }
    }
}

fn listen_reuseport(addr: std::net::SocketAddr) -> io::Result<RawFd> {
    let std::net::SocketAddr::V4(a) = addr else {
        return Err(io::Error::other("--listen must be an IPv4 address"));
    };
    // SAFETY: plain socket calls on a descriptor we own; sockaddr_in is fully initialised.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            libc::setsockopt(fd, libc::SOL_SOCKET, opt, &one as *const _ as *const _, 4);
        }
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        if libc::bind(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of_val(&sa) as u32,
        ) != 0
            || libc::listen(fd, 1024) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }
}

fn nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own with a valid int option.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const _,
            4,
        )
    };
}

/// Queue one SQE; if the queue is full, submit what is queued first (rare: the ring
/// is sized for every connection's ops of one turn).
fn push(submitter: &Submitter<'_>, sq: &mut SubmissionQueue<'_>, e: squeue::Entry) {
    // SAFETY: every buffer and sockaddr an entry points to lives in `Proxy` (or the
    // provided-buffer ring) until its completion or until the socket is shut down.
    while unsafe { sq.push(&e) }.is_err() {
        sq.sync();
        let _ = submitter.submit();
        sq.sync();
    }
}

impl Proxy {
    fn complete(
        &mut self,
        s: &Submitter<'_>,
        sq: &mut SubmissionQueue<'_>,
        data: u64,
        res: i32,
        flags: u32,
    ) {
        let op = data & 0xff;
        let slot = ((data >> 8) & 0xff_ffff) as usize;
        let gen = (data >> 32) as u32;
        // A multishot receive's buffer goes back to the ring whatever happens below.
        let mut bid = None;
        if let (Some(b), true) = (
            cqueue::buffer_select(flags),
            op == OP_RECV_DOWN || op == OP_RECV_UP,
        ) {
            bid = Some(b);
        }
        if op == OP_ACCEPT {
            if !cqueue::more(flags) {
                push(
                    s,
                    sq,
                    opcode::AcceptMulti::new(types::Fd(self.listener))
                        .build()
                        .user_data(OP_ACCEPT),
                );
            }
            if res >= 0 {
                self.accepted(s, sq, res);
            }
            return;
        }
        let live = self.conns.get(slot).is_some_and(|c| c.live && c.gen == gen);
        if live {
            match op {
                OP_CONNECT if res < 0 => self.close(s, slot),
                OP_CONNECT => self.start(s, sq, slot),
                OP_RECV_DOWN | OP_RECV_UP => {
                    let d = if op == OP_RECV_DOWN {
                        Dir::Req
                    } else {
                        Dir::Resp
                    };
                    self.received(s, sq, slot, d, res, bid, cqueue::more(flags));
                }
                OP_SEND_DOWN | OP_SEND_UP => self.sent(s, sq, slot, res),
                _ => {}
            }
        }
        if let (Some(b), Some(r)) = (bid, self.pbufs.as_mut()) {
            if b < PBUF_COUNT {
                r.push(b);
            }
        }
    }

    fn accepted(&mut self, s: &Submitter<'_>, sq: &mut SubmissionQueue<'_>, down: RawFd) {
        // SAFETY: plain socket call; the descriptor is ours.
        let up = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        let Some(slot) = self.free.pop().filter(|_| up >= 0) else {
            // SAFETY: closing descriptors we own.
            unsafe {
                libc::close(down);
                if up >= 0 {
                    libc::close(up);
                }
            }
            return;
        };
        nodelay(down);
        nodelay(up);
        if s.register_files_update(2 * slot as u32, &[down, up])
            .is_err()
        {
            // SAFETY: closing descriptors we own.
            unsafe {
                libc::close(down);
                libc::close(up);
            }
            self.free.push(slot);
            return;
        }
        let c = &mut self.conns[slot];
        c.live = true;
        c.gen = c.gen.wrapping_add(1);
        c.down = down;
        c.up = up;
        c.dir = Dir::Req;
        c.phase = Phase::Head;
        c.recv_armed = false;
        c.eof = false;
        for h in [&mut c.req, &mut c.resp] {
            if h.buf.is_empty() {
                h.buf = vec![0u8; BUF_SIZE].into_boxed_slice(); // once per slot, kept
            }
            h.filled = 0;
            h.scanned = 0;
        }
        let e = opcode::Connect::new(
            types::Fixed(2 * slot as u32 + 1),
            &self.upstream as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        push(s, sq, e.build().user_data(ud(OP_CONNECT, slot, c.gen)));
    }

    /// Upstream connected: arm the receives and wait for the first request.
    fn start(&mut self, s: &Submitter<'_>, sq: &mut SubmissionQueue<'_>, slot: usize) {
        if self.multishot {
            let gen = self.conns[slot].gen;
            for (op, d) in [(OP_RECV_DOWN, Dir::Req), (OP_RECV_UP, Dir::Resp)] {
                let e = opcode::RecvMulti::new(fixed(slot, d, true), BGID).build();
                push(s, sq, e.user_data(ud(op, slot, gen)));
            }
        }
        self.advance(s, sq, slot);
    }

    #[allow(clippy::too_many_arguments)]
    fn received(
        &mut self,
        s: &Submitter<'_>,
        sq: &mut SubmissionQueue<'_>,
        slot: usize,
        d: Dir,
        res: i32,
        bid: Option<u16>,
        more: bool,
    ) {
        let multishot = self.multishot;
        if res == -libc::ENOBUFS && multishot {
            // The provided ring ran dry; buffers are returned this turn: re-arm.
            let c = &self.conns[slot];
            let op = if d == Dir::Req {
                OP_RECV_DOWN
            } else {
                OP_RECV_UP
            };
            let e = opcode::RecvMulti::new(fixed(slot, d, true), BGID).build();
            push(s, sq, e.user_data(ud(op, slot, c.gen)));
            return;
        }
        if res == 0 && multishot {
            // EOF: finish relaying what is already buffered (advance() closes when
            // it would have to wait for more bytes).
            let c = &mut self.conns[slot];
            c.eof = true;
            if !matches!(c.phase, Phase::Send { .. }) {
                self.advance(s, sq, slot);
            }
            return;
        }
        if res <= 0 {
            // EOF or error: a clean close only between requests, either way we close.
            self.close(s, slot);
            return;
        }
        let n = res as usize;
        let c = &mut self.conns[slot];
        if multishot {
            let (Some(b), Some(r)) = (bid, self.pbufs.as_ref()) else {
                self.close(s, slot);
                return;
            };
            let h = c.half(d);
            let Some(dst) = h.buf.get_mut(h.filled..h.filled + n) else {
                self.close(s, slot); // more unforwarded bytes than the buffer holds
                return;
            };
            dst.copy_from_slice(r.data(b, n));
            h.filled += n;
            if !more {
                let op = if d == Dir::Req {
                    OP_RECV_DOWN
                } else {
                    OP_RECV_UP
                };
                let e = opcode::RecvMulti::new(fixed(slot, d, true), BGID).build();
                push(s, sq, e.user_data(ud(op, slot, c.gen)));
            }
            if d != c.dir || matches!(c.phase, Phase::Send { .. }) {
                return; // kept for later (pipelined bytes, or a send is in flight)
            }
        } else {
            c.recv_armed = false;
            c.half(d).filled += n;
        }
        self.advance(s, sq, slot);
    }

    fn sent(&mut self, s: &Submitter<'_>, sq: &mut SubmissionQueue<'_>, slot: usize, res: i32) {
        if res <= 0 {
            self.close(s, slot);
            return;
        }
        let c = &mut self.conns[slot];
        let Phase::Send { at, end, body_left } = c.phase else {
            self.close(s, slot);
            return;
        };
        let at = at + res as usize;
        if at < end {
            c.phase = Phase::Send { at, end, body_left };
            self.send(s, sq, slot);
            return;
        }
        let d = c.dir;
        let h = c.half(d);
        h.buf.copy_within(end..h.filled, 0);
        h.filled -= end;
        h.scanned = 0;
        if body_left > 0 {
            c.phase = Phase::Body { left: body_left };
        } else {
            // Message done: the other direction's turn (response, or the next request).
            c.dir = if d == Dir::Req { Dir::Resp } else { Dir::Req };
            c.phase = Phase::Head;
        }
        self.advance(s, sq, slot);
    }

    /// Move the current direction forward with the bytes buffered so far: start a
    /// send, or wait for more bytes (oneshot: queue a receive).
    fn advance(&mut self, s: &Submitter<'_>, sq: &mut SubmissionQueue<'_>, slot: usize) {
        let c = &mut self.conns[slot];
        let d = c.dir;
        let phase = c.phase;
        let h = c.half(d);
        match phase {
            Phase::Head => {
                let Some(head) = relay::head_end(h.buf.get(..h.filled).unwrap_or(&[]), h.scanned)
                else {
                    h.scanned = h.filled;
                    if h.filled >= BUF_SIZE {
                        self.close(s, slot); // head too large
                    } else {
                        self.want(s, sq, slot, BUF_SIZE);
                    }
                    return;
                };
                let Ok(f) = relay::frame(&h.buf, h.filled, head) else {
                    self.close(s, slot);
                    return;
                };
                c.phase = Phase::Send {
                    at: 0,
                    end: f.send,
                    body_left: f.body_left,
                };
                self.send(s, sq, slot);
            }
            Phase::Body { left } if h.filled > 0 => {
                let n = h.filled.min(left);
                c.phase = Phase::Send {
                    at: 0,
                    end: n,
                    body_left: left - n,
                };
                self.send(s, sq, slot);
            }
            Phase::Body { left } => self.want(s, sq, slot, left),
            Phase::Send { .. } => {}
        }
    }

    /// More bytes are needed from the current direction's source (at most `limit`).
    fn want(&mut self, s: &Submitter<'_>, sq: &mut SubmissionQueue<'_>, slot: usize, limit: usize) {
        if self.conns[slot].eof {
            self.close(s, slot); // a peer closed and nothing more can come
            return;
        }
        if self.multishot {
            return; // the multishot receive delivers them when they come
        }
        let c = &mut self.conns[slot];
        if c.recv_armed {
            return;
        }
        c.recv_armed = true;
        let d = c.dir;
        let gen = c.gen;
        let h = c.half(d);
        let room = (BUF_SIZE - h.filled).min(limit);
        // SAFETY (pointer): filled < BUF_SIZE here, so the range is inside the buffer,
        // which lives (boxed, never moved or freed) as long as the slot.
        let ptr = unsafe { h.buf.as_mut_ptr().add(h.filled) };
        let op = if d == Dir::Req {
            OP_RECV_DOWN
        } else {
            OP_RECV_UP
        };
        let ioprio = if self.poll_first {
            1 /* IORING_RECVSEND_POLL_FIRST */
        } else {
            0
        };
        let e = opcode::Recv::new(fixed(slot, d, true), ptr, room as u32)
            .ioprio(ioprio)
            .build();
        push(s, sq, e.user_data(ud(op, slot, gen)));
    }

    fn send(&mut self, s: &Submitter<'_>, sq: &mut SubmissionQueue<'_>, slot: usize) {
        let c = &mut self.conns[slot];
        let Phase::Send { at, end, .. } = c.phase else {
            return;
        };
        let d = c.dir;
        let gen = c.gen;
        let h = c.half(d);
        // SAFETY (pointer): at < end <= filled <= BUF_SIZE; the buffer outlives the op.
        let ptr = unsafe { h.buf.as_ptr().add(at) };
        let op = if d == Dir::Req {
            OP_SEND_UP
        } else {
            OP_SEND_DOWN
        };
        let e = opcode::Send::new(fixed(slot, d, false), ptr, (end - at) as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        push(s, sq, e.user_data(ud(op, slot, gen)));
    }

    /// Close both sockets. shutdown() first: it ends any receive still armed on them
    /// (their completions then carry a stale generation and are ignored).
    fn close(&mut self, s: &Submitter<'_>, slot: usize) {
        let c = &mut self.conns[slot];
        if !c.live {
            return;
        }
        c.live = false;
        // SAFETY: descriptors owned by this slot.
        unsafe {
            libc::shutdown(c.down, libc::SHUT_RDWR);
            libc::shutdown(c.up, libc::SHUT_RDWR);
            libc::close(c.down);
            libc::close(c.up);
        }
        let _ = s.register_files_update(2 * slot as u32, &[-1, -1]);
        self.free.push(slot);
    }
}
