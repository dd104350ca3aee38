//! Building listeners with several filter chains, each with its own match and terminal
//! filter. There is no native syntax for them yet: the Envoy bootstrap translation
//! (`config::envoy::listener`) fills `RawConfig::chained_listeners`. Part of
//! `config::build`; errors go to the same builder, with field paths under
//! `chained_listeners[i]`, which the translation maps back to the bootstrap's.

use std::sync::Arc;

use super::super::model::*;
use super::super::raw::*;
use super::listener::RawTerminal;
use super::Builder;
use crate::http::filter::RawHttpFilter;

#[derive(Debug, Default)]
pub(crate) struct RawChainedListener {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub listener_filters: ListenerFilters,
    pub filter_chains: Vec<RawChain>,
    pub default_filter_chain: Option<RawChain>,
}

/// One chain: its match (already checked by the translation) and the settings of its
/// terminal filter, as the native single-chain listener has them.
#[derive(Debug, Default)]
pub(crate) struct RawChain {
    pub name: String,
    pub matcher: FilterChainMatch,
    pub route_table: Option<String>,
    pub tcp_proxy: Option<RawTcpProxy>,
    pub codec: Option<String>,
    pub stat_prefix: Option<String>,
    pub limits: Option<RawLimits>,
    pub idle_timeout: Option<String>,
    pub access_log: Option<RawAccessLog>,
    pub http2: Option<RawHttp2>,
    pub request_headers_timeout: Option<String>,
    pub stream_idle_timeout: Option<String>,
    pub forwarding: Option<RawForwarding>,
    pub http_filters: Vec<RawHttpFilter>,
}

impl RawChain {
    fn terminal(&self) -> RawTerminal<'_> {
        RawTerminal {
            route_table: &self.route_table,
            tcp_proxy: &self.tcp_proxy,
            codec: &self.codec,
            stat_prefix: &self.stat_prefix,
            limits: &self.limits,
            idle_timeout: &self.idle_timeout,
            access_log: &self.access_log,
            http2: &self.http2,
            request_headers_timeout: &self.request_headers_timeout,
            stream_idle_timeout: &self.stream_idle_timeout,
            forwarding: &self.forwarding,
            http_filters: &self.http_filters,
        }
    }
}

impl Builder {
    pub(super) fn chained_listener(
        &mut self,
        p: &str,
        l: &RawChainedListener,
        tables: &[RouteTable],
        clusters: &[Arc<Cluster>],
    ) -> Option<Listener> {
        let addr = self.resolve(format!("{p}.address"), &l.address, l.port);
        let chain = |this: &mut Self, cp: String, c: &RawChain| {
            let terminal = this.terminal(&cp, &c.terminal(), &l.name, tables, clusters)?;
            Some(FilterChain {
                name: c.name.clone(),
                matcher: c.matcher.clone(),
                terminal,
            })
        };
        let mut filter_chains = Vec::new();
        for (j, c) in l.filter_chains.iter().enumerate() {
            filter_chains.push(chain(self, format!("{p}.filter_chains[{j}]"), c));
        }
        let default_filter_chain = match &l.default_filter_chain {
            Some(c) => Some(chain(self, format!("{p}.default_filter_chain"), c)?),
            None => None,
        };
        if filter_chains.is_empty() && default_filter_chain.is_none() {
            self.err(
                format!("{p}.filter_chains"),
                "needs at least one filter chain or a default_filter_chain",
            );
            return None;
        }
        Some(Listener {
            name: l.name.clone(),
            addr: addr?,
            backlog: 1024,
            max_connections: None,
            listener_filters: l.listener_filters,
            filter_chains: filter_chains.into_iter().collect::<Option<Vec<_>>>()?,
            default_filter_chain,
        })
    }
}
