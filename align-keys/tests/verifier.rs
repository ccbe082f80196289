//! `KeyVerifier` and `KeyManager`: outcomes, caching, revocation, expiry, suspension,
//! rotation and coalesced last-used writes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use align_keys::store::{Instrumented, KeyStore};
use align_keys::*;
use chrono::{Duration, Utc};
use common::*;

async fn setup() -> (Arc<Instrumented<MemoryKeyStore>>, KeyManager, Fixture) {
    let store = Arc::new(Instrumented::new(MemoryKeyStore::new()));
    let f = seed(store.as_ref()).await;
    let keys = manager(Arc::clone(&store) as Arc<dyn KeyStore>);
    (store, keys, f)
}

#[tokio::test]
async fn unknown_well_formed_token_is_invalid() {
    let (store, keys, _) = setup().await;
    let stranger = token::generate(Environment::Live).unwrap();
    let v = keys
        .verifier()
        .verify(stranger.token.expose(), Utc::now())
        .await
        .unwrap();
    assert!(matches!(v, Verification::Invalid(InvalidKey::Unknown)));
    // A repeat is answered from the negative cache.
    keys.verifier()
        .verify(stranger.token.expose(), Utc::now())
        .await
        .unwrap();
    assert_eq!(store.counts().snapshot().0, 1);
}

#[tokio::test]
async fn malformed_token_is_invalid_without_any_lookup() {
    let (store, keys, _) = setup().await;
    let v = keys
        .verifier()
        .verify("ako_nothing", Utc::now())
        .await
        .unwrap();
    assert!(matches!(v, Verification::Invalid(InvalidKey::Malformed(_))));
    assert_eq!(store.counts().snapshot().0, 0);
}

/// A token of the right length is hashed and looked up in the cache before it is parsed
/// (issue 24): a cached key's token needs no parsing. One the cache does not hold is still
/// parsed first, and refused with its defect and no store lookup, even next to a cached key
/// it differs from in one character.
#[tokio::test]
async fn a_right_length_malformed_token_is_refused_with_its_defect_without_a_lookup() {
    let (store, keys, f) = setup().await;
    let minted = keys
        .mint(new_key(&f, "cached", Environment::Live), Utc::now())
        .await
        .unwrap();
    let good = minted.token.expose().to_owned();
    let v = keys.verifier().verify(&good, Utc::now()).await.unwrap();
    assert!(matches!(v, Verification::Valid(_)));
    let lookups = store.counts().snapshot().0;
    let mut bad = good.into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'a' { b'b' } else { b'a' };
    let bad = String::from_utf8(bad).unwrap();
    for _ in 0..3 {
        let v = keys.verifier().verify(&bad, Utc::now()).await.unwrap();
        assert!(
            matches!(
                v,
                Verification::Invalid(InvalidKey::Malformed(TokenDefect::ChecksumMismatch))
            ),
            "{v:?}"
        );
    }
    assert_eq!(store.counts().snapshot().0, lookups);
}

#[tokio::test]
async fn valid_key_is_served_from_cache_after_the_first_lookup() {
    let (store, keys, f) = setup().await;
    let minted = keys
        .mint(new_key(&f, "prod-sync", Environment::Live), Utc::now())
        .await
        .unwrap();
    for _ in 0..100 {
        let v = keys
            .verifier()
            .verify(minted.token.expose(), Utc::now())
            .await
            .unwrap();
        let Verification::Valid(k) = v else {
            panic!("expected valid")
        };
        assert_eq!(k.record().id, minted.record.id);
    }
    assert_eq!(
        store.counts().snapshot().0,
        1,
        "a cache hit costs no store round trip"
    );
}

#[tokio::test]
async fn revoked_key_is_rejected_on_next_request_even_when_cached() {
    let (_, keys, f) = setup().await;
    let minted = keys
        .mint(new_key(&f, "prod-sync", Environment::Live), Utc::now())
        .await
        .unwrap();
    let token = minted.token.expose();
    assert!(matches!(
        keys.verifier().verify(token, Utc::now()).await.unwrap(),
        Verification::Valid(_)
    ));
    let first = keys.revoke(minted.record.id, Utc::now()).await.unwrap();
    assert!(matches!(
        keys.verifier().verify(token, Utc::now()).await.unwrap(),
        Verification::Revoked(_)
    ));
    // Revoking again keeps the original time.
    let second = keys
        .revoke(minted.record.id, Utc::now() + Duration::seconds(10))
        .await
        .unwrap();
    assert_eq!(first.revoked_at, second.revoked_at);
}

