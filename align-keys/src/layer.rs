//! [`KeyAuthLayer`]: API-key authentication as a `tower` layer (feature `tower`), for axum,
//! hyper or any tower stack.
//!
//! A request with a valid key reaches the inner service with the [`VerifiedKey`] in its
//! extensions (and the response carries it too, for outer layers such as request logging); any other request is answered here with the DESIGN §4 error envelope
//! (`400 ambiguous_credentials`, `401 missing_key` / `invalid_key` / `key_revoked` /
//! `key_expired` / `key_suspended` with `WWW-Authenticate: Bearer`, or `503 unavailable` when
//! the store cannot be reached).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::http::{CredentialProblem, presented_key};
use crate::verifier::{KeyVerifier, Verification, VerifiedKey};

/// Adds API-key authentication to a service.
///
/// ```
/// use std::sync::Arc;
/// use align_keys::{KeyVerifier, MemoryKeyStore, Sha256Hasher, layer::KeyAuthLayer};
/// let verifier = Arc::new(KeyVerifier::new(Arc::new(MemoryKeyStore::new()), Arc::new(Sha256Hasher)));
/// let layer = KeyAuthLayer::new(verifier);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct KeyAuthLayer {
    verifier: Arc<KeyVerifier>,
}

impl KeyAuthLayer {
    /// A layer verifying keys with `verifier`.
    pub fn new(verifier: Arc<KeyVerifier>) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for KeyAuthLayer {
    type Service = KeyAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyAuth {
            inner,
            verifier: Arc::clone(&self.verifier),
        }
    }
}

/// The service made by [`KeyAuthLayer`].
#[derive(Debug, Clone)]
pub struct KeyAuth<S> {
    inner: S,
    verifier: Arc<KeyVerifier>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for KeyAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String>,
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
        let verifier = Arc::clone(&self.verifier);
        Box::pin(async move {
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            match authenticate(&verifier, req.headers()).await {
                Ok(key) => {
                    req.extensions_mut().insert(key.clone());
                    // Outer layers (request logging) learn the caller from the response, as
                    // the shared vocabulary's `KeyIdentity` too.
                    let identity = key.identity();
                    let mut response = inner.call(req).await?;
                    response.extensions_mut().insert(key);
                    response.extensions_mut().insert(identity);
                    Ok(response)
                }
                Err((status, code, message)) => Ok(refusal(status, code, message, &request_id)),
            }
        })
    }
}

type Refusal = (StatusCode, &'static str, &'static str);

async fn authenticate(
    verifier: &KeyVerifier,
    headers: &http::HeaderMap,
) -> Result<VerifiedKey, Refusal> {
    const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;
    let token = presented_key(headers).map_err(|p| match p {
        CredentialProblem::Missing => (UNAUTHORIZED, "missing_key", "send an API key"),
        CredentialProblem::Malformed => (UNAUTHORIZED, "invalid_key", "the API key is not valid"),
        CredentialProblem::Ambiguous => (
            StatusCode::BAD_REQUEST,
            "ambiguous_credentials",
            "the Authorization and X-API-Key headers carry different keys",
        ),
    })?;
    match verifier.verify(token, chrono::Utc::now()).await {
        Ok(Verification::Valid(key)) => Ok(key),
        Ok(Verification::Invalid(_)) => {
            Err((UNAUTHORIZED, "invalid_key", "the API key is not valid"))
        }
        Ok(Verification::Revoked(_)) => {
            Err((UNAUTHORIZED, "key_revoked", "the API key has been revoked"))
        }
        Ok(Verification::Expired(_)) => {
            Err((UNAUTHORIZED, "key_expired", "the API key has expired"))
        }
        Ok(Verification::Suspended(_)) => {
            Err((UNAUTHORIZED, "key_suspended", "the API key is suspended"))
        }
        Err(_) => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "keys cannot be checked right now",
        )),
    }
}

fn refusal<B: From<String>>(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<B> {
    let body = serde_json::json!({
        "error": { "code": code, "message": message, "requestId": request_id }
    });
    let mut r = Response::new(B::from(body.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}
