//! Privacy rights made operable (DESIGN §9): everything Align holds about a person or a key,
//! exported as JSON Lines, and erased on request. The HTTP routes
//! (`/api/v1/privacy/*`, `/api/v1/users/*`), the console's profile page and the operator CLI
//! (`align privacy export|erase`, `align users delete`) all call these functions, so every
//! way in keeps the same promises (`docs/privacy.md`).
//!
//! A person's records are found through their id and through the ids of the keys they
//! created: a request made with a key is logged with the key as its actor, so an admin's
//! export holds the requests of their keys too.

use std::collections::BTreeMap;

use align_audit::{AuditSink, ExportRecord, MAX_LIMIT, Query, Record, Stream};
use align_keys::store::{KeyFilter, KeyStore, PageRequest};
use align_keys::{KeyId, KeyRecord, OrganizationId, User, UserId};
use align_webhooks::WebhookStore;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::error::Error;
use crate::http::timestamp;

/// Whom an export or erasure is about.
#[derive(Debug, Clone)]
pub enum Subject {
    /// A person: their user record, the keys they created and every record of either.
    User(User),
    /// One API key and its records.
    Key(Box<KeyRecord>),
}

impl Subject {
    /// The subject's id, as logs name it.
    pub fn id(&self) -> String {
        match self {
            Self::User(u) => u.id.to_string(),
            Self::Key(k) => k.id.to_string(),
        }
    }

    /// The organisation the subject belongs to.
    pub fn organization_id(&self) -> OrganizationId {
        match self {
            Self::User(u) => u.organization_id,
            Self::Key(k) => k.organization_id,
        }
    }
}

/// Finds the user (by id or e-mail) or key (by id) `id` of organisation `org`; `None` when
/// there is none there (an object of another organisation is never found, so it is never
/// revealed).
pub async fn find_subject(
    keys: &dyn KeyStore,
    org: OrganizationId,
    id: &str,
) -> Result<Option<Subject>, Error> {
    let id = id.trim();
    let Ok(uuid) = uuid::Uuid::parse_str(id) else {
        // A person may also be named by their e-mail.
        if !id.contains('@') {
            return Ok(None);
        }
        let mut page = PageRequest {
            limit: align_keys::store::MAX_PAGE_SIZE,
            cursor: None,
        };
        loop {
            let got = keys.list_users(org, &page).await?;
            if let Some(u) = got.data.into_iter().find(|u| u.email == id) {
                return Ok(Some(Subject::User(u)));
            }
            match got.next_cursor {
                Some(c) => page.cursor = Some(c),
                None => return Ok(None),
            }
        }
    };
    if let Some(user) = keys.get_user(UserId(uuid)).await? {
        return Ok((user.organization_id == org).then_some(Subject::User(user)));
    }
    if let Some(key) = keys.get_key(KeyId(uuid)).await? {
        return Ok((key.organization_id == org).then_some(Subject::Key(Box::new(key))));
    }
    Ok(None)
}

