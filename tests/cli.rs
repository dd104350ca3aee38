//! The command line: `validate`, `run` failures (taken ports, unresolvable addresses,
//! bad flags), the one-line mode, and every shipped config file.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(20);

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn no_panic(o: &Output) {
    let e = stderr(o);
    assert!(!e.contains("panicked"), "the binary panicked:\n{e}");
    assert!(!e.contains("RUST_BACKTRACE"), "the binary panicked:\n{e}");
}

/// Writes `text` to a file in `dir`, returning its path as a string.
fn file(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const GOOD: &str = "listeners:
  - name: main
    address: 127.0.0.1
    port: 10000
    route_table: main
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: { prefix: / }
            cluster: backend
clusters:
  - name: backend
    endpoints:
      - { address: 127.0.0.1, port: 9000 }
";

#[test]
fn version_and_help() {
    let o = run_cli(&["--version"], T);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("outrigger {}", env!("CARGO_PKG_VERSION"))
    );
    let o = run_cli(&["--help"], T);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("outrigger validate -c FILE"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"][..],
        &["validate"][..],
        &["run"][..],
        &["run", "--listen", "127.0.0.1:1"][..],
        &["run", "--upstream", "127.0.0.1:1"][..],
        &["run", "--listen", "nope", "--upstream", "127.0.0.1:1"][..],
        &[
            "run",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "127.0.0.1:port",
        ][..],
        &[
            "run",
            "-c",
            "x.yaml",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "127.0.0.1:2",
        ][..],
        &["run", "-c", "x.yaml", "--concurrency", "0"][..],
        &["run", "-c", "x.yaml", "--concurrency", "many"][..],
        &["run", "-c"][..],
        &["validate", "-c", "x.yaml", "--bogus"][..],
    ] {
        let o = run_cli(args, T);
        assert_eq!(
            o.status.code(),
            Some(2),
            "`outrigger {}`: {}",
            args.join(" "),
            stderr(&o)
        );
        assert!(
            !stderr(&o).trim().is_empty(),
            "`outrigger {}` gave no message",
            args.join(" ")
        );
        no_panic(&o);
    }
}

#[test]
fn validate_accepts_a_good_file() {
    let dir = TempDir::new("cli");
    let path = file(&dir, "good.yaml", GOOD);
    let o = run_cli(&["validate", "-c", &path], T);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("ok (1 listeners, 1 route tables, 1 clusters)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn validate_reports_every_error_with_line_and_field_path() {
    let dir = TempDir::new("cli");
    let bad = GOOD
        .replace(
            "    route_table: main\n",
            "    route_table: main\n    idle_timeout: forever\n",
        )
        .replace("cluster: backend", "cluster: nowhere")
        .replace(
            "  - name: backend\n",
            "  - name: backend\n    lb_policy: fastest\n",
        )
        .replace("port: 9000 }", "port: 9000, weight: 0 }");
    let path = file(&dir, "bad.yaml", &bad);
    let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let o = run_cli(&["validate", "-c", &path], T);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    no_panic(&o);
    for (field, needle) in [
        ("listeners[0].idle_timeout", "idle_timeout"),
        (
            "route_tables[0].virtual_hosts[0].routes[0].cluster",
            "cluster: nowhere",
        ),
        ("clusters[0].lb_policy", "lb_policy"),
        ("clusters[0].endpoints[0].weight", "weight: 0"),
    ] {
        let want = format!("line {}: {field}: ", line_of(needle));
        assert!(
            err.lines().any(|l| l.contains(&want)),
            "expected an error like `{want}` in:\n{err}"
        );
    }
    assert_eq!(
        err.lines().filter(|l| l.contains(": line ")).count(),
        4,
        "{err}"
    );
    assert!(
        err.lines().all(|l| l.starts_with(&path)),
        "each error names the file:\n{err}"
    );
}

#[test]
fn validate_reports_unknown_fields_and_syntax_errors_with_lines() {
    let dir = TempDir::new("cli");
    let unknown = GOOD.replace("    port: 10000\n", "    port: 10000\n    colour: red\n");
    let path = file(&dir, "unknown.yaml", &unknown);
    let o = run_cli(&["validate", "-c", &path], T);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("line 5: listeners[0].colour"), "{err}");

    let broken = GOOD.replace("domains: [\"*\"]", "domains: [\"*\"");
    let path = file(&dir, "broken.yaml", &broken);
    let o = run_cli(&["validate", "-c", &path], T);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("line "), "{err}");
    no_panic(&o);

    let wrong_type = GOOD.replace("port: 10000", "port: lots");
    let path = file(&dir, "type.yaml", &wrong_type);
    let o = run_cli(&["validate", "-c", &path], T);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("line 4: listeners[0].port"), "{err}");
}

