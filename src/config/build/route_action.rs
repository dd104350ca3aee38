//! Building a route's action from the raw YAML: cluster, weighted clusters, cluster
//! header, rewrites, redirect, direct response. Part of `config::build` (the matchers
//! are in `route_match`); every error names its field path.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::super::circuit::Priority;
use super::super::model::*;
use super::super::raw::*;
use super::{is_tchar, Builder};

impl Builder {
    /// A route's cluster: `Ok(None)` when it does not exist and the table does not
    /// validate clusters (Envoy's `validate_clusters: false`, the default for RDS) or
    /// the cluster is still warming, `Err` (recorded) when it does not exist and the
    /// table does.
    fn route_cluster(
        &mut self,
        path: String,
        name: &str,
        clusters: &[Arc<Cluster>],
    ) -> Result<Option<usize>, ()> {
        match clusters.iter().position(|c| c.name == name) {
            Some(i) => Ok(Some(i)),
            None if self.lax_clusters || self.warming_clusters.iter().any(|w| w == name) => {
                Ok(None)
            }
            None => {
                self.err(path, format!("no cluster named `{name}`"));
                Err(())
            }
        }
    }

    /// The route's action: exactly one of `cluster`, `cluster_header`,
    /// `weighted_clusters`, `redirect`, `direct_response`.
    pub(super) fn route_action(
        &mut self,
        p: &str,
        r: &RawRoute,
        clusters: &[Arc<Cluster>],
    ) -> Option<RouteAction> {
        let forwards = [
            r.cluster.is_some(),
            r.cluster_header.is_some(),
            r.weighted_clusters.is_some(),
        ];
        let n = forwards.iter().filter(|b| **b).count()
            + usize::from(r.redirect.is_some())
            + usize::from(r.direct_response.is_some());
        if n != 1 {
            self.err(
                p.to_string(),
                "set exactly one of `cluster`, `cluster_header`, `weighted_clusters`, `redirect` and `direct_response`",
            );
            return None;
        }
        let forwarding = forwards.iter().any(|b| *b);
        let rewrites = r.prefix_rewrite.is_some()
            || r.regex_rewrite.is_some()
            || r.host_rewrite_literal.is_some()
            || r.auto_host_rewrite
            || r.cluster_not_found_response_code.is_some()
            || r.timeout.is_some()
            || r.priority.is_some()
            || !r.upgrades.is_empty()
            || !r.request_mirror_policies.is_empty()
            || !r.hash_policy.is_empty();
        if !forwarding && rewrites {
            self.err(
                p.to_string(),
                "`timeout`, `priority`, `upgrades`, `prefix_rewrite`, `regex_rewrite`, `host_rewrite_literal`, `auto_host_rewrite`, `cluster_not_found_response_code`, `request_mirror_policies` and `hash_policy` need a `cluster`, `cluster_header` or `weighted_clusters` route",
            );
        }
        if let Some(d) = &r.direct_response {
            return self.direct_response(&format!("{p}.direct_response"), d);
        }
        if let Some(rd) = &r.redirect {
            return self
                .redirect(&format!("{p}.redirect"), rd)
                .map(RouteAction::Redirect);
        }
        for (k, u) in r.upgrades.iter().enumerate() {
            if u.is_empty() || !u.bytes().all(is_tchar) {
                self.err(
                    format!("{p}.upgrades[{k}]"),
                    format!("`{u}` is not an upgrade protocol token"),
                );
            }
        }
        let target = if let Some(name) = &r.cluster {
            match self
                .route_cluster(format!("{p}.cluster"), name, clusters)
                .ok()?
            {
                Some(i) => ClusterTarget::Named(i),
                None => ClusterTarget::Missing,
            }
        } else if let Some(h) = &r.cluster_header {
            if !lax_header_name(h) {
                self.err(
                    format!("{p}.cluster_header"),
                    format!("`{h}` is not a valid header name"),
                );
                return None;
            }
            ClusterTarget::Header(h.to_ascii_lowercase())
        } else {
            let w = r.weighted_clusters.as_ref()?;
            let wp = format!("{p}.weighted_clusters");
            if w.clusters.is_empty() {
                self.err(format!("{wp}.clusters"), "must list at least one cluster");
                return None;
            }
            let mut list = Vec::new();
            for (k, c) in w.clusters.iter().enumerate() {
                let cp = format!("{wp}.clusters[{k}]");
                let cluster = self
                    .route_cluster(format!("{cp}.name"), &c.name, clusters)
                    .ok()?;
                list.push(WeightedCluster {
                    cluster,
                    name: c.name.clone(),
                    weight: c.weight,
                    host_rewrite: c.host_rewrite_literal.clone(),
                });
            }
            let total: u64 = list.iter().map(|c| u64::from(c.weight)).sum();
            if total == 0 || total > u64::from(u32::MAX) {
                self.err(
                    format!("{wp}.clusters"),
                    "the sum of the weights must be between 1 and 4294967295",
                );
                return None;
            }
            ClusterTarget::Weighted {
                clusters: list,
                total,
            }
        };
        let path_rewrite = match (&r.prefix_rewrite, &r.regex_rewrite) {
            (Some(_), Some(_)) => {
                self.err(
                    p.to_string(),
                    "set at most one of `prefix_rewrite` and `regex_rewrite`",
                );
                None
            }
            // Envoy: an empty prefix_rewrite is no rewrite.
            (Some(x), None) if x.is_empty() => None,
            (Some(x), None) => {
                if !fits_a_path(x) {
                    self.err(format!("{p}.prefix_rewrite"), NOT_A_PATH);
                }
                Some(PathRewrite::Prefix(x.clone()))
            }
            (None, Some(rx)) => self
                .regex_rewrite(&format!("{p}.regex_rewrite"), rx)
                .map(PathRewrite::Regex),
            (None, None) => None,
        };
        let host_rewrite = match (&r.host_rewrite_literal, r.auto_host_rewrite) {
            (Some(_), true) => {
                self.err(
                    p.to_string(),
                    "set at most one of `host_rewrite_literal` and `auto_host_rewrite`",
                );
                HostRewrite::None
            }
            (Some(h), false) => {
                if h.is_empty() || h.bytes().any(|b| b <= 0x20 || b == 0x7f) {
                    self.err(
                        format!("{p}.host_rewrite_literal"),
                        "must be a non-empty host",
                    );
                }
                HostRewrite::Literal(h.clone())
            }
            (None, true) => HostRewrite::Auto,
            (None, false) => HostRewrite::None,
        };
        let cluster_not_found_status = match r.cluster_not_found_response_code.as_deref() {
            None | Some("SERVICE_UNAVAILABLE") => 503,
            Some("NOT_FOUND") => 404,
            Some("INTERNAL_SERVER_ERROR") => 500,
            Some(other) => {
                self.err(
                    format!("{p}.cluster_not_found_response_code"),
                    format!("unknown code `{other}` (SERVICE_UNAVAILABLE, NOT_FOUND, INTERNAL_SERVER_ERROR)"),
                );
                503
            }
        };
        let mirrors = self.mirror_policies(p, &r.request_mirror_policies, clusters);
        let hash_policy = self.hash_policies(p, &r.hash_policy);
        let stream = self.stream_timeouts(p, r);
        let priority = Priority::parse(r.priority.as_deref()).unwrap_or_else(|| {
            self.err(
                format!("{p}.priority"),
                format!(
                    "unknown priority `{}` (DEFAULT, HIGH)",
                    r.priority.as_deref().unwrap_or_default()
                ),
            );
            Priority::Default
        });
        Some(RouteAction::Cluster(Forward {
            stream,
            priority,
            mirrors,
            hash_policy,
            cluster_not_found_status,
            target,
            timeout: self.duration(format!("{p}.timeout"), &r.timeout, Duration::from_secs(15)),
            upgrades: r.upgrades.iter().map(|u| u.to_ascii_lowercase()).collect(),
            path_rewrite,
            host_rewrite,
            // Set by `routes.rs`, which knows the virtual host.
            retries: Default::default(),
        }))
    }

