//! The supported fields of Envoy's TLS transport sockets and of SDS from files: the
//! contexts, certificates, validation contexts and SDS configs of a bootstrap, and the
//! `DiscoveryResponse` and `Secret` of an SDS file (`envoy/sds.rs`).

pub(super) const SUPPORTED: &[(&str, &[&str])] = &[
    (
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        &["common_tls_context", "require_client_certificate"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        &["common_tls_context", "sni"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.CommonTlsContext",
        &[
            "tls_certificates",
            "tls_certificate_sds_secret_configs",
            "alpn_protocols",
            "validation_context",
            "validation_context_sds_secret_config",
            "combined_validation_context",
            "tls_params",
        ],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.TlsParameters",
        &[
            "tls_minimum_protocol_version",
            "tls_maximum_protocol_version",
            "cipher_suites",
            "ecdh_curves",
        ],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.CombinedCertificateValidationContext",
        &["default_validation_context", "validation_context_sds_secret_config"],
    ),
    (
        // `watched_directory`: accepted; the rotation watch polls every file anyway.
        "envoy.extensions.transport_sockets.tls.v3.TlsCertificate",
        &["certificate_chain", "private_key", "watched_directory"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext",
        &[
            "trusted_ca",
            "match_typed_subject_alt_names",
            "match_subject_alt_names",
            "watched_directory",
        ],
    ),
    // SDS from files (`sds.rs`): the config in the bootstrap, the file's message.
    (
        "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig",
        &["name", "sds_config"],
    ),
    (
        "envoy.config.core.v3.PathConfigSource",
        &["path", "watched_directory"],
    ),
    ("envoy.config.core.v3.WatchedDirectory", &["path"]),
    (
        "envoy.service.discovery.v3.DiscoveryResponse",
        &["version_info", "resources", "type_url", "nonce"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.Secret",
        &["name", "tls_certificate", "validation_context"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher",
        &["san_type", "matcher"],
    ),
];
