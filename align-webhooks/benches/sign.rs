#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Signing a message vs a bare `ring::hmac::sign` over the same bytes.

use std::hint::black_box;

use align_webhooks::SigningSecret;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ring::hmac;

fn bench(c: &mut Criterion) {
    let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
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
        let mut g = c.benchmark_group(format!("sign_{size}B"));
        g.throughput(Throughput::Bytes(signed.len() as u64));
        g.bench_function("ring_hmac", |b| {
            b.iter(|| hmac::sign(black_box(&key), black_box(&signed)));
        });
        g.bench_function("align_webhooks_v1", |b| {
            b.iter(|| secret.sign(black_box(id), black_box(ts), black_box(&body)));
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
