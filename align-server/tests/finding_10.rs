//! Finding 10 of issue 20: "The audit record of a key change is written after the change's
//! transaction; a failure between the two loses it." Over HTTP against the built server, on
//! SQLite and (with `ALIGN_TEST_POSTGRES_URL`) PostgreSQL: every key change's record is in
//! the chain, naming its actor, before the response; the staging table is empty again; and a
//! change whose record cannot be staged does not happen. The crash between a change's commit
//! and the move of its record into the chain is `align_server::events`' unit test of the same
//! name (the process cannot be stopped at that instant over HTTP).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

mod support;

use std::sync::Arc;

use align_audit::{AuditSink, Query, Record, Stream};
use align_keys::postgres::ScratchSchema;
use align_server::Database;
use http::{Method, StatusCode};
use serde_json::json;
use support::TestServer;

/// The audit chain and the database as a test reads them behind the server's back.
#[async_trait::async_trait]
trait Backend {
    async fn sink(&self) -> Arc<dyn AuditSink>;
    async fn pending(&self) -> i64;
    async fn drop_staging_table(&self);
}

struct Sqlite(std::path::PathBuf);

#[async_trait::async_trait]
impl Backend for Sqlite {
    async fn sink(&self) -> Arc<dyn AuditSink> {
        Arc::new(
            align_audit::SqliteSink::open(&self.0, align_audit::SqliteSinkConfig::default())
                .await
                .unwrap(),
        )
    }
    async fn pending(&self) -> i64 {
        let conn = rusqlite::Connection::open(&self.0).unwrap();
        conn.query_row("SELECT COUNT(*) FROM audit_pending", [], |r| r.get(0))
            .unwrap()
    }
    async fn drop_staging_table(&self) {
        let conn = rusqlite::Connection::open(&self.0).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn.execute_batch("DROP TABLE audit_pending").unwrap();
    }
}

struct Postgres(ScratchSchema);

#[async_trait::async_trait]
impl Backend for Postgres {
    async fn sink(&self) -> Arc<dyn AuditSink> {
        Arc::new(
            align_audit::PgSink::open(self.0.pool().unwrap(), Default::default())
                .await
                .unwrap(),
        )
    }
    async fn pending(&self) -> i64 {
        let client = self.0.pool().unwrap().get().await.unwrap();
        client
            .query_one("SELECT COUNT(*) FROM audit_pending", &[])
            .await
            .unwrap()
            .get(0)
    }
    async fn drop_staging_table(&self) {
        let client = self.0.pool().unwrap().get().await.unwrap();
        client
            .batch_execute("DROP TABLE audit_pending")
            .await
            .unwrap();
    }
}

/// The audit records of `action` on `target`.
async fn records(sink: &dyn AuditSink, action: &str, target: &str) -> Vec<Record> {
    sink.query(&Query::new(Stream::Audit).action(action).target(target))
        .await
        .unwrap()
        .records
}

async fn key_changes_commit_their_audit_records(s: &TestServer, db: &dyn Backend) {
    let admin = &s.admin_key;
    let me = s.get("/api/v1/me", admin).await;
    let actor_id = me.body["apiKeyId"].as_str().unwrap().to_owned();
    let actor_prefix = me.body["keyPrefix"].as_str().unwrap().to_owned();

    let (_, minted) = s
        .mint(admin, json!({"name": "ci", "scope": "organization"}))
        .await;
    let id = minted["apiKeyId"].as_str().unwrap().to_owned();
    let rotated = s
        .post(&format!("/api/v1/keys/{id}/rotate"), admin, json!({}))
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.body);
    let successor = rotated.body["apiKeyId"].as_str().unwrap().to_owned();
    let patched = s
        .json(
            Method::PATCH,
            &format!("/api/v1/keys/{successor}"),
            admin,
            json!({"name": "ci-2"}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let revoked = s
        .post(&format!("/api/v1/keys/{id}/revoke"), admin, json!({}))
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);

    // Each record is in the chain before its response went out: nothing is left staged, and
    // another reader of the database (not the server's writer) finds them.
    assert_eq!(db.pending().await, 0);
    let sink = db.sink().await;
    for (action, target) in [
        ("api_key.created", &id),
        ("api_key.rotated", &id),
        ("api_key.updated", &successor),
        ("api_key.revoked", &id),
    ] {
        let found = records(sink.as_ref(), action, target).await;
        assert_eq!(found.len(), 1, "{action} on {target}");
        let e = found[0].entry();
        assert_eq!(
            e.actor(),
            &align_audit::Actor::ApiKey {
                id: actor_id.clone(),
                prefix: actor_prefix.clone()
            },
            "{action}"
        );
        assert!(e.ip().is_some_and(|ip| ip.is_loopback()), "{action}");
        assert!(e.request_id().is_some(), "{action}");
    }
    let rotation = &records(sink.as_ref(), "api_key.rotated", &id).await[0];
    assert_eq!(
        rotation.entry().metadata()["successorKeyId"].as_str(),
        Some(successor.as_str())
    );
    assert_eq!(rotation.entry().status(), Some(201));

    // A change whose record cannot be staged is rolled back: no key, no event, an error.
    db.drop_staging_table().await;
    let lost = s
        .post(
            "/api/v1/keys",
            admin,
            json!({"name": "lost", "scope": "organization"}),
        )
        .await;
    assert!(
        lost.status.is_server_error(),
        "{}: {}",
        lost.status,
        lost.body
    );
    let listed = s.get("/api/v1/keys?limit=100", admin).await;
    let names: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["keyName"].as_str())
        .collect();
    assert!(!names.contains(&"lost"), "{names:?}");
    let events = s.get("/api/v1/events?limit=100", admin).await;
    assert!(
        !events.body.to_string().contains("\"lost\""),
        "no event for a change that did not happen: {}",
        events.body
    );

    for stream in Stream::ALL {
        let report = sink.verify(stream, &mut |_| {}).await.unwrap();
        assert!(report.is_intact(), "{stream:?}: {report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_10_a_key_changes_audit_record_commits_with_the_change_over_http() {
    let s = TestServer::start().await;
    let db = Sqlite(s.data_dir().join("align.db"));
    key_changes_commit_their_audit_records(&s, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_10_a_key_changes_audit_record_commits_with_the_change_over_http_on_postgres() {
    let Some((scratch, url)) = support::scratch_postgres().await else {
        return;
    };
    let s = TestServer::start_with(move |c| c.database = Database::Postgres(url)).await;
    key_changes_commit_their_audit_records(&s, &Postgres(scratch)).await;
}
