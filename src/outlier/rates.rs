//! The interval detectors (Envoy's `processSuccessRateEjections`): success rate
//! (endpoints whose success rate is below the mean minus `success_rate_stdev_factor`
//! standard deviations) and failure percentage (endpoints failing at least
//! `failure_percentage_threshold` percent), over the requests of the interval that
//! just ended, for external errors (HTTP statuses) and, with
//! `split_external_local_origin_errors`, locally originated ones.
//!
//! The counts are each worker's cumulative per-endpoint `Cell`s, gathered once per
//! interval through the stats path; an interval's requests are the difference from
//! what the previous interval saw.

use crate::config::outlier::OutlierDetection;
use crate::observe::stats::ClusterReport;

use super::stats::Kind;
use super::ClusterDetector;

/// The cumulative counts an endpoint had at the last interval.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Seen([u64; 4]);

/// Whether the cluster has enough endpoints for either detector (Envoy's early exit):
/// only then are the workers' counts gathered.
pub(super) fn enabled_for(cfg: &OutlierDetection, hosts: usize) -> bool {
    hosts
        >= cfg
            .success_rate_minimum_hosts
            .min(cfg.failure_percentage_minimum_hosts) as usize
}

/// One endpoint's interval: (success rate in percent, request volume).
type Rate = Option<(f64, u64)>;

/// Takes the interval's counts of every endpoint from `report` and returns the
/// endpoints the detectors find, in Envoy's order (success rate, then failure
/// percentage; external, then local origin).
pub(super) fn detect(
    cd: &mut ClusterDetector,
    cfg: &OutlierDetection,
    report: Option<&ClusterReport>,
) -> Vec<(usize, Kind)> {
    let Some(report) = report else {
        return Vec::new();
    };
    let mut external: Vec<Rate> = Vec::with_capacity(cd.hosts.len());
    let mut local: Vec<Rate> = Vec::with_capacity(cd.hosts.len());
    for (e, h) in cd.cluster.endpoints.iter().zip(cd.hosts.iter_mut()) {
        let addr = e.addr.to_string();
        let now = report
            .endpoints
            .iter()
            .find(|r| r.address == addr)
            .map_or(h.seen.0, |r| r.outlier_rates);
        let d: Vec<u64> = now
            .iter()
            .zip(h.seen.0)
            .map(|(a, b)| a.saturating_sub(b))
            .collect();
        h.seen = Seen(now);
        let rate = |total: u64, ok: u64| -> Rate {
            (!h.ejected && total > 0).then(|| (ok as f64 * 100.0 / total as f64, total))
        };
        let get = |i: usize| d.get(i).copied().unwrap_or(0);
        external.push(rate(get(0), get(1)));
        local.push(rate(get(2), get(3)));
    }
    let hosts = cd.hosts.len();
    let mut found = Vec::new();
    for (rates, sr, fp) in [
        (&external, Kind::SuccessRate, Kind::FailurePercentage),
        (
            &local,
            Kind::SuccessRateLocalOrigin,
            Kind::FailurePercentageLocalOrigin,
        ),
    ] {
        found.extend(find(cfg, hosts, rates, sr, fp));
    }
    found
}

/// Envoy's `processSuccessRateEjections` for one kind of error.
fn find(
    cfg: &OutlierDetection,
    hosts: usize,
    rates: &[Rate],
    sr: Kind,
    fp: Kind,
) -> Vec<(usize, Kind)> {
    let sr_min = cfg.success_rate_minimum_hosts as usize;
    let fp_min = cfg.failure_percentage_minimum_hosts as usize;
    if hosts < sr_min && hosts < fp_min {
        return Vec::new();
    }
    let sr_volume = u64::from(cfg.success_rate_request_volume);
    let fp_volume = u64::from(cfg.failure_percentage_request_volume);
    let valid = |volume: u64| -> Vec<(usize, f64)> {
        rates
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.filter(|(_, v)| *v >= volume).map(|(s, _)| (i, s)))
            .collect()
    };
    let mut found = Vec::new();
    let sr_hosts = valid(sr_volume);
    if !sr_hosts.is_empty() && sr_hosts.len() >= sr_min {
        let factor = f64::from(cfg.success_rate_stdev_factor) / 1000.0;
        let threshold = ejection_threshold(&sr_hosts, factor);
        found.extend(
            sr_hosts
                .iter()
                .filter(|(_, s)| *s < threshold)
                .map(|(i, _)| (*i, sr)),
        );
    }
    let fp_hosts = valid(fp_volume);
    if !fp_hosts.is_empty() && fp_hosts.len() >= fp_min {
        let threshold = f64::from(cfg.failure_percentage_threshold);
        found.extend(
            fp_hosts
                .iter()
                .filter(|(_, s)| 100.0 - *s >= threshold)
                .map(|(i, _)| (*i, fp)),
        );
    }
    found
}

/// The mean minus `factor` standard deviations (population) of the success rates.
fn ejection_threshold(hosts: &[(usize, f64)], factor: f64) -> f64 {
    let n = hosts.len() as f64;
    let mean = hosts.iter().map(|(_, s)| s).sum::<f64>() / n;
    let variance = hosts.iter().map(|(_, s)| (s - mean).powi(2)).sum::<f64>() / n;
    mean - factor * variance.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoys_worked_example_and_failure_percentage() {
        // Envoy's comment: {50, 100, 100, 100, 100}: mean 90, stdev 20, threshold 52
        // with a factor of 1.9.
        let hosts: Vec<(usize, f64)> = [50.0, 100.0, 100.0, 100.0, 100.0]
            .into_iter()
            .enumerate()
            .collect();
        assert!((ejection_threshold(&hosts, 1.9) - 52.0).abs() < 1e-9);
        let cfg = OutlierDetection {
            success_rate_request_volume: 10,
            failure_percentage_request_volume: 10,
            ..Default::default()
        };
        let rates: Vec<Rate> = [50.0, 100.0, 100.0, 100.0, 100.0]
            .into_iter()
            .map(|s| Some((s, 20)))
            .collect();
        let f = find(&cfg, 5, &rates, Kind::SuccessRate, Kind::FailurePercentage);
        assert_eq!(f, vec![(0, Kind::SuccessRate)]);
        // 90% failing is over the 85% threshold.
        let mut rates = rates;
        rates[0] = Some((10.0, 20));
        let f = find(&cfg, 5, &rates, Kind::SuccessRate, Kind::FailurePercentage);
        assert_eq!(
            f,
            vec![(0, Kind::SuccessRate), (0, Kind::FailurePercentage)]
        );
        // Too little volume: no verdict.
        rates[0] = Some((10.0, 5));
        let f = find(&cfg, 5, &rates, Kind::SuccessRate, Kind::FailurePercentage);
        assert!(f.is_empty());
        // Too few hosts.
        let f = find(
            &cfg,
            4,
            &rates[1..],
            Kind::SuccessRate,
            Kind::FailurePercentage,
        );
        assert!(f.is_empty());
    }
}
