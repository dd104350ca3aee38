//! Unit tests of `observe::stats` (a file of their own for size).

use super::*;

#[test]
fn histogram_and_merge() {
    let l = ListenerStats::default();
    l.request_done(200, ResponseFlag::None, 100);
    l.request_done(503, ResponseFlag::NoHealthyUpstream, 2_000_000);
    let mut a = StatsReport {
        listeners: vec![l.report("x")],
        clusters: vec![],
        ..Default::default()
    };
    let b = StatsReport {
        listeners: vec![l.report("x")],
        clusters: vec![],
        ..Default::default()
    };
    a.merge(b);
    let r = &a.listeners[0];
    assert_eq!(r.rq_total, 4);
    assert_eq!(r.rq_class, vec![0, 2, 0, 0, 2]);
    assert_eq!(r.rq_time.buckets[0], 2);
    assert_eq!(r.rq_time.buckets[12], 2);
    assert!(r.rq_flags.contains(&("UH".to_string(), 2)));
}

#[test]
fn upstream_time_counts_requests_that_got_a_response_head() {
    use super::super::phases::{Times, PARSE, WAIT};
    use std::time::Duration;
    let h = UpstreamTime::default();
    let mut t = Times::default();
    h.record(Duration::from_millis(7), &t); // a local reply: no upstream phases
    assert_eq!(h.report().buckets.iter().sum::<u64>(), 0);
    t.0[PARSE] = Some(Duration::from_millis(1));
    t.0[WAIT] = Some(Duration::from_millis(5));
    h.record(Duration::from_millis(7), &t);
    let r = h.report();
    assert_eq!(r.sum_us, 6_000); // 7 ms less the parse
    assert_eq!(r.buckets[3], 1); // 5..10 ms: Envoy's buckets
}

#[test]
fn configured_bounds_replace_the_defaults_and_merge_only_alike() {
    let h = UpstreamTime::default();
    h.0.record(700);
    let bounds = Arc::new(Bounds::from_ms(&[1.0, 3.0]).unwrap());
    h.0.configure(&bounds);
    // New bounds: the counts start afresh.
    assert_eq!(h.report().buckets, vec![0, 0, 0]);
    for us in [900, 1_000, 2_000, 3_001] {
        h.0.record(us);
    }
    let r = h.report();
    assert_eq!(r.buckets, vec![2, 1, 1]);
    assert_eq!(r.bounds.as_deref().map(Bounds::ms), Some(&[1.0, 3.0][..]));
    // The same bounds again keep the counts.
    h.0.configure(&Arc::new(Bounds::from_ms(&[3.0, 1.0]).unwrap()));
    assert_eq!(h.report().buckets, vec![2, 1, 1]);
    let mut merged = r.clone();
    merged.merge(&r);
    assert_eq!(merged.buckets, vec![4, 2, 2]);
    merged.merge(&UpstreamTime::default().report());
    assert_eq!(merged.buckets, vec![4, 2, 2]);
}

#[test]
fn phase_histograms_count_entered_phases_and_merge() {
    use super::super::phases::{Times, PARSE, QUEUE, WAIT};
    use std::time::Duration;
    let s = PhaseStats::default();
    assert!(s.report().is_empty());
    let mut t = Times::default();
    t.0[PARSE] = Some(Duration::from_micros(12));
    t.0[WAIT] = Some(Duration::from_micros(1000));
    s.record(&t);
    let mut merged = s.report();
    merge_phases(&mut merged, s.report());
    assert_eq!(merged[PARSE].buckets[2], 2); // 12us: in the 25us bucket
    assert_eq!(merged[WAIT].sum_us, 2000);
    assert_eq!(merged[QUEUE].buckets.iter().sum::<u64>(), 0);
}
