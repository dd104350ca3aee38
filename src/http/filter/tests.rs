//! The chain's request-head hook and overrides, on hand-built chains.

use super::header_mutation::HeaderMutation;
use super::headers::{AppendAction, HeaderAdd, HeaderOps};
use super::*;

static REQ: crate::http::router::Request<'static> = crate::http::router::Request {
    method: "GET",
    authority: b"h",
    path: "/",
    scheme: "http",
    headers: &[],
};
static FWD: crate::config::Forwarding = crate::config::Forwarding {
    use_remote_address: true,
    xff_num_trusted_hops: 0,
    skip_xff_append: false,
    ..crate::config::Forwarding::SIDECAR
};

fn ctx() -> RequestCtx<'static> {
    RequestCtx {
        req: &REQ,
        conn: crate::rbac::Conn {
            peer: std::net::Ipv4Addr::LOCALHOST.into(),
            local: ([127, 0, 0, 1], 80).into(),
            tls: None,
        },
        forwarding: &FWD,
        counters: &[],
        state: Box::leak(Box::default()),
        grpc: None,
        peer_port: 0,
        protocol: "HTTP/1.1",
        upstream: None,
        body: false,
        stream_idle_timeout: std::time::Duration::ZERO,
    }
}

fn setter(name: &str, value: &str) -> HeaderOps {
    HeaderOps {
        add: vec![HeaderAdd {
            name: name.into(),
            value: value.into(),
            action: AppendAction::OverwriteIfExistsOrAdd,
        }],
        remove: vec![],
    }
}

fn collect(e: Edits<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    e.for_each_added(|_| false, |n, v| out.push((n.into(), v.into())));
    out
}

#[test]
fn filters_then_router_with_overrides() {
    let m = HeaderMutation {
        request: setter("x-who", "filter"),
        response: setter("x-resp", "filter"),
    };
    let chain = vec![HttpFilter {
        name: "tag".into(),
        kind: FilterKind::HeaderMutation(HeaderMutationFilter::new(&m)),
    }];
    let route_req = HeaderPlan::compile([&setter("x-who", "route")]);
    let route_resp = HeaderPlan::compile([&setter("x-resp", "route")]);
    let route = RouteFilters {
        request_headers: &route_req,
        response_headers: &route_resp,
        overrides: &[],
        rate_limits: &local_ratelimit::NO_RATE_LIMITS,
        forwards: true,
        cluster: EntryCluster::None,
    };
    let mut e = StreamEdits::default();
    let s = futures_lite::future::block_on(on_request_head(&chain, Some(route), &mut e, &ctx()));
    assert_eq!(s, Status::Continue);
    // Request: the route's overwrite runs last; response: the filter's runs last.
    assert_eq!(collect(e.request), vec![("x-who".into(), "route".into())]);
    assert_eq!(
        collect(e.response),
        vec![("x-resp".into(), "filter".into())]
    );

    let disabled = [("tag".to_string(), FilterOverride::Disabled)];
    let route = RouteFilters {
        overrides: &disabled,
        ..route
    };
    let mut e = StreamEdits::default();
    futures_lite::future::block_on(on_request_head(&chain, Some(route), &mut e, &ctx()));
    assert_eq!(collect(e.response), vec![("x-resp".into(), "route".into())]);
    assert_eq!(e.chain.active().count(), 0, "disabled on this route");
}

#[test]
fn the_buffer_filter_declares_the_request_body_hook_and_routes_override_it() {
    let chain = vec![HttpFilter {
        name: "buf".into(),
        kind: FilterKind::Buffer(BufferFilter {
            max_request_bytes: 4,
        }),
    }];
    let plan = HeaderPlan::default();
    let route = |overrides| RouteFilters {
        request_headers: &plan,
        response_headers: &plan,
        overrides,
        rate_limits: &local_ratelimit::NO_RATE_LIMITS,
        forwards: true,
        cluster: EntryCluster::None,
    };
    let run = |overrides| {
        let mut e = StreamEdits::default();
        futures_lite::future::block_on(on_request_head(
            &chain,
            Some(route(overrides)),
            &mut e,
            &ctx(),
        ));
        e.chain
    };
    let own = run(&[]);
    assert!(own.hooks().request_data && !own.hooks().response_data);
    // Its trailers hook would only set the Content-Length the hold sets anyway.
    assert!(own.holds_request_body() && !own.hooks().request_trailers);
    let mut t = http::HeaderMap::new();
    let st = futures_lite::future::block_on(own.on_request_trailers(&mut t));
    assert_eq!(st, Status::Continue);
    let data = |c: &Chain<'_>, n: usize, held| {
        futures_lite::future::block_on(c.on_request_data(&vec![b'x'; n], false, held))
    };
    assert_eq!(data(&own, 4, 0), DataStatus::StopAndBuffer);
    assert_eq!(data(&own, 1, 4), DataStatus::Respond(buffer::TOO_LARGE));
    // Disabled on the route: the stream has no body hook (one branch, no hold).
    let off = [("buf".to_string(), FilterOverride::Disabled)];
    assert_eq!(run(&off).hooks(), Hooks::NONE);
    // The route's own limit.
    let big = [(
        "buf".to_string(),
        FilterOverride::Buffer(BufferFilter {
            max_request_bytes: 8,
        }),
    )];
    assert_eq!(data(&run(&big), 1, 4), DataStatus::StopAndBuffer);
}

#[test]
fn header_mutation_chains_have_no_later_hooks() {
    let m = HeaderMutation {
        request: setter("x-who", "filter"),
        response: setter("x-resp", "filter"),
    };
    let chain = vec![HttpFilter {
        name: "tag".into(),
        kind: FilterKind::HeaderMutation(HeaderMutationFilter::new(&m)),
    }];
    let mut e = StreamEdits::default();
    futures_lite::future::block_on(on_request_head(&chain, None, &mut e, &ctx()));
    assert_eq!(e.chain.active().count(), 1);
    // Nothing past the request head runs for this chain.
    assert_eq!(e.chain.hooks(), Hooks::NONE);
    let head =
        futures_lite::future::block_on(e.chain.on_response_head(200, &http::HeaderMap::new()));
    assert_eq!(head, Status::Continue);
}
