//! Shared infrastructure for the black-box tests.
//!
//! * [`Proxy`]: runs the `outrigger` binary on a config template with fresh loopback
//!   ports, waits for `/ready`, captures stdout/stderr to files, and stops the process
//!   (SIGTERM, then SIGKILL) when dropped.
//! * [`Upstream`]: an in-process HTTP/1.1 server on std threads with a pluggable
//!   [`Handler`] (echo, fixed bytes, delays, closing, chunked, large bodies) that records
//!   every request it receives and counts connections.
//! * [`Conn`]: a raw client over `std::net::TcpStream` that sends exact bytes and parses
//!   exact responses.
//!
//! Everything is bounded in time: every socket has a read timeout, every server thread
//! stops by itself, every wait has a deadline.
//!
//! Config templates use `@PORT@`, `@PORT2@`, `@ADMIN_PORT@` and `@DIR@` placeholders
//! (chosen so they do not clash with `format!` braces or YAML syntax).

#![allow(dead_code)]

pub mod bodies;
pub mod envoy;
pub mod ext_proc;
pub mod mesh;
pub mod netns;
pub mod raw;
pub mod ws;

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The proxy binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_outrigger");

/// Default read/write timeout of every test socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `Proxy::start` waits for `/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// Whether `tool` is a command on the PATH.
pub fn has_tool(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Polls `f` every 10 ms until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A loopback port that was free a moment ago, for a server the test starts later.
///
/// Not `bind(:0)`: the kernel hands those out of the ephemeral range, the same range it
/// takes local ports from for outgoing connections, so between this probe closing and
/// the server binding, any connection made by a test running alongside could take the
/// port (seen in CI as `cannot bind ...: Address already in use`). Ports here come from
/// below the ephemeral range, which `connect` never uses, each one once per process (a
/// counter), starting at an offset from the process id so that two test binaries
/// running at once rarely meet; the probe still skips ports something else holds.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(usize::MAX);
    let (low, high) = fixed_port_range();
    let span = usize::from(high - low);
    let _ = NEXT.compare_exchange(
        usize::MAX,
        (std::process::id() as usize).wrapping_mul(7919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let i = NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = low + i as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// Ports for test servers: from 16000 up to the start of the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, 32768 by default).
fn fixed_port_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let high = ephemeral_low.max(20000);
    ((high - 4000).min(16000), high)
}

/// A loopback address with nothing listening on it (connections are refused).
pub fn refused_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A loopback address whose connection attempts hang (SYNs are dropped): a listener
/// with backlog 0 whose accept queue is already full. Used for connect timeouts.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

impl Blackhole {
    pub fn new() -> Blackhole {
        use std::os::fd::AsRawFd;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind blackhole");
        // SAFETY: listen(2) on a socket we own; Linux accepts a new backlog.
        unsafe {
            libc::listen(listener.as_raw_fd(), 0);
        }
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        // Fill the accept queue until a connect hangs.
        for _ in 0..8 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => fillers.push(s),
                Err(_) => break,
            }
        }
        Blackhole {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A per-test directory under the system temp dir, removed on drop unless the test is
/// failing (then its path is printed so the logs can be read).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "outrigger-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            UNIQUE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test failed; keeping {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Writes `text` to `path` atomically (temp file + rename), so a reload never reads a
/// half-written file.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write temp config");
    std::fs::rename(&tmp, path).expect("rename config into place");
}

/// Reads a file, or an empty string if it does not exist yet.
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Polls the file at `path` until a line satisfies `pred`; returns that line.
pub fn wait_for_line(
    path: &Path,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> Option<String> {
    wait_until(timeout, || {
        read_lossy(path)
            .lines()
            .find(|l| pred(l))
            .map(str::to_string)
    })
}

/// Runs the binary with `args` to completion (bounded by `timeout`), capturing output.
pub fn run_cli(args: &[&str], timeout: Duration) -> Output {
    let dir = TempDir::new("cli");
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn outrigger");
    let status = match wait_child(&mut child, timeout) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`outrigger {}` did not exit within {timeout:?}; stderr:\n{}",
                args.join(" "),
                read_lossy(&err_path)
            );
        }
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

/// Waits for a child to exit, up to `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

pub fn send_signal(pid: u32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

// ---------------------------------------------------------------------------------------
// Config snippets
// ---------------------------------------------------------------------------------------

/// `admin` and `runtime` sections: admin on `@ADMIN_PORT@`, a short drain timeout.
pub const HEADER: &str = "admin:
  address: 127.0.0.1
  port: @ADMIN_PORT@
runtime:
  drain_timeout: 1s
";

/// A config with one listener `main` on `@PORT@` that sends everything to one cluster
/// `backend` with `upstream` as its single endpoint.
pub fn proxy_config(upstream: SocketAddr) -> String {
    proxy_config_with(upstream, "5s", "")
}

/// Like [`proxy_config`] with a route timeout and extra listener fields (indented by 4).
pub fn proxy_config_with(upstream: SocketAddr, timeout: &str, listener_extra: &str) -> String {
    format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
{listener_extra}route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: backend
            timeout: {timeout}
clusters:
  - name: backend
    connect_timeout: 1s
    endpoints:
      - address: 127.0.0.1
        port: {}
",
        upstream.port()
    )
}

// ---------------------------------------------------------------------------------------
// The proxy process
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Ports {
    listen: u16,
    listen2: u16,
    admin: u16,
}

impl Ports {
    /// Three distinct free ports (see [`free_port`]).
    fn fresh() -> Ports {
        let p = [free_port(), free_port(), free_port()];
        Ports {
            listen: p[0],
            listen2: p[1],
            admin: p[2],
        }
    }
}

fn render(template: &str, ports: &Ports, dir: &Path) -> String {
    template
        .replace("@ADMIN_PORT@", &ports.admin.to_string())
        .replace("@PORT2@", &ports.listen2.to_string())
        .replace("@PORT@", &ports.listen.to_string())
        .replace("@DIR@", &dir.display().to_string())
}

/// A running `outrigger` process.
pub struct Proxy {
    child: Option<Child>,
    pub pid: u32,
    /// `@PORT@`
    pub listen: SocketAddr,
    /// `@PORT2@`
    pub listen2: SocketAddr,
    /// `@ADMIN_PORT@`
    pub admin: SocketAddr,
    /// Holds the config, stdout, stderr and any access logs.
    pub dir: TempDir,
    pub config_path: PathBuf,
    ports: Ports,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

enum StartError {
    Exited(String),
    Timeout(String),
}

impl Proxy {
    /// Starts `outrigger run -c FILE --concurrency 1` on a config template.
    pub fn start(template: &str) -> Proxy {
        Proxy::start_with(template, 1)
    }

    /// Starts with `--concurrency n`.
    pub fn start_with(template: &str, concurrency: usize) -> Proxy {
        Proxy::start_env(template, concurrency, &[])
    }

    /// Starts `run -c FILE --concurrency 1` followed by `extra` (placeholders filled).
    pub fn start_extra(template: &str, extra: &[&str]) -> Proxy {
        Proxy::launch(|ports, dir| {
            let config_path = dir.join("config.yaml");
            write_atomic(&config_path, &render(template, ports, dir));
            let mut args = vec![
                "run".to_string(),
                "-c".into(),
                config_path.display().to_string(),
                "--concurrency".into(),
                "1".into(),
            ];
            args.extend(extra.iter().map(|a| render(a, ports, dir)));
            args
        })
    }

    /// Starts with `--concurrency n` and extra environment variables.
    pub fn start_env(template: &str, concurrency: usize, env: &[(&str, &str)]) -> Proxy {
        let n = concurrency.to_string();
        Proxy::launch_env(env, |ports, dir| {
            let config_path = dir.join("config.yaml");
            write_atomic(&config_path, &render(template, ports, dir));
            vec![
                "run".into(),
                "-c".into(),
                config_path.display().to_string(),
                "--concurrency".into(),
                n.clone(),
            ]
        })
    }

    /// Starts with explicit arguments (placeholders are substituted), e.g. the one-line
    /// mode. The arguments must configure the admin server on `@ADMIN_PORT@`.
    pub fn start_args(args: &[&str]) -> Proxy {
        Proxy::launch(|ports, dir| args.iter().map(|a| render(a, ports, dir)).collect())
    }

    fn launch(make_args: impl Fn(&Ports, &Path) -> Vec<String>) -> Proxy {
        Proxy::launch_env(&[], make_args)
    }

    fn launch_env(env: &[(&str, &str)], make_args: impl Fn(&Ports, &Path) -> Vec<String>) -> Proxy {
        let mut last_error = String::new();
        // A port picked by `free_port` can be taken again before the proxy binds it:
        // retry with fresh ports when the proxy reports a bind failure.
        for _attempt in 0..5 {
            let dir = TempDir::new("proxy");
            let ports = Ports::fresh();
            let args = make_args(&ports, dir.path());
            let config_path = dir.join("config.yaml");
            let stdout_path = dir.join("stdout.log");
            let stderr_path = dir.join("stderr.log");
            let child = Command::new(BIN)
                .args(&args)
                .env(
                    "OUTRIGGER_LOG",
                    std::env::var("OUTRIGGER_LOG").unwrap_or_else(|_| "info".into()),
                )
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(File::create(&stdout_path).unwrap())
                .stderr(File::create(&stderr_path).unwrap())
                .spawn()
                .expect("spawn outrigger");
            let pid = child.id();
            let mut proxy = Proxy {
                child: Some(child),
                pid,
                listen: SocketAddr::from(([127, 0, 0, 1], ports.listen)),
                listen2: SocketAddr::from(([127, 0, 0, 1], ports.listen2)),
                admin: SocketAddr::from(([127, 0, 0, 1], ports.admin)),
                dir,
                config_path,
                ports,
                stdout_path,
                stderr_path,
            };
            match proxy.wait_ready() {
                Ok(()) => return proxy,
                // The proxy has exited; dropping it removes its directory.
                Err(StartError::Exited(err)) if err.contains("cannot bind") => last_error = err,
                Err(StartError::Exited(err)) => {
                    panic!("outrigger exited before it was ready:\n{err}")
                }
                Err(StartError::Timeout(err)) => {
                    panic!("outrigger was not ready within {READY_TIMEOUT:?}; stderr:\n{err}")
                }
            }
        }
        panic!("could not start outrigger on free ports:\n{last_error}");
    }

    fn wait_ready(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(StartError::Exited(format!(
                        "exit status {status}; stderr:\n{}",
                        self.stderr()
                    )));
                }
            }
            if let Ok(r) = http_request(self.admin, "GET", "/ready", Duration::from_millis(500)) {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(StartError::Timeout(self.stderr()));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Renders a template with this proxy's ports and directory.
    pub fn render(&self, template: &str) -> String {
        render(template, &self.ports, self.dir.path())
    }

    /// Rewrites the config file (for reload tests).
    pub fn write_config(&self, template: &str) {
        write_atomic(&self.config_path, &self.render(template));
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listen, path)
    }

    pub fn admin_get(&self, path: &str) -> Response {
        http_request(self.admin, "GET", path, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("admin GET {path}: {e}"))
    }

    pub fn admin_post(&self, path: &str) -> Response {
        http_request(self.admin, "POST", path, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("admin POST {path}: {e}"))
    }

    /// `GET /stats` as JSON.
    pub fn stats(&self) -> serde_json::Value {
        let r = self.admin_get("/stats");
        assert_eq!(r.status, 200, "/stats: {}", r.body_str());
        serde_json::from_slice(&r.body).expect("/stats is JSON")
    }

    /// `GET /stats/prometheus`.
    pub fn prometheus(&self) -> String {
        let r = self.admin_get("/stats/prometheus");
        assert_eq!(r.status, 200, "/stats/prometheus: {}", r.body_str());
        r.body_str()
    }

    /// The version in `/config_dump`.
    pub fn config_version(&self) -> u64 {
        let r = self.admin_get("/config_dump");
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("config_dump JSON");
        v["version"]
            .as_u64()
            .expect("config_dump has a numeric version")
    }

    /// `POST /reload`.
    pub fn reload(&self) -> Response {
        self.admin_post("/reload")
    }

    pub fn signal(&self, sig: i32) {
        if self.child.is_some() {
            send_signal(self.pid, sig);
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        self.wait_exit(timeout)
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let s = wait_child(child, timeout)?;
        self.child = None;
        Some(s)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Peak resident set size (`VmHWM`) in KiB.
    pub fn vm_hwm_kib(&self) -> u64 {
        proc_status_kib(self.pid, "VmHWM:")
    }

    pub fn vm_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid, "VmRSS:")
    }

    /// Merged stats of one listener from `/stats`.
    pub fn listener_stats(&self, name: &str) -> serde_json::Value {
        let s = self.stats();
        s["listeners"]
            .as_array()
            .and_then(|a| a.iter().find(|l| l["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no listener `{name}` in /stats: {s}"))
    }

    /// Merged stats of one cluster from `/stats`.
    pub fn cluster_stats(&self, name: &str) -> serde_json::Value {
        let s = self.stats();
        s["clusters"]
            .as_array()
            .and_then(|a| a.iter().find(|l| l["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no cluster `{name}` in /stats: {s}"))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(self.pid, libc::SIGTERM);
            if wait_child(&mut child, Duration::from_secs(3)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if thread::panicking() {
            let err = self.stderr();
            let tail: Vec<&str> = err.lines().rev().take(30).collect();
            eprintln!(
                "--- outrigger stderr (last lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The value of one sample in Prometheus text, e.g.
/// `metric(&text, "outrigger_upstream_rq_total{cluster=\"backend\"}")`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// The `[flag, count]` pairs of a listener report as a map lookup.
pub fn flag_count(listener: &serde_json::Value, flag: &str) -> u64 {
    listener["rq_flags"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p[0] == flag).and_then(|p| p[1].as_u64()))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Raw client
// ---------------------------------------------------------------------------------------

/// A parsed HTTP response (or request-less message from the proxy).
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// The body as received (decoded if chunked), up to `BODY_KEEP` bytes.
    pub body: Vec<u8>,
    /// The full decoded body length.
    pub body_len: u64,
    /// The last bytes of the body (for very large bodies).
    pub body_tail: Vec<u8>,
    /// The body was chunked on the wire.
    pub chunked: bool,
    /// The body was delimited by connection close.
    pub until_close: bool,
    pub trailers: Vec<(String, String)>,
    /// Bytes of head and body on the wire.
    pub wire_len: u64,
}

/// The value of the first field called `name` (case-insensitive).
pub fn first_named<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The values of every field called `name` (case-insensitive), in order.
pub fn all_named<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// How much of a body the client keeps in memory.
pub const BODY_KEEP: usize = 8 << 20;
const TAIL_KEEP: usize = 64;

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        first_named(&self.headers, name)
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        all_named(&self.headers, name)
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        first_named(&self.trailers, name)
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The response says `Connection: close`.
    pub fn says_close(&self) -> bool {
        self.headers_named("connection")
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_header_lines(text: &str) -> Vec<(String, String)> {
    text.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.to_string(), v.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// A raw client connection.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        Conn::try_connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        Ok(Conn::from_stream(stream))
    }

    /// Wraps a connected stream (one bound to a chosen local address, say).
    pub fn from_stream(stream: TcpStream) -> Conn {
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn set_timeout(&self, d: Duration) {
        self.stream.set_read_timeout(Some(d)).unwrap();
    }

    pub fn send(&mut self, data: impl AsRef<[u8]>) {
        self.stream
            .write_all(data.as_ref())
            .unwrap_or_else(|e| panic!("send: {e}"));
    }

    pub fn try_send(&mut self, data: impl AsRef<[u8]>) -> io::Result<()> {
        self.stream.write_all(data.as_ref())
    }

    /// Reads more bytes into the buffer. `Ok(0)` is end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    fn eof_error(what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("connection closed {what}"),
        )
    }

    /// Reads one response to a non-HEAD request (1xx responses are returned as they come).
    pub fn read_response(&mut self) -> io::Result<Response> {
        self.read_response_to("GET")
    }

    /// Reads one response to a request with `method` (HEAD responses have no body).
    pub fn read_response_to(&mut self, method: &str) -> io::Result<Response> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > 1 << 20 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response head too large",
                ));
            }
            if self.fill()? == 0 {
                return Err(Conn::eof_error(if self.buf.is_empty() {
                    "before a response"
                } else {
                    "inside a response head"
                }));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end - 4]).into_owned();
        self.buf.drain(..head_end);
        let (status_line, rest) = head.split_once("\r\n").unwrap_or((&head, ""));
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
        let reason = parts.next().unwrap_or("").to_string();
        let mut r = Response {
            version,
            status,
            reason,
            headers: parse_header_lines(rest),
            wire_len: head_end as u64,
            ..Default::default()
        };
        let no_body =
            method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304;
        if no_body {
            return Ok(r);
        }
        let chunked = r
            .headers_named("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            r.chunked = true;
            self.read_chunked(&mut r)?;
        } else if let Some(cl) = r.header("content-length") {
            let n: u64 = cl.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad content-length {cl:?}"),
                )
            })?;
            self.read_exact_body(&mut r, n)?;
        } else {
            r.until_close = true;
            loop {
                if !self.buf.is_empty() {
                    let data = std::mem::take(&mut self.buf);
                    r.wire_len += data.len() as u64;
                    keep_body(&mut r, &data);
                }
                match self.fill() {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(r)
    }

    fn read_exact_body(&mut self, r: &mut Response, mut left: u64) -> io::Result<()> {
        while left > 0 {
            if self.buf.is_empty() && self.fill()? == 0 {
                return Err(Conn::eof_error(&format!("with {left} body bytes missing")));
            }
            let take = self.buf.len().min(left as usize);
            keep_body(r, &self.buf[..take]);
            self.buf.drain(..take);
            r.wire_len += take as u64;
            left -= take as u64;
        }
        Ok(())
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(Conn::eof_error("inside chunked framing"));
            }
        }
    }

    fn read_chunked(&mut self, r: &mut Response) -> io::Result<()> {
        loop {
            let line = self.read_line()?;
            r.wire_len += line.len() as u64 + 2;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {line:?}"),
                )
            })?;
            if size == 0 {
                break;
            }
            self.read_exact_body(r, size)?;
            let crlf = self.read_line()?;
            r.wire_len += 2;
            if !crlf.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunk not followed by CRLF",
                ));
            }
        }
        loop {
            let line = self.read_line()?;
            r.wire_len += line.len() as u64 + 2;
            if line.is_empty() {
                return Ok(());
            }
            if let Some((n, v)) = line.split_once(':') {
                r.trailers.push((n.to_string(), v.trim().to_string()));
            }
        }
    }

    /// Reads the final response, collecting interim (1xx) statuses first.
    pub fn read_final(&mut self) -> io::Result<(Vec<u16>, Response)> {
        let mut interim = Vec::new();
        loop {
            let r = self.read_response()?;
            if (100..200).contains(&r.status) {
                interim.push(r.status);
                continue;
            }
            return Ok((interim, r));
        }
    }

    /// True when the peer has closed the connection (EOF or reset) within `timeout`,
    /// with no further bytes. Bytes or a timeout mean "not closed".
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.set_timeout(timeout);
        let r = self.fill();
        self.set_timeout(IO_TIMEOUT);
        match r {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ),
        }
    }

    /// Reads whatever arrives until the peer closes or `timeout` passes.
    pub fn read_all(&mut self, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        self.set_timeout(Duration::from_millis(100));
        while Instant::now() < deadline {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        self.set_timeout(IO_TIMEOUT);
        std::mem::take(&mut self.buf)
    }

    /// Bytes received but not yet parsed.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

fn keep_body(r: &mut Response, data: &[u8]) {
    r.body_len += data.len() as u64;
    let room = BODY_KEEP.saturating_sub(r.body.len());
    r.body.extend_from_slice(&data[..room.min(data.len())]);
    r.body_tail
        .extend_from_slice(&data[data.len().saturating_sub(TAIL_KEEP)..]);
    if r.body_tail.len() > TAIL_KEEP {
        let cut = r.body_tail.len() - TAIL_KEEP;
        r.body_tail.drain(..cut);
    }
}

/// Sends `raw` on a new connection and reads one response.
pub fn exchange(addr: SocketAddr, raw: &str) -> Response {
    let mut c = Conn::connect(addr);
    c.send(raw);
    c.read_response()
        .unwrap_or_else(|e| panic!("no response to {raw:?}: {e}"))
}

/// `GET path` with `Host: host` on a new connection.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> Response {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

/// A one-shot request with `Connection: close` (used for the admin API).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> io::Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut c = Conn {
        stream,
        buf: Vec::new(),
    };
    let body_headers = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    c.try_send(format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{body_headers}Connection: close\r\n\r\n"
    ))?;
    c.read_response_to(method)
}

