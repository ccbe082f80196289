//! The client, its builder, and the one place requests are sent: authentication,
//! `Idempotency-Key`, retries, error decoding and the environment check.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::error::{ApiError, Error, ErrorCode};
use crate::types::Environment;

/// The default number of attempts of one call (the first and up to three retries).
const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// The longest `Retry-After` the client waits by default; a longer one is returned as the error.
const DEFAULT_MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// The first back-off when the answer names no `Retry-After` (doubled per attempt).
const DEFAULT_BACKOFF: Duration = Duration::from_millis(250);
/// The default time one attempt may take.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The header naming a sandbox key's answers.
const ENVIRONMENT_HEADER: &str = "align-environment";

/// Builds a [`Client`].
pub struct ClientBuilder {
    base_url: String,
    key: Option<Zeroizing<String>>,
    max_attempts: u32,
    max_retry_wait: Duration,
    backoff: Duration,
    timeout: Option<Duration>,
    require: Option<Environment>,
    user_agent: String,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("max_attempts", &self.max_attempts)
            .field("max_retry_wait", &self.max_retry_wait)
            .field("timeout", &self.timeout)
            .field("require", &self.require)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The API key sent as `Authorization: Bearer` (surrounding whitespace is dropped). Without
    /// one, only the operations that need no key (`health`, `security_txt`, the GitHub intake)
    /// succeed.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        let key = Zeroizing::new(key.into());
        self.key = Some(Zeroizing::new(key.trim().to_owned()));
        self
    }

    /// How many times one call is tried at most (1: never retried). Default 4.
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The longest `Retry-After` the client waits; an answer asking for longer is returned as
    /// the error at once. Default 60 s.
    #[must_use]
    pub fn max_retry_wait(mut self, wait: Duration) -> Self {
        self.max_retry_wait = wait;
        self
    }

    /// The first back-off when a retried answer has no `Retry-After`, or the connection
    /// failed (doubled per attempt, with jitter). Default 250 ms.
    #[must_use]
    pub fn backoff(mut self, first: Duration) -> Self {
        self.backoff = first;
        self
    }

    /// The time one attempt may take (`None`: no limit). Default 30 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Refuse to send anything with a key of another environment: the first call asks
    /// `GET /api/v1/me` and fails with [`Error::EnvironmentMismatch`] before sending anything
    /// else when the key is not of `environment` (a live key, for `Environment::Sandbox`).
    #[must_use]
    pub fn require_environment(mut self, environment: Environment) -> Self {
        self.require = Some(environment);
        self
    }

    /// The `User-Agent` header. Default `align-client/VERSION`.
    #[must_use]
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    /// The client. Fails when the base URL is not an `http`/`https` URL, the key cannot be a
    /// header value, or TLS cannot be set up.
    pub fn build(self) -> Result<Client, Error> {
        let base = self.base_url.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|_| Error::Config("the base URL is not a valid URL".into()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(Error::Config(
                "the base URL must be http:// or https:// with a host".into(),
            ));
        }
        let auth = match &self.key {
            Some(key) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", key.as_str()))
                    .map_err(|_| Error::Config("the API key is not a valid header value".into()))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let user_agent = HeaderValue::from_str(&self.user_agent)
            .map_err(|_| Error::Config("the user agent is not a valid header value".into()))?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| Error::Config(format!("TLS set-up failed: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Client {
            inner: Arc::new(Inner {
                base,
                auth,
                user_agent,
                http: HyperClient::builder(TokioExecutor::new()).build(https),
                max_attempts: self.max_attempts,
                max_retry_wait: self.max_retry_wait,
                backoff: self.backoff,
                timeout: self.timeout,
                require: self.require,
                environment: tokio::sync::OnceCell::new(),
            }),
        })
    }
}

