//! Building a route's matchers and action from the raw YAML: path, headers, query
//! parameters, gRPC, runtime fraction; cluster, weighted clusters, cluster header,
//! rewrites, redirect, direct response. Part of `config::build`; every error names its
//! field path (`route_tables[0].virtual_hosts[1].routes[2].match.safe_regex`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use regex_automata::dfa::{dense, StartKind};

use super::super::model::*;
use super::super::raw::*;
use super::{is_tchar, Builder};
use crate::http::router::convert_substitution;

/// The most memory a compiled `safe_regex` may take (its dense DFA, and its
/// determinisation): the counterpart of Envoy's RE2 `max_program_size`. A larger
/// pattern is a config error.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The deepest nesting a pattern may have.
const REGEX_NEST_LIMIT: u32 = 64;

/// Builds the matching form of a pattern (`^(?:p)$`, anchored dense DFA).
pub(crate) fn compile_pattern(p: &str) -> Result<Pattern, String> {
    let dfa = dense::Builder::new()
        .configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .dfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .determinize_size_limit(Some(REGEX_SIZE_LIMIT)),
        )
        .syntax(regex_automata::util::syntax::Config::new().nest_limit(REGEX_NEST_LIMIT))
        .build(&format!("^(?:{p})$"))
        .map_err(|e| format!("invalid or too large regex `{p}`: {e}"))?;
    Ok(Pattern {
        source: p.to_string(),
        dfa: Box::new(dfa),
    })
}

/// Builds the rewriting form of a pattern (meta engine, with captures).
pub(crate) fn compile_rewrite(p: &str) -> Result<RewritePattern, String> {
    let regex = regex_automata::meta::Builder::new()
        .configure(
            regex_automata::meta::Config::new()
                .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .hybrid_cache_capacity(REGEX_SIZE_LIMIT),
        )
        .syntax(regex_automata::util::syntax::Config::new().nest_limit(REGEX_NEST_LIMIT))
        .build(p)
        .map_err(|e| format!("invalid or too large regex `{p}`: {e}"))?;
    Ok(RewritePattern {
        source: p.to_string(),
        regex,
    })
}

impl Builder {
    fn pattern(&mut self, path: String, p: &str) -> Option<Pattern> {
        compile_pattern(p).map_err(|e| self.err(path, e)).ok()
    }

    fn regex_rewrite(&mut self, path: &str, r: &RawRegexRewrite) -> Option<RegexRewrite> {
        if !fits_a_path(&r.substitution) {
            self.err(format!("{path}.substitution"), NOT_A_PATH);
            return None;
        }
        let pattern = compile_rewrite(r.pattern.pattern())
            .map_err(|e| self.err(format!("{path}.pattern"), e))
            .ok()?;
        Some(RegexRewrite {
            pattern,
            substitution: convert_substitution(&r.substitution),
        })
    }

