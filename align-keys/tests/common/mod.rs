//! Shared fixtures: an organisation with an admin, and a manager over a chosen store.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use align_keys::store::{KeyFilter, KeyStore, Page, PageRequest};
use align_keys::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub struct Fixture {
    pub org: Organization,
    pub admin: User,
    pub project: Project,
}

pub async fn seed(store: &dyn KeyStore) -> Fixture {
    let now = Utc::now();
    let org = Organization {
        id: OrganizationId::new(),
        name: "Acme".into(),
        security_contact: None,
        created_at: now,
    };
    store.create_organization(&org).await.unwrap();
    let admin = User {
        id: UserId::new(),
        organization_id: org.id,
        email: "admin@acme.test".into(),
        role: Role::Admin,
        created_at: now,
    };
    store.create_user(&admin).await.unwrap();
    let project = Project {
        id: ProjectId::new(),
        organization_id: org.id,
        name: "billing".into(),
        created_at: now,
    };
    store.create_project(&project).await.unwrap();
    Fixture {
        org,
        admin,
        project,
    }
}

pub fn new_key(f: &Fixture, name: &str, env: Environment) -> NewKey {
    NewKey {
        name: name.into(),
        organization_id: f.org.id,
        scope: Scope::Organization,
        permissions: None,
        environment: env,
        created_by: f.admin.id,
        expires_at: None,
        rate_limit_per_minute: None,
        allowed_cidrs: vec![],
    }
}

/// Wraps a store and counts the calls that would be round trips.
pub struct Counting<S> {
    pub inner: S,
    pub lookups: AtomicUsize,
    pub last_used_writes: AtomicUsize,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            lookups: AtomicUsize::new(0),
            last_used_writes: AtomicUsize::new(0),
        }
    }
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
    pub fn last_used_writes(&self) -> usize {
        self.last_used_writes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<S: KeyStore> KeyStore for Counting<S> {
    async fn create_organization(&self, org: &Organization) -> Result<()> {
        self.inner.create_organization(org).await
    }
    async fn get_organization(&self, id: OrganizationId) -> Result<Option<Organization>> {
        self.inner.get_organization(id).await
    }
    async fn list_organizations(&self, page: &PageRequest) -> Result<Page<Organization>> {
        self.inner.list_organizations(page).await
    }
    async fn update_organization(&self, org: &Organization) -> Result<()> {
        self.inner.update_organization(org).await
    }
    async fn create_project(&self, p: &Project) -> Result<()> {
        self.inner.create_project(p).await
    }
    async fn get_project(&self, id: ProjectId) -> Result<Option<Project>> {
        self.inner.get_project(id).await
    }
    async fn list_projects(&self, o: OrganizationId, p: &PageRequest) -> Result<Page<Project>> {
        self.inner.list_projects(o, p).await
    }
    async fn create_user(&self, u: &User) -> Result<()> {
        self.inner.create_user(u).await
    }
    async fn get_user(&self, id: UserId) -> Result<Option<User>> {
        self.inner.get_user(id).await
    }
    async fn list_users(&self, o: OrganizationId, p: &PageRequest) -> Result<Page<User>> {
        self.inner.list_users(o, p).await
    }
    async fn set_user_role(&self, id: UserId, role: Role) -> Result<()> {
        self.inner.set_user_role(id, role).await
    }
    async fn insert_key(&self, r: &KeyRecord, h: &KeyHash) -> Result<()> {
        self.inner.insert_key(r, h).await
    }
    async fn find_key_by_hash(&self, h: &KeyHash) -> Result<Option<KeyRecord>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.find_key_by_hash(h).await
    }
    async fn get_key(&self, id: KeyId) -> Result<Option<KeyRecord>> {
        self.inner.get_key(id).await
    }
    async fn list_keys(&self, f: &KeyFilter, p: &PageRequest) -> Result<Page<KeyRecord>> {
        self.inner.list_keys(f, p).await
    }
    async fn update_key(&self, r: &KeyRecord) -> Result<()> {
        self.inner.update_key(r).await
    }
    async fn record_last_used(&self, b: &[(KeyId, DateTime<Utc>)]) -> Result<()> {
        self.last_used_writes.fetch_add(1, Ordering::SeqCst);
        self.inner.record_last_used(b).await
    }
}

pub fn manager(store: Arc<dyn KeyStore>) -> KeyManager {
    KeyManager::new(store, Arc::new(Sha256Hasher))
}
