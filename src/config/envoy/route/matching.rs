//! Envoy `RouteMatch` -> the native route match: the path specifier (`prefix`, `path`,
//! `path_separated_prefix`, `safe_regex`, `connect_matcher`), `case_sensitive`,
//! `headers` (every `HeaderMatcher` form), `query_parameters`, `grpc` and
//! `runtime_fraction`. The native builder checks the values (regexes, header names);
//! the paths it reports are mapped back to the Envoy fields here. Control plane only.

use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, query_parameter_matcher::QueryParameterMatchSpecifier,
    route_match::PathSpecifier, HeaderMatcher, QueryParameterMatcher, RouteMatch,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher::MatchPattern, RegexMatchAndSubstitute, RegexMatcher, StringMatcher,
};
use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;

use super::super::super::raw::{
    RawEmpty, RawFractionalPercent, RawHeaderMatch, RawQueryParameterMatch, RawRange, RawRegex,
    RawRegexMatcher, RawRegexRewrite, RawRouteMatch, RawRuntimeFraction, RawStringMatch,
};
use super::super::convert::R;
use super::super::{err, PathMap};

/// Where a route's fields are: the Envoy path and the native path of the same field.
pub(in super::super) struct At<'a> {
    pub envoy: &'a str,
    pub native: &'a str,
}

impl At<'_> {
    fn envoy(&self, f: &str) -> String {
        format!("{}.{f}", self.envoy)
    }

    fn native(&self, f: &str) -> String {
        format!("{}.{f}", self.native)
    }
}

/// A `RegexMatcher`: the native builder compiles it and reports the native path, which
/// names Envoy's `regex` field.
pub(super) fn regex(m: &RegexMatcher, at: &At<'_>, paths: &mut PathMap) -> RawRegex {
    paths.add(at.native.to_string(), at.envoy("regex"));
    RawRegex::Matcher(RawRegexMatcher {
        regex: m.regex.clone(),
    })
}

/// A `RegexMatchAndSubstitute` (route and redirect `regex_rewrite`).
pub(super) fn regex_rewrite(
    r: &RegexMatchAndSubstitute,
    at: &At<'_>,
    paths: &mut PathMap,
) -> R<RawRegexRewrite> {
    let pattern = r
        .pattern
        .as_ref()
        .ok_or_else(|| err(at.envoy("pattern"), "is required"))?;
    let pat = At {
        envoy: &at.envoy("pattern"),
        native: &at.native("pattern"),
    };
    Ok(RawRegexRewrite {
        pattern: regex(pattern, &pat, paths),
        substitution: r.substitution.clone(),
    })
}

/// The route's match, and whether it is a `connect_matcher` route.
pub(super) fn route_match(
    m: &RouteMatch,
    at: &At<'_>,
    paths: &mut PathMap,
) -> R<(RawRouteMatch, bool)> {
    paths.add(at.native.to_string(), at.envoy.to_string());
    let mut out = RawRouteMatch {
        case_sensitive: m.case_sensitive.as_ref().map(|b| b.value),
        ..Default::default()
    };
    let mut connect = false;
    match &m.path_specifier {
        Some(PathSpecifier::Prefix(x)) => out.prefix = Some(x.clone()),
        Some(PathSpecifier::Path(x)) => out.path = Some(x.clone()),
        Some(PathSpecifier::PathSeparatedPrefix(x)) => out.path_separated_prefix = Some(x.clone()),
        Some(PathSpecifier::SafeRegex(r)) => {
            let sub = At {
                envoy: &at.envoy("safe_regex"),
                native: &at.native("safe_regex"),
            };
            out.safe_regex = Some(regex(r, &sub, paths));
        }
        // Envoy: a connect_matcher route matches CONNECT requests only. Native CONNECT
        // routing ignores paths, so the route gets an exact path no request can carry (a
        // request target has no spaces): other requests never match it.
        Some(PathSpecifier::ConnectMatcher(_)) => {
            out.path = Some("/ (CONNECT only)".to_string());
            connect = true;
        }
        _ => {
            return Err(err(
                at.envoy.to_string(),
                "set `prefix`, `path`, `path_separated_prefix`, `safe_regex` or `connect_matcher`",
            ))
        }
    }
    for (k, h) in m.headers.iter().enumerate() {
        let sub = At {
            envoy: &at.envoy(&format!("headers[{k}]")),
            native: &at.native(&format!("headers[{k}]")),
        };
        out.headers.push(header_match(h, &sub, paths)?);
    }
    for (k, q) in m.query_parameters.iter().enumerate() {
        let sub = At {
            envoy: &at.envoy(&format!("query_parameters[{k}]")),
            native: &at.native(&format!("query_parameters[{k}]")),
        };
        out.query_parameters.push(query_parameter(q, &sub, paths)?);
    }
    out.grpc = m.grpc.as_ref().map(|_| RawEmpty {});
    if let Some(f) = &m.runtime_fraction {
        out.runtime_fraction = Some(fraction(f, &at.envoy("runtime_fraction"))?);
    }
    Ok((out, connect))
}