    /// Envoy's `max_stream_duration`, `max_grpc_timeout` and `grpc_timeout_offset`.
    fn stream_timeouts(&mut self, p: &str, r: &RawRoute) -> StreamTimeouts {
        let opt = |b: &mut Self, path: String, v: &Option<String>| {
            v.as_ref().map(|_| b.duration(path, v, Duration::ZERO))
        };
        let max_stream_duration = r.max_stream_duration.as_ref().map(|m| {
            let mp = format!("{p}.max_stream_duration");
            MaxStreamDuration {
                max_stream_duration: opt(
                    self,
                    format!("{mp}.max_stream_duration"),
                    &m.max_stream_duration,
                ),
                grpc_timeout_header_max: opt(
                    self,
                    format!("{mp}.grpc_timeout_header_max"),
                    &m.grpc_timeout_header_max,
                ),
                grpc_timeout_header_offset: opt(
                    self,
                    format!("{mp}.grpc_timeout_header_offset"),
                    &m.grpc_timeout_header_offset,
                ),
            }
        });
        StreamTimeouts {
            max_stream_duration,
            max_grpc_timeout: opt(self, format!("{p}.max_grpc_timeout"), &r.max_grpc_timeout),
            grpc_timeout_offset: opt(
                self,
                format!("{p}.grpc_timeout_offset"),
                &r.grpc_timeout_offset,
            ),
        }
    }

