//! `verify` on a cache hit with 100k keys in the store, beside a bare SHA-256 of the same
//! tokens in the same run. Run with `cargo bench -p align-keys --bench verify`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use align_keys::store::KeyStore;
use align_keys::*;
use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const KEYS: usize = 100_000;

// The allocator of the `align` binary (align-cli), so the figures are the server's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Polls a future that is expected to be ready at once (a cache hit never awaits).
fn ready<F: Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => rt.block_on(f),
    }
}

fn setup(rt: &tokio::runtime::Runtime) -> (Arc<KeyVerifier>, Vec<Secret>) {
    rt.block_on(async {
        let store = Arc::new(MemoryKeyStore::new());
        let now = Utc::now();
        let org = Organization {
            id: OrganizationId::new(),
            name: "bench".into(),
            security_contact: None,
            leak_policy: align_keys::LeakPolicy::default(),
            privacy_contact: None,
            created_at: now,
        };
        store.create_organization(&org).await.unwrap();
        let keys = KeyManager::new(store as Arc<dyn KeyStore>, Arc::new(Sha256Hasher));
        let mut tokens = Vec::with_capacity(KEYS);
        for i in 0..KEYS {
            let new = NewKey {
                name: format!("k{i}"),
                organization_id: org.id,
                scope: Scope::Organization,
                permissions: None,
                environment: Environment::Live,
                created_by: UserId::new(),
                expires_at: None,
                rate_limit_per_minute: None,
                allowed_cidrs: vec![],
                owner_id: None,
                meta: None,
            };
            let minted = keys.mint(new, now).await.unwrap();
            // Warm the cache: every later verification is a hit.
            keys.verifier()
                .verify(minted.token.expose(), now)
                .await
                .unwrap();
            tokens.push(minted.token);
        }
        keys.verifier().flush_last_used().await.unwrap();
        (Arc::clone(keys.verifier()), tokens)
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (verifier, tokens) = setup(&rt);
    assert_eq!(verifier.cached_keys(), KEYS);
    let now = Utc::now();
    let mut group = c.benchmark_group("verify_100k_keys");
    group.throughput(Throughput::Elements(1));

    // Random key among the 100k: CPU caches are cold for the token and the cache entry, as
    // for a server whose clients use many keys.
    let mut i = 0usize;
    group.bench_function("bare_sha256/random_key", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let d = ring::digest::digest(&ring::digest::SHA256, tokens[i].expose().as_bytes());
            black_box(d);
        });
    });
    let mut i = 0usize;
    group.bench_function("verify_cache_hit/random_key", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let v = ready(&rt, verifier.verify(tokens[i].expose(), now)).unwrap();
            assert!(matches!(v, Verification::Valid(_)));
            black_box(v);
        });
    });
    // One key over and over: CPU caches warm, so this is the compute cost alone.
    let hot = tokens[KEYS / 2].expose();
    group.bench_function("bare_sha256/same_key", |b| {
        b.iter(|| {
            black_box(ring::digest::digest(
                &ring::digest::SHA256,
                black_box(hot).as_bytes(),
            ))
        });
    });
    group.bench_function("verify_cache_hit/same_key", |b| {
        b.iter(|| {
            let v = ready(&rt, verifier.verify(black_box(hot), now)).unwrap();
            assert!(matches!(v, Verification::Valid(_)));
            black_box(v);
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
