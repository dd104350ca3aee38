//! HTTP/1 codec micro-benchmarks: head parsing with the strict framing checks, head
//! re-serialisation, and chunked decoding.
//!
//! `cargo bench --bench h1_parse` (add `-- --quick` for a fast smoke run).

mod support;

use std::hint::black_box;

use outrigger::http::filter::headers::Edits;
use outrigger::http::h1::chunked::{ChunkedDecoder, Piece};
use outrigger::http::h1::encode::{write_request, Forward, UpstreamRequest};
use outrigger::http::h1::head::{framing, target};

const SMALL: &[u8] = b"GET /api/v1/items?id=42 HTTP/1.1\r\nHost: svc.default.svc.cluster.local\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n";

const BROWSER: &[u8] = b"GET /static/app.js?v=20261124 HTTP/1.1\r\nHost: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; tz=Europe/London\r\n\
Referer: https://www.example.com/\r\nSec-Fetch-Dest: script\r\nSec-Fetch-Mode: no-cors\r\n\
Sec-Fetch-Site: same-origin\r\nX-Request-Id: 6f1c1f5e-4d5b-4b8e-9f3e-2b7a1c9d0e11\r\n\r\n";

fn parse_and_check(buf: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => panic!("bench input must parse"),
    };
    let f = framing(req.headers, req.version.unwrap_or(1), true).unwrap();
    let t = target(req.path.unwrap()).unwrap();
    black_box((f, t));
    n
}

fn parse_and_encode(buf: &[u8], out: &mut Vec<u8>) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let _ = req.parse(buf);
    let f = framing(req.headers, 1, true).unwrap();
    out.clear();
    write_request(
        out,
        &UpstreamRequest {
            method: req.method.unwrap(),
            path: req.path.unwrap(),
            authority: None,
            headers: req.headers,
            has_connection_header: f.has_connection_header,
            forward: Forward::append(b"10.0.0.1"),
            edits: Edits::none(),
            upgrade: None,
            original_path: None,
            original_host: None,
        },
    );
    out.len()
}

fn main() {
    support::bench("parse+framing: small GET (4 headers)", || {
        parse_and_check(SMALL)
    });
    support::bench("parse+framing: browser GET (13 headers)", || {
        parse_and_check(BROWSER)
    });
    let mut out = Vec::with_capacity(4096);
    support::bench("parse+framing+encode upstream: small GET", || {
        parse_and_encode(SMALL, &mut out)
    });
    support::bench("parse+framing+encode upstream: browser GET", || {
        parse_and_encode(BROWSER, &mut out)
    });

    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend_from_slice(b"400\r\n");
        body.extend_from_slice(&[b'x'; 0x400]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    support::bench("chunked decode: 64 x 1 KiB chunks", || {
        let mut d = ChunkedDecoder::new(1024);
        let mut pos = 0;
        let mut data = 0;
        while !d.is_done() {
            match d.next(&body[pos..]).unwrap() {
                Piece::Data(n) => {
                    data += n;
                    pos += n;
                }
                Piece::Framing(n) => pos += n,
            }
        }
        data
    });
}