// ---------------------------------------------------------------------------------------
// In-process upstream servers
// ---------------------------------------------------------------------------------------

/// How much of a request body the upstream keeps.
pub const UP_BODY_KEEP: usize = 4 << 20;
/// An upstream connection with no traffic for this long is closed.
pub const UP_IDLE: Duration = Duration::from_secs(30);

/// One request as the upstream received it.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// 1-based number of the upstream connection it arrived on.
    pub conn_id: usize,
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    /// The exact head bytes as received.
    pub raw_head: Vec<u8>,
    pub chunked: bool,
    /// Decoded body length.
    pub body_len: u64,
    /// Decoded body, up to `UP_BODY_KEEP` bytes.
    pub body: Vec<u8>,
    /// The last bytes of the decoded body.
    pub body_tail: Vec<u8>,
    /// The body bytes exactly as received (chunk framing included), up to the limit.
    pub wire_body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        first_named(&self.headers, name)
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        all_named(&self.headers, name)
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The text the echo handler sends back.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "method: {}\ntarget: {}\nversion: {}\nconn: {}\n",
            self.method, self.target, self.version, self.conn_id
        );
        for (n, v) in &self.headers {
            s.push_str(&format!("header: {n}: {v}\n"));
        }
        s.push_str(&format!(
            "body-length: {}\nbody-chunked: {}\n",
            self.body_len, self.chunked
        ));
        for (n, v) in &self.trailers {
            s.push_str(&format!("trailer: {n}: {v}\n"));
        }
        s
    }

    fn keeps_alive(&self) -> bool {
        let conn: Vec<String> = self
            .headers_named("connection")
            .iter()
            .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
            .collect();
        if conn.iter().any(|t| t == "close") {
            return false;
        }
        self.version == "HTTP/1.1" || conn.iter().any(|t| t == "keep-alive")
    }
}