/// A client of one Align server with one key. Cheap to clone (clones share connections and
/// what was learnt of the key's environment).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    base: String,
    /// `Bearer <key>`, marked sensitive.
    auth: Option<HeaderValue>,
    user_agent: HeaderValue,
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    max_attempts: u32,
    max_retry_wait: Duration,
    backoff: Duration,
    timeout: Option<Duration>,
    require: Option<Environment>,
    environment: tokio::sync::OnceCell<Environment>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base)
            .field("key", &self.inner.auth.as_ref().map(|_| "<redacted>"))
            .field("max_attempts", &self.inner.max_attempts)
            .field("require", &self.inner.require)
            .field("environment", &self.inner.environment.get())
            .finish_non_exhaustive()
    }
}

/// An answer as received: for operations this version lacks ([`Client::request`]).
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl RawResponse {
    /// The body decoded as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|source| Error::Decode {
            status: self.status,
            source,
        })
    }

    /// The body as text (lossy UTF-8).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// One header's value as text.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request to send, retried as its method allows.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) body: Option<Bytes>,
    /// Statuses other than 2xx that are answers, not errors (`/healthz`'s 503).
    pub(crate) accept: &'static [u16],
    /// Whether [`ClientBuilder::require_environment`] applies (not to the `/me` probe).
    pub(crate) check_environment: bool,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl Call {
    pub(crate) fn new(method: Method, path: String) -> Self {
        Self {
            method,
            path,
            body: None,
            accept: &[],
            check_environment: true,
            headers: Vec::new(),
        }
    }

    pub(crate) fn get(path: String) -> Self {
        Self::new(Method::GET, path)
    }

    /// With `body` as JSON.
    pub(crate) fn json(mut self, body: &impl Serialize) -> Result<Self, Error> {
        self.body = Some(Bytes::from(
            serde_json::to_vec(body).map_err(Error::Encode)?,
        ));
        Ok(self)
    }
}

impl ClientBuilder {
    fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.to_owned(),
            key: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_retry_wait: DEFAULT_MAX_RETRY_WAIT,
            backoff: DEFAULT_BACKOFF,
            timeout: Some(DEFAULT_TIMEOUT),
            require: None,
            user_agent: concat!("align-client/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

impl Client {
    /// A builder for a client of the server at `base_url` (`https://api.example.com`; the
    /// API's paths, `/api/v1/…`, are appended).
    #[must_use]
    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder::new(base_url)
    }

    /// The base URL, without a trailing slash.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The key's environment: `GET /api/v1/me` once, then remembered (a key's environment
    /// never changes). Call it before doing anything that must not reach live data.
    pub async fn environment(&self) -> Result<Environment, Error> {
        self.inner
            .environment
            .get_or_try_init(|| async {
                let call = Call {
                    check_environment: false,
                    ..Call::get("/api/v1/me".to_owned())
                };
                let me: crate::types::Me = self.send(call).await?.json()?;
                Ok(me.environment)
            })
            .await
            .copied()
    }

    /// The key's environment if already known (from `/me` or an `Align-Environment: sandbox`
    /// answer), without a request.
    #[must_use]
    pub fn known_environment(&self) -> Option<Environment> {
        self.inner.environment.get().copied()
    }

    /// Sends `method path_and_query` (`/api/v1/…?…`) with an optional JSON body, through the
    /// same authentication, `Idempotency-Key`, retries and error decoding as every typed
    /// method: for an operation of a newer server this version has no method for.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse, Error> {
        let mut call = Call::new(method, path_and_query.to_owned());
        if let Some(b) = body {
            call = call.json(b)?;
        }
        self.execute(call).await
    }

    /// Sends `call`, retrying as DESIGN §4 allows, and returns the answer or the error.
    pub(crate) async fn execute(&self, call: Call) -> Result<RawResponse, Error> {
        if call.check_environment {
            if let Some(required) = self.inner.require {
                let actual = self.environment().await?;
                if actual != required {
                    return Err(Error::EnvironmentMismatch { required, actual });
                }
            }
        }
        self.send(call).await
    }

