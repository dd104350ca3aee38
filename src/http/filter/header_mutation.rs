//! The header-mutation filter, and the header edits of routes, virtual hosts and route
//! tables: add, overwrite and remove request and response headers.
//!
//! Configured natively as a listener's `http_filters` entry `header_mutation: {...}`
//! (Envoy's `envoy.filters.http.header_mutation`), and at route, virtual-host and
//! route-table level with the same four fields Envoy's route configuration has:
//! `request_headers_to_add`, `request_headers_to_remove`, `response_headers_to_add`,
//! `response_headers_to_remove`. Values are literal: Envoy's `%VARIABLE%` formatters are
//! refused with a message rather than sent on verbatim.

use serde::Deserialize;

use super::headers::{AppendAction, HeaderAdd, HeaderOps, HeaderPlan};
use crate::http::hop::{self, Special};

/// The four edit lists as they appear in the YAML (a filter, a route, a virtual host or a
/// route table).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderMutation {
    #[serde(default)]
    pub request_headers_to_add: Vec<RawHeaderAdd>,
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    #[serde(default)]
    pub response_headers_to_add: Vec<RawHeaderAdd>,
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
}

/// Borrowed view of the four edit lists of any level (a route table, virtual host or
/// route carries them inline, as Envoy's route configuration does).
pub(crate) struct RawHeaderMutationRef<'a> {
    pub request_headers_to_add: &'a [RawHeaderAdd],
    pub request_headers_to_remove: &'a [String],
    pub response_headers_to_add: &'a [RawHeaderAdd],
    pub response_headers_to_remove: &'a [String],
}

impl RawHeaderMutation {
    pub(crate) fn as_ref(&self) -> RawHeaderMutationRef<'_> {
        RawHeaderMutationRef {
            request_headers_to_add: &self.request_headers_to_add,
            request_headers_to_remove: &self.request_headers_to_remove,
            response_headers_to_add: &self.response_headers_to_add,
            response_headers_to_remove: &self.response_headers_to_remove,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderAdd {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub append_action: Option<String>,
}

/// Checked edits of one level: request and response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderMutation {
    pub request: HeaderOps,
    pub response: HeaderOps,
}

/// The filter as configured on a listener, compiled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderMutationFilter {
    pub request: HeaderPlan,
    pub response: HeaderPlan,
}

impl HeaderMutationFilter {
    pub fn new(m: &HeaderMutation) -> Self {
        HeaderMutationFilter {
            request: HeaderPlan::compile([&m.request]),
            response: HeaderPlan::compile([&m.response]),
        }
    }
}

/// Headers the proxy itself owns: pseudo-headers, routing and framing (Host,
/// Content-Length) and the connection-specific fields (`http::hop`).
fn reserved(name: &str) -> bool {
    let special = hop::classify(name);
    name.starts_with(':')
        || matches!(special, Special::Host | Special::ContentLength)
        || hop::is_connection_specific(special)
}

fn check_name(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    if lower.is_empty()
        || !lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(format!("`{name}` is not a valid header name"));
    }
    if reserved(&lower) {
        return Err(format!(
            "`{name}` may not be modified (pseudo-headers, host and connection-level headers are the proxy's)"
        ));
    }
    Ok(lower)
}

fn check_value(value: &str) -> Result<(), String> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err("header value contains a control character".into());
    }
    // `%%` is a literal percent in Envoy's format strings; any other `%` starts a
    // formatter (`%DOWNSTREAM_REMOTE_ADDRESS%`), which Outrigger does not evaluate yet.
    if value.replace("%%", "").contains('%') {
        return Err(
            "header value formatters (`%...%`) are not supported; write `%%` for a literal `%`"
                .into(),
        );
    }
    Ok(())
}

