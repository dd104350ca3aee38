//! STRICT_DNS and LOGICAL_DNS clusters resolve their names again every
//! `dns_refresh_rate`, and a change reaches the workers without a restart; Envoy 1.40
//! does the same with the same bootstrap.
//!
//! The names are entries this test writes into `/etc/hosts` (both the system resolver
//! Outrigger uses and Envoy's c-ares read it): a unique name per test, removed again
//! when the test ends. Writing `/etc/hosts` needs root, which CI has; elsewhere the tests
//! say they skip.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use common::envoy::{envoy_or_skip, hcm_head, Envoy, ROUTER_TYPE};
use common::*;

/// Serialises this binary's edits of `/etc/hosts` (read, change, write back).
static HOSTS: Mutex<()> = Mutex::new(());

/// A name in `/etc/hosts` that this test points at addresses of its choice; its lines
/// are removed on drop.
struct HostsName {
    name: String,
}

impl HostsName {
    /// `None` (and a note) where `/etc/hosts` cannot be written.
    fn new(tag: &str) -> Option<HostsName> {
        let name = format!("{tag}-{}.outrigger-dns.test", std::process::id());
        let h = HostsName { name };
        match h.try_set(&["127.0.0.2"]) {
            Ok(()) => Some(h),
            Err(e) => {
                eprintln!("SKIPPED: cannot write /etc/hosts ({e}); these tests need root");
                None
            }
        }
    }

    fn try_set(&self, ips: &[&str]) -> std::io::Result<()> {
        let _g = HOSTS.lock().unwrap_or_else(|e| e.into_inner());
        let text = std::fs::read_to_string("/etc/hosts")?;
        let mut out: String = text
            .lines()
            .filter(|l| !l.split_whitespace().skip(1).any(|n| n == self.name))
            .map(|l| format!("{l}\n"))
            .collect();
        for ip in ips {
            out.push_str(&format!("{ip} {}\n", self.name));
        }
        // In place: /etc/hosts may be a mount point that a rename cannot replace. Not
        // truncated first: a proxy of another test resolving its own name meanwhile
        // would read an empty file and lose its endpoints (this test flaked so, about
        // one run in six); the new text goes over the old in one write, then the file is
        // cut to its length.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open("/etc/hosts")?;
        f.write_all(out.as_bytes())?;
        f.set_len(out.len() as u64)
    }

    fn set(&self, ips: &[&str]) {
        self.try_set(ips).expect("write /etc/hosts");
    }
}

impl Drop for HostsName {
    fn drop(&mut self) {
        let _ = self.try_set(&[]);
    }
}

