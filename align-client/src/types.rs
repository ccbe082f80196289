//! The request and response bodies of `docs/openapi.yaml`, field for field (camelCase on the
//! wire). Unknown fields in answers are ignored, so a newer server does not break this client.

mod keyspaces;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use keyspaces::{
    CreateKeyspace, CreateKeyspaceKey, CreditCost, Credits, CreditsLeft, Keyspace, KeyspaceKey,
    KeyspaceKeyQuery, KeyspaceKeyRotation, LimitCost, LimitState, MintedKeyspaceKey, NamedLimit,
    Refill, RefillInterval, UpdateKeyspace, UpdateKeyspaceKey, Verification, VerifyCode, VerifyKey,
};

/// A timestamp of the API (RFC 3339, UTC).
pub type Timestamp = DateTime<Utc>;

/// A secret the API shows once (a key's token, a webhook signing secret). Its `Debug` is
/// redacted; [`Secret::expose`] hands out the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: store it now, never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// A key's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Real traffic.
    Live,
    /// Test traffic; responses carry `Align-Environment: sandbox`.
    Sandbox,
}

impl Environment {
    /// The API's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Sandbox => "sandbox",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a key is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The whole organisation.
    Organization,
    /// One project.
    Project,
}

/// One page of a list operation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items of this page.
    pub data: Vec<T>,
    /// The cursor of the next page; `None` at the end.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// `limit` and `cursor` of a list operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageParams {
    /// Items per page (the server's default when `None`).
    pub limit: Option<u32>,
    /// The previous page's `nextCursor`; `None` for the first page.
    pub cursor: Option<String>,
}

impl PageParams {
    /// The first page with `limit` items at most.
    #[must_use]
    pub fn limit(limit: u32) -> Self {
        Self {
            limit: Some(limit),
            cursor: None,
        }
    }
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Health {
    /// `ok` or `unhealthy`.
    pub status: String,
    /// The parts that do not answer (`keys`, `audit`, `outbox`), when unhealthy.
    #[serde(default)]
    pub failing: Vec<String>,
}

/// `GET /api/v1/me`: the calling key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// The key's id.
    pub api_key_id: Uuid,
    /// The key's name.
    pub key_name: String,
    /// The key's prefix (`ako_…`/`akt_…`, never the token).
    pub key_prefix: String,
    /// Its organisation.
    pub organization_id: Uuid,
    /// Organisation or project.
    pub scope: Scope,
    /// The project of a project key.
    pub scoped_project_id: Option<Uuid>,
    /// The permission names; `None`: every permission the scope and role allow.
    pub permissions: Option<Vec<String>>,
    /// Who created it.
    pub created_by_user_id: Uuid,
    /// This request's time.
    pub last_used_at: Timestamp,
    /// Live or sandbox.
    pub environment: Environment,
}

/// An API key as the API shows it (never its token).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Key {
    /// The key's id.
    pub api_key_id: Uuid,
    /// Its name.
    pub key_name: String,
    /// Its prefix.
    pub key_prefix: String,
    /// Its organisation.
    pub organization_id: Uuid,
    /// Organisation or project.
    pub scope: Scope,
    /// The project of a project key.
    pub scoped_project_id: Option<Uuid>,
    /// The permission names; `None`: every permission the scope and role allow.
    pub permissions: Option<Vec<String>>,
    /// Who created it.
    pub created_by_user_id: Uuid,
    /// Its latest authenticated request.
    pub last_used_at: Option<Timestamp>,
    /// Live or sandbox.
    pub environment: Environment,
    /// When it was minted.
    pub created_at: Timestamp,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// When it was suspended (while it is).
    #[serde(default)]
    pub suspended_at: Option<Timestamp>,
    /// The key it was rotated from.
    #[serde(default)]
    pub rotated_from_key_id: Option<Uuid>,
    /// Its own rate limit per minute.
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
    /// The networks it may be used from (empty: anywhere).
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// Your id for its owner.
    #[serde(default)]
    pub owner_id: Option<String>,
    /// Your data about it.
    #[serde(default)]
    pub meta: Option<Value>,
}

