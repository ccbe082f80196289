//! An in-memory [`KeyStore`](crate::KeyStore) for tests and single-process embedders.

use std::collections::{HashMap, HashSet};
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Directory, KeyFilter, KeyLookup, KeyManagement, Page, PageRequest, encode_cursor};
use crate::domain::{
    KeyId, KeyRecord, Organization, OrganizationId, Project, ProjectId, Role, User, UserId,
};
use crate::error::{Error, ObjectKind, Result};
use crate::hash::KeyHash;
use crate::keyspace::{
    CreditSpend, Credits, Keyspace, KeyspaceId, KeyspaceKey, KeyspaceKeyFilter, KeyspaceStore,
};
use crate::leak::{LeakReport, LeakReportId, LeakStore};
use crate::password::{PasswordHash, SessionHash, UserSession};

/// A [`KeyStore`](crate::KeyStore) that keeps everything in process memory. Lost on exit.
#[derive(Debug)]
pub struct MemoryKeyStore {
    inner: RwLock<Inner>,
    vocabulary: &'static crate::Vocabulary,
}

impl Default for MemoryKeyStore {
    fn default() -> Self {
        Self {
            inner: RwLock::default(),
            vocabulary: &crate::Vocabulary::SERVER,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    seq: i64,
    orgs: Vec<(i64, Organization)>,
    projects: Vec<(i64, Project)>,
    users: Vec<(i64, User)>,
    keys: Vec<(i64, KeyRecord)>,
    key_index: HashMap<KeyId, usize>,
    by_hash: HashMap<KeyHash, KeyId>,
    prefixes: HashSet<String>,
    /// Every `update_key` and every key of a user whose role changed, in order: the change
    /// log.
    changes: Vec<KeyId>,
    passwords: HashMap<UserId, PasswordHash>,
    sessions: HashMap<SessionHash, UserSession>,
    leaks: Vec<(i64, LeakReport)>,
    keyspaces: Vec<(i64, Keyspace)>,
    ks_keys: Vec<(i64, KeyspaceKey)>,
    ks_index: HashMap<KeyId, usize>,
    ks_by_hash: HashMap<KeyHash, KeyId>,
    ks_prefixes: HashSet<String>,
}

impl Inner {
    fn next_seq(&mut self) -> i64 {
        self.seq += 1;
        self.seq
    }

    fn key_mut(&mut self, id: KeyId) -> Option<&mut KeyRecord> {
        let i = *self.key_index.get(&id)?;
        self.keys.get_mut(i).map(|(_, k)| k)
    }

    /// Appends `item` to the rows `table` picks, under the next sequence number.
    fn append<T: Clone>(&mut self, table: impl Fn(&mut Self) -> &mut Vec<(i64, T)>, item: &T) {
        let seq = self.next_seq();
        table(self).push((seq, item.clone()));
    }

    /// `NotFound(Organization)` unless organisation `id` exists.
    fn check_org(&self, id: OrganizationId) -> Result<()> {
        if self.orgs.iter().any(|(_, o)| o.id == id) {
            Ok(())
        } else {
            Err(Error::NotFound(ObjectKind::Organization))
        }
    }

    /// A change of each key `user` created: their creator's role bounds them (as the SQL
    /// stores' trigger records it).
    fn change_keys_of(&mut self, user: UserId) {
        let theirs: Vec<KeyId> = self
            .keys
            .iter()
            .filter(|(_, k)| k.created_by == user)
            .map(|(_, k)| k.id)
            .collect();
        self.changes.extend(theirs);
    }
}

/// The item of `rows` that `hit` picks, cloned.
fn find<T: Clone>(rows: &[(i64, T)], hit: impl Fn(&T) -> bool) -> Option<T> {
    rows.iter().find(|(_, t)| hit(t)).map(|(_, t)| t.clone())
}

/// The item of `rows` that `hit` picks, to change in place; `NotFound(kind)` when none.
fn find_mut<T>(
    rows: &mut [(i64, T)],
    kind: ObjectKind,
    hit: impl Fn(&T) -> bool,
) -> Result<&mut T> {
    rows.iter_mut()
        .find(|(_, t)| hit(t))
        .map(|(_, t)| t)
        .ok_or(Error::NotFound(kind))
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same store, reading its keys' permissions with `vocabulary` (the reference
    /// server's, [`Vocabulary::SERVER`](crate::Vocabulary::SERVER), unless given).
    #[must_use]
    pub fn with_vocabulary(mut self, vocabulary: &'static crate::Vocabulary) -> Self {
        self.vocabulary = vocabulary;
        self
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the plain maps half-updated in a way
        // that matters more than losing the store, so recover the guard.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn page<T: Clone>(
    rows: &[(i64, T)],
    req: &PageRequest,
    keep: impl Fn(&T) -> bool,
) -> Result<Page<T>> {
    let after = req.after()?;
    let limit = req.clamped_limit();
    let start = rows.partition_point(|(seq, _)| *seq <= after);
    let mut data = Vec::with_capacity(limit.min(rows.len()));
    let mut last = None;
    let mut more = false;
    for (seq, item) in &rows[start..] {
        if !keep(item) {
            continue;
        }
        if data.len() == limit {
            more = true;
            break;
        }
        data.push(item.clone());
        last = Some(*seq);
    }
    Ok(Page {
        data,
        next_cursor: if more { last.map(encode_cursor) } else { None },
    })
}

#[async_trait]
impl Directory for MemoryKeyStore {
    async fn create_organization(&self, org: &Organization) -> Result<()> {
        let mut g = self.write();
        if g.orgs.iter().any(|(_, o)| o.id == org.id) {
            return Err(Error::AlreadyExists(ObjectKind::Organization));
        }
        g.append(|g| &mut g.orgs, org);
        Ok(())
    }

    async fn get_organization(&self, id: OrganizationId) -> Result<Option<Organization>> {
        Ok(find(&self.read().orgs, |o| o.id == id))
    }

    async fn list_organizations(&self, req: &PageRequest) -> Result<Page<Organization>> {
        page(&self.read().orgs, req, |_| true)
    }

    async fn update_organization(&self, org: &Organization) -> Result<()> {
        let mut g = self.write();
        let slot = find_mut(&mut g.orgs, ObjectKind::Organization, |o| o.id == org.id)?;
        slot.name.clone_from(&org.name);
        slot.security_contact.clone_from(&org.security_contact);
        slot.leak_policy = org.leak_policy;
        slot.privacy_contact.clone_from(&org.privacy_contact);
        Ok(())
    }

    async fn create_project(&self, project: &Project) -> Result<()> {
        let mut g = self.write();
        g.check_org(project.organization_id)?;
        if g.projects.iter().any(|(_, p)| p.id == project.id) {
            return Err(Error::AlreadyExists(ObjectKind::Project));
        }
        g.append(|g| &mut g.projects, project);
        Ok(())
    }

    async fn get_project(&self, id: ProjectId) -> Result<Option<Project>> {
        Ok(find(&self.read().projects, |p| p.id == id))
    }

    async fn list_projects(&self, org: OrganizationId, req: &PageRequest) -> Result<Page<Project>> {
        page(&self.read().projects, req, |p| p.organization_id == org)
    }

    async fn create_user(&self, user: &User) -> Result<()> {
        let mut g = self.write();
        g.check_org(user.organization_id)?;
        let clash = g.users.iter().any(|(_, u)| {
            u.id == user.id || (u.organization_id == user.organization_id && u.email == user.email)
        });
        if clash {
            return Err(Error::AlreadyExists(ObjectKind::User));
        }
        g.append(|g| &mut g.users, user);
        Ok(())
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>> {
        Ok(find(&self.read().users, |u| u.id == id))
    }

    async fn list_users(&self, org: OrganizationId, req: &PageRequest) -> Result<Page<User>> {
        page(&self.read().users, req, |u| u.organization_id == org)
    }

    async fn set_user_role(&self, id: UserId, role: Role) -> Result<()> {
        let mut g = self.write();
        let user = find_mut(&mut g.users, ObjectKind::User, |u| u.id == id)?;
        if user.role == role {
            return Ok(());
        }
        user.role = role;
        g.change_keys_of(id);
        Ok(())
    }

    async fn update_user_profile(&self, id: UserId, email: &str, name: Option<&str>) -> Result<()> {
        let mut g = self.write();
        let org = find_mut(&mut g.users, ObjectKind::User, |u| u.id == id)?.organization_id;
        let taken = g
            .users
            .iter()
            .any(|(_, u)| u.id != id && u.organization_id == org && u.email == email);
        if taken {
            return Err(Error::AlreadyExists(ObjectKind::User));
        }
        let u = find_mut(&mut g.users, ObjectKind::User, |u| u.id == id)?;
        email.clone_into(&mut u.email);
        u.name = name.map(str::to_owned);
        Ok(())
    }

    async fn transfer_keys(&self, from: UserId, to: UserId) -> Result<u64> {
        let mut g = self.write();
        let mut moved = Vec::new();
        for (_, k) in g.keys.iter_mut().filter(|(_, k)| k.created_by == from) {
            k.created_by = to;
            moved.push(k.id);
        }
        let n = moved.len() as u64;
        g.changes.extend(moved);
        Ok(n)
    }

    async fn delete_user_sessions(&self, id: UserId) -> Result<u64> {
        let mut g = self.write();
        let before = g.sessions.len();
        g.sessions.retain(|_, s| s.user_id != id);
        Ok((before - g.sessions.len()) as u64)
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        let mut g = self.write();
        let before = g.users.len();
        g.users.retain(|(_, u)| u.id != id);
        if g.users.len() == before {
            return Err(Error::NotFound(ObjectKind::User));
        }
        g.passwords.remove(&id);
        g.sessions.retain(|_, s| s.user_id != id);
        // Their keys lose their creator's role: a change of each, as for a role change.
        g.change_keys_of(id);
        Ok(())
    }

    async fn delete_project(&self, id: ProjectId) -> Result<()> {
        let mut g = self.write();
        let before = g.projects.len();
        g.projects.retain(|(_, p)| p.id != id);
        if g.projects.len() == before {
            return Err(Error::NotFound(ObjectKind::Project));
        }
        Ok(())
    }

    async fn set_user_password(&self, id: UserId, hash: &PasswordHash) -> Result<()> {
        let mut g = self.write();
        if !g.users.iter().any(|(_, u)| u.id == id) {
            return Err(Error::NotFound(ObjectKind::User));
        }
        g.passwords.insert(id, hash.clone());
        g.sessions.retain(|_, s| s.user_id != id);
        Ok(())
    }

    async fn user_credentials(&self, email: &str) -> Result<Vec<(User, PasswordHash)>> {
        let g = self.read();
        Ok(g.users
            .iter()
            .filter(|(_, u)| u.email == email)
            .filter_map(|(_, u)| g.passwords.get(&u.id).map(|h| (u.clone(), h.clone())))
            .collect())
    }

    async fn create_session(&self, hash: &SessionHash, session: &UserSession) -> Result<()> {
        let mut g = self.write();
        if !g.users.iter().any(|(_, u)| u.id == session.user_id) {
            return Err(Error::NotFound(ObjectKind::User));
        }
        if g.sessions.contains_key(hash) {
            return Err(Error::AlreadyExists(ObjectKind::Session));
        }
        g.sessions.insert(*hash, session.clone());
        Ok(())
    }

    async fn get_session(
        &self,
        hash: &SessionHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserSession>> {
        Ok(self
            .read()
            .sessions
            .get(hash)
            .filter(|s| s.expires_at > now)
            .cloned())
    }

    async fn delete_session(&self, hash: &SessionHash) -> Result<()> {
        self.write().sessions.remove(hash);
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut g = self.write();
        let before = g.sessions.len();
        g.sessions.retain(|_, s| s.expires_at > now);
        Ok((before - g.sessions.len()) as u64)
    }
}

#[async_trait]
impl KeyLookup for MemoryKeyStore {
    fn vocabulary(&self) -> &'static crate::Vocabulary {
        self.vocabulary
    }

    async fn find_key_by_hash(&self, hash: &KeyHash) -> Result<Option<KeyRecord>> {
        let g = self.read();
        let Some(id) = g.by_hash.get(hash) else {
            return Ok(None);
        };
        Ok(g.key_index
            .get(id)
            .and_then(|i| g.keys.get(*i))
            .map(|(_, k)| k.clone()))
    }

    async fn get_key(&self, id: KeyId) -> Result<Option<KeyRecord>> {
        let g = self.read();
        Ok(g.key_index
            .get(&id)
            .and_then(|i| g.keys.get(*i))
            .map(|(_, k)| k.clone()))
    }

    async fn key_changes_since(&self, after: i64) -> Result<(Vec<KeyId>, i64)> {
        let g = self.read();
        let end = g.changes.len() as i64;
        if after < 0 {
            return Ok((Vec::new(), end));
        }
        let from = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(g.changes.len());
        Ok((g.changes[from..].to_vec(), end))
    }

    async fn record_last_used(&self, batch: &[(KeyId, DateTime<Utc>)]) -> Result<()> {
        let mut g = self.write();
        for (id, at) in batch {
            if let Some(key) = g.key_mut(*id) {
                if key.last_used_at.is_none_or(|prev| prev < *at) {
                    key.last_used_at = Some(*at);
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl KeyManagement for MemoryKeyStore {
    async fn insert_key(&self, record: &KeyRecord, hash: &KeyHash) -> Result<()> {
        let mut g = self.write();
        // The prefix carries the environment's tag, so one set keeps it unique per environment.
        if g.prefixes.contains(&record.prefix) {
            return Err(Error::PrefixTaken);
        }
        if g.by_hash.contains_key(hash) || g.key_index.contains_key(&record.id) {
            return Err(Error::AlreadyExists(ObjectKind::ApiKey));
        }
        let seq = g.next_seq();
        let at = g.keys.len();
        g.keys
            .push((seq, record.clone().in_vocabulary(self.vocabulary)));
        g.key_index.insert(record.id, at);
        g.by_hash.insert(*hash, record.id);
        g.prefixes.insert(record.prefix.clone());
        Ok(())
    }

    async fn list_keys(&self, filter: &KeyFilter, req: &PageRequest) -> Result<Page<KeyRecord>> {
        page(&self.read().keys, req, |k| filter_matches(filter, k))
    }

    async fn update_key(&self, record: &KeyRecord) -> Result<()> {
        let mut g = self.write();
        let key = g
            .key_mut(record.id)
            .ok_or(Error::NotFound(ObjectKind::ApiKey))?;
        key.name.clone_from(&record.name);
        key.expires_at = record.expires_at;
        key.revoked_at = key.revoked_at.or(record.revoked_at);
        key.suspended_at = record.suspended_at;
        key.rate_limit_per_minute = record.rate_limit_per_minute;
        key.allowed_cidrs.clone_from(&record.allowed_cidrs);
        key.owner_id.clone_from(&record.owner_id);
        key.meta.clone_from(&record.meta);
        g.changes.push(record.id);
        Ok(())
    }
}

pub(super) fn filter_matches(filter: &KeyFilter, k: &KeyRecord) -> bool {
    k.organization_id == filter.organization_id
        && filter
            .project_id
            .is_none_or(|p| k.scope.project_id() == Some(p))
        && filter.environment.is_none_or(|e| k.environment == e)
        && (filter.include_revoked || k.revoked_at.is_none())
}

#[async_trait]
impl LeakStore for MemoryKeyStore {
    async fn record_leak(&self, report: &LeakReport) -> Result<(LeakReport, bool)> {
        let mut g = self.write();
        if let Some((_, earlier)) = g
            .leaks
            .iter()
            .find(|(_, l)| l.fingerprint == report.fingerprint)
        {
            return Ok((earlier.clone(), false));
        }
        g.append(|g| &mut g.leaks, report);
        Ok((report.clone(), true))
    }

    async fn delete_leak(&self, id: LeakReportId) -> Result<()> {
        self.write().leaks.retain(|(_, l)| l.id != id);
        Ok(())
    }

    async fn list_leaks(
        &self,
        organization: OrganizationId,
        req: &PageRequest,
    ) -> Result<Page<LeakReport>> {
        page(&self.read().leaks, req, |l| {
            l.organization_id == organization
        })
    }
}

impl Inner {
    fn ks_key_mut(&mut self, id: KeyId) -> Result<&mut KeyspaceKey> {
        let i = *self
            .ks_index
            .get(&id)
            .ok_or(Error::NotFound(ObjectKind::ApiKey))?;
        self.ks_keys
            .get_mut(i)
            .map(|(_, k)| k)
            .ok_or(Error::NotFound(ObjectKind::ApiKey))
    }
}

#[async_trait]
impl KeyspaceStore for MemoryKeyStore {
    async fn create_keyspace(&self, keyspace: &Keyspace) -> Result<()> {
        let mut g = self.write();
        g.check_org(keyspace.organization_id)?;
        if g.keyspaces.iter().any(|(_, k)| {
            k.id == keyspace.id
                || (k.organization_id == keyspace.organization_id && k.prefix == keyspace.prefix)
        }) {
            return Err(Error::AlreadyExists(ObjectKind::Keyspace));
        }
        g.append(|g| &mut g.keyspaces, keyspace);
        Ok(())
    }

    async fn get_keyspace(&self, id: KeyspaceId) -> Result<Option<Keyspace>> {
        Ok(find(&self.read().keyspaces, |k| k.id == id))
    }

    async fn list_keyspaces(
        &self,
        organization: OrganizationId,
        req: &PageRequest,
    ) -> Result<Page<Keyspace>> {
        page(&self.read().keyspaces, req, |k| {
            k.organization_id == organization
        })
    }

    async fn update_keyspace(&self, keyspace: &Keyspace) -> Result<()> {
        let mut g = self.write();
        let k = find_mut(&mut g.keyspaces, ObjectKind::Keyspace, |k| {
            k.id == keyspace.id
        })?;
        k.name.clone_from(&keyspace.name);
        k.permissions.clone_from(&keyspace.permissions);
        Ok(())
    }

    async fn insert_keyspace_key(&self, key: &KeyspaceKey, hash: &KeyHash) -> Result<()> {
        let mut g = self.write();
        if !g.keyspaces.iter().any(|(_, k)| k.id == key.keyspace_id) {
            return Err(Error::NotFound(ObjectKind::Keyspace));
        }
        if g.ks_prefixes.contains(&key.prefix) {
            return Err(Error::PrefixTaken);
        }
        if g.ks_by_hash.contains_key(hash) || g.ks_index.contains_key(&key.id) {
            return Err(Error::AlreadyExists(ObjectKind::ApiKey));
        }
        let seq = g.next_seq();
        let at = g.ks_keys.len();
        g.ks_keys.push((seq, key.clone()));
        g.ks_index.insert(key.id, at);
        g.ks_by_hash.insert(*hash, key.id);
        g.ks_prefixes.insert(key.prefix.clone());
        Ok(())
    }

    async fn get_keyspace_key(&self, id: KeyId) -> Result<Option<KeyspaceKey>> {
        let g = self.read();
        Ok(g.ks_index
            .get(&id)
            .and_then(|i| g.ks_keys.get(*i))
            .map(|(_, k)| k.clone()))
    }

    async fn find_keyspace_key(&self, hash: &KeyHash) -> Result<Option<KeyspaceKey>> {
        let g = self.read();
        Ok(g.ks_by_hash
            .get(hash)
            .and_then(|id| g.ks_index.get(id))
            .and_then(|i| g.ks_keys.get(*i))
            .map(|(_, k)| k.clone()))
    }

    async fn list_keyspace_keys(
        &self,
        filter: &KeyspaceKeyFilter,
        req: &PageRequest,
    ) -> Result<Page<KeyspaceKey>> {
        page(&self.read().ks_keys, req, |k| {
            k.keyspace_id == filter.keyspace_id
                && filter
                    .owner_id
                    .as_ref()
                    .is_none_or(|o| k.owner_id.as_ref() == Some(o))
                && filter.environment.is_none_or(|e| k.environment == e)
                && (filter.include_revoked || k.revoked_at.is_none())
        })
    }

    async fn update_keyspace_key(&self, key: &KeyspaceKey) -> Result<()> {
        let mut g = self.write();
        let k = g.ks_key_mut(key.id)?;
        k.name.clone_from(&key.name);
        k.owner_id.clone_from(&key.owner_id);
        k.meta.clone_from(&key.meta);
        k.permissions.clone_from(&key.permissions);
        k.expires_at = key.expires_at;
        k.revoked_at = k.revoked_at.or(key.revoked_at);
        k.suspended_at = key.suspended_at;
        k.ratelimits.clone_from(&key.ratelimits);
        g.changes.push(key.id);
        Ok(())
    }

    async fn set_credits(&self, id: KeyId, credits: Option<&Credits>) -> Result<()> {
        let mut g = self.write();
        g.ks_key_mut(id)?.credits = credits.copied();
        g.changes.push(id);
        Ok(())
    }

    async fn spend_credits(&self, id: KeyId, cost: u64, now: DateTime<Utc>) -> Result<CreditSpend> {
        let mut g = self.write();
        let key = g.ks_key_mut(id)?;
        let Some(credits) = key.credits.as_mut() else {
            return Ok(CreditSpend {
                spent: true,
                remaining: u64::MAX,
            });
        };
        let (left, refilled_at) = credits.at(now);
        credits.remaining = left;
        credits.refilled_at = refilled_at;
        let spent = cost <= left;
        if spent {
            credits.remaining = left - cost;
        }
        Ok(CreditSpend {
            spent,
            remaining: credits.remaining,
        })
    }
}
