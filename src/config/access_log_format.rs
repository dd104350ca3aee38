//! The access-log format string, parsed once at config build time.
//!
//! Syntax follows Envoy's command operators: literal text with `%OPERATOR%` fields.
//! `%%` is a literal percent sign. See docs/configuration.md for the list.

/// One piece of a parsed format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogField {
    Literal(String),
    StartTime,
    Method,
    Path,
    Protocol,
    ResponseCode,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    DownstreamRemoteAddress,
    Authority,
    UserAgent,
    ListenerName,
    ClusterName,
    /// The client certificate's URI SANs, comma-separated (the SPIFFE ID).
    DownstreamPeerUriSan,
    DownstreamPeerDnsSan,
    /// `TLSv1.2`, `TLSv1.3`.
    DownstreamTlsVersion,
    DownstreamTlsCipher,
    /// The SNI.
    RequestedServerName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    pub fields: Vec<LogField>,
}

/// Envoy's default text format, restricted to the operators we support.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%\" \
%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% \"%UPSTREAM_HOST%\"";

fn operator(name: &str) -> Option<LogField> {
    Some(match name {
        "START_TIME" => LogField::StartTime,
        "METHOD" | "REQ(:METHOD)" => LogField::Method,
        "PATH" | "REQ(:PATH)" => LogField::Path,
        "PROTOCOL" => LogField::Protocol,
        "RESPONSE_CODE" => LogField::ResponseCode,
        "RESPONSE_FLAGS" => LogField::ResponseFlags,
        "BYTES_RECEIVED" => LogField::BytesReceived,
        "BYTES_SENT" => LogField::BytesSent,
        "DURATION" => LogField::Duration,
        "UPSTREAM_HOST" => LogField::UpstreamHost,
        "DOWNSTREAM_REMOTE_ADDRESS" => LogField::DownstreamRemoteAddress,
        "AUTHORITY" | "REQ(:AUTHORITY)" | "REQ(HOST)" => LogField::Authority,
        "USER_AGENT" | "REQ(USER-AGENT)" => LogField::UserAgent,
        "LISTENER_NAME" => LogField::ListenerName,
        "UPSTREAM_CLUSTER" => LogField::ClusterName,
        "DOWNSTREAM_PEER_URI_SAN" => LogField::DownstreamPeerUriSan,
        "DOWNSTREAM_PEER_DNS_SAN" => LogField::DownstreamPeerDnsSan,
        "DOWNSTREAM_TLS_VERSION" => LogField::DownstreamTlsVersion,
        "DOWNSTREAM_TLS_CIPHER" => LogField::DownstreamTlsCipher,
        "REQUESTED_SERVER_NAME" => LogField::RequestedServerName,
        _ => return None,
    })
}

impl LogFormat {
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        let mut fields = Vec::new();
        let mut literal = String::new();
        let mut rest = s;
        while let Some(pos) = rest.find('%') {
            literal.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(stripped) = after.strip_prefix('%') {
                literal.push('%');
                rest = stripped;
                continue;
            }
            let end = after
                .find('%')
                .ok_or_else(|| format!("unterminated operator at `%{after}`"))?;
            let name = &after[..end];
            let field = operator(name).ok_or_else(|| format!("unknown operator `%{name}%`"))?;
            if !literal.is_empty() {
                fields.push(LogField::Literal(std::mem::take(&mut literal)));
            }
            fields.push(field);
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            fields.push(LogField::Literal(literal));
        }
        Ok(LogFormat { fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_format_parses() {
        let f = LogFormat::parse(DEFAULT_FORMAT).unwrap();
        assert_eq!(f.fields[1], LogField::StartTime);
        assert!(f.fields.contains(&LogField::UpstreamHost));
    }

    #[test]
    fn literal_percent_and_errors() {
        let f = LogFormat::parse("a%%b %RESPONSE_CODE%").unwrap();
        assert_eq!(
            f.fields,
            vec![LogField::Literal("a%b ".into()), LogField::ResponseCode]
        );
        assert!(LogFormat::parse("%NOPE%").unwrap_err().contains("NOPE"));
        assert!(LogFormat::parse("%DURATION").is_err());
    }
}
