//! The buffer filter (Envoy's `envoy.filters.http.buffer`): the whole request body is
//! read before anything of the request goes upstream, so the upstream sees a
//! Content-Length request however the client framed it (chunked HTTP/1, HTTP/2 DATA
//! without `content-length`). A body larger than `max_request_bytes` is answered with
//! `413 Payload Too Large` (Envoy's text, no response flag) and the request never
//! reaches an upstream.
//!
//! Configured natively as a listener's `http_filters` entry `buffer: {max_request_bytes}`,
//! and per route (`per_filter_config`) with `disabled: true` or `buffer:
//! {max_request_bytes}` (Envoy's `BufferPerRoute`).
//!
//! Its decisions are Envoy's filter's, hook for hook: the request head is held while
//! the request has a body; each body chunk that does not end the stream is buffered
//! (`StopAndBuffer`), and answered with `413` when the buffered bytes would pass the
//! limit; the chunk that ends the stream continues, whatever the size. (So an HTTP/2
//! body that arrives whole in one DATA frame with END_STREAM passes, as it does through
//! Envoy; an HTTP/1 body always ends with an empty end-of-stream chunk, as Envoy's
//! HTTP/1 codec delivers it.)

use serde::Deserialize;

use super::status::{DataStatus, LocalReply};
use crate::http::flags::ResponseFlag;

/// Envoy's local reply for a request body over the decoder buffer limit
/// (`request_payload_too_large`): no response flag.
pub const TOO_LARGE: LocalReply = LocalReply {
    status: 413,
    body: std::borrow::Cow::Borrowed("Payload Too Large"),
    flag: ResponseFlag::None,
};

/// The filter's config as written in the YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBuffer {
    pub max_request_bytes: Option<u64>,
}

/// The checked config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferFilter {
    /// Largest request body buffered; more is a `413`.
    pub max_request_bytes: u64,
}

impl RawBuffer {
    /// Checks the config; errors are (field path under `prefix`, message).
    pub(crate) fn build(
        &self,
        prefix: &str,
        errors: &mut Vec<(String, String)>,
    ) -> Option<BufferFilter> {
        match self.max_request_bytes {
            // Envoy's field is a required UInt32Value.
            Some(n) if n <= u64::from(u32::MAX) => Some(BufferFilter {
                max_request_bytes: n,
            }),
            Some(_) => {
                errors.push((
                    format!("{prefix}.max_request_bytes"),
                    "must fit in 32 bits (Envoy's UInt32Value)".into(),
                ));
                None
            }
            None => {
                errors.push((format!("{prefix}.max_request_bytes"), "is required".into()));
                None
            }
        }
    }
}

impl BufferFilter {
    /// One request body chunk. `buffered`: the bytes held so far (this chunk not
    /// included).
    pub fn on_request_data(&self, chunk: &[u8], end_stream: bool, buffered: u64) -> DataStatus {
        if end_stream {
            return DataStatus::Continue;
        }
        if buffered.saturating_add(chunk.len() as u64) > self.max_request_bytes {
            return DataStatus::Respond(TOO_LARGE);
        }
        DataStatus::StopAndBuffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_up_to_the_limit_and_passes_the_last_chunk() {
        let f = BufferFilter {
            max_request_bytes: 10,
        };
        assert_eq!(
            f.on_request_data(b"01234", false, 0),
            DataStatus::StopAndBuffer
        );
        assert_eq!(
            f.on_request_data(b"56789", false, 5),
            DataStatus::StopAndBuffer
        );
        assert_eq!(
            f.on_request_data(b"x", false, 10),
            DataStatus::Respond(TOO_LARGE)
        );
        assert_eq!(f.on_request_data(b"", true, 10), DataStatus::Continue);
        // The end-of-stream chunk is not held against the limit (Envoy's filter).
        assert_eq!(f.on_request_data(&[0; 64], true, 0), DataStatus::Continue);
    }

    #[test]
    fn config_is_checked() {
        let mut errors = Vec::new();
        let raw: RawBuffer = serde_yaml::from_str("{}").unwrap();
        assert!(raw.build("f", &mut errors).is_none());
        assert_eq!(errors[0].0, "f.max_request_bytes");
        let raw: RawBuffer = serde_yaml::from_str("max_request_bytes: 5").unwrap();
        assert_eq!(
            raw.build("f", &mut errors),
            Some(BufferFilter {
                max_request_bytes: 5
            })
        );
        assert!(serde_yaml::from_str::<RawBuffer>("max_bytes: 5").is_err());
    }
}
