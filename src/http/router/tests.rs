//! Unit tests of matching and actions on configs parsed from native YAML.

use super::*;
use crate::config::{parse_str, Snapshot};

const CFG: &str = r#"
clusters:
  - { name: a, endpoints: [{ address: 127.0.0.1, port: 1 }] }
  - { name: b, endpoints: [{ address: 127.0.0.1, port: 2 }] }
route_tables:
  - name: t
    virtual_hosts:
      - name: exact
        domains: [api.example.com]
        routes:
          - match: { path: /health }
            direct_response: { status: 200 }
          - match: { prefix: /, headers: [{ name: x-canary, exact: '1' }] }
            direct_response: { status: 201 }
          - match: { prefix: /v1/ }
            direct_response: { status: 202 }
      - name: suffix
        domains: ['*.example.com']
        routes:
          - match: { prefix: / }
            direct_response: { status: 203 }
      - name: longer-suffix
        domains: ['*.b.example.com']
        routes:
          - match: { prefix: / }
            direct_response: { status: 204 }
      - name: prefix
        domains: ['internal.*']
        routes:
          - match: { prefix: / }
            direct_response: { status: 205 }
      - name: match-kinds
        domains: [m]
        routes:
          - match: { path: /Exact, case_sensitive: false }
            direct_response: { status: 210 }
          - match: { path_separated_prefix: /sep }
            direct_response: { status: 211 }
          - match: { safe_regex: { regex: '/re/[0-9]+' } }
            direct_response: { status: 212 }
          - match: { prefix: /h, headers: [{ name: ':method', string_match: { exact: POST } }] }
            direct_response: { status: 213 }
          - match: { prefix: /h, headers: [{ name: x-n, range_match: { start: 10, end: 20 } }] }
            direct_response: { status: 214 }
          - match: { prefix: /h, headers: [{ name: x-s, suffix_match: '-prod' }] }
            direct_response: { status: 215 }
          - match: { prefix: /h, headers: [{ name: x-c, string_match: { contains: MID, ignore_case: true } }] }
            direct_response: { status: 216 }
          - match: { prefix: /h, headers: [{ name: x-r, safe_regex_match: { regex: 'v[0-9]' } }] }
            direct_response: { status: 217 }
          - match: { prefix: /h, headers: [{ name: x-e, exact_match: 'x', treat_missing_header_as_empty: true, invert_match: true }] }
            direct_response: { status: 218 }
          - match: { prefix: /q, query_parameters: [{ name: debug, present_match: true }, { name: v, string_match: { prefix: '2' } }] }
            direct_response: { status: 219 }
          - match: { prefix: /g, grpc: {} }
            direct_response: { status: 220 }
          - match: { prefix: /never, runtime_fraction: { default_value: { numerator: 0 } } }
            direct_response: { status: 221 }
          - match: { prefix: /always, runtime_fraction: { default_value: { numerator: 100 } } }
            direct_response: { status: 222 }
      - name: actions
        domains: [act]
        routes:
          - match: { prefix: /pre/ }
            cluster: a
            prefix_rewrite: /new/
          - match: { safe_regex: { regex: '/rx/([a-z]+)/(.*)' } }
            cluster: a
            regex_rewrite: { pattern: { regex: '^/rx/([a-z]+)/(.*)$' }, substitution: '/\2/\1' }
          - match: { prefix: /ch }
            cluster_header: x-cluster
          - match: { prefix: /w }
            weighted_clusters: { clusters: [{ name: a, weight: 0 }, { name: b, weight: 5, host_rewrite_literal: b.internal }] }
          - match: { prefix: /redir }
            redirect: { host_redirect: new.example.com, prefix_rewrite: /new, response_code: TEMPORARY_REDIRECT }
          - match: { prefix: /https }
            redirect: { https_redirect: true }
          - match: { prefix: /port }
            redirect: { port_redirect: 8443, strip_query: true }
          - match: { prefix: /pq }
            redirect: { scheme_redirect: ftp, path_redirect: '/p?x=1' }
          - match: { prefix: /created }
            direct_response: { status: 201, body: made }
          - match: { prefix: /host }
            cluster: a
            host_rewrite_literal: rewritten.example
      - name: any
        domains: ['*']
        routes:
          - match: { prefix: /only }
            direct_response: { status: 206 }
