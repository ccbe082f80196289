//! Who a request acts for: an API key (with its creator's current role) or a user signed in
//! to the console. Both are judged by align-keys' policy (`Caller` for keys, `UserCaller` for
//! users) and both leave the same audit records, so the API routes and the console pages share
//! every operation in `routes/` through an [`Acting`].

use std::sync::Arc;

use align_audit::Actor;
use align_keys::{
    Denial, Environment, KeyRecord, OrganizationId, Permission, PermissionSet, ProjectId, Scope,
    Target, User, UserCaller, UserId, Vocabulary,
};
use http::StatusCode;
use serde_json::Value;

use crate::app::Auth;
use crate::audit::{AuditNote, RequestMeta};
use crate::error::ApiError;
use crate::state::AppState;

/// The authority behind a request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Principal<'a> {
    /// An API key, with its creator's current role.
    Key(&'a Auth),
    /// A user signed in to the console, as stored now (their current role).
    User(&'a User),
}

impl<'a> Principal<'a> {
    /// The organisation everything it does belongs to.
    pub(crate) fn organization_id(&self) -> OrganizationId {
        match self {
            Self::Key(a) => a.key.record().organization_id,
            Self::User(u) => u.organization_id,
        }
    }

    /// The person whose authority it carries: the key's creator, or the user.
    pub(crate) fn user_id(&self) -> UserId {
        match self {
            Self::Key(a) => a.key.record().created_by,
            Self::User(u) => u.id,
        }
    }

    /// What it may do at most.
    pub(crate) fn effective_permissions(&self) -> PermissionSet {
        match self {
            Self::Key(a) => a.caller().effective_permissions(),
            Self::User(u) => UserCaller {
                user: u,
                vocabulary: &Vocabulary::SERVER,
            }
            .effective_permissions(),
        }
    }

    /// The producer that align-keys' judge weighs for anything this principal mints,
    /// rotates, resumes or widens.
    pub(crate) fn producer(&self) -> align_keys::Producer<'a> {
        match *self {
            Self::Key(a) => align_keys::Producer::Key(a.caller()),
            Self::User(user) => align_keys::Producer::User(UserCaller {
                user,
                vocabulary: &Vocabulary::SERVER,
            }),
        }
    }

    /// Checks that it may use `permission` on `target`; objects out of its reach are `404`.
    pub(crate) fn authorize(&self, permission: Permission, target: Target) -> Result<(), ApiError> {
        match self {
            Self::Key(a) => a.caller().authorize(permission, target),
            Self::User(u) => UserCaller {
                user: u,
                vocabulary: &Vocabulary::SERVER,
            }
            .authorize(permission, target),
        }
        .map_err(denied)
    }

    /// Checks that it holds `permission` at all (for lists, which then show what it reaches).
    pub(crate) fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.effective_permissions().contains(permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                Denial::MissingPermission(permission).to_string(),
            ))
        }
    }

    /// The key's environment; a user has none (live and sandbox are both theirs).
    pub(crate) fn environment(&self) -> Option<Environment> {
        match self {
            Self::Key(a) => Some(a.key.record().environment),
            Self::User(_) => None,
        }
    }

    /// The one project a project key is confined to.
    pub(crate) fn scoped_project(&self) -> Option<ProjectId> {
        match self {
            Self::Key(a) => a.key.record().scope.project_id(),
            Self::User(_) => None,
        }
    }

    /// Whether it sees the whole organisation's live activity (the audit log): an
    /// organisation-scoped live key, or an admin.
    pub(crate) fn oversees_organization(&self) -> bool {
        match self {
            Self::Key(a) => {
                let k = a.key.record();
                k.scope == Scope::Organization && k.environment == Environment::Live
            }
            Self::User(u) => UserCaller {
                user: u,
                vocabulary: &Vocabulary::SERVER,
            }
            .reaches_organization(),
        }
    }

    /// Who the audit log names.
    pub(crate) fn actor(&self) -> Actor {
        match self {
            Self::Key(a) => {
                let k = a.key.record();
                Actor::ApiKey {
                    id: k.id.to_string(),
                    prefix: k.prefix.clone(),
                }
            }
            Self::User(u) => Actor::User {
                id: u.id.to_string(),
            },
        }
    }
}

/// The policy's refusal as an answer: out of reach is `404`, the rest `403`.
pub(crate) fn denied(d: Denial) -> ApiError {
    ApiError::from(align_keys::Error::Forbidden(d))
}

/// A principal acting in one request: what the shared operations in `routes/` take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Acting<'a> {
    /// Who.
    pub(crate) who: Principal<'a>,
    /// The request (id, peer, user agent, method, path) for audit records.
    pub(crate) meta: &'a RequestMeta,
}

impl Acting<'_> {
    /// The audit record of a key change this principal is about to make, for the key store's
    /// hook to stage in the change's transaction (see [`AuditNote`]). `describe` gives the
    /// object's environment, the target and the metadata from the key as the change leaves it.
    pub(crate) fn note(
        &self,
        action: &'static str,
        status: StatusCode,
        describe: impl Fn(&KeyRecord) -> (Option<Environment>, String, Value) + Send + Sync + 'static,
    ) -> Arc<AuditNote> {
        AuditNote::new(
            self.meta,
            self.who.organization_id(),
            self.who.environment(),
            self.who.actor(),
            action,
            status,
            Box::new(describe),
        )
    }

    /// Durably records a security-relevant change (or refusal). A key's records carry its
    /// environment; a user's carry the environment of the object acted on (`env`).
    pub(crate) async fn audit(
        &self,
        state: &AppState,
        env: Option<Environment>,
        action: &str,
        target: &str,
        status: StatusCode,
        metadata: Value,
    ) {
        let environment = self.who.environment().or(env);
        state
            .audit_by(
                self.meta,
                self.who.organization_id(),
                environment,
                self.who.actor(),
                action,
                target,
                status,
                metadata,
            )
            .await;
    }
}