#[test]
fn validate_missing_file() {
    let o = run_cli(&["validate", "-c", "/nonexistent/outrigger.yaml"], T);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
    no_panic(&o);
}

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

#[test]
fn every_shipped_config_file_validates() {
    let mut checked = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(config_dir())
        .expect("config/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        // tls.yaml needs certificates made for it: tests/tls.rs makes them and runs it.
        .filter(|p| !p.ends_with("tls.yaml"))
        .collect();
    entries.sort();
    for p in entries {
        let o = run_cli(&["validate", "-c", p.to_str().unwrap()], T);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{} is refused:\n{}",
            p.display(),
            stderr(&o)
        );
        checked += 1;
    }
    assert!(
        checked > 0,
        "no config files found in {}",
        config_dir().display()
    );
}

fn run_failure(args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let o = run_cli(args, T);
    let took = start.elapsed();
    assert!(
        !o.status.success(),
        "`outrigger {}` succeeded",
        args.join(" ")
    );
    no_panic(&o);
    (o, took)
}

#[test]
fn run_with_a_taken_listener_port_fails_with_one_line() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = TempDir::new("cli");
    let cfg = format!(
        "admin: {{ address: 127.0.0.1, port: {} }}\n{}",
        free_port(),
        GOOD.replace("port: 10000", &format!("port: {port}"))
    );
    let path = file(&dir, "taken.yaml", &cfg);
    let (o, took) = run_failure(&["run", "-c", &path, "--concurrency", "1"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "expected one line, got:\n{err}"
    );
    assert!(err.contains("cannot bind"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    drop(holder);
}

#[test]
fn run_with_a_taken_admin_port_fails_with_one_line() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = TempDir::new("cli");
    let cfg = format!(
        "admin: {{ address: 127.0.0.1, port: {port} }}\n{}",
        GOOD.replace("port: 10000", &format!("port: {}", free_port()))
    );
    let path = file(&dir, "admin.yaml", &cfg);
    let (o, _) = run_failure(&["run", "-c", &path, "--concurrency", "1"]);
    let err = stderr(&o);
    assert_eq!(
        err.trim().lines().count(),
        1,
        "expected one line, got:\n{err}"
    );
    assert!(
        err.contains("admin") && err.contains("cannot bind"),
        "{err}"
    );
    drop(holder);
}

#[test]
fn run_with_an_unresolvable_address_fails_clearly() {
    let dir = TempDir::new("cli");
    let cfg = GOOD
        .replace(
            "    address: 127.0.0.1\n    port: 10000",
            "    address: no-such-host.invalid\n    port: 10000",
        )
        .replace(
            "address: 127.0.0.1, port: 9000",
            "address: upstream.invalid, port: 9000",
        );
    let path = file(&dir, "dns.yaml", &cfg);
    let (o, took) = run_failure(&["run", "-c", &path, "--concurrency", "1"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(err.contains("listeners[0].address"), "{err}");
    assert!(err.contains("no-such-host.invalid"), "{err}");
    assert!(err.contains("clusters[0].endpoints[0].address"), "{err}");
    assert!(err.contains("upstream.invalid"), "{err}");
    // The same errors from validate.
    let o = run_cli(&["validate", "-c", &path], T);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("line 3: listeners[0].address"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn run_with_an_invalid_or_missing_file_fails_cleanly() {
    let dir = TempDir::new("cli");
    let path = file(
        &dir,
        "bad.yaml",
        &GOOD.replace("cluster: backend", "cluster: nowhere"),
    );
    let (o, _) = run_failure(&["run", "-c", &path, "--concurrency", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("routes[0].cluster"), "{}", stderr(&o));
    let (o, _) = run_failure(&["run", "-c", "/nonexistent/x.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
}

#[test]
fn one_line_mode_proxies() {
    let up = Upstream::echo();
    let upstream = up.addr.to_string();
    let proxy = Proxy::start_args(&[
        "run",
        "--listen",
        "127.0.0.1:@PORT@",
        "--upstream",
        &upstream,
        "--admin",
        "127.0.0.1:@ADMIN_PORT@",
        "--concurrency",
        "1",
    ]);
    let r = get(proxy.listen, "anything.example", "/one-line?x=1");
    assert_eq!(r.status, 200, "{}", r.body_str());
    assert!(Echoed::parse(&r.body)
        .text
        .contains("target: /one-line?x=1"));
    assert_eq!(up.request_count(), 1);
    assert_eq!(proxy.config_version(), 1);
    // Reloading an inline config re-applies the same flags.
    assert_eq!(proxy.reload().status, 200);
    assert_eq!(get(proxy.listen, "x", "/again").status, 200);
}
