//! The ext_proc filter's native config (serde, Envoy's field names and enum values) and
//! its checks, every error with its field path.

use std::time::Duration;

use serde::Deserialize;

use super::{BodyMode, ExtProcFilter, ExtProcOverride, HeaderMode, Mode};
use crate::config::duration::parse_duration;

/// The filter as written in the YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExtProc {
    /// The processor's cluster (Envoy's `grpc_service.envoy_grpc.cluster_name`).
    pub cluster: Option<String>,
    /// `grpc_service.envoy_grpc.authority`.
    #[serde(default)]
    pub authority: Option<String>,
    /// `grpc_service.timeout`, sent as the stream's `grpc-timeout`.
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub failure_mode_allow: bool,
    #[serde(default)]
    pub message_timeout: Option<String>,
    #[serde(default)]
    pub allow_mode_override: bool,
    #[serde(default)]
    pub stat_prefix: Option<String>,
    #[serde(default)]
    pub processing_mode: Option<RawProcessingMode>,
}

/// Envoy's `ProcessingMode`, with its enum names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProcessingMode {
    #[serde(default)]
    pub request_header_mode: Option<String>,
    #[serde(default)]
    pub response_header_mode: Option<String>,
    #[serde(default)]
    pub request_body_mode: Option<String>,
    #[serde(default)]
    pub response_body_mode: Option<String>,
    #[serde(default)]
    pub request_trailer_mode: Option<String>,
    #[serde(default)]
    pub response_trailer_mode: Option<String>,
}

/// A route's override as written in the YAML (`per_filter_config.<name>.ext_proc`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExtProcOverride {
    #[serde(default)]
    pub processing_mode: Option<RawProcessingMode>,
}

type Errors = Vec<(String, String)>;

fn header_mode(p: String, v: &Option<String>, errors: &mut Errors) -> HeaderMode {
    match v.as_deref() {
        None | Some("DEFAULT") | Some("SEND") => HeaderMode::Send,
        Some("SKIP") => HeaderMode::Skip,
        Some(o) => {
            errors.push((p, format!("unknown mode `{o}` (DEFAULT, SEND or SKIP)")));
            HeaderMode::Send
        }
    }
}

fn body_mode(p: String, v: &Option<String>, allowed: &[&str], errors: &mut Errors) -> BodyMode {
    let mode = match v.as_deref() {
        None | Some("NONE") => return BodyMode::None,
        Some("BUFFERED") => BodyMode::Buffered,
        Some("STREAMED") => BodyMode::Streamed,
        Some(o @ ("BUFFERED_PARTIAL" | "FULL_DUPLEX_STREAMED" | "GRPC")) => {
            let built = allowed.join(", ");
            errors.push((p, format!("`{o}` is not supported (NONE, {built})")));
            return BodyMode::None;
        }
        Some(o) => {
            errors.push((p, format!("unknown mode `{o}`")));
            return BodyMode::None;
        }
    };
    let name = if mode == BodyMode::Buffered {
        "BUFFERED"
    } else {
        "STREAMED"
    };
    if !allowed.contains(&name) {
        let built = allowed.join(", ");
        errors.push((p, format!("`{name}` is not supported here (NONE, {built})")));
        return BodyMode::None;
    }
    mode
}

/// Checks a `processing_mode`; what is not built is refused by field path.
pub(crate) fn mode(p: &str, raw: &RawProcessingMode, errors: &mut Errors) -> Mode {
    let request_body = body_mode(
        format!("{p}.request_body_mode"),
        &raw.request_body_mode,
        &["BUFFERED", "STREAMED"],
        errors,
    );
    let response_body = body_mode(
        format!("{p}.response_body_mode"),
        &raw.response_body_mode,
        &["BUFFERED", "STREAMED"],
        errors,
    );
    Mode {
        request_headers: header_mode(
            format!("{p}.request_header_mode"),
            &raw.request_header_mode,
            errors,
        ),
        response_headers: header_mode(
            format!("{p}.response_header_mode"),
            &raw.response_header_mode,
            errors,
        ),
        request_trailers: trailer_mode(
            format!("{p}.request_trailer_mode"),
            &raw.request_trailer_mode,
            errors,
        ),
        response_trailers: trailer_mode(
            format!("{p}.response_trailer_mode"),
            &raw.response_trailer_mode,
            errors,
        ),
        request_body,
        response_body,
    }
}

/// A trailer mode: `DEFAULT` is `SKIP` (Envoy sends trailers only when asked).
fn trailer_mode(p: String, v: &Option<String>, errors: &mut Errors) -> HeaderMode {
    match v.as_deref() {
        None | Some("DEFAULT") | Some("SKIP") => HeaderMode::Skip,
        Some("SEND") => HeaderMode::Send,
        Some(o) => {
            errors.push((p, format!("unknown mode `{o}` (DEFAULT, SEND or SKIP)")));
            HeaderMode::Skip
        }
    }
}

fn duration(p: String, v: &Option<String>, errors: &mut Errors) -> Option<Duration> {
    let s = v.as_ref()?;
    match parse_duration(s) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.push((p, e));
            None
        }
    }
}

