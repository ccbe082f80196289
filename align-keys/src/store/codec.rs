//! Conversions shared by the SQL stores: times as Unix milliseconds, ids as text,
//! permission and network lists as space-separated text, and a key row before decoding.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::{
    IpNet, KeyId, KeyRecord, Meta, OrganizationId, PermissionSet, ProjectId, Scope, UserId,
    Vocabulary,
};
use crate::error::{Error, Result};
use crate::token::Environment;

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn opt_ms(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(ms)
}

pub(super) fn time(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v).ok_or(Error::Corrupt("timestamp"))
}

pub(super) fn opt_time(v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(time).transpose()
}

pub(super) fn uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| Error::Corrupt("id"))
}

/// The key's permission names as stored: the declared ones, then the unrecognized ones it was
/// read with (kept so that a rewrite loses nothing).
pub(super) fn permissions_text(k: &KeyRecord) -> Option<String> {
    k.permissions.map(|set| {
        let mut names: Vec<&str> = k.vocabulary.names(set).collect();
        names.extend(k.unrecognized_permissions.iter().map(String::as_str));
        names.join(" ")
    })
}

/// Stored names read with `vocabulary`: names it does not declare grant nothing and are kept
/// apart ([`Vocabulary::decode`]); they never make the row unreadable.
pub(super) fn permissions_from(
    vocabulary: &Vocabulary,
    text: Option<String>,
) -> (Option<PermissionSet>, Vec<String>) {
    match text {
        None => (None, Vec::new()),
        Some(t) => {
            let (set, unknown) = vocabulary.decode(t.split_whitespace());
            (Some(set), unknown)
        }
    }
}

/// A key's `meta` as stored (JSON text).
pub(super) fn meta_text(meta: Option<&Meta>) -> Option<String> {
    meta.map(|m| serde_json::Value::Object(m.clone()).to_string())
}

pub(super) fn meta_from(text: Option<&str>) -> Result<Option<Meta>> {
    text.map(|t| serde_json::from_str::<Meta>(t).map_err(|_| Error::Corrupt("meta")))
        .transpose()
}

pub(super) fn cidrs_text(nets: &[IpNet]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn cidrs_from(text: &str) -> Result<Vec<IpNet>> {
    text.split_whitespace()
        .map(|n| n.parse().map_err(|_| Error::Corrupt("allowed network")))
        .collect()
}

/// A key row as stored, before its columns are checked.
pub(super) struct RawKey {
    pub(super) seq: i64,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) prefix: String,
    pub(super) environment: String,
    pub(super) organization_id: String,
    pub(super) project_id: Option<String>,
    pub(super) permissions: Option<String>,
    pub(super) created_by: String,
    pub(super) created_at: i64,
    pub(super) last_used_at: Option<i64>,
    pub(super) expires_at: Option<i64>,
    pub(super) revoked_at: Option<i64>,
    pub(super) suspended_at: Option<i64>,
    pub(super) rotated_from: Option<String>,
    pub(super) rate_limit_per_minute: Option<i64>,
    pub(super) allowed_cidrs: String,
    pub(super) owner_id: Option<String>,
    pub(super) meta: Option<String>,
}

