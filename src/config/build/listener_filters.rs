//! Building a listener's listener filters (`listener_filters` by name, their timeout)
//! from the native YAML. Part of `config::build`.

use std::time::Duration;

use super::super::model::ListenerFilters;
use super::super::raw::RawListener;
use super::Builder;

impl Builder {
    pub(super) fn listener_filters(&mut self, p: &str, l: &RawListener) -> ListenerFilters {
        let d = ListenerFilters::default();
        let mut f = ListenerFilters {
            timeout: self.duration(
                format!("{p}.listener_filters_timeout"),
                &l.listener_filters_timeout,
                d.timeout,
            ),
            continue_on_timeout: l
                .continue_on_listener_filters_timeout
                .unwrap_or(d.continue_on_timeout),
            server_first_probe: l.server_first_probe.as_ref().map(|_| {
                let at = format!("{p}.server_first_probe");
                self.duration(at, &l.server_first_probe, Duration::ZERO)
            }),
            ..d
        };
        for (k, name) in l.listener_filters.iter().enumerate() {
            match name.as_str() {
                "http_inspector" if !f.http_inspector => f.http_inspector = true,
                "tls_inspector" if !f.tls_inspector => f.tls_inspector = true,
                "original_dst" if !f.original_dst => f.original_dst = true,
                "http_inspector" | "tls_inspector" | "original_dst" => self.err(
                    format!("{p}.listener_filters[{k}]"),
                    format!("`{name}` is listed twice"),
                ),
                other => self.err(
                    format!("{p}.listener_filters[{k}]"),
                    format!(
                        "unknown listener filter `{other}` (use http_inspector, tls_inspector or original_dst)"
                    ),
                ),
            }
        }
        if f.server_first_probe.is_some() && !f.http_inspector && !f.tls_inspector {
            self.err(
                format!("{p}.server_first_probe"),
                "needs a listener filter that waits for the client (http_inspector or tls_inspector)",
            );
        }
        f
    }
}
