//! The access-log format, parsed once at config build time (control plane only; the
//! worker's formatter, `observe::access_log_fmt`, walks the parsed fields per line).
//!
//! Syntax follows Envoy's command operators: literal text with `%OPERATOR%`,
//! `%OPERATOR(ARG)%` and `%OPERATOR(ARG):N%` fields (N: the value's maximum length).
//! `%REQ(X?Y):N%` reads request header X, or Y when X is absent; `%RESP(..)%` and
//! `%TRAILER(..)%` do the same for the response headers and trailers. `%%` is a literal
//! percent sign. An unknown operator is refused, as Envoy refuses it. A JSON format
//! (`json_format`) is a tree of such strings (`access_log_json`, which also holds
//! [`LogFormat`](super::access_log_json::LogFormat), either of the two).

/// Which header block a `%REQ%`/`%RESP%`/`%TRAILER%` operator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderSource {
    Request,
    Response,
    Trailer,
}

/// An operator without arguments (or with the one `START_TIME` takes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `None`: Envoy's default `%Y-%m-%dT%H:%M:%E3SZ`.
    StartTime(Option<String>),
    Protocol,
    ResponseCode,
    ResponseCodeDetails,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    RequestDuration,
    ResponseDuration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamLocalAddress,
    UpstreamTransportFailureReason,
    UpstreamRequestAttemptCount,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    DownstreamDirectRemoteAddress,
    DownstreamDirectRemoteAddressWithoutPort,
    DownstreamLocalAddress,
    DownstreamLocalAddressWithoutPort,
    DownstreamLocalPort,
    DownstreamPeerUriSan,
    DownstreamPeerDnsSan,
    DownstreamTlsVersion,
    DownstreamTlsCipher,
    UpstreamPeerUriSan,
    UpstreamPeerDnsSan,
    UpstreamLocalUriSan,
    UpstreamTlsVersion,
    UpstreamTlsCipher,
    RequestedServerName,
    RouteName,
    ConnectionId,
    TraceId,
    ListenerName,
    Hostname,
    /// `%REQ(X?Y)%`: lower-case names; `alt` is tried when `main` is absent.
    Header {
        src: HeaderSource,
        main: Box<str>,
        alt: Option<Box<str>>,
    },
}

/// One piece of a parsed format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogField {
    Literal(String),
    /// An operator, with its `:N` maximum length.
    Op {
        op: Op,
        max: Option<usize>,
    },
}

/// A parsed text format: the fields of one line (the newline is added by the writer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFormat {
    pub fields: Vec<LogField>,
}

/// Envoy 1.40's default format (its trailing newline is the writer's).
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% \
%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% \
%BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \
\"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \
\"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"";

/// Longest header name an operator may name (Envoy refuses longer ones too).
const MAX_HEADER_NAME: usize = 256;

fn simple(name: &str) -> Option<Op> {
    Some(match name {
        "PROTOCOL" => Op::Protocol,
        "RESPONSE_CODE" => Op::ResponseCode,
        "RESPONSE_CODE_DETAILS" => Op::ResponseCodeDetails,
        "RESPONSE_FLAGS" => Op::ResponseFlags,
        "BYTES_RECEIVED" => Op::BytesReceived,
        "BYTES_SENT" => Op::BytesSent,
        "DURATION" => Op::Duration,
        "REQUEST_DURATION" => Op::RequestDuration,
        "RESPONSE_DURATION" => Op::ResponseDuration,
        "UPSTREAM_HOST" => Op::UpstreamHost,
        "UPSTREAM_CLUSTER" => Op::UpstreamCluster,
        "UPSTREAM_LOCAL_ADDRESS" => Op::UpstreamLocalAddress,
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => Op::UpstreamTransportFailureReason,
        "UPSTREAM_REQUEST_ATTEMPT_COUNT" => Op::UpstreamRequestAttemptCount,
        "DOWNSTREAM_REMOTE_ADDRESS" => Op::DownstreamRemoteAddress,
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => Op::DownstreamRemoteAddressWithoutPort,
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => Op::DownstreamDirectRemoteAddress,
        "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
            Op::DownstreamDirectRemoteAddressWithoutPort
        }
        "DOWNSTREAM_LOCAL_ADDRESS" => Op::DownstreamLocalAddress,
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => Op::DownstreamLocalAddressWithoutPort,
        "DOWNSTREAM_LOCAL_PORT" => Op::DownstreamLocalPort,
        "DOWNSTREAM_PEER_URI_SAN" => Op::DownstreamPeerUriSan,
        "DOWNSTREAM_PEER_DNS_SAN" => Op::DownstreamPeerDnsSan,
        "DOWNSTREAM_TLS_VERSION" => Op::DownstreamTlsVersion,
        "DOWNSTREAM_TLS_CIPHER" => Op::DownstreamTlsCipher,
        "UPSTREAM_PEER_URI_SAN" => Op::UpstreamPeerUriSan,
        "UPSTREAM_PEER_DNS_SAN" => Op::UpstreamPeerDnsSan,
        "UPSTREAM_LOCAL_URI_SAN" => Op::UpstreamLocalUriSan,
        "UPSTREAM_TLS_VERSION" => Op::UpstreamTlsVersion,
        "UPSTREAM_TLS_CIPHER" => Op::UpstreamTlsCipher,
        "REQUESTED_SERVER_NAME" => Op::RequestedServerName,
        "ROUTE_NAME" => Op::RouteName,
        "CONNECTION_ID" => Op::ConnectionId,
        "TRACE_ID" => Op::TraceId,
        "LISTENER_NAME" => Op::ListenerName,
        "HOSTNAME" => Op::Hostname,
        // Outrigger's older shorthands, kept for existing native configs.
        "METHOD" => header(HeaderSource::Request, ":method", None),
        "PATH" => header(HeaderSource::Request, ":path", None),
        "AUTHORITY" => header(HeaderSource::Request, ":authority", None),
        "USER_AGENT" => header(HeaderSource::Request, "user-agent", None),
        _ => return None,
    })
}

