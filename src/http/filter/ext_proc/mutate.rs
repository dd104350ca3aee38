//! A processor's header mutations, checked by Envoy's default `HeaderMutationRules`
//! and turned into header operations (`headers::HeaderOps`, compiled into a plan the
//! encoders apply like a configured one).
//!
//! The default rules, as Envoy's `mutation_rules` checker applies them when the filter
//! sets none: a header the routing depends on (`host`, `:authority`, `:scheme`,
//! `:method`) and `x-envoy-*` headers may not be set or removed; no `:`-header may be
//! removed; a name or value that is not valid in HTTP is refused. A refused mutation
//! is skipped and counted (`rejected_header_mutations`), and the rest apply. Outrigger
//! also skips `:path` (and any other `:`-header), which Envoy would let a processor
//! set: the request line is written from the routed head. An immediate response's
//! headers are checked by Envoy's permissive rules (routing and `x-envoy-*` allowed).

use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::ext_proc::v3::HeaderMutation;

use crate::http::filter::headers::{AppendAction, HeaderAdd, HeaderOps};

/// A mutation's value: `raw_value` when set (Envoy sends and prefers it), else `value`.
fn value_of(h: &HeaderValue) -> Option<String> {
    if h.raw_value.is_empty() {
        Some(h.value.clone())
    } else {
        String::from_utf8(h.raw_value.clone()).ok()
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Whether the default rules allow changing `name` (lower-case). `immediate`: the
/// permissive rules of an immediate response.
fn allowed(name: &str, immediate: bool) -> bool {
    if name.starts_with(':') {
        return false;
    }
    if immediate {
        return true;
    }
    name != "host" && !name.starts_with("x-envoy-")
}

/// Envoy's `append` (deprecated, wins when set) or `append_action`. The proto's
/// default action (`APPEND_IF_EXISTS_OR_ADD`, 0) cannot be told from an unset one, and
/// Envoy's ext_proc reads it as its old default, `append: false`: the value replaces
/// the header's (Envoy 1.40 does, `tests/ext_proc_parity.rs`). To append, a processor
/// sets `append: true`.
#[allow(deprecated)]
fn action(o: &HeaderValueOption) -> AppendAction {
    match o.append.as_ref().map(|b| b.value) {
        Some(true) => return AppendAction::AppendIfExistsOrAdd,
        Some(false) => return AppendAction::OverwriteIfExistsOrAdd,
        None => {}
    }
    match o.append_action {
        1 => AppendAction::AddIfAbsent,
        3 => AppendAction::OverwriteIfExists,
        _ => AppendAction::OverwriteIfExistsOrAdd,
    }
}

/// The operations of a mutation that the rules allow; `rejected` counts the others.
pub fn ops(m: &HeaderMutation, immediate: bool, rejected: &mut u64) -> HeaderOps {
    let mut out = HeaderOps::default();
    for r in &m.remove_headers {
        let name = r.to_ascii_lowercase();
        if valid_name(&name) && allowed(&name, immediate) {
            out.remove.push(name);
        } else {
            *rejected += 1;
        }
    }
    for o in &m.set_headers {
        let Some(h) = &o.header else {
            continue;
        };
        let name = h.key.to_ascii_lowercase();
        match value_of(h) {
            Some(value)
                if valid_name(&name) && allowed(&name, immediate) && valid_value(&value) =>
            {
                out.add.push(HeaderAdd {
                    name,
                    value,
                    action: action(o),
                });
            }
            _ => *rejected += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(k: &str, v: &str, append_action: i32) -> HeaderValueOption {
        HeaderValueOption {
            header: Some(HeaderValue {
                key: k.into(),
                raw_value: v.as_bytes().to_vec(),
                ..Default::default()
            }),
            append_action,
            ..Default::default()
        }
    }

    #[test]
    fn default_rules_skip_routing_envoy_and_pseudo_headers() {
        let m = HeaderMutation {
            set_headers: vec![
                set("X-A", "1", 2),
                set("host", "evil", 2),
                set(":path", "/x", 2),
                set("x-envoy-foo", "1", 0),
                set("x-bad", "a\nb", 0),
                set("x-b", "2", 0),
            ],
            remove_headers: vec!["x-gone".into(), ":method".into(), "host".into()],
        };
        let mut rejected = 0;
        let o = ops(&m, false, &mut rejected);
        assert_eq!(rejected, 6);
        assert_eq!(o.remove, vec!["x-gone".to_string()]);
        let names: Vec<_> = o.add.iter().map(|a| (a.name.as_str(), a.action)).collect();
        assert_eq!(
            names,
            vec![
                ("x-a", AppendAction::OverwriteIfExistsOrAdd),
                ("x-b", AppendAction::OverwriteIfExistsOrAdd)
            ]
        );
        let mut rejected = 0;
        let o = ops(&m, true, &mut rejected);
        assert_eq!(
            (o.add.len(), rejected),
            (4, 3),
            "immediate: host and x-envoy allowed"
        );
    }
}
