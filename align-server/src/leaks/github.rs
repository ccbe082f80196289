//! `POST /api/v1/secret-scanning/github`: GitHub's secret-scanning partner intake.
//!
//! GitHub posts a JSON array of matches (`{"token","type","url","source"}`) with headers
//! `Github-Public-Key-Identifier` and `Github-Public-Key-Signature`: a base64 DER ECDSA
//! P-256/SHA-256 signature over the raw body, made with the key of that identifier. The
//! public keys come from `secret_scanning.github_keys_file`, in the JSON GitHub publishes
//! (`{"public_keys":[{"key_identifier","key","is_current"}]}`); every key in the file is
//! accepted, so a rotation (a new current key, the old one still listed) drops no report.
//! The signature is checked with the RustCrypto `p256` crate before anything else is read;
//! a missing or bad one is `401 invalid_signature` and changes nothing.
//!
//! The answer labels each token: `true_positive` when its checksum is valid and it is (or
//! was) an Align key or a key of one of the organisations' key spaces (DESIGN §12), else
//! `false_positive`. A token with a bad checksum never reaches the store. A leaked key space
//! key is revoked when its organisation's `leakedKeyAction` for its environment says so, with a
//! `keyspace_key.leaked` audit record naming the report's `url`.

use std::path::Path;

use align_audit::Actor;
use align_keys::{Reporter, token};
use base64::Engine as _;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::{Deserialize, Serialize};

use super::{Finding, ReportedBy};
use crate::audit::RequestMeta;
use crate::config::Config;
use crate::error::{ApiError, Error};
use crate::http::{self as h, Response};
use crate::state::AppState;

/// The intake's path.
pub(crate) const PATH: &str = "/api/v1/secret-scanning/github";

/// Header naming the key that signed the body.
const KEY_ID_HEADER: &str = "github-public-key-identifier";
/// Header carrying the base64 DER signature.
const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// GitHub's public-keys document.
#[derive(Debug, Deserialize)]
struct KeysFile {
    public_keys: Vec<PublicKeyEntry>,
}

#[derive(Debug, Deserialize)]
struct PublicKeyEntry {
    key_identifier: String,
    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    key: String,
    /// GitHub's current key; older ones stay valid while listed.
    #[serde(default)]
    #[allow(dead_code, reason = "read for the format; every listed key verifies")]
    is_current: bool,
}

/// The public keys, by identifier.
#[derive(Debug)]
pub(crate) struct GithubKeys {
    keys: Vec<(String, VerifyingKey)>,
}

/// Why a keys file cannot be used (for the operator's log, never the reporter).
#[derive(Debug)]
pub(crate) struct BadKeysFile(String);