/// A key just minted (`createKey`, `rotateKey`): the key and its token, shown once.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MintedKey {
    /// The key.
    #[serde(flatten)]
    pub resource: Key,
    /// The token (`ako_…`): store it now, it is never shown again.
    pub key: Secret,
}

/// A permission grant of `createKey`: a name (`keys:read`) or `resource:*`.
pub type PermissionGrant = String;

/// The body of `createKey`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateKey {
    /// Its name.
    pub name: String,
    /// Organisation or project.
    pub scope: Scope,
    /// The project (with scope project).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<Uuid>,
    /// The grants; `None`: every permission the scope and the caller's role allow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<PermissionGrant>>,
    /// Live or sandbox (the caller's by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// When it expires (`None`: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Your id for its owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// Your data about it (a JSON object of 4096 bytes at most).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

impl CreateKey {
    /// An organisation-scoped key named `name`, everything else the server's default.
    #[must_use]
    pub fn organization(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            scope: Scope::Organization,
            project_id: None,
            permissions: None,
            environment: None,
            expires_at: None,
            owner_id: None,
            meta: None,
        }
    }

    /// A key of project `project_id` named `name`.
    #[must_use]
    pub fn project(name: impl Into<String>, project_id: Uuid) -> Self {
        Self {
            scope: Scope::Project,
            project_id: Some(project_id),
            ..Self::organization(name)
        }
    }
}

/// The body of `updateKey`. A field left `None` is not changed; `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateKey {
    /// A new name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A new expiry (`Some(None)`: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Option<Timestamp>>,
    /// A new rate limit (`Some(None)`: the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_minute: Option<Option<u32>>,
    /// Your id for its owner (`Some(None)` removes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Option<String>>,
    /// Your data about it (`Some(None)` removes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Option<Value>>,
    /// The networks it may be used from (empty: anywhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_cidrs: Option<Vec<String>>,
}

/// The body of `rotateKey` and `rotateWebhookSecret`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotate {
    /// How long the old key (secret) keeps working, in seconds (server default: a day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u32>,
}

/// The body of `reportKeyCompromise`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportCompromise {
    /// Why (anything token-shaped in it is masked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A leak report.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeakReport {
    /// The report's id.
    pub id: Uuid,
    /// The key reported.
    pub api_key_id: Uuid,
    /// The key's prefix.
    pub key_prefix: String,
    /// The key's environment.
    pub environment: Environment,
    /// The key's project.
    pub scoped_project_id: Option<Uuid>,
    /// `github_secret_scanning` or `customer`.
    pub reporter: String,
    /// The token type GitHub named.
    pub token_type: Option<String>,
    /// Where it was found.
    pub url: Option<String>,
    /// GitHub's source (content, commit, …).
    pub source: Option<String>,
    /// The reason given.
    pub reason: Option<String>,
    /// When it was reported.
    pub reported_at: Timestamp,
    /// `revoked`, `notified` or `already_inactive`.
    pub action: String,
}

/// The answer of `reportKeyCompromise`: the report and the key as it now is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LeakReportWithKey {
    /// The report.
    #[serde(flatten)]
    pub report: LeakReport,
    /// The key.
    pub key: Key,
}

/// One token of a GitHub secret-scanning report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GithubToken {
    /// The token found.
    pub token: String,
    /// Its type.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// GitHub's source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The label the server gives a reported token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GithubLabel {
    /// The token as reported.
    pub token_raw: String,
    /// Its type.
    pub token_type: String,
    /// `true_positive` or `false_positive`.
    pub label: String,
}

/// A project.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its organisation.
    pub organization_id: Uuid,
    /// When it was created.
    pub created_at: Timestamp,
}

/// The body of `createProject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateProject {
    /// Its name.
    pub name: String,
}

/// A user of the organisation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Their id.
    pub id: Uuid,
    /// Their organisation.
    pub organization_id: Uuid,
    /// Their e-mail.
    pub email: String,
    /// Their name.
    pub name: Option<String>,
    /// `admin`, `engineer` or `viewer`.
    pub role: String,
    /// When they were added.
    pub created_at: Timestamp,
}

