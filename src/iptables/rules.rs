//! The rules `outrigger iptables` installs, as iptables-restore input: pure functions
//! from the options (and, for idempotence and cleanup, the current `iptables-save`
//! output) to text. Nothing here runs a command.
//!
//! The rule set is Istio's sidecar capture (istio-iptables, REDIRECT mode) with our own
//! chain names, in the `nat` table of each address family:
//!
//! ```text
//! PREROUTING ─► OUTRIGGER_INBOUND ─► excluded ports: RETURN; else OUTRIGGER_IN_REDIRECT
//!                                    (REDIRECT to the inbound capture port, 15006)
//! OUTPUT ─► OUTRIGGER_OUTPUT ─► excluded ports and CIDRs, the proxy's own UID/GID,
//!                               loopback: RETURN; else OUTRIGGER_REDIRECT (REDIRECT to
//!                               the outbound capture port, 15001)
//! ```
//!
//! Loopback is handled as Istio does: the proxy's own connections to a local address
//! other than 127.0.0.1 (a workload calling its own pod IP through the proxy) go to the
//! inbound capture port; connections from 127.0.0.6 (the source the inbound passthrough
//! binds, so the proxy's delivery to the workload is not captured again) and everything
//! else on `lo` that is not the proxy's pass untouched.

use std::net::IpAddr;

/// Every chain this tool creates starts with this; cleanup removes exactly these chains
/// and the jumps to them.
pub const CHAIN_PREFIX: &str = "OUTRIGGER_";
pub const INBOUND: &str = "OUTRIGGER_INBOUND";
pub const IN_REDIRECT: &str = "OUTRIGGER_IN_REDIRECT";
pub const OUTPUT: &str = "OUTRIGGER_OUTPUT";
pub const REDIRECT: &str = "OUTRIGGER_REDIRECT";
const ALL_CHAINS: [&str; 4] = [INBOUND, REDIRECT, IN_REDIRECT, OUTPUT];

/// IPv4 (`iptables`) or IPv6 (`ip6tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn localhost(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1/32",
            Family::V6 => "::1/128",
        }
    }

    /// The source address the inbound passthrough binds (Istio's 127.0.0.6 / ::6).
    fn inbound_passthrough_source(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.6/32",
            Family::V6 => "::6/128",
        }
    }

    fn holds(self, ip: IpAddr) -> bool {
        matches!(
            (self, ip),
            (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_))
        )
    }
}

/// A list that may be the wildcard `*` (Istio's `-b '*'`, `-i '*'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Set<T> {
    All,
    Only(Vec<T>),
}

impl<T> Set<T> {
    fn is_empty(&self) -> bool {
        matches!(self, Set::Only(v) if v.is_empty())
    }
}

/// An address range, `ADDR/LEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// What to capture; the flags of `outrigger iptables` (docs/interception.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Outbound capture port (Istio's `-p`, 15001).
    pub outbound_port: u16,
    /// Inbound capture port (Istio's `-z`, 15006).
    pub inbound_port: u16,
    /// The proxy's UIDs and GIDs: their traffic is never captured (`-u`, `-g`).
    pub proxy_uids: Vec<u32>,
    pub proxy_gids: Vec<u32>,
    /// Inbound ports to capture (`-b`); `Only(vec![])` turns inbound capture off.
    pub include_inbound_ports: Set<u16>,
    /// Inbound ports never captured (`-d`); the admin port is added.
    pub exclude_inbound_ports: Vec<u16>,
    /// The proxy's admin port: never captured inbound.
    pub admin_port: Option<u16>,
    /// Outbound destinations to capture (`-i`); `Only(vec![])`: none by CIDR.
    pub include_outbound_cidrs: Set<Cidr>,
    /// Outbound destinations never captured (`-x`).
    pub exclude_outbound_cidrs: Vec<Cidr>,
    /// Outbound ports always captured (`-q`), whatever the CIDRs say.
    pub include_outbound_ports: Vec<u16>,
    /// Outbound ports never captured (`-o`).
    pub exclude_outbound_ports: Vec<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            outbound_port: 15001,
            inbound_port: 15006,
            proxy_uids: vec![1337],
            proxy_gids: vec![1337],
            include_inbound_ports: Set::All,
            exclude_inbound_ports: Vec::new(),
            admin_port: None,
            include_outbound_cidrs: Set::All,
            exclude_outbound_cidrs: Vec::new(),
            include_outbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
        }
    }
}

