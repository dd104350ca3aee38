//! Envoy's SDS from files: an `SdsSecretConfig` whose `sds_config` is a
//! `path_config_source` (or the deprecated `path`) names a file holding a
//! `DiscoveryResponse` with one `Secret`. Read when the bootstrap is translated, on the
//! control side; the file is stamped first so the rotation watch (`runtime/tls_watch.rs`)
//! translates the bootstrap again when it changes.
//!
//! Envoy's rules, followed here: the file must exist when the config loads ("paths must
//! refer to an existing path in the system"); it is YAML when its name ends in `.yaml` or
//! `.yml` and JSON otherwise; it must hold exactly one resource, a `Secret` whose `name`
//! is the config's `name`. Where Envoy would start with the secret missing (a file that
//! does not parse, or holds another secret) and refuse TLS handshakes until a good file
//! arrives, Outrigger refuses the config instead: at start-up the proxy does not start,
//! and on rotation the running config (with the previous secret) keeps serving, which
//! is what Envoy does with a rejected update. Static secrets (`static_resources.secrets`)
//! are refused with their path.
//!
//! Envoy's SDS over ADS (`sds_config: {ads: {}}`): the secret comes from the xDS client
//! (`src/xds/`), which hands the secrets it holds to the translation as [`AdsSecrets`];
//! from there a secret goes through the same checks as one read from a file. The xDS
//! client keeps a listener or cluster warming until its secrets have arrived, so a
//! missing one here is an error only for a bootstrap translated outside xDS.

use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, SdsSecretConfig, Secret, TlsCertificate,
};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use prost_reflect::DynamicMessage;
use serde_json::Value;

use super::convert::{payload, AdsSecrets, R};
use super::{check_type_urls, err, msg_from, pool, walk};
use crate::tls::files::{stamp, Watched};

pub const SECRET: &str = "envoy.extensions.transport_sockets.tls.v3.Secret";

/// Where a secret comes from.
enum Source {
    File(String),
    Ads,
}
const RESPONSE: &str = "envoy.service.discovery.v3.DiscoveryResponse";

/// Whether an SDS config names a secret delivered over ADS.
pub fn is_ads(c: &SdsSecretConfig) -> bool {
    matches!(
        c.sds_config.as_ref().map(|s| &s.config_source_specifier),
        Some(Some(ConfigSourceSpecifier::Ads(_)))
    )
}

/// The file an SDS config reads (or ADS), or why it cannot be served.
fn sds_source(c: &SdsSecretConfig, p: &str) -> R<Source> {
    let sp = format!("{p}.sds_config");
    let path = match c.sds_config.as_ref().map(|s| &s.config_source_specifier) {
        None => {
            return Err(err(
                sp,
                format!(
                    "is required: static secrets (`static_resources.secrets`, here `{}`) are not supported; deliver the secret from a file with `sds_config.path_config_source`",
                    c.name
                ),
            ))
        }
        #[allow(deprecated)]
        Some(Some(ConfigSourceSpecifier::Path(path))) => path.clone(),
        Some(Some(ConfigSourceSpecifier::PathConfigSource(pcs))) => pcs.path.clone(),
        Some(Some(ConfigSourceSpecifier::Ads(_))) => {
            if c.name.is_empty() {
                return Err(err(format!("{p}.name"), "is required"));
            }
            return Ok(Source::Ads);
        }
        Some(_) => {
            return Err(err(
                sp,
                "needs `path_config_source` (or `path`) or `ads`: Outrigger reads secrets from files or over ADS",
            ))
        }
    };
    if path.is_empty() {
        return Err(err(sp, "the path must not be empty"));
    }
    if c.name.is_empty() {
        return Err(err(format!("{p}.name"), "is required"));
    }
    Ok(Source::File(path))
}

/// Reads the secret an SDS config names, from its file (recording the file and its
/// stamp, taken before the read, in `watched`) or from what ADS delivered.
fn load(c: &SdsSecretConfig, p: &str, watched: &mut Watched, ads: &AdsSecrets) -> R<Secret> {
    let path = match sds_source(c, p)? {
        Source::File(path) => path,
        Source::Ads => {
            return ads.get(&c.name).cloned().ok_or_else(|| {
                err(
                    format!("{p}.sds_config.ads"),
                    format!("secret `{}` has not arrived over ADS", c.name),
                )
            })
        }
    };
    let stamp = stamp(&path);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "paths must refer to an existing path in the system: it does not exist".to_string()
        } else {
            e.to_string()
        };
        err(
            format!("{p}.sds_config"),
            format!("SDS file `{path}`: {why}"),
        )
    })?;
    watched.push((path.clone(), stamp));
    let in_file = |m: String| err(p, format!("SDS file `{path}`: {m}"));
    let response = parse(&path, &text).map_err(in_file)?;
    let secret = match response.resources.as_slice() {
        [one] => payload::<Secret>(one, SECRET, "resources[0]")
            .map_err(|e| in_file(format!("{}: {}", e.path, e.message)))?,
        [] => {
            return Err(in_file(format!(
                "Missing SDS resources for {} (the file has no `resources`)",
                c.name
            )))
        }
        many => {
            return Err(in_file(format!(
                "Unexpected SDS secrets length for {}: {} resources, expected 1",
                c.name,
                many.len()
            )))
        }
    };
    if secret.name != c.name {
        return Err(in_file(format!(
            "Unexpected SDS secret (expecting {}): {}",
            c.name, secret.name
        )));
    }
    Ok(secret)
}

