//! The TLS settings of a filter chain as configured: the raw YAML (`tls:` on a filter
//! chain, shaped like Envoy's `DownstreamTlsContext` / `CommonTlsContext` so the Envoy
//! translator maps it field by field) and the checked spec built from it. Files are
//! read later, by `server::ServerTls::load`, on the control side.

use serde::Deserialize;

use super::files::{InlinePem, Watched};

/// `tls:` on a filter chain.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDownstreamTls {
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    #[serde(default)]
    pub alpn_protocols: Vec<String>,
    #[serde(default)]
    pub require_client_certificate: Option<bool>,
    #[serde(default)]
    pub validation_context: Option<RawValidationContext>,
    #[serde(default)]
    pub tls_params: Option<super::params::RawTlsParams>,
    /// The SDS files these settings came from (Envoy bootstraps only), stamped before
    /// they were read: the rotation watch reloads when one changes.
    #[serde(skip)]
    pub sds_files: Watched,
}

/// Envoy's `TlsCertificate` with file data sources.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    pub cert_chain_file: String,
    pub private_key_file: String,
    /// Inline PEM (Envoy bootstraps only), read instead of the file, which is then
    /// `<inline>`, as Envoy names it.
    #[serde(skip)]
    pub cert_chain_inline: Option<InlinePem>,
    #[serde(skip)]
    pub private_key_inline: Option<InlinePem>,
}

/// Envoy's `CertificateValidationContext` subset.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawValidationContext {
    #[serde(default)]
    pub trusted_ca_file: Option<String>,
    /// Inline PEM (Envoy bootstraps only), read instead of `trusted_ca_file`.
    #[serde(skip)]
    pub trusted_ca_inline: Option<InlinePem>,
    #[serde(default)]
    pub match_subject_alt_names: Vec<RawStringMatch>,
}

/// Envoy's `StringMatcher`: exactly one of the fields.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStringMatch {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub safe_regex: Option<RawRegex>,
    #[serde(default)]
    pub ignore_case: bool,
    /// Envoy's `match_typed_subject_alt_names[].san_type`: `dns` or `uri` (unset: a
    /// SAN of either kind).
    #[serde(default)]
    pub san_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegex {
    pub regex: String,
}

/// A certificate and its key, as file paths (or inline PEM, read instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert_chain_file: String,
    pub private_key_file: String,
    pub cert_chain_inline: Option<InlinePem>,
    pub private_key_inline: Option<InlinePem>,
}

impl CertificateFiles {
    pub(crate) fn of(c: &RawCertificate) -> CertificateFiles {
        CertificateFiles {
            cert_chain_file: c.cert_chain_file.clone(),
            private_key_file: c.private_key_file.clone(),
            cert_chain_inline: c.cert_chain_inline.clone(),
            private_key_inline: c.private_key_inline.clone(),
        }
    }

    /// The files it reads (not the inline parts), for the rotation watch.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        let chain = self
            .cert_chain_inline
            .is_none()
            .then_some(self.cert_chain_file.as_str());
        let key = self
            .private_key_inline
            .is_none()
            .then_some(self.private_key_file.as_str());
        chain.into_iter().chain(key)
    }
}

/// How a SAN is matched (Envoy's `StringMatcher`).
#[derive(Debug, Clone)]
pub enum SanMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// Anchored at both ends, as Envoy's `safe_regex` is (a full match).
    Regex(regex::Regex),
}

/// The kind of SAN a typed matcher reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanType {
    Dns,
    Uri,
}

/// One matcher; `ignore_case` applies to all but `Regex`. With a `san_type` only SANs
/// of that kind are matched (Envoy's `match_typed_subject_alt_names`).
#[derive(Debug, Clone)]
pub struct StringMatch {
    pub kind: SanMatch,
    pub ignore_case: bool,
    pub san_type: Option<SanType>,
}

