//! Idle costs nothing (issue 12, step 3): a proxy with no work arms no timer, so its
//! executor threads sleep in the kernel until a socket or a signal wakes them.
//!
//! Black-box: the real binary, and each thread's context-switch counters from
//! `/proc/<pid>/task/<tid>/status` over a window. A thread that sleeps adds no switch,
//! whatever else runs on the machine; a thread that wakes on a timer adds one per wake.
//! So the check counts the proxy's own wake-ups and does not depend on load or speed:
//! it fails if any thread (workers, control executor, log thread, main) woke more than
//! once a second on average over the window.

mod common;
mod h2client;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;

/// How long the idle proxy is watched.
const WINDOW: Duration = Duration::from_secs(3);

/// Context switches (voluntary and not) of every thread of `pid`, by thread id, with
/// the thread's name.
fn switches(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let mut out = BTreeMap::new();
    let dir = format!("/proc/{pid}/task");
    let Ok(tasks) = std::fs::read_dir(&dir) else {
        panic!("cannot read {dir}: the proxy is gone");
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // the thread ended
        };
        let n: u64 = status
            .lines()
            .filter(|l| {
                l.starts_with("voluntary_ctxt_switches:")
                    || l.starts_with("nonvoluntary_ctxt_switches:")
            })
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        out.insert(tid, (name.trim().to_string(), n));
    }
    out
}

/// Watches the proxy for [`WINDOW`] and fails naming every thread that woke more than
/// once a second on average; `workers` worker executors and the control executor must
/// be among the threads watched.
fn assert_idle(proxy: &Proxy, workers: usize, what: &str) {
    let before = switches(proxy.pid);
    let named = |prefix: &str| {
        before
            .values()
            .filter(|(n, _)| n.starts_with(prefix))
            .count()
    };
    // glommio names each executor's thread and its helper thread after the executor.
    assert!(
        named("outrigger-w") >= workers && named("outrigger-contr") >= 1,
        "{what}: worker and control threads not found: {before:?}"
    );
    thread::sleep(WINDOW);
    let after = switches(proxy.pid);
    let limit = WINDOW.as_secs();
    let mut report = Vec::new();
    let mut busy = false;
    for (tid, (name, n)) in &after {
        let woke = n - before.get(tid).map_or(0, |(_, b)| *b);
        busy |= woke > limit;
        report.push(format!("{name} ({tid}): {woke}"));
    }
    assert!(
        !busy,
        "{what}: a thread woke more than once a second while idle; context switches over \
         {WINDOW:?}: {}",
        report.join(", ")
    );
}

fn idle_from_start(workers: usize) {
    let upstream = Upstream::echo();
    let proxy = Proxy::start_with(&proxy_config(upstream.addr), workers);
    assert_idle(&proxy, workers, "just started");
    // Still serving: the sleeping worker wakes for a client.
    assert_eq!(get(proxy.listen, "example.com", "/").status, 200);
}

#[test]
fn an_idle_proxy_with_one_worker_sleeps() {
    idle_from_start(1);
}

#[test]
fn an_idle_proxy_with_two_workers_sleeps() {
    idle_from_start(2);
}

/// After traffic: the access log flushed, the upstream pool swept by its idle timeout,
/// and a client's HTTP/1.1 keep-alive connection and HTTP/2 connection left open with
/// no request in flight. None of that may keep a timer running.
#[test]
fn a_proxy_sleeps_after_traffic_with_idle_client_connections_open() {
    let upstream = Upstream::echo();
    let template = proxy_config_with(
        upstream.addr,
        "5s",
        "    access_log:\n      path: @DIR@/access.log\n",
    )
    .replace(
        "    connect_timeout: 1s\n",
        "    connect_timeout: 1s\n    pool: { idle_timeout: 1s }\n",
    );
    let proxy = Proxy::start(&template);

    let mut h1 = Conn::connect(proxy.listen);
    for _ in 0..3 {
        h1.send("GET /h1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(h1.read_response().unwrap().status, 200);
    }

    // An HTTP/2 connection that ran one stream, held open (its client executor blocked)
    // until the window is over.
    let (opened_tx, opened_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let addr = proxy.listen;
    let h2 = thread::spawn(move || {
        h2client::run(move || async move {
            let mut client = h2client::connect(addr).await;
            let req = h2client::request("GET", &format!("http://{addr}/h2"))
                .body(())
                .unwrap();
            let reply = h2client::within(
                h2client::STEP,
                "h2 GET",
                h2client::send(&mut client, req, b""),
            )
            .await;
            let _ = opened_tx.send(reply.status);
            let _ = release_rx.recv_timeout(Duration::from_secs(30));
            drop(client);
        })
    });
    assert_eq!(opened_rx.recv_timeout(Duration::from_secs(15)), Ok(200));

    // Work that is due after traffic, done before the window: the log lines reach the
    // file, and the pooled upstream connections are closed by the pool's idle timeout.
    let log = proxy.dir.join("access.log");
    assert!(
        wait_until(Duration::from_secs(10), || {
            (read_lossy(&log).lines().count() >= 4).then_some(())
        })
        .is_some(),
        "access log lines were not flushed:\n{}",
        read_lossy(&log)
    );
    assert!(
        wait_until(Duration::from_secs(10), || (upstream.open_connections()
            == 0)
            .then_some(()))
        .is_some(),
        "the pooled upstream connection was not closed after its idle timeout"
    );

    assert_idle(&proxy, 1, "after traffic, idle connections open");

    // The held connections still work.
    h1.send("GET /again HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(h1.read_response().unwrap().status, 200);
    let _ = release_tx.send(());
    h2.join().expect("h2 client thread");
}

/// An HTTP/2 connection with no stream sleeps without a timer (its idle timeout is
/// minutes away), so the drain must wake it: it gets its GOAWAY at once, not at the
/// idle timeout, and the process exits without waiting for the drain timeout.
#[test]
fn a_sleeping_h2_connection_is_woken_by_the_drain() {
    use std::io::Write;
    let upstream = Upstream::echo();
    let template = proxy_config(upstream.addr).replace("drain_timeout: 1s", "drain_timeout: 60s");
    let mut proxy = Proxy::start(&template);
    let mut s = std::net::TcpStream::connect(proxy.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    // The proxy's SETTINGS: the connection is up and waiting.
    let seen = h2client::frames_until(&mut s, 4);
    assert_eq!(seen.last(), Some(&4), "the proxy's SETTINGS: {seen:?}");
    proxy.signal(libc::SIGTERM);
    let seen = h2client::frames_until(&mut s, 7);
    assert_eq!(
        seen.last(),
        Some(&7),
        "a GOAWAY (type 7) on drain: {seen:?}"
    );
    drop(s);
    let status = proxy
        .wait_exit(Duration::from_secs(30))
        .expect("drained and exited before the drain timeout");
    assert!(status.success());
    assert!(
        !proxy.stderr().contains("drain timeout"),
        "no connection was left for the drain timeout:\n{}",
        proxy.stderr()
    );
}
