//! The scripted external processor of the ext_proc tests (`tests/ext_proc/processor.py`,
//! grpcio with PyPI xds-protos in `loadtest/.venv`): started on a loopback port, killed
//! on drop; what it saw is read back from its log, one JSON object per message.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{read_lossy, TempDir};

pub struct Processor {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Drop for Processor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Processor {
    pub fn start() -> Processor {
        let dir = TempDir::new("extproc");
        let log = dir.join("messages.jsonl");
        std::fs::write(&log, "").unwrap();
        let python = concat!(env!("CARGO_MANIFEST_DIR"), "/loadtest/.venv/bin/python");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ext_proc/processor.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("loadtest/.venv/bin/python (tests/run installs grpcio and xds-protos)");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!("processor did not start: {line:?} (tests/run installs xds-protos)")
            });
        Processor {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// Every message the processor saw so far.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        read_lossy(&self.log)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The messages of `kind` on streams whose request path was `path`.
    pub fn seen(&self, path: &str, kind: &str) -> Vec<serde_json::Value> {
        self.messages()
            .into_iter()
            .filter(|m| m["path"] == path && m["kind"] == kind)
            .collect()
    }

    /// Forgets what was seen (between the two proxies of a parity test).
    pub fn clear(&self) {
        std::fs::write(&self.log, "").unwrap();
    }
}

/// An upstream whose chunked response sends its head and a first chunk (`first`), then
/// waits for the test's go (at most 20 s) before the second chunk (`second`) and the
/// end: a proxy that held the body would deliver nothing of it before the go. With
/// `head_only`, the first chunk waits for the go too.
pub fn gated(head_only: bool) -> (super::Handler, std::sync::mpsc::Sender<()>) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Mutex::new(rx);
    let h: super::Handler = std::sync::Arc::new(move |_, _, s| {
        use std::io::Write;
        s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")?;
        if !head_only {
            s.write_all(b"5\r\nfirst\r\n")?;
        }
        s.flush()?;
        let _ = rx
            .lock()
            .unwrap()
            .recv_timeout(std::time::Duration::from_secs(20));
        if head_only {
            s.write_all(b"5\r\nfirst\r\n")?;
        }
        s.write_all(b"6\r\nsecond\r\n0\r\n\r\n")?;
        Ok(true)
    });
    (h, tx)
}
