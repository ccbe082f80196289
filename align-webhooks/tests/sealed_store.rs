#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Endpoint keys at rest (DESIGN §8, finding 8 of issue 20), on SQLite and on PostgreSQL
//! (with `ALIGN_TEST_POSTGRES_URL`): stored sealed, sealed when an older database opens,
//! refused to a process without the key, re-sealed by a rotation.

#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use align_core::Environment;
use align_webhooks::{
    Endpoint, EndpointKey, Error, PgWebhookStore, Sealer, SealingKey, SigningKey, SigningSecret,
    SqliteWebhookStore, WebhookStore, is_sealed, sealed_key_id,
};
use chrono::Utc;

use common::endpoint;

/// One database, opened as often as a test likes, with its `webhooks_endpoints.secrets` column
/// reachable underneath the store.
enum Db {
    Sqlite(PathBuf),
    Postgres(Box<align_core::postgres::ScratchSchema>),
}

impl Db {
    async fn every(dir: &Path) -> Vec<(&'static str, Self)> {
        let mut dbs = vec![("sqlite", Self::Sqlite(dir.join("align.db")))];
        if let Some(url) = common::postgres_url() {
            let scratch = align_core::postgres::ScratchSchema::create(&url)
                .await
                .unwrap();
            dbs.push(("postgres", Self::Postgres(Box::new(scratch))));
        }
        dbs
    }

    async fn open(&self, sealer: Sealer) -> align_webhooks::Result<Arc<dyn WebhookStore>> {
        Ok(match self {
            Self::Sqlite(path) => Arc::new(SqliteWebhookStore::open(path, sealer).await?),
            Self::Postgres(s) => Arc::new(PgWebhookStore::open(s.pool().unwrap(), sealer).await?),
        })
    }

    /// SQL on the database underneath the store (`?1`/`$1` parameters written as `$1`).
    async fn sql(&self, sql: &str, params: &[&str]) -> Vec<Vec<String>> {
        match self {
            Self::Sqlite(path) => {
                let c = rusqlite::Connection::open(path).unwrap();
                let mut stmt = c.prepare(sql).unwrap();
                let n = stmt.column_count();
                stmt.query_map(rusqlite::params_from_iter(params), |r| {
                    (0..n).map(|i| r.get::<_, String>(i)).collect()
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
            }
            Self::Postgres(s) => {
                let client = s.pool().unwrap().get().await.unwrap();
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                client
                    .query(sql, &params)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (0..r.len()).map(|i| r.get::<_, String>(i)).collect())
                    .collect()
            }
        }
    }

    /// Every endpoint id with its stored keys, as the table holds them.
    async fn stored(&self) -> Vec<(String, String)> {
        self.sql(
            "SELECT id, secrets FROM webhooks_endpoints ORDER BY seq",
            &[],
        )
        .await
        .into_iter()
        .map(|mut row| {
            let secrets = row.pop().unwrap();
            (row.pop().unwrap(), secrets)
        })
        .collect()
    }
}

fn same_keys(a: &Endpoint, b: &Endpoint) -> bool {
    let texts = |e: &Endpoint| -> Vec<String> {
        e.secrets
            .active_at(Utc::now())
            .map(|k| k.expose().expose().to_owned())
            .collect()
    };
    texts(a) == texts(b)
}

/// An endpoint whose keys were rotated (two keys sign) and one with an ed25519 key.
fn endpoints() -> Vec<Endpoint> {
    let mut rotated = endpoint(Environment::Live, "https://a.example/");
    rotated.secrets.rotate(
        EndpointKey::Symmetric(SigningSecret::generate().unwrap()),
        Utc::now(),
        align_webhooks::DEFAULT_GRACE,
    );
    let mut ed = endpoint(Environment::Live, "https://b.example/");
    ed.secrets = align_webhooks::EndpointSecrets::new(EndpointKey::Asymmetric(
        SigningKey::generate().unwrap(),
    ));
    vec![
        rotated,
        ed,
        endpoint(Environment::Sandbox, "http://c.example/"),
    ]
}

fn sealer() -> Sealer {
    Sealer::new(SealingKey::generate().unwrap())
}

#[tokio::test]
async fn endpoint_keys_are_stored_sealed_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    for (name, db) in Db::every(dir.path()).await {
        let sealer = sealer();
        let store = db.open(sealer.clone()).await.unwrap();
        let eps = endpoints();
        for ep in &eps {
            store.create_endpoint(ep).await.unwrap();
        }
        for (id, stored) in db.stored().await {
            assert!(is_sealed(&stored), "{name}: {stored}");
            assert_eq!(sealed_key_id(&stored).unwrap(), sealer.current_id());
            assert!(
                !stored.contains("whsec_") && !stored.contains("whsk_"),
                "{name} {id}"
            );
        }
        for ep in &eps {
            let texts: Vec<_> = ep
                .secrets
                .active_at(Utc::now())
                .map(|k| k.expose().expose().to_owned())
                .collect();
            for (_, stored) in db.stored().await {
                for t in &texts {
                    let body = t.split_once('_').unwrap().1;
                    assert!(
                        !stored.contains(body),
                        "{name}: a key's base64 body at rest"
                    );
                }
            }
            assert!(
                same_keys(&store.endpoint(ep.id).await.unwrap(), ep),
                "{name}"
            );
        }
        let listed = store.endpoints().await.unwrap();
        assert_eq!(listed.len(), eps.len(), "{name}");
    }
}