impl RawKey {
    /// Decodes the row with the store's `vocabulary`; a malformed column is
    /// [`Error::Corrupt`], a permission the vocabulary does not declare is not (it grants
    /// nothing and is kept in [`KeyRecord::unrecognized_permissions`]).
    pub(super) fn into_record(self, vocabulary: &'static Vocabulary) -> Result<KeyRecord> {
        let (permissions, unrecognized_permissions) =
            permissions_from(vocabulary, self.permissions);
        let scope = match self.project_id {
            None => Scope::Organization,
            Some(p) => Scope::Project(ProjectId(uuid(&p)?)),
        };
        Ok(KeyRecord {
            id: KeyId(uuid(&self.id)?),
            name: self.name,
            prefix: self.prefix,
            environment: Environment::from_name(&self.environment)
                .ok_or(Error::Corrupt("environment"))?,
            organization_id: OrganizationId(uuid(&self.organization_id)?),
            scope,
            permissions,
            unrecognized_permissions,
            vocabulary,
            owner_id: self.owner_id,
            meta: meta_from(self.meta.as_deref())?,
            created_by: UserId(uuid(&self.created_by)?),
            created_at: time(self.created_at)?,
            last_used_at: opt_time(self.last_used_at)?,
            expires_at: opt_time(self.expires_at)?,
            revoked_at: opt_time(self.revoked_at)?,
            suspended_at: opt_time(self.suspended_at)?,
            rotated_from: self
                .rotated_from
                .as_deref()
                .map(uuid)
                .transpose()?
                .map(KeyId),
            rate_limit_per_minute: self
                .rate_limit_per_minute
                .map(|n| u32::try_from(n).map_err(|_| Error::Corrupt("rate limit")))
                .transpose()?,
            allowed_cidrs: cidrs_from(&self.allowed_cidrs)?,
        })
    }
}

/// Decodes a session row (user id, CSRF token, created, expires).
pub(super) fn session_from(
    user: &str,
    csrf: &[u8],
    created: i64,
    expires: i64,
) -> Result<crate::password::UserSession> {
    Ok(crate::password::UserSession {
        user_id: UserId(uuid(user)?),
        csrf: csrf.try_into().map_err(|_| Error::Corrupt("session"))?,
        created_at: time(created)?,
        expires_at: time(expires)?,
    })
}

/// A leak report row before decoding (both SQL stores select the same columns).
pub(super) struct RawLeak {
    pub(super) seq: i64,
    pub(super) id: String,
    pub(super) fingerprint: Vec<u8>,
    pub(super) organization_id: String,
    pub(super) project_id: Option<String>,
    pub(super) key_id: String,
    pub(super) key_prefix: String,
    pub(super) environment: String,
    pub(super) reporter: String,
    pub(super) token_type: Option<String>,
    pub(super) url: Option<String>,
    pub(super) source: Option<String>,
    pub(super) reason: Option<String>,
    pub(super) reported_at: i64,
    pub(super) action: String,
}

/// The columns a [`RawLeak`] is read from, in order.
pub(super) const LEAK_COLUMNS: &str = "seq, id, fingerprint, organization_id, project_id, \
    key_id, key_prefix, environment, reporter, token_type, url, source, reason, reported_at, \
    action";

impl RawLeak {
    pub(super) fn into_report(self) -> Result<crate::leak::LeakReport> {
        use crate::leak::{LeakAction, LeakReport, LeakReportId, Reporter};
        Ok(LeakReport {
            id: LeakReportId(uuid(&self.id)?),
            fingerprint: self
                .fingerprint
                .try_into()
                .map_err(|_| Error::Corrupt("leak fingerprint"))?,
            organization_id: OrganizationId(uuid(&self.organization_id)?),
            project_id: self
                .project_id
                .as_deref()
                .map(uuid)
                .transpose()?
                .map(ProjectId),
            key_id: KeyId(uuid(&self.key_id)?),
            key_prefix: self.key_prefix,
            environment: Environment::from_name(&self.environment)
                .ok_or(Error::Corrupt("environment"))?,
            reporter: Reporter::from_name(&self.reporter).ok_or(Error::Corrupt("reporter"))?,
            token_type: self.token_type,
            url: self.url,
            source: self.source,
            reason: self.reason,
            reported_at: time(self.reported_at)?,
            action: LeakAction::from_name(&self.action).ok_or(Error::Corrupt("leak action"))?,
        })
    }
}

/// An organisation's leak policy from its two stored columns.
pub(super) fn leak_policy(live: &str, sandbox: &str) -> Result<crate::leak::LeakPolicy> {
    use crate::leak::LeakedKeyAction;
    Ok(crate::leak::LeakPolicy {
        live: LeakedKeyAction::from_name(live).ok_or(Error::Corrupt("leaked_key_action"))?,
        sandbox: LeakedKeyAction::from_name(sandbox)
            .ok_or(Error::Corrupt("leaked_sandbox_key_action"))?,
    })
}
