//! Start-up refusals that must be one clear line, never a panic: io_uring blocked by a
//! seccomp filter (as Docker's default profile does), and RLIMIT_MEMLOCK too low for an
//! unprivileged user.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

const CONFIG: &str = "listeners:
  - { name: main, address: 127.0.0.1, port: @PORT@, route_table: main }
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: { prefix: / }
            direct_response: { status: 200 }
";

/// io_uring_setup has number 425 in the generic syscall table (x86_64 and aarch64 alike).
const SYS_IO_URING_SETUP: u32 = 425;

/// Installs a seccomp filter that makes io_uring_setup fail with EPERM.
fn block_io_uring() -> std::io::Result<()> {
    // struct seccomp_data starts with `int nr`: load it, compare, return.
    let filter = [
        libc::sock_filter {
            code: 0x20,
            jt: 0,
            jf: 0,
            k: 0,
        }, // ld [nr]
        libc::sock_filter {
            code: 0x15,
            jt: 0,
            jf: 1,
            k: SYS_IO_URING_SETUP,
        }, // jeq
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x0005_0000 | libc::EPERM as u32,
        }, // ret ERRNO
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        }, // ret ALLOW
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    // SAFETY: runs in the forked child before exec; the program outlives the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn run_with(
    config: &str,
    pre: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
) -> Output {
    let dir = TempDir::new("preflight");
    let path = dir.join("config.yaml");
    std::fs::write(&path, config.replace("@PORT@", &free_port().to_string())).unwrap();
    // Readable by the unprivileged user of the memlock test.
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir.path())
        .status();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outrigger"));
    cmd.args(["run", "-c"])
        .arg(&path)
        .args(["--concurrency", "1"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure only makes async-signal-safe syscalls.
    unsafe { cmd.pre_exec(pre) };
    let mut child = cmd.spawn().unwrap();
    let status = wait_child(&mut child, Duration::from_secs(15));
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        status.is_some(),
        "the proxy should refuse to start, but it kept running"
    );
    out
}

#[test]
fn io_uring_blocked_by_seccomp_is_a_one_line_error() {
    let out = run_with(CONFIG, block_io_uring);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    assert!(err.contains("io_uring is unavailable"), "stderr:\n{err}");
    assert!(
        err.contains("seccomp"),
        "the message names the likely cause:\n{err}"
    );
    assert!(!err.contains("panicked"), "stderr:\n{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line:\n{err}");
}

#[test]
fn low_memlock_limit_for_an_unprivileged_user_is_a_one_line_error() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to switch to an unprivileged user");
        return;
    }
    let out = run_with(CONFIG, || {
        let lim = libc::rlimit {
            rlim_cur: 64 * 1024,
            rlim_max: 64 * 1024,
        };
        // SAFETY: plain syscalls in the forked child before exec.
        unsafe {
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    });
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    assert!(
        err.contains("RLIMIT_MEMLOCK is 65536 bytes"),
        "stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "stderr:\n{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line:\n{err}");
}