/// The body of `updateUser`. `None` leaves a field; `name: Some(None)` removes the name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpdateUser {
    /// A new e-mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A new name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Option<String>>,
    /// A new role (`admin`, `engineer`, `viewer`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// The body of `eraseSubject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EraseSubject {
    /// A user id or e-mail, or an API key id.
    pub subject: String,
}

/// The answer of `eraseSubject`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Erasure {
    /// The subject as asked.
    pub subject: String,
    /// How many records were erased.
    pub erased_records: u64,
    /// When.
    pub completed_at: Timestamp,
}

/// What happens to a leaked key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeakedKeyAction {
    /// Revoke it at once.
    Revoke,
    /// Only notify.
    Notify,
}

/// The organisation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Published in `/.well-known/security.txt`.
    pub security_contact: Option<String>,
    /// Where privacy requests go.
    pub privacy_contact: Option<String>,
    /// For leaked live keys.
    pub leaked_key_action: LeakedKeyAction,
    /// For leaked sandbox keys.
    pub leaked_sandbox_key_action: LeakedKeyAction,
    /// When it was created.
    pub created_at: Timestamp,
}

/// The body of `updateOrganization`; `Some(None)` removes a contact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateOrganization {
    /// A new name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The security contact (an e-mail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_contact: Option<Option<String>>,
    /// The privacy contact (an e-mail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privacy_contact: Option<Option<String>>,
    /// For leaked live keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaked_key_action: Option<LeakedKeyAction>,
    /// For leaked sandbox keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaked_sandbox_key_action: Option<LeakedKeyAction>,
}

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// `api_key`, `user` or `system`.
    #[serde(rename = "type")]
    pub actor_type: String,
    /// The key's or user's id.
    #[serde(default)]
    pub id: Option<String>,
    /// The key's prefix.
    #[serde(default)]
    pub key_prefix: Option<String>,
}

/// An audit record (also the shape of a request-log entry).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Its id.
    pub id: Uuid,
    /// Its place in the chain.
    pub sequence: u64,
    /// When.
    pub time: Timestamp,
    /// The organisation.
    #[serde(default)]
    pub organization_id: Option<String>,
    /// The environment.
    #[serde(default)]
    pub environment: Option<Environment>,
    /// Who.
    pub actor: Actor,
    /// What (`api_key.revoked`, …).
    pub action: String,
    /// On what.
    #[serde(default)]
    pub target: Option<String>,
    /// The request that did it.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Its HTTP method.
    #[serde(default)]
    pub method: Option<String>,
    /// Its path.
    #[serde(default)]
    pub path: Option<String>,
    /// Its status.
    #[serde(default)]
    pub status: Option<u16>,
    /// The (coarsened) client address.
    #[serde(default)]
    pub ip: Option<String>,
    /// The user agent.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// More about it.
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// A request-log entry (`listRequestLogs`): the audit record's shape.
pub type RequestLogEntry = AuditEvent;

/// The filters of `listAuditEvents`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditEventQuery {
    /// An API key id.
    pub actor: Option<String>,
    /// An action (`api_key.revoked`).
    pub action: Option<String>,
    /// A target.
    pub target: Option<String>,
    /// From.
    pub since: Option<Timestamp>,
    /// Until.
    pub until: Option<Timestamp>,
    /// Page size and cursor.
    pub page: PageParams,
}

/// The filters of `listRequestLogs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestLogQuery {
    /// One key's requests.
    pub key_id: Option<String>,
    /// One status.
    pub status: Option<u16>,
    /// From.
    pub since: Option<Timestamp>,
    /// Until.
    pub until: Option<Timestamp>,
    /// Page size and cursor.
    pub page: PageParams,
}

/// An event (also delivered by webhooks).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Its id, the `webhook-id` of its deliveries (`msg_…`).
    pub id: String,
    /// Its type (`api_key.created`, …).
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened.
    pub timestamp: Timestamp,
    /// Its environment.
    pub environment: Environment,
    /// The payload.
    pub data: Value,
    /// When it was recorded.
    pub created_at: Timestamp,
}

