//! Access-log filters (Envoy's `AccessLogFilter`): which finished streams get a line.
//! Parsed once at config time; `observe::access_log_filter` evaluates them per stream,
//! before anything is formatted.
//!
//! Native form (one key per filter):
//! `status_code: {op: ge, value: 400}`, `duration: {op: ge, value: 100}` (ms),
//! `not_health_check: {}`, `response_flags: [UF, NR]` (empty: any flag),
//! `runtime: {numerator: 10, denominator: hundred}`, `and: [..]`, `or: [..]`.

use serde::Deserialize;

use crate::http::flags::ResponseFlag;

/// Envoy's `ComparisonFilter.Op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmp {
    Eq,
    Ge,
    Le,
    Ne,
}

impl Cmp {
    pub fn holds(self, actual: u64, value: u64) -> bool {
        match self {
            Cmp::Eq => actual == value,
            Cmp::Ge => actual >= value,
            Cmp::Le => actual <= value,
            Cmp::Ne => actual != value,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFilter {
    Status(Cmp, u64),
    /// Milliseconds, compared with `%DURATION%`.
    Duration(Cmp, u64),
    /// Without a health-check filter no request is a health check: always true.
    NotHealthCheck,
    /// Any of these flags; empty: any flag at all.
    ResponseFlags(Vec<ResponseFlag>),
    /// Logs `numerator` out of `denominator` streams (Envoy's `runtime_filter` with its
    /// default `percent_sampled`; no runtime layer overrides it).
    Sample {
        numerator: u64,
        denominator: u64,
    },
    And(Vec<LogFilter>),
    Or(Vec<LogFilter>),
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawComparison {
    pub op: Cmp,
    pub value: u64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawDenominator {
    Hundred,
    TenThousand,
    Million,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFraction {
    pub numerator: u64,
    #[serde(default)]
    pub denominator: Option<RawDenominator>,
}

/// `{}`: a filter without settings.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmpty {}

/// One filter: exactly one of the fields is set (a YAML map with one key).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogFilter {
    #[serde(default)]
    pub status_code: Option<RawComparison>,
    #[serde(default)]
    pub duration: Option<RawComparison>,
    #[serde(default)]
    pub not_health_check: Option<RawEmpty>,
    #[serde(default)]
    pub response_flags: Option<Vec<String>>,
    #[serde(default)]
    pub runtime: Option<RawFraction>,
    #[serde(default)]
    pub and: Option<Vec<RawLogFilter>>,
    #[serde(default)]
    pub or: Option<Vec<RawLogFilter>>,
}

/// Nesting bound for `and`/`or` (a config, bounded all the same).
const MAX_DEPTH: usize = 16;

impl RawLogFilter {
    /// The domain filter; errors are `(field path suffix, message)`.
    pub(crate) fn build(&self, at: &str) -> Result<LogFilter, (String, String)> {
        self.build_at(at, 0)
    }

    fn build_at(&self, at: &str, depth: usize) -> Result<LogFilter, (String, String)> {
        if depth > MAX_DEPTH {
            return Err((at.into(), format!("nested deeper than {MAX_DEPTH}")));
        }
        let list = |v: &[RawLogFilter], key: &str| -> Result<Vec<LogFilter>, (String, String)> {
            if v.len() < 2 {
                return Err((format!("{at}.{key}"), "needs at least 2 filters".into()));
            }
            v.iter()
                .enumerate()
                .map(|(i, f)| f.build_at(&format!("{at}.{key}[{i}]"), depth + 1))
                .collect()
        };
        let set = [
            self.status_code.is_some(),
            self.duration.is_some(),
            self.not_health_check.is_some(),
            self.response_flags.is_some(),
            self.runtime.is_some(),
            self.and.is_some(),
            self.or.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err((
                at.into(),
                "set exactly one of status_code, duration, not_health_check, \
                 response_flags, runtime, and, or"
                    .into(),
            ));
        }
        if let Some(c) = self.status_code {
            return Ok(LogFilter::Status(c.op, c.value));
        }
        if let Some(c) = self.duration {
            return Ok(LogFilter::Duration(c.op, c.value));
        }
        if self.not_health_check.is_some() {
            return Ok(LogFilter::NotHealthCheck);
        }
        if let Some(names) = &self.response_flags {
            let mut flags = Vec::with_capacity(names.len());
            for (i, n) in names.iter().enumerate() {
                let f = ResponseFlag::all()
                    .into_iter()
                    .find(|f| *f != ResponseFlag::None && f.as_str() == n)
                    .ok_or_else(|| {
                        (
                            format!("{at}.response_flags[{i}]"),
                            format!("unknown or unsupported response flag `{n}`"),
                        )
                    })?;
                flags.push(f);
            }
            return Ok(LogFilter::ResponseFlags(flags));
        }
        if let Some(f) = self.runtime {
            let denominator = match f.denominator.unwrap_or(RawDenominator::Hundred) {
                RawDenominator::Hundred => 100,
                RawDenominator::TenThousand => 10_000,
                RawDenominator::Million => 1_000_000,
            };
            return Ok(LogFilter::Sample {
                numerator: f.numerator.min(denominator),
                denominator,
            });
        }
        if let Some(v) = &self.and {
            return Ok(LogFilter::And(list(v, "and")?));
        }
        let v = self.or.as_deref().unwrap_or_default();
        Ok(LogFilter::Or(list(v, "or")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<LogFilter, (String, String)> {
        let raw: RawLogFilter = serde_yaml::from_str(y).unwrap();
        raw.build("f")
    }

    #[test]
    fn builds_filters() {
        assert_eq!(
            parse("status_code: {op: ge, value: 400}").unwrap(),
            LogFilter::Status(Cmp::Ge, 400)
        );
        assert_eq!(
            parse("response_flags: [UF, NR]").unwrap(),
            LogFilter::ResponseFlags(vec![
                ResponseFlag::UpstreamConnectFailure,
                ResponseFlag::NoRoute
            ])
        );
        assert_eq!(
            parse("runtime: {numerator: 5, denominator: ten_thousand}").unwrap(),
            LogFilter::Sample {
                numerator: 5,
                denominator: 10_000
            }
        );
        let e = parse("or: [{response_flags: [XX]}, {not_health_check: {}}]").unwrap_err();
        assert_eq!(e.0, "f.or[0].response_flags[0]");
        assert!(parse("and: [{not_health_check: {}}]").is_err());
    }
}