/// What a handler may use besides the socket.
pub struct Ctx<'a> {
    pub stop: &'a AtomicBool,
}

impl Ctx<'_> {
    /// Sleeps up to `d`, returning early if the upstream is being stopped.
    pub fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end && !self.stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(5).min(end - Instant::now()));
        }
    }
}

/// Answers one recorded request on the socket; returns whether to keep the connection.
pub type Handler =
    Arc<dyn Fn(&Ctx<'_>, &Recorded, &mut TcpStream) -> io::Result<bool> + Send + Sync>;

/// Answers with a description of the request (see [`Recorded::describe`]).
pub fn echo() -> Handler {
    Arc::new(|_, req, s| {
        write_echo(req, s)?;
        Ok(req.keeps_alive())
    })
}

fn write_echo(req: &Recorded, s: &mut TcpStream) -> io::Result<()> {
    let body = req.describe();
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nx-upstream-conn: {}\r\n\r\n",
        body.len(),
        req.conn_id
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())
}

/// Waits `d`, then echoes.
pub fn delayed(d: Duration) -> Handler {
    Arc::new(move |ctx, req, s| {
        ctx.sleep(d);
        write_echo(req, s)?;
        Ok(req.keeps_alive())
    })
}

/// Writes `raw` verbatim to every request and keeps the connection.
pub fn fixed(raw: impl Into<Vec<u8>>) -> Handler {
    let raw = raw.into();
    Arc::new(move |_, _, s| {
        s.write_all(&raw)?;
        Ok(true)
    })
}

