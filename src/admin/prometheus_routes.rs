//! The per-route stats (Envoy's route `stat_prefix`, `vhost.<vhost>.route.<prefix>.*`)
//! in Prometheus, labelled the way Envoy's tag extraction labels them
//! (`envoy_vhost_route_upstream_rq_total{envoy_virtual_host, envoy_route}`):
//! `outrigger_route_<stat>_total{virtual_host, route}`, the per-status counters as
//! `outrigger_route_upstream_rq_code_total{.., code}` and the classes as
//! `outrigger_route_upstream_rq_xx_total{.., class}` (the clusters' shapes), and the
//! `upstream_rq_time` histogram as `outrigger_route_upstream_rq_time_seconds`.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::prom_text::{esc, family, le_seconds};
use crate::observe::stats::{HistogramReport, UPSTREAM_RQ_TIME_BUCKETS_US};

/// `vhost.<vhost>.route.<prefix>.<stat>` split into its parts (the last `.route.`
/// ends the virtual host's name; a stat name has no dot).
pub(super) fn split(name: &str) -> Option<(&str, &str, &str)> {
    let rest = name.strip_prefix("vhost.")?;
    let at = rest.rfind(".route.")?;
    let (vhost, tail) = (&rest[..at], &rest[at + ".route.".len()..]);
    let (route, stat) = tail.rsplit_once('.')?;
    (!vhost.is_empty() && !route.is_empty()).then_some((vhost, route, stat))
}

/// The family and extra label of a route counter.
fn family_of(stat: &str) -> (String, Option<(&'static str, String)>) {
    let code = stat.strip_prefix("upstream_rq_").filter(|c| c.len() == 3);
    match code {
        Some(c) if c.bytes().all(|b| b.is_ascii_digit()) => (
            "outrigger_route_upstream_rq_code_total".into(),
            Some(("code", c.to_string())),
        ),
        Some(c) if c.ends_with("xx") && c.as_bytes()[0].is_ascii_digit() => (
            "outrigger_route_upstream_rq_xx_total".into(),
            Some(("class", c.to_string())),
        ),
        _ => (
            format!("outrigger_route_{}", stat.trim_end_matches("_total")) + "_total",
            None,
        ),
    }
}

/// The route counters among `counters` (the others are rendered elsewhere).
pub(super) fn counters(out: &mut String, counters: &BTreeMap<String, u64>) {
    let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, n) in counters {
        let Some((vhost, route, stat)) = split(name) else {
            continue;
        };
        let (fam, extra) = family_of(stat);
        let extra = extra.map_or(String::new(), |(k, v)| format!(",{k}=\"{v}\""));
        families.entry(fam.clone()).or_default().push(format!(
            "{fam}{{virtual_host=\"{}\",route=\"{}\"{extra}}} {n}",
            esc(vhost),
            esc(route)
        ));
    }
    for (fam, lines) in families {
        family(
            out,
            &fam,
            "counter",
            "Per-route counter (Envoy's vhost.<virtual_host>.route.<stat_prefix>.*).",
        );
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
}

/// A route's `upstream_rq_time` histogram, once it has a sample.
pub(super) fn rq_time(out: &mut String, hs: &[(String, HistogramReport)]) {
    const NAME: &str = "outrigger_route_upstream_rq_time_seconds";
    let mut family_written = false;
    for (name, h) in hs {
        let Some((vhost, route, "upstream_rq_time")) = split(name) else {
            continue;
        };
        if h.buckets.iter().sum::<u64>() == 0 {
            continue;
        }
        if !family_written {
            family(
                out,
                NAME,
                "histogram",
                "Upstream request time of a route with a stat_prefix (Envoy's vhost.<vhost>.route.<stat_prefix>.upstream_rq_time).",
            );
            family_written = true;
        }
        let labels = format!("virtual_host=\"{}\",route=\"{}\"", esc(vhost), esc(route));
        let mut cum = 0;
        for (i, n) in h.buckets.iter().enumerate() {
            cum += n;
            let le = le_seconds(h, &UPSTREAM_RQ_TIME_BUCKETS_US, i);
            let _ = writeln!(out, "{NAME}_bucket{{{labels},le=\"{le}\"}} {cum}");
        }
        let sum = h.sum_us as f64 / 1e6;
        let _ = writeln!(out, "{NAME}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{NAME}_count{{{labels}}} {cum}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert_eq!(
            split("vhost.a.b:80.route.r.upstream_rq_total"),
            Some(("a.b:80", "r", "upstream_rq_total"))
        );
        assert_eq!(split("http.x.rbac.allowed"), None);
        let mut c = BTreeMap::new();
        c.insert("vhost.all.route.ok.upstream_rq_total".to_string(), 4);
        c.insert("vhost.all.route.ok.upstream_rq_200".to_string(), 3);
        c.insert("vhost.all.route.ok.upstream_rq_2xx".to_string(), 3);
        c.insert("vhost.all.route.ok.upstream_rq_retry".to_string(), 0);
        c.insert("http.web.rbac.allowed".to_string(), 9);
        let mut out = String::new();
        counters(&mut out, &c);
        for want in [
            "outrigger_route_upstream_rq_total{virtual_host=\"all\",route=\"ok\"} 4",
            "outrigger_route_upstream_rq_code_total{virtual_host=\"all\",route=\"ok\",code=\"200\"} 3",
            "outrigger_route_upstream_rq_xx_total{virtual_host=\"all\",route=\"ok\",class=\"2xx\"} 3",
            "outrigger_route_upstream_rq_retry_total{virtual_host=\"all\",route=\"ok\"} 0",
        ] {
            assert!(out.contains(want), "{want}\n{out}");
        }
        assert!(!out.contains("rbac"), "{out}");
        assert_eq!(out.matches("# TYPE").count(), 4, "{out}");
    }
}