#[tokio::test]
async fn revocation_through_a_second_manager_sharing_the_verifier_is_seen() {
    let (_, keys, f) = setup().await;
    let other = KeyManager::with_verifier(Arc::clone(keys.store()), Arc::clone(keys.verifier()));
    let minted = keys
        .mint(new_key(&f, "x", Environment::Live), Utc::now())
        .await
        .unwrap();
    keys.verifier()
        .verify(minted.token.expose(), Utc::now())
        .await
        .unwrap();
    other.revoke(minted.record.id, Utc::now()).await.unwrap();
    assert!(matches!(
        keys.verifier()
            .verify(minted.token.expose(), Utc::now())
            .await
            .unwrap(),
        Verification::Revoked(_)
    ));
}

#[tokio::test]
async fn expired_key_is_expired() {
    let (_, keys, f) = setup().await;
    let now = Utc::now();
    let mut spec = new_key(&f, "short", Environment::Sandbox);
    spec.expires_at = Some(now + Duration::minutes(5));
    let minted = keys.mint(spec, now).await.unwrap();
    let t = minted.token.expose();
    assert!(matches!(
        keys.verifier().verify(t, now).await.unwrap(),
        Verification::Valid(_)
    ));
    let later = now + Duration::minutes(5);
    assert!(matches!(
        keys.verifier().verify(t, later).await.unwrap(),
        Verification::Expired(_)
    ));
}

#[tokio::test]
async fn suspended_key_is_refused_until_resumed() {
    let (_, keys, f) = setup().await;
    let minted = keys
        .mint(new_key(&f, "s", Environment::Live), Utc::now())
        .await
        .unwrap();
    let t = minted.token.expose();
    keys.verifier().verify(t, Utc::now()).await.unwrap();
    keys.suspend(minted.record.id, Utc::now()).await.unwrap();
    assert!(matches!(
        keys.verifier().verify(t, Utc::now()).await.unwrap(),
        Verification::Suspended(_)
    ));
    keys.resume(minted.record.id).await.unwrap();
    assert!(matches!(
        keys.verifier().verify(t, Utc::now()).await.unwrap(),
        Verification::Valid(_)
    ));
}

#[tokio::test]
async fn rotation_keeps_both_keys_working_until_the_grace_period_ends() {
    let (_, keys, f) = setup().await;
    let now = Utc::now();
    let old = keys
        .mint(new_key(&f, "prod-sync", Environment::Live), now)
        .await
        .unwrap();
    let rot = keys
        .rotate(old.record.id, StdDuration::from_secs(60), now)
        .await
        .unwrap();
    let new = &rot.successor;
    assert_eq!(new.record.name, "prod-sync");
    assert_eq!(new.record.scope, old.record.scope);
    assert_eq!(new.record.rotated_from, Some(old.record.id));
    assert_ne!(new.record.prefix, old.record.prefix);
    let v = keys.verifier();
    let during = now + Duration::seconds(30);
    assert!(matches!(
        v.verify(old.token.expose(), during).await.unwrap(),
        Verification::Valid(_)
    ));
    assert!(matches!(
        v.verify(new.token.expose(), during).await.unwrap(),
        Verification::Valid(_)
    ));
    let after = now + Duration::seconds(61);
    assert!(matches!(
        v.verify(old.token.expose(), after).await.unwrap(),
        Verification::Expired(_)
    ));
    assert!(matches!(
        v.verify(new.token.expose(), after).await.unwrap(),
        Verification::Valid(_)
    ));
}

