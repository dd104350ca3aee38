//! Envoy `AccessLog` entries (HTTP connection manager and TCP proxy) -> the native
//! `access_log` of a filter chain: the file, stdout and stderr loggers, their
//! `log_format` (text, `text_format_source`, `json_format`) and the access-log filters.
//! Control plane only.

use envoy_types::pb::envoy::config::accesslog::v3::{
    access_log, access_log_filter::FilterSpecifier, comparison_filter, AccessLog as PbAccessLog,
    AccessLogFilter, ComparisonFilter,
};
use envoy_types::pb::envoy::config::core::v3::{
    data_source, substitution_format_string, DataSource, SubstitutionFormatString,
};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{
    file_access_log, FileAccessLog,
};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{
    stderr_access_log, stdout_access_log, StderrAccessLog, StdoutAccessLog,
};
use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};

use super::super::access_log_filter::{
    Cmp, RawComparison, RawDenominator, RawEmpty, RawFraction, RawLogFilter,
};
use super::super::raw::RawAccessLog;
use super::convert::{payload, R};
use super::{err, walk};

const FILE_LOG: &str = "envoy.extensions.access_loggers.file.v3.FileAccessLog";
const STDOUT_LOG: &str = "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
const STDERR_LOG: &str = "envoy.extensions.access_loggers.stream.v3.StderrAccessLog";

/// Filter nesting Outrigger follows (Envoy has no fixed bound; a config this deep is a
/// mistake).
const MAX_DEPTH: usize = 16;

/// The chain's access log. Without `log_format`, Envoy's default format applies.
pub(super) fn access_log(list: &[PbAccessLog], p: &str) -> R<Option<RawAccessLog>> {
    let Some(a) = list.first() else {
        return Ok(None);
    };
    if list.len() > 1 {
        return Err(err(
            format!("{p}[1]"),
            "Outrigger supports one access log per filter chain",
        ));
    }
    let ap = format!("{p}[0].typed_config");
    let Some(access_log::ConfigType::TypedConfig(any)) = &a.config_type else {
        return Err(err(ap, "is required"));
    };
    let (path, format) = match walk::type_name(&any.type_url) {
        FILE_LOG => {
            let f: FileAccessLog = payload(any, FILE_LOG, &ap)?;
            if f.path.is_empty() {
                return Err(err(format!("{ap}.path"), "is required"));
            }
            let format = match &f.access_log_format {
                Some(file_access_log::AccessLogFormat::LogFormat(s)) => Some(s),
                None => None,
                Some(_) => {
                    return Err(err(
                        format!("{ap}.log_format"),
                        "only `log_format` is supported",
                    ))
                }
            };
            // Native `stdout` names the stream; Envoy's /dev/stdout is a file path.
            let path = if f.path == "/dev/stdout" {
                "stdout".to_string()
            } else {
                f.path.clone()
            };
            (path, format.cloned())
        }
        STDOUT_LOG => {
            let s: StdoutAccessLog = payload(any, STDOUT_LOG, &ap)?;
            let format = s.access_log_format.map(|f| match f {
                stdout_access_log::AccessLogFormat::LogFormat(f) => f,
            });
            ("stdout".to_string(), format)
        }
        STDERR_LOG => {
            let s: StderrAccessLog = payload(any, STDERR_LOG, &ap)?;
            let format = s.access_log_format.map(|f| match f {
                stderr_access_log::AccessLogFormat::LogFormat(f) => f,
            });
            ("/dev/stderr".to_string(), format)
        }
        other => {
            return Err(err(
                ap,
                format!("access logger type `{other}` is not supported by Outrigger"),
            ))
        }
    };
    let fp = format!("{ap}.log_format");
    let (format, json_format) = match &format {
        None => (None, None),
        Some(s) => log_format(s, &fp)?,
    };
    let filter = a
        .filter
        .as_ref()
        .map(|f| filter(f, &format!("{p}[0].filter"), 0))
        .transpose()?;
    Ok(Some(RawAccessLog {
        path,
        format,
        json_format,
        filter,
    }))
}

/// A `SubstitutionFormatString`: text (inline) or JSON. Outrigger ends every text entry
/// with a newline, so the format's own final newline is dropped.
// `text_format` is deprecated in Envoy's API but Envoy 1.40 still accepts it.
#[allow(deprecated)]
fn log_format(
    s: &SubstitutionFormatString,
    p: &str,
) -> R<(Option<String>, Option<serde_json::Value>)> {
    use substitution_format_string::Format;
    let text =
        match &s.format {
            Some(Format::TextFormat(t)) => t.clone(),
            Some(Format::TextFormatSource(DataSource {
                specifier: Some(data_source::Specifier::InlineString(t)),
                ..
            })) => t.clone(),
            Some(Format::TextFormatSource(DataSource {
                specifier: Some(data_source::Specifier::InlineBytes(b)),
                ..
            })) => String::from_utf8(b.clone()).map_err(|_| {
                err(
                    format!("{p}.text_format_source.inline_bytes"),
                    "must be UTF-8",
                )
            })?,
            Some(Format::JsonFormat(j)) => return Ok((None, Some(json(j)))),
            _ => return Err(err(
                p,
                "set `text_format`, `text_format_source` with `inline_string`, or `json_format`",
            )),
        };
    // Envoy checks the operators when it loads the config; so does the native build,
    // but its error would name the native field: check here for the Envoy path.
    let at = match &s.format {
        Some(Format::TextFormat(_)) => format!("{p}.text_format"),
        _ => format!("{p}.text_format_source.inline_string"),
    };
    crate::config::access_log_format::TextFormat::parse(&text).map_err(|m| err(at, m))?;
    Ok((
        Some(text.strip_suffix('\n').unwrap_or(&text).to_string()),
        None,
    ))
}

