//! The test's authorization service (`tests/authz/authz.py`), started per test:
//! gRPC and HTTP on ephemeral loopback ports, every check logged as a JSON line.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::common::{read_lossy, write_atomic, TempDir};

pub struct Authz {
    child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    log: PathBuf,
    net_mode: PathBuf,
    _dir: TempDir,
}

/// The venv's Python, with grpcio and xds-protos (tests/run installs them).
fn python() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/.venv/bin/python");
    let ok = Command::new(&py)
        .args([
            "-c",
            "import grpc; from envoy.service.auth.v3 import external_auth_pb2_grpc",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(py)
}

impl Authz {
    /// Starts the service, or `None` (the test is skipped, and says so) when the venv
    /// lacks grpcio or xds-protos.
    pub fn start_or_skip(test: &str) -> Option<Authz> {
        let Some(py) = python() else {
            eprintln!("{test}: skipped: loadtest/.venv has no grpcio/xds-protos (run tests/run)");
            return None;
        };
        Some(Authz::start(&py, &[]))
    }

    pub fn start(py: &Path, extra: &[&str]) -> Authz {
        let dir = TempDir::new("authz");
        let log = dir.join("checks.jsonl");
        let net_mode = dir.join("net-mode");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/authz/authz.py");
        let mut child = Command::new(py)
            .arg(script)
            .args(["--log", &log.display().to_string()])
            .args(["--net-mode-file", &net_mode.display().to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/authz/authz.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("authz.py: its PORTS line");
        let ports: Vec<u16> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|p| p.parse().ok())
            .collect();
        assert_eq!(ports.len(), 2, "authz.py said {line:?}");
        let at = |p| SocketAddr::from(([127, 0, 0, 1], p));
        Authz {
            child,
            grpc: at(ports[0]),
            http: at(ports[1]),
            log,
            net_mode,
            _dir: dir,
        }
    }

    /// Every check so far, oldest first.
    pub fn checks(&self) -> Vec<serde_json::Value> {
        read_lossy(&self.log)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// Network checks (no HTTP request) are denied from now on.
    pub fn deny_connections(&self) {
        write_atomic(&self.net_mode, "deny");
    }
}

impl Drop for Authz {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
