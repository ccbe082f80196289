//! `Keyspaces::verify` of a cached key space key (permissions checked against a query; no
//! credits, no named limits) with 100k keys, beside a bare SHA-256 of the same tokens in the
//! same run (DESIGN §12: the library call ≤ 2× one SHA-256). Run with
//! `cargo bench -p align-keys --bench keyspace_verify`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use align_keys::keyspace::{
    LimitCheck, LimitsOutcome, NamedLimiter, NewKeyspaceKey, VerifyCode, VerifyRequest,
};
use align_keys::*;
use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const KEYS: usize = 100_000;

// The allocator of the `align` binary (align-cli), so the figures are the server's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// No key here has named limits.
struct NoLimits;

#[async_trait::async_trait]
impl NamedLimiter for NoLimits {
    async fn check(&self, _: KeyId, _: &[LimitCheck<'_>]) -> align_keys::Result<LimitsOutcome> {
        Ok(LimitsOutcome {
            allowed: true,
            states: Vec::new(),
        })
    }
}

/// Polls a future that is expected to be ready at once (a cache hit never awaits).
fn ready<F: Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => rt.block_on(f),
    }
}

fn setup(rt: &tokio::runtime::Runtime) -> (Arc<Keyspaces>, OrganizationId, Vec<Secret>) {
    rt.block_on(async {
        let store = Arc::new(MemoryKeyStore::new());
        let now = Utc::now();
        let org = Organization::new("bench", now);
        store.create_organization(&org).await.unwrap();
        let spaces = Arc::new(Keyspaces::new(
            store,
            Arc::new(Sha256Hasher),
            Arc::new(NoLimits),
        ));
        let ks = spaces
            .create_keyspace(
                org.id,
                "bench",
                "acme",
                vec![
                    "invoices:read".into(),
                    "invoices:write".into(),
                    "admin".into(),
                ],
                UserId::SERVICE,
                now,
            )
            .await
            .unwrap();
        let mut tokens = Vec::with_capacity(KEYS);
        for i in 0..KEYS {
            let minted = spaces
                .mint(
                    &ks,
                    NewKeyspaceKey {
                        name: format!("k{i}"),
                        environment: Environment::Live,
                        owner_id: Some(format!("cus_{i}")),
                        meta: None,
                        permissions: vec!["invoices:read".into(), "admin".into()],
                        expires_at: None,
                        credits: None,
                        ratelimits: Vec::new(),
                        created_by: UserId::SERVICE,
                    },
                    now,
                )
                .await
                .unwrap();
            // Warm the cache: every later verification is a hit.
            spaces.lookup(minted.token.expose()).await.unwrap();
            tokens.push(minted.token);
        }
        (spaces, org.id, tokens)
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (spaces, org, tokens) = setup(&rt);
    assert_eq!(spaces.cached_keys(), KEYS);
    let query = PermissionQuery::parse("invoices:read AND (invoices:write OR admin)").unwrap();
    let now = Utc::now();
    let verify = |token: &str| {
        let outcome = ready(
            &rt,
            spaces.verify(VerifyRequest {
                token,
                organization_id: org,
                environment: None,
                permissions: Some(&query),
                credit_cost: None,
                limit_costs: &[],
                now,
            }),
        )
        .unwrap();
        assert_eq!(outcome.code, VerifyCode::Valid);
        outcome
    };
    let mut group = c.benchmark_group("keyspace_verify_100k_keys");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("bare_sha256/random_key", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let d = ring::digest::digest(&ring::digest::SHA256, tokens[i].expose().as_bytes());
            black_box(d);
        });
    });
    let mut i = 0usize;
    group.bench_function("verify_cached/random_key", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(verify(tokens[i].expose()));
        });
    });
    let hot = tokens[KEYS / 2].expose();
    group.bench_function("bare_sha256/same_key", |b| {
        b.iter(|| {
            black_box(ring::digest::digest(
                &ring::digest::SHA256,
                black_box(hot).as_bytes(),
            ))
        });
    });
    group.bench_function("verify_cached/same_key", |b| {
        b.iter(|| black_box(verify(black_box(hot))));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