/// The filters of `listEvents`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    /// A type or a family (`api_key.*`).
    pub event_type: Option<String>,
    /// From.
    pub since: Option<Timestamp>,
    /// Until.
    pub until: Option<Timestamp>,
    /// Sandbox events for a live key.
    pub environment: Option<Environment>,
    /// Page size (up to 1000) and cursor.
    pub page: PageParams,
}

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    /// Its id.
    pub id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// The event types it gets (`None`: all).
    pub event_types: Option<Vec<String>>,
    /// Its environment.
    pub environment: Environment,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Why it was disabled.
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// Its organisation.
    pub organization_id: Uuid,
    /// Its project.
    pub project_id: Option<Uuid>,
    /// `v1` (HMAC) or `v1a` (ed25519).
    pub signature_scheme: String,
    /// Its throughput cap.
    #[serde(default)]
    pub max_per_second: Option<u32>,
    /// Since when deliveries fail.
    #[serde(default)]
    pub failing_since: Option<Timestamp>,
    /// When it was created.
    pub created_at: Timestamp,
}

/// An endpoint with its signing secret, shown once (create, rotate-secret).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `whsec_…` (v1).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// `whpk_…` (v1a).
    #[serde(default)]
    pub public_key: Option<String>,
    /// Until when the previous secret still signs.
    #[serde(default)]
    pub previous_secret_valid_until: Option<Timestamp>,
}

/// The body of `createWebhookEndpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateWebhookEndpoint {
    /// Where deliveries go.
    pub url: String,
    /// Event types or families (`None`: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    /// Its environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// Its project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<Uuid>,
    /// `v1` (default) or `v1a`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_scheme: Option<String>,
    /// A throughput cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_second: Option<u32>,
}

/// The body of `updateWebhookEndpoint`; `Some(None)` clears a nullable field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateWebhookEndpoint {
    /// A new URL (checked again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// New event types (`Some(None)`: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Option<Vec<String>>>,
    /// Enable or disable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A new cap (`Some(None)`: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_second: Option<Option<u32>>,
}

/// The answer of `testWebhookEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookTest {
    /// The message's id.
    pub webhook_id: String,
    /// `webhook.test`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The deliveries queued.
    pub delivery_ids: Vec<Uuid>,
}

/// The answer of `recoverWebhookDeliveries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Recovered {
    /// How many deliveries were queued again.
    pub recovered: u64,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttempt {
    /// When.
    pub at: Timestamp,
    /// The receiver's status.
    #[serde(default)]
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// The first 1024 bytes of the answer.
    #[serde(default)]
    pub response_body: Option<String>,
    /// What went wrong.
    #[serde(default)]
    pub error: Option<String>,
}

/// A delivery of one message to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// Its id.
    pub id: Uuid,
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// The message's id.
    pub webhook_id: String,
    /// The event type.
    #[serde(default)]
    pub event_type: Option<String>,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// How many attempts were made.
    pub attempt_count: u32,
    /// When the next one is due.
    #[serde(default)]
    pub next_attempt_at: Option<Timestamp>,
    /// When it was created.
    pub created_at: Timestamp,
    /// The latest attempts (10 at most).
    pub attempts: Vec<WebhookAttempt>,
}

/// The bucket size of `getKeyUsage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// A minute.
    Minute,
    /// An hour.
    Hour,
    /// A day.
    Day,
}

impl Granularity {
    /// The API's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

/// The parameters of `getKeyUsage` (the server's default: the last 24 hours by hour).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageQuery {
    /// From.
    pub from: Option<Timestamp>,
    /// To.
    pub to: Option<Timestamp>,
    /// The bucket size.
    pub granularity: Option<Granularity>,
}

/// One bucket of a key's usage.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageBucket {
    /// The bucket's start.
    pub start: Timestamp,
    /// Requests in it.
    pub requests: u64,
    /// 2xx and 3xx answers.
    pub succeeded: u64,
    /// 4xx answers other than 429.
    pub client_errors: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// 5xx answers.
    pub server_errors: u64,
}

/// The answer of `getKeyUsage`: one bucket per step, empty ones included.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Usage {
    /// The buckets, oldest first.
    pub data: Vec<UsageBucket>,
}
