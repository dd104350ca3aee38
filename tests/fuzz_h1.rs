//! Fuzzing of the HTTP/1 codec on the stable toolchain: a self-contained mutation driver
//! over the exact functions production runs (`h1::request::parse`,
//! `h1::response::parse`, `h1::chunked::ChunkedDecoder`, `h1::encode`).
//!
//! Each target mutates a seed corpus of valid and tricky messages with a seeded
//! xorshift PRNG and checks invariants beyond "no panic" (see each target). The default
//! pass is short (20k inputs per target); for long runs see `docs/fuzzing.md`:
//!
//! ```text
//! FUZZ_ITERS=1000000 [FUZZ_SEED=N] cargo test --release --test fuzz_h1 -- --nocapture
//! FUZZ_INPUT=<hex> cargo test --test fuzz_h1      # replay one input on every target
//! ```
//!
//! A failure prints the seed, the iteration and the input in hex.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use outrigger::config::Limits;
use outrigger::http::filter::headers::Edits;
use outrigger::http::h1::chunked::{ChunkError, ChunkedDecoder, Piece};
use outrigger::http::h1::encode::{self, DownstreamResponse, Forward, UpstreamRequest};
use outrigger::http::h1::head::BodyKind;
use outrigger::http::h1::request;
use outrigger::http::h1::response::{self, Asked, Kind};

const DEFAULT_ITERS: u64 = 20_000;
/// The default pass is deterministic; set `FUZZ_SEED` to explore elsewhere.
const DEFAULT_SEED: u64 = 0x6f75_7472_6967_6772; // "outriggr"

// ---- The driver ----

/// xorshift64*: small, fast, and reproducible from one u64.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Never zero (xorshift's fixed point); splitmix the seed so near seeds differ.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bytes that sit on parser decision points.
const INTERESTING: &[u8] = &[
    0x00, b'\r', b'\n', b':', b' ', b'\t', 0x80, 0xC3, 0xFF, 0x7F, b';', b',', b'0', b'9', b'a',
    b'f', b'F', b'/', b'?', b'@', b'"', b'=',
];

/// Fragments worth inserting whole.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Host: ",
    b"Connection: close",
    b"Connection: upgrade",
    b"Upgrade: websocket",
    b"Expect: 100-continue",
    b"\xc3\xa9",
    b"99999999999999999999",
    b"18446744073709551616",
    b"ffffffffffffffff",
    b"10000000000000000",
    b";ext=1",
    b"HTTP/1.0",
    b"HTTP/1.1",
    b"CONNECT ",
    b"http://",
    b"0\r\n\r\n",
    b" ",
];

fn mutate(rng: &mut Rng, corpus: &[&[u8]], input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(10) {
            // Flip one bit.
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            // Insert an interesting byte.
            1 => {
                let b = *rng.pick(INTERESTING);
                input.insert(rng.below(len + 1), b);
            }
            // Replace a byte with an interesting or random one.
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = if rng.chance(2) {
                    *rng.pick(INTERESTING)
                } else {
                    rng.next() as u8
                };
            }
            // Delete a run of bytes.
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(8));
                input.drain(i..i + n);
            }
            // Splice: the head of this input, the tail of another corpus entry.
            4 => {
                let other = rng.pick(corpus);
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            // Truncate.
            5 if len > 0 => input.truncate(rng.below(len)),
            // Duplicate a line (CRLF or LF terminated) in place.
            6 => {
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(
                        input
                            .iter()
                            .enumerate()
                            .filter(|(_, &b)| b == b'\n')
                            .map(|(i, _)| i + 1),
                    )
                    .filter(|&i| i < len)
                    .collect();
                if starts.is_empty() {
                    continue;
                }
                let s = *rng.pick(&starts);
                let e = input[s..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(len, |p| s + p + 1);
                let line = input[s..e].to_vec();
                input.splice(e..e, line);
            }
            // Insert a token.
            7 | 8 => {
                let t = rng.pick(TOKENS);
                let at = rng.below(len + 1);
                input.splice(at..at, t.iter().copied());
            }
            // Append another whole corpus entry (pipelining, chunk after chunk).
            _ => {
                let entry = rng.pick::<&[u8]>(corpus);
                input.extend_from_slice(entry)
            }
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("FUZZ_INPUT is hex"))
        .collect()
}

