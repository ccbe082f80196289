#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Signing a message vs a bare `ring::hmac::sign` over the same bytes.
//!
//! The two are measured interleaved, in blocks of 64 calls (a block of one, untimed, then a
//! block of the other, timed), so that both see the same machine load; on a shared machine
//! sequential runs differ by more than the effect being measured.

use std::hint::black_box;
use std::time::{Duration, Instant};

use align_webhooks::SigningSecret;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ring::hmac;

const BLOCK: u64 = 64;

fn interleaved(iters: u64, mut timed: impl FnMut(), mut untimed: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = BLOCK.min(iters - done);
        for _ in 0..n {
            untimed();
        }
        let start = Instant::now();
        for _ in 0..n {
            timed();
        }
        total += start.elapsed();
        done += n;
    }
    total
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
    for size in [64_usize, 1024, 16 * 1024] {
        let body = vec![b'x'; size];
        let signed: Vec<u8> =
            [id.as_bytes(), b".", ts.to_string().as_bytes(), b".", &body].concat();
        let ring_sign = || {
            black_box(hmac::sign(black_box(&key), black_box(&signed)));
        };
        let ours = || {
            black_box(secret.sign(black_box(id), black_box(ts), black_box(&body)));
        };
        let mut g = c.benchmark_group(format!("sign_{size}B"));
        g.throughput(Throughput::Bytes(signed.len() as u64));
        g.bench_function("ring_hmac", |b| {
            b.iter_custom(|iters| interleaved(iters, ring_sign, ours));
        });
        g.bench_function("align_webhooks_v1", |b| {
            b.iter_custom(|iters| interleaved(iters, ours, ring_sign));
        });
        // The HMAC alone, without formatting the `v1,<base64>` header value.
        let ours_tag = || {
            black_box(secret.tag(black_box(id), black_box(ts), black_box(&body)));
        };
        g.bench_function("align_webhooks_v1_tag_only", |b| {
            b.iter_custom(|iters| interleaved(iters, ours_tag, ring_sign));
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
