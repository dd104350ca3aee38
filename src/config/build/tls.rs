//! A filter chain's `tls:` block: checked into a `DownstreamTlsSpec`, then its files
//! read and the rustls config built (`tls::ServerTls::load`). Config building runs on
//! the control side, so this is where certificate files are read; a file that cannot
//! be read or parsed refuses the config, and the running one keeps serving.

use std::sync::Arc;

use super::Builder;
use crate::tls::client::{ClientTls, RawUpstreamTls, UpstreamTlsSpec};
use crate::tls::config::{DownstreamTlsSpec, RawDownstreamTls};
use crate::tls::ServerTls;

impl Builder {
    pub(super) fn downstream_tls(
        &mut self,
        p: &str,
        raw: &RawDownstreamTls,
    ) -> Option<Arc<ServerTls>> {
        let spec = match DownstreamTlsSpec::build(raw) {
            Ok(s) => s,
            Err(errs) => {
                for (field, message) in errs {
                    self.err(format!("{p}.{field}"), message);
                }
                return None;
            }
        };
        match ServerTls::load(&spec, &raw.sds_files) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                self.err(p.to_string(), e);
                None
            }
        }
    }

    pub(super) fn upstream_tls(
        &mut self,
        p: &str,
        raw: &RawUpstreamTls,
        h2: bool,
    ) -> Option<Arc<ClientTls>> {
        let spec = match UpstreamTlsSpec::build(raw, h2) {
            Ok(s) => s,
            Err(errs) => {
                for (field, message) in errs {
                    self.err(format!("{p}.{field}"), message);
                }
                return None;
            }
        };
        match ClientTls::load(&spec, &raw.sds_files) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                self.err(p.to_string(), e);
                None
            }
        }
    }
}
