//! The `keyspaces` operations (DESIGN §12): key spaces, the keys an organisation mints in them
//! for its own customers, and `verifyKey`.

use std::fmt::Display;

use http::Method;

use super::{ItemStream, Query, filtered, limited, seg};
use crate::error::Error;
use crate::transport::Client;
use crate::types::{
    CreateKeyspace, CreateKeyspaceKey, Keyspace, KeyspaceKey, KeyspaceKeyQuery,
    KeyspaceKeyRotation, MintedKeyspaceKey, Page, PageParams, Rotate, UpdateKeyspace,
    UpdateKeyspaceKey, Usage, UsageQuery, Verification, VerifyKey,
};

/// `/api/v1/keyspaces/{id}/keys/{keyId}` and what follows it.
fn key_path(id: impl Display, key_id: impl Display, rest: &str) -> String {
    format!("/api/v1/keyspaces/{}/keys/{}{rest}", seg(id), seg(key_id))
}

impl Client {
    /// `createKeyspace`: `POST /api/v1/keyspaces`.
    pub async fn create_keyspace(&self, body: &CreateKeyspace) -> Result<Keyspace, Error> {
        self.send_json(Method::POST, "/api/v1/keyspaces".to_owned(), Some(body))
            .await
    }

    /// `listKeyspaces`: one page of `GET /api/v1/keyspaces`, oldest first.
    pub async fn list_keyspaces(&self, page: &PageParams) -> Result<Page<Keyspace>, Error> {
        let path = Query::new().page(page).on("/api/v1/keyspaces");
        self.get_json(path).await
    }

    /// `listKeyspaces` as a stream, `limit` per page.
    #[must_use]
    pub fn list_keyspaces_stream(&self, limit: Option<u32>) -> ItemStream<Keyspace> {
        let client = self.clone();
        limited(limit, move |page| {
            let client = client.clone();
            async move { client.list_keyspaces(&page).await }
        })
    }

    /// `getKeyspace`: `GET /api/v1/keyspaces/{id}`.
    pub async fn get_keyspace(&self, id: impl Display) -> Result<Keyspace, Error> {
        self.get_json(format!("/api/v1/keyspaces/{}", seg(id)))
            .await
    }

    /// `updateKeyspace`: `PATCH /api/v1/keyspaces/{id}`.
    pub async fn update_keyspace(
        &self,
        id: impl Display,
        body: &UpdateKeyspace,
    ) -> Result<Keyspace, Error> {
        let path = format!("/api/v1/keyspaces/{}", seg(id));
        self.send_json(Method::PATCH, path, Some(body)).await
    }

    /// `createKeyspaceKey`: `POST /api/v1/keyspaces/{id}/keys`. The token is in `key`, once.
    pub async fn create_keyspace_key(
        &self,
        id: impl Display,
        body: &CreateKeyspaceKey,
    ) -> Result<MintedKeyspaceKey, Error> {
        let path = format!("/api/v1/keyspaces/{}/keys", seg(id));
        self.send_json(Method::POST, path, Some(body)).await
    }

    /// `listKeyspaceKeys`: one page of `GET /api/v1/keyspaces/{id}/keys`, oldest first.
    pub async fn list_keyspace_keys(
        &self,
        id: impl Display,
        query: &KeyspaceKeyQuery,
    ) -> Result<Page<KeyspaceKey>, Error> {
        let path = Query::new()
            .add("ownerId", query.owner_id.as_deref())
            .add("environment", query.environment)
            .add("includeRevoked", query.include_revoked.then_some(true))
            .page(&query.page)
            .on(&format!("/api/v1/keyspaces/{}/keys", seg(id)));
        self.get_json(path).await
    }

    /// `listKeyspaceKeys` as a stream, from `query`'s cursor on.
    #[must_use]
    pub fn list_keyspace_keys_stream(
        &self,
        id: impl Display,
        query: KeyspaceKeyQuery,
    ) -> ItemStream<KeyspaceKey> {
        let (client, id) = (self.clone(), id.to_string());
        filtered(query, move |q| {
            let (client, id) = (client.clone(), id.clone());
            async move { client.list_keyspace_keys(id, &q).await }
        })
    }

    /// `getKeyspaceKey`: `GET /api/v1/keyspaces/{id}/keys/{keyId}` (never its token).
    pub async fn get_keyspace_key(
        &self,
        id: impl Display,
        key_id: impl Display,
    ) -> Result<KeyspaceKey, Error> {
        self.get_json(key_path(id, key_id, "")).await
    }

    /// `updateKeyspaceKey`: `PATCH /api/v1/keyspaces/{id}/keys/{keyId}`.
    pub async fn update_keyspace_key(
        &self,
        id: impl Display,
        key_id: impl Display,
        body: &UpdateKeyspaceKey,
    ) -> Result<KeyspaceKey, Error> {
        let path = key_path(id, key_id, "");
        self.send_json(Method::PATCH, path, Some(body)).await
    }

    /// `revokeKeyspaceKey`: `POST …/keys/{keyId}/revoke` (idempotent).
    pub async fn revoke_keyspace_key(
        &self,
        id: impl Display,
        key_id: impl Display,
    ) -> Result<KeyspaceKey, Error> {
        let path = key_path(id, key_id, "/revoke");
        self.send_json(Method::POST, path, None::<&()>).await
    }

    /// `rotateKeyspaceKey`: `POST …/keys/{keyId}/rotate`; the successor's token is in `key`,
    /// once, and the old key verifies until `grace_seconds` (default a day) have passed.
    pub async fn rotate_keyspace_key(
        &self,
        id: impl Display,
        key_id: impl Display,
        body: &Rotate,
    ) -> Result<KeyspaceKeyRotation, Error> {
        let path = key_path(id, key_id, "/rotate");
        self.send_json(Method::POST, path, Some(body)).await
    }

    /// `suspendKeyspaceKey`: `POST …/keys/{keyId}/suspend`.
    pub async fn suspend_keyspace_key(
        &self,
        id: impl Display,
        key_id: impl Display,
    ) -> Result<KeyspaceKey, Error> {
        let path = key_path(id, key_id, "/suspend");
        self.send_json(Method::POST, path, None::<&()>).await
    }

    /// `resumeKeyspaceKey`: `POST …/keys/{keyId}/resume`.
    pub async fn resume_keyspace_key(
        &self,
        id: impl Display,
        key_id: impl Display,
    ) -> Result<KeyspaceKey, Error> {
        let path = key_path(id, key_id, "/resume");
        self.send_json(Method::POST, path, None::<&()>).await
    }

    /// `getKeyspaceKeyUsage`: `GET …/keys/{keyId}/usage`, the key's verifications per step.
    pub async fn get_keyspace_key_usage(
        &self,
        id: impl Display,
        key_id: impl Display,
        query: &UsageQuery,
    ) -> Result<Usage, Error> {
        let path = Query::new()
            .usage(query)
            .on(&key_path(id, key_id, "/usage"));
        self.get_json(path).await
    }

    /// `verifyKey`: `POST /api/v1/keys/verify`, the check your API makes of a key a customer
    /// presented. Every presented key is an answer (its `code`), never an error; errors are
    /// the request's (a bad query, the calling key's rights or rate limit).
    pub async fn verify_key(&self, body: &VerifyKey) -> Result<Verification, Error> {
        self.send_json(Method::POST, "/api/v1/keys/verify".to_owned(), Some(body))
            .await
    }
}
