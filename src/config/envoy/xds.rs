//! xDS resources as a config source: control plane only (the xDS client in `src/xds/`
//! calls these on the control executor).
//!
//! A resource arrives as protobuf bytes. It is decoded against the same descriptor pool
//! as a bootstrap, turned into proto3 JSON (proto field names) and then goes through the
//! bootstrap's own pipeline: optional HTTP filters skipped, `@type`s checked, the
//! supported-field walker, and the transcode to envoy-types' structs; so a resource and
//! a bootstrap are held to one table and report one kind of field path.
//!
//! A snapshot is assembled as a `Bootstrap` whose static resources are the bootstrap's
//! own plus the dynamic ones: each HCM's `rds` replaced by the route configuration it
//! names, each EDS cluster turned STATIC with the endpoints of its
//! `ClusterLoadAssignment`. The bootstrap translation and the native builder then check
//! it as they check a file. Errors are mapped back to the resource that caused them
//! (`listener `name`: field.path`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    api_config_source::ApiType, config_source::ConfigSourceSpecifier, grpc_service, ConfigSource,
    Node,
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use envoy_types::pb::google::protobuf::{Any, BoolValue};
use prost::Message;
use prost_reflect::{DynamicMessage, SerializeOptions};
use serde_json::Value;

use super::super::build::{ConfigError, ConfigErrors};
use super::super::model::Snapshot;
use super::{bootstrap, err, walk};

pub const LISTENER: &str = "envoy.config.listener.v3.Listener";
pub const CLUSTER: &str = "envoy.config.cluster.v3.Cluster";
pub const ROUTE: &str = "envoy.config.route.v3.RouteConfiguration";
pub const ENDPOINT: &str = "envoy.config.endpoint.v3.ClusterLoadAssignment";
pub use super::sds::SECRET;
const HCM: &str =
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// Envoy's default `initial_fetch_timeout`.
const INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// A bootstrap with `dynamic_resources.ads_config`, and the ADS settings it gives.
#[derive(Clone, Debug)]
pub struct XdsBootstrap {
    pub bootstrap: Bootstrap,
    /// The bootstrap as written (proto3 JSON), for `/config_dump`.
    pub json: Value,
    pub node: Node,
    /// The static cluster that reaches the management server.
    pub ads_cluster: String,
    /// The ADS gRPC service's `initial_metadata`: headers sent on every stream (a
    /// control plane's bearer token, for one), names lower-cased.
    pub initial_metadata: Vec<(String, String)>,
    /// `DELTA_GRPC` (incremental) rather than `GRPC` (state of the world).
    pub delta: bool,
    pub set_node_on_first_message_only: bool,
    /// `cds_config.initial_fetch_timeout` (15 s; `None`: zero, wait for ever).
    pub cds_fetch_timeout: Option<Duration>,
    /// `lds_config.initial_fetch_timeout`.
    pub lds_fetch_timeout: Option<Duration>,
}

/// Reads an Envoy bootstrap; `Ok(None)` when it has no ADS (a plain static bootstrap).
pub fn xds_bootstrap(text: &str) -> Result<Option<XdsBootstrap>, ConfigErrors> {
    let Ok(value) = serde_yaml::from_str::<Value>(text) else {
        return Ok(None);
    };
    if !super::is_bootstrap(&value) || value.get("dynamic_resources").is_none() {
        return Ok(None);
    }
    let lines = super::locate::line_map(text);
    let fail = |mut e: ConfigError| {
        e.line = super::locate::line_of(&lines, &e.path);
        ConfigErrors(vec![e])
    };
    let (b, json): (Bootstrap, Value) =
        decode_json("envoy.config.bootstrap.v3.Bootstrap", value).map_err(fail)?;
    settings(b, json).map(Some).map_err(fail)
}

