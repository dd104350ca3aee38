//! Raw serde types of the matchers shared by routes, retry policies and policy
//! filters in the native YAML (Envoy's `HeaderMatcher`, `StringMatcher`,
//! `RegexMatcher` field names); checked by `config::build::route_match`.

use serde::Deserialize;

/// Envoy's `RegexMatcher`: `{regex: "..."}`; a bare string is accepted too.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawRegex {
    Bare(String),
    Matcher(RawRegexMatcher),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegexMatcher {
    pub regex: String,
}

impl RawRegex {
    pub(crate) fn pattern(&self) -> &str {
        match self {
            RawRegex::Bare(s) => s,
            RawRegex::Matcher(m) => &m.regex,
        }
    }
}

/// Envoy's `HeaderMatcher`: the older direct fields (`exact_match`, ...) or
/// `string_match`, or `present_match` or `range_match`. `exact`, `prefix`, `present` and
/// `invert` are this project's earlier short names, still accepted.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderMatch {
    pub name: String,
    #[serde(default, alias = "exact")]
    pub exact_match: Option<String>,
    #[serde(default, alias = "prefix")]
    pub prefix_match: Option<String>,
    #[serde(default)]
    pub suffix_match: Option<String>,
    #[serde(default)]
    pub contains_match: Option<String>,
    #[serde(default)]
    pub safe_regex_match: Option<RawRegex>,
    #[serde(default, alias = "present")]
    pub present_match: Option<bool>,
    #[serde(default)]
    pub range_match: Option<RawRange>,
    #[serde(default)]
    pub string_match: Option<RawStringMatch>,
    #[serde(default, alias = "invert")]
    pub invert_match: bool,
    #[serde(default)]
    pub treat_missing_header_as_empty: bool,
}

/// Envoy's `Int64Range`: `[start, end)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRange {
    pub start: i64,
    pub end: i64,
}

/// Envoy's `StringMatcher`: one of the forms, and `ignore_case` (not for `safe_regex`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStringMatch {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub safe_regex: Option<RawRegex>,
    #[serde(default)]
    pub ignore_case: bool,
}

/// Envoy's `RuntimeFractionalPercent`; there is no runtime layer, so `default_value` is
/// the fraction and `runtime_key` is accepted and ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRuntimeFraction {
    pub default_value: RawFractionalPercent,
    #[serde(default)]
    #[allow(dead_code)]
    pub runtime_key: Option<String>,
}

/// Envoy's `FractionalPercent`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFractionalPercent {
    #[serde(default)]
    pub numerator: u32,
    /// `HUNDRED` (default), `TEN_THOUSAND` or `MILLION`.
    #[serde(default)]
    pub denominator: Option<String>,
}

/// Envoy's `QueryParameterMatcher`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQueryParameterMatch {
    pub name: String,
    #[serde(default)]
    pub string_match: Option<RawStringMatch>,
    #[serde(default)]
    pub present_match: Option<bool>,
}
