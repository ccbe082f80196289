//! Security notices by e-mail (`notifications.smtp_url`): what an organisation's security
//! contact is told when one of its keys is reported as leaked. Sent with `lettre` (SMTP with
//! STARTTLS or implicit TLS through rustls, or plain SMTP for a relay on the same machine).
//!
//! A notice names the key by its prefix and says where and when it was found and what was
//! done; it never holds the token (the text is passed through the redactor as well, in case
//! a report's URL or a customer's reason quotes one).

use std::sync::Arc;

use align_keys::{KeyRecord, LeakAction, LeakReport, Organization, Redactor, Reporter};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::NotificationSettings;
use crate::error::Error;

/// Sends security notices, or (without `notifications.smtp_url`) nothing.
#[derive(Clone)]
pub(crate) struct Notifier {
    mailer: Option<Arc<Mailer>>,
}

struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the SMTP URL's credentials: never printed.
        f.debug_struct("Notifier")
            .field("smtp", &self.mailer.is_some())
            .finish()
    }
}

impl Notifier {
    /// A notifier for `settings`; an SMTP URL lettre cannot use is a setting error (its
    /// text is not repeated: it may hold a password).
    pub(crate) fn new(settings: &NotificationSettings) -> Result<Self, Error> {
        let Some(url) = settings.smtp_url.as_deref() else {
            return Ok(Self { mailer: None });
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| Error::Setting {
                key: "notifications.smtp_url".into(),
                reason:
                    "not an SMTP URL lettre can use (smtp://host:port or smtps://user:pass@host)"
                        .into(),
            })?
            .build();
        let from = settings
            .smtp_from
            .parse::<Mailbox>()
            .map_err(|_| Error::Setting {
                key: "notifications.smtp_from".into(),
                reason: "must be an e-mail address".into(),
            })?;
        Ok(Self {
            mailer: Some(Arc::new(Mailer { transport, from })),
        })
    }

    /// Tells `org`'s security contact that `key` was reported as leaked (`report`), in the
    /// background: the report's answer does not wait for the mail server. Nothing is sent
    /// without SMTP settings or a contact; a failure is logged (the `api_key.leaked` event and
    /// audit record stand regardless).
    pub(crate) fn key_leaked(&self, org: &Organization, key: &KeyRecord, report: &LeakReport) {
        let Some(mailer) = self.mailer.clone() else {
            return;
        };
        let Some(contact) = org.security_contact.as_deref() else {
            tracing::info!(
                key = %key.prefix,
                "no security contact set: a leak notice was not e-mailed"
            );
            return;
        };
        let Ok(to) = contact.parse::<Mailbox>() else {
            tracing::warn!(key = %key.prefix, "the security contact is not a usable e-mail address");
            return;
        };
        let (subject, body) = leak_notice(org, key, report);
        let message = Message::builder()
            .from(mailer.from.clone())
            .to(to)
            .subject(subject)
            .body(body);
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, key = %key.prefix, "could not build a leak notice");
                return;
            }
        };
        let prefix = key.prefix.clone();
        tokio::spawn(async move {
            match mailer.transport.send(message).await {
                Ok(_) => {
                    tracing::info!(key = %prefix, "leak notice e-mailed to the security contact")
                }
                // lettre's errors name the server's answer, never the URL's credentials.
                Err(e) => {
                    tracing::warn!(error = %e, key = %prefix, "could not e-mail a leak notice")
                }
            }
        });
    }
}

/// The subject and plain-text body of a leak notice: the key's prefix, name and environment,
/// where and when it was found, and what was done. Never the token.
pub(crate) fn leak_notice(
    org: &Organization,
    key: &KeyRecord,
    report: &LeakReport,
) -> (String, String) {
    let done = match report.action {
        LeakAction::Revoked => {
            "The key was revoked: every request with it now gets 401 key_revoked.".to_owned()
        }
        LeakAction::Notified => format!(
            "The key was NOT revoked (the organisation's leak policy for {} keys is \"notify\"). \
             Revoke it yourself unless you are sure the find is harmless.",
            key.environment.as_str()
        ),
        LeakAction::AlreadyInactive => {
            "Nothing to revoke: the key was already revoked or expired.".to_owned()
        }
    };
    let reporter = match report.reporter {
        Reporter::GithubSecretScanning => "GitHub secret scanning",
        Reporter::Customer => "your organisation (report-compromise)",
    };
    let subject = format!(
        "[Align] API key {} reported as leaked: {}",
        key.prefix,
        report.action.as_str().replace('_', " ")
    );
    let mut body = format!(
        "An API key of the organisation \"{org}\" was reported as leaked.\n\n\
         Key:          {prefix}... (\"{name}\", {env})\n\
         Reported by:  {reporter}\n\
         Reported at:  {at}\n",
        org = org.name,
        prefix = key.prefix,
        name = key.name,
        env = key.environment.as_str(),
        at = crate::http::timestamp(report.reported_at),
    );
    if let Some(url) = &report.url {
        body.push_str(&format!("Found at:     {url}\n"));
    }
    if let Some(source) = &report.source {
        body.push_str(&format!("Source:       {source}\n"));
    }
    if let Some(reason) = &report.reason {
        body.push_str(&format!("Reason:       {reason}\n"));
    }
    body.push_str(&format!(
        "Report id:    {id}\n\nWhat was done: {done}\n\n\
         What to do now: mint a replacement key (or rotate), remove the key from where it was \
         found, and look for use of it in the audit log (action api_key.leaked, and requests by \
         {prefix}).\n",
        id = report.id,
        prefix = key.prefix,
    ));
    let redactor = Redactor::new();
    (
        redactor.redact_text(&subject).into_owned(),
        redactor.redact_text(&body).into_owned(),
    )
}