impl GithubKeys {
    /// Parses GitHub's public-keys JSON.
    pub(crate) fn parse(text: &str) -> Result<Self, BadKeysFile> {
        let file: KeysFile = serde_json::from_str(text)
            .map_err(|e| BadKeysFile(format!("not GitHub's public-keys JSON: {e}")))?;
        let keys = file
            .public_keys
            .into_iter()
            .map(|entry| {
                VerifyingKey::from_public_key_pem(entry.key.trim())
                    .map(|key| (entry.key_identifier.clone(), key))
                    .map_err(|_| {
                        BadKeysFile(format!(
                            "key {:?} is not a PEM P-256 public key",
                            entry.key_identifier
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(BadKeysFile("it lists no public keys".into()));
        }
        Ok(Self { keys })
    }

    /// Reads and parses the file at `path` (at start-up).
    pub(crate) fn load(path: &Path) -> Result<Self, BadKeysFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BadKeysFile(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Reads and parses the file at `path` off the runtime's worker threads (per report).
    pub(crate) async fn read(path: &Path) -> Result<Self, BadKeysFile> {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| BadKeysFile(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Checks `signature` (base64 DER) over `body` with the key named `key_id`.
    pub(crate) fn verify(
        &self,
        key_id: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<(), ApiError> {
        let Some((_, key)) = self.keys.iter().find(|(id, _)| id == key_id) else {
            return Err(ApiError::invalid_signature(
                "Github-Public-Key-Identifier names no configured public key",
            ));
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| {
                ApiError::invalid_signature("Github-Public-Key-Signature is not base64")
            })?;
        let signature = DerSignature::try_from(der.as_slice()).map_err(|_| {
            ApiError::invalid_signature("Github-Public-Key-Signature is not a DER ECDSA signature")
        })?;
        key.verify(body, &signature)
            .map_err(|_| ApiError::invalid_signature("the signature does not match the body"))
    }
}

/// At start-up: a configured keys file that exists must be usable (a typo in it stops the
/// server with the reason). One that does not exist yet only warns: it is read again on every
/// report, so it may be put in place (by the job that fetches GitHub's keys) after the start.
pub(crate) fn check_keys_file(config: &Config) -> Result<(), Error> {
    let Some(path) = &config.secret_scanning.github_keys_file else {
        return Ok(());
    };
    if !path.exists() {
        tracing::warn!(
            path = %path.display(),
            "secret_scanning.github_keys_file does not exist yet: GitHub reports are refused until it does"
        );
        return Ok(());
    }
    GithubKeys::load(path)
        .map(|_| ())
        .map_err(|BadKeysFile(reason)| Error::Setting {
            key: "secret_scanning.github_keys_file".into(),
            reason,
        })
}

/// One header's single value as text; absent, repeated or not text is `None`.
fn single(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.to_str().ok().map(str::to_owned),
        _ => None,
    }
}

/// One match as GitHub sends it.
#[derive(Debug, Deserialize)]
struct Match {
    token: String,
    #[serde(rename = "type", default)]
    token_type: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// One label as GitHub expects it.
#[derive(Serialize)]
struct Label<'a> {
    token_raw: &'a str,
    token_type: &'a str,
    label: &'static str,
}

/// Answers the intake: signature first, then the batch, token by token.
pub(crate) async fn handle<B>(
    state: &AppState,
    parts: Parts,
    body: B,
    meta: &RequestMeta,
) -> Result<Response, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if parts.method != Method::POST {
        return Err(crate::routes::unrouted(&parts.method, PATH));
    }
    let body = crate::app::read_body(body, state.config.max_body_bytes).await?;
    // Without GitHub's keys no report can verify.
    let Some(path) = state.config.secret_scanning.github_keys_file.as_deref() else {
        return Err(ApiError::invalid_signature(
            "this server has no GitHub public keys to check reports against (secret_scanning.github_keys_file)",
        ));
    };
    let (Some(key_id), Some(signature)) = (
        single(&parts.headers, KEY_ID_HEADER),
        single(&parts.headers, SIGNATURE_HEADER),
    ) else {
        return Err(ApiError::invalid_signature(
            "send one Github-Public-Key-Identifier and one Github-Public-Key-Signature header",
        ));
    };
    let keys = GithubKeys::read(path)
        .await
        .map_err(|BadKeysFile(reason)| {
            tracing::error!(%reason, "secret_scanning.github_keys_file cannot be used");
            ApiError::unavailable()
        })?;
    keys.verify(&key_id, &signature, &body)?;

    // The signature vouches for the body; a content type, if any, must still say JSON.
    if parts.headers.contains_key(http::header::CONTENT_TYPE) && !h::is_json(&parts.headers) {
        return Err(ApiError::unsupported_media_type());
    }
    let matches: Vec<Match> = serde_json::from_slice(&body).map_err(|_| {
        ApiError::invalid_request(
            "the body must be a JSON array of {\"token\",\"type\",\"url\",\"source\"}",
        )
    })?;
    let actor = Actor::System;
    let by = ReportedBy {
        reporter: Reporter::GithubSecretScanning,
        actor: &actor,
        meta,
    };
    let mut labels = Vec::with_capacity(matches.len());
    for m in &matches {
        let align_key = is_align_key(state, by, m).await?;
        labels.push(Label {
            token_raw: &m.token,
            token_type: m.token_type.as_deref().unwrap_or(""),
            label: if align_key {
                "true_positive"
            } else {
                "false_positive"
            },
        });
    }
    Ok(h::json(StatusCode::OK, &labels))
}

/// Whether `m` is (or was) an Align key, acting on it if so. A token with a bad checksum is
/// decided without any lookup.
async fn is_align_key(state: &AppState, by: ReportedBy<'_>, m: &Match) -> Result<bool, ApiError> {
    if align_keys::keyspace_token::parse_keyspace_token(&m.token).is_ok() {
        return keyspace_key_leaked(state, by, m).await;
    }
    if token::parse(&m.token).is_err() {
        return Ok(false);
    }
    let hash = state.keys.verifier().hasher().hash(&m.token);
    let Some(key) = state.store().find_key_by_hash(&hash).await? else {
        return Ok(false);
    };
    let finding = Finding {
        token_type: m.token_type.clone(),
        url: m.url.clone(),
        source: m.source.clone(),
        reason: None,
    };
    state.key_leaked(by, &key, finding, false).await?;
    Ok(true)
}

/// Whether `m` is (or was) a key space key, revoking it if its organisation says so.
async fn keyspace_key_leaked(
    state: &AppState,
    by: ReportedBy<'_>,
    m: &Match,
) -> Result<bool, ApiError> {
    let hash = state.keys.verifier().hasher().hash(&m.token);
    let Some(key) = state.keyspaces.store().find_keyspace_key(&hash).await? else {
        return Ok(false);
    };
    let _one_at_a_time = state.leak_lock.lock().await;
    let org = state
        .store()
        .get_organization(key.organization_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let now = chrono::Utc::now();
    let active = matches!(
        key.status(now),
        align_keys::keyspace::KeyspaceKeyStatus::Active
            | align_keys::keyspace::KeyspaceKeyStatus::Suspended
    );
    let revoke = active
        && org.leak_policy.action_for(key.environment) == align_keys::LeakedKeyAction::Revoke;
    if revoke {
        state.keyspaces.revoke(key.id, now).await?;
    }
    let action = if !active {
        "already_inactive"
    } else if revoke {
        "revoked"
    } else {
        "notified"
    };
    tracing::warn!(key = %key.prefix, action, "key space key reported as leaked");
    state
        .audit_by(
            by.meta,
            key.organization_id,
            Some(key.environment),
            by.actor.clone(),
            "keyspace_key.leaked",
            &key.id.to_string(),
            StatusCode::OK,
            serde_json::json!({
                "keyspaceId": key.keyspace_id,
                "keyPrefix": key.prefix,
                "reporter": by.reporter.as_str(),
                "url": m.url,
                "action": action,
            }),
        )
        .await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_file_must_be_githubs_json_with_pem_p256_keys() {
        for (text, says) in [
            ("not json", "not GitHub's public-keys JSON"),
            (r#"{"public_keys":[]}"#, "lists no public keys"),
            (
                r#"{"public_keys":[{"key_identifier":"k1","key":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----","is_current":true}]}"#,
                "\"k1\" is not a PEM P-256 public key",
            ),
        ] {
            match GithubKeys::parse(text) {
                Ok(_) => panic!("accepted {text}"),
                Err(BadKeysFile(reason)) => assert!(reason.contains(says), "{reason}"),
            }
        }
    }

    #[test]
    fn an_unknown_key_id_is_an_invalid_signature() {
        let keys = GithubKeys { keys: Vec::new() };
        let e = keys.verify("k", "c2ln", b"[]").err();
        assert_eq!(e.map(|e| e.code), Some("invalid_signature"));
    }
}