    /// Envoy's `StringMatcher`: exactly one form.
    fn string_match(&mut self, p: &str, m: &RawStringMatch) -> Option<StringMatch> {
        let lower = |s: &String| {
            if m.ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.clone()
            }
        };
        let kinds = [
            m.exact.as_ref().map(|s| StringMatchKind::Exact(lower(s))),
            m.prefix.as_ref().map(|s| StringMatchKind::Prefix(lower(s))),
            m.suffix.as_ref().map(|s| StringMatchKind::Suffix(lower(s))),
            m.contains
                .as_ref()
                .map(|s| StringMatchKind::Contains(lower(s))),
        ];
        let set = kinds.iter().flatten().count() + usize::from(m.safe_regex.is_some());
        if set != 1 {
            self.err(
                p.to_string(),
                "set exactly one of `exact`, `prefix`, `suffix`, `contains` and `safe_regex`",
            );
            return None;
        }
        if let Some(r) = &m.safe_regex {
            if m.ignore_case {
                self.err(format!("{p}.ignore_case"), "does not apply to `safe_regex`");
            }
            let pat = self.pattern(format!("{p}.safe_regex"), r.pattern())?;
            return Some(StringMatch {
                kind: StringMatchKind::Regex(pat),
                ignore_case: false,
            });
        }
        kinds.into_iter().flatten().next().map(|kind| StringMatch {
            kind,
            ignore_case: m.ignore_case,
        })
    }

    fn header_match(&mut self, hp: &str, h: &RawHeaderMatch) -> Option<HeaderMatch> {
        let name = h.name.to_ascii_lowercase();
        let pseudo = matches!(
            name.as_str(),
            ":method" | ":authority" | ":path" | ":scheme"
        );
        if !pseudo && (name.is_empty() || !name.bytes().all(is_tchar)) {
            self.err(
                format!("{hp}.name"),
                format!("`{}` is not a valid header name", h.name),
            );
            return None;
        }
        let direct = |s: &Option<String>, f: fn(String) -> StringMatchKind| {
            s.as_ref().map(|v| {
                HeaderMatchKind::String(StringMatch {
                    kind: f(v.clone()),
                    ignore_case: false,
                })
            })
        };
        let mut kinds: Vec<HeaderMatchKind> = [
            direct(&h.exact_match, StringMatchKind::Exact),
            direct(&h.prefix_match, StringMatchKind::Prefix),
            direct(&h.suffix_match, StringMatchKind::Suffix),
            direct(&h.contains_match, StringMatchKind::Contains),
            h.present_match.map(HeaderMatchKind::Present),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Some(r) = &h.range_match {
            if r.start >= r.end {
                self.err(
                    format!("{hp}.range_match"),
                    "`start` must be less than `end`",
                );
            }
            kinds.push(HeaderMatchKind::Range {
                start: r.start,
                end: r.end,
            });
        }
        if let Some(r) = &h.safe_regex_match {
            let pat = self.pattern(format!("{hp}.safe_regex_match"), r.pattern())?;
            kinds.push(HeaderMatchKind::String(StringMatch {
                kind: StringMatchKind::Regex(pat),
                ignore_case: false,
            }));
        }
        if let Some(s) = &h.string_match {
            let m = self.string_match(&format!("{hp}.string_match"), s)?;
            kinds.push(HeaderMatchKind::String(m));
        }
        let kind = match kinds.len() {
            // Envoy: a matcher with no value matches when the header is present.
            0 => HeaderMatchKind::Present(true),
            1 => kinds.pop()?,
            _ => {
                self.err(
                    hp.to_string(),
                    "set at most one of `exact_match`, `prefix_match`, `suffix_match`, \
                     `contains_match`, `safe_regex_match`, `present_match`, `range_match` \
                     and `string_match`",
                );
                return None;
            }
        };
        Some(HeaderMatch {
            name,
            kind,
            invert: h.invert_match,
            treat_missing_as_empty: h.treat_missing_header_as_empty,
        })
    }

    fn fraction(&mut self, p: &str, f: &RawRuntimeFraction) -> Option<Fraction> {
        let d = &f.default_value;
        let denominator = match d.denominator.as_deref() {
            None | Some("HUNDRED") => 100,
            Some("TEN_THOUSAND") => 10_000,
            Some("MILLION") => 1_000_000,
            Some(other) => {
                self.err(
                    format!("{p}.default_value.denominator"),
                    format!("unknown denominator `{other}` (HUNDRED, TEN_THOUSAND, MILLION)"),
                );
                return None;
            }
        };
        // Envoy caps the numerator at the denominator.
        Some(Fraction {
            numerator: d.numerator.min(denominator),
            denominator,
        })
    }

    /// The route's matchers; `None` after recording an error.
    pub(super) fn route_match(&mut self, p: &str, m: &RawRouteMatch) -> Option<RouteMatchParts> {
        let mp = format!("{p}.match");
        let ignore_case = !m.case_sensitive.unwrap_or(true);
        let set = [
            m.path.is_some(),
            m.prefix.is_some(),
            m.path_separated_prefix.is_some(),
            m.safe_regex.is_some(),
        ];
        if set.iter().filter(|b| **b).count() != 1 {
            self.err(
                mp,
                "set exactly one of `path`, `prefix`, `path_separated_prefix` and `safe_regex`",
            );
            return None;
        }
        let fold = |s: &String| {
            if ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.clone()
            }
        };
        let path = if let Some(r) = &m.safe_regex {
            PathMatch::Regex(self.pattern(format!("{mp}.safe_regex"), r.pattern())?)
        } else {
            let (field, value) = match (&m.path, &m.prefix, &m.path_separated_prefix) {
                (Some(v), _, _) => ("path", v),
                (_, Some(v), _) => ("prefix", v),
                (_, _, Some(v)) => ("path_separated_prefix", v),
                _ => return None,
            };
            if !value.starts_with('/') {
                self.err(
                    format!("{mp}.{field}"),
                    format!("`{value}` must start with `/`"),
                );
            }
            if field == "path_separated_prefix"
                && (value.contains(['?', '#']) || value.len() > 1 && value.ends_with('/'))
            {
                self.err(
                    format!("{mp}.{field}"),
                    "must not end with `/` or contain `?` or `#`",
                );
            }
            match field {
                "path" => PathMatch::Exact {
                    path: fold(value),
                    ignore_case,
                },
                "prefix" => PathMatch::Prefix {
                    prefix: fold(value),
                    ignore_case,
                },
                _ => PathMatch::SeparatedPrefix {
                    prefix: fold(value),
                    ignore_case,
                },
            }
        };
        let mut ok = true;
        let mut headers = Vec::new();
        for (k, h) in m.headers.iter().enumerate() {
            match self.header_match(&format!("{mp}.headers[{k}]"), h) {
                Some(h) => headers.push(h),
                None => ok = false,
            }
        }
        let mut query_parameters = Vec::new();
        for (k, q) in m.query_parameters.iter().enumerate() {
            let qp = format!("{mp}.query_parameters[{k}]");
            if q.name.is_empty() {
                self.err(format!("{qp}.name"), "must not be empty");
                ok = false;
                continue;
            }
            let value = match (&q.string_match, q.present_match) {
                (Some(s), None) => match self.string_match(&format!("{qp}.string_match"), s) {
                    Some(s) => Some(s),
                    None => {
                        ok = false;
                        continue;
                    }
                },
                (None, _) => None,
                (Some(_), Some(_)) => {
                    self.err(qp, "set at most one of `string_match` and `present_match`");
                    ok = false;
                    continue;
                }
            };
            query_parameters.push(QueryParameterMatch {
                name: q.name.clone(),
                value,
            });
        }
        let runtime_fraction = match &m.runtime_fraction {
            Some(f) => Some(self.fraction(&format!("{mp}.runtime_fraction"), f)?),
            None => None,
        };
        ok.then_some(RouteMatchParts {
            path,
            headers,
            query_parameters,
            grpc: m.grpc.is_some(),
            runtime_fraction,
        })
    }

    fn cluster_index(
        &mut self,
        path: String,
        name: &str,
        clusters: &[Arc<Cluster>],
    ) -> Option<usize> {
        let i = clusters.iter().position(|c| c.name == name);
        if i.is_none() {
            self.err(path, format!("no cluster named `{name}`"));
        }
        i
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
            || !r.upgrades.is_empty();
        if !forwarding && rewrites {
            self.err(
                p.to_string(),
                "`timeout`, `upgrades`, `prefix_rewrite`, `regex_rewrite`, `host_rewrite_literal`, `auto_host_rewrite` and `cluster_not_found_response_code` need a `cluster`, `cluster_header` or `weighted_clusters` route",
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
            ClusterTarget::Named(self.cluster_index(format!("{p}.cluster"), name, clusters)?)
        } else if let Some(h) = &r.cluster_header {
            if h.is_empty() || !h.bytes().all(is_tchar) {
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
                let cluster = self.cluster_index(format!("{cp}.name"), &c.name, clusters)?;
                list.push(WeightedCluster {
                    cluster,
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
        Some(RouteAction::Cluster(Forward {
            cluster_not_found_status,
            target,
            timeout: self.duration(format!("{p}.timeout"), &r.timeout, Duration::from_secs(15)),
            upgrades: r.upgrades.iter().map(|u| u.to_ascii_lowercase()).collect(),
            path_rewrite,
            host_rewrite,
        }))
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
const NOT_A_PATH: &str = "must not contain spaces, control characters or `#`";

fn fits_a_path(s: &str) -> bool {
    !s.bytes().any(|b| b <= 0x20 || b == 0x7f || b == b'#')
}

/// Envoy's default `max_direct_response_body_size_bytes` (4096) is raised here: the
/// body is served from memory, and a file is the point of `filename`.
pub const MAX_DIRECT_RESPONSE_BODY: usize = 1 << 20;

/// The matchers of one route, before they are put into its `Route`.
pub(super) struct RouteMatchParts {
    pub path: PathMatch,
    pub headers: Vec<HeaderMatch>,
    pub query_parameters: Vec<QueryParameterMatch>,
    pub grpc: bool,
    pub runtime_fraction: Option<Fraction>,
}

/// Cluster name -> index, for tables with a `cluster_header` route.
pub(super) fn clusters_by_name(clusters: &[Arc<Cluster>]) -> HashMap<String, usize> {
    clusters
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usual_patterns_fit_and_huge_ones_are_refused() {
        for p in [
            r"/api/\w+/items",
            r".*\.(jpg|png|gif)",
            r"/v[0-9]+/[a-z0-9-]{1,63}/.*",
            r"(?i)/Docs/.*",
        ] {
            let pat = compile_pattern(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(pat.dfa.memory_usage() <= REGEX_SIZE_LIMIT, "{p}");
        }
        assert!(compile_pattern(r"/a/\w+").unwrap().is_match("/a/héllo"));
        assert!(!compile_pattern(r"/a/\w+").unwrap().is_match("/a/x/y"));
        let e = compile_pattern(r"\w{300}[a-z]{200}").err().unwrap();
        assert!(e.contains("too large"), "{e}");
        assert!(compile_pattern("(").is_err());
        // A DFA cannot decide a Unicode word boundary; the ASCII one works.
        assert!(compile_pattern(r"\bx").is_err());
        assert!(compile_pattern(r"(?-u:\b)x").unwrap().is_match("x"));
        let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        assert!(compile_pattern(&deep).is_err());
    }
}