impl PartialEq for StringMatch {
    fn eq(&self, o: &Self) -> bool {
        use SanMatch::*;
        self.ignore_case == o.ignore_case
            && self.san_type == o.san_type
            && match (&self.kind, &o.kind) {
                (Exact(a), Exact(b))
                | (Prefix(a), Prefix(b))
                | (Suffix(a), Suffix(b))
                | (Contains(a), Contains(b)) => a == b,
                (Regex(a), Regex(b)) => a.as_str() == b.as_str(),
                _ => false,
            }
    }
}

impl StringMatch {
    pub fn matches(&self, v: &str) -> bool {
        let fold = |s: &str| -> String {
            if self.ignore_case {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        match &self.kind {
            SanMatch::Regex(r) => r.is_match(v),
            SanMatch::Exact(want) => fold(v) == fold(want),
            SanMatch::Prefix(p) => fold(v).starts_with(&fold(p)),
            SanMatch::Suffix(s) => fold(v).ends_with(&fold(s)),
            SanMatch::Contains(c) => fold(v).contains(&fold(c)),
        }
    }

    /// Checks a raw matcher: exactly one kind, a regex that compiles.
    pub(crate) fn build(r: &RawStringMatch) -> Result<StringMatch, String> {
        let mut kinds = Vec::new();
        if let Some(s) = &r.exact {
            kinds.push(SanMatch::Exact(s.clone()));
        }
        if let Some(s) = &r.prefix {
            kinds.push(SanMatch::Prefix(s.clone()));
        }
        if let Some(s) = &r.suffix {
            kinds.push(SanMatch::Suffix(s.clone()));
        }
        if let Some(s) = &r.contains {
            kinds.push(SanMatch::Contains(s.clone()));
        }
        if let Some(s) = &r.safe_regex {
            let re = regex::Regex::new(&format!("^(?:{})$", s.regex))
                .map_err(|e| format!("safe_regex `{}` does not compile: {e}", s.regex))?;
            kinds.push(SanMatch::Regex(re));
        }
        if kinds.len() != 1 {
            return Err(
                "needs exactly one of exact, prefix, suffix, contains, safe_regex".to_string(),
            );
        }
        let san_type = match r.san_type.as_deref() {
            None => None,
            Some("dns") => Some(SanType::Dns),
            Some("uri") => Some(SanType::Uri),
            Some(other) => return Err(format!("san_type `{other}`: use dns or uri")),
        };
        Ok(StringMatch {
            kind: kinds.remove(0),
            ignore_case: r.ignore_case,
            san_type,
        })
    }
}

/// A filter chain's downstream TLS, checked (files not read yet).
#[derive(Debug, Clone, PartialEq)]
pub struct DownstreamTlsSpec {
    /// At least one; with several (an RSA and an ECDSA one), each handshake gets the
    /// first whose key can sign with a scheme the client offers.
    pub certificates: Vec<CertificateFiles>,
    /// Offered by ALPN in this order; empty: no ALPN (Envoy's default).
    pub alpn_protocols: Vec<String>,
    pub require_client_certificate: bool,
    /// CA bundle for client certificates; without it none is asked for.
    pub trusted_ca_file: Option<String>,
    /// The CA bundle inline, read instead of `trusted_ca_file`.
    pub trusted_ca_inline: Option<InlinePem>,
    /// A client certificate must have a DNS or URI SAN matching one of these (empty:
    /// any SAN).
    pub match_subject_alt_names: Vec<StringMatch>,
    /// Versions, TLS 1.2 suites and curves (`tls_params`; default: rustls's).
    pub params: super::params::TlsParams,
}

impl DownstreamTlsSpec {
    /// Every file the spec reads (not the inline PEM), for the rotation watch.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        let ca = match self.trusted_ca_inline {
            None => self.trusted_ca_file.as_deref(),
            Some(_) => None,
        };
        self.certificates
            .iter()
            .flat_map(CertificateFiles::files)
            .chain(ca)
    }