#[tokio::test]
async fn plaintext_keys_from_before_sealing_are_sealed_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    for (name, db) in Db::every(dir.path()).await {
        // A database as an earlier version left it: plaintext keys and no key recorded.
        let eps = endpoints();
        {
            let store = db.open(sealer()).await.unwrap();
            for ep in &eps {
                store.create_endpoint(ep).await.unwrap();
            }
        }
        for ep in &eps {
            let plain = ep.secrets.to_stored().unwrap();
            db.sql(
                "UPDATE webhooks_endpoints SET secrets = $1 WHERE id = $2",
                &[plain.expose(), &ep.id.to_string()],
            )
            .await;
        }
        db.sql("DELETE FROM webhooks_sealing", &[]).await;
        let plaintexts: Vec<String> = eps
            .iter()
            .flat_map(|ep| ep.secrets.active_at(Utc::now()))
            .map(|k| k.expose().expose().to_owned())
            .collect();
        assert!(
            db.stored()
                .await
                .iter()
                .all(|(_, s)| s.contains("whsec_") || s.contains("whsk_")),
            "{name}"
        );

        let sealer = sealer();
        let store = db.open(sealer.clone()).await.unwrap();
        for (_, stored) in db.stored().await {
            assert!(is_sealed(&stored), "{name}");
            assert_eq!(sealed_key_id(&stored).unwrap(), sealer.current_id());
        }
        for ep in &eps {
            assert!(
                same_keys(&store.endpoint(ep.id).await.unwrap(), ep),
                "{name}"
            );
        }
        // On SQLite the replaced values are gone from the files too (secure_delete, and a
        // checkpoint that empties the WAL): while the store is open, and after it closed.
        if let Db::Sqlite(path) = &db {
            let dir = path.parent().unwrap();
            assert_nowhere_in(dir, &plaintexts);
            drop(store);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            assert_nowhere_in(dir, &plaintexts);
        }
    }
}

/// Neither the text nor the base64 body of any of `keys` is in a file of `dir`.
fn assert_nowhere_in(dir: &Path, keys: &[String]) {
    for file in std::fs::read_dir(dir).unwrap() {
        let file = file.unwrap().path();
        // SQLite removes its -wal and -shm files as the last connection closes.
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for text in keys {
            for needle in [text.as_bytes(), text.split_once('_').unwrap().1.as_bytes()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "a migrated key is still in {}",
                    file.display()
                );
            }
        }
    }
}

#[tokio::test]
async fn a_store_refuses_a_sealer_without_its_key_even_before_any_endpoint_exists() {
    let dir = tempfile::tempdir().unwrap();
    for (name, db) in Db::every(dir.path()).await {
        let first = sealer();
        drop(db.open(first.clone()).await.unwrap());
        // Another key (a new key file where the old one was lost, another instance's key).
        let other = sealer();
        match db.open(other.clone()).await {
            Err(Error::UnknownSealingKey { key_id }) => {
                assert_eq!(key_id, first.current_id(), "{name}");
            }
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => panic!("{name}: opened without the key"),
        }
        let store = db.open(first.clone()).await.unwrap();
        let ep = endpoint(Environment::Live, "https://a.example/");
        store.create_endpoint(&ep).await.unwrap();
        let before = db.stored().await;
        let refused = db.open(other).await.err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains(&first.current_id())),
            "{name}: {refused:?}"
        );
        assert_eq!(db.stored().await, before, "{name}: nothing was written");
    }
}

