//! Property: no token secret reaches any stored field, in any sink's storage.
#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod support;

use align_audit::{Actor, Entry, Stream};
use align_core::Environment;
use proptest::prelude::*;

/// Where in an entry the token is placed, and how it is dressed.
#[derive(Debug, Clone, Copy)]
enum Place {
    PathSegment,
    QueryString,
    Target,
    RequestId,
    UserAgent,
    PersonalValue,
    ActorPrefix,
    Action,
    MetadataValue,
    MetadataAuthorization,
    MetadataKey,
    Subject,
}

const PLACES: [Place; 12] = [
    Place::PathSegment,
    Place::QueryString,
    Place::Target,
    Place::RequestId,
    Place::UserAgent,
    Place::PersonalValue,
    Place::ActorPrefix,
    Place::Action,
    Place::MetadataValue,
    Place::MetadataAuthorization,
    Place::MetadataKey,
    Place::Subject,
];

fn entry_with(token: &str, place: Place, before: &str, after: &str) -> Entry {
    let dressed = format!("{before}{token}{after}");
    let mut b = Entry::builder(Stream::Audit, "api_key.minted").path("/api/v1/keys");
    b = match place {
        Place::PathSegment => b.path(format!("/api/v1/keys/{dressed}")),
        Place::QueryString => b.path(format!("/api/v1/me?api_key={dressed}")),
        Place::Target => b.target(dressed),
        Place::RequestId => b.request_id(dressed),
        Place::UserAgent => b.user_agent(dressed),
        Place::PersonalValue => b.personal("note", dressed),
        Place::ActorPrefix => b.actor(Actor::ApiKey {
            id: "k".into(),
            prefix: token.to_owned(),
        }),
        Place::Action => Entry::builder(Stream::Audit, dressed),
        Place::MetadataValue => b.metadata(serde_json::json!({"list": [{"deep": dressed}]})),
        Place::MetadataAuthorization => {
            b.metadata(serde_json::json!({"Authorization": format!("Bearer {token}")}))
        }
        Place::MetadataKey => b.metadata(serde_json::json!({ dressed: 1 })),
        Place::Subject => b.subject(dressed),
    };
    b.build().unwrap()
}

fn assert_no_secret(haystack: &[u8], token: &str, what: &str) {
    // Everything after the 12-character prefix (and its `_`) is secret.
    let secret = &token.as_bytes()[13..];
    for window in [secret, &secret[..16], &secret[secret.len() - 16..]] {
        assert!(
            !haystack.windows(window.len()).any(|w| w == window),
            "{what} holds part of the token secret"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn redaction_leaves_no_token_secret_in_any_stored_field(
        place in 0..PLACES.len(),
        live in any::<bool>(),
        before in "[ a-zA-Z0-9=:/_-]{0,6}",
        after in "[ a-zA-Z0-9=:/_.-]{0,6}",
    ) {
        let env = if live { Environment::Live } else { Environment::Sandbox };
        let minted = align_keys::token::generate(env).unwrap();
        let token = minted.token.expose();
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async {
            for (name, sink) in support::all_sinks(dir.path()).await {
                sink.append(entry_with(token, PLACES[place], &before, &after)).await.unwrap();
                let page = sink.query(&align_audit::Query::new(Stream::Audit)).await.unwrap();
                let json = serde_json::to_vec(&page.records).unwrap();
                assert_no_secret(&json, token, name);
                let mut export = Vec::new();
                sink.export_subject("k", &mut export).await.unwrap();
                assert_no_secret(&export, token, name);
                sink.close().await.unwrap();
            }
        });
        // The files themselves, byte for byte (SQLite database and write-ahead log included).
        // SQLite removes its `-wal` and `-shm` files when the last connection closes, which
        // may happen while we list them; what they held is in the main file by then.
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let path = file.unwrap().path();
            if let Ok(bytes) = std::fs::read(&path) {
                assert_no_secret(&bytes, token, &path.display().to_string());
            }
        }
    }
}