/// Two upstreams on one port, at 127.0.0.2 and 127.0.0.3, answering `A` and `B`.
fn two_upstreams() -> (Upstream, Upstream, u16) {
    for _ in 0..20 {
        let a = Upstream::start_on(
            "127.0.0.2:0".parse().unwrap(),
            fixed("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nA"),
        )
        .expect("bind 127.0.0.2");
        let port = a.addr.port();
        if let Ok(b) = Upstream::start_on(
            SocketAddr::from(([127, 0, 0, 3], port)),
            fixed("HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nB"),
        ) {
            return (a, b, port);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

/// The endpoint addresses `/clusters` (Envoy's text format) lists for `cluster`.
fn endpoints(admin: SocketAddr, cluster: &str) -> BTreeSet<String> {
    let r = http_request(admin, "GET", "/clusters", Duration::from_secs(2)).unwrap();
    let prefix = format!("{cluster}::");
    r.body_str()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| {
            let (addr, rest) = l.split_once("::")?;
            (rest.starts_with("cx_active::") && addr.parse::<SocketAddr>().is_ok())
                .then(|| addr.to_string())
        })
        .collect()
}

fn wait_endpoints(admin: SocketAddr, cluster: &str, want: &[String]) {
    let want: BTreeSet<String> = want.iter().cloned().collect();
    let got = wait_until(Duration::from_secs(10), || {
        (endpoints(admin, cluster) == want).then_some(())
    });
    assert!(
        got.is_some(),
        "{cluster}'s endpoints never became {want:?}: {:?}",
        endpoints(admin, cluster)
    );
}

/// The bodies of `n` requests, each on a connection of its own.
fn answers(listen: SocketAddr, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| {
            let r = get(listen, "a", "/");
            assert_eq!(r.status, 200, "{}", r.body_str());
            r.body_str()
        })
        .collect()
}

/// A counter from `/stats?format=text` (Envoy's `name: value` lines).
fn counter(admin: SocketAddr, name: &str) -> u64 {
    let r = http_request(
        admin,
        "GET",
        &format!("/stats?filter=^{}$", name.replace('.', "\\.")),
        Duration::from_secs(2),
    )
    .unwrap();
    r.body_str()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {}", r.body_str()))
}

/// The same bootstrap for both proxies: a STRICT_DNS or LOGICAL_DNS cluster `dns` on
/// `name:port`, refreshed every 100 ms, IPv4 only.
fn bootstrap(kind: &str, name: &str, port: u16) -> String {
    format!(
        r#"{head}          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: dns }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": {ROUTER_TYPE} }}
  clusters:
  - name: dns
    type: {kind}
    connect_timeout: 1s
    dns_refresh_rate: 0.1s
    dns_lookup_family: V4_ONLY
    load_assignment:
      cluster_name: dns
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: {name}, port_value: {port} }} }} }}
"#,
        head = hcm_head("", "ingress")
    )
}