/// The rules of one family: what goes in each chain, and the jumps from the built-in
/// chains. Each rule is the text after `-A CHAIN `.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RuleSet {
    /// (chain, rule), in order.
    pub rules: Vec<(&'static str, String)>,
    /// (built-in chain, rule): the entry points into our chains.
    pub jumps: Vec<(&'static str, String)>,
}

impl RuleSet {
    /// Our chains that have rules or are jumped to.
    fn chains(&self) -> Vec<&'static str> {
        ALL_CHAINS
            .into_iter()
            .filter(|c| self.rules.iter().any(|(r, _)| r == c))
            .collect()
    }
}

/// The rules for `family` (Istio's order, so its documentation reads across).
pub fn rules(o: &Options, family: Family) -> RuleSet {
    let mut s = RuleSet::default();
    let mut add = |chain, rule: String| s.rules.push((chain, rule));
    let inbound = !o.include_inbound_ports.is_empty();
    let redirect_to = |port: u16| format!("-p tcp -j REDIRECT --to-ports {port}");
    add(REDIRECT, redirect_to(o.outbound_port));
    if inbound {
        add(IN_REDIRECT, redirect_to(o.inbound_port));
    }

    // Inbound.
    let mut jumps = Vec::new();
    if inbound {
        jumps.push(("PREROUTING", format!("-p tcp -j {INBOUND}")));
        match &o.include_inbound_ports {
            Set::All => {
                // The admin port and the capture ports themselves are never redirected.
                let mut skip: Vec<u16> = o.exclude_inbound_ports.clone();
                skip.extend(o.admin_port);
                skip.push(o.outbound_port);
                skip.push(o.inbound_port);
                skip.sort_unstable();
                skip.dedup();
                for p in skip {
                    add(INBOUND, format!("-p tcp --dport {p} -j RETURN"));
                }
                add(INBOUND, format!("-p tcp -j {IN_REDIRECT}"));
            }
            Set::Only(ports) => {
                for p in ports {
                    if !o.exclude_inbound_ports.contains(p) && Some(*p) != o.admin_port {
                        add(INBOUND, format!("-p tcp --dport {p} -j {IN_REDIRECT}"));
                    }
                }
            }
        }
    }

    // Outbound.
    jumps.push(("OUTPUT", format!("-p tcp -j {OUTPUT}")));
    for p in &o.exclude_outbound_ports {
        add(OUTPUT, format!("-p tcp --dport {p} -j RETURN"));
    }
    let lo = family.localhost();
    add(
        OUTPUT,
        format!("-s {} -o lo -j RETURN", family.inbound_passthrough_source()),
    );
    for (kind, ids) in [("uid", &o.proxy_uids), ("gid", &o.proxy_gids)] {
        for id in ids {
            if inbound {
                // The proxy calling a local address that is not localhost: the
                // workload reaching itself through its service goes through inbound.
                add(
                    OUTPUT,
                    format!("! -d {lo} -o lo -p tcp -m owner --{kind}-owner {id} -j {IN_REDIRECT}"),
                );
            }
            // Anything else on loopback that is not the proxy's: the workload talking
            // to itself, untouched.
            add(
                OUTPUT,
                format!("-o lo -m owner ! --{kind}-owner {id} -j RETURN"),
            );
            // The proxy's own connections are never captured (loop safety).
            add(OUTPUT, format!("-m owner --{kind}-owner {id} -j RETURN"));
        }
    }
    add(OUTPUT, format!("-d {lo} -j RETURN"));
    for p in &o.include_outbound_ports {
        add(OUTPUT, format!("-p tcp --dport {p} -j {REDIRECT}"));
    }
    for c in o
        .exclude_outbound_cidrs
        .iter()
        .filter(|c| family.holds(c.addr))
    {
        add(OUTPUT, format!("-d {c} -j RETURN"));
    }
    match &o.include_outbound_cidrs {
        Set::All => add(OUTPUT, format!("-j {REDIRECT}")),
        Set::Only(cidrs) => {
            for c in cidrs.iter().filter(|c| family.holds(c.addr)) {
                add(OUTPUT, format!("-d {c} -j {REDIRECT}"));
            }
        }
    }
    s.jumps = jumps;
    s
}

/// What `iptables-save -t nat` shows of our rules.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Current {
    /// Our chains that exist.
    pub chains: Vec<String>,
    /// Jumps into our chains from chains that are not ours: (chain, rule).
    pub jumps: Vec<(String, String)>,
}