    /// Envoy's `request_mirror_policies`: each names its cluster or the header that
    /// does. A named cluster must exist (Envoy refuses a static route table whose shadow
    /// cluster is unknown: `unknown shadow cluster`).
    fn mirror_policies(
        &mut self,
        p: &str,
        raw: &[RawMirrorPolicy],
        clusters: &[Arc<Cluster>],
    ) -> Vec<MirrorPolicy> {
        let mut out = Vec::with_capacity(raw.len());
        for (k, m) in raw.iter().enumerate() {
            let mp = format!("{p}.request_mirror_policies[{k}]");
            let target = match (&m.cluster, &m.cluster_header) {
                (Some(name), None) => {
                    // Without validation, a mirror to a cluster that does not exist
                    // sends no copy (Envoy skips a shadow whose cluster it cannot find).
                    match self.route_cluster(format!("{mp}.cluster"), name, clusters) {
                        Ok(Some(i)) => MirrorTarget::Named(i),
                        Ok(None) | Err(()) => continue,
                    }
                }
                (None, Some(h)) => {
                    if !lax_header_name(h) {
                        self.err(
                            format!("{mp}.cluster_header"),
                            format!("`{h}` is not a valid header name"),
                        );
                        continue;
                    }
                    MirrorTarget::Header(h.to_ascii_lowercase())
                }
                _ => {
                    self.err(mp, "set exactly one of `cluster` and `cluster_header`");
                    continue;
                }
            };
            let fraction = match &m.runtime_fraction {
                Some(f) => match self.fraction(&format!("{mp}.runtime_fraction"), f) {
                    Some(f) => Some(f),
                    None => continue,
                },
                None => None,
            };
            let host = m.host_rewrite_literal.clone().filter(|h| !h.is_empty());
            if host
                .as_deref()
                .is_some_and(|h| h.bytes().any(|b| b <= 0x20 || b == 0x7f))
            {
                self.err(
                    format!("{mp}.host_rewrite_literal"),
                    "must be a host, without spaces or control characters",
                );
                continue;
            }
            out.push(MirrorPolicy {
                target,
                fraction,
                // Envoy: a literal Host implies no suffix.
                host_suffix: !m.disable_shadow_host_suffix_append && host.is_none(),
                host,
            });
        }
        out
    }