fn settings(b: Bootstrap, json: Value) -> Result<XdsBootstrap, ConfigError> {
    let p = "dynamic_resources";
    let d = b.dynamic_resources.clone().unwrap_or_default();
    let Some(ads) = &d.ads_config else {
        return Err(err(
            format!("{p}.ads_config"),
            "is required: Outrigger fetches dynamic resources over ADS only",
        ));
    };
    for (field, cs) in [("lds_config", &d.lds_config), ("cds_config", &d.cds_config)] {
        if let Some(cs) = cs {
            ads_source(cs, &format!("{p}.{field}"))?;
        }
    }
    let ap = format!("{p}.ads_config");
    let delta = match ApiType::try_from(ads.api_type) {
        Ok(ApiType::Grpc | ApiType::AggregatedGrpc) => false,
        Ok(ApiType::DeltaGrpc | ApiType::AggregatedDeltaGrpc) => true,
        _ => {
            return Err(err(
                format!("{ap}.api_type"),
                "must be GRPC (state of the world) or DELTA_GRPC (incremental)",
            ))
        }
    };
    let [g] = ads.grpc_services.as_slice() else {
        return Err(err(
            format!("{ap}.grpc_services"),
            "exactly one grpc_service is required",
        ));
    };
    let Some(grpc_service::TargetSpecifier::EnvoyGrpc(eg)) = &g.target_specifier else {
        return Err(err(
            format!("{ap}.grpc_services[0].envoy_grpc"),
            "is required (google_grpc is not supported by Outrigger)",
        ));
    };
    let statics = b.static_resources.as_ref().map(|s| &s.clusters[..]);
    if !statics
        .unwrap_or_default()
        .iter()
        .any(|c| c.name == eg.cluster_name)
    {
        return Err(err(
            format!("{ap}.grpc_services[0].envoy_grpc.cluster_name"),
            format!("no static cluster named `{}`", eg.cluster_name),
        ));
    }
    let mut initial_metadata = Vec::new();
    for (i, h) in g.initial_metadata.iter().enumerate() {
        let key = h.key.to_ascii_lowercase();
        let valid = http::HeaderName::from_bytes(key.as_bytes()).is_ok()
            && !key.starts_with(':')
            && !key.starts_with("grpc-");
        if !valid {
            return Err(err(
                format!("{ap}.grpc_services[0].initial_metadata[{i}].key"),
                "must be a header name (not a pseudo-header or a grpc- header)",
            ));
        }
        if http::HeaderValue::from_str(&h.value).is_err() {
            return Err(err(
                format!("{ap}.grpc_services[0].initial_metadata[{i}].value"),
                "must be a valid header value",
            ));
        }
        initial_metadata.push((key, h.value.clone()));
    }
    Ok(XdsBootstrap {
        node: b.node.clone().unwrap_or_default(),
        ads_cluster: eg.cluster_name.clone(),
        initial_metadata,
        delta,
        set_node_on_first_message_only: ads.set_node_on_first_message_only,
        cds_fetch_timeout: fetch_timeout(d.cds_config.as_ref()),
        lds_fetch_timeout: fetch_timeout(d.lds_config.as_ref()),
        bootstrap: b,
        json,
    })
}

/// A subscription's `initial_fetch_timeout` (Envoy's `ConfigSource`): 15 s when the
/// source or the field is absent; `None` when it is zero, which disables it (the
/// subscription waits for ever, as in Envoy).
pub fn fetch_timeout(cs: Option<&ConfigSource>) -> Option<Duration> {
    let t = cs
        .and_then(|c| c.initial_fetch_timeout)
        .map(|t| Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32))
        .unwrap_or(INITIAL_FETCH_TIMEOUT);
    // Timers take no deadline past the end of time: a year is "never" enough.
    (!t.is_zero()).then(|| t.min(Duration::from_secs(365 * 24 * 3600)))
}

/// A `ConfigSource` must be `{ads: {}}`.
fn ads_source(cs: &ConfigSource, p: &str) -> Result<(), ConfigError> {
    match cs.config_source_specifier {
        Some(ConfigSourceSpecifier::Ads(_)) => Ok(()),
        _ => Err(err(
            p,
            "must be `{ads: {}}`: Outrigger fetches dynamic resources over ADS only",
        )),
    }
}