/// A response with `code` and the body `oops`, on every request.
pub fn status_oops(code: u16) -> Handler {
    fixed(format!(
        "HTTP/1.1 {code} Oops\r\ncontent-length: 4\r\n\r\noops"
    ))
}

/// The first `n` requests get `first`, the rest an echo.
pub fn fail_first(n: usize, first: Handler) -> Handler {
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ok = echo();
    Arc::new(move |ctx, req, s| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
            first(ctx, req, s)
        } else {
            ok(ctx, req, s)
        }
    })
}

/// Writes `raw` verbatim and closes the connection.
pub fn fixed_then_close(raw: impl Into<Vec<u8>>) -> Handler {
    let raw = raw.into();
    Arc::new(move |_, _, s| {
        s.write_all(&raw)?;
        Ok(false)
    })
}

/// Reads the request and closes without a byte of response.
pub fn close_without_response() -> Handler {
    Arc::new(|_, _, _| Ok(false))
}

/// A chunked 200 response with these chunks and trailers.
pub fn chunked_response(chunks: &[&str], trailers: &[(&str, &str)]) -> Handler {
    let mut raw = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n",
    );
    if !trailers.is_empty() {
        let names: Vec<&str> = trailers.iter().map(|(n, _)| *n).collect();
        raw.push_str(&format!("trailer: {}\r\n", names.join(", ")));
    }
    raw.push_str("\r\n");
    for c in chunks {
        raw.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
    }
    raw.push_str("0\r\n");
    for (n, v) in trailers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    fixed(raw)
}

