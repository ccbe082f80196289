//! API-key authentication as `tower` layers (feature `tower`), for axum, hyper or any tower
//! stack: [`KeyAuthLayer`] authenticates, [`RequirePermissionLayer`] (from [`require`]) guards a
//! route with one permission.
//!
//! A request with a valid key, whose creator's current role is known and whose address is
//! inside the key's allow-list, reaches the inner service with [`Authenticated`],
//! [`VerifiedKey`] and the caller's [`align_core::KeyIdentity`] (as an `Arc`) in its
//! extensions; the response carries the `VerifiedKey` and the identity too, for outer layers
//! (request log, metrics), and `Align-Environment: sandbox` for a sandbox key. Any other request
//! is answered here through [`align_http::ApiError`], the one envelope: `400
//! ambiguous_credentials`, `401 missing_key` / `invalid_key` / `key_revoked` / `key_expired` /
//! `key_suspended` (with `WWW-Authenticate: Bearer`), `403 forbidden` outside the allow-list,
//! `503 unavailable` when the store cannot be reached.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use align_http::{ApiError, PeerAddr, RequestId};
use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::http::{CredentialProblem, presented_key};
use crate::policy::Caller;
use crate::verifier::{KeyVerifier, Verification, VerifiedKey};
use crate::{Environment, Permission, Role, UserId};

/// `Align-Environment`.
const ALIGN_ENVIRONMENT: HeaderName = HeaderName::from_static("align-environment");

/// Where the layer learns the *current* role of a key's creator (a key's power is bounded by
/// it: DESIGN §3). The reference server reads its user store, cached for a second.
#[async_trait]
pub trait CreatorRoles: Send + Sync + 'static {
    /// The role `user` holds now; a user who no longer exists should count as a viewer.
    async fn role_of(&self, user: UserId) -> Result<Role, crate::Error>;
}

/// The caller of a request that [`KeyAuthLayer`] let through.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The verified key.
    pub key: VerifiedKey,
    /// Its creator's current role ([`Role::Admin`] when the layer has no [`CreatorRoles`]: the
    /// key is then bounded by its own scope and permissions only).
    pub creator_role: Role,
}

impl Authenticated {
    /// The policy's view of the caller.
    pub fn caller(&self) -> Caller<'_> {
        Caller {
            key: self.key.record(),
            creator_role: self.creator_role,
        }
    }
}

/// Adds API-key authentication to a service.
///
/// ```
/// use std::sync::Arc;
/// use align_keys::{KeyVerifier, MemoryKeyStore, Sha256Hasher, layer::KeyAuthLayer};
/// let verifier = Arc::new(KeyVerifier::new(Arc::new(MemoryKeyStore::new()), Arc::new(Sha256Hasher)));
/// let layer = KeyAuthLayer::new(verifier);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct KeyAuthLayer {
    verifier: Arc<KeyVerifier>,
    roles: Option<Arc<dyn CreatorRoles>>,
}

impl std::fmt::Debug for KeyAuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAuthLayer")
            .field("roles", &self.roles.is_some())
            .finish_non_exhaustive()
    }
}

impl KeyAuthLayer {
    /// A layer verifying keys with `verifier`.
    pub fn new(verifier: Arc<KeyVerifier>) -> Self {
        Self {
            verifier,
            roles: None,
        }
    }

    /// Bounds every key by its creator's current role, read from `roles`.
    pub fn with_roles(mut self, roles: Arc<dyn CreatorRoles>) -> Self {
        self.roles = Some(roles);
        self
    }
}