/// Decodes one resource of type `type_name` from protobuf bytes and checks it against
/// the supported fields. Returns the typed message and its JSON (for `/config_dump`);
/// an error is `(field path inside the resource, message)`.
pub fn decode_resource<M: Message + Default>(
    type_name: &str,
    bytes: &[u8],
) -> Result<(M, Value), (String, String)> {
    let pool = super::pool().map_err(|m| ("(root)".to_string(), m))?;
    let desc = pool
        .get_message_by_name(type_name)
        .ok_or_else(|| ("(root)".to_string(), format!("unknown type `{type_name}`")))?;
    let dm = DynamicMessage::decode(desc, bytes)
        .map_err(|e| ("(root)".to_string(), format!("cannot decode: {e}")))?;
    let opts = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false);
    let json = dm
        .serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|e| ("(root)".to_string(), format!("cannot decode: {e}")))?;
    decode_json(type_name, json).map_err(|e| (e.path, e.message))
}

/// The bootstrap's pipeline for one message in proto3 JSON.
fn decode_json<M: Message + Default>(
    type_name: &str,
    mut value: Value,
) -> Result<(M, Value), ConfigError> {
    let pool = super::pool().map_err(|m| err("(root)", m))?;
    super::skip_optional_filters(&mut value, "", pool);
    super::check_type_urls(&value, "", pool)?;
    let desc = pool
        .get_message_by_name(type_name)
        .ok_or_else(|| err("(root)", format!("unknown type `{type_name}`")))?;
    let msg = super::msg_from(desc, &value)?;
    walk::check(&msg, "").map_err(|(p, m)| err(p, m))?;
    let typed = msg
        .transcode_to::<M>()
        .map_err(|e| err("(root)", format!("cannot transcode: {e}")))?;
    Ok((typed, value))
}

/// The dynamic resources a snapshot is assembled from, by name.
#[derive(Clone, Debug, Default)]
pub struct Dynamic {
    pub listeners: BTreeMap<String, Listener>,
    pub clusters: BTreeMap<String, Cluster>,
    pub routes: BTreeMap<String, RouteConfiguration>,
    pub endpoints: BTreeMap<String, ClusterLoadAssignment>,
    /// Secrets (`sds_config: {ads: {}}`); a listener or cluster warms until its arrive.
    pub secrets: super::convert::AdsSecrets,
    /// The version of each listener and cluster last used in a snapshot: a warming
    /// update keeps serving it (Envoy keeps the active listener or cluster until its
    /// replacement has warmed).
    pub active_listeners: BTreeMap<String, Listener>,
    pub active_clusters: BTreeMap<String, Cluster>,
    /// Each RDS route configuration as it was when a snapshot in force placed it:
    /// Envoy checks `validate_clusters` when a route configuration arrives, not when
    /// CDS changes later, so one held unchanged since is not checked again.
    pub accepted_routes: BTreeMap<String, RouteConfiguration>,
}

impl Dynamic {
    /// Records the route configurations the listeners in force (and the bootstrap's)
    /// use, as they are now: called once a snapshot is in force.
    pub fn accept_routes(&mut self, statics: &[Listener]) {
        let placed: BTreeMap<String, RouteConfiguration> = self
            .active_listeners
            .values()
            .chain(statics)
            .flat_map(rds_names)
            .filter_map(|n| Some((n.clone(), self.routes.get(&n)?.clone())))
            .collect();
        self.accepted_routes = placed;
    }
}