fn action(s: Option<&str>) -> Result<AppendAction, String> {
    Ok(match s {
        None | Some("APPEND_IF_EXISTS_OR_ADD") => AppendAction::AppendIfExistsOrAdd,
        Some("ADD_IF_ABSENT") => AppendAction::AddIfAbsent,
        Some("OVERWRITE_IF_EXISTS_OR_ADD") => AppendAction::OverwriteIfExistsOrAdd,
        Some("OVERWRITE_IF_EXISTS") => AppendAction::OverwriteIfExists,
        Some(other) => {
            return Err(format!(
                "unknown append_action `{other}` (APPEND_IF_EXISTS_OR_ADD, ADD_IF_ABSENT, OVERWRITE_IF_EXISTS_OR_ADD, OVERWRITE_IF_EXISTS)"
            ))
        }
    })
}

pub(crate) fn ops(
    add: &[RawHeaderAdd],
    remove: &[String],
    add_field: &str,
    remove_field: &str,
    errors: &mut Vec<(String, String)>,
) -> HeaderOps {
    let mut out = HeaderOps::default();
    for (i, a) in add.iter().enumerate() {
        let name = match check_name(&a.name) {
            Ok(n) => n,
            Err(m) => {
                errors.push((format!("{add_field}[{i}].name"), m));
                continue;
            }
        };
        if let Err(m) = check_value(&a.value) {
            errors.push((format!("{add_field}[{i}].value"), m));
            continue;
        }
        match action(a.append_action.as_deref()) {
            Ok(action) => out.add.push(HeaderAdd {
                name,
                value: a.value.replace("%%", "%"),
                action,
            }),
            Err(m) => errors.push((format!("{add_field}[{i}].append_action"), m)),
        }
    }
    for (i, r) in remove.iter().enumerate() {
        match check_name(r) {
            Ok(n) => out.remove.push(n),
            Err(m) => errors.push((format!("{remove_field}[{i}]"), m)),
        }
    }
    out
}

impl RawHeaderMutationRef<'_> {
    /// Checks the edits; errors are (field path under `prefix`, message).
    pub(crate) fn build(&self, prefix: &str, errors: &mut Vec<(String, String)>) -> HeaderMutation {
        let p = |f: &str| {
            if prefix.is_empty() {
                f.to_string()
            } else {
                format!("{prefix}.{f}")
            }
        };
        HeaderMutation {
            request: ops(
                self.request_headers_to_add,
                self.request_headers_to_remove,
                &p("request_headers_to_add"),
                &p("request_headers_to_remove"),
                errors,
            ),
            response: ops(
                self.response_headers_to_add,
                self.response_headers_to_remove,
                &p("response_headers_to_add"),
                &p("response_headers_to_remove"),
                errors,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> RawHeaderMutation {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn builds_and_refuses_with_the_field() {
        let mut errors = Vec::new();
        let m = raw("request_headers_to_add:\n  - {name: X-A, value: '1', append_action: ADD_IF_ABSENT}\nresponse_headers_to_remove: [Server]\n")
            .as_ref()
            .build("routes[0]", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(m.request.add[0].name, "x-a");
        assert_eq!(m.request.add[0].action, AppendAction::AddIfAbsent);
        assert_eq!(m.response.remove, vec!["server".to_string()]);

        let bad = raw("request_headers_to_add:\n  - {name: ':path', value: x}\n  - {name: x-b, value: '%DOWNSTREAM_REMOTE_ADDRESS%'}\n  - {name: x-c, value: y, append_action: SOMETIMES}\nrequest_headers_to_remove: [host, 'bad name']\n");
        let mut errors = Vec::new();
        bad.as_ref().build("t", &mut errors);
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "t.request_headers_to_add[0].name",
                "t.request_headers_to_add[1].value",
                "t.request_headers_to_add[2].append_action",
                "t.request_headers_to_remove[0]",
                "t.request_headers_to_remove[1]",
            ]
        );
        let mut errors = Vec::new();
        let m = raw("response_headers_to_add:\n  - {name: x-p, value: '100%%'}\n")
            .as_ref()
            .build("", &mut errors);
        assert!(errors.is_empty());
        assert_eq!(m.response.add[0].value, "100%");
    }
}