#[tokio::test]
async fn rotation_reseals_every_endpoint_after_which_the_old_key_is_not_needed() {
    let dir = tempfile::tempdir().unwrap();
    for (name, db) in Db::every(dir.path()).await {
        let key_file = dir.path().join(format!("{name}-secrets-key"));
        let (sealer, created) = Sealer::load_or_create(&key_file).unwrap();
        assert!(created);
        let old_id = sealer.current_id();
        let store = db.open(sealer.clone()).await.unwrap();
        let eps = endpoints();
        for ep in &eps {
            store.create_endpoint(ep).await.unwrap();
        }

        let old_copy = dir.path().join(format!("{name}-old-key"));
        std::fs::copy(&key_file, &old_copy).unwrap();
        let new_id = sealer.rotate().unwrap();
        assert_eq!(
            store.reseal_secrets().await.unwrap(),
            eps.len() as u64,
            "{name}"
        );
        sealer.retire_previous().unwrap();

        for (_, stored) in db.stored().await {
            assert_eq!(sealed_key_id(&stored).unwrap(), new_id, "{name}");
        }
        // A process reading the key file now holds only the new key, and reads everything.
        let reloaded = Sealer::load(&key_file).unwrap();
        assert_eq!(reloaded.key_ids(), std::slice::from_ref(&new_id));
        let store = db.open(reloaded).await.unwrap();
        for ep in &eps {
            assert!(
                same_keys(&store.endpoint(ep.id).await.unwrap(), ep),
                "{name}"
            );
        }
        // The old key (a copy kept from before the rotation) opens nothing any more.
        let old = Sealer::load(&old_copy).unwrap();
        assert_eq!(old.key_ids(), [old_id]);
        assert!(
            matches!(
                db.open(old).await,
                Err(Error::UnknownSealingKey { key_id }) if key_id == new_id
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_endpoint_written_during_a_rotation_is_sealed_under_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    for (name, db) in Db::every(dir.path()).await {
        let key_file = dir.path().join(format!("{name}-rotating-key"));
        let (cli, _) = Sealer::load_or_create(&key_file).unwrap();
        // The server's own sealer, following the same file.
        let server = db.open(Sealer::load(&key_file).unwrap()).await.unwrap();
        let new_id = cli.rotate().unwrap();
        let ep = endpoint(Environment::Live, "https://a.example/");
        server.create_endpoint(&ep).await.unwrap();
        let stored = db.stored().await;
        assert_eq!(sealed_key_id(&stored[0].1).unwrap(), new_id, "{name}");
        let cli_store = db.open(cli.clone()).await.unwrap();
        cli_store.reseal_secrets().await.unwrap();
        cli.retire_previous().unwrap();
        // The server reads the re-sealed endpoint with the key it picks up from the file.
        assert!(
            same_keys(&server.endpoint(ep.id).await.unwrap(), &ep),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_sealed_value_moved_to_another_endpoint_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    for (name, db) in Db::every(dir.path()).await {
        let store = db.open(sealer()).await.unwrap();
        let (a, b) = (
            endpoint(Environment::Live, "https://a.example/"),
            endpoint(Environment::Live, "https://b.example/"),
        );
        store.create_endpoint(&a).await.unwrap();
        store.create_endpoint(&b).await.unwrap();
        let stored = db.stored().await;
        // b's row now holds a's sealed keys: an attacker with write access to the database
        // cannot make b sign with a's secret.
        db.sql(
            "UPDATE webhooks_endpoints SET secrets = $1 WHERE id = $2",
            &[&stored[0].1, &b.id.to_string()],
        )
        .await;
        assert!(
            matches!(store.endpoint(b.id).await, Err(Error::Unseal)),
            "{name}"
        );
        assert!(
            same_keys(&store.endpoint(a.id).await.unwrap(), &a),
            "{name}"
        );
    }
}
