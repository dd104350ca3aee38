//! A minimal benchmark harness: warm up, then time batches and report the median
//! nanoseconds per iteration. Kept in-tree so benches build fast on small machines.
//!
//! Time is the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: on a shared
//! machine the bench thread is descheduled now and then, and wall time would count that.

use std::hint::black_box;

/// This thread's CPU time in nanoseconds.
fn cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `f` in batches for about a second of CPU time and prints the median
/// ns/iteration.
pub fn bench<T>(name: &str, mut f: impl FnMut() -> T) {
    let quick = std::env::args().any(|a| a == "--quick");
    // Size a batch to take roughly 10 ms.
    let mut batch = 1u64;
    loop {
        let t = cpu_ns();
        for _ in 0..batch {
            black_box(f());
        }
        if cpu_ns() - t >= 10_000_000 || batch > 1 << 30 {
            break;
        }
        batch *= 2;
    }
    let rounds = if quick { 5 } else { 50 };
    let mut per_iter: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = cpu_ns();
            for _ in 0..batch {
                black_box(f());
            }
            (cpu_ns() - t) as f64 / batch as f64
        })
        .collect();
    per_iter.sort_by(|a, b| a.total_cmp(b));
    let median = per_iter[per_iter.len() / 2];
    let p90 = per_iter[per_iter.len() * 9 / 10];
    println!("{name:<52} median {median:>9.1} ns/iter   p90 {p90:>9.1} ns/iter");
}
