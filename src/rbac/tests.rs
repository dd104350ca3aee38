#![allow(clippy::indexing_slicing)]

use super::*;
use crate::config::StringMatchKind;
use crate::tls::der::Sans;

fn exact(s: &str) -> StringMatch {
    StringMatch {
        kind: StringMatchKind::Exact(s.into()),
        ignore_case: false,
    }
}

fn prefix(s: &str) -> StringMatch {
    StringMatch {
        kind: StringMatchKind::Prefix(s.into()),
        ignore_case: false,
    }
}

fn policy(perm: Permission, who: Principal) -> Policy {
    Policy {
        permissions: vec![perm],
        principals: vec![who],
    }
}

fn conn(peer: &str) -> Conn<'static> {
    Conn {
        peer: peer.parse().unwrap(),
        local: "10.0.0.1:8080".parse().unwrap(),
        tls: None,
    }
}

const FWD: Forwarding = Forwarding {
    use_remote_address: false,
    xff_num_trusted_hops: 0,
    skip_xff_append: false,
    ..Forwarding::SIDECAR
};

fn req<'a>(
    method: &'a str,
    path: &'a str,
    headers: &'a [httparse::Header<'a>],
) -> router::Request<'a> {
    router::Request {
        method,
        authority: b"svc",
        path,
        scheme: "http",
        headers,
    }
}

#[test]
fn policies_are_tried_by_name_and_the_action_decides() {
    let admin = policy(Permission::UrlPath(prefix("/admin")), Principal::Any);
    let all = policy(Permission::Any, Principal::Any);
    let engine = |action| Engine {
        action,
        policies: vec![
            ("a-admin".into(), admin.clone()),
            ("b-all".into(), all.clone()),
        ],
    };
    let r = req("GET", "/admin/x?q=1", &[]);
    let i = Input {
        conn: conn("192.0.2.1"),
        http: Some((&r, &FWD)),
    };
    let (allow, deny, log) = (
        engine(Action::Allow),
        engine(Action::Deny),
        engine(Action::Log),
    );
    let d = allow.decide(&i);
    assert_eq!((d.allowed, d.policy), (true, Some("a-admin")));
    let d = deny.decide(&i);
    assert_eq!((d.allowed, d.policy), (false, Some("a-admin")));
    assert!(log.decide(&i).allowed);
    // No policy matches: ALLOW denies, DENY allows.
    let none = Engine {
        action: Action::Allow,
        policies: vec![("a-admin".into(), admin)],
    };
    let other = req("GET", "/public", &[]);
    let i = Input {
        conn: conn("192.0.2.1"),
        http: Some((&other, &FWD)),
    };
    assert_eq!(none.decide(&i).policy, None);
    assert!(!none.decide(&i).allowed);
    assert_eq!(
        denial_details(None),
        "rbac_access_denied_matched_policy[none]"
    );
    assert_eq!(
        denial_details(Some("my policy")),
        "rbac_access_denied_matched_policy[my_policy]"
    );
}

#[test]
fn addresses_ports_and_the_remote_address_from_xff() {
    let c = Cidr::new("192.0.2.0".parse().unwrap(), 24);
    assert!(c.contains("192.0.2.200".parse().unwrap()));
    assert!(!c.contains("192.0.3.1".parse().unwrap()));
    // Another family never matches.
    assert!(!c.contains("::ffff:192.0.2.1".parse().unwrap()));
    assert!(Cidr::new("::".parse().unwrap(), 0).contains("2001:db8::1".parse().unwrap()));
    assert!(Cidr::new("10.1.2.3".parse().unwrap(), 32).contains("10.1.2.3".parse().unwrap()));

    let headers = [httparse::Header {
        name: "X-Forwarded-For",
        value: b"198.51.100.7",
    }];
    let r = req("GET", "/", &headers);
    let i = Input {
        conn: conn("192.0.2.1"),
        http: Some((&r, &FWD)),
    };
    let xff = Cidr::new("198.51.100.0".parse().unwrap(), 24);
    assert!(Principal::RemoteIp(xff).matches(&i));
    assert!(!Principal::DirectRemoteIp(xff).matches(&i));
    assert!(Principal::SourceIp(c).matches(&i));
    assert!(Permission::DestinationPort(8080).matches(&i));
    assert!(Permission::DestinationPortRange(8000, 8081).matches(&i));
    assert!(!Permission::DestinationPortRange(8000, 8080).matches(&i));
    assert!(Permission::DestinationIp(Cidr::new("10.0.0.0".parse().unwrap(), 8)).matches(&i));
    // The network filter (no request): the remote address is the peer.
    let n = Input {
        conn: conn("192.0.2.1"),
        http: None,
    };
    assert!(!Principal::RemoteIp(xff).matches(&n));
}