    /// Checks the raw settings; errors are `(field, message)` relative to `tls`.
    pub(crate) fn build(r: &RawDownstreamTls) -> Result<Self, Vec<(String, String)>> {
        let mut errs = Vec::new();
        if r.certificates.is_empty() {
            errs.push((
                "certificates".to_string(),
                "a TLS filter chain needs at least one certificate".to_string(),
            ));
        }
        let certificates = r.certificates.iter().map(CertificateFiles::of).collect();
        for (i, p) in r.alpn_protocols.iter().enumerate() {
            if p.is_empty() || p.len() > 255 {
                errs.push((
                    format!("alpn_protocols[{i}]"),
                    "must be 1 to 255 bytes".to_string(),
                ));
            }
        }
        let v = r.validation_context.as_ref();
        let trusted_ca_file = v.and_then(|v| v.trusted_ca_file.clone());
        let require = r.require_client_certificate.unwrap_or(false);
        if require && trusted_ca_file.is_none() {
            errs.push((
                "require_client_certificate".to_string(),
                "needs validation_context.trusted_ca_file to verify client certificates"
                    .to_string(),
            ));
        }
        let mut sans = Vec::new();
        for (i, m) in v
            .map(|v| v.match_subject_alt_names.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match StringMatch::build(m) {
                Ok(m) => sans.push(m),
                Err(e) => errs.push((
                    format!("validation_context.match_subject_alt_names[{i}]"),
                    e,
                )),
            }
        }
        if !sans.is_empty() && trusted_ca_file.is_none() {
            errs.push((
                "validation_context.match_subject_alt_names".to_string(),
                "needs validation_context.trusted_ca_file".to_string(),
            ));
        }
        let params = r.tls_params.clone().unwrap_or_default();
        let params = super::params::TlsParams::build(&params).unwrap_or_else(|e| {
            errs.extend(e);
            Default::default()
        });
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(DownstreamTlsSpec {
            params,
            certificates,
            alpn_protocols: r.alpn_protocols.clone(),
            require_client_certificate: require,
            trusted_ca_file,
            trusted_ca_inline: v.and_then(|v| v.trusted_ca_inline.clone()),
            match_subject_alt_names: sans,
        })
    }
}

/// Envoy's `forward_client_cert_details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardClientCert {
    /// Remove the header (Envoy's default).
    #[default]
    Sanitize,
    /// Pass it on unchanged on mutual-TLS connections; remove it otherwise.
    ForwardOnly,
    /// Append the proxy's element on mutual-TLS connections; remove it otherwise.
    AppendForward,
    /// Replace it with the proxy's element on mutual-TLS connections; remove it
    /// otherwise.
    SanitizeSet,
    /// Pass it on unchanged, whatever the connection.
    AlwaysForwardOnly,
}

/// Envoy's `set_current_client_cert_details`: which parts the element carries besides
/// `By` and `Hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CertDetails {
    pub subject: bool,
    pub cert: bool,
    pub chain: bool,
    pub dns: bool,
    pub uri: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(yaml: &str) -> Result<StringMatch, String> {
        StringMatch::build(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn string_matchers_follow_envoy() {
        let uri = "spiffe://cluster.local/ns/default/sa/web";
        assert!(m("{exact: 'spiffe://cluster.local/ns/default/sa/web'}")
            .unwrap()
            .matches(uri));
        assert!(m("{prefix: 'spiffe://cluster.local/'}")
            .unwrap()
            .matches(uri));
        assert!(m("{suffix: '/sa/web'}").unwrap().matches(uri));
        assert!(m("{contains: '/ns/default/'}").unwrap().matches(uri));
        assert!(
            m("{exact: 'SPIFFE://cluster.local/ns/default/sa/web', ignore_case: true}")
                .unwrap()
                .matches(uri)
        );
        assert!(!m("{exact: 'SPIFFE://cluster.local/ns/default/sa/web'}")
            .unwrap()
            .matches(uri));
        // safe_regex is a full match.
        assert!(
            m("{safe_regex: {regex: 'spiffe://cluster\\.local/ns/[a-z]+/sa/web'}}")
                .unwrap()
                .matches(uri)
        );
        assert!(!m("{safe_regex: {regex: 'cluster'}}").unwrap().matches(uri));
        assert!(m("{exact: a, prefix: b}").is_err());
        assert!(m("{}").is_err());
        assert!(m("{safe_regex: {regex: '('}}").is_err());
    }
}
