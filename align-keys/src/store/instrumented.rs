//! [`Instrumented`]: a [`KeyStore`](crate::KeyStore) wrapper that counts the calls that cost a round trip, for
//! metrics and for tests that prove a hot path does not touch the store.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Directory, KeyFilter, KeyLookup, KeyManagement, Page, PageRequest};
use crate::domain::{
    KeyEvent, KeyId, KeyRecord, Organization, OrganizationId, Project, ProjectId, Role, User,
    UserId,
};
use crate::error::Result;
use crate::hash::KeyHash;
use crate::keyspace::{
    CreditSpend, Credits, Keyspace, KeyspaceId, KeyspaceKey, KeyspaceKeyFilter, KeyspaceStore,
};
use crate::password::{PasswordHash, SessionHash, UserSession};

/// Counts of store calls made through an [`Instrumented`] store.
#[derive(Debug, Default)]
pub struct StoreCounts {
    /// `find_key_by_hash` and `find_keyspace_key` calls (verification cache misses).
    pub key_lookups: AtomicU64,
    /// `record_last_used` calls (batched last-used writes).
    pub last_used_writes: AtomicU64,
    /// Calls that write anything else.
    pub other_writes: AtomicU64,
    /// Calls that read anything else.
    pub other_reads: AtomicU64,
    /// `spend_credits` calls (one per verification of a key space key with credits); not in
    /// [`StoreCounts::snapshot`].
    pub credit_spends: AtomicU64,
}