#[tokio::test]
async fn last_used_is_coalesced_and_flushed_in_batches() {
    let (store, keys, f) = setup().await;
    let a = keys
        .mint(new_key(&f, "a", Environment::Live), Utc::now())
        .await
        .unwrap();
    let b = keys
        .mint(new_key(&f, "b", Environment::Live), Utc::now())
        .await
        .unwrap();
    let t0 = Utc::now();
    let mut last = t0;
    for i in 0..500 {
        last = t0 + Duration::milliseconds(i);
        let v = keys
            .verifier()
            .verify(a.token.expose(), last)
            .await
            .unwrap();
        let Verification::Valid(k) = v else { panic!() };
        assert_eq!(
            k.last_used_at(),
            last,
            "lastUsedAt includes the current request"
        );
        keys.verifier()
            .verify(b.token.expose(), last)
            .await
            .unwrap();
    }
    assert_eq!(store.counts().snapshot().1, 0, "no store write per request");
    assert_eq!(keys.verifier().pending_last_used(), 2);
    assert_eq!(keys.verifier().flush_last_used().await.unwrap(), 2);
    assert_eq!(
        store.counts().snapshot().1,
        1,
        "one batch for 1,000 verifications"
    );
    let stored = store.get_key(a.record.id).await.unwrap().unwrap();
    assert_eq!(
        stored.last_used_at.map(|t| t.timestamp_millis()),
        Some(last.timestamp_millis())
    );
    assert_eq!(keys.verifier().flush_last_used().await.unwrap(), 0);
}

#[tokio::test]
async fn background_flusher_writes_last_used() {
    let (store, keys, f) = setup().await;
    let a = keys
        .mint(new_key(&f, "a", Environment::Live), Utc::now())
        .await
        .unwrap();
    keys.verifier()
        .verify(a.token.expose(), Utc::now())
        .await
        .unwrap();
    let task = keys
        .verifier()
        .spawn_last_used_flusher(StdDuration::from_millis(20));
    for _ in 0..100 {
        if store
            .get_key(a.record.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .is_some()
        {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    task.abort();
    assert!(
        store
            .get_key(a.record.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .is_some()
    );
}

#[tokio::test]
async fn mint_as_enforces_the_policy_and_inherits_org_and_creator() {
    let (store, keys, f) = setup().await;
    let admin_key = keys
        .mint(new_key(&f, "admin", Environment::Live), Utc::now())
        .await
        .unwrap();
    let caller = Producer::Key(Caller {
        key: &admin_key.record,
        creator_role: Role::Engineer,
    });
    let mut spec = new_key(&f, "eng", Environment::Sandbox);
    assert!(matches!(
        keys.mint_as(&caller, spec.clone(), Utc::now()).await,
        Err(Error::Forbidden(Denial::OrganizationScopeNeedsAdmin))
    ));
    spec.scope = Scope::Project(f.project.id);
    spec.organization_id = OrganizationId::new();
    let ok = keys.mint_as(&caller, spec, Utc::now()).await.unwrap();
    assert_eq!(ok.record.organization_id, f.org.id);
    assert_eq!(ok.record.created_by, f.admin.id);
    assert!(ok.token.expose().starts_with("akt_"));
    assert!(store.get_key(ok.record.id).await.unwrap().is_some());
}

#[tokio::test]
async fn bad_names_and_past_expiry_are_refused() {
    let (_, keys, f) = setup().await;
    for name in ["", "   ", "a\u{0}b", "invoice\u{202E}fdp.exe", "a\u{2066}b"] {
        let spec = new_key(&f, name, Environment::Live);
        assert!(matches!(
            keys.mint(spec, Utc::now()).await,
            Err(Error::InvalidInput { field: "name", .. })
        ));
    }
    let mut spec = new_key(&f, &"x".repeat(201), Environment::Live);
    assert!(keys.mint(spec.clone(), Utc::now()).await.is_err());
    spec.name = "ok".into();
    spec.expires_at = Some(Utc::now() - Duration::seconds(1));
    assert!(matches!(
        keys.mint(spec, Utc::now()).await,
        Err(Error::InvalidInput {
            field: "expiresAt",
            ..
        })
    ));
}

#[tokio::test]
async fn peppered_hasher_stores_a_different_hash_and_still_verifies() {
    let store = Arc::new(MemoryKeyStore::new());
    let f = seed(store.as_ref()).await;
    let keys = KeyManager::new(
        Arc::clone(&store) as Arc<dyn KeyStore>,
        Arc::new(HmacSha256Hasher::new(b"test-fixture-pepper")),
    );
    let minted = keys
        .mint(new_key(&f, "p", Environment::Live), Utc::now())
        .await
        .unwrap();
    let plain = Sha256Hasher.hash(minted.token.expose());
    assert!(store.find_key_by_hash(&plain).await.unwrap().is_none());
    assert!(matches!(
        keys.verifier()
            .verify(minted.token.expose(), Utc::now())
            .await
            .unwrap(),
        Verification::Valid(_)
    ));
}

#[tokio::test]
async fn nothing_secret_appears_in_debug_output() {
    let (_, keys, f) = setup().await;
    let minted = keys
        .mint(new_key(&f, "dbg", Environment::Live), Utc::now())
        .await
        .unwrap();
    let secret = &minted.token.expose()[13..];
    let v = keys
        .verifier()
        .verify(minted.token.expose(), Utc::now())
        .await
        .unwrap();
    let parsed = token::parse(minted.token.expose()).unwrap();
    let bad = token::parse(&minted.token.expose().replace('_', "-")).unwrap_err();
    for text in [
        format!("{minted:?}"),
        format!("{v:?}"),
        format!("{parsed:?}"),
        format!("{bad:?} {bad}"),
        format!("{}", minted.token),
        format!("{:?}", HmacSha256Hasher::new(b"pepper")),
    ] {
        assert!(!text.contains(secret), "secret in {text}");
        assert!(!text.contains("pepper"), "pepper in {text}");
    }
}

#[tokio::test]
async fn concurrent_verifies_and_a_revoke_never_leave_a_stale_valid_entry() {
    let store = Arc::new(MemoryKeyStore::new());
    let f = seed(store.as_ref()).await;
    for _ in 0..50 {
        let keys = manager(Arc::clone(&store) as Arc<dyn KeyStore>);
        let minted = keys
            .mint(new_key(&f, "race", Environment::Live), Utc::now())
            .await
            .unwrap();
        let token: Arc<str> = minted.token.expose().into();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let v = Arc::clone(keys.verifier());
            let t = Arc::clone(&token);
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    v.verify(&t, Utc::now()).await.unwrap();
                    tokio::task::yield_now().await;
                }
            }));
        }
        keys.revoke(minted.record.id, Utc::now()).await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let after = keys.verifier().verify(&token, Utc::now()).await.unwrap();
        assert!(
            matches!(after, Verification::Revoked(_)),
            "stale cache entry after revoke"
        );
    }
}