/// The byte at position `i` of every generated body.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// Largest slice [`pattern`] returns.
pub const PATTERN_BLOCK: usize = 1 << 20;

/// The generated body bytes `[offset, offset + len)` (len at most `PATTERN_BLOCK`),
/// from a precomputed buffer so even a debug build generates gigabytes quickly.
pub fn pattern(offset: u64, len: usize) -> &'static [u8] {
    static P: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    assert!(len <= PATTERN_BLOCK);
    let p = P.get_or_init(|| (0..PATTERN_BLOCK + 251).map(|i| (i % 251) as u8).collect());
    let start = (offset % 251) as usize;
    &p[start..start + len]
}

/// True if `data` equals the pattern starting at `offset` (any length).
pub fn matches_pattern(data: &[u8], offset: u64) -> bool {
    data.chunks(PATTERN_BLOCK)
        .enumerate()
        .all(|(i, c)| c == pattern(offset + (i * PATTERN_BLOCK) as u64, c.len()))
}

/// Fills `buf` with the pattern starting at `offset`.
pub fn fill_pattern(buf: &mut [u8], offset: u64) {
    let mut done = 0;
    while done < buf.len() {
        let n = (buf.len() - done).min(PATTERN_BLOCK);
        buf[done..done + n].copy_from_slice(pattern(offset + done as u64, n));
        done += n;
    }
}