/// Runs `check` on the corpus, then on `FUZZ_ITERS` mutated inputs. `check` returns a
/// label for the outcome (counted and printed); a panic inside it fails the test with
/// everything needed to reproduce it.
fn drive(name: &str, salt: u64, corpus: &[&[u8]], mut check: impl FnMut(&[u8]) -> &'static str) {
    let seed = env_u64("FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let iters = env_u64("FUZZ_ITERS").unwrap_or(DEFAULT_ITERS);
    let mut run_one = |iteration: u64, input: &[u8], counts: &mut Vec<(&'static str, u64)>| {
        match catch_unwind(AssertUnwindSafe(|| check(input))) {
            Ok(label) => match counts.iter_mut().find(|(l, _)| *l == label) {
                Some((_, n)) => *n += 1,
                None => counts.push((label, 1)),
            },
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| e.downcast_ref::<&str>().copied())
                    .unwrap_or("(non-string panic)");
                panic!(
                    "fuzz target `{name}` failed: {msg}\n  FUZZ_SEED={seed:#x} iteration={iteration}\n  \
                     input ({} bytes): {:?}\n  replay: FUZZ_INPUT={} cargo test --test fuzz_h1",
                    input.len(),
                    String::from_utf8_lossy(input),
                    hex(input)
                );
            }
        }
    };
    let mut counts = Vec::new();
    if let Ok(h) = std::env::var("FUZZ_INPUT") {
        run_one(0, &unhex(&h), &mut counts);
        return;
    }
    let started = Instant::now();
    for (i, c) in corpus.iter().enumerate() {
        run_one(i as u64, c, &mut counts);
    }
    let mut rng = Rng::new(seed ^ salt);
    let mut input = Vec::new();
    for i in 0..iters {
        input.clear();
        let entry = rng.pick::<&[u8]>(corpus);
        input.extend_from_slice(entry);
        mutate(&mut rng, corpus, &mut input);
        run_one(i, &input, &mut counts);
    }
    counts.sort();
    println!(
        "fuzz {name}: {} inputs ({} corpus + {iters} mutated, FUZZ_SEED={seed:#x}) in {:.2?}: {counts:?}",
        corpus.len() as u64 + iters,
        corpus.len(),
        started.elapsed(),
    );
    // The corpus must reach both sides of the parser, or the pass proves little.
    let accepted: u64 = counts
        .iter()
        .filter(|(l, _)| l.starts_with("ok"))
        .map(|(_, n)| n)
        .sum();
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    assert!(
        accepted * 50 > total && accepted < total,
        "{name}: {accepted} of {total} accepted; the corpus needs variety"
    );
}

// ---- (a) The request-head parser ----

const REQUESTS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /api/items?id=7 HTTP/1.1\r\nHost: svc.local\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n",
    b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: b\r\n\r\n",
    b"GET http://example.com:8080/x?y HTTP/1.1\r\nHost: ignored\r\n\r\n",
    b"GET https://Example.COM HTTP/1.1\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET /p HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n",
    b"GET abcdef\xc3\xa9x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\nX-Obs: \x80\xff\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Nul: a\x00b\r\nX-Cr: a\rb\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n  b\r\n\r\n",
    b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
];

/// Generous limits for re-parsing what the encoder wrote (it adds headers).
const WIDE: Limits = Limits {
    max_request_line_bytes: 1 << 20,
    max_header_bytes: 1 << 20,
    max_headers: 256,
};

/// Small limits, so the 414/431 boundaries are reached by short inputs.
const TINY: Limits = Limits {
    max_request_line_bytes: 40,
    max_header_bytes: 80,
    max_headers: 4,
};

