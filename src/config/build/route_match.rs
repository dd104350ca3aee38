//! Building a route's matchers from the raw YAML: path, headers, query parameters,
//! gRPC, runtime fraction, and the regexes they (and rewrites) compile. Part of
//! `config::build` (the actions are in `route_action`); every error names its field
//! path (`route_tables[0].virtual_hosts[1].routes[2].match.safe_regex`).

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

    pub(super) fn regex_rewrite(
        &mut self,
        path: &str,
        r: &RawRegexRewrite,
    ) -> Option<RegexRewrite> {
        if !super::route_action::fits_a_path(&r.substitution) {
            self.err(
                format!("{path}.substitution"),
                super::route_action::NOT_A_PATH,
            );
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
    pub(super) fn string_match(&mut self, p: &str, m: &RawStringMatch) -> Option<StringMatch> {
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

    /// Envoy's `QueryParameterMatcher` (a route's, or a rate-limit action's).
    pub(super) fn query_match(
        &mut self,
        qp: &str,
        q: &RawQueryParameterMatch,
    ) -> Option<QueryParameterMatch> {
        if q.name.is_empty() {
            self.err(format!("{qp}.name"), "must not be empty");
            return None;
        }
        let value = match (&q.string_match, q.present_match) {
            (Some(s), None) => Some(self.string_match(&format!("{qp}.string_match"), s)?),
            (None, _) => None,
            (Some(_), Some(_)) => {
                self.err(
                    qp.to_string(),
                    "set at most one of `string_match` and `present_match`",
                );
                return None;
            }
        };
        Some(QueryParameterMatch {
            name: q.name.clone(),
            value,
        })
    }

    pub(super) fn header_match(&mut self, hp: &str, h: &RawHeaderMatch) -> Option<HeaderMatch> {
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

    pub(super) fn fraction(&mut self, p: &str, f: &RawRuntimeFraction) -> Option<Fraction> {
        self.percent(&format!("{p}.default_value"), &f.default_value)
    }

    /// Envoy's `FractionalPercent` (the fault filter's percentages, the CORS policy's
    /// `filter_enabled`).
    pub(super) fn percent(&mut self, p: &str, d: &RawFractionalPercent) -> Option<Fraction> {
        let denominator = match d.denominator.as_deref() {
            None | Some("HUNDRED") => 100,
            Some("TEN_THOUSAND") => 10_000,
            Some("MILLION") => 1_000_000,
            Some(other) => {
                self.err(
                    format!("{p}.denominator"),
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
            match self.query_match(&format!("{mp}.query_parameters[{k}]"), q) {
                Some(q) => query_parameters.push(q),
                None => ok = false,
            }
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
}

/// The matchers of one route, before they are put into its `Route`.
pub(super) struct RouteMatchParts {
    pub path: PathMatch,
    pub headers: Vec<HeaderMatch>,
    pub query_parameters: Vec<QueryParameterMatch>,
    pub grpc: bool,
    pub runtime_fraction: Option<Fraction>,
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
