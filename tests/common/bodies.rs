//! Request bodies for the body-hook tests (`tests/buffer_filter.rs`, the buffer case of
//! `tests/envoy_bootstrap_parity.rs`): recognisable payloads, chunked HTTP/1 requests,
//! and HTTP/2 uploads whose length the proxy cannot know from the head.

use std::io::Write;
use std::process::{Command, Stdio};

/// `n` bytes of `abc...zab...`.
pub fn letters(n: usize) -> String {
    (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

/// A chunked HTTP/1.1 POST of `body` to `path`, in two chunks.
pub fn chunked_post(path: &str, body: &str) -> String {
    let (a, b) = body.split_at(body.len() / 2);
    format!(
        "POST {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    )
}

/// A POST of `body` to `path` with a Content-Length.
pub fn length_post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `curl` over h2c with the body streamed from stdin (`-T -`): no `content-length`,
/// DATA frames of up to 16 KiB, and an empty DATA frame with END_STREAM at the end.
/// Returns (status, body); status 0 if curl got none.
pub fn h2_stream_post(url: &str, data: &str) -> (u16, String) {
    curl_h2_post(url, data, &["-X", "POST", "-T", "-"])
}

/// `curl` over h2c with the body read whole first (`--data-binary @-`): a
/// `content-length`, and a body this small in one DATA frame with END_STREAM.
pub fn h2_whole_post(url: &str, data: &str) -> (u16, String) {
    curl_h2_post(url, data, &["--data-binary", "@-"])
}

fn curl_h2_post(url: &str, data: &str, how: &[&str]) -> (u16, String) {
    let mut child = Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "--max-time", "10"])
        .args(["-w", "\n%{http_code}"])
        .args(how)
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("these tests need curl with HTTP/2");
    if let Some(mut stdin) = child.stdin.take() {
        // The proxy may answer (413) before it read everything: curl then stops reading.
        let _ = stdin.write_all(data.as_bytes());
    }
    let out = child.wait_with_output().expect("curl output");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