impl Op {
    /// Whether this operator reads the header block `src` (`%RESP(..)%` reads the
    /// response head, `%TRAILER(..)%` the trailers).
    pub fn reads(&self, src: HeaderSource) -> bool {
        matches!(self, Op::Header { src: s, .. } if *s == src)
    }

    /// The operators that read the upstream connection's TLS facts.
    pub const UPSTREAM_TLS: [Op; 5] = [
        Op::UpstreamPeerUriSan,
        Op::UpstreamPeerDnsSan,
        Op::UpstreamLocalUriSan,
        Op::UpstreamTlsVersion,
        Op::UpstreamTlsCipher,
    ];
}

fn header(src: HeaderSource, main: &str, alt: Option<&str>) -> Op {
    Op::Header {
        src,
        main: main.into(),
        alt: alt.map(Into::into),
    }
}

/// `X?Y` of a header operator, lower-cased (`host` reads `:authority`, as in Envoy).
fn header_op(src: HeaderSource, arg: &str, name: &str) -> Result<Op, String> {
    let mut parts = arg.split('?');
    let main = parts.next().unwrap_or_default();
    let alt = parts.next();
    if parts.next().is_some() {
        return Err(format!(
            "more than 1 alternative header specified in `%{name}({arg})%`"
        ));
    }
    let fix = |h: &str| -> Result<String, String> {
        if h.is_empty() || h.len() > MAX_HEADER_NAME {
            return Err(format!("invalid header name in `%{name}({arg})%`"));
        }
        if !h
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'(' && b != b')')
        {
            return Err(format!("invalid header name in `%{name}({arg})%`"));
        }
        let h = h.to_ascii_lowercase();
        Ok(if h == "host" { ":authority".into() } else { h })
    };
    let main = fix(main)?;
    let alt = alt.map(fix).transpose()?;
    Ok(header(src, &main, alt.as_deref()))
}

fn operator(name: &str, arg: Option<&str>) -> Result<Op, String> {
    let src = match name {
        "REQ" => Some(HeaderSource::Request),
        "RESP" => Some(HeaderSource::Response),
        "TRAILER" => Some(HeaderSource::Trailer),
        _ => None,
    };
    match (src, arg) {
        (Some(src), Some(a)) => return header_op(src, a, name),
        (Some(_), None) => return Err(format!("`%{name}%` needs a header name: `%{name}(X)%`")),
        _ => {}
    }
    if name == "START_TIME" {
        return Ok(Op::StartTime(
            arg.filter(|a| !a.is_empty()).map(String::from),
        ));
    }
    match (simple(name), arg) {
        (Some(op), None) => Ok(op),
        (Some(_), Some(a)) => Err(format!("`%{name}({a})%`: {name} takes no argument")),
        (None, _) => Err(format!("Not supported field in StreamInfo: {name}")),
    }
}

impl TextFormat {
    /// Whether any field is the operator `op`.
    pub fn uses(&self, op: &Op) -> bool {
        self.uses_any(&|o| o == op)
    }

    /// Whether any field's operator passes `test`.
    pub fn uses_any(&self, test: &dyn Fn(&Op) -> bool) -> bool {
        self.fields
            .iter()
            .any(|f| matches!(f, LogField::Op { op, .. } if test(op)))
    }

    /// Parses a format string. Errors name the offending operator; nothing here panics
    /// on any input (only `find`/`split_at`-style cuts at positions found in the text).
    pub fn parse(s: &str) -> Result<TextFormat, String> {
        let mut fields = Vec::new();
        let mut literal = String::new();
        let mut rest = s;
        while let Some((before, after)) = rest.split_once('%') {
            literal.push_str(before);
            if let Some(stripped) = after.strip_prefix('%') {
                literal.push('%');
                rest = stripped;
                continue;
            }
            let (field, tail) = parse_operator(after)?;
            if !literal.is_empty() {
                fields.push(LogField::Literal(std::mem::take(&mut literal)));
            }
            fields.push(field);
            rest = tail;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            fields.push(LogField::Literal(literal));
        }
        Ok(TextFormat { fields })
    }