/// A 200 response with a generated body of `n` bytes, `Content-Length` or chunked,
/// streamed (never held in memory whole).
pub fn large_body(n: u64, chunked: bool) -> Handler {
    Arc::new(move |ctx, _, s| {
        let head = if chunked {
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_string()
        } else {
            format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n")
        };
        s.write_all(head.as_bytes())?;
        let mut sent = 0u64;
        while sent < n {
            if ctx.stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let take = (n - sent).min(256 * 1024) as usize;
            let block = pattern(sent, take);
            if chunked {
                s.write_all(format!("{take:x}\r\n").as_bytes())?;
                s.write_all(block)?;
                s.write_all(b"\r\n")?;
            } else {
                s.write_all(block)?;
            }
            sent += take as u64;
        }
        if chunked {
            s.write_all(b"0\r\n\r\n")?;
        }
        Ok(true)
    })
}

struct UpState {
    connections: AtomicUsize,
    open: AtomicUsize,
    heads: AtomicUsize,
    requests: Mutex<Vec<Recorded>>,
    body_bytes: AtomicU64,
}

/// An upstream HTTP/1.1 server on 127.0.0.1 (std threads, keep-alive).
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpState>,
    stop: Arc<AtomicBool>,
    accept_thread: Option<thread::JoinHandle<()>>,
}

