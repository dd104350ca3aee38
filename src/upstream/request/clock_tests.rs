//! Tests of the request's clocks (`clock.rs`).

use super::*;

/// `run` and `run_timed` store the work once (plus the clock's own few bytes): the
/// proxying futures they wrap are kilobytes, and an HTTP/2 stream's whole future is
/// copied when its task is spawned.
#[test]
fn the_raced_work_is_stored_once() {
    let p = Progress::new(Duration::ZERO, Duration::ZERO);
    let work = || {
        let big = [1u8; 4096];
        async move {
            std::future::ready(()).await;
            big.iter().map(|&b| u64::from(b)).sum::<u64>()
        }
    };
    let inner = std::mem::size_of_val(&work());
    let run = p.run(work());
    assert!(
        std::mem::size_of_val(&run) <= inner + 64,
        "run: {}",
        std::mem::size_of_val(&run)
    );
    assert_eq!(futures_lite::future::block_on(run), Ok(4096));
    let timed = p.run_timed(work());
    let size = std::mem::size_of_val(&timed);
    // The timer's sleep future is part of run_timed's own state (a few hundred bytes
    // on glommio, nearly a kilobyte on monoio); a second copy of the work would add
    // 4 KiB.
    let sleep = std::mem::size_of_val(&async { crate::rt::sleep(Duration::ZERO).await });
    assert!(
        size <= inner + sleep + 256,
        "run_timed: {size} (sleep {sleep})"
    );
}

#[test]
fn the_per_try_idle_clock_runs_once_armed_and_the_request_complete() {
    let p = Progress::new(Duration::ZERO, Duration::from_secs(300));
    let d = Duration::from_millis(50);
    p.arm_per_try_idle(d);
    let now = Instant::now();
    assert_eq!(
        p.check(now + d * 2).ok().flatten(),
        Some(p.last_activity() + Duration::from_secs(300)),
        "not before the request is complete: only the stream idle clock"
    );
    p.request_done();
    let from = p.last_activity();
    assert_eq!(
        p.next_expiry(),
        Some(from + d),
        "the shorter idle clock first"
    );
    assert_eq!(p.check(from + d), Err(Expiry::PerTryIdle));
    assert_eq!(p.fired_clock(), Some(Expiry::PerTryIdle));
    let q = Progress::new(Duration::ZERO, Duration::from_millis(20));
    q.request_done();
    q.arm_per_try_idle(d);
    assert_eq!(
        q.next_expiry(),
        Some(q.last_activity() + Duration::from_millis(20))
    );
    assert_eq!(q.check(q.last_activity() + d), Err(Expiry::Idle));
}

#[test]
fn the_route_clock_starts_when_the_request_is_complete() {
    let p = Progress::new(Duration::from_millis(50), Duration::ZERO);
    assert_eq!(p.deadline(), None);
    assert_eq!(p.next_expiry(), None);
    let now = Instant::now();
    // Not started: looked at again soon, never fired.
    assert!(matches!(
        p.check(now + Duration::from_secs(60)),
        Ok(Some(_))
    ));
    p.request_done();
    let d = p.deadline().expect("started");
    assert!(d >= now + Duration::from_millis(50));
    // A second completion does not move it.
    p.request_done();
    assert_eq!(p.deadline(), Some(d));
    assert_eq!(p.check(d), Err(Expiry::Route));
    assert_eq!(p.expired(), Some(Expiry::Route));
}

#[test]
fn a_route_clock_not_started_is_looked_at_no_sooner_than_its_timeout() {
    let p = Progress::new(Duration::from_secs(15), Duration::ZERO);
    let now = Instant::now();
    // The request is still arriving: the deadline cannot be before now + 15 s.
    assert_eq!(p.check(now), Ok(Some(now + Duration::from_secs(15))));
    p.request_done();
    let d = p.deadline().expect("started");
    assert!(d >= now + Duration::from_secs(15));
    assert_eq!(p.check(now), Ok(Some(d)));
}

#[test]
fn a_streaming_tries_bound_is_a_clock_of_its_own() {
    let p = Progress::new(Duration::from_secs(15), Duration::ZERO);
    p.request_done();
    let route = p.deadline().expect("started");
    let at = Instant::now() + Duration::from_millis(300);
    p.streaming_until(Some(at));
    assert!(p.has_clocks());
    assert_eq!(p.next_expiry(), Some(at), "before the route clock");
    assert_eq!(p.check(at - Duration::from_millis(1)), Ok(Some(at)));
    assert_eq!(p.check(at), Err(Expiry::UpstreamDuration));
    assert_eq!(
        p.failure(Expiry::UpstreamDuration),
        crate::http::failure::Failure::UpstreamMaxDuration {
            request_complete: true
        }
    );
    // The earlier clock is the one that ran out.
    let q = Progress::new(Duration::from_millis(100), Duration::ZERO);
    q.request_done();
    q.streaming_until(q.deadline().map(|d| d + Duration::from_millis(1)));
    assert_eq!(q.check(route), Err(Expiry::Route));
}

#[test]
fn the_idle_clock_follows_the_last_byte() {
    let p = Progress::new(Duration::ZERO, Duration::from_secs(60));
    let at = p.next_expiry().expect("idle clock runs");
    assert!(p.expired().is_none());
    assert_eq!(p.check(at), Err(Expiry::Idle));
    let q = Progress::new(Duration::ZERO, Duration::ZERO);
    assert!(!q.has_clocks());
    assert_eq!(q.check(Instant::now()), Ok(None));
    assert_eq!(q.time_left(), None);
}
