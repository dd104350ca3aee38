//! The self-time breakdown (`observe::phases`) through the binary: a slow upstream shows
//! up in the `upstream_wait` phase and in none of the proxy's own phases, in the
//! per-phase histograms (`/stats/prometheus`, `/stats`) and in the debug header
//! `x-outrigger-phases`, which is sent only when `proxy_headers.phases_header` is on;
//! on HTTP/1 and HTTP/2 downstreams.

mod common;
mod h2client;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

/// The upstream's delay: far longer than anything the proxy does itself.
const DELAY: Duration = Duration::from_millis(400);
const DELAY_US: u64 = 400_000;

const HEADER_ON: &str = "    proxy_headers:\n      phases_header: true\n";

/// The header's `phase=NNus` pairs.
fn phases(v: &str) -> HashMap<String, u64> {
    v.split(',')
        .map(|kv| {
            let (k, n) = kv.split_once('=').expect("phase=value");
            let n = n.strip_suffix("us").expect("microseconds");
            (k.to_string(), n.parse().expect("a number"))
        })
        .collect()
}

/// The slow upstream is all in `upstream_wait`; the proxy's own phases are not.
fn check_header(v: &str) {
    let p = phases(v);
    assert!(p["upstream_wait"] >= DELAY_US, "{v}");
    for own in ["parse", "filters", "upstream_connect"] {
        assert!(p[own] < DELAY_US, "{own} holds the upstream's delay: {v}");
    }
    assert!(
        !p.contains_key("response_write"),
        "not known at head time: {v}"
    );
}

fn series(text: &str, phase: &str, what: &str) -> f64 {
    let s = format!(
        "outrigger_downstream_rq_phase_seconds_{what}{{listener=\"main\",phase=\"{phase}\"}}"
    );
    metric(text, &s).unwrap_or_else(|| panic!("{s} missing:\n{text}"))
}

#[test]
fn a_slow_upstream_shows_in_upstream_wait_only_over_http1() {
    let up = Upstream::start(delayed(DELAY));
    let p = Proxy::start(&proxy_config_with(up.addr, "5s", HEADER_ON));
    let mut c = Conn::connect(p.listen);
    for _ in 0..2 {
        c.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = c.read_response().expect("response");
        assert_eq!(r.status, 200, "{r:?}");
        check_header(r.header("x-outrigger-phases").expect("the debug header"));
    }

    let text = p.prometheus();
    // Every phase of both requests is counted; the accept once per connection.
    for phase in [
        "parse",
        "filters",
        "upstream_connect",
        "upstream_wait",
        "response_write",
    ] {
        assert_eq!(series(&text, phase, "count"), 2.0, "{phase}");
    }
    assert_eq!(series(&text, "accept_queue", "count"), 1.0);
    let wait = series(&text, "upstream_wait", "sum");
    assert!(wait >= 2.0 * DELAY.as_secs_f64(), "{wait}");
    for own in [
        "accept_queue",
        "parse",
        "filters",
        "upstream_connect",
        "response_write",
    ] {
        let s = series(&text, own, "sum");
        assert!(s < DELAY.as_secs_f64(), "{own}: {s}");
    }
    // No wait fell into a bucket below the delay.
    let below = "outrigger_downstream_rq_phase_seconds_bucket{listener=\"main\",phase=\"upstream_wait\",le=\"0.25\"}";
    assert_eq!(metric(&text, below), Some(0.0), "{text}");

    // /stats has the same histograms, by phase name.
    let l = p.listener_stats("main");
    let wait = &l["phases"]["upstream_wait"];
    assert!(wait["sum_us"].as_u64().unwrap() >= 2 * DELAY_US, "{l}");
    assert_eq!(
        wait["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap())
            .sum::<u64>(),
        2
    );
}

#[test]
fn the_header_is_off_by_default_and_local_replies_have_no_upstream_phases() {
    let up = Upstream::echo();
    let p = Proxy::start(&proxy_config(up.addr));
    let r = exchange(
        p.listen,
        "GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-outrigger-phases"), None, "{r:?}");
    let text = p.prometheus();
    assert_eq!(series(&text, "upstream_wait", "count"), 1.0);

    // A local reply (no route) counts its own phases only.
    let cfg = proxy_config_with(up.addr, "5s", HEADER_ON).replace("prefix: /", "prefix: /only");
    let p = Proxy::start(&cfg);
    let r = exchange(
        p.listen,
        "GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-outrigger-phases"), None, "{r:?}");
    let text = p.prometheus();
    assert_eq!(series(&text, "parse", "count"), 1.0);
    assert_eq!(series(&text, "filters", "count"), 1.0);
    assert_eq!(series(&text, "upstream_wait", "count"), 0.0);
    assert_eq!(series(&text, "upstream_connect", "count"), 0.0);
}

#[test]
fn a_slow_upstream_shows_in_upstream_wait_only_over_http2() {
    let up = Upstream::start(delayed(DELAY));
    let p = Proxy::start(&proxy_config_with(up.addr, "5s", HEADER_ON));
    let addr = p.listen;
    let replies = h2client::run(move || async move {
        let mut client = h2client::connect(addr).await;
        let mut out = Vec::new();
        for _ in 0..2 {
            let req = h2client::request("GET", &format!("http://{addr}/a"));
            out.push(h2client::send(&mut client, req.body(()).unwrap(), b"").await);
        }
        out
    });
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.body_str());
        check_header(r.header("x-outrigger-phases").expect("the debug header"));
    }
    let text = p.prometheus();
    assert_eq!(series(&text, "upstream_wait", "count"), 2.0);
    assert_eq!(series(&text, "accept_queue", "count"), 1.0);
    let wait = series(&text, "upstream_wait", "sum");
    assert!(wait >= 2.0 * DELAY.as_secs_f64(), "{wait}");
    for own in ["parse", "filters", "response_write"] {
        let s = series(&text, own, "sum");
        assert!(s < DELAY.as_secs_f64(), "{own}: {s}");
    }
}