/// The file as a `DiscoveryResponse`, checked against the supported fields.
fn parse(path: &str, text: &str) -> Result<DiscoveryResponse, String> {
    let lower = path.to_ascii_lowercase();
    let value: Value = if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        serde_yaml::from_str(text).map_err(|e| format!("not YAML: {e}"))?
    } else if lower.ends_with(".pb") || lower.ends_with(".pb_text") {
        return Err("protobuf files are not supported: use YAML or JSON".into());
    } else {
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?
    };
    let pool = pool()?;
    let at = |e: super::ConfigError| format!("{}: {}", e.path, e.message);
    check_type_urls(&value, "", pool).map_err(at)?;
    let desc = pool
        .get_message_by_name(RESPONSE)
        .ok_or("DiscoveryResponse missing from the descriptors")?;
    let msg: DynamicMessage = msg_from(desc, &value).map_err(at)?;
    walk::check(&msg, "").map_err(|(p, m)| format!("{p}: {m}"))?;
    msg.transcode_to::<DiscoveryResponse>()
        .map_err(|e| format!("cannot transcode: {e}"))
}

/// The certificate of an entry of `tls_certificate_sds_secret_configs` (at `p`).
pub(super) fn tls_certificate(
    c: &SdsSecretConfig,
    p: &str,
    watched: &mut Watched,
    ads: &AdsSecrets,
) -> R<TlsCertificate> {
    match load(c, p, watched, ads)?.r#type {
        Some(secret::Type::TlsCertificate(t)) => Ok(t),
        _ => Err(err(
            p,
            format!("secret `{}` is not a `tls_certificate`", c.name),
        )),
    }
}

/// The validation context of a `validation_context_sds_secret_config` (at `p`).
pub(super) fn validation_context(
    c: &SdsSecretConfig,
    p: &str,
    watched: &mut Watched,
    ads: &AdsSecrets,
) -> R<CertificateValidationContext> {
    match load(c, p, watched, ads)?.r#type {
        Some(secret::Type::ValidationContext(v)) => Ok(v),
        _ => Err(err(
            p,
            format!("secret `{}` is not a `validation_context`", c.name),
        )),
    }
}

/// Envoy's `combined_validation_context`: the default context with the secret's merged
/// over it (protobuf `MergeFrom`: a field the secret sets replaces the default's, lists
/// are appended).
#[allow(deprecated)]
pub(super) fn merged(
    default: &CertificateValidationContext,
    dynamic: CertificateValidationContext,
) -> CertificateValidationContext {
    let mut out = default.clone();
    if dynamic.trusted_ca.is_some() {
        out.trusted_ca = dynamic.trusted_ca;
    }
    if dynamic.watched_directory.is_some() {
        out.watched_directory = dynamic.watched_directory;
    }
    out.match_typed_subject_alt_names
        .extend(dynamic.match_typed_subject_alt_names);
    out.match_subject_alt_names
        .extend(dynamic.match_subject_alt_names);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::SubjectAltNameMatcher;

    fn ca(f: &str) -> Option<DataSource> {
        Some(DataSource {
            specifier: Some(Specifier::Filename(f.into())),
            ..Default::default()
        })
    }

    #[test]
    fn the_secret_replaces_the_ca_and_appends_matchers() {
        let san = |t: i32| SubjectAltNameMatcher {
            san_type: t,
            ..Default::default()
        };
        let default = CertificateValidationContext {
            trusted_ca: ca("default.pem"),
            match_typed_subject_alt_names: vec![san(1)],
            ..Default::default()
        };
        let dynamic = CertificateValidationContext {
            trusted_ca: ca("sds.pem"),
            match_typed_subject_alt_names: vec![san(2)],
            ..Default::default()
        };
        let m = merged(&default, dynamic);
        assert_eq!(m.trusted_ca, ca("sds.pem"));
        assert_eq!(m.match_typed_subject_alt_names, vec![san(1), san(2)]);
        // A secret without a CA keeps the default's.
        let m = merged(&default, CertificateValidationContext::default());
        assert_eq!(m.trusted_ca, ca("default.pem"));
    }

    #[test]
    fn yaml_by_name_json_otherwise() {
        let yaml = "resources: []\nversion_info: '1'\n";
        assert!(parse("/s/sds.yaml", yaml).is_ok());
        assert!(parse("/s/sds.YML", yaml).is_ok());
        // Envoy parses any other name as JSON.
        assert!(parse("/s/sds", yaml).unwrap_err().contains("not JSON"));
        assert!(parse("/s/sds.json", r#"{"version_info": "1"}"#).is_ok());
        assert!(parse("/s/sds.pb", "").is_err());
        let unknown = "resources: []\nfoo: 1\n";
        assert!(parse("/s/sds.yaml", unknown).is_err());
    }
}