impl Upstream {
    pub fn start(handler: Handler) -> Upstream {
        Upstream::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), handler).expect("bind upstream")
    }

    /// An upstream on `addr` (another loopback address, a port another upstream has on
    /// its own address).
    pub fn start_on(addr: SocketAddr, handler: Handler) -> io::Result<Upstream> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(UpState {
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            heads: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            body_bytes: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let accept_thread = thread::Builder::new()
            .name(format!("upstream-{}", addr.port()))
            .spawn(move || accept_loop(listener, st, sp, handler))
            .unwrap();
        Ok(Upstream {
            addr,
            state,
            stop,
            accept_thread: Some(accept_thread),
        })
    }

    pub fn echo() -> Upstream {
        Upstream::start(echo())
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Request heads received (complete or not).
    pub fn heads(&self) -> usize {
        self.state.heads.load(Ordering::SeqCst)
    }

    /// Complete requests (head and body) received.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    pub fn last_request(&self) -> Recorded {
        self.state
            .requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream received no request")
    }

    /// Decoded request body bytes received over all requests (including incomplete ones).
    pub fn body_bytes(&self) -> u64 {
        self.state.body_bytes.load(Ordering::SeqCst)
    }

    /// Waits until `n` complete requests have arrived.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || (self.request_count() >= n).then_some(())).is_some()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    state: Arc<UpState>,
    stop: Arc<AtomicBool>,
    handler: Handler,
) {
    // The accept loop also ends by itself after a long time, whatever happens.
    let give_up = Instant::now() + Duration::from_secs(600);
    while !stop.load(Ordering::SeqCst) && Instant::now() < give_up {
        match listener.accept() {
            Ok((stream, _)) => {
                let id = state.connections.fetch_add(1, Ordering::SeqCst) + 1;
                state.open.fetch_add(1, Ordering::SeqCst);
                let (st, sp, h) = (state.clone(), stop.clone(), handler.clone());
                thread::spawn(move || {
                    let _ = serve_upstream_conn(stream, id, &st, &sp, &h);
                    st.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Buffered reads with a short socket timeout so the stop flag and the idle limit are
/// checked while waiting.
struct UpReader<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    tmp: Vec<u8>,
    stop: &'a AtomicBool,
}

impl UpReader<'_> {
    fn fill(&mut self) -> io::Result<usize> {
        let tmp = &mut self.tmp;
        let idle_end = Instant::now() + UP_IDLE;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(io::Error::other("upstream stopped"));
            }
            match self.stream.read(tmp) {
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() >= idle_end {
                        return Err(e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let l = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(l);
            }
            if self.buf.len() > 1 << 20 || self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in line"));
            }
        }
    }
}

fn keep(v: &mut Vec<u8>, data: &[u8]) {
    let room = UP_BODY_KEEP.saturating_sub(v.len());
    v.extend_from_slice(&data[..room.min(data.len())]);
}

fn keep_tail(v: &mut Vec<u8>, data: &[u8]) {
    v.extend_from_slice(&data[data.len().saturating_sub(TAIL_KEEP)..]);
    if v.len() > TAIL_KEEP {
        let cut = v.len() - TAIL_KEEP;
        v.drain(..cut);
    }
}

fn serve_upstream_conn(
    stream: TcpStream,
    id: usize,
    state: &UpState,
    stop: &AtomicBool,
    handler: &Handler,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut r = UpReader {
        stream,
        buf: Vec::new(),
        tmp: vec![0u8; 256 * 1024],
        stop,
    };
    let ctx = Ctx { stop };
    loop {
        // Head.
        let head_end = loop {
            if let Some(i) = find(&r.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if r.buf.len() > 1 << 20 {
                return Ok(());
            }
            if r.fill()? == 0 {
                return Ok(());
            }
        };
        state.heads.fetch_add(1, Ordering::SeqCst);
        let raw_head: Vec<u8> = r.buf.drain(..head_end).collect();
        let text = String::from_utf8_lossy(&raw_head[..head_end - 4]).into_owned();
        let (line, rest) = text.split_once("\r\n").unwrap_or((&text, ""));
        let mut parts = line.splitn(3, ' ');
        let mut rec = Recorded {
            conn_id: id,
            method: parts.next().unwrap_or("").to_string(),
            target: parts.next().unwrap_or("").to_string(),
            version: parts.next().unwrap_or("").to_string(),
            headers: parse_header_lines(rest),
            raw_head,
            ..Default::default()
        };
        rec.chunked = rec
            .headers_named("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        // Body.
        if rec.chunked {
            loop {
                let size_line = r.line()?;
                keep(&mut rec.wire_body, &size_line);
                keep(&mut rec.wire_body, b"\r\n");
                let text = String::from_utf8_lossy(&size_line).into_owned();
                let size = u64::from_str_radix(text.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
                if size == 0 {
                    break;
                }
                let mut left = size;
                while left > 0 {
                    if r.buf.is_empty() && r.fill()? == 0 {
                        return Ok(());
                    }
                    let take = r.buf.len().min(left as usize);
                    {
                        let data = &r.buf[..take];
                        keep(&mut rec.body, data);
                        keep(&mut rec.wire_body, data);
                        keep_tail(&mut rec.body_tail, data);
                    }
                    r.buf.drain(..take);
                    rec.body_len += take as u64;
                    state.body_bytes.fetch_add(take as u64, Ordering::SeqCst);
                    left -= take as u64;
                }
                let crlf = r.line()?;
                keep(&mut rec.wire_body, &crlf);
                keep(&mut rec.wire_body, b"\r\n");
                if !crlf.is_empty() {
                    return Ok(());
                }
            }
            loop {
                let l = r.line()?;
                keep(&mut rec.wire_body, &l);
                keep(&mut rec.wire_body, b"\r\n");
                if l.is_empty() {
                    break;
                }
                let t = String::from_utf8_lossy(&l).into_owned();
                if let Some((n, v)) = t.split_once(':') {
                    rec.trailers.push((n.to_string(), v.trim().to_string()));
                }
            }
        } else if let Some(cl) = rec.header("content-length") {
            let mut left: u64 = cl.trim().parse().unwrap_or(0);
            while left > 0 {
                if r.buf.is_empty() && r.fill()? == 0 {
                    return Ok(());
                }
                let take = r.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                {
                    let data = &r.buf[..take];
                    keep(&mut rec.body, data);
                    keep(&mut rec.wire_body, data);
                    keep_tail(&mut rec.body_tail, data);
                }
                r.buf.drain(..take);
                rec.body_len += take as u64;
                state.body_bytes.fetch_add(take as u64, Ordering::SeqCst);
                left -= take as u64;
            }
        }
        state.requests.lock().unwrap().push(rec.clone());
        let keep_alive = handler(&ctx, &rec, &mut writer)?;
        if !keep_alive || stop.load(Ordering::Relaxed) {
            let _ = writer.flush();
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// Parses the echo handler's body back into its lines.
pub struct Echoed {
    pub text: String,
}

impl Echoed {
    pub fn parse(body: &[u8]) -> Echoed {
        Echoed {
            text: String::from_utf8_lossy(body).into_owned(),
        }
    }

    pub fn field(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}: ");
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    }

    /// Received headers as (name, value).
    pub fn headers(&self) -> Vec<(String, String)> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("header: "))
            .filter_map(|h| h.split_once(": "))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

impl Proxy {
    /// The `health_flags` of endpoint `addr` of `cluster` in `/clusters?format=json`
    /// (empty when it is not listed).
    pub fn health_flag(&self, cluster: &str, addr: SocketAddr) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&self.admin_get("/clusters?format=json").body_str()).unwrap();
        v["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] == cluster)
            .flat_map(|c| c["endpoints"].as_array().unwrap().clone())
            .find(|e| e["address"] == addr.to_string())
            .and_then(|e| e["health_flags"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Waits at most `wait` until endpoint `addr` of `cluster` shows `want`.
    pub fn wait_health_flag(&self, cluster: &str, addr: SocketAddr, want: &str, wait: Duration) {
        let got = wait_until(wait, || {
            (self.health_flag(cluster, addr) == want).then_some(())
        });
        assert!(
            got.is_some(),
            "{addr} never showed {want}: {}",
            self.health_flag(cluster, addr)
        );
    }
}

/// `outrigger validate` on `text` (its port placeholders filled with free ports, `@DIR@`
/// with a fresh directory): whether it was accepted, and what it printed. A validation
/// never panics, whatever the config says.
pub fn validate_config(text: &str) -> (bool, String) {
    let dir = TempDir::new("validate");
    let path = dir.join("config.yaml");
    let text = text
        .replace("@ADMIN_PORT@", &free_port().to_string())
        .replace("@PORT2@", &free_port().to_string())
        .replace("@PORT@", &free_port().to_string())
        .replace("@DIR@", &dir.path().display().to_string());
    write_atomic(&path, &text);
    let o = run_cli(
        &["validate", "-c", &path.display().to_string()],
        Duration::from_secs(20),
    );
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.contains("panicked"), "{out}");
    (o.status.success(), out)
}