#[tokio::test]
async fn idle_keys_are_evicted_once_flushed_and_reload_on_next_use() {
    let (store, keys, f) = setup().await;
    let t0 = Utc::now();
    let idle = keys
        .mint(new_key(&f, "idle", Environment::Live), t0)
        .await
        .unwrap();
    let busy = keys
        .mint(new_key(&f, "busy", Environment::Live), t0)
        .await
        .unwrap();
    let v = keys.verifier();
    v.verify(idle.token.expose(), t0).await.unwrap();
    v.verify(busy.token.expose(), t0).await.unwrap();
    assert_eq!(v.cached_keys(), 2);
    // Not yet flushed: nothing is dropped, whatever its age.
    assert_eq!(
        v.evict_idle(t0 + Duration::hours(1), StdDuration::from_secs(60)),
        0
    );
    v.flush_last_used().await.unwrap();
    let later = t0 + Duration::minutes(10);
    v.verify(busy.token.expose(), later).await.unwrap();
    assert_eq!(v.evict_idle(later, StdDuration::from_secs(60)), 1);
    assert_eq!(v.cached_keys(), 1);
    // The evicted key still verifies, from the store, then from the cache again.
    let lookups = store.counts().snapshot().0;
    let again = v.verify(idle.token.expose(), later).await.unwrap();
    assert!(matches!(again, Verification::Valid(_)));
    assert_eq!(store.counts().snapshot().0, lookups + 1);
    v.verify(idle.token.expose(), later).await.unwrap();
    assert_eq!(store.counts().snapshot().0, lookups + 1);
}

