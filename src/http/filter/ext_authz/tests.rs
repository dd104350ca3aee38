use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::{
    check_response::HttpResponse, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;

use super::check::answer;
use super::*;

#[allow(deprecated)]
fn opt(k: &str, v: &str, append: Option<bool>, action: i32) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: k.into(),
            value: v.into(),
            ..HeaderValue::default()
        }),
        append: append.map(|value| envoy_types::pb::google::protobuf::BoolValue { value }),
        append_action: action,
        ..HeaderValueOption::default()
    }
}

#[test]
fn ok_answers_carry_the_mutations_with_their_actions() {
    let r = CheckResponse {
        status: Some(RpcStatus::default()),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: vec![
                opt("X-Set", "1", Some(false), 0),
                opt("x-app", "2", Some(true), 0),
                opt("x-default", "3", None, 0),
                opt("x-absent", "4", None, 1),
                opt("x-over", "5", None, 3),
                opt(":path", "/evil", Some(false), 0),
                opt("x-bad", "a\r\nb", Some(false), 0),
            ],
            headers_to_remove: vec!["X-Gone".into(), "host".into(), ":authority".into()],
            response_headers_to_add: vec![opt("x-client", "c", Some(false), 0)],
            ..OkHttpResponse::default()
        })),
        ..CheckResponse::default()
    };
    let Answer::Ok(a) = answer(r) else {
        panic!("not ok")
    };
    let got: Vec<(&str, Action)> = a
        .request
        .iter()
        .map(|m| (m.name.as_str(), m.action))
        .collect();
    assert_eq!(
        got,
        [
            ("x-set", Action::Overwrite),
            ("x-app", Action::AppendJoin),
            ("x-default", Action::Append),
            ("x-absent", Action::AddIfAbsent),
            ("x-over", Action::OverwriteIfExists),
        ]
    );
    assert_eq!(a.remove, ["x-gone"]);
    assert_eq!(a.response.len(), 1);
}

#[test]
fn denials_default_to_403_and_carry_status_headers_and_body() {
    let bare = CheckResponse {
        status: Some(RpcStatus {
            code: 7,
            ..RpcStatus::default()
        }),
        ..CheckResponse::default()
    };
    assert_eq!(
        answer(bare),
        Answer::Denied {
            status: 403,
            headers: vec![],
            body: String::new()
        }
    );
    let full = CheckResponse {
        status: Some(RpcStatus {
            code: 16,
            ..RpcStatus::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(envoy_types::pb::envoy::r#type::v3::HttpStatus { code: 401 }),
            headers: vec![opt("WWW-Authenticate", "Bearer", None, 0)],
            body: "no".into(),
        })),
        ..CheckResponse::default()
    };
    assert_eq!(
        answer(full),
        Answer::Denied {
            status: 401,
            headers: vec![("www-authenticate".into(), "Bearer".into())],
            body: "no".into()
        }
    );
    let error = CheckResponse {
        status: Some(RpcStatus {
            code: 13,
            ..RpcStatus::default()
        }),
        http_response: Some(HttpResponse::ErrorResponse(DeniedHttpResponse::default())),
        ..CheckResponse::default()
    };
    assert_eq!(answer(error), Answer::Error);
}

#[test]
fn request_mutations_land_in_the_stream_store() {
    static HEADERS: [httparse::Header<'static>; 1] = [httparse::Header {
        name: "x-over",
        value: b"old",
    }];
    static REQ: crate::http::router::Request<'static> = crate::http::router::Request {
        method: "GET",
        authority: b"h",
        path: "/",
        scheme: "http",
        headers: &HEADERS,
    };
    let fwd = crate::config::Forwarding::SIDECAR;
    let state = crate::http::filter::ConnState::default();
    let ctx = RequestCtx {
        req: &REQ,
        conn: crate::rbac::Conn {
            peer: std::net::Ipv4Addr::LOCALHOST.into(),
            local: ([127, 0, 0, 1], 80).into(),
            tls: None,
        },
        forwarding: &fwd,
        counters: &[],
        state: &state,
        peer_port: 1,
        protocol: "HTTP/1.1",
        upstream: None,
        body: false,
        stream_idle_timeout: std::time::Duration::ZERO,
        grpc: None,
    };
    let m = |n: &str, a| Mutation {
        name: n.into(),
        value: "v".into(),
        action: a,
    };
    let a = Allowed {
        request: vec![
            m("x-over", Action::OverwriteIfExists),
            m("x-missing", Action::OverwriteIfExists),
            m("x-over", Action::AddIfAbsent),
            m("x-new", Action::AddIfAbsent),
        ],
        remove: vec!["x-drop".into()],
        response: vec![],
    };
    let store = SetHeaders::default();
    let values = |name: &str| -> Vec<String> {
        ctx.req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .collect()
    };
    assert!(apply_request(&values, &a, &store));
    let mut seen = Vec::new();
    store.for_each(|n, v| seen.push(format!("{n}={v}")));
    assert_eq!(seen, ["x-over=v", "x-new=v"]);
    assert!(store.has("x-drop") && store.has("x-over") && !store.has("x-new"));
    let mut map = http::HeaderMap::new();
    map.insert("x-drop", "1".parse().unwrap());
    map.insert("x-over", "old".parse().unwrap());
    store.apply_to_map(&mut map);
    assert!(map.get("x-drop").is_none());
    assert_eq!(map.get("x-over").unwrap(), "v");
    assert_eq!(map.get("x-new").unwrap(), "v");
}

#[test]
fn late_edits_rewrite_an_http1_head() {
    let late = SetHeaders::default();
    late.set("x-set", "new");
    late.add("x-add", "a".into());
    late.remove("x-gone");
    let mut head =
        b"POST /p HTTP/1.1\r\nX-Set: old\r\nx-keep: k\r\nx-gone: 1\r\nx-add: orig\r\n\r\n".to_vec();
    body::edit_h1_head(&mut head, &late);
    assert_eq!(
        String::from_utf8(head).unwrap(),
        "POST /p HTTP/1.1\r\nx-keep: k\r\nx-add: orig\r\nx-set: new\r\nx-add: a\r\n\r\n"
    );
}
