//! The checked matchers shared by routes, retry policies and policy filters: Envoy's
//! `HeaderMatcher` and `StringMatcher`, and the compiled regex they use. Below every
//! model that matches on requests, so none of them depends on another for these.

use std::fmt;

/// A compiled RE2-syntax pattern for matching (Envoy's `safe_regex`): a dense DFA of
/// `^(?:pattern)$`, anchored, since Envoy matches the whole value. A dense DFA needs no
/// mutable cache, so workers share it without a lock; its size is bounded when it is
/// built (`config::build::route_match::REGEX_SIZE_LIMIT`, the counterpart of Envoy's
/// `max_program_size`).
#[derive(Clone)]
pub struct Pattern {
    pub source: String,
    pub dfa: Box<regex_automata::dfa::dense::DFA<Vec<u32>>>,
}

impl Pattern {
    pub fn is_match(&self, s: &str) -> bool {
        use regex_automata::dfa::Automaton;
        let input = regex_automata::Input::new(s).anchored(regex_automata::Anchored::Yes);
        // An error (a quit byte, which this DFA does not configure) counts as no match.
        matches!(self.dfa.try_search_fwd(&input), Ok(Some(_)))
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, o: &Pattern) -> bool {
        self.source == o.source
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMatch {
    /// Lower-case; `:method`, `:authority` (or `host`), `:path` and `:scheme` name the
    /// request's pseudo-headers on HTTP/1 as on HTTP/2.
    pub name: String,
    pub kind: HeaderMatchKind,
    pub invert: bool,
    /// A missing header is tested as an empty value instead of failing the match.
    pub treat_missing_as_empty: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HeaderMatchKind {
    /// `present_match`: the header is there (`true`) or is not (`false`).
    Present(bool),
    /// `range_match`: the value is an integer in `[start, end)`.
    Range {
        start: i64,
        end: i64,
    },
    String(StringMatch),
}

/// Envoy's `StringMatcher`.
#[derive(Debug, Clone, PartialEq)]
pub struct StringMatch {
    pub kind: StringMatchKind,
    /// Compare ASCII case-insensitively (values stored lower-case); not for regexes.
    pub ignore_case: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StringMatchKind {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(Pattern),
}