/// The keys `user` created in `org`, every environment, revoked ones included, oldest first.
pub async fn keys_created_by(
    keys: &dyn KeyStore,
    org: OrganizationId,
    user: UserId,
) -> Result<Vec<KeyRecord>, Error> {
    let filter = KeyFilter {
        organization_id: org,
        project_id: None,
        environment: None,
        include_revoked: true,
    };
    let mut page = PageRequest {
        limit: align_keys::store::MAX_PAGE_SIZE,
        cursor: None,
    };
    let mut out = Vec::new();
    loop {
        let got = keys.list_keys(&filter, &page).await?;
        out.extend(got.data.into_iter().filter(|k| k.created_by == user));
        match got.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// The ids whose log records are the subject's: a user's own and their keys'; a key's own.
fn log_ids(subject: &Subject, keys: &[KeyRecord]) -> Vec<String> {
    let mut ids = vec![subject.id()];
    if matches!(subject, Subject::User(_)) {
        ids.extend(keys.iter().map(|k| k.id.to_string()));
    }
    ids
}

/// A user record as the export and `GET /users` show it.
pub(crate) fn user_view(u: &User) -> Value {
    json!({
        "id": u.id,
        "organizationId": u.organization_id,
        "email": u.email,
        "name": u.name,
        "role": u.role,
        "createdAt": timestamp(u.created_at),
    })
}

/// Every log record naming one of `ids` (as subject or actor, or in the audit log as
/// target), each once, ordered by stream and sequence.
async fn records_of(
    audit: &dyn AuditSink,
    ids: &[String],
) -> Result<BTreeMap<(u8, u64), Record>, Error> {
    audit.commit_staged().await?;
    audit.flush().await?;
    let mut found = BTreeMap::new();
    for id in ids {
        let queries = [
            Query::new(Stream::Audit).subject(id.as_str()),
            Query::new(Stream::Request).subject(id.as_str()),
            Query::new(Stream::Audit).target(id.as_str()),
        ];
        for mut q in queries {
            q = q.limit(MAX_LIMIT);
            loop {
                let page = audit.query(&q).await?;
                for r in page.records {
                    let stream = u8::from(r.entry().stream() == Stream::Request);
                    found.insert((stream, r.sequence()), r);
                }
                match page.next_cursor {
                    Some(c) => q = q.after(c),
                    None => break,
                }
            }
        }
    }
    Ok(found)
}

/// Writes everything Align holds about `subject` to `out` as JSON Lines and returns the
/// number of lines: the user record (`"kind":"user"`), the keys they created (or the key,
/// `"kind":"apiKey"`), and every audit and request-log record naming the user or one of
/// those keys (`"kind":"audit"` / `"kind":"request"`, the log's export view: values, never
/// hashes, tokens or secrets). A record's personal values (IP, user agent) are its actor's,
/// so they are shown only where the subject (or one of their keys) acted.
pub async fn export(
    keys: &dyn KeyStore,
    audit: &dyn AuditSink,
    subject: &Subject,
    out: &mut Vec<u8>,
) -> Result<u64, Error> {
    let theirs = match subject {
        Subject::User(u) => keys_created_by(keys, u.organization_id, u.id).await?,
        Subject::Key(k) => vec![(**k).clone()],
    };
    let mut lines = 0;
    let mut line = |v: &Value, out: &mut Vec<u8>| {
        // A Value always serialises.
        if serde_json::to_writer(&mut *out, v).is_ok() {
            out.push(b'\n');
            lines += 1;
        }
    };
    if let Subject::User(u) = subject {
        let mut v = user_view(u);
        tag(&mut v, "user");
        line(&v, out);
    }
    for k in &theirs {
        let mut v = crate::routes::key_view(k);
        tag(&mut v, "apiKey");
        line(&v, out);
    }
    let ids = log_ids(subject, &theirs);
    for ((stream, _), r) in records_of(audit, &ids).await? {
        let mut v = serde_json::to_value(ExportRecord::of(&r)).unwrap_or(Value::Null);
        // The personal values of a record are its actor's: someone else's action about the
        // subject (an admin changing their role) does not hand over that person's IP.
        let theirs_acted = r
            .entry()
            .actor()
            .id()
            .is_some_and(|a| ids.iter().any(|id| id == a));
        if !theirs_acted {
            if let Value::Object(map) = &mut v {
                map.insert("personal".into(), json!({}));
            }
        }
        tag(&mut v, if stream == 1 { "request" } else { "audit" });
        line(&v, out);
    }
    Ok(lines)
}

/// Puts `"kind"` first in an export line.
fn tag(v: &mut Value, kind: &str) {
    if let Value::Object(map) = v {
        let rest = std::mem::take(map);
        map.insert("kind".into(), Value::String(kind.into()));
        map.extend(rest);
    }
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The subject's id.
    pub subject: String,
    /// Records changed: log records whose personal values were erased, webhook messages and
    /// attempts that named the person, the user record, sessions ended.
    pub erased_records: u64,
    /// When it finished.
    pub completed_at: DateTime<Utc>,
}

impl Erasure {
    /// The answer of `POST /privacy/erasure`.
    pub fn view(&self) -> Value {
        json!({
            "subject": self.subject,
            "erasedRecords": self.erased_records,
            "completedAt": timestamp(self.completed_at),
        })
    }
}

/// The e-mail an erased user keeps: unique in the organisation, reserved (`.invalid`), and
/// no one's.
pub fn erased_email(id: UserId) -> String {
    format!("erased-{id}@erased.invalid")
}

/// Erases the personal values Align holds about `subject`, everywhere it holds them: IP
/// addresses, user agents and other personal fields of every audit and request-log record
/// naming the person or one of their keys (the hash chains still verify), the person's
/// e-mail and name in their organisation's webhook messages and recorded attempts (an e-mail
/// wherever it occurs, a name where it is a whole JSON string), and in their user record (the
/// e-mail becomes [`erased_email`], which no one can sign in with); their sessions end.
/// Keys and their ids stay: they are not personal, and the audit trail needs them.
pub async fn erase(
    keys: &dyn KeyStore,
    audit: &dyn AuditSink,
    webhooks: &dyn WebhookStore,
    subject: &Subject,
) -> Result<Erasure, Error> {
    let theirs = match subject {
        Subject::User(u) => keys_created_by(keys, u.organization_id, u.id).await?,
        Subject::Key(_) => Vec::new(),
    };
    audit.commit_staged().await?;
    audit.flush().await?;
    let mut erased = 0;
    for id in log_ids(subject, &theirs) {
        erased += audit.erase_subject(&id).await?;
    }
    if let Subject::User(u) = subject {
        // Stored fresh: the caller's copy may predate a correction.
        let current = keys.get_user(u.id).await?.unwrap_or_else(|| u.clone());
        let mut values = vec![current.email.clone(), u.email.clone()];
        values.extend(current.name.iter().chain(u.name.iter()).cloned());
        values.sort();
        values.dedup();
        erased += webhooks
            .erase_values(&u.organization_id.to_string(), &values)
            .await?;
        erased += keys.delete_user_sessions(u.id).await?;
        let blank = erased_email(u.id);
        if current.email != blank || current.name.is_some() {
            match keys.update_user_profile(u.id, &blank, None).await {
                Ok(()) => erased += 1,
                // Deleted meanwhile: nothing of theirs is left there.
                Err(align_keys::Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Erasure {
        subject: subject.id(),
        erased_records: erased,
        completed_at: Utc::now(),
    })
}