/// A protobuf `Struct` as JSON; whole numbers stay integers (Envoy prints `5`, not `5.0`).
pub(super) fn json(s: &Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
    )
}

fn value(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => J::from(*n as i64),
        Some(Kind::NumberValue(n)) => J::from(*n),
        Some(Kind::StringValue(s)) => J::String(s.clone()),
        Some(Kind::BoolValue(b)) => J::Bool(*b),
        Some(Kind::StructValue(s)) => json(s),
        Some(Kind::ListValue(l)) => J::Array(l.values.iter().map(value).collect()),
    }
}

fn comparison(c: &Option<ComparisonFilter>, p: &str) -> R<RawComparison> {
    let Some(c) = c else {
        return Err(err(format!("{p}.comparison"), "is required"));
    };
    let op = match comparison_filter::Op::try_from(c.op)
        .map_err(|_| err(format!("{p}.comparison.op"), "unknown value"))?
    {
        comparison_filter::Op::Eq => Cmp::Eq,
        comparison_filter::Op::Ge => Cmp::Ge,
        comparison_filter::Op::Le => Cmp::Le,
        comparison_filter::Op::Ne => Cmp::Ne,
    };
    let Some(v) = &c.value else {
        return Err(err(format!("{p}.comparison.value"), "is required"));
    };
    // `runtime_key` has no runtime layer to read from: the default value applies.
    Ok(RawComparison {
        op,
        value: u64::from(v.default_value),
    })
}

/// An `AccessLogFilter` -> the native filter.
fn filter(f: &AccessLogFilter, p: &str, depth: usize) -> R<RawLogFilter> {
    if depth > MAX_DEPTH {
        return Err(err(p, format!("filters nested deeper than {MAX_DEPTH}")));
    }
    let list = |v: &[AccessLogFilter], key: &str| -> R<Vec<RawLogFilter>> {
        if v.len() < 2 {
            return Err(err(
                format!("{p}.{key}.filters"),
                "needs at least 2 filters",
            ));
        }
        v.iter()
            .enumerate()
            .map(|(i, f)| filter(f, &format!("{p}.{key}.filters[{i}]"), depth + 1))
            .collect()
    };
    Ok(match &f.filter_specifier {
        Some(FilterSpecifier::StatusCodeFilter(s)) => RawLogFilter {
            status_code: Some(comparison(
                &s.comparison,
                &format!("{p}.status_code_filter"),
            )?),
            ..Default::default()
        },
        Some(FilterSpecifier::DurationFilter(d)) => RawLogFilter {
            duration: Some(comparison(&d.comparison, &format!("{p}.duration_filter"))?),
            ..Default::default()
        },
        Some(FilterSpecifier::NotHealthCheckFilter(_)) => RawLogFilter {
            not_health_check: Some(RawEmpty {}),
            ..Default::default()
        },
        Some(FilterSpecifier::ResponseFlagFilter(r)) => RawLogFilter {
            response_flags: Some(r.flags.clone()),
            ..Default::default()
        },
        Some(FilterSpecifier::RuntimeFilter(r)) => {
            let (numerator, denominator) = match &r.percent_sampled {
                // Envoy's default: 0 of 100 (the runtime key would raise it).
                None => (0, RawDenominator::Hundred),
                Some(fp) => (
                    u64::from(fp.numerator),
                    match DenominatorType::try_from(fp.denominator).map_err(|_| {
                        err(
                            format!("{p}.runtime_filter.percent_sampled.denominator"),
                            "unknown value",
                        )
                    })? {
                        DenominatorType::Hundred => RawDenominator::Hundred,
                        DenominatorType::TenThousand => RawDenominator::TenThousand,
                        DenominatorType::Million => RawDenominator::Million,
                    },
                ),
            };
            RawLogFilter {
                runtime: Some(RawFraction {
                    numerator,
                    denominator: Some(denominator),
                }),
                ..Default::default()
            }
        }
        Some(FilterSpecifier::AndFilter(a)) => RawLogFilter {
            and: Some(list(&a.filters, "and_filter")?),
            ..Default::default()
        },
        Some(FilterSpecifier::OrFilter(o)) => RawLogFilter {
            or: Some(list(&o.filters, "or_filter")?),
            ..Default::default()
        },
        None => return Err(err(p, "set one filter")),
        Some(_) => {
            return Err(err(
                p,
                "this access log filter is not supported by Outrigger (supported: \
                 status_code_filter, duration_filter, not_health_check_filter, \
                 response_flag_filter, runtime_filter, and_filter, or_filter)",
            ))
        }
    })
}