#[tokio::test]
async fn a_made_up_key_in_the_negative_cache_stays_unknown_and_a_malformed_one_malformed() {
    let (store, keys, _) = setup().await;
    let stranger = token::generate(Environment::Live).unwrap();
    let token = stranger.token.expose();
    for _ in 0..3 {
        let v = keys.verifier().verify(token, Utc::now()).await.unwrap();
        assert!(matches!(v, Verification::Invalid(InvalidKey::Unknown)));
    }
    assert_eq!(
        store.counts().snapshot().0,
        1,
        "one lookup, then the negative cache"
    );
    // The same length with its checksum broken is still refused by the parser, never
    // looked up, whatever the negative cache holds.
    let mut broken = token.to_owned();
    let last = broken.pop().unwrap();
    broken.push(if last == 'A' { 'B' } else { 'A' });
    let v = keys.verifier().verify(&broken, Utc::now()).await.unwrap();
    assert!(matches!(v, Verification::Invalid(InvalidKey::Malformed(_))));
    assert_eq!(store.counts().snapshot().0, 1);
}

/// A store that can only look keys up (what an embedder verifying keys kept elsewhere
/// writes): the verifier needs nothing more.
struct LookupOnly(Arc<MemoryKeyStore>);

#[async_trait::async_trait]
impl KeyLookup for LookupOnly {
    async fn find_key_by_hash(&self, hash: &KeyHash) -> align_keys::Result<Option<KeyRecord>> {
        self.0.find_key_by_hash(hash).await
    }
    async fn get_key(&self, id: KeyId) -> align_keys::Result<Option<KeyRecord>> {
        self.0.get_key(id).await
    }
    async fn record_last_used(
        &self,
        batch: &[(KeyId, chrono::DateTime<Utc>)],
    ) -> align_keys::Result<()> {
        self.0.record_last_used(batch).await
    }
    async fn key_changes_since(&self, after: i64) -> align_keys::Result<(Vec<KeyId>, i64)> {
        self.0.key_changes_since(after).await
    }
}

#[tokio::test]
async fn a_verifier_over_a_lookup_only_store_verifies_and_follows_revocation() {
    let store = Arc::new(MemoryKeyStore::new());
    let f = seed(store.as_ref()).await;
    let keys = manager(Arc::clone(&store) as Arc<dyn KeyStore>);
    let minted = keys
        .mint(new_key(&f, "lookup", Environment::Live), Utc::now())
        .await
        .unwrap();
    let lookup = Arc::new(Instrumented::new(LookupOnly(Arc::clone(&store))));
    let verifier = Arc::new(KeyVerifier::new(
        Arc::clone(&lookup) as Arc<dyn KeyLookup>,
        Arc::new(Sha256Hasher),
    ));
    let watcher = verifier
        .start_change_watcher(StdDuration::from_millis(10))
        .await;
    let v = verifier
        .verify(minted.token.expose(), Utc::now())
        .await
        .unwrap();
    assert!(matches!(v, Verification::Valid(_)));
    verifier
        .verify(minted.token.expose(), Utc::now())
        .await
        .unwrap();
    assert_eq!(
        lookup.counts().snapshot().0,
        1,
        "one lookup, then the cache"
    );

    // Revoked elsewhere (through the full store): the change feed reaches this verifier.
    keys.revoke(minted.record.id, Utc::now()).await.unwrap();
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(5);
    loop {
        let v = verifier
            .verify(minted.token.expose(), Utc::now())
            .await
            .unwrap();
        if matches!(v, Verification::Revoked(_)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {v:?}");
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    watcher.abort();
}

#[tokio::test]
async fn any_key_store_turns_into_the_lookup_a_verifier_takes() {
    let store: Arc<dyn KeyStore> = Arc::new(MemoryKeyStore::new());
    let f = seed(store.as_ref()).await;
    let keys = manager(Arc::clone(&store));
    let minted = keys
        .mint(new_key(&f, "upcast", Environment::Live), Utc::now())
        .await
        .unwrap();
    let verifier = KeyVerifier::new(Arc::clone(&store).into_lookup(), Arc::new(Sha256Hasher));
    let v = verifier
        .verify(minted.token.expose(), Utc::now())
        .await
        .unwrap();
    assert!(matches!(v, Verification::Valid(_)));
}