"#;

fn snapshot() -> Snapshot {
    parse_str(CFG).unwrap()
}

fn req<'a>(host: &'a str, path: &'a str, headers: &'a [httparse::Header<'a>]) -> Request<'a> {
    Request {
        method: "GET",
        authority: host.as_bytes(),
        path,
        scheme: "http",
        headers,
    }
}

fn status_of(s: &Snapshot, r: &Request<'_>) -> Option<u16> {
    let t = &s.route_tables[0];
    select(t, r).map(|route| match resolve(t, route, r, random()) {
        Decision::Direct(d, _) => d.status,
        Decision::Redirect { status, .. } => status,
        Decision::Forward(_) => 0,
        Decision::ClusterNotFound { status } => status,
    })
}

fn status(host: &str, path: &str, headers: &[httparse::Header<'_>]) -> Option<u16> {
    status_of(&snapshot(), &req(host, path, headers))
}

fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
    httparse::Header {
        name,
        value: value.as_bytes(),
    }
}

#[test]
fn domain_precedence() {
    assert_eq!(status("API.example.com", "/health", &[]), Some(200));
    // Envoy keeps the port unless the table ignores it: `*` takes it.
    assert_eq!(status("api.example.com:8080", "/health", &[]), None);
    assert_eq!(status("a.example.com", "/", &[]), Some(203));
    assert_eq!(status("x.b.example.com", "/", &[]), Some(204));
    assert_eq!(status("internal.svc", "/", &[]), Some(205));
    assert_eq!(status("other", "/only/x", &[]), Some(206));
    assert_eq!(status("other", "/", &[]), None);
    assert_eq!(status("example.com", "/only", &[]), Some(206));
    let ignoring = CFG.replace(
        "  - name: t\n",
        "  - name: t\n    ignore_port_in_host_matching: true\n",
    );
    let s = parse_str(&ignoring).unwrap();
    assert_eq!(
        status_of(&s, &req("api.example.com:8080", "/health", &[])),
        Some(200)
    );
}

#[test]
fn path_and_header_matching() {
    assert_eq!(status("api.example.com", "/health?x=1", &[]), Some(200));
    assert_eq!(status("api.example.com", "/healthz", &[]), None);
    let canary = [h("X-Canary", "1")];
    assert_eq!(status("api.example.com", "/v1/x", &canary), Some(201));
    assert_eq!(status("api.example.com", "/v1/x", &[]), Some(202));
}

#[test]
fn every_match_kind() {
    assert_eq!(status("m", "/eXACT", &[]), Some(210));
    assert_eq!(status("m", "/sep", &[]), Some(211));
    assert_eq!(status("m", "/sep/x?q", &[]), Some(211));
    assert_eq!(status("m", "/separate", &[]), None);
    assert_eq!(status("m", "/re/123?x=y", &[]), Some(212));
    assert_eq!(status("m", "/re/12a", &[]), None);
    let mut post = req("m", "/h", &[]);
    post.method = "POST";
    assert_eq!(status_of(&snapshot(), &post), Some(213));
    assert_eq!(status("m", "/h", &[h("x-n", "15")]), Some(214));
    assert_eq!(status("m", "/h", &[h("x-n", "20"), h("x-e", "x")]), None);
    assert_eq!(
        status("m", "/h", &[h("x-s", "eu-prod"), h("x-e", "x")]),
        Some(215)
    );
    assert_eq!(
        status("m", "/h", &[h("x-c", "a-mid-b"), h("x-e", "x")]),
        Some(216)
    );
    assert_eq!(
        status("m", "/h", &[h("x-r", "v2"), h("x-e", "x")]),
        Some(217)
    );
    assert_eq!(status("m", "/h", &[h("x-r", "xv2"), h("x-e", "x")]), None);
    // Missing x-e is tested as "" which is not "x": inverted, it matches.
    assert_eq!(status("m", "/h", &[]), Some(218));
    assert_eq!(status("m", "/q?v=2.1&debug", &[]), Some(219));
    assert_eq!(status("m", "/q?v=1&debug=1", &[]), None);
    assert_eq!(status("m", "/q?v=2", &[]), None);
    assert_eq!(
        status("m", "/g", &[h("content-type", "application/grpc+proto")]),
        Some(220)
    );
    assert_eq!(status("m", "/g", &[]), None);
    assert_eq!(status("m", "/never", &[]), None);
    assert_eq!(status("m", "/always", &[]), Some(222));
}

fn decide(path: &str, headers: &[httparse::Header<'_>]) -> String {
    let s = snapshot();
    let t = &s.route_tables[0];
    let r = req("act:81", path, headers);
    let route = select(t, &req("act", path, headers)).unwrap();
    format!("{:?}", resolve(t, route, &r, random()))
}

#[test]
fn actions() {
    assert!(decide("/pre/x?q=1", &[]).contains(r#"path: Some("/new/x?q=1")"#));
    assert!(decide("/rx/abc/def?q=1", &[]).contains(r#"path: Some("/def/abc?q=1")"#));
    assert!(decide("/ch", &[h("x-cluster", "b")]).contains("cluster: 1"));
    assert_eq!(
        decide("/ch", &[h("x-cluster", "zz")]),
        "ClusterNotFound { status: 503 }"
    );
    assert_eq!(decide("/ch", &[]), "ClusterNotFound { status: 503 }");
    // A zero weight is never picked.
    for _ in 0..20 {
        let d = decide("/w", &[]);
        assert!(
            d.contains("cluster: 1") && d.contains(r#"host: Some("b.internal")"#),
            "{d}"
        );
    }
    assert!(decide("/host", &[]).contains(r#"host: Some("rewritten.example")"#));
    assert_eq!(
        decide("/redir/a?q=1", &[]),
        r#"Redirect { status: 307, location: "http://new.example.com/new/a?q=1" }"#
    );
    assert_eq!(
        decide("/https/x?y", &[]),
        r#"Redirect { status: 301, location: "https://act:81/https/x?y" }"#
    );
    assert_eq!(
        decide("/port/x?y=1", &[]),
        r#"Redirect { status: 301, location: "http://act:8443/port/x" }"#
    );
    assert_eq!(
        decide("/pq/s?q", &[]),
        r#"Redirect { status: 301, location: "ftp://act:81/p?x=1" }"#
    );
    assert!(decide("/created", &[]).contains(r#"Some("http://act:81/created")"#));
}

#[test]
fn https_redirect_drops_the_default_port() {
    let s = snapshot();
    let t = &s.route_tables[0];
    let r = req("act:80", "/https/x", &[]);
    let route = select(t, &req("act", "/https/x", &[])).unwrap();
    assert_eq!(
        resolve(t, route, &r, random()),
        Decision::Redirect {
            status: 301,
            location: "https://act/https/x".into()
        }
    );
}

#[test]
fn substitutions_convert_to_regex_syntax() {
    assert_eq!(convert_substitution(r"/\2/\1"), "/${2}/${1}");
    assert_eq!(convert_substitution(r"a$b\\c"), r"a$$b\c");
}

#[test]
fn ports_are_stripped() {
    assert_eq!(host_without_port(b"a:80"), b"a");
    assert_eq!(host_without_port(b"[::1]:80"), b"[::1]");
    assert_eq!(host_without_port(b"a"), b"a");
}

#[test]
fn ports_are_stripped_as_the_connection_manager_says() {
    use crate::config::StripPort;
    assert_eq!(strip_port(b"a:80", StripPort::Keep), b"a:80");
    assert_eq!(strip_port(b"a:80", StripPort::Any), b"a");
    assert_eq!(strip_port(b"[::1]:80", StripPort::Any), b"[::1]");
    assert_eq!(strip_port(b"a:80", StripPort::Matching(80)), b"a");
    assert_eq!(strip_port(b"a:8080", StripPort::Matching(80)), b"a:8080");
    assert_eq!(strip_port(b"a", StripPort::Matching(80)), b"a");
    assert_eq!(strip_port(b"[::1]:80", StripPort::Matching(80)), b"[::1]");
}
