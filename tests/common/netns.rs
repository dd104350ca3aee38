//! Network namespaces for black-box tests that need a network of their own (root and
//! `ip` from iproute2): made and deleted by the test, everything in them with it.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Fails the test (it never passes silently) unless it runs as root (`root`: what for)
/// with every one of `tools` on the PATH (`install`: what installs them); `test` names
/// the test file in the messages.
pub fn require_root_and_tools(test: &str, root: &str, tools: &[&str], install: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "{test} needs root ({root}); run as root");
    for tool in tools {
        assert!(super::has_tool(tool), "{test} needs `{tool}` ({install})");
    }
}

/// Runs a command that must succeed; its output.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace with loopback up, deleted on drop (with everything in it:
/// veths, rules).
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: String) -> Netns {
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace; it must succeed.
    pub fn exec(&self, args: &[&str]) -> Output {
        sh(&self.command(args))
    }

    /// Runs a command inside the namespace, whatever its exit status: its stdout
    /// followed by its stderr.
    pub fn output(&self, args: &[&str]) -> String {
        let all = self.command(args);
        let out = Command::new(all[0])
            .args(&all[1..])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {all:?}: {e}"));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Starts a process inside the namespace (no stdin or stdout; its stderr into
    /// `stderr`), killed when the returned guard drops.
    pub fn spawn(&self, args: &[&str], stderr: &Path) -> Proc {
        let all = self.command(args);
        let child = Command::new(all[0])
            .args(&all[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(stderr).expect("create the stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {all:?}: {e}"));
        Proc(child)
    }

    /// `GET path` from the HTTP server at `addr` inside the namespace, one connection:
    /// "STATUS BODY" (an empty status when it could not connect).
    pub fn get(&self, addr: &str, path: &str) -> String {
        self.run(|| {
            let Ok(mut s) = TcpStream::connect(addr) else {
                return String::new();
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                s,
                "GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
            );
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            let status = out.split(' ').nth(1).unwrap_or("").to_string();
            let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            format!("{status} {body}")
        })
    }

    /// Waits (20 s at most) until the proxy whose admin listens at `admin` inside the
    /// namespace answers `/ready` with 200; shows `stderr` (its log) if it never does.
    pub fn wait_ready(&self, admin: &str, what: &str, stderr: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.get(admin, "/ready").starts_with("200") {
            assert!(
                Instant::now() < deadline,
                "{what} not ready; stderr:\n{}",
                fs::read_to_string(stderr).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn command<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["ip", "netns", "exec", self.0.as_str()];
        all.extend_from_slice(args);
        all
    }

    /// Runs `f` on a thread inside this namespace. Sockets made there stay in it, so a
    /// listener or connection can be made here and used from any thread.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.0);
        thread::scope(|s| {
            s.spawn(|| {
                let file = fs::File::open(&path).expect("open netns");
                // SAFETY: setns on this thread only, with a namespace file we hold open.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("thread in netns")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