/// What went into a snapshot, and what is still warming.
pub struct Assembled {
    pub snapshot: Snapshot,
    pub used_listeners: BTreeMap<String, Listener>,
    pub used_clusters: BTreeMap<String, Cluster>,
    /// Resources still awaited: (type, name).
    pub warming: Vec<(&'static str, String)>,
}

/// The route configuration names a listener's HCMs need over RDS.
pub fn rds_names(l: &Listener) -> Vec<String> {
    rds_sources(l).into_iter().map(|(n, _)| n).collect()
}

/// Each route configuration a listener's HCMs need over RDS, with its subscription's
/// initial fetch timeout (`rds.config_source`).
pub fn rds_sources(l: &Listener) -> Vec<(String, Option<Duration>)> {
    chains(l)
        .filter_map(|fc| hcm_of(fc).map(|(_, h)| h))
        .filter_map(|h| match h.route_specifier {
            Some(RouteSpecifier::Rds(r)) => {
                Some((r.route_config_name, fetch_timeout(r.config_source.as_ref())))
            }
            _ => None,
        })
        .collect()
}

/// Each secret a listener or cluster takes over ADS, with its subscription's initial
/// fetch timeout (`sds_config`).
pub fn sds_sources(
    ts: &Option<envoy_types::pb::envoy::config::core::v3::TransportSocket>,
) -> Vec<(String, Option<Duration>)> {
    super::tls::ads_secret_configs(ts)
        .into_iter()
        .map(|s| {
            let t = fetch_timeout(s.sds_config.as_ref());
            (s.name, t)
        })
        .collect()
}

/// `sds_sources` of each of a listener's filter chains.
pub fn sds_sources_listener(l: &Listener) -> Vec<(String, Option<Duration>)> {
    chains(l)
        .flat_map(|fc| sds_sources(&fc.transport_socket))
        .collect()
}

/// An EDS cluster's subscription's initial fetch timeout (`eds_config`).
pub fn eds_fetch_timeout(c: &Cluster) -> Option<Duration> {
    fetch_timeout(
        c.eds_cluster_config
            .as_ref()
            .and_then(|e| e.eds_config.as_ref()),
    )
}

/// The secrets a listener's filter chains take over ADS.
pub fn sds_names_listener(l: &Listener) -> Vec<String> {
    chains(l)
        .flat_map(|fc| super::tls::ads_secret_names(&fc.transport_socket))
        .collect()
}

/// The secrets a cluster's transport sockets (its own and its
/// `transport_socket_matches`') take over ADS.
pub fn sds_names_cluster(c: &Cluster) -> Vec<String> {
    sds_sources_cluster(c).into_iter().map(|(n, _)| n).collect()
}

/// `sds_sources` of a cluster's transport sockets.
pub fn sds_sources_cluster(c: &Cluster) -> Vec<(String, Option<Duration>)> {
    let mut out = sds_sources(&c.transport_socket);
    for m in &c.transport_socket_matches {
        for s in sds_sources(&m.transport_socket) {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// The secrets among `names` that have not arrived; Envoy keeps their listener or
/// cluster warming (after the initial fetch timeout too: Outrigger then leaves it out
/// rather than serve handshakes that can only fail).
fn missing_secrets(names: Vec<String>, d: &Dynamic) -> Vec<(&'static str, String)> {
    names
        .into_iter()
        .filter(|n| !d.secrets.contains_key(n))
        .map(|n| (SECRET, n))
        .collect()
}

/// The EDS service name of an EDS cluster.
pub fn eds_name(c: &Cluster) -> Option<String> {
    let eds = DiscoveryType::Eds as i32;
    if c.cluster_discovery_type != Some(ClusterDiscoveryType::Type(eds)) {
        return None;
    }
    let svc = c
        .eds_cluster_config
        .as_ref()
        .map(|e| e.service_name.clone())
        .unwrap_or_default();
    Some(if svc.is_empty() { c.name.clone() } else { svc })
}

fn chains(l: &Listener) -> impl Iterator<Item = &FilterChain> {
    l.filter_chains.iter().chain(l.default_filter_chain.iter())
}

fn hcm_of(fc: &FilterChain) -> Option<(usize, HttpConnectionManager)> {
    fc.filters
        .iter()
        .enumerate()
        .find_map(|(i, f)| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(any)) if walk::type_name(&any.type_url) == HCM => {
                HttpConnectionManager::decode(any.value.as_slice())
                    .ok()
                    .map(|h| (i, h))
            }
            _ => None,
        })
}

/// Assembles a snapshot. `expired`: resources whose initial fetch timed out, as
/// `eds:NAME` (the cluster is used with no endpoints) or `rds:NAME` (an empty route
/// configuration); `dump` becomes the snapshot's `/config_dump`.
pub fn assemble(
    x: &XdsBootstrap,
    d: &Dynamic,
    expired: &BTreeSet<String>,
    dump: Value,
) -> Result<Assembled, ConfigErrors> {
    let mut b = x.bootstrap.clone();
    b.dynamic_resources = None;
    let mut sr = b.static_resources.take().unwrap_or_default();
    let mut warming = Vec::new();
    // Renames for errors: (assembled path prefix, resource label).
    let mut labels: Vec<(String, String)> = Vec::new();

    // Clusters: the static ones, then the dynamic ones (warmed, or their last active
    // version while an update warms).
    let mut used_clusters = BTreeMap::new();
    let mut clusters = Vec::new();
    for c in std::mem::take(&mut sr.clusters) {
        let secrets = missing_secrets(sds_names_cluster(&c), d);
        if !secrets.is_empty() {
            warming.extend(secrets);
            continue;
        }
        match warm_cluster(&c, d, expired) {
            Some(c) => clusters.push(c),
            None => {
                warming.push((ENDPOINT, eds_name(&c).unwrap_or_default()));
                clusters.push(without_endpoints(c));
            }
        }
    }
    for (name, c) in &d.clusters {
        let chosen = match warm_cluster(c, d, expired) {
            Some(w) => Some((w, c.clone())),
            None => {
                warming.push((ENDPOINT, eds_name(c).unwrap_or_default()));
                d.active_clusters
                    .get(name)
                    .and_then(|a| warm_cluster(a, d, expired).map(|w| (w, a.clone())))
            }
        };
        if let Some((w, original)) = chosen {
            let i = clusters.len();
            labels.push((
                format!("static_resources.clusters[{i}].load_assignment"),
                format!(
                    "cluster_load_assignment `{}`",
                    eds_name(&original).unwrap_or_default()
                ),
            ));
            labels.push((
                format!("static_resources.clusters[{i}]"),
                format!("cluster `{name}`"),
            ));
            clusters.push(w);
            used_clusters.insert(name.clone(), original);
        }
    }

    // Listeners: each with its route configurations inlined, once they have all arrived.
    let mut used_listeners = BTreeMap::new();
    let mut listeners = Vec::new();
    for l in std::mem::take(&mut sr.listeners) {
        match inline_routes(&l, d, expired, false) {
            Ok((l, rl)) => {
                push_listener(&mut listeners, &mut labels, l, None, rl);
            }
            Err(missing) => warming.extend(missing),
        }
    }
    for (name, l) in &d.listeners {
        let active = d.active_listeners.get(name);
        let chosen = match inline_routes(l, d, expired, active == Some(l)) {
            Ok(done) => Some((done, l.clone())),
            Err(missing) => {
                warming.extend(missing);
                active.and_then(|a| {
                    inline_routes(a, d, expired, true)
                        .ok()
                        .map(|r| (r, a.clone()))
                })
            }
        };
        if let Some(((inlined, rl), original)) = chosen {
            push_listener(&mut listeners, &mut labels, inlined, Some(name), rl);
            used_listeners.insert(name.clone(), original);
        }
    }
    sr.clusters = clusters;
    sr.listeners = listeners;
    b.static_resources = Some(sr);
    // CDS clusters left out while they warm: a route that validates its clusters may
    // name them (Envoy accepts a listener whose inline route does) and answers NC.
    let warming_clusters: Vec<String> = d
        .clusters
        .keys()
        .filter(|n| !used_clusters.contains_key(*n))
        .cloned()
        .collect();

    let relabel = |mut e: ConfigError| {
        let best = labels
            .iter()
            .filter(|(p, _)| {
                e.path
                    .strip_prefix(p.as_str())
                    .is_some_and(|r| r.is_empty() || r.starts_with(['.', '[']))
            })
            .max_by_key(|(p, _)| p.len());
        if let Some((p, label)) = best {
            let rest = e.path.get(p.len()..).unwrap_or("").trim_start_matches('.');
            e.path = if rest.is_empty() {
                label.clone()
            } else {
                format!("{label}: {rest}")
            };
        }
        e
    };
    let tr = bootstrap::translate(&b, &d.secrets).map_err(|e| ConfigErrors(vec![relabel(e)]))?;
    let built = super::super::build::build_raw_warming(&tr.raw, dump, &warming_clusters);
    let snapshot = built.map_err(|errors| {
        ConfigErrors(
            errors
                .into_iter()
                .map(|mut e| {
                    e.path = tr.paths.envoy_path(&e.path);
                    relabel(e)
                })
                .collect(),
        )
    })?;
    Ok(Assembled {
        snapshot,
        used_listeners,
        used_clusters,
        warming,
    })
}

/// A listener appended to the assembled list, and the labels of its parts.
fn push_listener(
    list: &mut Vec<Listener>,
    labels: &mut Vec<(String, String)>,
    l: Listener,
    dynamic: Option<&String>,
    routes: Vec<(String, String)>,
) {
    let i = list.len();
    let p = format!("static_resources.listeners[{i}]");
    if let Some(name) = dynamic {
        labels.push((p.clone(), format!("listener `{name}`")));
    }
    for (chain, rds) in routes {
        labels.push((
            format!("{p}.{chain}.route_config"),
            format!("route_configuration `{rds}`"),
        ));
    }
    list.push(l);
}

/// The listener with each `rds` replaced by its route configuration (routes to clusters
/// that are not active answer 503, as Envoy's cluster-not-found does), and where each
/// went (`filter_chains[j].filters[k].typed_config`, rds name); or the route
/// configurations and secrets still missing.
#[allow(clippy::type_complexity)]
fn inline_routes(
    l: &Listener,
    d: &Dynamic,
    expired: &BTreeSet<String>,
    accepted: bool,
) -> Result<(Listener, Vec<(String, String)>), Vec<(&'static str, String)>> {
    let mut missing: Vec<(&'static str, String)> = rds_names(l)
        .into_iter()
        .filter(|n| !d.routes.contains_key(n) && !expired.contains(&format!("rds:{n}")))
        .map(|n| (ROUTE, n))
        .collect();
    missing.extend(missing_secrets(sds_names_listener(l), d));
    if !missing.is_empty() {
        return Err(missing);
    }
    let mut l = l.clone();
    let mut placed = Vec::new();
    let all = l
        .filter_chains
        .iter_mut()
        .enumerate()
        .map(|(j, fc)| (format!("filter_chains[{j}]"), fc))
        .chain(
            l.default_filter_chain
                .iter_mut()
                .map(|fc| ("default_filter_chain".to_string(), fc)),
        );
    for (cp, fc) in all {
        let Some((k, mut h)) = hcm_of(fc) else {
            continue;
        };
        let rds = match &mut h.route_specifier {
            Some(RouteSpecifier::Rds(rds)) => rds.route_config_name.clone(),
            // An inline route table was checked against the clusters when its listener
            // was accepted, and Envoy does not check it again: a route to a cluster
            // removed since answers NC rather than refuse the update that removed it.
            Some(RouteSpecifier::RouteConfig(rc)) if accepted => {
                rc.validate_clusters = Some(BoolValue { value: false });
                String::new()
            }
            _ => continue,
        };
        if !rds.is_empty() {
            // A route configuration whose initial fetch timed out is empty (Envoy:
            // every request gets 404 NR until it arrives).
            let mut rc = d.routes.get(&rds).cloned().unwrap_or(RouteConfiguration {
                name: rds.clone(),
                ..Default::default()
            });
            // Checked against the clusters when it arrived; a CDS update since (a
            // cluster removed) does not check it again, as in Envoy: the route answers NC.
            if d.accepted_routes.get(&rds) == Some(&rc) {
                rc.validate_clusters = Some(BoolValue { value: false });
            }
            rds_validation_default(&mut rc);
            h.route_specifier = Some(RouteSpecifier::RouteConfig(rc));
            placed.push((format!("{cp}.filters[{k}].typed_config"), rds));
        }
        if let Some(f) = fc.filters.get_mut(k) {
            f.config_type = Some(filter::ConfigType::TypedConfig(Any {
                type_url: format!("type.googleapis.com/{HCM}"),
                value: h.encode_to_vec(),
            }));
        }
    }
    Ok((l, placed))
}

/// An RDS route configuration does not validate its clusters unless it says so
/// (Envoy's default for RDS): a route to a cluster that does not exist, or is still
/// warming, answers `503` with flag `NC` and its `cluster_not_found_response_code`.
fn rds_validation_default(rc: &mut RouteConfiguration) {
    if rc.validate_clusters.is_none() {
        rc.validate_clusters = Some(BoolValue { value: false });
    }
}

/// An EDS cluster as the STATIC cluster its endpoints make, once they have arrived (or
/// its initial fetch timed out); other clusters as they are.
fn warm_cluster(c: &Cluster, d: &Dynamic, expired: &BTreeSet<String>) -> Option<Cluster> {
    if !missing_secrets(sds_names_cluster(c), d).is_empty() {
        return None;
    }
    let Some(svc) = eds_name(c) else {
        return Some(c.clone());
    };
    let cla = match d.endpoints.get(&svc) {
        Some(cla) => cla.clone(),
        None if expired.contains(&format!("eds:{svc}")) => ClusterLoadAssignment::default(),
        None => return None,
    };
    let mut c = without_endpoints(c.clone());
    let mut cla = cla;
    cla.cluster_name = c.name.clone();
    // Each endpoint keeps its health_status: an unhealthy or timed-out one takes no
    // load but counts for the priority and panic arithmetic; a draining one is left
    // out (config::build), as in Envoy.
    c.load_assignment = Some(cla);
    Some(c)
}

/// An EDS cluster as a STATIC one with no endpoints (yet).
fn without_endpoints(mut c: Cluster) -> Cluster {
    if eds_name(&c).is_some() {
        c.cluster_discovery_type = Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
        c.eds_cluster_config = None;
        c.load_assignment = None;
    }
    c
}

/// Proto3 JSON of a typed message (for `/config_dump`).
pub fn to_json<M: prost::Name + Message>(m: &M) -> Value {
    let Ok(pool) = super::pool() else {
        return Value::Null;
    };
    let Some(desc) = pool.get_message_by_name(&M::full_name()) else {
        return Value::Null;
    };
    let Ok(dm) = DynamicMessage::decode(desc, m.encode_to_vec().as_slice()) else {
        return Value::Null;
    };
    let opts = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false);
    dm.serialize_with_options(serde_json::value::Serializer, &opts)
        .unwrap_or(Value::Null)
}

/// The static part of `/config_dump` for a bootstrap.
pub fn static_dump(x: &XdsBootstrap) -> Value {
    bootstrap::config_dump(&x.json)
}

/// Encodes a resource written in proto3 JSON (tools and tests build resources this way).
pub fn encode_json(type_name: &str, json: &Value) -> Result<Vec<u8>, String> {
    let pool = super::pool()?;
    let desc = pool
        .get_message_by_name(type_name)
        .ok_or_else(|| format!("unknown type `{type_name}`"))?;
    let m = super::msg_from(desc, json).map_err(|e| e.to_string())?;
    Ok(m.encode_to_vec())
}

#[cfg(test)]
#[path = "xds_tests.rs"]
mod tests;
