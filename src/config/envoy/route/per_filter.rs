//! Envoy's `typed_per_filter_config` (route, virtual host and route configuration
//! levels) -> the native routes' `per_filter_config`: each HTTP filter's per-route
//! config (`HeaderMutationPerRoute`, `BufferPerRoute`, `LocalRateLimit`, `RBACPerRoute`,
//! `HTTPFault`, `CorsPolicy`, or a `FilterConfig` that disables a filter or wraps one),
//! merged across the levels as each Envoy filter reads them. Control plane only.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::route::v3::FilterConfig;
use envoy_types::pb::envoy::extensions::filters::http::buffer::v3::{
    buffer_per_route::Override as BufferOverride, BufferPerRoute,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::{
    HeaderMutationPerRoute, Mutations,
};
use envoy_types::pb::google::protobuf::Any;

use super::super::super::raw_ext_authz::RawExtAuthzPerRoute;
use super::super::super::raw_fault_cors::RawFault;
use super::super::super::raw_rbac::RawRbacFilter;
use super::super::convert::{mutations, payload, R};
use super::super::local_ratelimit::LOCAL_RATELIMIT;
use super::super::{err, walk};
use super::{buffer, ChainFilter, ChainOwn, Level};
use crate::http::filter::buffer::RawBuffer;
use crate::http::filter::ext_proc::config::RawExtProcOverride;
use crate::http::filter::local_ratelimit::RawLocalRateLimit;
use crate::http::filter::RawFilterOverride;

const PER_ROUTE: &str = "envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute";
const BUFFER_PER_ROUTE: &str = "envoy.extensions.filters.http.buffer.v3.BufferPerRoute";
const FILTER_CONFIG: &str = "envoy.config.route.v3.FilterConfig";

/// Envoy's header-mutation filter runs its own mutations, then those of every level's
/// per-route config (route, virtual host, route configuration: the less specific runs
/// last); the most specific `FilterConfig` decides whether the filter is disabled. Native
/// overrides replace a filter's edits, so the override carries all of them in that order.
/// Entries for filters the chain lacks are checked and then ignored, as Envoy does.
pub(super) fn per_filter_config(
    levels: [Level<'_>; 3],
    filters: &[ChainFilter],
) -> R<BTreeMap<String, RawFilterOverride>> {
    let mut decoded: Vec<Vec<(String, PerFilter)>> = Vec::new();
    for (map, lp) in &levels {
        let mut entries = Vec::new();
        for (name, any) in map.iter() {
            let ep = format!("{lp}[\"{name}\"]");
            entries.push((name.clone(), filter_override(any, &ep)?));
        }
        decoded.push(entries);
    }
    let mut out = BTreeMap::new();
    for (name, own) in filters {
        let own = match own {
            ChainOwn::Mutations(m) => m,
            ChainOwn::LocalRateLimit => {
                // Envoy's filter takes the most specific per-route config.
                let first = decoded
                    .iter()
                    .flat_map(|e| e.iter())
                    .find(|(n, _)| n == name);
                let o = match first {
                    None => continue,
                    Some((_, PerFilter::Disabled)) => RawFilterOverride {
                        disabled: true,
                        ..RawFilterOverride::default()
                    },
                    Some((_, PerFilter::LocalRateLimit(l))) => RawFilterOverride {
                        local_ratelimit: Some((**l).clone()),
                        ..RawFilterOverride::default()
                    },
                    Some(_) => {
                        return Err(err(
                            "typed_per_filter_config",
                            format!("`{name}` is a local rate-limit filter; its per-route config is a LocalRateLimit"),
                        ))
                    }
                };
                out.insert(name.clone(), o);
                continue;
            }
            ChainOwn::Wasm => {
                // Envoy's wasm filter has no per-route config of its own; a
                // FilterConfig may disable it (the most specific level).
                let first = decoded
                    .iter()
                    .flat_map(|e| e.iter())
                    .find(|(n, _)| n == name);
                let o = match first {
                    None => continue,
                    Some((_, PerFilter::Disabled)) => RawFilterOverride {
                        disabled: true,
                        ..RawFilterOverride::default()
                    },
                    Some(_) => {
                        return Err(err(
                            "typed_per_filter_config",
                            format!(
                            "`{name}` is a wasm filter; only `disabled` applies to it per route"
                        ),
                        ))
                    }
                };
                out.insert(name.clone(), o);
                continue;
            }
            ChainOwn::Fault => {
                // Envoy's fault filter takes the most specific per-route config.
                let first = decoded
                    .iter_mut()
                    .flat_map(|e| e.iter_mut())
                    .find(|(n, _)| n == name);
                let o = match first {
                    None => continue,
                    Some((_, PerFilter::Disabled)) => RawFilterOverride {
                        disabled: true,
                        ..RawFilterOverride::default()
                    },
                    Some((_, PerFilter::Fault(f))) => RawFilterOverride {
                        fault: Some(std::mem::take(f)),
                        ..RawFilterOverride::default()
                    },
                    Some(_) => {
                        return Err(err(
                            "typed_per_filter_config",
                            format!(
                                "`{name}` is a fault filter; its per-route config is an HTTPFault"
                            ),
                        ))
                    }
                };
                out.insert(name.clone(), o);
                continue;
            }
            ChainOwn::Cors => {
                // Envoy's CORS filter reads every level's policy, the most specific
                // first; a FilterConfig that disables it at the most specific level
                // turns it off.
                let mut policies = Vec::new();
                let mut disabled = None;
                for (n, o) in decoded.iter().flat_map(|e| e.iter()) {
                    if n != name {
                        continue;
                    }
                    match o {
                        PerFilter::Disabled => {
                            disabled.get_or_insert(true);
                        }
                        PerFilter::Cors(c, p) => {
                            disabled.get_or_insert(false);
                            policies.push((c, p.clone()));
                        }
                        _ => {
                            return Err(err(
                                "typed_per_filter_config",
                                format!(
                                "`{name}` is a CORS filter; its per-route config is a CorsPolicy"
                            ),
                            ))
                        }
                    }
                }
                let o = match disabled {
                    None => continue,
                    Some(true) => RawFilterOverride {
                        disabled: true,
                        ..RawFilterOverride::default()
                    },
                    Some(false) => RawFilterOverride {
                        cors: Some(super::super::fault_cors::cors_policy(&policies)?),
                        ..RawFilterOverride::default()
                    },
                };
                out.insert(name.clone(), o);
                continue;
            }
            ChainOwn::ExtProc => {
                // Envoy merges the levels: the most specific decides `disabled`, and
                // the most specific processing mode wins.
                let mut disabled = None;
                let mut mode = None;
                for (n, o) in decoded.iter().flat_map(|e| e.iter()) {
                    if n != name {
                        continue;
                    }
                    match o {
                        PerFilter::Disabled => {
                            disabled.get_or_insert(true);
                        }
                        PerFilter::ExtProc(e) => {
                            disabled.get_or_insert(false);
                            if mode.is_none() {
                                mode = e.processing_mode.clone();
                            }
                        }
                        _ => {
                            return Err(err(
                                "typed_per_filter_config",
                                format!("`{name}` is an ext_proc filter; its per-route config is an ExtProcPerRoute"),
                            ))
                        }
                    }
                }
                let o = match disabled {
                    None => continue,
                    Some(true) => RawFilterOverride {
                        disabled: true,
                        ..RawFilterOverride::default()
                    },
                    Some(false) => RawFilterOverride {
                        ext_proc: Some(RawExtProcOverride {
                            processing_mode: mode,
                        }),
                        ..RawFilterOverride::default()
                    },
                };
                out.insert(name.clone(), o);
                continue;
            }
            ChainOwn::Rbac => {
                // Envoy's RBAC filter takes the most specific per-route config.
                let first = decoded
                    .iter_mut()
                    .flat_map(|e| e.iter_mut())
                    .find(|(n, _)| n == name);
                let (disabled, rbac) = match first {
                    None => continue,
                    Some((_, PerFilter::Disabled)) => (true, None),
                    Some((_, PerFilter::Rbac(r))) => (false, Some(std::mem::take(r))),
                    Some(_) => {
                        return Err(err(
                            "typed_per_filter_config",
                            format!(
                            "`{name}` is an RBAC filter; its per-route config is an RBACPerRoute"
                        ),
                        ))
                    }
                };
                let o = RawFilterOverride {
                    disabled,
                    rbac,
                    ..RawFilterOverride::default()
                };
                out.insert(name.clone(), o);
                continue;
            }
            ChainOwn::ExtAuthz => {
                // Envoy's ext_authz filter: the most specific config says whether it is
                // disabled; the context extensions of every level are merged, the more
                // specific winning; the body settings are the most specific level's.
                let mut first = None;
                let mut merged = BTreeMap::new();
                let mut body = (false, None);
                for (n, o) in decoded.iter().rev().flat_map(|e| e.iter()) {
                    if n != name {
                        continue;
                    }
                    match o {
                        PerFilter::Disabled => first = Some(true),
                        PerFilter::ExtAuthz(s) => {
                            first = Some(false);
                            merged.extend(s.context_extensions.clone());
                            body = (s.disable_request_body_buffering, s.with_request_body.clone());
                        }
                        _ => {
                            return Err(err(
                                "typed_per_filter_config",
                                format!("`{name}` is an ext_authz filter; its per-route config is an ExtAuthzPerRoute"),
                            ))
                        }
                    }
                }
                let o = match first {
                    None => continue,
                    Some(true) => RawFilterOverride {
                        disabled: true,
                        ..RawFilterOverride::default()
                    },
                    Some(false) => RawFilterOverride {
                        ext_authz: Some(RawExtAuthzPerRoute {
                            context_extensions: merged,
                            disable_request_body_buffering: body.0,
                            with_request_body: body.1,
                        }),
                        ..RawFilterOverride::default()
                    },
                };
                out.insert(name.clone(), o);
                continue;
            }
            ChainOwn::Buffer => {
                // Envoy's buffer filter takes the most specific per-route config.
                let first = decoded
                    .iter()
                    .flat_map(|e| e.iter())
                    .find(|(n, _)| n == name);
                let o = match first {
                    None => continue,
                    Some((_, PerFilter::Disabled)) => RawFilterOverride {
                        disabled: true,
                        ..Default::default()
                    },
                    Some((_, PerFilter::Buffer(b))) => RawFilterOverride {
                        buffer: Some(b.clone()),
                        ..Default::default()
                    },
                    Some((
                        _,
                        PerFilter::Mutations(_)
                        | PerFilter::LocalRateLimit(_)
                        | PerFilter::Rbac(_)
                        | PerFilter::Fault(_)
                        | PerFilter::ExtProc(_)
                        | PerFilter::Cors(..)
                        | PerFilter::ExtAuthz(_),
                    )) => {
                        return Err(err(
                            "typed_per_filter_config",
                            format!(
                            "`{name}` is a buffer filter; its per-route config is a BufferPerRoute"
                        ),
                        ))
                    }
                };
                out.insert(name.clone(), o);
                continue;
            }
        };
        let mut disabled = None;
        let mut merged = own.clone().unwrap_or_default();
        let mut any = false;
        for entries in &decoded {
            for (n, o) in entries {
                if n != name {
                    continue;
                }
                match o {
                    PerFilter::Disabled => {
                        disabled.get_or_insert(true);
                    }
                    PerFilter::Buffer(_)
                    | PerFilter::LocalRateLimit(_)
                    | PerFilter::Rbac(_)
                    | PerFilter::Fault(_)
                    | PerFilter::ExtProc(_)
                    | PerFilter::Cors(..)
                    | PerFilter::ExtAuthz(_) => {
                        return Err(err(
                            "typed_per_filter_config",
                            format!("`{name}` is a header-mutation filter; its per-route config is a HeaderMutationPerRoute"),
                        ))
                    }
                    PerFilter::Mutations(m) => {
                        disabled.get_or_insert(false);
                        merged.request_mutations.extend(m.request_mutations.clone());
                        merged
                            .response_mutations
                            .extend(m.response_mutations.clone());
                        any = true;
                    }
                }
            }
        }
        if disabled == Some(true) {
            out.insert(
                name.clone(),
                RawFilterOverride {
                    disabled: true,
                    ..Default::default()
                },
            );
        } else if any {
            out.insert(
                name.clone(),
                RawFilterOverride {
                    header_mutation: Some(mutations(&Some(merged), "(merged)")?),
                    ..Default::default()
                },
            );
        }
    }
    Ok(out)
}

enum PerFilter {
    Disabled,
    Mutations(Mutations),
    Buffer(RawBuffer),
    LocalRateLimit(Box<RawLocalRateLimit>),
    Rbac(RawRbacFilter),
    Fault(RawFault),
    /// A `CorsPolicy` and its field path.
    Cors(CorsPolicy, String),
    /// An `ExtProcPerRoute`'s overrides.
    ExtProc(RawExtProcOverride),
    /// An `ExtAuthzPerRoute`'s check settings.
    ExtAuthz(RawExtAuthzPerRoute),
}

/// An `ExtProcPerRoute`: disabled, or its overrides.
fn ext_proc_override(any: &Any, ep: &str) -> R<PerFilter> {
    let r = payload(any, super::super::ext_proc::PER_ROUTE, ep)?;
    Ok(match super::super::ext_proc::per_route(&r, ep)? {
        None => PerFilter::Disabled,
        Some(o) => PerFilter::ExtProc(o),
    })
}

/// A `BufferPerRoute`: disabled, or its own limit.
fn buffer_override(b: &BufferPerRoute, ep: &str) -> R<PerFilter> {
    match &b.r#override {
        Some(BufferOverride::Disabled(true)) => Ok(PerFilter::Disabled),
        Some(BufferOverride::Buffer(buf)) => {
            Ok(PerFilter::Buffer(buffer(buf, &format!("{ep}.buffer"))?))
        }
        // Envoy: `disabled` must be true, and the oneof is required.
        _ => Err(err(ep, "set `disabled: true` or `buffer`")),
    }
}

/// One `typed_per_filter_config` entry: the header-mutation filter's per-route config,
/// or a `FilterConfig` that disables a filter or wraps that config.
fn filter_override(any: &Any, ep: &str) -> R<PerFilter> {
    let checked = |m: HeaderMutationPerRoute, p: String| {
        mutations(&m.mutations, &p)?;
        Ok(PerFilter::Mutations(m.mutations.unwrap_or_default()))
    };
    match walk::type_name(&any.type_url) {
        PER_ROUTE => checked(payload(any, PER_ROUTE, ep)?, format!("{ep}.mutations")),
        BUFFER_PER_ROUTE => buffer_override(&payload(any, BUFFER_PER_ROUTE, ep)?, ep),
        super::super::ext_proc::PER_ROUTE => ext_proc_override(any, ep),
        LOCAL_RATELIMIT => Ok(PerFilter::LocalRateLimit(Box::new(
            super::super::local_ratelimit::translate(
                &payload(any, LOCAL_RATELIMIT, ep)?,
                ep,
                true,
            )?,
        ))),
        super::super::rbac::PER_ROUTE => {
            Ok(PerFilter::Rbac(super::super::rbac::per_route_any(any, ep)?))
        }
        super::super::fault_cors::FAULT => Ok(PerFilter::Fault(super::super::fault_cors::fault(
            &payload(any, super::super::fault_cors::FAULT, ep)?,
            ep,
        )?)),
        super::super::fault_cors::CORS_POLICY => Ok(PerFilter::Cors(
            payload(any, super::super::fault_cors::CORS_POLICY, ep)?,
            ep.to_string(),
        )),
        super::super::ext_authz::PER_ROUTE => {
            let e = payload(any, super::super::ext_authz::PER_ROUTE, ep)?;
            Ok(match super::super::ext_authz::per_route(&e, ep)? {
                None => PerFilter::Disabled,
                Some(s) => PerFilter::ExtAuthz(s),
            })
        }
        FILTER_CONFIG => {
            let f: FilterConfig = payload(any, FILTER_CONFIG, ep)?;
            match (&f.config, f.disabled) {
                (None, true) => Ok(PerFilter::Disabled),
                (Some(inner), false) if walk::type_name(&inner.type_url) == LOCAL_RATELIMIT => {
                    let cp = format!("{ep}.config");
                    let l = payload(inner, LOCAL_RATELIMIT, &cp)?;
                    Ok(PerFilter::LocalRateLimit(Box::new(
                        super::super::local_ratelimit::translate(&l, &cp, true)?,
                    )))
                }
                (Some(inner), false)
                    if walk::type_name(&inner.type_url) == super::super::ext_proc::PER_ROUTE =>
                {
                    ext_proc_override(inner, &format!("{ep}.config"))
                }
                (Some(inner), false) if walk::type_name(&inner.type_url) == BUFFER_PER_ROUTE => {
                    let cp = format!("{ep}.config");
                    buffer_override(&payload(inner, BUFFER_PER_ROUTE, &cp)?, &cp)
                }
                (Some(inner), false)
                    if walk::type_name(&inner.type_url) == super::super::rbac::PER_ROUTE =>
                {
                    let cp = format!("{ep}.config");
                    Ok(PerFilter::Rbac(super::super::rbac::per_route_any(
                        inner, &cp,
                    )?))
                }
                (Some(inner), false)
                    if walk::type_name(&inner.type_url) == super::super::fault_cors::FAULT =>
                {
                    let cp = format!("{ep}.config");
                    let h = payload(inner, super::super::fault_cors::FAULT, &cp)?;
                    Ok(PerFilter::Fault(super::super::fault_cors::fault(&h, &cp)?))
                }
                (Some(inner), false)
                    if walk::type_name(&inner.type_url)
                        == super::super::fault_cors::CORS_POLICY =>
                {
                    let cp = format!("{ep}.config");
                    let c = payload(inner, super::super::fault_cors::CORS_POLICY, &cp)?;
                    Ok(PerFilter::Cors(c, cp))
                }
                (Some(inner), false) => checked(
                    payload(inner, PER_ROUTE, &format!("{ep}.config"))?,
                    format!("{ep}.config.mutations"),
                ),
                _ => Err(err(ep, "set `disabled: true` or `config`")),
            }
        }
        other => Err(err(
            ep,
            format!("per-filter config type `{other}` is not supported by Outrigger"),
        )),
    }
}