/// Invariants: never a panic; an accepted head fits in the input and ends with a line
/// end; every strict prefix of it is incomplete (the result does not depend on how the
/// bytes arrive); a proxied head re-encoded by `h1::encode` parses again to the same
/// method, path and body framing.
fn check_request(data: &[u8], limits: &Limits, cut: usize) -> &'static str {
    let mut slots = request::header_slots();
    let head = match request::parse(data, limits, &mut slots) {
        Ok(None) => return "incomplete",
        Err(_) => return "rejected",
        Ok(Some(h)) => h,
    };
    assert!(head.head_len <= data.len(), "head_len beyond the input");
    assert!(data[..head.head_len].ends_with(b"\r\n"));
    assert!(
        data[..head.head_len]
            .iter()
            .enumerate()
            .all(|(i, &b)| b != b'\n' || (i > 0 && data[i - 1] == b'\r')),
        "bare LF in an accepted request head"
    );
    assert!(!head.method.is_empty());
    assert!(
        head.is_connect() || head.path.starts_with('/') || head.path == "*",
        "path {:?}",
        head.path
    );
    if head.framing.body == BodyKind::Chunked {
        assert!(head.minor >= 1, "chunked in HTTP/1.0");
    }
    if let Some(u) = head.upgrade() {
        assert!(head.framing.connection_upgrade && !u.is_empty());
    }
    let k = cut % head.head_len;
    let mut s2 = request::header_slots();
    assert!(
        matches!(request::parse(&data[..k], limits, &mut s2), Ok(None)),
        "the {k}-byte prefix of an accepted {}-byte head is not incomplete",
        head.head_len
    );
    if head.is_connect() {
        return "ok connect";
    }
    if head.authority.is_empty() {
        // An HTTP/1.0 request without Host goes upstream as HTTP/1.1 without Host;
        // that re-parse fails by design of the check (noted in docs/fuzzing.md).
        return "ok no-host";
    }
    let mut out = Vec::new();
    encode::write_request(
        &mut out,
        &UpstreamRequest {
            method: head.method,
            path: head.path,
            authority: head.target_authority,
            headers: head.headers,
            has_connection_header: head.framing.has_connection_header,
            forward: Forward::append(b"10.1.2.3"),
            edits: Edits::none(),
            upgrade: None,
            original_path: None,
            original_host: None,
        },
    );
    let mut s3 = request::header_slots();
    let again = match request::parse(&out, &WIDE, &mut s3) {
        Ok(Some(a)) => a,
        other => panic!(
            "the re-encoded head does not parse ({other:?}): {:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(again.head_len, out.len());
    assert_eq!(
        (again.method, again.path, again.framing.body),
        (head.method, head.path, head.framing.body),
        "re-encoded: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(again.authority, head.authority);
    "ok"
}

#[test]
fn fuzz_request_parser() {
    let mut cut = Rng::new(1);
    drive("request", 0xa, REQUESTS, |data| {
        let c = cut.next() as usize;
        // Half the inputs against small limits, to reach the 414/431 edges.
        let limits = if c & 1 == 0 { Limits::default() } else { TINY };
        check_request(data, &limits, c >> 1)
    });
}

// ---- (b) The response-head parser ----

const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nbody until close",
    b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n\r\n",
    b"HTTP/1.1 999 Weird\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 \xc3\xa9\x80\r\nX-Obs: \xff\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    b"HTLP/1.1 OK 200\r\n\r\n",
];

/// Invariants: never a panic; the head fits in the input; strict prefixes are
/// incomplete; a 101 only when the proxy asked for an upgrade; HEAD, 204 and 304 have
/// no body; a final head re-encoded by `h1::encode` parses again to the same status
/// and an equivalent body framing.
fn check_response(data: &[u8], asked: Asked, cut: usize) -> &'static str {
    let mut slots = response::header_slots();
    let head = match response::parse(data, asked, &mut slots) {
        Ok(None) => return "incomplete",
        Err(_) => return "rejected",
        Ok(Some(h)) => h,
    };
    assert!(head.head_len <= data.len(), "head_len beyond the input");
    assert!(data[..head.head_len].ends_with(b"\n"));
    let k = cut % head.head_len;
    let mut s2 = response::header_slots();
    assert!(
        matches!(response::parse(&data[..k], asked, &mut s2), Ok(None)),
        "the {k}-byte prefix of an accepted {}-byte head is not incomplete",
        head.head_len
    );
    assert!((100..=599).contains(&head.status), "status {}", head.status);
    let (body, framing) = match head.kind {
        Kind::Interim => {
            assert!((100..200).contains(&head.status) && head.status != 101);
            return "ok interim";
        }
        Kind::Upgraded { upgrade } => {
            assert!(asked.upgrade && head.status == 101);
            // What goes to the client: a 101 with no body framing.
            let mut out = Vec::new();
            encode::write_switching_protocols(
                &mut out,
                head.reason,
                head.headers,
                upgrade,
                Edits::none(),
            );
            let mut s3 = response::header_slots();
            let again = response::parse(&out, asked, &mut s3)
                .unwrap_or_else(|e| panic!("re-encoded 101 refused: {e:?}"))
                .expect("re-encoded 101 complete");
            assert!(matches!(again.kind, Kind::Upgraded { .. }));
            assert!(
                !again.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("transfer-encoding")
                        || h.name.eq_ignore_ascii_case("content-length")
                }),
                "a 101 with body framing: {:?}",
                String::from_utf8_lossy(&out)
            );
            return "ok upgraded";
        }
        Kind::Final { body, framing } => (body, framing),
    };
    assert!(head.status >= 200, "final status {}", head.status);
    if asked.head || head.status == 204 || head.status == 304 {
        assert_eq!(body, BodyKind::Empty);
    }
    for client_minor in [0, 1] {
        let (down, _strip) = response::down_framing(body, client_minor);
        let mut out = Vec::new();
        encode::write_response(
            &mut out,
            &DownstreamResponse {
                status: head.status,
                reason: head.reason,
                headers: head.headers,
                has_connection_header: framing.has_connection_header,
                framing: down,
                close: down == encode::DownFraming::Close,
                http10_keep_alive: false,
                upgrade: None,
                edits: Edits::none(),
            },
        );
        let mut s3 = response::header_slots();
        let again = match response::parse(&out, asked, &mut s3) {
            Ok(Some(a)) => a,
            other => panic!(
                "the re-encoded head does not parse ({other:?}): {:?}",
                String::from_utf8_lossy(&out)
            ),
        };
        assert_eq!(again.status, head.status);
        assert_eq!(again.head_len, out.len());
        let Kind::Final { body: b2, .. } = again.kind else {
            panic!("re-encoded final response is not final");
        };
        // Chunked to an HTTP/1.0 client is stripped and close-delimited.
        let want = match (body, client_minor) {
            (BodyKind::Chunked, 0) => BodyKind::UntilClose,
            (b, _) => b,
        };
        assert_eq!(b2, want, "re-encoded: {:?}", String::from_utf8_lossy(&out));
    }
    "ok"
}

