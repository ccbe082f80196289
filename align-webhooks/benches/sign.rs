#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Signing a message vs a bare `ring::hmac::sign` over the same bytes.
//!
//! The two are measured in pairs of blocks of 64 calls, back to back (one block of each, in
//! alternating order), so both sides of a pair see the same machine load. Criterion reports
//! each side on its own, but it measures the sides one after the other, seconds apart, and on
//! a shared machine the load moves more than the effect between them. So every pair's two
//! timings are kept as well, and after each group the bench prints the median of the per-pair
//! ratios (`paired:` lines): the figure to compare with the target.

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use align_webhooks::SigningSecret;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ring::hmac;

const BLOCK: u64 = 64;

/// Per-pair timings of (baseline block, our block).
type Pairs = RefCell<Vec<(Duration, Duration)>>;

fn block(n: u64, f: &mut impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed()
}

/// Runs `iters` calls of each side in paired blocks, records every pair, and returns the
/// total time of the side criterion is measuring (`ours_timed`: ours, else the baseline).
fn paired(
    iters: u64,
    base: &mut impl FnMut(),
    ours: &mut impl FnMut(),
    ours_timed: bool,
    pairs: &Pairs,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    let mut flip = false;
    while done < iters {
        let n = BLOCK.min(iters - done);
        // Alternate which side goes first, so neither always runs on a cache the other left.
        let (b, o) = if flip {
            let o = block(n, ours);
            (block(n, base), o)
        } else {
            let b = block(n, base);
            (b, block(n, ours))
        };
        flip = !flip;
        if n == BLOCK {
            pairs.borrow_mut().push((b, o));
        }
        total += if ours_timed { o } else { b };
        done += n;
    }
    total
}

/// Median and quartiles of baseline ÷ ours over the recorded pairs, in percent.
fn report(group: &str, name: &str, pairs: &Pairs) {
    let per_call = |d: Duration| d.as_secs_f64() * 1e9 / BLOCK as f64;
    let mut ratios = Vec::new();
    let mut base = Vec::new();
    let mut ours = Vec::new();
    for (b, o) in pairs.borrow().iter() {
        ratios.push(b.as_secs_f64() / o.as_secs_f64() * 100.0);
        base.push(per_call(*b));
        ours.push(per_call(*o));
    }
    if ratios.is_empty() {
        return;
    }
    let q = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    println!(
        "{group}/{name} paired: {:.1} % of ring::hmac (median of {} block pairs; quartiles \
         {:.1}–{:.1} %; medians {:.0} ns vs {:.0} ns a call)",
        q(&mut ratios, 0.5),
        ratios.len(),
        q(&mut ratios, 0.25),
        q(&mut ratios, 0.75),
        q(&mut ours, 0.5),
        q(&mut base, 0.5),
    );
    pairs.borrow_mut().clear();
}

fn bench(c: &mut Criterion) {
    // The Standard Webhooks specification's published example secret (a fixture, not a key).
    let secret =
        SigningSecret::parse(concat!("whsec_", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
    let raw = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap()
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, &raw);
    let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    let ts = 1_614_265_330_i64;
    let pairs = Pairs::default();
    for size in [64_usize, 1024, 16 * 1024] {
        let body = vec![b'x'; size];
        let signed: Vec<u8> =
            [id.as_bytes(), b".", ts.to_string().as_bytes(), b".", &body].concat();
        let mut ring_sign = || {
            black_box(hmac::sign(black_box(&key), black_box(&signed)));
        };
        let mut ours = || {
            black_box(secret.sign(black_box(id), black_box(ts), black_box(&body)));
        };
        // The HMAC alone, without formatting the `v1,<base64>` header value.
        let mut ours_tag = || {
            black_box(secret.tag(black_box(id), black_box(ts), black_box(&body)));
        };
        let group = format!("sign_{size}B");
        let mut g = c.benchmark_group(&group);
        g.throughput(Throughput::Bytes(signed.len() as u64));
        g.bench_function("ring_hmac", |b| {
            b.iter_custom(|iters| paired(iters, &mut ring_sign, &mut ours, false, &pairs));
        });
        g.bench_function("align_webhooks_v1", |b| {
            b.iter_custom(|iters| paired(iters, &mut ring_sign, &mut ours, true, &pairs));
        });
        report(&group, "align_webhooks_v1", &pairs);
        g.bench_function("align_webhooks_v1_tag_only", |b| {
            b.iter_custom(|iters| paired(iters, &mut ring_sign, &mut ours_tag, true, &pairs));
        });
        report(&group, "align_webhooks_v1_tag_only", &pairs);
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