/// Reads our chains and the jumps into them from `iptables-save` output (all tables;
/// only `nat` is looked at).
pub fn current(save: &str) -> Current {
    let mut c = Current::default();
    let mut nat = false;
    for line in save.lines() {
        let line = line.trim();
        if let Some(table) = line.strip_prefix('*') {
            nat = table.trim() == "nat";
            continue;
        }
        if !nat {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or("");
            if name.starts_with(CHAIN_PREFIX) {
                c.chains.push(name.to_string());
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let Some((chain, spec)) = rule.split_once(' ') else {
                continue;
            };
            let target = spec.split_whitespace().skip_while(|w| *w != "-j").nth(1);
            if !chain.starts_with(CHAIN_PREFIX)
                && target.is_some_and(|t| t.starts_with(CHAIN_PREFIX))
            {
                c.jumps.push((chain.to_string(), spec.to_string()));
            }
        }
    }
    c
}

/// Whether `save` shows any rule or user chain at all (Istio's "existing rules" test
/// when it chooses between the legacy and nft backends).
pub fn has_rules(save: &str) -> bool {
    save.lines().any(|l| {
        l.starts_with("-A ")
            || l.strip_prefix(':')
                .and_then(|d| d.split_whitespace().next())
                .is_some_and(|n| !BUILTIN.contains(&n))
    })
}

const BUILTIN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// iptables-restore input (for `--noflush`) that takes the `nat` table from `now` to
/// `want`: jumps we no longer want are deleted and missing ones added (a jump already
/// in place stays where it is), our chains are declared (which creates or flushes
/// them) and filled, and chains of ours that are no longer used are deleted. Applying
/// it twice gives the same table: the tool is idempotent.
pub fn apply_script(want: &RuleSet, now: &Current) -> String {
    let mut out = String::from("*nat\n");
    for (chain, spec) in &now.jumps {
        if !want.jumps.iter().any(|(c, s)| c == chain && s == spec) {
            out.push_str(&format!("-D {chain} {spec}\n"));
        }
    }
    let chains = want.chains();
    for c in &chains {
        out.push_str(&format!(":{c} - [0:0]\n"));
    }
    let stale: Vec<&String> = now
        .chains
        .iter()
        .filter(|c| !chains.contains(&c.as_str()))
        .collect();
    for c in &stale {
        out.push_str(&format!("-F {c}\n"));
    }
    for c in &stale {
        out.push_str(&format!("-X {c}\n"));
    }
    for (chain, rule) in &want.rules {
        out.push_str(&format!("-A {chain} {rule}\n"));
    }
    for (chain, spec) in &want.jumps {
        if !now.jumps.iter().any(|(c, s)| c == chain && s == spec) {
            out.push_str(&format!("-A {chain} {spec}\n"));
        }
    }
    out.push_str("COMMIT\n");
    out
}

/// iptables-restore input that removes every jump into our chains and the chains;
/// `None` when there is nothing of ours.
pub fn cleanup_script(now: &Current) -> Option<String> {
    if now.chains.is_empty() && now.jumps.is_empty() {
        return None;
    }
    let mut out = String::from("*nat\n");
    for (chain, spec) in &now.jumps {
        out.push_str(&format!("-D {chain} {spec}\n"));
    }
    // Flush all first: our chains jump to each other.
    for c in &now.chains {
        out.push_str(&format!("-F {c}\n"));
    }
    for c in &now.chains {
        out.push_str(&format!("-X {c}\n"));
    }
    out.push_str("COMMIT\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        let (a, l) = s.split_once('/').unwrap();
        Cidr {
            addr: a.parse().unwrap(),
            len: l.parse().unwrap(),
        }
    }

    #[test]
    fn defaults_capture_everything_but_the_proxy_and_loopback() {
        let o = Options {
            admin_port: Some(15000),
            exclude_inbound_ports: vec![22],
            ..Options::default()
        };
        let s = apply_script(&rules(&o, Family::V4), &Current::default());
        let want = "\
*nat
:OUTRIGGER_INBOUND - [0:0]
:OUTRIGGER_REDIRECT - [0:0]
:OUTRIGGER_IN_REDIRECT - [0:0]
:OUTRIGGER_OUTPUT - [0:0]
-A OUTRIGGER_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A OUTRIGGER_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A OUTRIGGER_INBOUND -p tcp --dport 22 -j RETURN
-A OUTRIGGER_INBOUND -p tcp --dport 15000 -j RETURN
-A OUTRIGGER_INBOUND -p tcp --dport 15001 -j RETURN
-A OUTRIGGER_INBOUND -p tcp --dport 15006 -j RETURN
-A OUTRIGGER_INBOUND -p tcp -j OUTRIGGER_IN_REDIRECT
-A OUTRIGGER_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
-A OUTRIGGER_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --uid-owner 1337 -j OUTRIGGER_IN_REDIRECT
-A OUTRIGGER_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A OUTRIGGER_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A OUTRIGGER_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --gid-owner 1337 -j OUTRIGGER_IN_REDIRECT
-A OUTRIGGER_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A OUTRIGGER_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A OUTRIGGER_OUTPUT -d 127.0.0.1/32 -j RETURN
-A OUTRIGGER_OUTPUT -j OUTRIGGER_REDIRECT
-A PREROUTING -p tcp -j OUTRIGGER_INBOUND
-A OUTPUT -p tcp -j OUTRIGGER_OUTPUT
COMMIT
";
        assert_eq!(s, want);
    }

    #[test]
    fn ipv6_cidrs_ports_and_no_inbound() {
        let o = Options {
            include_inbound_ports: Set::Only(vec![]),
            include_outbound_cidrs: Set::Only(vec![cidr("10.0.0.0/8"), cidr("fd00::/8")]),
            exclude_outbound_cidrs: vec![cidr("fd00:1::/32"), cidr("10.1.0.0/16")],
            exclude_outbound_ports: vec![5432],
            include_outbound_ports: vec![8080],
            proxy_gids: vec![],
            ..Options::default()
        };
        let r = rules(&o, Family::V6);
        assert_eq!(
            r.jumps,
            [("OUTPUT", "-p tcp -j OUTRIGGER_OUTPUT".to_string())]
        );
        let text: Vec<String> = r.rules.iter().map(|(c, s)| format!("{c} {s}")).collect();
        assert_eq!(
            text,
            [
                "OUTRIGGER_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
                "OUTRIGGER_OUTPUT -p tcp --dport 5432 -j RETURN",
                "OUTRIGGER_OUTPUT -s ::6/128 -o lo -j RETURN",
                "OUTRIGGER_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN",
                "OUTRIGGER_OUTPUT -m owner --uid-owner 1337 -j RETURN",
                "OUTRIGGER_OUTPUT -d ::1/128 -j RETURN",
                "OUTRIGGER_OUTPUT -p tcp --dport 8080 -j OUTRIGGER_REDIRECT",
                "OUTRIGGER_OUTPUT -d fd00:1::/32 -j RETURN",
                "OUTRIGGER_OUTPUT -d fd00::/8 -j OUTRIGGER_REDIRECT",
            ]
        );
    }

    const SAVED: &str = "\
# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
-A INPUT -j OUTRIGGER_NOT_NAT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-X - [0:0]
:OUTRIGGER_INBOUND - [0:0]
:OUTRIGGER_OUTPUT - [0:0]
-A PREROUTING -p tcp -j OUTRIGGER_INBOUND
-A OUTPUT -p tcp -j KUBE-X
-A OUTPUT -p tcp -j OUTRIGGER_OUTPUT
-A OUTRIGGER_OUTPUT -j OUTRIGGER_REDIRECT
COMMIT
";

    #[test]
    fn reads_our_chains_and_jumps_from_a_save() {
        let c = current(SAVED);
        assert_eq!(c.chains, ["OUTRIGGER_INBOUND", "OUTRIGGER_OUTPUT"]);
        assert_eq!(
            c.jumps,
            [
                ("PREROUTING".into(), "-p tcp -j OUTRIGGER_INBOUND".into()),
                ("OUTPUT".into(), "-p tcp -j OUTRIGGER_OUTPUT".into())
            ]
        );
        assert!(has_rules(SAVED));
        assert!(!has_rules("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"));
        // Odd input never panics.
        for odd in ["-A", "-A X", ":", "*", "-A OUTPUT -j", "*nat\n-A X -j\n:"] {
            let _ = current(odd);
            let _ = has_rules(odd);
        }
    }

    #[test]
    fn applying_over_our_own_rules_keeps_the_jumps_and_drops_stale_chains() {
        let o = Options {
            include_inbound_ports: Set::Only(vec![]),
            ..Options::default()
        };
        let s = apply_script(&rules(&o, Family::V4), &current(SAVED));
        assert!(
            s.contains("-D PREROUTING -p tcp -j OUTRIGGER_INBOUND\n"),
            "{s}"
        );
        assert!(
            s.contains("-F OUTRIGGER_INBOUND\n-X OUTRIGGER_INBOUND\n"),
            "{s}"
        );
        assert!(!s.contains("-A OUTPUT -p tcp -j OUTRIGGER_OUTPUT"), "{s}");
        assert!(!s.contains("KUBE"), "{s}");
    }

    #[test]
    fn cleanup_removes_exactly_ours() {
        let s = cleanup_script(&current(SAVED)).unwrap();
        assert_eq!(
            s,
            "*nat\n-D PREROUTING -p tcp -j OUTRIGGER_INBOUND\n-D OUTPUT -p tcp -j OUTRIGGER_OUTPUT\n\
             -F OUTRIGGER_INBOUND\n-F OUTRIGGER_OUTPUT\n-X OUTRIGGER_INBOUND\n-X OUTRIGGER_OUTPUT\nCOMMIT\n"
        );
        assert_eq!(cleanup_script(&Current::default()), None);
    }
}
