//! Envoy's `json_format`: a JSON object whose string values are format strings, built
//! once at config time (control plane). The worker's formatter writes one object per
//! line. As in Envoy 1.40: keys come out sorted (the format is a protobuf `Struct`),
//! nested objects stay nested, numbers and booleans of the format are written as they
//! are (a number with a fraction as a string, as Envoy writes it), and a value that
//! is exactly one operator keeps its type (a number for
//! `%RESPONSE_CODE%`, `null` when the value is absent); any other string value is a
//! string, with `-` for absent operators.

use super::access_log_format::{Op, TextFormat};

/// A listener's access-log format: text or JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    Text(TextFormat),
    Json(JsonTemplate),
}

impl LogFormat {
    /// A text format (what native `format` and Envoy's `text_format_source` give).
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        TextFormat::parse(s).map(LogFormat::Text)
    }

    /// Whether any field of the format is `op` (decided once at config time, so that
    /// the request path gathers only what a configured format prints).
    pub fn uses(&self, op: &Op) -> bool {
        self.uses_any(&|o| o == op)
    }

    /// Whether any field's operator passes `test` (config time, as [`LogFormat::uses`]).
    pub fn uses_any(&self, test: &dyn Fn(&Op) -> bool) -> bool {
        match self {
            LogFormat::Text(t) => t.uses_any(test),
            LogFormat::Json(j) => j.root.uses_any(test),
        }
    }
}

impl JsonNode {
    fn uses_any(&self, test: &dyn Fn(&Op) -> bool) -> bool {
        match self {
            JsonNode::Object(kv) => kv.iter().any(|(_, n)| n.uses_any(test)),
            JsonNode::Constant(_) => false,
            JsonNode::Format(t) => t.uses_any(test),
        }
    }
}

/// One value of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonNode {
    /// Keys already JSON-escaped and quoted, in output order.
    Object(Vec<(String, JsonNode)>),
    /// A constant (number, boolean, null), already serialized.
    Constant(String),
    /// A string value with operators.
    Format(TextFormat),
}

/// The whole `json_format` (always an object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonTemplate {
    pub root: JsonNode,
}

/// How deep `json_format` objects may nest (a config, but bounded all the same).
const MAX_DEPTH: usize = 32;

impl JsonTemplate {
    /// Builds the template from a JSON object; errors carry the key path.
    pub fn from_value(v: &serde_json::Value) -> Result<JsonTemplate, String> {
        match v {
            serde_json::Value::Object(_) => Ok(JsonTemplate {
                root: node(v, "", 0)?,
            }),
            _ => Err("must be an object".into()),
        }
    }
}

fn node(v: &serde_json::Value, at: &str, depth: usize) -> Result<JsonNode, String> {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        return Err(format!("{at}: nested deeper than {MAX_DEPTH}"));
    }
    Ok(match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                let Some(child) = m.get(k) else { continue };
                let quoted = serde_json::to_string(k).map_err(|e| e.to_string())?;
                out.push((quoted, node(child, &path, depth + 1)?));
            }
            JsonNode::Object(out)
        }
        Value::String(s) => {
            JsonNode::Format(TextFormat::parse(s).map_err(|e| format!("{at}: {e}"))?)
        }
        Value::Array(_) => return Err(format!("{at}: lists are not supported in json_format")),
        // Envoy 1.40 writes a whole number as a number and any other as a string.
        Value::Number(n) if n.is_f64() => JsonNode::Constant(format!("\"{n}\"")),
        other => JsonNode::Constant(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sorted_nested_and_constants_kept() {
        let v = serde_json::json!({"b": "%DURATION%", "a": {"z": 1, "y": true}});
        let t = JsonTemplate::from_value(&v).unwrap();
        let JsonNode::Object(top) = &t.root else {
            panic!("object")
        };
        assert_eq!(top[0].0, "\"a\"");
        assert_eq!(top[1].0, "\"b\"");
        let JsonNode::Object(inner) = &top[0].1 else {
            panic!("nested")
        };
        assert_eq!(
            inner[0],
            ("\"y\"".into(), JsonNode::Constant("true".into()))
        );
    }

    #[test]
    fn errors_name_the_key() {
        let v = serde_json::json!({"a": {"b": "%NOPE%"}});
        let e = JsonTemplate::from_value(&v).unwrap_err();
        assert!(e.starts_with("a.b: "), "{e}");
        assert!(JsonTemplate::from_value(&serde_json::json!("x")).is_err());
        assert!(JsonTemplate::from_value(&serde_json::json!({"l": []})).is_err());
    }

    #[test]
    fn uses_finds_an_operator_at_any_depth() {
        let v = serde_json::json!({"a": {"b": "x=%UPSTREAM_LOCAL_ADDRESS%"}, "c": 1});
        let json = LogFormat::Json(JsonTemplate::from_value(&v).unwrap());
        assert!(json.uses(&Op::UpstreamLocalAddress));
        assert!(!json.uses(&Op::UpstreamHost));
        let text = LogFormat::parse("%UPSTREAM_HOST% %REQ(:PATH)%").unwrap();
        assert!(text.uses(&Op::UpstreamHost));
        assert!(!text.uses(&Op::UpstreamLocalAddress));
    }

    #[test]
    fn reads_tells_which_header_blocks_a_format_prints() {
        use super::super::access_log_format::HeaderSource;
        let reads = |f: &LogFormat, src| f.uses_any(&|op: &Op| op.reads(src));
        let v = serde_json::json!({"a": {"t": "%TRAILER(GRPC-STATUS)%"}, "r": "%REQ(X-A)%"});
        let json = LogFormat::Json(JsonTemplate::from_value(&v).unwrap());
        assert!(reads(&json, HeaderSource::Trailer));
        assert!(reads(&json, HeaderSource::Request));
        assert!(!reads(&json, HeaderSource::Response));
        let text = LogFormat::parse("%RESP(X-NOPE?X-UP):3% %RESPONSE_CODE%").unwrap();
        assert!(reads(&text, HeaderSource::Response));
        assert!(!reads(&text, HeaderSource::Trailer));
        // Envoy's default format prints `x-envoy-upstream-service-time`.
        let default = LogFormat::parse(super::super::access_log_format::DEFAULT_FORMAT).unwrap();
        assert!(reads(&default, HeaderSource::Response));
        assert!(!reads(&default, HeaderSource::Trailer));
    }
}
