//! Route-matching micro-benchmarks: virtual-host selection and route lookup on tables
//! of realistic size.
//!
//! `cargo bench --bench route_match` (add `-- --quick` for a fast smoke run).

mod support;

use outrigger::config::parse_str;
use outrigger::http::router::select;

/// A table with `hosts` virtual hosts of `routes` prefix routes each, plus a catch-all.
fn table_yaml(hosts: usize, routes: usize) -> String {
    let mut y = String::from("route_tables:\n  - name: t\n    virtual_hosts:\n");
    for h in 0..hosts {
        y.push_str(&format!(
            "      - name: vh{h}\n        domains: [svc{h}.default.svc.cluster.local, '*.svc{h}.example.com']\n        routes:\n"
        ));
        for r in 0..routes {
            y.push_str(&format!(
                "          - match: {{ prefix: /api/v{r}/ }}\n            direct_response: {{ status: 200 }}\n"
            ));
        }
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
    ];
    for (hosts, routes) in [(1, 1), (10, 10), (100, 10)] {
        let s = parse_str(&table_yaml(hosts, routes)).unwrap();
        let t = &s.route_tables[0];
        let last_host = format!("svc{}.default.svc.cluster.local:8080", hosts - 1);
        let last_path = format!("/api/v{}/items", routes - 1);
        support::bench(
            &format!("exact host, last route ({hosts} hosts x {routes} routes)"),
            || select(t, last_host.as_bytes(), &last_path, &headers).is_some(),
        );
        let wild = format!("a.svc{}.example.com", hosts - 1);
        support::bench(
            &format!("wildcard host, first route ({hosts} hosts x {routes} routes)"),
            || select(t, wild.as_bytes(), "/api/v0/x", &headers).is_some(),
        );
        support::bench(
            &format!("catch-all host ({hosts} hosts x {routes} routes)"),
            || select(t, b"unknown.host", "/", &headers).is_some(),
        );
    }
}