    /// The format is exactly one operator (what a JSON value keeps typed).
    pub fn single(&self) -> Option<(&Op, Option<usize>)> {
        match self.fields.as_slice() {
            [LogField::Op { op, max }] => Some((op, *max)),
            _ => None,
        }
    }
}

/// `after` starts just past a `%`: `NAME`, `(ARG)`, `:N`, then the closing `%`.
fn parse_operator(after: &str) -> Result<(LogField, &str), String> {
    let name_len = after
        .bytes()
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
        .count();
    let (name, mut rest) = after.split_at_checked(name_len).unwrap_or((after, ""));
    let shown = || {
        let end = after.char_indices().nth(40).map_or(after.len(), |(i, _)| i);
        format!("%{}", after.get(..end).unwrap_or(after))
    };
    if name.is_empty() {
        return Err(format!(
            "couldn't find valid command at `{}` (a literal % is written %%)",
            shown()
        ));
    }
    let mut arg = None;
    if let Some(r) = rest.strip_prefix('(') {
        let Some((a, r)) = r.split_once(')') else {
            return Err(format!("unterminated argument in `{}`", shown()));
        };
        arg = Some(a);
        rest = r;
    }
    let mut max = None;
    if let Some(r) = rest.strip_prefix(':') {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        let (n, r) = r.split_at_checked(digits).unwrap_or((r, ""));
        let n: usize = n
            .parse()
            .map_err(|_| format!("bad maximum length in `{}`", shown()))?;
        max = Some(n);
        rest = r;
    }
    let Some(rest) = rest.strip_prefix('%') else {
        return Err(format!("unterminated operator at `{}`", shown()));
    };
    let op = operator(name, arg)?;
    Ok((LogField::Op { op, max }, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(s: &str) -> Op {
        match TextFormat::parse(s).unwrap().single() {
            Some((op, _)) => op.clone(),
            None => panic!("not one operator: {s}"),
        }
    }

    #[test]
    fn default_format_parses() {
        let f = TextFormat::parse(DEFAULT_FORMAT).unwrap();
        assert_eq!(f.fields[0], LogField::Literal("[".into()));
        assert!(f.fields.contains(&LogField::Op {
            op: Op::UpstreamHost,
            max: None
        }));
        assert!(f.fields.contains(&LogField::Op {
            op: header(
                HeaderSource::Request,
                "x-envoy-original-path",
                Some(":path")
            ),
            max: None
        }));
    }

    #[test]
    fn header_operators_with_alternatives_and_lengths() {
        let f = TextFormat::parse("%REQ(X-A?User-Agent):10%").unwrap();
        assert_eq!(
            f.single(),
            Some((
                &header(HeaderSource::Request, "x-a", Some("user-agent")),
                Some(10)
            ))
        );
        assert_eq!(
            op("%RESP(Host)%"),
            header(HeaderSource::Response, ":authority", None)
        );
        assert_eq!(
            op("%TRAILER(grpc-status)%"),
            header(HeaderSource::Trailer, "grpc-status", None)
        );
        assert_eq!(
            op("%START_TIME(%s.%3f)%"),
            Op::StartTime(Some("%s.%3f".into()))
        );
        assert_eq!(op("%START_TIME%"), Op::StartTime(None));
        assert_eq!(op("%DURATION%"), Op::Duration);
    }

    #[test]
    fn literal_percent() {
        let f = TextFormat::parse("a%%b %RESPONSE_CODE%").unwrap();
        assert_eq!(
            f.fields,
            vec![
                LogField::Literal("a%b ".into()),
                LogField::Op {
                    op: Op::ResponseCode,
                    max: None
                }
            ]
        );
    }

    #[test]
    fn malformed_formats_are_refused_with_a_reason() {
        let cases = [
            ("%NOPE%", "Not supported field in StreamInfo: NOPE"),
            ("%DURATION", "unterminated operator"),
            ("x %", "couldn't find valid command"),
            ("%REQ(X%", "unterminated argument"),
            ("%REQ(X):%", "bad maximum length"),
            ("%REQ(X):99999999999999999999999%", "bad maximum length"),
            ("%REQ(X):1x%", "unterminated operator"),
            ("%REQ(A?B?C)%", "more than 1 alternative"),
            ("%REQ()%", "invalid header name"),
            ("%REQ%", "needs a header name"),
            ("%DURATION(x)%", "takes no argument"),
            ("%lower%", "couldn't find valid command"),
        ];
        for (s, want) in cases {
            let e = TextFormat::parse(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        let pieces = [
            "%",
            "(",
            ")",
            ":",
            "1",
            "REQ",
            "é",
            "?",
            "%%",
            "START_TIME",
            "x",
        ];
        // Every 4-piece combination: a bounded exhaustive sweep.
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        let _ = TextFormat::parse(&format!("{a}{b}{c}{d}"));
                    }
                }
            }
        }
    }
}