impl RawExtProc {
    /// Checks the config. `cluster` resolves a cluster name to its index and says
    /// whether it speaks HTTP/2; `counters` are the filter's, already registered.
    pub(crate) fn build(
        &self,
        p: &str,
        cluster: impl Fn(&str) -> Option<(usize, bool)>,
        counters: super::Counters,
        errors: &mut Errors,
    ) -> Option<ExtProcFilter> {
        let before = errors.len();
        let (index, name) = match self.cluster.as_deref() {
            None | Some("") => {
                errors.push((format!("{p}.cluster"), "is required".into()));
                (0, String::new())
            }
            Some(n) => match cluster(n) {
                Some((i, true)) => (i, n.to_string()),
                Some((_, false)) => {
                    errors.push((
                        format!("{p}.cluster"),
                        format!("cluster `{n}` must speak HTTP/2 for gRPC (protocol: http2)"),
                    ));
                    (0, String::new())
                }
                None => {
                    errors.push((format!("{p}.cluster"), format!("no cluster named `{n}`")));
                    (0, String::new())
                }
            },
        };
        // Envoy's default per-message timeout; its proto bounds it to [0, 3600s].
        let message_timeout = duration(
            format!("{p}.message_timeout"),
            &self.message_timeout,
            errors,
        )
        .unwrap_or(Duration::from_millis(200));
        if message_timeout > Duration::from_secs(3600) {
            errors.push((
                format!("{p}.message_timeout"),
                "must be at most 3600s".into(),
            ));
        }
        let grpc_timeout = duration(format!("{p}.timeout"), &self.timeout, errors);
        let mode = match &self.processing_mode {
            None => Mode::DEFAULT,
            Some(m) => mode(&format!("{p}.processing_mode"), m, errors),
        };
        if errors.len() != before {
            return None;
        }
        Some(ExtProcFilter {
            cluster: index,
            authority: self.authority.clone().unwrap_or(name),
            grpc_timeout,
            failure_mode_allow: self.failure_mode_allow,
            message_timeout,
            mode,
            allow_mode_override: self.allow_mode_override,
            counters,
        })
    }
}

impl RawExtProcOverride {
    pub(crate) fn build(&self, p: &str, errors: &mut Errors) -> ExtProcOverride {
        ExtProcOverride {
            mode: self
                .processing_mode
                .as_ref()
                .map(|m| mode(&format!("{p}.processing_mode"), m, errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(yaml: &str) -> Result<ExtProcFilter, Errors> {
        let raw: RawExtProc =
            serde_yaml::from_str(yaml).map_err(|e| vec![("yaml".into(), e.to_string())])?;
        let mut errors = Vec::new();
        let c = super::super::Counters::from_indices([0; 16]);
        let cluster = |n: &str| match n {
            "proc" => Some((3, true)),
            "h1" => Some((1, false)),
            _ => None,
        };
        raw.build("f", cluster, c, &mut errors).ok_or(errors)
    }

    #[test]
    fn envoy_defaults_and_checks() {
        let f = build("cluster: proc").unwrap();
        assert_eq!(f.mode, Mode::DEFAULT);
        assert_eq!(f.message_timeout, Duration::from_millis(200));
        assert_eq!((f.cluster, f.authority.as_str()), (3, "proc"));
        assert!(!f.failure_mode_allow);
        let e = build("cluster: h1").unwrap_err();
        assert_eq!(e[0].0, "f.cluster");
        let e = build("cluster: nope").unwrap_err();
        assert_eq!(e[0].0, "f.cluster");
        let f = build("cluster: proc\nprocessing_mode: {response_body_mode: BUFFERED}").unwrap();
        assert_eq!(f.mode.response_body, BodyMode::Buffered);
        let f = build("cluster: proc\nprocessing_mode: {response_body_mode: STREAMED}").unwrap();
        assert_eq!(f.mode.response_body, BodyMode::Streamed);
        let e = build("cluster: proc\nprocessing_mode: {response_body_mode: BUFFERED_PARTIAL}")
            .unwrap_err();
        assert_eq!(e[0].0, "f.processing_mode.response_body_mode");
        let e = build("cluster: proc\nprocessing_mode: {request_body_mode: BUFFERED_PARTIAL}")
            .unwrap_err();
        assert_eq!(e[0].0, "f.processing_mode.request_body_mode");
        let f = build("cluster: proc\nprocessing_mode: {request_trailer_mode: SEND}").unwrap();
        assert_eq!(f.mode.request_trailers, HeaderMode::Send);
        assert_eq!(f.mode.response_trailers, HeaderMode::Skip);
        let e =
            build("cluster: proc\nprocessing_mode: {response_trailer_mode: ALWAYS}").unwrap_err();
        assert_eq!(e[0].0, "f.processing_mode.response_trailer_mode");
        let f = build("cluster: proc\nprocessing_mode: {request_header_mode: SKIP, request_body_mode: STREAMED}").unwrap();
        assert_eq!(f.mode.request_headers, HeaderMode::Skip);
        assert_eq!(f.mode.request_body, BodyMode::Streamed);
        assert!(build("cluster: proc\nmax_bytes: 3").is_err());
    }
}
