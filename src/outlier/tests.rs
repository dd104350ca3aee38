//! The detector's ejection times, back-off and unejection, driven with explicit
//! instants on a local executor (no timer runs: `tick` is called by hand).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::rt::channel::local::{self, LocalReceiver};

use super::{Detector, Event, Update};
use crate::config::outlier::{Consecutive, Outlier, OutlierDetection};
use crate::config::{Cluster, Endpoint, Snapshot};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn snapshot(cfg: OutlierDetection) -> Snapshot {
    let endpoints: Vec<Endpoint> = [1001, 1002]
        .into_iter()
        .map(|p| Endpoint {
            addr: addr(p),
            weight: 1,
            hostname: None,
            priority: 0,
            locality: 0,
            health: crate::config::EndpointHealth::Healthy,
        })
        .collect();
    let cluster = Cluster {
        name: "c".into(),
        connect_timeout: Duration::from_secs(1),
        lb_policy: crate::config::LbPolicy::RoundRobin,
        pool: Default::default(),
        protocol: crate::config::UpstreamProtocol::Http1,
        h1_trailers: true,
        tls: None,
        endpoint_tls: Vec::new(),
        health_checks: Vec::new(),
        healthy_panic_threshold: 50,
        localities: crate::config::Localities::default(),
        slow_start: None,
        active_request_bias: 1.0,
        peak_ewma: Default::default(),
        kind: crate::config::ClusterKind::Static,
        source_address: None,
        original_dst_header: None,
        dns: None,
        breakers: Arc::default(),
        outlier: Some(Arc::new(Outlier::new(cfg, endpoints.len()))),
        endpoints,
    };
    Snapshot {
        version: 1,
        admin: None,
        concurrency: None,
        drain_timeout: Duration::from_secs(1),
        spin_before_park: Duration::ZERO,
        max_connections: None,
        listeners: Vec::new(),
        route_tables: Default::default(),
        clusters: vec![Arc::new(cluster)],
        counters: Vec::new(),
        histogram_buckets: Vec::new(),
        route_stats: Vec::new(),
        dump: serde_json::Value::Null,
    }
}

fn event() -> Event {
    Event {
        cluster: "c".into(),
        addr: addr(1001),
        kind: Consecutive::FiveXx,
    }
}

/// The updates sent so far: `true` for an ejection.
fn drain(rx: &LocalReceiver<Update>) -> Vec<bool> {
    let mut out = Vec::new();
    while let Some(u) =
        futures_lite::future::block_on(futures_lite::future::poll_once(rx.recv())).flatten()
    {
        out.push(u.ejected);
    }
    out
}

#[test]
fn ejections_last_longer_each_time_up_to_the_maximum_and_the_backoff_decays() {
    crate::rt::executor::block_on(async {
        let (tx, rx) = local::new_unbounded();
        let d = Detector::new(tx);
        d.apply(&snapshot(OutlierDetection {
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            interval: Duration::from_secs(1),
            max_ejection_percent: 50,
            ..Default::default()
        }));
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // A clock of our own: ticks come at least an interval apart, as the timer's do.
        let mut t = Instant::now() + s(1);
        // Each ejection lasts base x back-off, capped: 10s, 20s, then 25s.
        for (n, lasts) in [(1, 10), (2, 20), (3, 25), (4, 25)] {
            d.on_event_at(event(), t);
            assert_eq!(drain(&rx), vec![true], "ejection {n}");
            d.tick(t + s(lasts) - ms(500), None);
            assert_eq!(drain(&rx), Vec::<bool>::new(), "ejection {n} still on");
            d.tick(t + s(lasts) + ms(500), None);
            assert_eq!(drain(&rx), vec![false], "ejection {n} over");
            let r = d.report("c").unwrap();
            assert_eq!(r.ejections_enforced_consecutive_5xx, n);
            assert_eq!(r.ejections_active, 0);
            t += s(lasts) + ms(1600);
        }
        // An event while ejected changes nothing; one for an unknown endpoint either.
        d.on_event_at(event(), t);
        d.on_event_at(event(), t);
        d.on_event_at(
            Event {
                addr: addr(9),
                ..event()
            },
            t,
        );
        assert_eq!(drain(&rx), vec![true]);
        let backoff = |d: &Detector| d.0.clusters.borrow()["c"].hosts[0].backoff;
        // The back-off stops growing once base x b reaches max + base.
        assert_eq!(backoff(&d), 4);
        d.tick(t + s(26), None);
        assert_eq!(drain(&rx), vec![false]);
        // Back in: one step down per interval spent in.
        for (k, want) in [(27, 3), (28, 2), (29, 1), (30, 0), (31, 0)] {
            d.tick(t + s(k), None);
            assert_eq!(backoff(&d), want, "at {k}s");
        }
        // Decayed: the next ejection lasts base again.
        t += s(32);
        d.on_event_at(event(), t);
        d.tick(t + s(10) + ms(500), None);
        assert_eq!(drain(&rx), vec![true, false]);
        // A passing health check brings it back at once.
        d.on_event_at(event(), t + s(12));
        d.on_check_passed("c", addr(1001));
        assert_eq!(drain(&rx), vec![true, false]);
    });
}

#[test]
fn a_changed_setting_brings_ejected_endpoints_back_and_a_same_one_keeps_them() {
    crate::rt::executor::block_on(async {
        let (tx, rx) = local::new_unbounded();
        let d = Detector::new(tx);
        let cfg = OutlierDetection {
            max_ejection_percent: 50,
            ..Default::default()
        };
        d.apply(&snapshot(cfg.clone()));
        d.on_event(event());
        assert_eq!(drain(&rx), vec![true]);
        d.apply(&snapshot(cfg.clone()));
        assert_eq!(drain(&rx), Vec::<bool>::new());
        assert_eq!(d.report("c").unwrap().ejections_active, 1);
        d.apply(&snapshot(OutlierDetection {
            consecutive_5xx: 7,
            ..cfg
        }));
        assert_eq!(drain(&rx), vec![false]);
        assert_eq!(d.report("c").unwrap().ejections_active, 0);
        // The counts are kept by cluster name.
        assert_eq!(d.report("c").unwrap().ejections_enforced_total, 1);
    });
}