#[test]
fn fuzz_response_parser() {
    let mut pick = Rng::new(2);
    drive("response", 0xb, RESPONSES, |data| {
        let c = pick.next() as usize;
        let asked = Asked {
            head: c & 1 == 1,
            upgrade: c & 2 == 2,
        };
        check_response(data, asked, c >> 2)
    });
}

// ---- (c) The chunked decoder ----

const CHUNKED: &[&[u8]] = &[
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\nNEXT",
    b"1\r\na\r\n1\r\nb\r\n0\r\nX-T: v\r\nX-U:\r\n\r\n",
    b"5;ext=1\r\nhello\r\n0\r\n\r\n",
    b"5 \r\nhello\r\n0\r\n\r\n",
    b"5\nhello\n0\n\n",
    b"ffffffffffffffff\r\n",
    b"10000000000000000\r\n",
    b"0000000000000005\r\nhello\r\n00\r\n\r\n",
    b"aB\r\n0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012\r\n0\r\n\r\n",
    b"0\r\nBad Trailer: x\r\n\r\n",
    b"0\r\nX: a\rb\r\n\r\n",
    b"0\r\nX: \xc3\xa9\x80\r\n\r\n",
    b"3\r\nabc\r\n0\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"-1\r\n",
    b"\r\n",
];

/// What a decode of a whole input came to.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    /// The body ended after this many bytes.
    Done(Vec<u8>, usize),
    /// All bytes consumed, more needed.
    Incomplete(Vec<u8>),
    Invalid(Vec<u8>, ChunkError),
}

/// Feeds `input` to the production decoder in pieces that end at the `cuts`, the way
/// `body::forward` does (each call sees the rest of the current read).
fn decode(input: &[u8], cuts: &[usize], max_trailers: usize) -> Decoded {
    let mut dec = ChunkedDecoder::new(max_trailers);
    let mut data = Vec::new();
    let mut pos = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(pos, input.len());
        while pos < end && !dec.is_done() {
            let avail = &input[pos..end];
            match dec.next(avail) {
                Ok(Piece::Data(n)) => {
                    assert!(n > 0 && n <= avail.len(), "Data({n}) of {}", avail.len());
                    data.extend_from_slice(&avail[..n]);
                    pos += n;
                }
                Ok(Piece::Framing(n)) => {
                    assert!(n > 0 && n <= avail.len(), "Framing({n}) of {}", avail.len());
                    pos += n;
                }
                Err(e) => return Decoded::Invalid(data, e),
            }
        }
        if dec.is_done() {
            assert!(input[..pos].ends_with(b"\r\n"));
            return Decoded::Done(data, pos);
        }
    }
    Decoded::Incomplete(data)
}

