//! Leaked keys (DESIGN §10): what happens when a key is reported as found in public, by
//! GitHub secret scanning ([`github`]) or by its own organisation
//! (`POST /keys/{id}/report-compromise`).
//!
//! One path for both, [`AppState::key_leaked`]: the report is recorded once (a repeat changes
//! nothing), an active key is revoked through the key manager (as the organisation's policy
//! says, or always for a customer's own report) so that every verifier refuses it at once, an
//! `api_key.leaked` audit record and event go out, and the security contact is e-mailed.

pub(crate) mod github;

use align_audit::Actor;
use align_keys::{
    KeyRecord, KeyStatus, LeakAction, LeakReport, LeakReportId, LeakedKeyAction, Reporter,
};
use align_webhooks::NewMessage;
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde_json::{Value, json};

use crate::audit::{AuditNote, RequestMeta};
use crate::error::ApiError;
use crate::events::{event_id, owner_of};
use crate::http as h;
use crate::state::AppState;

/// The event (and audit action) of a key reported as leaked.
pub(crate) const KEY_LEAKED: &str = "api_key.leaked";

/// Longest `url`, `source`, token `type` or `reason` kept from a report.
const MAX_FIELD: usize = 2048;

/// Where and how a key was found, as its reporter tells it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Finding {
    /// GitHub's token `type`.
    pub(crate) token_type: Option<String>,
    /// Where (a URL).
    pub(crate) url: Option<String>,
    /// What kind of place (`content`, `commit`, …).
    pub(crate) source: Option<String>,
    /// A customer's words.
    pub(crate) reason: Option<String>,
}

impl Finding {
    /// The finding with each field cut to [`MAX_FIELD`] characters, control characters
    /// dropped and anything token-shaped masked, so a report can never carry a secret into a
    /// record, an event or an e-mail.
    fn cleaned(self) -> Self {
        fn clean(v: Option<String>) -> Option<String> {
            let v = v?;
            let kept: String = v
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_FIELD)
                .collect();
            let kept = align_keys::Redactor::new()
                .redact_text(kept.trim())
                .into_owned();
            (!kept.is_empty()).then_some(kept)
        }
        Self {
            token_type: clean(self.token_type),
            url: clean(self.url),
            source: clean(self.source),
            reason: clean(self.reason),
        }
    }
}

/// Who reports, and the request that carried the report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReportedBy<'a> {
    /// GitHub or the customer.
    pub(crate) reporter: Reporter,
    /// Who the audit log names (the system for GitHub, the caller for a customer).
    pub(crate) actor: &'a Actor,
    /// The request.
    pub(crate) meta: &'a RequestMeta,
}

/// A leak report as the API shows it.
pub(crate) fn view(r: &LeakReport) -> Value {
    json!({
        "id": r.id,
        "apiKeyId": r.key_id,
        "keyPrefix": r.key_prefix,
        "environment": r.environment,
        "scopedProjectId": r.project_id,
        "reporter": r.reporter,
        "tokenType": r.token_type,
        "url": r.url,
        "source": r.source,
        "reason": r.reason,
        "reportedAt": h::timestamp(r.reported_at),
        "action": r.action,
    })
}

/// What to do with `key` reported now under `policy` (`None`: always revoke, a customer's
/// own report).
fn decide(key: &KeyRecord, policy: Option<LeakedKeyAction>, now: DateTime<Utc>) -> LeakAction {
    match key.status_at(now) {
        KeyStatus::Revoked | KeyStatus::Expired => LeakAction::AlreadyInactive,
        KeyStatus::Active | KeyStatus::Suspended => match policy {
            None | Some(LeakedKeyAction::Revoke) => LeakAction::Revoked,
            Some(LeakedKeyAction::Notify) => LeakAction::Notified,
        },
    }
}

