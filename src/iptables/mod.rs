//! `outrigger iptables`: the init step that makes the proxy a transparent sidecar
//! (Istio's istio-iptables, linkerd's proxy-init). Run once in the workload's network
//! namespace, before the workload starts, with CAP_NET_ADMIN; the proxy itself never
//! runs it. Not on the request path: the proxy only sees its effect (connections
//! arriving on the capture ports, with their original destination in SO_ORIGINAL_DST,
//! `listener/original_dst.rs`).
//!
//! `rules.rs` computes the rules; this file parses the flags, picks the iptables
//! backend (legacy or nft, as Istio picks it) and runs `iptables-save` and
//! `iptables-restore --noflush` for each address family, one transaction each.

pub mod rules;

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use rules::{Cidr, Family, Options, Set};

pub const USAGE: &str = "\
outrigger iptables [OPTIONS]: redirect the pod's TCP traffic to the sidecar (run in the
workload's network namespace, as root or with CAP_NET_ADMIN, before the workload starts)

  --proxy-port PORT               outbound capture port (default 15001)
  --inbound-capture-port PORT     inbound capture port (default 15006)
  --proxy-uid UID[,UID]           the proxy's user: never captured (default 1337)
  --proxy-gid GID[,GID]           the proxy's group: never captured (default: the UIDs)
  --admin-port PORT               the proxy's admin port: never captured inbound
  --include-inbound-ports P,..|*  inbound ports to capture (default *; empty: none)
  --exclude-inbound-ports P,..    inbound ports never captured
  --include-outbound-cidrs C,..|* outbound destinations to capture (default *)
  --exclude-outbound-cidrs C,..   outbound destinations never captured
  --include-outbound-ports P,..   outbound ports always captured
  --exclude-outbound-ports P,..   outbound ports never captured
  --no-ipv6                       leave ip6tables alone
  --iptables-backend auto|legacy|nft   (default auto: legacy if it has rules, else nft)
  --dry-run                       print the iptables-restore input, change nothing
  --cleanup                       remove the OUTRIGGER_* chains and the jumps to them

Docs: docs/interception.md";

/// The parsed command line.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    options: Options,
    ipv6: bool,
    backend: Backend,
    dry_run: bool,
    cleanup: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Auto,
    Legacy,
    Nft,
}

/// Runs `outrigger iptables` with the arguments after the subcommand; the exit code.
pub fn main(args: &[String]) -> u8 {
    let a = match parse(args) {
        Ok(a) => a,
        Err(m) => {
            eprintln!("outrigger iptables: {m}\n\n{USAGE}");
            return 2;
        }
    };
    let mut families = vec![Family::V4];
    if a.ipv6 {
        families.push(Family::V6);
    }
    for f in families {
        if let Err(m) = run_family(&a, f) {
            eprintln!("outrigger iptables: {m}");
            return 1;
        }
    }
    0
}

fn run_family(a: &Args, f: Family) -> Result<(), String> {
    let name = match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    };
    if a.dry_run && !a.cleanup {
        // Istio's dry run: the rules as they would go into a clean namespace, without
        // touching (or needing) iptables.
        let script = rules::apply_script(&rules::rules(&a.options, f), &Default::default());
        print!("# {name}: iptables-restore --noflush\n{script}");
        return Ok(());
    }
    let bin = detect(f, a.backend)?;
    let save = run(&format!("{bin}-save"), &["-t", "nat"], None)?;
    let now = rules::current(&save);
    let script = if a.cleanup {
        match rules::cleanup_script(&now) {
            Some(s) => s,
            None => {
                if a.dry_run {
                    println!("# {name}: nothing to clean up");
                }
                return Ok(());
            }
        }
    } else {
        rules::apply_script(&rules::rules(&a.options, f), &now)
    };
    if a.dry_run {
        print!("# {name}: {bin}-restore --noflush\n{script}");
        return Ok(());
    }
    run(&format!("{bin}-restore"), &["--noflush"], Some(&script))
        .map_err(|e| format!("{e}\ninput was:\n{script}"))?;
    Ok(())
}

/// The iptables binary family to use (`iptables-legacy`, `iptables-nft` or `iptables`,
/// `ip6tables-*` for IPv6), as Istio chooses: legacy when it already holds rules in
/// this namespace (someone set up the node with it), else nft when it works, else the
/// plain name.
fn detect(f: Family, backend: Backend) -> Result<String, String> {
    let base = match f {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    };
    let legacy = format!("{base}-legacy");
    let nft = format!("{base}-nft");
    let works = |bin: &str| run(&format!("{bin}-save"), &[], None);
    match backend {
        Backend::Legacy => works(&legacy).map(|_| legacy),
        Backend::Nft => works(&nft).map(|_| nft),
        Backend::Auto => {
            if works(&legacy).is_ok_and(|s| rules::has_rules(&s)) {
                return Ok(legacy);
            }
            if works(&nft).is_ok() {
                return Ok(nft);
            }
            works(base).map(|_| base.to_string()).map_err(|e| {
                format!("no usable {base} (tried {legacy}, {nft}, {base}): {e}; install iptables")
            })
        }
    }
}