#[test]
fn headers_method_and_the_empty_header_map_of_a_connection() {
    let method = HeaderMatch {
        name: ":method".into(),
        kind: HeaderMatchKind::String(exact("POST")),
        invert: false,
        treat_missing_as_empty: false,
    };
    let absent = HeaderMatch {
        name: "x-token".into(),
        kind: HeaderMatchKind::Present(false),
        invert: false,
        treat_missing_as_empty: false,
    };
    let r = req("POST", "/", &[]);
    let i = Input {
        conn: conn("192.0.2.1"),
        http: Some((&r, &FWD)),
    };
    assert!(Permission::Header(method.clone()).matches(&i));
    assert!(Permission::Header(absent.clone()).matches(&i));
    let n = Input {
        conn: conn("192.0.2.1"),
        http: None,
    };
    // Over a connection every header is missing and there is no path.
    assert!(!Permission::Header(method).matches(&n));
    assert!(Permission::Header(absent).matches(&n));
    assert!(!Permission::UrlPath(prefix("/")).matches(&n));
}

#[test]
fn authenticated_reads_uri_then_dns_sans_and_needs_tls() {
    let info = TlsInfo {
        sni: "api.example".into(),
        peer: Sans {
            dns: vec!["client.example".into()],
            uri: vec!["spiffe://td/ns/a/sa/b".into()],
            subject: "CN=client,O=Acme".into(),
        },
        ..TlsInfo::default()
    };
    let mut c = conn("192.0.2.1");
    let plain = Input {
        conn: c,
        http: None,
    };
    assert!(!Principal::Authenticated(None).matches(&plain));
    c.tls = Some(&info);
    let i = Input {
        conn: c,
        http: None,
    };
    assert!(Principal::Authenticated(None).matches(&i));
    assert!(Principal::Authenticated(Some(exact("spiffe://td/ns/a/sa/b"))).matches(&i));
    assert!(Principal::Authenticated(Some(exact("client.example"))).matches(&i));
    assert!(!Principal::Authenticated(Some(exact("spiffe://td/ns/a/sa/c"))).matches(&i));
    // Then the subject (RFC 2253), even with SANs, as Envoy's matcher.
    assert!(Principal::Authenticated(Some(exact("CN=client,O=Acme"))).matches(&i));
    assert!(!Principal::Authenticated(Some(exact("CN=client"))).matches(&i));
    assert!(Permission::RequestedServerName(exact("api.example")).matches(&i));
}

#[test]
fn shadow_rules_are_counted_and_never_decide() {
    let deny_all = Engine {
        action: Action::Allow,
        policies: vec![],
    };
    let rules = Rules {
        rules: None,
        shadow: Some(deny_all.clone()),
    };
    let c = Counters {
        allowed: 0,
        denied: 1,
        shadow_allowed: 2,
        shadow_denied: 3,
    };
    let i = Input {
        conn: conn("192.0.2.1"),
        http: None,
    };
    let mut counts = [0; 4];
    assert_eq!(evaluate(&rules, &c, &i, |k| counts[k] += 1), None);
    assert_eq!(counts, [0, 0, 0, 1]);
    let rules = Rules {
        rules: Some(deny_all),
        shadow: None,
    };
    let d = evaluate(&rules, &c, &i, |k| counts[k] += 1).unwrap();
    assert!(!d.allowed);
    assert_eq!(counts, [0, 1, 0, 1]);
}