impl AppState {
    /// Handles one report of `key` as leaked. Returns the stored report and whether this
    /// call made it: a repeat (same reporter, key, place) returns the first report and
    /// changes nothing. `always_revoke` (a customer's own report) revokes whatever the
    /// organisation's policy says.
    ///
    /// The report is recorded first, so two copies of one report racing each other have one
    /// effect; if revoking then fails, the report is removed again so that the reporter's
    /// retry runs the whole path, and a repeat of a report whose key should have been revoked
    /// but is still active (a crash in between) finishes the job.
    pub(crate) async fn key_leaked(
        &self,
        by: ReportedBy<'_>,
        key: &KeyRecord,
        finding: Finding,
        always_revoke: bool,
    ) -> Result<(LeakReport, bool), ApiError> {
        let finding = finding.cleaned();
        let _one_at_a_time = self.leak_lock.lock().await;
        // As it is now, after any report handled just before this one.
        let key = &self
            .store()
            .get_key(key.id)
            .await?
            .ok_or_else(ApiError::not_found)?;
        let org = self
            .store()
            .get_organization(key.organization_id)
            .await?
            .ok_or_else(ApiError::not_found)?;
        let now = Utc::now();
        let policy = (!always_revoke).then(|| org.leak_policy.action_for(key.environment));
        let report = LeakReport {
            id: LeakReportId::new(),
            fingerprint: LeakReport::fingerprint_of(
                by.reporter,
                key.id,
                finding.url.as_deref(),
                finding.source.as_deref(),
            ),
            organization_id: key.organization_id,
            project_id: key.scope.project_id(),
            key_id: key.id,
            key_prefix: key.prefix.clone(),
            environment: key.environment,
            reporter: by.reporter,
            token_type: finding.token_type,
            url: finding.url,
            source: finding.source,
            reason: finding.reason,
            reported_at: now,
            action: decide(key, policy, now),
        };
        let (report, added) = self.leaks.record_leak(&report).await?;
        // A repeat has no effect of its own, but finishes what a first copy left undone (the
        // process died between recording the report and revoking the key).
        let unfinished = report.action == LeakAction::Revoked
            && matches!(key.status_at(now), KeyStatus::Active | KeyStatus::Suspended);
        if !added && !unfinished {
            return Ok((report, false));
        }
        let key = if report.action == LeakAction::Revoked {
            match self.revoke_leaked(by, key, &report).await {
                Ok(k) => k,
                Err(e) if added => {
                    if let Err(undo) = self.leaks.delete_leak(report.id).await {
                        tracing::error!(error = %undo, key = %key.prefix, "could not remove a leak report whose revocation failed");
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        } else {
            key.clone()
        };
        tracing::warn!(
            key = %key.prefix,
            reporter = report.reporter.as_str(),
            action = report.action.as_str(),
            "API key reported as leaked"
        );
        self.audit_by(
            by.meta,
            key.organization_id,
            Some(key.environment),
            by.actor.clone(),
            KEY_LEAKED,
            &key.id.to_string(),
            StatusCode::OK,
            leak_metadata(&key, &report),
        )
        .await;
        self.emit_leaked(&key, &report).await;
        self.notifier.key_leaked(&org, &key, &report);
        Ok((report, added))
    }

    /// Revokes a leaked key through the key manager (so the verifier cache, the change log
    /// and every other instance see it), with its `api_key.revoked` audit record and event
    /// committed with the change.
    async fn revoke_leaked(
        &self,
        by: ReportedBy<'_>,
        key: &KeyRecord,
        report: &LeakReport,
    ) -> Result<KeyRecord, ApiError> {
        let report_id = report.id;
        let reporter = report.reporter;
        let note = AuditNote::new(
            by.meta,
            key.organization_id,
            Some(key.environment),
            by.actor.clone(),
            "api_key.revoked",
            StatusCode::OK,
            Box::new(move |r: &KeyRecord| {
                let mut meta = crate::routes::keys::summary(r);
                meta["reason"] = json!("leaked");
                meta["leakReportId"] = json!(report_id);
                meta["reporter"] = json!(reporter);
                (Some(r.environment), r.id.to_string(), meta)
            }),
        );
        let revoked = self
            .keys
            .with_attachment(note.attachment())
            .revoke(key.id, report.reported_at)
            .await?;
        note.settle(self, &revoked).await;
        Ok(revoked)
    }

    /// Enqueues `api_key.leaked` (webhooks and `GET /events`) for `key`'s organisation and
    /// environment. A failure is logged; the report and revocation stand.
    async fn emit_leaked(&self, key: &KeyRecord, report: &LeakReport) {
        let mut data = crate::routes::key_view(key);
        data["leak"] = view(report);
        let mut message =
            NewMessage::new(event_id(), KEY_LEAKED, key.environment, data).owned_by(owner_of(key));
        message.timestamp = report.reported_at;
        if let Err(e) = self.webhooks.enqueue(message, Utc::now()).await {
            tracing::error!(error = %e, key = %key.prefix, "could not enqueue api_key.leaked");
        }
    }
}

/// The `api_key.leaked` audit record's metadata: the key (never the token) and the report.
fn leak_metadata(key: &KeyRecord, report: &LeakReport) -> Value {
    let mut meta = crate::routes::keys::summary(key);
    meta["leakReportId"] = json!(report.id);
    meta["reporter"] = json!(report.reporter);
    meta["url"] = json!(report.url);
    meta["source"] = json!(report.source);
    meta["tokenType"] = json!(report.token_type);
    meta["reason"] = json!(report.reason);
    meta["action"] = json!(report.action);
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use align_keys::Environment;

    /// Whether `environment`'s keys are revoked when leaked under the default policy.
    fn revoked_by_default(environment: Environment) -> bool {
        align_keys::LeakPolicy::default().action_for(environment) == LeakedKeyAction::Revoke
    }

    #[test]
    fn by_default_live_keys_are_revoked_and_sandbox_keys_reported() {
        assert!(revoked_by_default(Environment::Live));
        assert!(!revoked_by_default(Environment::Sandbox));
    }

    #[test]
    fn a_finding_never_carries_a_token() {
        let fixture = concat!(
            "ako_9311c954_",
            "00000000000000000000000000000000000000000000",
            "Rws4U"
        );
        let f = Finding {
            reason: Some(format!("pasted {fixture} in chat\u{7}")),
            url: Some(format!("https://example.test/?k={fixture}")),
            ..Finding::default()
        }
        .cleaned();
        let all = format!("{:?}", f);
        assert!(!all.contains(fixture), "{all}");
        assert!(!all.contains('\u{7}'));
        assert!(all.contains("ako_9311c954"), "{all}");
    }
}
