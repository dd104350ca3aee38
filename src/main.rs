//! The `outrigger` command line.

use std::process::ExitCode;

use outrigger::config;

/// mimalloc (Cargo.toml says why). A build with `alloc-count` keeps the library's
/// counting allocator instead: a program has one.
#[cfg(not(feature = "alloc-count"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use outrigger::runtime::{self, control::ConfigSource};

const USAGE: &str = "\
outrigger: a thread-per-core service-mesh sidecar proxy

USAGE:
  outrigger run -c FILE [--concurrency N] [--state-dir DIR]
  outrigger run --control IP:PORT --workload NAME.NAMESPACE [--token-file FILE]
                 [--admin IP:PORT] [--sotw] [--capture] [--concurrency N] [--state-dir DIR]
                 [--control-ca FILE [--control-name NAME]]
  outrigger run --listen HOST:PORT --upstream HOST:PORT [--admin HOST:PORT]
                 [--upstream-protocol http1|http2|downstream] [--tcp] [--concurrency N]
                 [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
                 [--upstream-tls-ca FILE [--upstream-tls-cert FILE --upstream-tls-key FILE]
                  [--upstream-sni NAME]]
  outrigger validate -c FILE
  outrigger iptables [OPTIONS]   (capture the pod's traffic; `outrigger iptables --help`)
  outrigger control --dir DIR    (the mesh's control plane; `outrigger control --help`)
  outrigger demo
  outrigger --version

FILE is the native YAML format or an Envoy v3 Bootstrap (YAML or JSON), told apart by
its top-level keys; see docs/envoy-api.md for the supported Envoy fields.
One-line TLS: --tls-cert/--tls-key terminate TLS on the listener (ALPN h2, http/1.1);
--tls-client-ca requires a client certificate from that CA (mutual TLS).
--upstream-tls-ca originates TLS to the upstream, verified against that CA;
--upstream-tls-cert/--upstream-tls-key are the proxy's client certificate;
--upstream-sni is sent as SNI and must be a DNS name in the upstream's certificate.
--control: a sidecar of `outrigger control` at IP:PORT, with no bootstrap file: the
node is the WorkloadEntry NAME.NAMESPACE, ADS is delta (--sotw: state of the world), the
token in FILE goes on the stream (`authorization: Bearer`), admin on 127.0.0.1:15000;
--capture: iptables captures the pod's traffic (`outrigger iptables`), so the control
plane sends istiod's 15001/15006 capture listeners; --control-ca: ADS over TLS (the
control plane's --xds-tls port), the control plane's certificate checked against the
mesh root in FILE and for the DNS name --control-name (default istiod.istio-system.svc).
--state-dir DIR: with an xDS bootstrap, keep the last accepted dynamic config in DIR and
serve it at start when the management server cannot be reached (default: off).
Signals: SIGHUP reloads the config file; SIGTERM/SIGINT drain and exit.
Docs: docs/configuration.md, docs/operations.md";

struct Args {
    cmd: String,
    config: Option<String>,
    concurrency: Option<usize>,
    listen: Option<String>,
    upstream: Option<String>,
    admin: Option<String>,
    tcp: bool,
    upstream_protocol: Option<String>,
    state_dir: Option<String>,
    control: Option<String>,
    workload: Option<String>,
    token_file: Option<String>,
    control_ca: Option<String>,
    control_name: Option<String>,
    sotw: bool,
    capture: bool,
    /// The one-line TLS flags, by flag name (`--tls-cert` ...).
    tls: Vec<(&'static str, String)>,
}

/// The one-line mode's TLS flags, each taking a file or a name.
const TLS_FLAGS: [&str; 7] = [
    "--tls-cert",
    "--tls-key",
    "--tls-client-ca",
    "--upstream-tls-ca",
    "--upstream-tls-cert",
    "--upstream-tls-key",
    "--upstream-sni",
];

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let cmd = it.next().ok_or_else(|| USAGE.to_string())?;
    let mut a = Args {
        cmd,
        config: None,
        concurrency: None,
        listen: None,
        upstream: None,
        admin: None,
        tcp: false,
        upstream_protocol: None,
        state_dir: None,
        control: None,
        workload: None,
        token_file: None,
        control_ca: None,
        control_name: None,
        sotw: false,
        capture: false,
        tls: Vec::new(),
    };
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "-c" | "--config" => a.config = Some(value("-c")?),
            "--concurrency" => {
                let v = value("--concurrency")?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--concurrency: `{v}` is not a number"))?;
                if n == 0 {
                    return Err("--concurrency must be at least 1".into());
                }
                a.concurrency = Some(n);
            }
            "--listen" => a.listen = Some(value("--listen")?),
            "--upstream" => a.upstream = Some(value("--upstream")?),
            "--admin" => a.admin = Some(value("--admin")?),
            "--tcp" => a.tcp = true,
            "--state-dir" => a.state_dir = Some(value("--state-dir")?),
            "--control" => a.control = Some(value("--control")?),
            "--workload" => a.workload = Some(value("--workload")?),
            "--token-file" => a.token_file = Some(value("--token-file")?),
            "--control-ca" => a.control_ca = Some(value("--control-ca")?),
            "--control-name" => a.control_name = Some(value("--control-name")?),
            "--sotw" => a.sotw = true,
            "--capture" => a.capture = true,
            "--upstream-protocol" => a.upstream_protocol = Some(value("--upstream-protocol")?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            f => match TLS_FLAGS.iter().find(|t| **t == f) {
                Some(name) => {
                    if a.tls.iter().any(|(n, _)| n == name) {
                        return Err(format!("{name} given twice"));
                    }
                    let v = value(name)?;
                    a.tls.push((name, v));
                }
                None => return Err(format!("unknown argument `{f}`\n\n{USAGE}")),
            },
        }
    }
    Ok(a)
}

fn init_tracing() {
    outrigger::observe::log_levels::init();
}

impl Args {
    fn tls(&self, name: &str) -> Option<&str> {
        self.tls
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn source_for_run(a: &Args) -> Result<ConfigSource, String> {
    if let Some(control) = &a.control {
        if a.config.is_some() || a.listen.is_some() || a.upstream.is_some() || !a.tls.is_empty() {
            return Err("--control takes the config from the control plane: no -c, --listen, --upstream or TLS flags".into());
        }
        let workload = a
            .workload
            .as_deref()
            .ok_or("--control needs --workload NAME.NAMESPACE")?;
        return outrigger::mesh::boot::bootstrap(&outrigger::mesh::boot::Flags {
            control,
            workload,
            token_file: a.token_file.as_deref(),
            control_ca: a.control_ca.as_deref(),
            control_name: a.control_name.as_deref(),
            admin: a.admin.as_deref(),
            sotw: a.sotw,
            capture: a.capture,
        })
        .map(ConfigSource::Inline);
    }
    if a.workload.is_some()
        || a.token_file.is_some()
        || a.control_ca.is_some()
        || a.control_name.is_some()
        || a.sotw
        || a.capture
    {
        return Err("--workload, --token-file, --control-ca, --control-name, --sotw and --capture go with --control".into());
    }
    if let (Some(_), Some((name, _))) = (&a.config, a.tls.first()) {
        return Err(format!(
            "{name} is a one-line flag: put TLS in the config file (tls: on a filter chain or cluster)"
        ));
    }
    match (&a.config, &a.listen, &a.upstream) {
        (Some(path), None, None) => Ok(ConfigSource::File(path.clone())),
        (None, Some(l), Some(u)) => Ok(ConfigSource::Inline(config::oneline::config_text(
            &config::oneline::Flags {
                listen: l,
                upstream: u,
                admin: a.admin.as_deref(),
                tcp: a.tcp,
                upstream_protocol: a.upstream_protocol.as_deref(),
                tls_cert: a.tls("--tls-cert"),
                tls_key: a.tls("--tls-key"),
                tls_client_ca: a.tls("--tls-client-ca"),
                upstream_tls_ca: a.tls("--upstream-tls-ca"),
                upstream_tls_cert: a.tls("--upstream-tls-cert"),
                upstream_tls_key: a.tls("--upstream-tls-key"),
                upstream_sni: a.tls("--upstream-sni"),
            },
        )?)),
        (None, Some(_), None) => Err("--listen needs --upstream".into()),
        (None, None, Some(_)) => Err("--upstream needs --listen".into()),
        (Some(_), _, _) => Err("use either -c FILE or --listen/--upstream, not both".into()),
        (None, None, None) => Err(format!(
            "run needs -c FILE or --listen/--upstream\n\n{USAGE}"
        )),
    }
}

fn main() -> ExitCode {
    // `iptables` has flags of its own (the init container's step, not the proxy's).
    let all: Vec<String> = std::env::args().skip(1).collect();
    if let Some(("iptables", rest)) = all.split_first().map(|(c, r)| (c.as_str(), r)) {
        if rest.iter().any(|a| a == "-h" || a == "--help") {
            println!("{}", outrigger::iptables::USAGE);
            return ExitCode::SUCCESS;
        }
        return ExitCode::from(outrigger::iptables::main(rest));
    }
    // `control`: the control plane (src/mesh), with flags of its own.
    if let Some(("control", rest)) = all.split_first().map(|(c, r)| (c.as_str(), r)) {
        if rest.iter().any(|a| a == "-h" || a == "--help") {
            println!("{}", outrigger::mesh::USAGE);
            return ExitCode::SUCCESS;
        }
        init_tracing();
        return ExitCode::from(outrigger::mesh::main(rest));
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match args.cmd.as_str() {
        "--version" | "version" => {
            println!("outrigger {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        "validate" => {
            // Warnings (an optional Envoy HTTP filter skipped) go to stderr.
            init_tracing();
            let Some(path) = args.config else {
                eprintln!("validate needs -c FILE");
                return ExitCode::from(2);
            };
            match config::load_file(&path) {
                Ok(s) => {
                    println!(
                        "{path}: ok ({} listeners, {} route tables, {} clusters)",
                        s.listeners.len(),
                        s.route_tables.len(),
                        s.clusters.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    for e in &errors.0 {
                        eprintln!("{path}: {e}");
                    }
                    ExitCode::from(1)
                }
            }
        }
        "run" => {
            init_tracing();
            let source = match source_for_run(&args) {
                Ok(s) => s,
                Err(msg) => {
                    eprintln!("outrigger: {msg}");
                    return ExitCode::from(2);
                }
            };
            let state_dir = args.state_dir.map(std::path::PathBuf::from);
            exit(runtime::run(source, args.concurrency, state_dir))
        }
        "demo" => {
            init_tracing();
            if let Err(e) = outrigger::demo::start_upstream(outrigger::demo::DEMO_UPSTREAM) {
                eprintln!(
                    "outrigger: cannot start the demo upstream on {}: {e}",
                    outrigger::demo::DEMO_UPSTREAM
                );
                return ExitCode::from(1);
            }
            println!(
                "Outrigger demo: proxy on 127.0.0.1:10000 -> built-in upstream on {}\n\
                 try:\n  curl -i http://127.0.0.1:10000/hello\n  curl -i http://127.0.0.1:10000/healthz\n  \
                 curl http://127.0.0.1:9901/stats/prometheus\n  curl http://127.0.0.1:9901/config_dump\n\
                 Ctrl-C drains and exits.",
                outrigger::demo::DEMO_UPSTREAM
            );
            exit(runtime::run(
                ConfigSource::Inline(outrigger::demo::DEMO_CONFIG.to_string()),
                args.concurrency,
                None,
            ))
        }
        other => {
            eprintln!("unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn exit(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("outrigger: {msg}");
            ExitCode::from(1)
        }
    }
}
