//! The stores of the deployment an operator command acts on, opened with
//! [`align_server::Deployment::open`] as the server opens them: the SQLite file
//! `DIR/align.db` or, with `--database-url postgres://…` (or `ALIGN_DATABASE_URL`), the
//! PostgreSQL database several instances share. A running server sees key changes made here
//! within 250 ms. Also what several commands need from them: the organisation, user, project
//! or key named on the command line, and the audit record of an operator's change.

use std::path::Path;
use std::sync::Arc;

use align_audit::AuditSink;
use align_keys::store::{KeyStore, PageRequest};
use align_keys::{
    KeyId, KeyManager, KeyRecord, KeyspaceStore, Organization, OrganizationId, Project, ProjectId,
    Role, Sha256Hasher, User,
};
use align_server::{Config, Deployment};
use align_webhooks::{Sealer, WebhookStore};
use serde_json::{Value, json};

use crate::output::Failure;

/// Everything a command needs: the key store, the webhook store and the audit log of one
/// deployment (its data directory, and its database).
pub(crate) struct DataDir {
    pub(crate) store: Arc<dyn KeyStore>,
    pub(crate) keys: KeyManager,
    /// The key spaces and their keys (DESIGN §12), in the same database.
    pub(crate) keyspaces: Arc<dyn KeyspaceStore>,
    pub(crate) webhooks: Arc<dyn WebhookStore>,
    deployment: Deployment,
}

impl DataDir {
    /// The stores of the deployment `config` names (its `align.db` must exist, or it is
    /// PostgreSQL), webhook secrets sealed by its secrets key file. The data directory is
    /// tightened as the server does it (`0700`, files `0600`).
    pub(crate) async fn open(config: &Config) -> Result<Self, Failure> {
        if let Some(db) = Deployment::missing_database(config) {
            return Err(Failure::usage(format!(
                "no Align database at {} (run `align init --data-dir {}` first, or \
                 pass --database-url for a PostgreSQL deployment)",
                db.display(),
                config.data_dir.display()
            )));
        }
        let deployment = Deployment::open(config).await?;
        let store = Arc::clone(deployment.keys());
        let keys = KeyManager::new(Arc::clone(&store), Arc::new(Sha256Hasher));
        Ok(Self {
            store,
            keys,
            keyspaces: Arc::clone(deployment.keyspaces()),
            webhooks: Arc::clone(deployment.webhooks()),
            deployment,
        })
    }

    /// The data directory.
    pub(crate) fn dir(&self) -> &Path {
        self.deployment.data_dir()
    }

    /// What seals the webhook store's endpoint keys (the key file's keys).
    pub(crate) fn sealer(&self) -> &Sealer {
        self.deployment.sealer()
    }

    /// The retention lock of the deployment (see `align_server::retention::RunLock`).
    pub(crate) fn retention_lock(&self) -> Result<align_server::retention::RunLock, Failure> {
        Ok(self.deployment.retention_lock()?)
    }

    pub(crate) async fn audit(&self) -> Result<Arc<dyn AuditSink>, Failure> {
        self.audit_with_key(false).await
    }

    /// The audit sink with the checkpoint key of the data directory (created first when
    /// `create`).
    pub(crate) async fn audit_with_key(&self, create: bool) -> Result<Arc<dyn AuditSink>, Failure> {
        Ok(self.deployment.audit_sink(create).await?)
    }

    /// The organisation to act on: the one given, or the only one there is.
    pub(crate) async fn org(&self, given: Option<&str>) -> Result<Organization, Failure> {
        if let Some(id) = given {
            let id: OrganizationId = id
                .parse()
                .map_err(|_| Failure::usage("--org must be an organisation id"))?;
            return self
                .store
                .get_organization(id)
                .await?
                .ok_or_else(|| Failure::not_found("organisation"));
        }
        let page = PageRequest {
            limit: 2,
            cursor: None,
        };
        let mut orgs = self.store.list_organizations(&page).await?.data;
        match orgs.len() {
            1 => Ok(orgs.remove(0)),
            0 => Err(Failure::usage(
                "the database has no organisation (run `align init`)",
            )),
            _ => Err(Failure::usage("several organisations exist: pass --org ID")),
        }
    }

    /// A user of `org` by id or e-mail; without one, its first admin.
    pub(crate) async fn user(
        &self,
        org: &Organization,
        given: Option<&str>,
    ) -> Result<User, Failure> {
        let users = all_users(self.store.as_ref(), org.id).await?;
        let found = match given {
            Some(u) => users
                .into_iter()
                .find(|x| x.email == u || x.id.to_string() == u),
            None => users.into_iter().find(|x| x.role == Role::Admin),
        };
        found.ok_or_else(|| Failure::not_found("user"))
    }

    /// Durably records an operator's security-relevant change (the actor is the system: the
    /// CLI runs with the data directory's authority, not a key's).
    pub(crate) async fn record(
        &self,
        action: &str,
        org: impl std::fmt::Display,
        target: String,
        metadata: Value,
    ) -> Result<(), Failure> {
        let mut entry = align_audit::Entry::audit(action)
            .organization(org.to_string())
            .actor(align_audit::Actor::System);
        // A record about a person names them as its subject (their export and erasure find
        // it), as the server's do.
        if action.starts_with("user.") {
            entry = entry.subject(target.as_str());
        }
        let entry = entry
            .target(target)
            .metadata(json!({ "via": "align-cli", "details": metadata }))
            .build()?;
        let sink = self.audit().await?;
        sink.append(entry).await?;
        sink.close().await?;
        Ok(())
    }

    /// A project of `org`, by id (projects of other organisations do not exist here).
    pub(crate) async fn project(&self, org: &Organization, id: &str) -> Result<Project, Failure> {
        let id: ProjectId = id
            .parse()
            .map_err(|_| Failure::usage("--project must be a project id"))?;
        match self.store.get_project(id).await? {
            Some(p) if p.organization_id == org.id => Ok(p),
            _ => Err(Failure::not_found("project")),
        }
    }

    pub(crate) async fn key(&self, id: &str) -> Result<KeyRecord, Failure> {
        let id: KeyId = id
            .parse()
            .map_err(|_| Failure::usage("the key id must be a UUID"))?;
        self.store
            .get_key(id)
            .await?
            .ok_or_else(|| Failure::not_found("key"))
    }
}

/// Every item of a paged listing, page after page.
pub(crate) async fn every<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, Failure>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = align_keys::Result<align_keys::Page<T>>>,
{
    let mut out = Vec::new();
    let mut page = PageRequest {
        limit: 200,
        cursor: None,
    };
    loop {
        let p = fetch(page.clone()).await?;
        out.extend(p.data);
        match p.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => return Ok(out),
        }
    }
}

pub(crate) async fn all_users(
    store: &dyn KeyStore,
    org: OrganizationId,
) -> Result<Vec<User>, Failure> {
    every(|page| async move { store.list_users(org, &page).await }).await
}
