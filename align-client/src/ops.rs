//! One method per operation of `docs/openapi.yaml`, named after its `operationId`.

mod keyspaces;

use std::fmt::Display;
use std::future::Future;

use futures_util::stream::{self, BoxStream, StreamExt};
use http::{HeaderName, HeaderValue, Method};

use crate::error::Error;
use crate::transport::{Call, Client};
use crate::types::{
    AuditEvent, AuditEventQuery, CreateKey, CreateProject, CreateWebhookEndpoint, EraseSubject,
    Erasure, Event, EventQuery, GithubLabel, GithubToken, Health, Key, KeyspaceKeyQuery,
    LeakReport, LeakReportWithKey, Me, MintedKey, Organization, Page, PageParams, Project,
    Recovered, ReportCompromise, RequestLogEntry, RequestLogQuery, Rotate, Timestamp, UpdateKey,
    UpdateOrganization, UpdateUser, UpdateWebhookEndpoint, Usage, UsageQuery, User, WebhookAttempt,
    WebhookDelivery, WebhookEndpoint, WebhookEndpointWithSecret, WebhookTest,
};

/// The items of a list operation, page after page following `nextCursor`; an error ends it.
pub type ItemStream<T> = BoxStream<'static, Result<T, Error>>;

/// Every operation this client implements: (`operationId`, method). A test compares it with
/// `docs/openapi.yaml`, so the spec cannot gain an operation this client lacks.
pub const OPERATIONS: &[(&str, &str)] = &[
    ("health", "health"),
    ("metrics", "metrics"),
    ("securityTxt", "security_txt"),
    ("getMe", "get_me"),
    ("createKey", "create_key"),
    ("listKeys", "list_keys"),
    ("getKey", "get_key"),
    ("updateKey", "update_key"),
    ("revokeKey", "revoke_key"),
    ("reportKeyCompromise", "report_key_compromise"),
    ("listLeakReports", "list_leak_reports"),
    (
        "githubSecretScanningReport",
        "github_secret_scanning_report",
    ),
    ("rotateKey", "rotate_key"),
    ("suspendKey", "suspend_key"),
    ("resumeKey", "resume_key"),
    ("getKeyUsage", "get_key_usage"),
    ("createKeyspace", "create_keyspace"),
    ("listKeyspaces", "list_keyspaces"),
    ("getKeyspace", "get_keyspace"),
    ("updateKeyspace", "update_keyspace"),
    ("createKeyspaceKey", "create_keyspace_key"),
    ("listKeyspaceKeys", "list_keyspace_keys"),
    ("getKeyspaceKey", "get_keyspace_key"),
    ("updateKeyspaceKey", "update_keyspace_key"),
    ("revokeKeyspaceKey", "revoke_keyspace_key"),
    ("rotateKeyspaceKey", "rotate_keyspace_key"),
    ("suspendKeyspaceKey", "suspend_keyspace_key"),
    ("resumeKeyspaceKey", "resume_keyspace_key"),
    ("getKeyspaceKeyUsage", "get_keyspace_key_usage"),
    ("verifyKey", "verify_key"),
    ("createProject", "create_project"),
    ("listProjects", "list_projects"),
    ("deleteProject", "delete_project"),
    ("listUsers", "list_users"),
    ("updateUser", "update_user"),
    ("deleteUser", "delete_user"),
    ("exportSubject", "export_subject"),
    ("eraseSubject", "erase_subject"),
    ("getOrganization", "get_organization"),
    ("updateOrganization", "update_organization"),
    ("listAuditEvents", "list_audit_events"),
    ("listRequestLogs", "list_request_logs"),
    ("listEvents", "list_events"),
    ("createWebhookEndpoint", "create_webhook_endpoint"),
    ("listWebhookEndpoints", "list_webhook_endpoints"),
    ("getWebhookEndpoint", "get_webhook_endpoint"),
    ("updateWebhookEndpoint", "update_webhook_endpoint"),
    ("deleteWebhookEndpoint", "delete_webhook_endpoint"),
    ("rotateWebhookSecret", "rotate_webhook_secret"),
    ("testWebhookEndpoint", "test_webhook_endpoint"),
    ("recoverWebhookDeliveries", "recover_webhook_deliveries"),
    ("listWebhookDeliveries", "list_webhook_deliveries"),
    ("retryWebhookDelivery", "retry_webhook_delivery"),
    ("listWebhookAttempts", "list_webhook_attempts"),
];