/// Runs a command, feeding it `stdin`; its stdout, or an error with its stderr.
fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .map_err(|e| format!("{cmd}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        options: Options::default(),
        ipv6: true,
        backend: Backend::Auto,
        dry_run: false,
        cleanup: false,
    };
    let mut gids: Option<Vec<u32>> = None;
    // `--flag=value` (how Kubernetes manifests tend to write them) is `--flag value`.
    let split: Vec<String> = args
        .iter()
        .flat_map(|a| match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => vec![f.to_string(), v.to_string()],
            _ => vec![a.clone()],
        })
        .collect();
    let mut it = split.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let o = &mut a.options;
        match flag.as_str() {
            "--proxy-port" => o.outbound_port = port(flag, value()?)?,
            "--inbound-capture-port" => o.inbound_port = port(flag, value()?)?,
            "--proxy-uid" => o.proxy_uids = ids(flag, value()?)?,
            "--proxy-gid" => gids = Some(ids(flag, value()?)?),
            "--admin-port" => o.admin_port = Some(port(flag, value()?)?),
            "--include-inbound-ports" => {
                o.include_inbound_ports = set(value()?, |p| port(flag, p))?
            }
            "--exclude-inbound-ports" => {
                o.exclude_inbound_ports = list(value()?, |p| port(flag, p))?
            }
            "--include-outbound-cidrs" => {
                o.include_outbound_cidrs = set(value()?, |c| cidr(flag, c))?
            }
            "--exclude-outbound-cidrs" => {
                o.exclude_outbound_cidrs = list(value()?, |c| cidr(flag, c))?
            }
            "--include-outbound-ports" => {
                o.include_outbound_ports = list(value()?, |p| port(flag, p))?
            }
            "--exclude-outbound-ports" => {
                o.exclude_outbound_ports = list(value()?, |p| port(flag, p))?
            }
            "--no-ipv6" => a.ipv6 = false,
            "--iptables-backend" => {
                a.backend = match value()? {
                    "auto" => Backend::Auto,
                    "legacy" => Backend::Legacy,
                    "nft" => Backend::Nft,
                    other => return Err(format!("--iptables-backend: unknown `{other}`")),
                }
            }
            "--dry-run" => a.dry_run = true,
            "--cleanup" => a.cleanup = true,
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    // Istio: the GID defaults to the UID.
    a.options.proxy_gids = gids.unwrap_or_else(|| a.options.proxy_uids.clone());
    if a.options.outbound_port == a.options.inbound_port {
        return Err("--proxy-port and --inbound-capture-port must differ".into());
    }
    Ok(a)
}

fn port(flag: &str, v: &str) -> Result<u16, String> {
    match v.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{flag}: `{v}` is not a port (1..65535)")),
    }
}

fn ids(flag: &str, v: &str) -> Result<Vec<u32>, String> {
    list(v, |s| {
        s.parse::<u32>()
            .map_err(|_| format!("{flag}: `{s}` is not a numeric id"))
    })
}

fn cidr(flag: &str, v: &str) -> Result<Cidr, String> {
    let (addr, len) = v.split_once('/').unwrap_or((v, ""));
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{flag}: `{v}` is not ADDRESS/LEN"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = if len.is_empty() {
        max
    } else {
        match len.parse::<u8>() {
            Ok(l) if l <= max => l,
            _ => return Err(format!("{flag}: `{v}`: prefix length 0..{max}")),
        }
    };
    Ok(Cidr { addr, len })
}

fn list<T>(v: &str, one: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(one)
        .collect()
}

fn set<T>(v: &str, one: impl Fn(&str) -> Result<T, String>) -> Result<Set<T>, String> {
    if v.trim() == "*" {
        Ok(Set::All)
    } else {
        list(v, one).map(Set::Only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        let v: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse(&v)
    }

    #[test]
    fn flags_parse_as_istio_iptables_reads_them() {
        let a = args(
            "--proxy-uid 1000 --include-inbound-ports 80,8080 --exclude-outbound-cidrs \
             10.0.0.0/8,fd00::/8 --include-outbound-cidrs * --admin-port 15000 --dry-run",
        )
        .unwrap();
        assert_eq!(a.options.proxy_uids, [1000]);
        assert_eq!(a.options.proxy_gids, [1000]);
        assert_eq!(a.options.include_inbound_ports, Set::Only(vec![80, 8080]));
        assert_eq!(a.options.include_outbound_cidrs, Set::All);
        assert_eq!(a.options.exclude_outbound_cidrs.len(), 2);
        assert_eq!(a.options.admin_port, Some(15000));
        assert!(a.dry_run && a.ipv6);
        assert_eq!(
            args("--include-inbound-ports").unwrap_err(),
            "--include-inbound-ports needs a value"
        );
        assert!(args("--proxy-port 0").is_err());
        assert!(args("--exclude-outbound-cidrs 10.0.0.0/33").is_err());
        assert!(args("--proxy-port 15006").is_err());
        let none = parse(&["--include-inbound-ports".into(), String::new()]).unwrap();
        assert_eq!(none.options.include_inbound_ports, Set::Only(vec![]));
        let none = parse(&["--include-inbound-ports=".into(), "--proxy-uid=7".into()]).unwrap();
        assert_eq!(none.options.proxy_gids, [7]);
        assert_eq!(none.options.include_inbound_ports, Set::Only(vec![]));
    }
}