#[test]
fn strict_dns_follows_the_name_without_a_restart() {
    let Some(hosts) = HostsName::new("strict") else {
        return;
    };
    let (_a, _b, port) = two_upstreams();
    let p = Proxy::start(&format!(
        "{HEADER}listeners:
  - name: main
    address: 127.0.0.1
    port: @PORT@
    route_table: main
route_tables:
  - name: main
    virtual_hosts:
      - name: all
        domains: [\"*\"]
        routes:
          - match: {{ prefix: / }}
            cluster: dns
clusters:
  - name: dns
    type: strict_dns
    dns_refresh_rate: 100ms
    dns_lookup_family: v4_only
    endpoints:
      - address: {name}
        port: {port}
",
        name = hosts.name
    ));
    let at = |ip: &str| format!("{ip}:{port}");
    // The first resolution came before the proxy was ready.
    assert_eq!(
        endpoints(p.admin, "dns"),
        [at("127.0.0.2")].into_iter().collect()
    );
    assert_eq!(answers(p.listen, 3), ["A".to_string()].into());
    let version = p.config_version();

    // One endpoint per address.
    hosts.set(&["127.0.0.2", "127.0.0.3"]);
    wait_endpoints(p.admin, "dns", &[at("127.0.0.2"), at("127.0.0.3")]);
    assert_eq!(
        answers(p.listen, 6),
        ["A".to_string(), "B".to_string()].into()
    );

    hosts.set(&["127.0.0.3"]);
    wait_endpoints(p.admin, "dns", &[at("127.0.0.3")]);
    assert_eq!(answers(p.listen, 3), ["B".to_string()].into());

    // Same process, newer config versions: published like an EDS update.
    assert!(p.config_version() >= version + 2);
    assert!(counter(p.admin, "cluster.dns.update_attempt") >= 3);
    assert!(counter(p.admin, "cluster.dns.update_success") >= 3);
    assert_eq!(counter(p.admin, "cluster.dns.update_failure"), 0);
    // Lookups that changed nothing: all but the three that did.
    let none = counter(p.admin, "cluster.dns.update_no_rebuild");
    assert!(none + 3 <= counter(p.admin, "cluster.dns.update_success"));
}

#[test]
fn logical_dns_takes_the_first_address_and_follows_it() {
    let Some(hosts) = HostsName::new("logical") else {
        return;
    };
    let (_a, _b, port) = two_upstreams();
    let p = Proxy::start(&bootstrap("LOGICAL_DNS", &hosts.name, port));
    let at = |ip: &str| format!("{ip}:{port}");
    assert_eq!(
        endpoints(p.admin, "dns"),
        [at("127.0.0.2")].into_iter().collect()
    );
    assert_eq!(answers(p.listen, 2), ["A".to_string()].into());
    hosts.set(&["127.0.0.3"]);
    wait_endpoints(p.admin, "dns", &[at("127.0.0.3")]);
    assert_eq!(answers(p.listen, 2), ["B".to_string()].into());
}

#[test]
fn dns_settings_are_checked() {
    let bad = [
        (
            "type: static\n    dns_refresh_rate: 1s\n",
            "clusters[0].dns_refresh_rate",
        ),
        (
            "type: strict_dns\n    dns_refresh_rate: 1ms\n",
            "clusters[0].dns_refresh_rate",
        ),
        (
            "type: strict_dns\n    dns_lookup_family: v5\n",
            "clusters[0].dns_lookup_family",
        ),
        (
            "type: strict_dns\n    dns_failure_refresh_rate: { base_interval: 2s, max_interval: 1s }\n",
            "clusters[0].dns_failure_refresh_rate.max_interval",
        ),
        (
            "type: logical_dns\n    endpoints:\n      - { address: localhost, port: 1 }\n      - { address: localhost, port: 2 }\n",
            "clusters[0].endpoints",
        ),
    ];
    for (fields, path) in bad {
        let config = format!(
            "listeners: []\nclusters:\n  - name: c\n    {fields}{}",
            if fields.contains("endpoints") {
                ""
            } else {
                "    endpoints:\n      - { address: localhost, port: 1 }\n"
            }
        );
        let dir = TempDir::new("dns-bad");
        let f = dir.join("c.yaml");
        write_atomic(&f, &config);
        let out = run_cli(
            &["validate", "-c", &f.display().to_string()],
            Duration::from_secs(10),
        );
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{config} was accepted");
        assert!(text.contains(path), "{config}: no {path} in {text}");
    }
}

/// The same bootstrap under Envoy 1.40 and Outrigger: the same endpoints, the requests
/// reach them, and the name is looked up again every `dns_refresh_rate` with the same
/// `update_*` counts (each lookup a success; all but the first change nothing). Envoy's
/// resolver (c-ares) caches `/etc/hosts`, so a changed entry does not reach it: the
/// change itself is checked natively above.
#[test]
fn strict_dns_parity_with_envoy() {
    let Some(envoy) = envoy_or_skip("strict_dns_parity_with_envoy") else {
        return;
    };
    let Some(hosts) = HostsName::new("parity") else {
        return;
    };
    let (_a, _b, port) = two_upstreams();
    let config = bootstrap("STRICT_DNS", &hosts.name, port);
    let e = Envoy::start(&envoy, &config);
    let p = Proxy::start(&config);
    let at = |ip: &str| format!("{ip}:{port}");
    for (admin, listen) in [(e.admin, e.listen), (p.admin, p.listen)] {
        wait_endpoints(admin, "dns", &[at("127.0.0.2")]);
        assert_eq!(answers(listen, 2), ["A".to_string()].into());
        let c = |n: &str| counter(admin, &format!("cluster.dns.{n}"));
        assert!(
            wait_until(Duration::from_secs(10), || (c("update_attempt") >= 5)
                .then_some(()))
            .is_some()
        );
        // Read in this order, a lookup finishing in between only raises the later ones.
        let (none, success, attempt) = (
            c("update_no_rebuild"),
            c("update_success"),
            c("update_attempt"),
        );
        assert!(
            attempt >= success && attempt <= success + 1,
            "{attempt} {success}"
        );
        assert!(
            none + 1 >= success.saturating_sub(1) && none < success,
            "{none} {success}"
        );
        assert_eq!(c("update_failure"), 0);
    }
}