impl<S> Layer<S> for KeyAuthLayer {
    type Service = KeyAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyAuth {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`KeyAuthLayer`].
#[derive(Clone)]
pub struct KeyAuth<S> {
    inner: S,
    layer: KeyAuthLayer,
}

impl<S> std::fmt::Debug for KeyAuth<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyAuth")
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for KeyAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let request_id = req.extensions().get::<RequestId>().cloned();
            let rid = request_id.as_ref().map_or("", RequestId::as_str);
            let (key, creator_role) = match authenticate(&layer, req.headers()).await {
                Ok(found) => found,
                Err(e) => return Ok(e.to_response(rid)),
            };
            let identity = key.identity();
            let mut response = if allowed_here(&key, PeerAddr::ip_of(&req)) {
                let ext = req.extensions_mut();
                ext.insert(Authenticated {
                    key: key.clone(),
                    creator_role,
                });
                ext.insert(key.clone());
                ext.insert(Arc::clone(&identity));
                inner.call(req).await?
            } else {
                ApiError::forbidden(
                    "this key may not be used from this network (see its allowedCidrs)",
                )
                .to_response(rid)
            };
            if key.record().environment == Environment::Sandbox {
                response
                    .headers_mut()
                    .insert(ALIGN_ENVIRONMENT, HeaderValue::from_static("sandbox"));
            }
            // Outer layers (request log, metrics, audit) learn the caller from the response.
            response.extensions_mut().insert(key);
            response.extensions_mut().insert(identity);
            Ok(response)
        })
    }
}

/// Whether `key` may be used from `ip` (no address known: only a key without an allow-list).
fn allowed_here(key: &VerifiedKey, ip: Option<std::net::IpAddr>) -> bool {
    let record = key.record();
    match ip {
        Some(ip) => record.allows_ip(ip),
        None => record.allowed_cidrs.is_empty(),
    }
}

/// The verified key of `headers` and its creator's current role, or the refusal.
async fn authenticate(
    layer: &KeyAuthLayer,
    headers: &http::HeaderMap,
) -> Result<(VerifiedKey, Role), ApiError> {
    let token = presented_key(headers).map_err(|p| match p {
        CredentialProblem::Missing => ApiError::missing_key(),
        CredentialProblem::Malformed => ApiError::invalid_key(),
        CredentialProblem::Ambiguous => ApiError::ambiguous_credentials(),
    })?;
    let key = match layer.verifier.verify(token, chrono::Utc::now()).await? {
        Verification::Valid(k) => k,
        Verification::Invalid(_) => return Err(ApiError::invalid_key()),
        Verification::Revoked(_) => return Err(ApiError::key_revoked()),
        Verification::Expired(_) => return Err(ApiError::key_expired()),
        Verification::Suspended(_) => return Err(ApiError::key_suspended()),
    };
    let role = match &layer.roles {
        Some(roles) => roles.role_of(key.record().created_by).await?,
        None => Role::Admin,
    };
    Ok((key, role))
}

/// A layer that lets through only requests whose caller ([`Authenticated`], from
/// [`KeyAuthLayer`]) holds `permission`; others get `403 forbidden` in the envelope.
///
/// ```
/// use align_keys::{Permission, layer::require};
/// let guard = require(Permission::KeysRead);
/// # let _ = guard;
/// ```
pub fn require(permission: Permission) -> RequirePermissionLayer {
    RequirePermissionLayer { permission }
}

/// The layer made by [`require`].
#[derive(Debug, Clone, Copy)]
pub struct RequirePermissionLayer {
    permission: Permission,
}

impl<S> Layer<S> for RequirePermissionLayer {
    type Service = RequirePermission<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequirePermission {
            inner,
            permission: self.permission,
        }
    }
}

/// The service made by [`require`].
#[derive(Debug, Clone)]
pub struct RequirePermission<S> {
    inner: S,
    permission: Permission,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequirePermission<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let holds = req
            .extensions()
            .get::<Authenticated>()
            .is_some_and(|a| a.caller().effective_permissions().contains(self.permission));
        if holds {
            return Box::pin(self.inner.call(req));
        }
        let denial = crate::Denial::MissingPermission(self.permission);
        let response = ApiError::forbidden(denial.to_string()).to_response(RequestId::of(&req));
        Box::pin(async move { Ok(response) })
    }
}
