//! The `KeyspaceStore` contract (DESIGN §12), run against every back-end: memory, SQLite in
//! memory and in a file, and PostgreSQL in a scratch schema when `ALIGN_TEST_POSTGRES_URL` is
//! set. Credits are spent exactly under concurrency: on PostgreSQL from two instances (two
//! pools), on SQLite from one file store and from two connections to one file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::sync::Arc;

use align_keys::keyspace::{
    CreditSpend, Credits, Keyspace, KeyspaceId, KeyspaceKey, KeyspaceKeyFilter, KeyspaceStore,
    NamedLimit, Refill, RefillInterval,
};
use align_keys::store::{KeyStore, PageRequest};
use align_keys::*;
use chrono::{DateTime, Utc};
use common::*;

/// A store with both contracts: the directory (for organisations), the change log, and key
/// spaces.
trait Store: KeyStore + KeyspaceStore {}
impl<T: KeyStore + KeyspaceStore> Store for T {}

/// Every back-end, each over an empty store, with what must outlive it (a temporary
/// directory, a scratch schema).
struct Backends {
    stores: Vec<(&'static str, Arc<dyn Store>)>,
    _dir: tempfile::TempDir,
    #[cfg(feature = "postgres")]
    _scratch: Option<align_keys::postgres::ScratchSchema>,
}

async fn backends() -> Backends {
    let dir = tempfile::tempdir().unwrap();
    #[allow(unused_mut, reason = "more back-ends with the features")]
    let mut stores: Vec<(&'static str, Arc<dyn Store>)> =
        vec![("memory", Arc::new(MemoryKeyStore::new()))];
    #[cfg(feature = "sqlite")]
    {
        stores.push((
            "sqlite (memory)",
            Arc::new(SqliteKeyStore::open_in_memory().await.unwrap()),
        ));
        stores.push((
            "sqlite (file)",
            Arc::new(
                SqliteKeyStore::open(dir.path().join("keys.db"))
                    .await
                    .unwrap(),
            ),
        ));
    }
    #[cfg(feature = "postgres")]
    let scratch = match postgres_url() {
        Some(url) => {
            let scratch = align_keys::postgres::ScratchSchema::create(&url)
                .await
                .unwrap();
            let store = PgKeyStore::open(scratch.pool().unwrap()).await.unwrap();
            stores.push(("postgres", Arc::new(store)));
            Some(scratch)
        }
        None => None,
    };
    Backends {
        stores,
        _dir: dir,
        #[cfg(feature = "postgres")]
        _scratch: scratch,
    }
}

/// `s` as an instant (whole milliseconds, as every store keeps them).
fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

fn space(org: OrganizationId, prefix: &str, by: UserId) -> Keyspace {
    Keyspace {
        id: KeyspaceId::new(),
        organization_id: org,
        name: format!("{prefix} api"),
        prefix: KeyspaceTag::new(prefix).unwrap(),
        permissions: vec![
            "invoices:read".into(),
            "invoices:write".into(),
            "admin".into(),
        ],
        created_by: by,
        created_at: now_ms(),
    }
}

/// A fresh key of `ks` (prefix `{tag}_{n:08x}`), live, without credits, limits or owner.
fn key(ks: &Keyspace, n: u32) -> KeyspaceKey {
    KeyspaceKey {
        id: KeyId::new(),
        keyspace_id: ks.id,
        organization_id: ks.organization_id,
        name: format!("key {n}"),
        prefix: format!("{}_{n:08x}", ks.prefix),
        environment: Environment::Live,
        owner_id: None,
        meta: None,
        permissions: vec!["invoices:read".into()],
        created_by: ks.created_by,
        created_at: now_ms(),
        expires_at: None,
        revoked_at: None,
        suspended_at: None,
        rotated_from: None,
        credits: None,
        ratelimits: vec![],
    }
}

fn hash_of(k: &KeyspaceKey) -> KeyHash {
    Sha256Hasher.hash(&format!("token of {}", k.id))
}

/// A key space in a fresh organisation of `store`, and that organisation's admin.
async fn seeded(store: &Arc<dyn Store>, prefix: &str) -> (Fixture, Keyspace) {
    let f = seed(store.as_ref()).await;
    let ks = space(f.org.id, prefix, f.admin.id);
    store.create_keyspace(&ks).await.unwrap();
    (f, ks)
}

/// Inserts `k` under its hash.
async fn insert(store: &Arc<dyn Store>, k: &KeyspaceKey) {
    store.insert_keyspace_key(k, &hash_of(k)).await.unwrap();
}

fn spend(spent: bool, remaining: u64) -> CreditSpend {
    CreditSpend { spent, remaining }
}

fn page(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

#[tokio::test]
async fn key_spaces_round_trip_page_update_and_keep_prefixes_unique_per_organisation() {
    for (name, store) in backends().await.stores {
        let (f, acme) = seeded(&store, "acme").await;
        let beta = space(f.org.id, "beta", f.admin.id);
        let gamma = space(f.org.id, "gamma", f.admin.id);
        store.create_keyspace(&beta).await.unwrap();
        store.create_keyspace(&gamma).await.unwrap();

        let dup = space(f.org.id, "acme", f.admin.id);
        assert!(
            matches!(
                store.create_keyspace(&dup).await,
                Err(Error::AlreadyExists(ObjectKind::Keyspace))
            ),
            "{name}: a second `acme` in one organisation"
        );
        let (other, _) = seeded(&store, "acme").await;
        assert_ne!(other.org.id, f.org.id);
        let nowhere = space(OrganizationId::new(), "delta", f.admin.id);
        assert!(
            matches!(
                store.create_keyspace(&nowhere).await,
                Err(Error::NotFound(ObjectKind::Organization))
            ),
            "{name}: a key space of an unknown organisation"
        );

        assert_eq!(
            store.get_keyspace(acme.id).await.unwrap(),
            Some(acme.clone())
        );
        assert_eq!(store.get_keyspace(KeyspaceId::new()).await.unwrap(), None);

        let first = store
            .list_keyspaces(f.org.id, &page(2, None))
            .await
            .unwrap();
        assert_eq!(first.data, vec![acme.clone(), beta.clone()], "{name}");
        let rest = store
            .list_keyspaces(f.org.id, &page(2, first.next_cursor.clone()))
            .await
            .unwrap();
        assert_eq!(rest.data, vec![gamma.clone()], "{name}");
        assert_eq!(rest.next_cursor, None, "{name}");
        let theirs = store
            .list_keyspaces(other.org.id, &page(50, None))
            .await
            .unwrap();
        assert_eq!(theirs.data.len(), 1, "{name}");
        assert_eq!(theirs.data[0].prefix.as_str(), "acme");

        let mut changed = acme.clone();
        changed.name = "Acme public API".into();
        changed.permissions = vec!["refunds:*".into()];
        changed.prefix = KeyspaceTag::new("zeta").unwrap();
        store.update_keyspace(&changed).await.unwrap();
        let stored = store.get_keyspace(acme.id).await.unwrap().unwrap();
        assert_eq!(stored.name, "Acme public API", "{name}");
        assert_eq!(stored.permissions, vec!["refunds:*".to_owned()], "{name}");
        assert_eq!(
            stored.prefix.as_str(),
            "acme",
            "{name}: the prefix never changes"
        );
        assert!(
            matches!(
                store.update_keyspace(&nowhere).await,
                Err(Error::NotFound(ObjectKind::Keyspace))
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn keys_are_found_by_hash_and_listed_by_every_filter_page_by_page() {
    for (name, store) in backends().await.stores {
        let (f, ks) = seeded(&store, "acme").await;
        let other = space(f.org.id, "beta", f.admin.id);
        store.create_keyspace(&other).await.unwrap();

        let mut keys = Vec::new();
        for n in 0..6 {
            let mut k = key(&ks, n);
            k.owner_id = Some(if n % 2 == 0 { "cus_even" } else { "cus_odd" }.into());
            k.environment = if n < 4 {
                Environment::Live
            } else {
                Environment::Sandbox
            };
            if n == 2 {
                k.revoked_at = Some(now_ms());
            }
            insert(&store, &k).await;
            keys.push(k);
        }
        // A key of another key space: never listed with these.
        let theirs = key(&other, 100);
        insert(&store, &theirs).await;

        for k in &keys {
            assert_eq!(
                store.find_keyspace_key(&hash_of(k)).await.unwrap().as_ref(),
                Some(k),
                "{name}"
            );
            assert_eq!(
                store.get_keyspace_key(k.id).await.unwrap().as_ref(),
                Some(k)
            );
        }
        assert_eq!(
            store
                .find_keyspace_key(&Sha256Hasher.hash("unknown"))
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.get_keyspace_key(KeyId::new()).await.unwrap(), None);

        let ids = |page: &Page<KeyspaceKey>| page.data.iter().map(|k| k.id).collect::<Vec<_>>();
        let pick = |ns: &[usize]| ns.iter().map(|n| keys[*n].id).collect::<Vec<_>>();
        let all = |owner: Option<&str>, environment, include_revoked| KeyspaceKeyFilter {
            keyspace_id: ks.id,
            owner_id: owner.map(str::to_owned),
            environment,
            include_revoked,
        };
        let cases = [
            (all(None, None, true), pick(&[0, 1, 2, 3, 4, 5])),
            (all(None, None, false), pick(&[0, 1, 3, 4, 5])),
            (all(Some("cus_even"), None, true), pick(&[0, 2, 4])),
            (all(Some("cus_even"), None, false), pick(&[0, 4])),
            (
                all(Some("cus_odd"), Some(Environment::Live), false),
                pick(&[1, 3]),
            ),
            (all(None, Some(Environment::Sandbox), true), pick(&[4, 5])),
            (all(Some("cus_nobody"), None, true), vec![]),
        ];
        for (filter, want) in cases {
            let got = store
                .list_keyspace_keys(&filter, &page(50, None))
                .await
                .unwrap();
            assert_eq!(ids(&got), want, "{name}: {filter:?}");
            // The same, two at a time.
            let mut paged = Vec::new();
            let mut cursor = None;
            loop {
                let got = store
                    .list_keyspace_keys(&filter, &page(2, cursor))
                    .await
                    .unwrap();
                assert!(got.data.len() <= 2);
                paged.extend(ids(&got));
                match got.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(paged, want, "{name}: {filter:?} two at a time");
        }
        let bad = page(2, Some("not a cursor".into()));
        assert!(matches!(
            store.list_keyspace_keys(&all(None, None, true), &bad).await,
            Err(Error::InvalidCursor)
        ));
    }
}

#[tokio::test]
async fn a_taken_prefix_or_hash_and_an_unknown_key_space_are_refused() {
    for (name, store) in backends().await.stores {
        let (_, ks) = seeded(&store, "acme").await;
        let k = key(&ks, 1);
        insert(&store, &k).await;

        let mut same_prefix = key(&ks, 1);
        same_prefix.name = "another".into();
        assert!(
            matches!(
                store
                    .insert_keyspace_key(&same_prefix, &hash_of(&same_prefix))
                    .await,
                Err(Error::PrefixTaken)
            ),
            "{name}"
        );
        let same_hash = key(&ks, 2);
        assert!(
            matches!(
                store.insert_keyspace_key(&same_hash, &hash_of(&k)).await,
                Err(Error::AlreadyExists(ObjectKind::ApiKey))
            ),
            "{name}"
        );
        let mut lost = key(&ks, 3);
        lost.keyspace_id = KeyspaceId::new();
        assert!(
            matches!(
                store.insert_keyspace_key(&lost, &hash_of(&lost)).await,
                Err(Error::NotFound(ObjectKind::Keyspace))
            ),
            "{name}"
        );
        // None of the refused ones was stored.
        for refused in [&same_prefix, &same_hash, &lost] {
            assert_eq!(store.get_keyspace_key(refused.id).await.unwrap(), None);
        }
    }
}

#[tokio::test]
async fn updates_write_every_field_but_credits_and_never_undo_a_revocation() {
    for (name, store) in backends().await.stores {
        let (_, ks) = seeded(&store, "acme").await;
        let mut k = key(&ks, 1);
        k.credits = Some(Credits::new(
            10,
            Some(Refill {
                amount: 10,
                interval: RefillInterval::Month,
            }),
            now_ms(),
        ));
        insert(&store, &k).await;

        let mut changed = k.clone();
        changed.name = "renamed".into();
        changed.owner_id = Some("cus_1".into());
        changed.meta = Some(
            serde_json::json!({"plan": "pro", "seats": 3})
                .as_object()
                .unwrap()
                .clone(),
        );
        changed.permissions = vec!["invoices:*".into(), "admin".into()];
        changed.expires_at = Some(at("2031-01-01T00:00:00Z"));
        changed.suspended_at = Some(at("2026-05-01T12:00:00.123Z"));
        changed.ratelimits = vec![
            NamedLimit {
                name: "requests".into(),
                limit: 100,
                duration_seconds: 60,
            },
            NamedLimit {
                name: "tokens".into(),
                limit: 1_000_000,
                duration_seconds: 86_400,
            },
        ];
        let mut with_other_credits = changed.clone();
        with_other_credits.credits = None;
        store
            .update_keyspace_key(&with_other_credits)
            .await
            .unwrap();
        assert_eq!(
            store.get_keyspace_key(k.id).await.unwrap(),
            Some(changed.clone()),
            "{name}: every field written, the credits left alone"
        );

        let mut revoked = changed.clone();
        revoked.revoked_at = Some(at("2026-05-02T00:00:00Z"));
        revoked.suspended_at = None;
        store.update_keyspace_key(&revoked).await.unwrap();
        let mut undone = revoked.clone();
        undone.revoked_at = None;
        store.update_keyspace_key(&undone).await.unwrap();
        let stored = store.get_keyspace_key(k.id).await.unwrap().unwrap();
        assert_eq!(
            stored.revoked_at, revoked.revoked_at,
            "{name}: still revoked"
        );
        assert_eq!(stored.suspended_at, None, "{name}: resumed");
        assert_eq!(
            store.find_keyspace_key(&hash_of(&k)).await.unwrap(),
            Some(stored)
        );

        let unknown = key(&ks, 2);
        assert!(
            matches!(
                store.update_keyspace_key(&unknown).await,
                Err(Error::NotFound(ObjectKind::ApiKey))
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn credits_are_replaced_cleared_and_spent_exactly() {
    for (name, store) in backends().await.stores {
        let (_, ks) = seeded(&store, "acme").await;
        let now = now_ms();
        let mut k = key(&ks, 1);
        k.credits = Some(Credits::new(3, None, now));
        insert(&store, &k).await;

        assert_eq!(
            store.spend_credits(k.id, 1, now).await.unwrap(),
            spend(true, 2)
        );
        assert_eq!(
            store.spend_credits(k.id, 3, now).await.unwrap(),
            spend(false, 2)
        );
        assert_eq!(
            store.spend_credits(k.id, 2, now).await.unwrap(),
            spend(true, 0)
        );
        assert_eq!(
            store.spend_credits(k.id, 1, now).await.unwrap(),
            spend(false, 0)
        );
        assert_eq!(
            store.spend_credits(k.id, 0, now).await.unwrap(),
            spend(true, 0),
            "{name}: a cost of 0 looks and spends nothing"
        );
        let stored = store.get_keyspace_key(k.id).await.unwrap().unwrap();
        assert_eq!(stored.credits.map(|c| c.remaining), Some(0), "{name}");

        // Replaced, with a refill.
        let refilled = Credits {
            remaining: 7,
            refill: Some(Refill {
                amount: 50,
                interval: RefillInterval::Day,
            }),
            refilled_at: Some(RefillInterval::Day.start_of(now)),
        };
        store.set_credits(k.id, Some(&refilled)).await.unwrap();
        let stored = store.get_keyspace_key(k.id).await.unwrap().unwrap();
        assert_eq!(stored.credits, Some(refilled), "{name}");
        assert_eq!(
            store.spend_credits(k.id, 0, now).await.unwrap(),
            spend(true, 7)
        );
        assert_eq!(
            store.spend_credits(k.id, 7, now).await.unwrap(),
            spend(true, 0)
        );

        // Cleared: unlimited, nothing counted.
        store.set_credits(k.id, None).await.unwrap();
        assert_eq!(
            store.get_keyspace_key(k.id).await.unwrap().unwrap().credits,
            None
        );
        for cost in [0, 1, 1_000_000] {
            assert_eq!(
                store.spend_credits(k.id, cost, now).await.unwrap(),
                spend(true, u64::MAX),
                "{name}: a key without credits"
            );
        }

        // A cost no key can hold is refused like any other.
        store
            .set_credits(k.id, Some(&Credits::new(5, None, now)))
            .await
            .unwrap();
        assert_eq!(
            store.spend_credits(k.id, u64::MAX, now).await.unwrap(),
            spend(false, 5),
            "{name}"
        );

        let unknown = KeyId::new();
        assert!(matches!(
            store.spend_credits(unknown, 1, now).await,
            Err(Error::NotFound(ObjectKind::ApiKey))
        ));
        assert!(matches!(
            store.set_credits(unknown, None).await,
            Err(Error::NotFound(ObjectKind::ApiKey))
        ));
    }
}

#[tokio::test]
async fn credits_refill_at_utc_midnight_and_not_a_millisecond_before() {
    for (name, store) in backends().await.stores {
        let (_, ks) = seeded(&store, "acme").await;
        let minted = at("2026-05-14T10:00:00Z");
        let daily = |amount| Refill {
            amount,
            interval: RefillInterval::Day,
        };
        let mut k = key(&ks, 1);
        k.credits = Some(Credits::new(3, Some(daily(5)), minted));
        insert(&store, &k).await;

        assert_eq!(
            store.spend_credits(k.id, 3, minted).await.unwrap(),
            spend(true, 0)
        );
        let last_ms = at("2026-05-14T23:59:59.999Z");
        assert_eq!(
            store.spend_credits(k.id, 1, last_ms).await.unwrap(),
            spend(false, 0),
            "{name}: no refill before midnight"
        );
        let midnight = at("2026-05-15T00:00:00Z");
        assert_eq!(
            store.spend_credits(k.id, 1, midnight).await.unwrap(),
            spend(true, 4),
            "{name}: refilled to 5 (not added to), then spent"
        );
        assert_eq!(
            store
                .spend_credits(k.id, 4, at("2026-05-15T22:00:00Z"))
                .await
                .unwrap(),
            spend(true, 0),
            "{name}: one refill a day"
        );
        let credits = store.get_keyspace_key(k.id).await.unwrap().unwrap().credits;
        assert_eq!(
            credits.and_then(|c| c.refilled_at),
            Some(midnight),
            "{name}"
        );

        // A refused spend still refills: the day's allowance is there, the cost too large.
        let next = at("2026-05-16T08:00:00Z");
        assert_eq!(
            store.spend_credits(k.id, 6, next).await.unwrap(),
            spend(false, 5),
            "{name}"
        );
        let credits = store
            .get_keyspace_key(k.id)
            .await
            .unwrap()
            .unwrap()
            .credits
            .unwrap();
        assert_eq!(credits.remaining, 5, "{name}");
        assert_eq!(
            credits.refilled_at,
            Some(at("2026-05-16T00:00:00Z")),
            "{name}"
        );
        assert_eq!(
            store.spend_credits(k.id, 5, next).await.unwrap(),
            spend(true, 0)
        );

        // Unused credits do not pile up over several days.
        assert_eq!(
            store
                .spend_credits(k.id, 0, at("2026-05-20T00:00:01Z"))
                .await
                .unwrap(),
            spend(true, 5),
            "{name}"
        );

        // Credits with a refill but no refill time yet are refilled at the first spend.
        let never = Credits {
            remaining: 1,
            refill: Some(daily(9)),
            refilled_at: None,
        };
        store.set_credits(k.id, Some(&never)).await.unwrap();
        assert_eq!(
            store.spend_credits(k.id, 2, next).await.unwrap(),
            spend(true, 7)
        );
    }
}

#[tokio::test]
async fn credits_refill_on_the_first_of_the_month() {
    for (name, store) in backends().await.stores {
        let (_, ks) = seeded(&store, "acme").await;
        let minted = at("2026-01-31T12:00:00Z");
        let mut k = key(&ks, 1);
        k.credits = Some(Credits::new(
            1,
            Some(Refill {
                amount: 10,
                interval: RefillInterval::Month,
            }),
            minted,
        ));
        insert(&store, &k).await;

        assert_eq!(
            store.spend_credits(k.id, 1, minted).await.unwrap(),
            spend(true, 0)
        );
        assert_eq!(
            store
                .spend_credits(k.id, 1, at("2026-01-31T23:59:59.999Z"))
                .await
                .unwrap(),
            spend(false, 0),
            "{name}"
        );
        assert_eq!(
            store
                .spend_credits(k.id, 4, at("2026-02-01T00:00:00Z"))
                .await
                .unwrap(),
            spend(true, 6),
            "{name}"
        );
        assert_eq!(
            store
                .spend_credits(k.id, 6, at("2026-02-28T23:59:59.999Z"))
                .await
                .unwrap(),
            spend(true, 0),
            "{name}: the same month"
        );
        assert_eq!(
            store
                .spend_credits(k.id, 1, at("2026-02-28T23:59:59.999Z"))
                .await
                .unwrap(),
            spend(false, 0),
            "{name}"
        );
        assert_eq!(
            store
                .spend_credits(k.id, 1, at("2026-03-01T00:00:00Z"))
                .await
                .unwrap(),
            spend(true, 9),
            "{name}"
        );
        let credits = store.get_keyspace_key(k.id).await.unwrap().unwrap().credits;
        assert_eq!(
            credits.and_then(|c| c.refilled_at),
            Some(at("2026-03-01T00:00:00Z")),
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_change_log_names_changed_keys_and_credit_changes_but_never_spends() {
    for (name, store) in backends().await.stores {
        let (_, ks) = seeded(&store, "acme").await;
        let now = now_ms();
        let mut k = key(&ks, 1);
        k.credits = Some(Credits::new(
            100,
            Some(Refill {
                amount: 100,
                interval: RefillInterval::Day,
            }),
            at("2026-01-01T00:00:00Z"),
        ));
        insert(&store, &k).await;
        let (_, start) = store.key_changes_since(-1).await.unwrap();

        k.suspended_at = Some(now);
        store.update_keyspace_key(&k).await.unwrap();
        let (ids, after_update) = store.key_changes_since(start).await.unwrap();
        assert_eq!(ids, vec![k.id], "{name}: an update is a change");

        store
            .set_credits(k.id, Some(&Credits::new(5, None, now)))
            .await
            .unwrap();
        let (ids, after_credits) = store.key_changes_since(after_update).await.unwrap();
        assert_eq!(ids, vec![k.id], "{name}: new credits are a change");

        store
            .set_credits(
                k.id,
                Some(&Credits {
                    remaining: 3,
                    refill: Some(Refill {
                        amount: 3,
                        interval: RefillInterval::Day,
                    }),
                    refilled_at: Some(at("2026-01-01T00:00:00Z")),
                }),
            )
            .await
            .unwrap();
        let (_, settled) = store.key_changes_since(after_credits).await.unwrap();
        // Spends (a refill, a refused one, a cost of 0, an ordinary one) are not changes.
        store.spend_credits(k.id, 1, now).await.unwrap();
        store.spend_credits(k.id, 10, now).await.unwrap();
        store.spend_credits(k.id, 0, now).await.unwrap();
        store.spend_credits(k.id, 2, now).await.unwrap();
        let (ids, end) = store.key_changes_since(settled).await.unwrap();
        assert_eq!(ids, Vec::<KeyId>::new(), "{name}: spends are not logged");
        assert_eq!(end, settled, "{name}");
        assert_eq!(
            store.spend_credits(k.id, 1, now).await.unwrap(),
            spend(false, 0),
            "{name}"
        );
    }
}

/// Spends 1 credit of key `id` from `tasks` tasks, task `i` through `stores[i % len]`, each
/// until refused; returns how many spends succeeded.
async fn spend_until_refused(stores: &[Arc<dyn KeyspaceStore>], id: KeyId, tasks: usize) -> u64 {
    let now = Utc::now();
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let store = Arc::clone(&stores[i % stores.len()]);
            tokio::spawn(async move {
                let mut spent = 0u64;
                loop {
                    let got = store.spend_credits(id, 1, now).await.unwrap();
                    if !got.spent {
                        assert_eq!(got.remaining, 0);
                        return spent;
                    }
                    spent += 1;
                }
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    total
}

/// A key holding 1000 credits in `store`.
async fn thousand_credits(store: &Arc<dyn Store>) -> KeyId {
    let (_, ks) = seeded(store, "acme").await;
    let mut k = key(&ks, 1);
    k.credits = Some(Credits::new(1000, None, Utc::now()));
    insert(store, &k).await;
    k.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_tasks_spend_exactly_the_thousand_credits_of_a_memory_store() {
    let store: Arc<dyn Store> = Arc::new(MemoryKeyStore::new());
    let id = thousand_credits(&store).await;
    let spent = spend_until_refused(&[store], id, 64).await;
    assert_eq!(spent, 1000);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_tasks_spend_exactly_the_thousand_credits_of_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let store: Arc<dyn Store> = Arc::new(SqliteKeyStore::open(&path).await.unwrap());
    let id = thousand_credits(&store).await;
    let spent = spend_until_refused(&[Arc::clone(&store) as _], id, 64).await;
    eprintln!("sqlite, one store: {spent} of 1000 credits spent by 64 tasks");
    assert_eq!(spent, 1000);

    // Two connections to the one file, as two processes would hold: still exact.
    store
        .set_credits(id, Some(&Credits::new(1000, None, Utc::now())))
        .await
        .unwrap();
    let other: Arc<dyn KeyspaceStore> = Arc::new(SqliteKeyStore::open(&path).await.unwrap());
    let spent = spend_until_refused(&[store as _, other], id, 64).await;
    eprintln!("sqlite, two connections: {spent} of 1000 credits spent by 64 tasks");
    assert_eq!(spent, 1000);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_postgres_instances_spend_exactly_the_thousand_credits_between_them() {
    let Some(url) = postgres_url() else {
        return;
    };
    let scratch = align_keys::postgres::ScratchSchema::create(&url)
        .await
        .unwrap();
    let a: Arc<dyn Store> = Arc::new(PgKeyStore::open(scratch.pool().unwrap()).await.unwrap());
    let b: Arc<dyn KeyspaceStore> =
        Arc::new(PgKeyStore::open(scratch.pool().unwrap()).await.unwrap());
    let id = thousand_credits(&a).await;
    let started = std::time::Instant::now();
    let spent = spend_until_refused(&[Arc::clone(&a) as _, b], id, 64).await;
    eprintln!(
        "postgres, two instances: {spent} of 1000 credits spent by 64 tasks in {:?}",
        started.elapsed()
    );
    assert_eq!(spent, 1000);
    let left = a.get_keyspace_key(id).await.unwrap().unwrap().credits;
    assert_eq!(left.map(|c| c.remaining), Some(0));
}
