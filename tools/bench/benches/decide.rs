//! CPU cost of the autoscaler's decision: `decide` over 1,000 synthetic
//! functions with full 60 s histories (one sample a second), as the loop
//! runs it every 2 s.
//!
//! Run: `cargo bench -p siesta-bench --bench decide`

use std::time::{Duration, Instant};

use siesta_api::ScaleSpec;
use siesta_controller::autoscaler::decision::{History, Replicas, Sample, decide};

fn main() {
    const FUNCTIONS: usize = 1000;
    const ROUNDS: u32 = 200;
    let t0 = Instant::now();
    let spec = ScaleSpec::default();
    let mut histories: Vec<History> = (0..FUNCTIONS).map(|_| History::new()).collect();
    let mut now = t0;
    let add_second = |histories: &mut [History], now: Instant| {
        for (i, h) in histories.iter_mut().enumerate() {
            let load = (i % 50) as f64;
            h.record(
                Sample {
                    at: now,
                    dt: Duration::from_secs(1),
                    rps: load * 3.0,
                    concurrency: load,
                    requests: load * 3.0,
                },
                load,
                0.0,
            );
        }
    };
    for _ in 0..60 {
        now += Duration::from_secs(1);
        add_second(&mut histories, now);
    }
    let mut total = Duration::ZERO;
    let mut checksum = 0i64;
    for _ in 0..ROUNDS {
        for _ in 0..2 {
            now += Duration::from_secs(1);
            add_second(&mut histories, now);
        }
        let started = Instant::now();
        for (i, h) in histories.iter_mut().enumerate() {
            let current = ((i % 50) / 10) as i32 + 1;
            let d = decide(
                h,
                &spec,
                Replicas {
                    current,
                    ready: current,
                },
                None,
                now,
            );
            checksum += i64::from(d.desired);
        }
        total += started.elapsed();
    }
    let per_round = total / ROUNDS;
    println!(
        "decide over {FUNCTIONS} functions (60 s stable window, 1 sample/s): {:.3} ms per round = {:.0} ns per decision; at one round per 2 s that is {:.3}% of one core (checksum {checksum})",
        per_round.as_secs_f64() * 1e3,
        per_round.as_nanos() as f64 / FUNCTIONS as f64,
        per_round.as_secs_f64() / 2.0 * 100.0
    );
}