    fn redirect(&mut self, p: &str, r: &RawRedirect) -> Option<Redirect> {
        let status = match r.response_code.as_deref() {
            None | Some("MOVED_PERMANENTLY") => 301,
            Some("FOUND") => 302,
            Some("SEE_OTHER") => 303,
            Some("TEMPORARY_REDIRECT") => 307,
            Some("PERMANENT_REDIRECT") => 308,
            Some(other) => {
                self.err(
                    format!("{p}.response_code"),
                    format!("unknown response code `{other}` (MOVED_PERMANENTLY, FOUND, SEE_OTHER, TEMPORARY_REDIRECT, PERMANENT_REDIRECT)"),
                );
                return None;
            }
        };
        if r.https_redirect && r.scheme_redirect.is_some() {
            self.err(
                p.to_string(),
                "set at most one of `https_redirect` and `scheme_redirect`",
            );
        }
        let paths = usize::from(r.path_redirect.is_some())
            + usize::from(r.prefix_rewrite.is_some())
            + usize::from(r.regex_rewrite.is_some());
        if paths > 1 {
            self.err(
                p.to_string(),
                "set at most one of `path_redirect`, `prefix_rewrite` and `regex_rewrite`",
            );
            return None;
        }
        let clean = |s: &str| !s.bytes().any(|b| b <= 0x20 || b == 0x7f);
        for (field, v) in [
            ("scheme_redirect", &r.scheme_redirect),
            ("host_redirect", &r.host_redirect),
            ("path_redirect", &r.path_redirect),
            ("prefix_rewrite", &r.prefix_rewrite),
        ] {
            if v.as_deref().is_some_and(|s| s.is_empty() || !clean(s)) {
                self.err(
                    format!("{p}.{field}"),
                    "must be non-empty, without spaces or control characters",
                );
            }
        }
        let path = if let Some(x) = &r.path_redirect {
            RedirectPath::Path(x.clone())
        } else if let Some(x) = &r.prefix_rewrite {
            RedirectPath::Prefix(x.clone())
        } else if let Some(rx) = &r.regex_rewrite {
            RedirectPath::Regex(self.regex_rewrite(&format!("{p}.regex_rewrite"), rx)?)
        } else {
            RedirectPath::Keep
        };
        Some(Redirect {
            scheme: r
                .scheme_redirect
                .as_ref()
                .map(|s| s.to_ascii_lowercase())
                .or_else(|| r.https_redirect.then(|| "https".to_string())),
            host: r.host_redirect.clone(),
            port: r.port_redirect.filter(|p| *p != 0),
            path,
            status,
            strip_query: r.strip_query,
        })
    }

    fn direct_response(&mut self, p: &str, d: &RawDirectResponse) -> Option<RouteAction> {
        if !(200..=599).contains(&d.status) {
            self.err(format!("{p}.status"), "must be between 200 and 599");
        }
        if let Some(ct) = &d.content_type {
            if ct.bytes().any(|b| b < 0x20 || b == 0x7f) {
                self.err(
                    format!("{p}.content_type"),
                    "must not contain control characters",
                );
            }
        }
        let body = match &d.body {
            None => Bytes::new(),
            Some(RawDataSource::Inline(s)) => Bytes::from(s.clone()),
            Some(RawDataSource::Source(src)) => match (&src.inline_string, &src.filename) {
                (Some(s), None) => Bytes::from(s.clone()),
                // Read once, when the config loads (on the control thread, never by a
                // worker), as Envoy reads a DataSource file.
                (None, Some(f)) => match std::fs::read(f) {
                    Ok(b) if b.len() <= MAX_DIRECT_RESPONSE_BODY => Bytes::from(b),
                    Ok(b) => {
                        self.err(
                            format!("{p}.body.filename"),
                            format!(
                                "`{f}` is {} bytes; the limit is {MAX_DIRECT_RESPONSE_BODY}",
                                b.len()
                            ),
                        );
                        return None;
                    }
                    Err(e) => {
                        self.err(
                            format!("{p}.body.filename"),
                            format!("cannot read `{f}`: {e}"),
                        );
                        return None;
                    }
                },
                _ => {
                    self.err(
                        format!("{p}.body"),
                        "set exactly one of `inline_string` and `filename`",
                    );
                    return None;
                }
            },
        };
        Some(RouteAction::Direct(DirectResponse {
            status: d.status,
            body,
            content_type: d.content_type.clone(),
        }))
    }
}

/// A rewritten path goes into the upstream request line as it is.
pub(super) const NOT_A_PATH: &str = "must not contain spaces, control characters or `#`";

pub(super) fn fits_a_path(s: &str) -> bool {
    !s.bytes().any(|b| b <= 0x20 || b == 0x7f || b == b'#')
}

/// Envoy's default `max_direct_response_body_size_bytes` (4096) is raised here: the
/// body is served from memory, and a file is the point of `filename`.
pub const MAX_DIRECT_RESPONSE_BODY: usize = 1 << 20;

/// Cluster name -> index, for tables with a `cluster_header` route.
pub(super) fn clusters_by_name(clusters: &[Arc<Cluster>]) -> HashMap<String, usize> {
    clusters
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect()
}

/// Envoy's lax header-name rule for `cluster_header` (`HTTP_HEADER_NAME` with
/// `strict: false`): not empty, no NUL, CR or LF. A name that is not a token (`a b`)
/// passes, as in Envoy; no request can carry it, so such a route always finds no
/// cluster.
fn lax_header_name(h: &str) -> bool {
    !h.is_empty() && !h.bytes().any(|b| matches!(b, 0 | b'\r' | b'\n'))
}
