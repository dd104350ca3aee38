//! Route-matching micro-benchmarks: virtual-host selection and route lookup on tables
//! of realistic size (the case: 100 virtual hosts x 10 routes).
//!
//! `cargo bench --bench route_match` (add `-- --quick` for a fast smoke run). Figures:
//! docs/benchmarks/route-match.md.

mod support;

use outrigger::config::{parse_str, DomainMatch, RouteTable, VirtualHost};
use outrigger::http::router::{host_without_port, resolve, route, select, Request};

/// The virtual-host lookup this router had before (git 80b2551, `router::virtual_host`):
/// a linear scan over every domain of every virtual host, keeping the best rank. Kept
/// here as the baseline the hash maps are measured against.
fn linear_virtual_host<'t>(table: &'t RouteTable, host: &[u8]) -> Option<&'t VirtualHost> {
    let ends =
        |s: &[u8], x: &[u8]| s.len() >= x.len() && s[s.len() - x.len()..].eq_ignore_ascii_case(x);
    let starts = |s: &[u8], x: &[u8]| s.len() >= x.len() && s[..x.len()].eq_ignore_ascii_case(x);
    let mut best: Option<(&VirtualHost, u8, usize)> = None;
    for vh in &table.virtual_hosts {
        for d in &vh.domains {
            let cand = match d {
                DomainMatch::Exact(e) if host.eq_ignore_ascii_case(e.as_bytes()) => {
                    return Some(vh)
                }
                DomainMatch::Suffix(s) if host.len() > s.len() && ends(host, s.as_bytes()) => {
                    (2, s.len())
                }
                DomainMatch::Prefix(p) if host.len() > p.len() && starts(host, p.as_bytes()) => {
                    (1, p.len())
                }
                DomainMatch::Any => (0, 0),
                _ => continue,
            };
            if best.is_none_or(|(_, r, l)| (cand.0, cand.1) > (r, l)) {
                best = Some((vh, cand.0, cand.1));
            }
        }
    }
    best.map(|(vh, _, _)| vh)
}

/// A table with `hosts` virtual hosts of `routes` prefix routes each (the last one with a
/// header matcher), plus a catch-all.
fn table_yaml(hosts: usize, routes: usize) -> String {
    let mut y = String::from("route_tables:\n  - name: t\n    virtual_hosts:\n");
    for h in 0..hosts {
        y.push_str(&format!(
            "      - name: vh{h}\n        domains: [svc{h}.default.svc.cluster.local, '*.svc{h}.example.com', 'svc{h}.*']\n        routes:\n"
        ));
        for r in 0..routes {
            y.push_str(&format!(
                "          - match: {{ prefix: /api/v{r}/ }}\n            direct_response: {{ status: 200 }}\n"
            ));
        }
        y.push_str(
            "          - match: { prefix: /h, headers: [{ name: x-tenant, string_match: { prefix: team- } }] }\n            direct_response: { status: 200 }\n",
        );
        y.push_str(
            "          - match: { safe_regex: { regex: '/items/[0-9]+' } }\n            direct_response: { status: 200 }\n",
        );
    }
    y.push_str("      - name: any\n        domains: ['*']\n        routes:\n          - match: { prefix: / }\n            direct_response: { status: 404 }\n");
    y
}

fn main() {
    let headers = [
        httparse::Header {
            name: "user-agent",
            value: b"wrk",
        },
        httparse::Header {
            name: "accept",
            value: b"*/*",
        },
        httparse::Header {
            name: "x-tenant",
            value: b"team-a",
        },
    ];
    let req = |host: &'static str, path: &'static str| Request {
        method: "GET",
        authority: host.as_bytes(),
        path,
        scheme: "http",
        headers: &headers,
    };
    for (hosts, routes) in [(1, 1), (10, 10), (100, 10)] {
        let s = parse_str(&table_yaml(hosts, routes)).unwrap();
        let t = &s.route_tables[0];
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let last_host = leak(format!("svc{}.default.svc.cluster.local", hosts - 1));
        let last_path = leak(format!("/api/v{}/items", routes - 1));
        let r = req(last_host, last_path);
        support::bench(
            &format!("exact host, last prefix route ({hosts}x{routes})"),
            || select(t, &r).is_some(),
        );
        let r = req(last_host, "/h/x");
        support::bench(
            &format!("exact host, header route ({hosts}x{routes})"),
            || select(t, &r).is_some(),
        );
        let r = req(last_host, "/items/12345");
        support::bench(
            &format!("exact host, regex route ({hosts}x{routes})"),
            || select(t, &r).is_some(),
        );
        let wild = leak(format!("a.svc{}.example.com", hosts - 1));
        let r = req(wild, "/api/v0/x");
        support::bench(
            &format!("suffix wildcard host, first route ({hosts}x{routes})"),
            || select(t, &r).is_some(),
        );
        let pre = leak(format!("svc{}.other", hosts - 1));
        let r = req(pre, "/api/v0/x");
        support::bench(
            &format!("prefix wildcard host, first route ({hosts}x{routes})"),
            || select(t, &r).is_some(),
        );
        let r = req("unknown.host", "/");
        support::bench(&format!("catch-all host ({hosts}x{routes})"), || {
            select(t, &r).is_some()
        });
        let r = req(last_host, last_path);
        support::bench(
            &format!("baseline: linear domain scan, last route ({hosts}x{routes})"),
            || {
                linear_virtual_host(t, host_without_port(r.authority))
                    .and_then(|vh| route(vh, &r))
                    .is_some()
            },
        );
        support::bench(
            &format!("select + resolve, last route ({hosts}x{routes})"),
            || {
                select(t, &r)
                    .map(|route| resolve(t, route, &r, 1))
                    .is_some()
            },
        );
    }
}
