use super::*;
use crate::config::access_log_format::{TextFormat, DEFAULT_FORMAT};
use crate::config::access_log_json::JsonTemplate;
use std::time::Duration;

fn line(f: &LogFormat, rec: &StreamInfo) -> String {
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    let cx = Ctx {
        rec,
        peer: "10.0.0.1:5555".parse().unwrap(),
        listener: "web",
    };
    format_line(&mut out, &mut scratch, f, &cx);
    String::from_utf8(out).unwrap()
}

fn text(s: &str) -> LogFormat {
    LogFormat::Text(TextFormat::parse(s).unwrap())
}

fn proxied() -> StreamInfo {
    let mut rec = StreamInfo {
        start: Some(UNIX_EPOCH + Duration::from_millis(1_795_838_706_789)),
        method: "GET".into(),
        path: "/x".into(),
        authority: "a.example".into(),
        protocol: "HTTP/1.1",
        status: 200,
        bytes_received: 10,
        bytes_sent: 20,
        duration: Duration::from_millis(7),
        upstream: Some("127.0.0.1:8080".parse().unwrap()),
        cluster: Some("backend".into()),
        ..Default::default()
    };
    crate::observe::stream_info::LogFacts::keep_head(
        &mut rec.log.request_head,
        b"GET /x HTTP/1.1\r\nhost: a.example\r\nuser-agent: curl/8\r\nx-request-id: abc\r\nx-quote: a\"b\r\n\r\nBODY",
    );
    crate::observe::stream_info::LogFacts::keep_head(
        &mut rec.log.response_head,
        b"HTTP/1.1 200 OK\r\nx-envoy-upstream-service-time: 3\r\ncontent-length: 5\r\n\r\n",
    );
    rec
}

#[test]
fn formats_time() {
    let mut out = Vec::new();
    rfc3339(
        &mut out,
        UNIX_EPOCH + Duration::from_millis(1_795_838_706_789),
    );
    assert_eq!(String::from_utf8(out).unwrap(), "2026-11-28T04:05:06.789Z");
    let mut out = Vec::new();
    let t = UNIX_EPOCH + Duration::from_nanos(1_795_838_706_789_123_456);
    strftime(&mut out, t, "%Y/%m/%d %H:%M:%S.%3f|%s|%E6S|%f|%F %T%z|%q");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "2026/11/28 04:05:06.789|1795838706|06.789123|789123456|2026-11-28 04:05:06+0000|%q"
    );
}

#[test]
fn default_format_is_envoys() {
    let f = LogFormat::parse(DEFAULT_FORMAT).unwrap();
    assert_eq!(
        line(&f, &proxied()),
        "[2026-11-28T04:05:06.789Z] \"GET /x HTTP/1.1\" 200 - 10 20 7 3 \"-\" \"curl/8\" \
         \"abc\" \"a.example\" \"127.0.0.1:8080\"\n"
    );
    let local = StreamInfo {
        status: 404,
        flag: Some(ResponseFlag::NoRoute),
        ..Default::default()
    };
    assert_eq!(
        line(&f, &local),
        "[-] \"- - -\" 404 NR 0 0 0 - \"-\" \"-\" \"-\" \"-\" \"-\"\n"
    );
}

#[test]
fn header_alternatives_lengths_and_pseudo_headers() {
    let f = text("%REQ(X-NOPE?USER-AGENT):4%|%REQ(:PATH)%|%RESP(CONTENT-LENGTH)%|%TRAILER(X-T)%|%REQ(HOST)%|%REQ(X-REQUEST-ID):0%|%UPSTREAM_CLUSTER%");
    assert_eq!(line(&f, &proxied()), "curl|/x|5|-|a.example||backend\n");
    // `:status` is the status sent (Envoy's response header map holds it); `-` before
    // any response.
    let f = text("%RESP(:STATUS)%");
    assert_eq!(line(&f, &proxied()), "200\n");
    let mut none = proxied();
    none.status = 0;
    assert_eq!(line(&f, &none), "-\n");
}

#[test]
fn json_values_keep_their_types() {
    let v = serde_json::json!({
        "code": "%RESPONSE_CODE%",
        "dur": "%DURATION%",
        "missing": "%REQ(X-NOPE)%",
        "mixed": "a %RESPONSE_CODE% %REQ(X-NOPE)%",
        "flags": "%RESPONSE_FLAGS%",
        "quote": "%REQ(X-QUOTE)%",
        "n": 5,
        "nested": {"p": "%PROTOCOL%", "t": true},
        "trunc": "%REQ(USER-AGENT):3%",
    });
    let f = LogFormat::Json(JsonTemplate::from_value(&v).unwrap());
    let got = line(&f, &proxied());
    assert_eq!(
        got,
        "{\"code\":200,\"dur\":7,\"flags\":\"-\",\"missing\":null,\"mixed\":\"a 200 -\",\
         \"n\":5,\"nested\":{\"p\":\"HTTP/1.1\",\"t\":true},\"quote\":\"a\\\"b\",\"trunc\":\"cur\"}\n"
    );
    let parsed: serde_json::Value = serde_json::from_str(got.trim_end()).unwrap();
    assert_eq!(parsed["quote"], "a\"b");
}

#[test]
fn json_strings_escape_peer_bytes() {
    let mut out = Vec::new();
    json_string(&mut out, b"a\x01\xff\n\"\\z");
    let s = String::from_utf8(out).unwrap();
    assert_eq!(s, "\"a\\u0001\u{fffd}\\n\\\"\\\\z\"");
    let v: String = serde_json::from_str(&s).unwrap();
    assert_eq!(v, "a\u{1}\u{fffd}\n\"\\z");
}

#[test]
fn find_header_tolerates_junk() {
    use crate::observe::stream_info::find_header;
    for junk in [
        &b""[..],
        b"\n",
        b"x",
        b"a\r\n:\r\n",
        b"a\r\nno-colon\r\nk: v",
        b"\xff\r\nk:\xfe",
    ] {
        let _ = find_header(junk, "k");
    }
    assert_eq!(
        find_header(b"a\r\nno-colon\r\nK:  v \r\n", "k"),
        Some(&b"v"[..])
    );
    assert_eq!(find_header(b"a\r\n\r\nk: v\r\n", "k"), None);
}

#[test]
fn route_trace_and_upstream_connection_fields() {
    let f = text(
        "%ROUTE_NAME% %TRACE_ID% %UPSTREAM_LOCAL_ADDRESS% %UPSTREAM_TRANSPORT_FAILURE_REASON%",
    );
    let mut rec = proxied();
    assert_eq!(line(&f, &rec), "- - - -\n");
    rec.log.route_name = Some("r1".into());
    rec.log.trace_id = Some([0xab; 16]);
    rec.log.upstream_local = Some("127.0.0.1:40000".parse().unwrap());
    rec.log.transport_failure =
        Some(crate::observe::transport_failure::TransportFailure::Connect(libc::ECONNREFUSED));
    assert_eq!(
        line(&f, &rec),
        format!(
            "r1 {} 127.0.0.1:40000 delayed_connect_error:_Connection_refused\n",
            "ab".repeat(16)
        )
    );
    // Absent in a typed JSON value is null; present, a string.
    let j = LogFormat::Json(
        JsonTemplate::from_value(&serde_json::json!({"r": "%ROUTE_NAME%", "t": "%TRACE_ID%"}))
            .unwrap(),
    );
    rec.log.trace_id = None;
    assert_eq!(line(&j, &rec), "{\"r\":\"r1\",\"t\":null}\n");
}