impl StoreCounts {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(key_lookups, last_used_writes, other_writes, other_reads)` now.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.key_lookups.load(Ordering::Relaxed),
            self.last_used_writes.load(Ordering::Relaxed),
            self.other_writes.load(Ordering::Relaxed),
            self.other_reads.load(Ordering::Relaxed),
        )
    }
}

/// Wraps a store and counts its calls; behaves exactly like the inner store.
#[derive(Debug, Default)]
pub struct Instrumented<S> {
    inner: S,
    counts: StoreCounts,
}

impl<S> Instrumented<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            counts: StoreCounts::default(),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> &StoreCounts {
        &self.counts
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

macro_rules! counted {
    ($self:ident, $counter:ident, $call:expr) => {{
        StoreCounts::bump(&$self.counts.$counter);
        $call.await
    }};
}

#[async_trait]
impl<S: Directory> Directory for Instrumented<S> {
    async fn create_organization(&self, org: &Organization) -> Result<()> {
        counted!(self, other_writes, self.inner.create_organization(org))
    }

    async fn get_organization(&self, id: OrganizationId) -> Result<Option<Organization>> {
        counted!(self, other_reads, self.inner.get_organization(id))
    }

    async fn list_organizations(&self, page: &PageRequest) -> Result<Page<Organization>> {
        counted!(self, other_reads, self.inner.list_organizations(page))
    }

    async fn update_organization(&self, org: &Organization) -> Result<()> {
        counted!(self, other_writes, self.inner.update_organization(org))
    }

    async fn create_project(&self, project: &Project) -> Result<()> {
        counted!(self, other_writes, self.inner.create_project(project))
    }

    async fn get_project(&self, id: ProjectId) -> Result<Option<Project>> {
        counted!(self, other_reads, self.inner.get_project(id))
    }

    async fn list_projects(
        &self,
        org: OrganizationId,
        page: &PageRequest,
    ) -> Result<Page<Project>> {
        counted!(self, other_reads, self.inner.list_projects(org, page))
    }

    async fn create_user(&self, user: &User) -> Result<()> {
        counted!(self, other_writes, self.inner.create_user(user))
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>> {
        counted!(self, other_reads, self.inner.get_user(id))
    }

    async fn list_users(&self, org: OrganizationId, page: &PageRequest) -> Result<Page<User>> {
        counted!(self, other_reads, self.inner.list_users(org, page))
    }

    async fn set_user_role(&self, id: UserId, role: Role) -> Result<()> {
        counted!(self, other_writes, self.inner.set_user_role(id, role))
    }

    async fn update_user_profile(&self, id: UserId, email: &str, name: Option<&str>) -> Result<()> {
        counted!(
            self,
            other_writes,
            self.inner.update_user_profile(id, email, name)
        )
    }

    async fn transfer_keys(&self, from: UserId, to: UserId) -> Result<u64> {
        counted!(self, other_writes, self.inner.transfer_keys(from, to))
    }

    async fn delete_user_sessions(&self, id: UserId) -> Result<u64> {
        counted!(self, other_writes, self.inner.delete_user_sessions(id))
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        counted!(self, other_writes, self.inner.delete_user(id))
    }

    async fn delete_project(&self, id: ProjectId) -> Result<()> {
        counted!(self, other_writes, self.inner.delete_project(id))
    }

    async fn set_user_password(&self, id: UserId, hash: &PasswordHash) -> Result<()> {
        counted!(self, other_writes, self.inner.set_user_password(id, hash))
    }

    async fn user_credentials(&self, email: &str) -> Result<Vec<(User, PasswordHash)>> {
        counted!(self, other_reads, self.inner.user_credentials(email))
    }

    async fn create_session(&self, hash: &SessionHash, session: &UserSession) -> Result<()> {
        counted!(self, other_writes, self.inner.create_session(hash, session))
    }

    async fn get_session(
        &self,
        hash: &SessionHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserSession>> {
        counted!(self, other_reads, self.inner.get_session(hash, now))
    }

    async fn delete_session(&self, hash: &SessionHash) -> Result<()> {
        counted!(self, other_writes, self.inner.delete_session(hash))
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        counted!(self, other_writes, self.inner.delete_expired_sessions(now))
    }
}

#[async_trait]
impl<S: KeyLookup> KeyLookup for Instrumented<S> {
    fn vocabulary(&self) -> &'static crate::Vocabulary {
        self.inner.vocabulary()
    }

    async fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>> {
        counted!(self, key_lookups, self.inner.find_key_by_hash(hash))
    }

    async fn get_key(&self, id: KeyId) -> Result<Option<KeyRecord>> {
        counted!(self, other_reads, self.inner.get_key(id))
    }

    async fn record_last_used(&self, batch: &[(KeyId, DateTime<Utc>)]) -> Result<()> {
        counted!(self, last_used_writes, self.inner.record_last_used(batch))
    }

    async fn key_changes_since(&self, after: i64) -> Result<(Vec<KeyId>, i64)> {
        counted!(self, other_reads, self.inner.key_changes_since(after))
    }

    async fn wait_for_changes(&self, timeout: std::time::Duration) {
        self.inner.wait_for_changes(timeout).await;
    }
}

#[async_trait]
impl<S: KeyManagement> KeyManagement for Instrumented<S> {
    async fn insert_key(&self, record: &KeyRecord, hash: &KeyHash) -> Result<()> {
        counted!(self, other_writes, self.inner.insert_key(record, hash))
    }

    async fn list_keys(&self, filter: &KeyFilter, page: &PageRequest) -> Result<Page<KeyRecord>> {
        counted!(self, other_reads, self.inner.list_keys(filter, page))
    }

    async fn update_key(&self, record: &KeyRecord) -> Result<()> {
        counted!(self, other_writes, self.inner.update_key(record))
    }

    async fn insert_key_with_event(
        &self,
        record: &KeyRecord,
        hash: &KeyHash,
        event: KeyEvent,
    ) -> Result<()> {
        counted!(
            self,
            other_writes,
            self.inner.insert_key_with_event(record, hash, event)
        )
    }

    async fn update_key_with_event(&self, record: &KeyRecord, event: KeyEvent) -> Result<()> {
        counted!(
            self,
            other_writes,
            self.inner.update_key_with_event(record, event)
        )
    }
}

#[async_trait]
impl<S: crate::leak::LeakStore> crate::leak::LeakStore for Instrumented<S> {
    async fn record_leak(
        &self,
        report: &crate::leak::LeakReport,
    ) -> Result<(crate::leak::LeakReport, bool)> {
        StoreCounts::bump(&self.counts.other_writes);
        self.inner.record_leak(report).await
    }

    async fn delete_leak(&self, id: crate::leak::LeakReportId) -> Result<()> {
        StoreCounts::bump(&self.counts.other_writes);
        self.inner.delete_leak(id).await
    }

    async fn list_leaks(
        &self,
        organization: OrganizationId,
        page: &PageRequest,
    ) -> Result<Page<crate::leak::LeakReport>> {
        StoreCounts::bump(&self.counts.other_reads);
        self.inner.list_leaks(organization, page).await
    }
}

#[async_trait]
impl<S: KeyspaceStore> KeyspaceStore for Instrumented<S> {
    async fn create_keyspace(&self, keyspace: &Keyspace) -> Result<()> {
        counted!(self, other_writes, self.inner.create_keyspace(keyspace))
    }

    async fn get_keyspace(&self, id: KeyspaceId) -> Result<Option<Keyspace>> {
        counted!(self, other_reads, self.inner.get_keyspace(id))
    }

    async fn list_keyspaces(
        &self,
        organization: OrganizationId,
        page: &PageRequest,
    ) -> Result<Page<Keyspace>> {
        counted!(
            self,
            other_reads,
            self.inner.list_keyspaces(organization, page)
        )
    }

    async fn update_keyspace(&self, keyspace: &Keyspace) -> Result<()> {
        counted!(self, other_writes, self.inner.update_keyspace(keyspace))
    }

    async fn insert_keyspace_key(&self, key: &KeyspaceKey, hash: &KeyHash) -> Result<()> {
        counted!(
            self,
            other_writes,
            self.inner.insert_keyspace_key(key, hash)
        )
    }

    async fn get_keyspace_key(&self, id: KeyId) -> Result<Option<KeyspaceKey>> {
        counted!(self, other_reads, self.inner.get_keyspace_key(id))
    }

    async fn find_keyspace_key(&self, hash: &KeyHash) -> Result<Option<KeyspaceKey>> {
        counted!(self, key_lookups, self.inner.find_keyspace_key(hash))
    }

    async fn list_keyspace_keys(
        &self,
        filter: &KeyspaceKeyFilter,
        page: &PageRequest,
    ) -> Result<Page<KeyspaceKey>> {
        counted!(
            self,
            other_reads,
            self.inner.list_keyspace_keys(filter, page)
        )
    }

    async fn update_keyspace_key(&self, key: &KeyspaceKey) -> Result<()> {
        counted!(self, other_writes, self.inner.update_keyspace_key(key))
    }

    async fn set_credits(&self, id: KeyId, credits: Option<&Credits>) -> Result<()> {
        counted!(self, other_writes, self.inner.set_credits(id, credits))
    }

    async fn spend_credits(&self, id: KeyId, cost: u64, now: DateTime<Utc>) -> Result<CreditSpend> {
        counted!(self, credit_spends, self.inner.spend_credits(id, cost, now))
    }
}