// `exact_match`, `prefix_match`, ... are deprecated in Envoy's API but still accepted.
#[allow(deprecated)]
pub(in super::super) fn header_match(
    h: &HeaderMatcher,
    at: &At<'_>,
    paths: &mut PathMap,
) -> R<RawHeaderMatch> {
    let mut out = RawHeaderMatch {
        name: h.name.clone(),
        invert_match: h.invert_match,
        treat_missing_header_as_empty: h.treat_missing_header_as_empty,
        ..Default::default()
    };
    match &h.header_match_specifier {
        // Envoy: no specifier matches when the header is present.
        None => out.present_match = Some(true),
        Some(HeaderMatchSpecifier::ExactMatch(v)) => out.exact_match = Some(v.clone()),
        Some(HeaderMatchSpecifier::PrefixMatch(v)) => out.prefix_match = Some(v.clone()),
        Some(HeaderMatchSpecifier::SuffixMatch(v)) => out.suffix_match = Some(v.clone()),
        Some(HeaderMatchSpecifier::ContainsMatch(v)) => out.contains_match = Some(v.clone()),
        Some(HeaderMatchSpecifier::PresentMatch(b)) => out.present_match = Some(*b),
        Some(HeaderMatchSpecifier::SafeRegexMatch(r)) => {
            let sub = At {
                envoy: &at.envoy("safe_regex_match"),
                native: &at.native("safe_regex_match"),
            };
            out.safe_regex_match = Some(regex(r, &sub, paths));
        }
        Some(HeaderMatchSpecifier::RangeMatch(r)) => {
            out.range_match = Some(RawRange {
                start: r.start,
                end: r.end,
            })
        }
        Some(HeaderMatchSpecifier::StringMatch(s)) => {
            let sub = At {
                envoy: &at.envoy("string_match"),
                native: &at.native("string_match"),
            };
            out.string_match = Some(string_match(s, &sub, paths)?);
        }
    }
    Ok(out)
}

fn query_parameter(
    q: &QueryParameterMatcher,
    at: &At<'_>,
    paths: &mut PathMap,
) -> R<RawQueryParameterMatch> {
    let mut out = RawQueryParameterMatch {
        name: q.name.clone(),
        string_match: None,
        present_match: None,
    };
    match &q.query_parameter_match_specifier {
        Some(QueryParameterMatchSpecifier::StringMatch(s)) => {
            let sub = At {
                envoy: &at.envoy("string_match"),
                native: &at.native("string_match"),
            };
            out.string_match = Some(string_match(s, &sub, paths)?);
        }
        // Envoy: `present_match` (true or false) and no specifier both match when the
        // parameter is present.
        Some(QueryParameterMatchSpecifier::PresentMatch(_)) | None => {}
    }
    Ok(out)
}

/// A `StringMatcher`; `custom` is refused by the walker.
pub(in super::super) fn string_match(
    s: &StringMatcher,
    at: &At<'_>,
    paths: &mut PathMap,
) -> R<RawStringMatch> {
    let mut out = RawStringMatch {
        exact: None,
        prefix: None,
        suffix: None,
        contains: None,
        safe_regex: None,
        ignore_case: s.ignore_case,
    };
    match &s.match_pattern {
        Some(MatchPattern::Exact(v)) => out.exact = Some(v.clone()),
        Some(MatchPattern::Prefix(v)) => out.prefix = Some(v.clone()),
        Some(MatchPattern::Suffix(v)) => out.suffix = Some(v.clone()),
        Some(MatchPattern::Contains(v)) => out.contains = Some(v.clone()),
        Some(MatchPattern::SafeRegex(r)) => {
            let sub = At {
                envoy: &at.envoy("safe_regex"),
                native: &at.native("safe_regex"),
            };
            out.safe_regex = Some(regex(r, &sub, paths));
        }
        _ => {
            return Err(err(
                at.envoy.to_string(),
                "set `exact`, `prefix`, `suffix`, `contains` or `safe_regex`",
            ))
        }
    }
    Ok(out)
}

/// `runtime_fraction`: there is no runtime layer, so the default value is the fraction
/// (as under Envoy when the runtime key is not set).
pub(super) fn fraction(f: &RuntimeFractionalPercent, p: &str) -> R<RawRuntimeFraction> {
    let d = f
        .default_value
        .as_ref()
        .ok_or_else(|| err(format!("{p}.default_value"), "is required"))?;
    let denominator = DenominatorType::try_from(d.denominator)
        .map_err(|_| err(format!("{p}.default_value.denominator"), "unknown value"))?;
    Ok(RawRuntimeFraction {
        default_value: RawFractionalPercent {
            numerator: d.numerator,
            denominator: Some(denominator.as_str_name().to_string()),
        },
        runtime_key: Some(f.runtime_key.clone()).filter(|k| !k.is_empty()),
    })
}
