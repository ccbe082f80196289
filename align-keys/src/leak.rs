//! Leaked keys: what an organisation wants done when one of its keys is found in public
//! ([`LeakPolicy`]), the reports of such finds ([`LeakReport`]) and where they are kept
//! ([`LeakStore`], implemented by every key store in the same database).
//!
//! A report is recorded once: its [`LeakReport::fingerprint`] (who reported which key where)
//! is unique in the store, so a scanner that sends the same find twice changes nothing the
//! second time.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{KeyId, OrganizationId, ProjectId};
use crate::error::Result;
use crate::store::{Page, PageRequest};
use crate::token::Environment;

/// What happens to an active key reported as leaked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeakedKeyAction {
    /// Revoke the key at once (and tell the security contact).
    Revoke,
    /// Only tell the security contact; the key keeps working.
    Notify,
}

impl LeakedKeyAction {
    /// `revoke` or `notify`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Revoke => "revoke",
            Self::Notify => "notify",
        }
    }

    /// Parses `revoke` or `notify`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Revoke, Self::Notify]
            .into_iter()
            .find(|a| a.as_str() == name)
    }
}

/// An organisation's answer to a leaked key, per environment: by default a live key is
/// revoked and a sandbox key (which reaches no live data) only reported.
///
/// ```
/// use align_keys::{Environment, LeakPolicy, LeakedKeyAction};
/// let policy = LeakPolicy::default();
/// assert_eq!(policy.action_for(Environment::Live), LeakedKeyAction::Revoke);
/// assert_eq!(policy.action_for(Environment::Sandbox), LeakedKeyAction::Notify);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeakPolicy {
    /// For live keys (`leakedKeyAction`); default [`LeakedKeyAction::Revoke`].
    pub live: LeakedKeyAction,
    /// For sandbox keys (`leakedSandboxKeyAction`); default [`LeakedKeyAction::Notify`].
    pub sandbox: LeakedKeyAction,
}

impl Default for LeakPolicy {
    fn default() -> Self {
        Self {
            live: LeakedKeyAction::Revoke,
            sandbox: LeakedKeyAction::Notify,
        }
    }
}

impl LeakPolicy {
    /// What to do with a leaked key of `environment`.
    pub const fn action_for(&self, environment: Environment) -> LeakedKeyAction {
        match environment {
            Environment::Live => self.live,
            Environment::Sandbox => self.sandbox,
        }
    }
}

/// Identifies a leak report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeakReportId(pub uuid::Uuid);

impl LeakReportId {
    /// A fresh random (v4) id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for LeakReportId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for LeakReportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Who reported a leak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reporter {
    /// GitHub secret scanning (a signed partner report).
    GithubSecretScanning,
    /// The organisation itself (`POST /keys/{id}/report-compromise`).
    Customer,
}

impl Reporter {
    /// `github_secret_scanning` or `customer`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::GithubSecretScanning => "github_secret_scanning",
            Self::Customer => "customer",
        }
    }

    /// Parses [`Self::as_str`]'s names.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::GithubSecretScanning, Self::Customer]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// What was done about a reported key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakAction {
    /// The key was revoked because of this report.
    Revoked,
    /// The security contact was told; the key keeps working (the organisation's policy).
    Notified,
    /// Nothing to revoke: the key was already revoked or expired.
    AlreadyInactive,
}

impl LeakAction {
    /// `revoked`, `notified` or `already_inactive`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Notified => "notified",
            Self::AlreadyInactive => "already_inactive",
        }
    }

    /// Parses [`Self::as_str`]'s names.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Revoked, Self::Notified, Self::AlreadyInactive]
            .into_iter()
            .find(|a| a.as_str() == name)
    }
}

/// One report of a leaked key: which key (by id and prefix, never the token), where it was
/// found, when, by whom, and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakReport {
    /// Its id.
    pub id: LeakReportId,
    /// What makes two reports the same report (see [`LeakReport::fingerprint_of`]); unique
    /// in the store.
    pub fingerprint: [u8; 32],
    /// The key's organisation.
    pub organization_id: OrganizationId,
    /// The key's project, for a project-scoped key.
    pub project_id: Option<ProjectId>,
    /// The key.
    pub key_id: KeyId,
    /// The key's public prefix (`ako_9311c954`).
    pub key_prefix: String,
    /// The key's environment.
    pub environment: Environment,
    /// Who reported it.
    pub reporter: Reporter,
    /// The reporter's name for the token type (GitHub's `type`).
    pub token_type: Option<String>,
    /// Where it was found (GitHub's `url`).
    pub url: Option<String>,
    /// What kind of place (GitHub's `source`: `content`, `commit`, `gist`, …).
    pub source: Option<String>,
    /// The customer's reason (redacted of anything secret-looking).
    pub reason: Option<String>,
    /// When the report arrived.
    pub reported_at: DateTime<Utc>,
    /// What was done.
    pub action: LeakAction,
}

impl LeakReport {
    /// The fingerprint of a report by `reporter` of `key` found at `url` in `source`: the
    /// SHA-256 of those fields, each length-prefixed so that no two field lists collide.
    pub fn fingerprint_of(
        reporter: Reporter,
        key: KeyId,
        url: Option<&str>,
        source: Option<&str>,
    ) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let key = key.to_string();
        for field in [Some(reporter.as_str()), Some(key.as_str()), url, source] {
            match field {
                None => ctx.update(b"-"),
                Some(f) => {
                    ctx.update(&(f.len() as u64).to_be_bytes());
                    ctx.update(f.as_bytes());
                }
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}

/// Where leak reports are kept. Every key store implements it over its own database (tables
/// prefixed `keys_`), so a report lives beside the key it names.
#[async_trait]
pub trait LeakStore: Send + Sync + 'static {
    /// Records `report` unless one with the same fingerprint exists. Returns the stored report
    /// (the earlier one for a repeat) and whether this call added it.
    async fn record_leak(&self, report: &LeakReport) -> Result<(LeakReport, bool)>;
    /// Removes a report (a report whose revocation failed, so that a retry runs again).
    async fn delete_leak(&self, id: LeakReportId) -> Result<()>;
    /// An organisation's reports, oldest first.
    async fn list_leaks(
        &self,
        organization: OrganizationId,
        page: &PageRequest,
    ) -> Result<Page<LeakReport>>;
}
