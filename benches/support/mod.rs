//! A minimal benchmark harness: warm up, then time batches and report the median
//! nanoseconds per iteration. Kept in-tree so benches build fast on small machines.

use std::hint::black_box;
use std::time::Instant;

/// Runs `f` in batches for about a second and prints the median ns/iteration.
pub fn bench<T>(name: &str, mut f: impl FnMut() -> T) {
    let quick = std::env::args().any(|a| a == "--quick");
    // Size a batch to take roughly 10 ms.
    let mut batch = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            black_box(f());
        }
        if t.elapsed().as_millis() >= 10 || batch > 1 << 30 {
            break;
        }
        batch *= 2;
    }
    let rounds = if quick { 5 } else { 50 };
    let mut per_iter: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                black_box(f());
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    per_iter.sort_by(|a, b| a.total_cmp(b));
    let median = per_iter[per_iter.len() / 2];
    let p90 = per_iter[per_iter.len() * 9 / 10];
    println!("{name:<44} median {median:>9.1} ns/iter   p90 {p90:>9.1} ns/iter");
}