/// A plain, non-incremental reading of the same strict grammar (RFC 9112 section 7.1
/// without extensions, CRLF only, at most 16 hex digits), to diff the decoder against.
/// `None` for invalid input; `Some(Err(()))` for incomplete.
fn reference(input: &[u8], max_trailers: usize) -> Option<Result<(Vec<u8>, usize), ()>> {
    fn line(input: &[u8], from: usize) -> Option<(&[u8], usize)> {
        let rest = &input[from..];
        let i = rest.windows(2).position(|w| w == b"\r\n")?;
        Some((&rest[..i], from + i + 2))
    }
    let mut data = Vec::new();
    let mut pos = 0;
    loop {
        let Some((size_line, next)) = line(input, pos) else {
            // Incomplete unless what is there already breaks the grammar.
            let rest = &input[pos..];
            let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            let tail = &rest[digits..];
            return (digits <= 16 && (tail.is_empty() || (tail == b"\r" && digits > 0)))
                .then_some(Err(()));
        };
        if size_line.is_empty()
            || size_line.len() > 16
            || !size_line.iter().all(u8::is_ascii_hexdigit)
        {
            return None;
        }
        let size = u64::from_str_radix(std::str::from_utf8(size_line).ok()?, 16).ok()?;
        pos = next;
        if size == 0 {
            break;
        }
        let avail = (input.len() - pos) as u64;
        if avail < size {
            return Some(Err(()));
        }
        let end = pos + size as usize;
        data.extend_from_slice(&input[pos..end]);
        pos = end;
        match &input[pos..] {
            [] | [b'\r'] => return Some(Err(())),
            [b'\r', b'\n', ..] => pos += 2,
            _ => return None,
        }
    }
    let trailer_start = pos;
    loop {
        let Some((field, next)) = line(input, pos) else {
            // Incomplete, unless the partial field is already invalid or too long.
            let rest = &input[pos..];
            let shape = match rest.strip_suffix(b"\r") {
                // A CR ends the final empty line or a field's value, never a name.
                Some(p) => p.is_empty() || (valid_field_prefix(p) && p.contains(&b':')),
                None => valid_field_prefix(rest),
            };
            let ok = shape && pos - trailer_start + rest.len() <= max_trailers;
            return ok.then_some(Err(()));
        };
        // The decoder counts trailer bytes up to and including the final CR.
        if next - 1 - trailer_start > max_trailers {
            return None;
        }
        if field.is_empty() {
            return Some(Ok((data, next)));
        }
        if !valid_field_prefix(field) || !field.contains(&b':') {
            return None;
        }
        pos = next;
    }
}

/// `name ":" value` or a prefix of one: a token name, then any visible bytes, SP, HTAB
/// or obs-text (no CR, LF, NUL or DEL).
fn valid_field_prefix(f: &[u8]) -> bool {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let name_len = f.iter().take_while(|&&b| tchar(b)).count();
    match f.get(name_len) {
        None => true,
        Some(b':') if name_len > 0 => f[name_len + 1..]
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)),
        Some(_) => false,
    }
}

/// Invariants: no panic; every call makes progress within its input; the result (data,
/// end, error kind) is the same for any split of the input; it agrees with the
/// reference grammar.
fn check_chunked(input: &[u8], rng: &mut Rng) -> &'static str {
    let max_trailers = if rng.chance(4) { 16 } else { 16 * 1024 };
    let whole = decode(input, &[], max_trailers);
    let mut cuts: Vec<usize> = (0..rng.below(6))
        .map(|_| rng.below(input.len() + 1))
        .collect();
    cuts.sort_unstable();
    assert_eq!(
        decode(input, &cuts, max_trailers),
        whole,
        "split at {cuts:?}"
    );
    if input.len() <= 64 {
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(decode(input, &every, max_trailers), whole, "byte by byte");
    }
    let want = reference(input, max_trailers);
    match (&whole, want) {
        (Decoded::Done(d, n), Some(Ok((rd, rn)))) => {
            assert_eq!((d, *n), (&rd, rn), "decoder and reference disagree");
            "ok done"
        }
        (Decoded::Incomplete(_), Some(Err(()))) => "incomplete",
        (Decoded::Invalid(..), None) => "rejected",
        (got, want) => panic!("decoder: {got:?}, reference: {want:?}"),
    }
}

#[test]
fn fuzz_chunked_decoder() {
    let mut rng = Rng::new(3);
    drive("chunked", 0xc, CHUNKED, |input| {
        check_chunked(input, &mut rng)
    });
}
