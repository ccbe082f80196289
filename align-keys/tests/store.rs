//! The `KeyStore` contract, run against every back-end.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

mod common;

use std::sync::Arc;

use align_keys::store::{KeyFilter, KeyStore, PageRequest};
use align_keys::*;
use chrono::{Duration, Utc};
use common::*;

/// Every back-end, each over an empty store; PostgreSQL (in a scratch schema dropped when the
/// loop ends) when `ALIGN_TEST_POSTGRES_URL` is set.
async fn backends() -> Backends {
    #[allow(unused_mut)]
    let mut stores = vec![(
        "memory",
        Arc::new(MemoryKeyStore::new()) as Arc<dyn KeyStore>,
    )];
    #[cfg(feature = "sqlite")]
    stores.push((
        "sqlite",
        Arc::new(SqliteKeyStore::open_in_memory().await.unwrap()),
    ));
    #[cfg(feature = "postgres")]
    let scratch = match postgres_url() {
        Some(url) => {
            let scratch = align_keys::postgres::ScratchSchema::create(&url)
                .await
                .unwrap();
            let store = PgKeyStore::open(scratch.pool().unwrap())
                .await
                .unwrap()
                .listen_for_changes(scratch.config())
                .unwrap();
            stores.push(("postgres", Arc::new(store)));
            Some(scratch)
        }
        None => None,
    };
    Backends {
        stores: stores.into_iter(),
        #[cfg(feature = "postgres")]
        _scratch: scratch,
    }
}

