//! Bootstrap tokens: how a proxy proves which workload it is, there being no
//! Kubernetes service-account token here. `--tokens FILE` lists each token with the
//! namespace and service account it stands for:
//!
//! ```yaml
//! - token: 7f0c...            # any string of 16 or more characters
//!   namespace: demo
//!   serviceAccount: frontend
//! ```
//!
//! A proxy sends its token on the ADS stream as `authorization: Bearer TOKEN` (Envoy's
//! `grpc_services[].initial_metadata`). The file is read at start and again when a
//! token is not found, so a workload can be added without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The shortest token accepted: a guessable token is no authentication.
const MIN_TOKEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub service_account: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Entry {
    token: String,
    namespace: String,
    service_account: String,
}

pub struct Tokens {
    path: PathBuf,
    by_token: HashMap<String, Identity>,
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let at = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{at}: {e}"))?;
        let entries: Vec<Entry> =
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(&text))
                .map_err(|e| format!("{at}: {}: {}", e.path(), e.inner()))?;
        let mut by_token = HashMap::new();
        for (i, e) in entries.into_iter().enumerate() {
            if e.token.len() < MIN_TOKEN {
                return Err(format!(
                    "{at}: [{i}].token: shorter than {MIN_TOKEN} characters"
                ));
            }
            for (field, v) in [
                ("namespace", &e.namespace),
                ("serviceAccount", &e.service_account),
            ] {
                if v.is_empty() || v.contains('/') {
                    return Err(format!(
                        "{at}: [{i}].{field}: must be a non-empty name without `/`"
                    ));
                }
            }
            let id = Identity {
                namespace: e.namespace,
                service_account: e.service_account,
            };
            if by_token.insert(e.token, id).is_some() {
                return Err(format!("{at}: [{i}].token: listed twice"));
            }
        }
        Ok(Tokens {
            path: path.to_path_buf(),
            by_token,
        })
    }

    /// The identity `token` stands for; an unknown token reads the file again first.
    pub fn identify(&mut self, token: &str) -> Option<Identity> {
        if let Some(id) = self.by_token.get(token) {
            return Some(id.clone());
        }
        match Tokens::load(&self.path) {
            Ok(t) => *self = t,
            Err(e) => tracing::warn!("tokens not reloaded: {e}"),
        }
        self.by_token.get(token).cloned()
    }
}

/// The token of an `authorization: Bearer TOKEN` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_identity_and_bad_files_name_the_entry() {
        let d = std::env::temp_dir().join(format!("outrigger-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("tokens.yaml");
        std::fs::write(
            &f,
            "- {token: 0123456789abcdef, namespace: demo, serviceAccount: web}\n",
        )
        .unwrap();
        let mut t = Tokens::load(&f).unwrap();
        assert_eq!(
            t.identify("0123456789abcdef").unwrap().service_account,
            "web"
        );
        assert!(t.identify("nope").is_none());
        std::fs::write(
            &f,
            "- {token: short, namespace: demo, serviceAccount: web}\n",
        )
        .unwrap();
        assert!(Tokens::load(&f)
            .err()
            .unwrap()
            .contains("[0].token: shorter"));
        std::fs::write(
            &f,
            "- {token: 0123456789abcdef, namespace: demo, sa: web}\n",
        )
        .unwrap();
        assert!(Tokens::load(&f)
            .err()
            .unwrap()
            .contains("unknown field `sa`"));
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        let _ = std::fs::remove_dir_all(&d);
    }
}