    /// Sends `call` with its retries (no environment check).
    async fn send(&self, call: Call) -> Result<RawResponse, Error> {
        // One key for every attempt of this call, so a retried POST is applied once.
        let idempotency_key = (call.method == Method::POST)
            .then(|| HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()))
            .transpose()
            .map_err(|_| Error::Config("bad idempotency key".into()))?;
        let repeatable = idempotency_key.is_some()
            || matches!(
                call.method,
                Method::GET | Method::HEAD | Method::DELETE | Method::PUT | Method::OPTIONS
            );
        let mut attempt = 1;
        loop {
            let more = attempt < self.inner.max_attempts;
            let answer = match self.attempt(&call, idempotency_key.as_ref()).await {
                Ok(a) => a,
                Err(_) if repeatable && more => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
            if status.is_success() || call.accept.contains(&answer.status) {
                return Ok(answer);
            }
            let error = api_error(&answer);
            if matches!(answer.status, 429 | 503) && more {
                let wait = match error.retry_after {
                    Some(after) if after > self.inner.max_retry_wait => {
                        return Err(Error::Api(Box::new(error)));
                    }
                    Some(after) => after + jitter(after),
                    None => self.backoff(attempt),
                };
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            return Err(Error::Api(Box::new(error)));
        }
    }

    /// One attempt: the answer, whatever its status, or a transport error.
    async fn attempt(
        &self,
        call: &Call,
        idempotency_key: Option<&HeaderValue>,
    ) -> Result<RawResponse, Error> {
        let mut req = Request::builder()
            .method(call.method.clone())
            .uri(format!("{}{}", self.inner.base, call.path))
            .header(USER_AGENT, self.inner.user_agent.clone());
        if let Some(auth) = &self.inner.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k.clone());
        }
        if call.body.is_some() || matches!(call.method, Method::POST | Method::PATCH | Method::PUT)
        {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in &call.headers {
            req = req.header(name, value.clone());
        }
        let req = req
            .body(Full::new(call.body.clone().unwrap_or_default()))
            .map_err(|_| Error::Config("the request URL is not valid".into()))?;
        let exchange = async {
            let resp = self
                .inner
                .http
                .request(req)
                .await
                .map_err(Error::transport)?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| Error::Body {
                    source: Box::new(e),
                })?
                .to_bytes();
            Ok::<_, Error>(RawResponse {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        let answer = match self.inner.timeout {
            Some(t) => tokio::time::timeout(t, exchange)
                .await
                .map_err(Error::transport)??,
            None => exchange.await?,
        };
        if answer.header(ENVIRONMENT_HEADER) == Some("sandbox") && self.inner.auth.is_some() {
            let _ = self.inner.environment.set(Environment::Sandbox);
        }
        Ok(answer)
    }

    /// The back-off before attempt `attempt + 1`: doubled per attempt, capped, with jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let full = self
            .inner
            .backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.inner.max_retry_wait);
        let half = full / 2;
        half + random_up_to(full - half)
    }
}

/// The extra wait on top of a `Retry-After`, so that clients told the same second do not all
/// come back at once: up to a quarter of it, at least up to 100 ms, at most 1 s.
fn jitter(after: Duration) -> Duration {
    random_up_to((after / 4).clamp(Duration::from_millis(100), Duration::from_secs(1)))
}

fn random_up_to(max: Duration) -> Duration {
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=ms))
}

/// The API error of a non-success answer.
fn api_error(answer: &RawResponse) -> ApiError {
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    let error = &body["error"];
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    ApiError {
        status: answer.status,
        code: ErrorCode::parse(error["code"].as_str().unwrap_or("")),
        message: text(&error["message"]).unwrap_or_default(),
        request_id: text(&error["requestId"])
            .or_else(|| answer.header("x-request-id").map(str::to_owned)),
        retry_after: answer
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs),
    }
}