/// The stores to run a test body over; yields each once and keeps PostgreSQL's scratch schema
/// until the loop is done.
struct Backends {
    stores: std::vec::IntoIter<(&'static str, Arc<dyn KeyStore>)>,
    #[cfg(feature = "postgres")]
    _scratch: Option<align_keys::postgres::ScratchSchema>,
}

impl Iterator for Backends {
    type Item = (&'static str, Arc<dyn KeyStore>);

    fn next(&mut self) -> Option<Self::Item> {
        self.stores.next()
    }
}

fn record(f: &Fixture, prefix: &str) -> KeyRecord {
    KeyRecord {
        id: KeyId::new(),
        name: "k".into(),
        prefix: prefix.into(),
        environment: Environment::Live,
        organization_id: f.org.id,
        scope: Scope::Project(f.project.id),
        permissions: Some([Permission::KeysRead].into_iter().collect()),
        unrecognized_permissions: vec![],
        vocabulary: &align_keys::Vocabulary::SERVER,
        owner_id: None,
        meta: None,
        created_by: f.admin.id,
        created_at: DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap(),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        suspended_at: None,
        rotated_from: None,
        rate_limit_per_minute: None,
        allowed_cidrs: vec![],
    }
}

use chrono::DateTime;

#[tokio::test]
async fn organizations_projects_and_users_round_trip() {
    for (name, store) in backends().await {
        let f = seed(store.as_ref()).await;
        let got = store.get_organization(f.org.id).await.unwrap().unwrap();
        assert_eq!(got.name, "Acme", "{name}");
        let mut changed = got.clone();
        changed.security_contact = Some("security@acme.test".into());
        store.update_organization(&changed).await.unwrap();
        assert_eq!(
            store
                .get_organization(f.org.id)
                .await
                .unwrap()
                .unwrap()
                .security_contact
                .as_deref(),
            Some("security@acme.test")
        );
        assert_eq!(
            store.get_project(f.project.id).await.unwrap().unwrap().name,
            "billing"
        );
        store
            .set_user_role(f.admin.id, Role::Engineer)
            .await
            .unwrap();
        assert_eq!(
            store.get_user(f.admin.id).await.unwrap().unwrap().role,
            Role::Engineer
        );
        let dup = User {
            id: UserId::new(),
            ..f.admin.clone()
        };
        assert!(
            matches!(
                store.create_user(&dup).await,
                Err(Error::AlreadyExists(ObjectKind::User))
            ),
            "{name}"
        );
        let orphan = Project {
            id: ProjectId::new(),
            organization_id: OrganizationId::new(),
            name: "x".into(),
            created_at: Utc::now(),
        };
        assert!(
            matches!(store.create_project(&orphan).await, Err(Error::NotFound(_))),
            "{name}"
        );
        assert!(matches!(
            store.set_user_role(UserId::new(), Role::Admin).await,
            Err(Error::NotFound(ObjectKind::User))
        ));
    }
}

#[tokio::test]
async fn keys_are_found_by_hash_and_prefixes_are_unique() {
    for (name, store) in backends().await {
        let f = seed(store.as_ref()).await;
        let r = record(&f, "ako_0000abcd");
        let h = KeyHash([7; 32]);
        store.insert_key(&r, &h).await.unwrap();
        assert_eq!(
            store.find_key_by_hash(&h).await.unwrap().as_ref(),
            Some(&r),
            "{name}"
        );
        assert_eq!(
            store.get_key(r.id).await.unwrap().as_ref(),
            Some(&r),
            "{name}"
        );
        assert_eq!(
            store.find_key_by_hash(&KeyHash([8; 32])).await.unwrap(),
            None
        );
        let same_prefix = record(&f, "ako_0000abcd");
        assert!(
            matches!(
                store.insert_key(&same_prefix, &KeyHash([9; 32])).await,
                Err(Error::PrefixTaken)
            ),
            "{name}"
        );
        let same_hash = record(&f, "ako_0000abce");
        assert!(
            matches!(
                store.insert_key(&same_hash, &h).await,
                Err(Error::AlreadyExists(ObjectKind::ApiKey))
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn updates_never_undo_revocation_and_last_used_only_moves_forward() {
    for (name, store) in backends().await {
        let f = seed(store.as_ref()).await;
        let mut r = record(&f, "ako_00000001");
        store.insert_key(&r, &KeyHash([1; 32])).await.unwrap();
        let t0 = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        r.revoked_at = Some(t0);
        r.name = "renamed".into();
        store.update_key(&r).await.unwrap();
        r.revoked_at = None;
        store.update_key(&r).await.unwrap();
        let got = store.get_key(r.id).await.unwrap().unwrap();
        assert_eq!(got.revoked_at, Some(t0), "{name}");
        assert_eq!(got.name, "renamed");
        let later = t0 + Duration::seconds(5);
        store.record_last_used(&[(r.id, later)]).await.unwrap();
        store.record_last_used(&[(r.id, t0)]).await.unwrap();
        assert_eq!(
            store.get_key(r.id).await.unwrap().unwrap().last_used_at,
            Some(later),
            "{name}"
        );
        let missing = record(&f, "ako_00000002");
        assert!(matches!(
            store.update_key(&missing).await,
            Err(Error::NotFound(ObjectKind::ApiKey))
        ));
    }
}

#[tokio::test]
async fn lists_page_with_opaque_cursors_and_filters() {
    for (name, store) in backends().await {
        let f = seed(store.as_ref()).await;
        let mut ids = Vec::new();
        for i in 0..7u8 {
            let mut r = record(&f, &format!("ako_000000{i:02x}"));
            if i % 2 == 0 {
                r.environment = Environment::Sandbox;
                r.prefix = format!("akt_000000{i:02x}");
            }
            if i == 6 {
                r.revoked_at = Some(Utc::now());
            }
            store.insert_key(&r, &KeyHash([i; 32])).await.unwrap();
            ids.push(r.id);
        }
        let filter = KeyFilter {
            organization_id: f.org.id,
            project_id: None,
            environment: None,
            include_revoked: true,
        };
        let mut seen = Vec::new();
        let mut req = PageRequest {
            limit: 3,
            cursor: None,
        };
        loop {
            let page = store.list_keys(&filter, &req).await.unwrap();
            assert!(page.data.len() <= 3);
            seen.extend(page.data.iter().map(|k| k.id));
            match page.next_cursor {
                Some(c) => req.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, ids, "{name}: pages cover every key once, in order");
        let sandbox_live_only = KeyFilter {
            environment: Some(Environment::Sandbox),
            include_revoked: false,
            ..filter
        };
        let page = store
            .list_keys(&sandbox_live_only, &PageRequest::default())
            .await
            .unwrap();
        assert_eq!(
            page.data.len(),
            3,
            "{name}: sandbox keys 0,2,4 (6 is revoked)"
        );
        let other_project = KeyFilter {
            project_id: Some(ProjectId::new()),
            ..filter
        };
        assert!(
            store
                .list_keys(&other_project, &PageRequest::default())
                .await
                .unwrap()
                .data
                .is_empty()
        );
        let bad = PageRequest {
            limit: 3,
            cursor: Some("'; DROP TABLE keys_api_keys; --".into()),
        };
        assert!(
            matches!(
                store.list_keys(&filter, &bad).await,
                Err(Error::InvalidCursor)
            ),
            "{name}"
        );
        let projects = store
            .list_projects(f.org.id, &PageRequest::default())
            .await
            .unwrap();
        assert_eq!(projects.data.len(), 1);
        let users = store
            .list_users(f.org.id, &PageRequest::default())
            .await
            .unwrap();
        assert_eq!(users.data.len(), 1);
        let orgs = store
            .list_organizations(&PageRequest::default())
            .await
            .unwrap();
        assert_eq!(orgs.data.len(), 1);
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("align.db");
    let (token, record, f) = {
        let store: Arc<dyn KeyStore> = Arc::new(SqliteKeyStore::open(&path).await.unwrap());
        let f = seed(store.as_ref()).await;
        let keys = manager(store);
        let minted = keys
            .mint(new_key(&f, "prod-sync", Environment::Live), Utc::now())
            .await
            .unwrap();
        keys.verifier()
            .verify(minted.token.expose(), Utc::now())
            .await
            .unwrap();
        keys.verifier().flush_last_used().await.unwrap();
        (minted.token, minted.record, f)
    };
    let store = SqliteKeyStore::open(&path).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 9);
    assert_eq!(
        store
            .get_organization(f.org.id)
            .await
            .unwrap()
            .unwrap()
            .name,
        "Acme"
    );
    let again = store.get_key(record.id).await.unwrap().unwrap();
    assert_eq!(again.prefix, record.prefix);
    assert!(
        again.last_used_at.is_some(),
        "flushed last-used time survives"
    );
    let keys = manager(Arc::new(store));
    let seen = keys
        .verifier()
        .verify(token.expose(), Utc::now())
        .await
        .unwrap();
    assert!(matches!(seen, Verification::Valid(_)));
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn no_token_or_secret_reaches_the_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("align.db");
    let store: Arc<dyn KeyStore> = Arc::new(SqliteKeyStore::open(&path).await.unwrap());
    let f = seed(store.as_ref()).await;
    let keys = manager(Arc::clone(&store));
    let mut tokens = Vec::new();
    for i in 0..1_000 {
        let env = if i % 2 == 0 {
            Environment::Live
        } else {
            Environment::Sandbox
        };
        let minted = keys
            .mint(new_key(&f, &format!("k{i}"), env), Utc::now())
            .await
            .unwrap();
        tokens.push(minted.token);
    }
    drop(keys);
    drop(store);
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(bytes.len() > 10_000, "the database holds the 1,000 keys");
    // Every 16-byte window of the files; any token fragment of 16 bytes would be in it.
    let windows: std::collections::HashSet<&[u8]> = bytes.windows(16).collect();
    for t in &tokens {
        let secret = &t.expose().as_bytes()[13..];
        for fragment in secret.windows(16) {
            assert!(
                !windows.contains(fragment),
                "token material found in the database files"
            );
        }
    }
}

#[tokio::test]
async fn rate_limit_overrides_and_allowed_networks_round_trip() {
    for (name, store) in backends().await {
        let f = seed(store.as_ref()).await;
        let mut r = record(&f, "ako_0000beef");
        r.rate_limit_per_minute = Some(42);
        r.allowed_cidrs = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        store.insert_key(&r, &KeyHash([3; 32])).await.unwrap();
        assert_eq!(
            store.get_key(r.id).await.unwrap().as_ref(),
            Some(&r),
            "{name}"
        );
        r.rate_limit_per_minute = None;
        r.allowed_cidrs.clear();
        store.update_key(&r).await.unwrap();
        assert_eq!(
            store.get_key(r.id).await.unwrap().as_ref(),
            Some(&r),
            "{name}"
        );
    }
}

#[test]
fn allow_lists_match_v4_v6_and_mapped_addresses() {
    let f = Fixture {
        org: Organization {
            id: OrganizationId::new(),
            name: "o".into(),
            security_contact: None,
            leak_policy: align_keys::LeakPolicy::default(),
            privacy_contact: None,
            created_at: Utc::now(),
        },
        admin: User {
            id: UserId::new(),
            organization_id: OrganizationId::new(),
            email: "a".into(),
            name: None,
            role: Role::Admin,
            created_at: Utc::now(),
        },
        project: Project {
            id: ProjectId::new(),
            organization_id: OrganizationId::new(),
            name: "p".into(),
            created_at: Utc::now(),
        },
    };
    let mut r = record(&f, "ako_00000000");
    assert!(
        r.allows_ip("203.0.113.9".parse().unwrap()),
        "no list: any address"
    );
    r.allowed_cidrs = vec![
        "192.0.2.0/24".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    assert!(r.allows_ip("192.0.2.77".parse().unwrap()));
    assert!(r.allows_ip("::ffff:192.0.2.77".parse().unwrap()));
    assert!(r.allows_ip("2001:db8::1".parse().unwrap()));
    assert!(!r.allows_ip("198.51.100.1".parse().unwrap()));
    assert!(!r.allows_ip("::1".parse().unwrap()));
}

#[tokio::test]
async fn the_change_log_reports_key_changes_from_any_writer() {
    for (name, store) in backends().await {
        let f = seed(store.as_ref()).await;
        let (none, start) = store.key_changes_since(-1).await.unwrap();
        assert!(none.is_empty());
        let mut r = record(&f, "ako_0000c0de");
        store.insert_key(&r, &KeyHash([4; 32])).await.unwrap();
        store.record_last_used(&[(r.id, Utc::now())]).await.unwrap();
        let (quiet, same) = store.key_changes_since(start).await.unwrap();
        assert!(quiet.is_empty(), "{name}: last-used writes are not changes");
        r.revoked_at = Some(Utc::now());
        store.update_key(&r).await.unwrap();
        let (changed, next) = store.key_changes_since(same).await.unwrap();
        assert_eq!(changed, vec![r.id], "{name}");
        assert!(store.key_changes_since(next).await.unwrap().0.is_empty());
    }
}

#[tokio::test]
async fn a_role_change_is_logged_as_a_change_of_each_of_the_users_keys() {
    for (name, store) in backends().await {
        let f = seed(store.as_ref()).await;
        let r = record(&f, "ako_0000beef");
        store.insert_key(&r, &KeyHash([5; 32])).await.unwrap();
        let (_, start) = store.key_changes_since(-1).await.unwrap();
        // The same role again is no change.
        store.set_user_role(f.admin.id, Role::Admin).await.unwrap();
        let (none, same) = store.key_changes_since(start).await.unwrap();
        assert!(none.is_empty(), "{name}");
        store.set_user_role(f.admin.id, Role::Viewer).await.unwrap();
        let (changed, _) = store.key_changes_since(same).await.unwrap();
        assert!(changed.contains(&r.id), "{name}: {changed:?}");
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_revocation_by_another_process_reaches_a_verifier_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("align.db");
    let server_store: Arc<dyn KeyStore> = Arc::new(SqliteKeyStore::open(&path).await.unwrap());
    let f = seed(server_store.as_ref()).await;
    let server = manager(server_store);
    let watcher = server
        .verifier()
        .spawn_change_watcher(std::time::Duration::from_millis(50));
    let minted = server
        .mint(new_key(&f, "x", Environment::Live), Utc::now())
        .await
        .unwrap();
    let t = minted.token.expose();
    assert!(matches!(
        server.verifier().verify(t, Utc::now()).await.unwrap(),
        Verification::Valid(_)
    ));
    // Another process (the operator CLI) opens the same file and revokes.
    let cli = manager(Arc::new(SqliteKeyStore::open(&path).await.unwrap()));
    cli.revoke(minted.record.id, Utc::now()).await.unwrap();
    let seen = seen_revoked_within_a_second(&server, t).await;
    watcher.abort();
    assert!(seen, "the cached key was not refreshed within a second");
}

/// The watcher's first read only finds where the change log ends. A key cached and then
/// revoked by another process before that read must still be dropped: this is the order a
/// loaded machine produced now and then in the test above (the watcher task ran late).
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_revocation_before_the_watchers_first_read_still_reaches_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("align.db");
    let server_store: Arc<dyn KeyStore> = Arc::new(SqliteKeyStore::open(&path).await.unwrap());
    let f = seed(server_store.as_ref()).await;
    let server = manager(server_store);
    let minted = server
        .mint(new_key(&f, "x", Environment::Live), Utc::now())
        .await
        .unwrap();
    let t = minted.token.expose();
    assert!(matches!(
        server.verifier().verify(t, Utc::now()).await.unwrap(),
        Verification::Valid(_)
    ));
    let cli = manager(Arc::new(SqliteKeyStore::open(&path).await.unwrap()));
    cli.revoke(minted.record.id, Utc::now()).await.unwrap();
    let watcher = server
        .verifier()
        .spawn_change_watcher(std::time::Duration::from_millis(50));
    let seen = seen_revoked_within_a_second(&server, t).await;
    watcher.abort();
    assert!(
        seen,
        "a key revoked before the watcher's first read stayed cached as valid"
    );
}

/// Whether `server`'s verifier reports `token` revoked within a second (polled every 25 ms).
#[cfg(feature = "sqlite")]
async fn seen_revoked_within_a_second(server: &KeyManager, token: &str) -> bool {
    for _ in 0..40 {
        if matches!(
            server.verifier().verify(token, Utc::now()).await.unwrap(),
            Verification::Revoked(_)
        ) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    false
}

fn session(user: UserId, from: chrono::DateTime<Utc>, hours: i64) -> UserSession {
    UserSession {
        user_id: user,
        csrf: [7; 32],
        created_at: DateTime::from_timestamp_millis(from.timestamp_millis()).unwrap(),
        expires_at: DateTime::from_timestamp_millis(
            (from + Duration::hours(hours)).timestamp_millis(),
        )
        .unwrap(),
    }
}

#[tokio::test]
async fn passwords_are_kept_as_hashes_and_found_by_email_in_every_organisation() {
    for (name, store) in backends().await {
        let f = seed(store.as_ref()).await;
        assert!(
            store
                .user_credentials("admin@acme.test")
                .await
                .unwrap()
                .is_empty(),
            "{name}: no password yet"
        );
        let hash = PasswordHash::derive("correct horse battery", MIN_PBKDF2_ITERATIONS).unwrap();
        store.set_user_password(f.admin.id, &hash).await.unwrap();
        let found = store.user_credentials("admin@acme.test").await.unwrap();
        assert_eq!(found.len(), 1, "{name}");
        assert_eq!(
            (found[0].0.id, found[0].0.role),
            (f.admin.id, Role::Admin),
            "{name}"
        );
        assert_eq!(found[0].1, hash, "{name}");
        assert!(found[0].1.verify("correct horse battery"), "{name}");
        assert!(
            store
                .user_credentials("ADMIN@acme.test")
                .await
                .unwrap()
                .is_empty(),
            "{name}: e-mails match exactly"
        );

        // The same e-mail in a second organisation is a second user with its own password.
        let other = seed(store.as_ref()).await;
        let hash2 = PasswordHash::derive("another long password", MIN_PBKDF2_ITERATIONS).unwrap();
        store
            .set_user_password(other.admin.id, &hash2)
            .await
            .unwrap();
        let found = store.user_credentials("admin@acme.test").await.unwrap();
        let ids: Vec<UserId> = found.iter().map(|(u, _)| u.id).collect();
        assert_eq!(ids, [f.admin.id, other.admin.id], "{name}: oldest first");

        // Replacing a password replaces the hash.
        let hash3 = PasswordHash::derive("a third long password", MIN_PBKDF2_ITERATIONS).unwrap();
        store.set_user_password(f.admin.id, &hash3).await.unwrap();
        let found = store.user_credentials("admin@acme.test").await.unwrap();
        assert!(found[0].1.verify("a third long password"), "{name}");
        assert!(!found[0].1.verify("correct horse battery"), "{name}");

        assert!(
            matches!(
                store.set_user_password(UserId::new(), &hash).await,
                Err(Error::NotFound(ObjectKind::User))
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn sessions_expire_end_on_sign_out_and_on_a_password_change() {
    for (name, store) in backends().await {
        let f = seed(store.as_ref()).await;
        let now = Utc::now();
        let (a, b, old) = (
            SessionHash::of("token-a"),
            SessionHash::of("token-b"),
            SessionHash::of("token-old"),
        );
        store
            .create_session(&a, &session(f.admin.id, now, 12))
            .await
            .unwrap();
        store
            .create_session(&b, &session(f.admin.id, now, 12))
            .await
            .unwrap();
        store
            .create_session(&old, &session(f.admin.id, now - Duration::hours(13), 12))
            .await
            .unwrap();
        let got = store.get_session(&a, now).await.unwrap().unwrap();
        assert_eq!(got, session(f.admin.id, now, 12), "{name}");
        assert_eq!(
            store
                .get_session(&SessionHash::of("token-x"), now)
                .await
                .unwrap(),
            None,
            "{name}: unknown token"
        );
        assert_eq!(
            store.get_session(&old, now).await.unwrap(),
            None,
            "{name}: an expired session is not returned"
        );
        assert_eq!(
            store
                .get_session(&a, now + Duration::hours(12))
                .await
                .unwrap(),
            None,
            "{name}: a session ends at its expiry"
        );
        assert!(
            matches!(
                store.create_session(&a, &session(f.admin.id, now, 1)).await,
                Err(Error::AlreadyExists(ObjectKind::Session))
            ),
            "{name}"
        );
        assert!(
            matches!(
                store
                    .create_session(&SessionHash::of("t"), &session(UserId::new(), now, 1))
                    .await,
                Err(Error::NotFound(ObjectKind::User))
            ),
            "{name}"
        );

        assert_eq!(
            store.delete_expired_sessions(now).await.unwrap(),
            1,
            "{name}"
        );
        store.delete_session(&a).await.unwrap();
        store.delete_session(&a).await.unwrap();
        assert_eq!(store.get_session(&a, now).await.unwrap(), None, "{name}");
        assert!(
            store.get_session(&b, now).await.unwrap().is_some(),
            "{name}"
        );

        let hash = PasswordHash::derive("correct horse battery", MIN_PBKDF2_ITERATIONS).unwrap();
        store.set_user_password(f.admin.id, &hash).await.unwrap();
        assert_eq!(
            store.get_session(&b, now).await.unwrap(),
            None,
            "{name}: a new password signs the user out everywhere"
        );
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn no_password_or_session_token_reaches_the_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("align.db");
    let store = SqliteKeyStore::open(&path).await.unwrap();
    let f = seed(&store).await;
    let password = "Tr0ub4dor&3-unique-password";
    let token = "c2Vzc2lvbi10b2tlbi1mb3ItdGhlLWZpbGUtdGVzdA";
    let hash = PasswordHash::derive(password, MIN_PBKDF2_ITERATIONS).unwrap();
    store.set_user_password(f.admin.id, &hash).await.unwrap();
    store
        .create_session(
            &SessionHash::of(token),
            &session(f.admin.id, Utc::now(), 12),
        )
        .await
        .unwrap();
    drop(store);
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"pbkdf2-sha256$100000$"), "the hash is stored");
    assert!(!has(password.as_bytes()), "the password is not");
    assert!(!has(token.as_bytes()), "the session token is not");
    assert!(has(SessionHash::of(token).as_bytes()), "its hash is");
}

#[tokio::test]
async fn users_are_corrected_and_deleted_and_their_keys_change_hands() {
    for (name, store) in backends().await {
        let f = seed(store.as_ref()).await;
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
        let dana = User {
            id: UserId::new(),
            organization_id: f.org.id,
            email: "dana@acme.test".into(),
            name: Some("Dana".into()),
            role: Role::Engineer,
            created_at: now,
        };
        store.create_user(&dana).await.unwrap();
        assert_eq!(store.get_user(dana.id).await.unwrap(), Some(dana.clone()));

        // Corrected: e-mail and name; another user's e-mail is taken.
        store
            .update_user_profile(dana.id, "dana@acme.example", None)
            .await
            .unwrap();
        let got = store.get_user(dana.id).await.unwrap().unwrap();
        assert_eq!(
            (got.email.as_str(), got.name),
            ("dana@acme.example", None),
            "{name}"
        );
        assert!(matches!(
            store
                .update_user_profile(dana.id, "admin@acme.test", None)
                .await,
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            store
                .update_user_profile(UserId::new(), "x@y.z", None)
                .await,
            Err(Error::NotFound(_))
        ));

        // Keys change hands, and each is a change in the log.
        let mut r = record(&f, "ako_0000d0d0");
        r.created_by = dana.id;
        store.insert_key(&r, &KeyHash([7; 32])).await.unwrap();
        let (_, start) = store.key_changes_since(-1).await.unwrap();
        assert_eq!(store.transfer_keys(dana.id, f.admin.id).await.unwrap(), 1);
        assert_eq!(
            store.get_key(r.id).await.unwrap().unwrap().created_by,
            f.admin.id,
            "{name}"
        );
        let (changed, _) = store.key_changes_since(start).await.unwrap();
        assert!(changed.contains(&r.id), "{name}: {changed:?}");

        // Sessions end; the user goes, and their remaining keys are changes too.
        store
            .create_session(&SessionHash::of("dana-1"), &session(dana.id, now, 1))
            .await
            .unwrap();
        store
            .create_session(&SessionHash::of("dana-2"), &session(dana.id, now, 1))
            .await
            .unwrap();
        assert_eq!(
            store.delete_user_sessions(dana.id).await.unwrap(),
            2,
            "{name}"
        );
        store
            .create_session(&SessionHash::of("dana-3"), &session(dana.id, now, 1))
            .await
            .unwrap();
        let mut own = record(&f, "ako_0000d0d1");
        own.created_by = dana.id;
        store.insert_key(&own, &KeyHash([8; 32])).await.unwrap();
        let (_, before) = store.key_changes_since(-1).await.unwrap();
        store.delete_user(dana.id).await.unwrap();
        assert_eq!(store.get_user(dana.id).await.unwrap(), None, "{name}");
        assert_eq!(
            store
                .get_session(&SessionHash::of("dana-3"), now)
                .await
                .unwrap(),
            None,
            "{name}"
        );
        let (changed, _) = store.key_changes_since(before).await.unwrap();
        assert!(changed.contains(&own.id), "{name}: {changed:?}");
        assert!(matches!(
            store.delete_user(dana.id).await,
            Err(Error::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn projects_are_deleted_and_the_privacy_contact_round_trips() {
    for (name, store) in backends().await {
        let f = seed(store.as_ref()).await;
        store.delete_project(f.project.id).await.unwrap();
        assert_eq!(
            store.get_project(f.project.id).await.unwrap(),
            None,
            "{name}"
        );
        assert!(matches!(
            store.delete_project(f.project.id).await,
            Err(Error::NotFound(_))
        ));
        let mut org = f.org.clone();
        org.privacy_contact = Some("privacy@acme.test".into());
        store.update_organization(&org).await.unwrap();
        let got = store.get_organization(org.id).await.unwrap().unwrap();
        assert_eq!(got.privacy_contact, org.privacy_contact, "{name}");
    }
}

#[tokio::test]
async fn owner_id_and_meta_round_trip_change_and_clear() {
    for (name, store) in backends().await {
        let f = seed(store.as_ref()).await;
        let mut r = record(&f, "ako_0000a11c");
        r.owner_id = Some("cus_8812".into());
        let mut meta = Meta::new();
        meta.insert("plan".into(), serde_json::json!("pro"));
        meta.insert("seats".into(), serde_json::json!([1, 2, {"x": null}]));
        r.meta = Some(meta);
        store.insert_key(&r, &KeyHash([4; 32])).await.unwrap();
        assert_eq!(
            store.get_key(r.id).await.unwrap().as_ref(),
            Some(&r),
            "{name}"
        );
        let (_, start) = store.key_changes_since(-1).await.unwrap();
        r.owner_id = Some("cus_9".into());
        r.meta = None;
        store.update_key(&r).await.unwrap();
        assert_eq!(
            store.get_key(r.id).await.unwrap().as_ref(),
            Some(&r),
            "{name}"
        );
        let (changed, _) = store.key_changes_since(start).await.unwrap();
        assert!(
            changed.contains(&r.id),
            "{name}: an owner change is a change"
        );
        r.owner_id = None;
        store.update_key(&r).await.unwrap();
        assert_eq!(
            store.get_key(r.id).await.unwrap().as_ref(),
            Some(&r),
            "{name}"
        );
    }
}

/// An embedder's vocabulary with one name the server's does not declare.
const SHARED: Vocabulary = Vocabulary::new(&["keys:read", "invoices:read"]);

#[tokio::test]
async fn a_stored_permission_the_vocabulary_does_not_declare_grants_nothing_and_is_kept() {
    for (name, store) in backends().await {
        let f = seed(store.as_ref()).await;
        let keys = manager(store.clone());
        let minted = token::generate(Environment::Live).unwrap();
        let mut r = record(&f, &minted.prefix);
        r.vocabulary = &SHARED;
        r.permissions = Some(SHARED.all());
        let hash = Sha256Hasher.hash(minted.token.expose());
        store.insert_key(&r, &hash).await.unwrap();

        // Read with the server's vocabulary: `invoices:read` grants nothing, and is kept.
        let seen = keys
            .verifier()
            .verify(minted.token.expose(), Utc::now())
            .await;
        let Ok(Verification::Valid(v)) = seen else {
            panic!("{name}: an unknown stored permission must not fail verification: {seen:?}");
        };
        let got = v.record();
        assert_eq!(
            got.permissions,
            Some(PermissionSet::only(Permission::KeysRead)),
            "{name}"
        );
        assert_eq!(got.unrecognized_permissions, ["invoices:read"], "{name}");
        let caller = Caller {
            key: got,
            creator_role: Role::Admin,
        };
        assert_eq!(
            caller.effective_permissions(),
            PermissionSet::only(Permission::KeysRead)
        );

        // Kept through an update and a rotation.
        keys.update(
            r.id,
            KeyChanges {
                name: Some("renamed".into()),
                ..KeyChanges::default()
            },
        )
        .await
        .unwrap();
        let again = store.get_key(r.id).await.unwrap().unwrap();
        assert_eq!(again.unrecognized_permissions, ["invoices:read"], "{name}");
        let rotation = keys
            .rotate(r.id, std::time::Duration::from_secs(60), Utc::now())
            .await
            .unwrap();
        let successor = store
            .get_key(rotation.successor.record.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            successor.unrecognized_permissions,
            ["invoices:read"],
            "{name}"
        );
        assert_eq!(successor.permissions, got.permissions, "{name}");
        // Read back with the vocabulary that declares it, it grants again.
        assert_eq!(
            successor.in_vocabulary(&SHARED).permissions,
            Some(SHARED.all()),
            "{name}"
        );
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_store_given_an_embedders_vocabulary_mints_and_reads_its_names() {
    const API: Vocabulary = Vocabulary::new(&["invoices:read", "invoices:write", "customers:read"])
        .with_mint_permission("invoices:write");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let store = Arc::new(
        SqliteKeyStore::open(&path)
            .await
            .unwrap()
            .with_vocabulary(&API),
    );
    let f = seed(store.as_ref()).await;
    let keys = manager(store.clone());
    let mut new = NewKey::new("acme", f.org.id);
    new.permissions = Some(API.parse(["invoices:*"]).unwrap());
    new.owner_id = Some("cus_1".into());
    let minted = keys.mint(new, Utc::now()).await.unwrap();
    assert_eq!(minted.record.created_by, UserId::SERVICE);
    let got = store.get_key(minted.record.id).await.unwrap().unwrap();
    assert_eq!(*got.vocabulary, API);
    assert_eq!(got.permissions, minted.record.permissions);
    assert_eq!(got.owner_id.as_deref(), Some("cus_1"));
    let names: Vec<_> = got.permission_names().unwrap().iter().collect();
    assert_eq!(names, ["invoices:read", "invoices:write"]);
    assert_eq!(
        serde_json::to_string(&got.permission_names()).unwrap(),
        r#"["invoices:read","invoices:write"]"#
    );
    // The same file read with the server's vocabulary: both names grant nothing there.
    drop(keys);
    let server = SqliteKeyStore::open(&path).await.unwrap();
    let seen = server.get_key(got.id).await.unwrap().unwrap();
    assert_eq!(seen.permissions, Some(PermissionSet::EMPTY));
    assert_eq!(
        seen.unrecognized_permissions,
        ["invoices:read", "invoices:write"]
    );
}

#[tokio::test]
async fn an_owner_id_over_256_characters_or_meta_over_4_kib_is_refused() {
    let store = Arc::new(MemoryKeyStore::new());
    let f = seed(store.as_ref()).await;
    let keys = manager(store);
    let mut new = new_key(&f, "k", Environment::Live);
    new.owner_id = Some("x".repeat(257));
    assert!(matches!(
        keys.mint(new.clone(), Utc::now()).await,
        Err(Error::InvalidInput {
            field: "ownerId",
            ..
        })
    ));
    new.owner_id = Some("é".repeat(256));
    let mut meta = Meta::new();
    meta.insert("blob".into(), serde_json::json!("y".repeat(4096)));
    new.meta = Some(meta.clone());
    assert!(matches!(
        keys.mint(new.clone(), Utc::now()).await,
        Err(Error::InvalidInput { field: "meta", .. })
    ));
    meta.insert("blob".into(), serde_json::json!("y".repeat(4096 - 11)));
    assert_eq!(serde_json::to_string(&meta).unwrap().len(), 4096);
    new.meta = Some(meta);
    let minted = keys.mint(new, Utc::now()).await.unwrap();
    let too_big = Meta::from_iter([("b".to_owned(), serde_json::json!("z".repeat(5000)))]);
    let changes = KeyChanges {
        meta: Some(Some(too_big)),
        ..KeyChanges::default()
    };
    assert!(matches!(
        keys.update(minted.record.id, changes).await,
        Err(Error::InvalidInput { field: "meta", .. })
    ));
}