/// `id` as one path segment, percent-encoded.
fn seg(id: impl Display) -> String {
    let id = id.to_string();
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string being built.
struct Query(url::form_urlencoded::Serializer<'static, String>);

impl Query {
    fn new() -> Self {
        Self(url::form_urlencoded::Serializer::new(String::new()))
    }

    fn add(&mut self, name: &str, value: Option<impl Display>) -> &mut Self {
        if let Some(v) = value {
            self.0.append_pair(name, &v.to_string());
        }
        self
    }

    fn time(&mut self, name: &str, value: Option<&Timestamp>) -> &mut Self {
        self.add(
            name,
            value.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        )
    }

    /// The range and step of a usage query.
    fn usage(&mut self, query: &UsageQuery) -> &mut Self {
        self.time("from", query.from.as_ref())
            .time("to", query.to.as_ref())
            .add("granularity", query.granularity.map(|g| g.as_str()))
    }

    fn page(&mut self, page: &PageParams) -> &mut Self {
        self.add("limit", page.limit)
            .add("cursor", page.cursor.as_deref().filter(|c| !c.is_empty()))
    }

    /// `path` with the query, if any.
    fn on(&mut self, path: &str) -> String {
        let q = self.0.finish();
        if q.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{q}")
        }
    }
}

/// The items of every page `fetch` returns, starting with no cursor.
fn paginate<T, F, Fut>(fetch: F) -> ItemStream<T>
where
    T: Send + 'static,
    F: FnMut(Option<String>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Page<T>, Error>> + Send + 'static,
{
    // The state's cursor: `Some(None)` the first page, `Some(Some(c))` the next, `None` done.
    stream::unfold((fetch, Some(None)), |(mut fetch, cursor)| async move {
        let cursor: Option<String> = cursor?;
        match fetch(cursor).await {
            Ok(page) => {
                let next = page.next_cursor.filter(|c| !c.is_empty()).map(Some);
                Some((Ok(page.data), (fetch, next)))
            }
            Err(e) => Some((Err(e), (fetch, None))),
        }
    })
    .flat_map(|page| {
        stream::iter(match page {
            Ok(items) => items.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
    })
    .boxed()
}

/// `page` with `cursor`.
fn at(page: &PageParams, cursor: Option<String>) -> PageParams {
    PageParams {
        limit: page.limit,
        cursor,
    }
}

/// A list's filters with their page: what [`filtered`] pages through.
trait Filtered: Clone + Send + 'static {
    fn page(&self) -> &PageParams;
    fn with_page(&self, page: PageParams) -> Self;
}

macro_rules! filtered {
    ($($query:ty),*) => {$(
        impl Filtered for $query {
            fn page(&self) -> &PageParams {
                &self.page
            }
            fn with_page(&self, page: PageParams) -> Self {
                Self { page, ..self.clone() }
            }
        }
    )*};
}

filtered!(
    AuditEventQuery,
    RequestLogQuery,
    EventQuery,
    KeyspaceKeyQuery
);

/// The items of every page of a filtered list, from `query`'s own cursor on; `fetch` asks
/// for one page.
fn filtered<Q, T, F, Fut>(query: Q, mut fetch: F) -> ItemStream<T>
where
    Q: Filtered,
    T: Send + 'static,
    F: FnMut(Q) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Page<T>, Error>> + Send + 'static,
{
    let first = query.page().cursor.clone();
    let mut started = false;
    paginate(move |cursor| {
        let cursor = if started { cursor } else { first.clone() };
        started = true;
        fetch(query.with_page(at(query.page(), cursor)))
    })
}

/// The items of every page of a list, `limit` per page; `fetch` asks for one page.
fn limited<T, F, Fut>(limit: Option<u32>, mut fetch: F) -> ItemStream<T>
where
    T: Send + 'static,
    F: FnMut(PageParams) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Page<T>, Error>> + Send + 'static,
{
    paginate(move |cursor| fetch(PageParams { limit, cursor }))
}

impl Client {
    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: String) -> Result<T, Error> {
        self.execute(Call::get(path)).await?.json()
    }

    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, Error> {
        let mut call = Call::new(method, path);
        if let Some(b) = body {
            call = call.json(b)?;
        }
        self.execute(call).await?.json()
    }

    async fn delete(&self, path: String) -> Result<(), Error> {
        self.execute(Call::new(Method::DELETE, path)).await?;
        Ok(())
    }

    // ---- Service -----------------------------------------------------------------------

    /// `health`: `GET /healthz`. A `503` (a part does not answer) is an answer here, with
    /// `status: "unhealthy"` and the failing parts, not an error (and is not retried).
    pub async fn health(&self) -> Result<Health, Error> {
        let call = Call {
            accept: &[503],
            ..Call::get("/healthz".to_owned())
        };
        self.execute(call).await?.json()
    }

    /// `metrics`: `GET /metrics`, the Prometheus text (needs the operator's metrics token as
    /// the key, or an organisation-scoped live admin key with every permission).
    pub async fn metrics(&self) -> Result<String, Error> {
        Ok(self.execute(Call::get("/metrics".to_owned())).await?.text())
    }

    /// `securityTxt`: `GET /.well-known/security.txt` (`404` until a security contact is set).
    pub async fn security_txt(&self) -> Result<String, Error> {
        let call = Call::get("/.well-known/security.txt".to_owned());
        Ok(self.execute(call).await?.text())
    }

    /// `getMe`: `GET /api/v1/me`, the calling key.
    pub async fn get_me(&self) -> Result<Me, Error> {
        self.get_json("/api/v1/me".to_owned()).await
    }

    // ---- Keys --------------------------------------------------------------------------

    /// `createKey`: `POST /api/v1/keys`. The token is in `key`, once.
    pub async fn create_key(&self, body: &CreateKey) -> Result<MintedKey, Error> {
        self.send_json(Method::POST, "/api/v1/keys".to_owned(), Some(body))
            .await
    }

    /// `listKeys`: one page of `GET /api/v1/keys`.
    pub async fn list_keys(&self, page: &PageParams) -> Result<Page<Key>, Error> {
        let path = Query::new().page(page).on("/api/v1/keys");
        self.get_json(path).await
    }

    /// `listKeys` as a stream of every key, `limit` per page.
    #[must_use]
    pub fn list_keys_stream(&self, limit: Option<u32>) -> ItemStream<Key> {
        let client = self.clone();
        limited(limit, move |page| {
            let client = client.clone();
            async move { client.list_keys(&page).await }
        })
    }

    /// `getKey`: `GET /api/v1/keys/{id}`.
    pub async fn get_key(&self, id: impl Display) -> Result<Key, Error> {
        self.get_json(format!("/api/v1/keys/{}", seg(id))).await
    }

    /// `updateKey`: `PATCH /api/v1/keys/{id}`.
    pub async fn update_key(&self, id: impl Display, body: &UpdateKey) -> Result<Key, Error> {
        let path = format!("/api/v1/keys/{}", seg(id));
        self.send_json(Method::PATCH, path, Some(body)).await
    }

    /// `revokeKey`: `POST /api/v1/keys/{id}/revoke` (idempotent).
    pub async fn revoke_key(&self, id: impl Display) -> Result<Key, Error> {
        let path = format!("/api/v1/keys/{}/revoke", seg(id));
        self.send_json(Method::POST, path, None::<&()>).await
    }

    /// `reportKeyCompromise`: `POST /api/v1/keys/{id}/report-compromise`; the key is revoked.
    pub async fn report_key_compromise(
        &self,
        id: impl Display,
        body: &ReportCompromise,
    ) -> Result<LeakReportWithKey, Error> {
        let path = format!("/api/v1/keys/{}/report-compromise", seg(id));
        self.send_json(Method::POST, path, Some(body)).await
    }

    /// `rotateKey`: `POST /api/v1/keys/{id}/rotate`; the successor's token is in `key`, once.
    pub async fn rotate_key(&self, id: impl Display, body: &Rotate) -> Result<MintedKey, Error> {
        let path = format!("/api/v1/keys/{}/rotate", seg(id));
        self.send_json(Method::POST, path, Some(body)).await
    }

    /// `suspendKey`: `POST /api/v1/keys/{id}/suspend`.
    pub async fn suspend_key(&self, id: impl Display) -> Result<Key, Error> {
        let path = format!("/api/v1/keys/{}/suspend", seg(id));
        self.send_json(Method::POST, path, None::<&()>).await
    }

    /// `resumeKey`: `POST /api/v1/keys/{id}/resume`.
    pub async fn resume_key(&self, id: impl Display) -> Result<Key, Error> {
        let path = format!("/api/v1/keys/{}/resume", seg(id));
        self.send_json(Method::POST, path, None::<&()>).await
    }

    /// `getKeyUsage`: `GET /api/v1/keys/{id}/usage` (DESIGN §11), one bucket per step.
    pub async fn get_key_usage(
        &self,
        id: impl Display,
        query: &UsageQuery,
    ) -> Result<Usage, Error> {
        let path = Query::new()
            .usage(query)
            .on(&format!("/api/v1/keys/{}/usage", seg(id)));
        self.get_json(path).await
    }

    // ---- Leaks -------------------------------------------------------------------------

    /// `listLeakReports`: one page of `GET /api/v1/leaks`.
    pub async fn list_leak_reports(&self, page: &PageParams) -> Result<Page<LeakReport>, Error> {
        let path = Query::new().page(page).on("/api/v1/leaks");
        self.get_json(path).await
    }

    /// `listLeakReports` as a stream.
    #[must_use]
    pub fn list_leak_reports_stream(&self, limit: Option<u32>) -> ItemStream<LeakReport> {
        let client = self.clone();
        limited(limit, move |page| {
            let client = client.clone();
            async move { client.list_leak_reports(&page).await }
        })
    }

    /// `githubSecretScanningReport`: `POST /api/v1/secret-scanning/github`, GitHub's signed
    /// partner intake. `body` is sent byte for byte (the signature covers it): use
    /// [`github_report_body`] to make one from tokens.
    pub async fn github_secret_scanning_report(
        &self,
        key_identifier: &str,
        signature: &str,
        body: Vec<u8>,
    ) -> Result<Vec<GithubLabel>, Error> {
        let header = |v: &str| {
            HeaderValue::from_str(v)
                .map_err(|_| Error::Config("a GitHub header is not a valid header value".into()))
        };
        let call = Call {
            body: Some(body.into()),
            headers: vec![
                (
                    HeaderName::from_static("github-public-key-identifier"),
                    header(key_identifier)?,
                ),
                (
                    HeaderName::from_static("github-public-key-signature"),
                    header(signature)?,
                ),
            ],
            ..Call::new(Method::POST, "/api/v1/secret-scanning/github".to_owned())
        };
        self.execute(call).await?.json()
    }

    // ---- Projects ----------------------------------------------------------------------

    /// `createProject`: `POST /api/v1/projects`.
    pub async fn create_project(&self, body: &CreateProject) -> Result<Project, Error> {
        self.send_json(Method::POST, "/api/v1/projects".to_owned(), Some(body))
            .await
    }

    /// `listProjects`: one page of `GET /api/v1/projects`.
    pub async fn list_projects(&self, page: &PageParams) -> Result<Page<Project>, Error> {
        let path = Query::new().page(page).on("/api/v1/projects");
        self.get_json(path).await
    }

    /// `listProjects` as a stream.
    #[must_use]
    pub fn list_projects_stream(&self, limit: Option<u32>) -> ItemStream<Project> {
        let client = self.clone();
        limited(limit, move |page| {
            let client = client.clone();
            async move { client.list_projects(&page).await }
        })
    }

    /// `deleteProject`: `DELETE /api/v1/projects/{id}`.
    pub async fn delete_project(&self, id: impl Display) -> Result<(), Error> {
        self.delete(format!("/api/v1/projects/{}", seg(id))).await
    }

    // ---- Users and privacy -------------------------------------------------------------

    /// `listUsers`: `GET /api/v1/users` (one page: the server pages no further).
    pub async fn list_users(&self) -> Result<Page<User>, Error> {
        self.get_json("/api/v1/users".to_owned()).await
    }

    /// `updateUser`: `PATCH /api/v1/users/{id}`.
    pub async fn update_user(&self, id: impl Display, body: &UpdateUser) -> Result<User, Error> {
        let path = format!("/api/v1/users/{}", seg(id));
        self.send_json(Method::PATCH, path, Some(body)).await
    }

    /// `deleteUser`: `DELETE /api/v1/users/{id}`, their keys going to `transfer_keys_to`
    /// (another admin) or revoked.
    pub async fn delete_user(
        &self,
        id: impl Display,
        transfer_keys_to: Option<&str>,
    ) -> Result<(), Error> {
        let path = Query::new()
            .add("transferKeysTo", transfer_keys_to)
            .on(&format!("/api/v1/users/{}", seg(id)));
        self.delete(path).await
    }

    /// `exportSubject`: `GET /api/v1/privacy/export?subject=`, JSON Lines as received.
    pub async fn export_subject(&self, subject: &str) -> Result<String, Error> {
        let path = Query::new()
            .add("subject", Some(subject))
            .on("/api/v1/privacy/export");
        Ok(self.execute(Call::get(path)).await?.text())
    }

    /// `eraseSubject`: `POST /api/v1/privacy/erasure`.
    pub async fn erase_subject(&self, body: &EraseSubject) -> Result<Erasure, Error> {
        let path = "/api/v1/privacy/erasure".to_owned();
        self.send_json(Method::POST, path, Some(body)).await
    }

    // ---- Organisation ------------------------------------------------------------------

    /// `getOrganization`: `GET /api/v1/organization`.
    pub async fn get_organization(&self) -> Result<Organization, Error> {
        self.get_json("/api/v1/organization".to_owned()).await
    }

    /// `updateOrganization`: `PATCH /api/v1/organization`.
    pub async fn update_organization(
        &self,
        body: &UpdateOrganization,
    ) -> Result<Organization, Error> {
        let path = "/api/v1/organization".to_owned();
        self.send_json(Method::PATCH, path, Some(body)).await
    }

    // ---- Audit, request log, events ----------------------------------------------------

    /// `listAuditEvents`: one page of `GET /api/v1/audit-events`, newest first.
    pub async fn list_audit_events(
        &self,
        query: &AuditEventQuery,
    ) -> Result<Page<AuditEvent>, Error> {
        let path = Query::new()
            .add("actor", query.actor.as_deref())
            .add("action", query.action.as_deref())
            .add("target", query.target.as_deref())
            .time("since", query.since.as_ref())
            .time("until", query.until.as_ref())
            .page(&query.page)
            .on("/api/v1/audit-events");
        self.get_json(path).await
    }

    /// `listAuditEvents` as a stream, from `query`'s cursor on.
    #[must_use]
    pub fn list_audit_events_stream(&self, query: AuditEventQuery) -> ItemStream<AuditEvent> {
        let client = self.clone();
        filtered(query, move |q| {
            let client = client.clone();
            async move { client.list_audit_events(&q).await }
        })
    }

    /// `listRequestLogs`: one page of `GET /api/v1/request-logs` (DESIGN §11).
    pub async fn list_request_logs(
        &self,
        query: &RequestLogQuery,
    ) -> Result<Page<RequestLogEntry>, Error> {
        let path = Query::new()
            .add("keyId", query.key_id.as_deref())
            .add("status", query.status)
            .time("since", query.since.as_ref())
            .time("until", query.until.as_ref())
            .page(&query.page)
            .on("/api/v1/request-logs");
        self.get_json(path).await
    }

    /// `listRequestLogs` as a stream, from `query`'s cursor on.
    #[must_use]
    pub fn list_request_logs_stream(&self, query: RequestLogQuery) -> ItemStream<RequestLogEntry> {
        let client = self.clone();
        filtered(query, move |q| {
            let client = client.clone();
            async move { client.list_request_logs(&q).await }
        })
    }

    /// `listEvents`: one page of `GET /api/v1/events`, oldest first.
    pub async fn list_events(&self, query: &EventQuery) -> Result<Page<Event>, Error> {
        let path = Query::new()
            .add("type", query.event_type.as_deref())
            .time("since", query.since.as_ref())
            .time("until", query.until.as_ref())
            .add("environment", query.environment)
            .page(&query.page)
            .on("/api/v1/events");
        self.get_json(path).await
    }

    /// `listEvents` as a stream, from `query`'s cursor on, ending where the log ends now.
    #[must_use]
    pub fn list_events_stream(&self, query: EventQuery) -> ItemStream<Event> {
        let client = self.clone();
        filtered(query, move |q| {
            let client = client.clone();
            async move { client.list_events(&q).await }
        })
    }

    // ---- Webhooks ----------------------------------------------------------------------

    /// `createWebhookEndpoint`: `POST /api/v1/webhook-endpoints`; the secret is shown once.
    pub async fn create_webhook_endpoint(
        &self,
        body: &CreateWebhookEndpoint,
    ) -> Result<WebhookEndpointWithSecret, Error> {
        let path = "/api/v1/webhook-endpoints".to_owned();
        self.send_json(Method::POST, path, Some(body)).await
    }

    /// `listWebhookEndpoints`: one page of `GET /api/v1/webhook-endpoints`.
    pub async fn list_webhook_endpoints(
        &self,
        page: &PageParams,
    ) -> Result<Page<WebhookEndpoint>, Error> {
        let path = Query::new().page(page).on("/api/v1/webhook-endpoints");
        self.get_json(path).await
    }

    /// `listWebhookEndpoints` as a stream.
    #[must_use]
    pub fn list_webhook_endpoints_stream(&self, limit: Option<u32>) -> ItemStream<WebhookEndpoint> {
        let client = self.clone();
        limited(limit, move |page| {
            let client = client.clone();
            async move { client.list_webhook_endpoints(&page).await }
        })
    }

    /// `getWebhookEndpoint`: `GET /api/v1/webhook-endpoints/{id}` (never its secret).
    pub async fn get_webhook_endpoint(&self, id: impl Display) -> Result<WebhookEndpoint, Error> {
        self.get_json(format!("/api/v1/webhook-endpoints/{}", seg(id)))
            .await
    }

    /// `updateWebhookEndpoint`: `PATCH /api/v1/webhook-endpoints/{id}`.
    pub async fn update_webhook_endpoint(
        &self,
        id: impl Display,
        body: &UpdateWebhookEndpoint,
    ) -> Result<WebhookEndpoint, Error> {
        let path = format!("/api/v1/webhook-endpoints/{}", seg(id));
        self.send_json(Method::PATCH, path, Some(body)).await
    }

    /// `deleteWebhookEndpoint`: `DELETE /api/v1/webhook-endpoints/{id}`.
    pub async fn delete_webhook_endpoint(&self, id: impl Display) -> Result<(), Error> {
        self.delete(format!("/api/v1/webhook-endpoints/{}", seg(id)))
            .await
    }

    /// `rotateWebhookSecret`: `POST /api/v1/webhook-endpoints/{id}/rotate-secret`.
    pub async fn rotate_webhook_secret(
        &self,
        id: impl Display,
        body: &Rotate,
    ) -> Result<WebhookEndpointWithSecret, Error> {
        let path = format!("/api/v1/webhook-endpoints/{}/rotate-secret", seg(id));
        self.send_json(Method::POST, path, Some(body)).await
    }

    /// `testWebhookEndpoint`: `POST /api/v1/webhook-endpoints/{id}/test`.
    pub async fn test_webhook_endpoint(&self, id: impl Display) -> Result<WebhookTest, Error> {
        let path = format!("/api/v1/webhook-endpoints/{}/test", seg(id));
        self.send_json(Method::POST, path, None::<&()>).await
    }

    /// `recoverWebhookDeliveries`: `POST /api/v1/webhook-endpoints/{id}/recover`, queueing
    /// again every failed delivery created since `since`.
    pub async fn recover_webhook_deliveries(
        &self,
        id: impl Display,
        since: Timestamp,
    ) -> Result<Recovered, Error> {
        let path = format!("/api/v1/webhook-endpoints/{}/recover", seg(id));
        let body = serde_json::json!({
            "since": since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        });
        self.send_json(Method::POST, path, Some(&body)).await
    }

    /// `listWebhookDeliveries`: one page of `GET /api/v1/webhook-endpoints/{id}/deliveries`.
    pub async fn list_webhook_deliveries(
        &self,
        id: impl Display,
        page: &PageParams,
    ) -> Result<Page<WebhookDelivery>, Error> {
        let path = format!("/api/v1/webhook-endpoints/{}/deliveries", seg(id));
        let path = Query::new().page(page).on(&path);
        self.get_json(path).await
    }

    /// `listWebhookDeliveries` as a stream.
    #[must_use]
    pub fn list_webhook_deliveries_stream(
        &self,
        id: impl Display,
        limit: Option<u32>,
    ) -> ItemStream<WebhookDelivery> {
        let (client, id) = (self.clone(), id.to_string());
        limited(limit, move |page| {
            let (client, id) = (client.clone(), id.clone());
            async move { client.list_webhook_deliveries(id, &page).await }
        })
    }

    /// `retryWebhookDelivery`: `POST /api/v1/webhook-deliveries/{id}/retry`.
    pub async fn retry_webhook_delivery(&self, id: impl Display) -> Result<WebhookDelivery, Error> {
        let path = format!("/api/v1/webhook-deliveries/{}/retry", seg(id));
        self.send_json(Method::POST, path, None::<&()>).await
    }

    /// `listWebhookAttempts`: one page of `GET /api/v1/webhook-deliveries/{id}/attempts`.
    pub async fn list_webhook_attempts(
        &self,
        id: impl Display,
        page: &PageParams,
    ) -> Result<Page<WebhookAttempt>, Error> {
        let path = format!("/api/v1/webhook-deliveries/{}/attempts", seg(id));
        let path = Query::new().page(page).on(&path);
        self.get_json(path).await
    }

    /// `listWebhookAttempts` as a stream.
    #[must_use]
    pub fn list_webhook_attempts_stream(
        &self,
        id: impl Display,
        limit: Option<u32>,
    ) -> ItemStream<WebhookAttempt> {
        let (client, id) = (self.clone(), id.to_string());
        limited(limit, move |page| {
            let (client, id) = (client.clone(), id.clone());
            async move { client.list_webhook_attempts(id, &page).await }
        })
    }
}

/// A GitHub secret-scanning report body for `tokens` (what GitHub sends, to be signed).
pub fn github_report_body(tokens: &[GithubToken]) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(tokens).map_err(Error::Encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(seg("0b1c-x_y.z~"), "0b1c-x_y.z~");
    }

    #[test]
    fn every_method_name_is_the_operation_id_in_snake_case() {
        for (id, method) in OPERATIONS {
            let mut snake = String::new();
            for c in id.chars() {
                if c.is_ascii_uppercase() {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            assert_eq!(&snake, method, "{id}");
        }
    }
}
