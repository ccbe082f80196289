//! The developer console under `/console`: server-rendered pages for people signed in with a
//! password (set with `align users set-password`). Every action goes through the same
//! operations as the API (`routes::keys`, `routes::keyspaces`, `routes::webhooks`,
//! `routes::audit_events`) acting as the signed-in user with their current role, so the
//! policy, the audit records and the events are the API's.
//!
//! The request path: static assets and the sign-in page need no session; every other page
//! needs one (GETs without one are sent to `/console/login`); every POST must come from our
//! own origin and carry the session's CSRF token (see [`auth`]).

mod audit;
mod auth;
mod html;
mod keys;
mod keyspaces;
mod once;
mod people;
mod security;
mod usage;
mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use align_keys::{Environment, PasswordHash, SessionHash, User, UserSession};
use bytes::Bytes;
use http::request::Parts;
use http::{Method, StatusCode};

use crate::audit::RequestMeta;
use crate::config::Config;
use crate::error::{ApiError, Error};
use crate::http::Response;
use crate::principal::{Acting, Principal};
use crate::state::AppState;

use maud::{Markup, PreEscaped};

/// Largest console form accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The console's own state: sign-in throttling, secrets waiting to be shown once, and the
/// password checks (with the decoy hash that unknown e-mails are checked against).
pub(crate) struct Console {
    throttle: auth::Throttle,
    once: once::ShownOnce,
    passwords: auth::Passwords,
    /// Cookies get `Secure` when the server speaks HTTPS or browsers reach it over HTTPS.
    tls: bool,
    /// The origin form posts must come from, when set (`console.origin`).
    origin: Option<String>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// The console for `config`, or `None` when `console.enabled` is off.
    pub(crate) fn new(config: &Config) -> Result<Option<Self>, Error> {
        if !config.console.enabled {
            return Ok(None);
        }
        let setting = |reason: String| Error::Setting {
            key: "console".into(),
            reason,
        };
        let throttle = auth::Throttle::new().map_err(|e| setting(e.to_string()))?;
        let decoy = PasswordHash::decoy(config.console.pbkdf2_iterations)
            .map_err(|e| setting(e.to_string()))?;
        Ok(Some(Self {
            throttle,
            once: once::ShownOnce::default(),
            passwords: auth::Passwords::new(decoy),
            tls: config.tls_cert_file.is_some()
                || config
                    .console
                    .origin
                    .as_deref()
                    .is_some_and(|o| o.starts_with("https://")),
            origin: config.console.origin.clone(),
        }))
    }

    /// Forgets idle sign-in throttling state (the server's periodic sweep).
    pub(crate) fn evict_idle(&self) -> usize {
        self.throttle.evict_idle()
    }
}

/// Whether `path` is the console's.
pub(crate) fn is_console_path(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// A signed-in user's session.
struct Signed {
    user: User,
    session: UserSession,
    hash: SessionHash,
}

/// Everything a console page handler gets.
struct Ctx<'a> {
    state: &'a AppState,
    console: &'a Console,
    parts: &'a Parts,
    meta: &'a RequestMeta,
    /// The environment the page shows (`?env=` or the form's `env`, default live; a page
    /// about one object shows that object's).
    /// (Whether it is sandbox: an atomic so the request's future stays `Send`.)
    sandbox: AtomicBool,
    /// The form fields of a POST.
    form: Vec<(String, String)>,
    signed: Option<Signed>,
}

impl Ctx<'_> {
    /// A form field (the first of that name).
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a form field sent more than once (checkboxes).
    fn fields<'f>(&'f self, name: &'f str) -> impl Iterator<Item = &'f str> + 'f {
        self.form
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter (the first of that name).
    fn query(&self, name: &str) -> Option<String> {
        crate::http::query_pairs(self.parts.uri.query())
            .ok()?
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The signed-in user acting in this request.
    fn acting(&self) -> Result<Acting<'_>, ApiError> {
        let signed = self.signed.as_ref().ok_or_else(ApiError::not_found)?;
        Ok(Acting {
            who: Principal::User(&signed.user),
            meta: self.meta,
        })
    }

    /// The session's hash (for secrets shown once).
    fn session(&self) -> Result<SessionHash, ApiError> {
        self.signed
            .as_ref()
            .map(|s| s.hash)
            .ok_or_else(ApiError::not_found)
    }

    /// The environment the page shows.
    fn env(&self) -> Environment {
        if self.sandbox.load(Ordering::Relaxed) {
            Environment::Sandbox
        } else {
            Environment::Live
        }
    }

    /// Shows `env` (a page about one object shows the object's environment).
    fn set_env(&self, env: Environment) {
        self.sandbox
            .store(env == Environment::Sandbox, Ordering::Relaxed);
    }

    /// `?env=…` for links that stay in this environment.
    fn env_query(&self) -> &'static str {
        match self.env() {
            Environment::Live => "env=live",
            Environment::Sandbox => "env=sandbox",
        }
    }

    /// A full page around `body`, with the navigation when signed in.
    fn page(&self, status: StatusCode, title: &str, body: Markup) -> Response {
        html::page(status, self.layout(title, body).into_string())
    }

    fn layout(&self, title: &str, body: Markup) -> Markup {
        let (env_class, badge) = match self.env() {
            Environment::Live => ("env-live", "LIVE"),
            Environment::Sandbox => ("env-sandbox", "SANDBOX"),
        };
        maud::html! {
            (PreEscaped("<!doctype html>"))
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · Align console" }
                    link rel="stylesheet" href="/console/static/console.css";
                    script src="/console/static/console.js" defer {}
                }
                body class=(env_class) {
                    @if let Some(s) = &self.signed {
                        (self.top(s, env_class, badge))
                    }
                    main { (body) }
                }
            }
        }
    }

    /// The signed-in header: navigation, environment switch, who is signed in.
    fn top(&self, s: &Signed, env_class: &str, badge: &str) -> Markup {
        let path = self.parts.uri.path();
        let env = self.env_query();
        maud::html! {
            header class="top" {
                nav class="main" {
                    a class="brand" href="/console/keys" { "Align" }
                    a data-testid="nav-keys" href={ "/console/keys?" (env) } { "API Keys" }
                    a data-testid="nav-webhooks" href={ "/console/webhooks?" (env) } { "Webhooks" }
                    @if keyspaces::reachable(Principal::User(&s.user)) {
                        a data-testid="nav-keyspaces" href={ "/console/keyspaces?" (env) } { "Key spaces" }
                    }
                    a data-testid="nav-audit" href={ "/console/audit?" (env) } { "Audit log" }
                    a data-testid="nav-security" href={ "/console/security?" (env) } { "Security" }
                    a data-testid="nav-profile" href="/console/profile" { "Profile" }
                    @if s.user.role == align_keys::Role::Admin {
                        a data-testid="nav-users" href="/console/users" { "Users" }
                    }
                    a data-testid="nav-docs" href="/docs" { "API reference" }
                }
                div class="env" {
                    span data-testid="env-badge" class={ "badge " (env_class) } { (badge) }
                    a data-testid="env-live" href={ (path) "?env=live" } { "Live" }
                    a data-testid="env-sandbox" href={ (path) "?env=sandbox" } { "Sandbox" }
                }
                div class="me" {
                    span data-testid="whoami" { (s.user.email) " (" (s.user.role) ")" }
                    form method="post" action="/console/logout" class="inline" {
                        input type="hidden" name="csrf" value=(auth::csrf_text(&s.session));
                        button type="submit" data-testid="sign-out" { "Sign out" }
                    }
                }
            }
            @if self.env() == Environment::Sandbox {
                p class="sandbox-band" { "Sandbox: test data only. Nothing here touches live keys, endpoints or events." }
            }
        }
    }

    /// The hidden fields every form carries: the CSRF token and the environment.
    fn hidden_fields(&self) -> Markup {
        maud::html! {
            @if let Some(s) = &self.signed {
                input type="hidden" name="csrf" value=(auth::csrf_text(&s.session));
            }
            input type="hidden" name="env" value=(self.env());
        }
    }

    /// An error page: the status, and the message in `[data-testid=error]`.
    fn error_page(&self, e: &ApiError) -> Response {
        let body = maud::html! {
            h1 { (e.status.canonical_reason().unwrap_or("Error")) }
            p class="error" data-testid="error" { (e.message) }
            @if self.signed.is_some() {
                p { a href={ "/console/keys?" (self.env_query()) } { "Back to API keys" } }
            } @else {
                p { a href="/console/login" { "Sign in" } }
            }
        };
        let mut r = self.page(e.status, "Error", body);
        if let Some(secs) = e.retry_after {
            r.headers_mut()
                .insert("retry-after", http::HeaderValue::from(secs));
        }
        r
    }
}

/// Answers a request under `/console`. Never fails: problems become HTML error pages.
pub(crate) async fn handle<B>(
    state: &AppState,
    parts: Parts,
    body: B,
    meta: &Arc<RequestMeta>,
) -> Response
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(console) = state.console.as_ref() else {
        return html::page(StatusCode::NOT_FOUND, String::new());
    };
    let env = env_of(&parts, &[]);
    let mut ctx = Ctx {
        state,
        console,
        parts: &parts,
        meta,
        sandbox: AtomicBool::new(env == Environment::Sandbox),
        form: Vec::new(),
        signed: None,
    };
    match prepare(&mut ctx, body).await {
        Ok(None) => {}
        Ok(Some(early)) => return early,
        Err(e) => {
            if e.status == StatusCode::FORBIDDEN {
                tracing::warn!(
                    request_id = %meta.request_id,
                    path = %meta.path,
                    "console: refused a POST without our origin, session or CSRF token"
                );
            }
            return ctx.error_page(&e);
        }
    }
    match route(&ctx).await {
        Ok(r) => r,
        Err(e) => {
            if e.status == StatusCode::FORBIDDEN {
                if let Ok(acting) = ctx.acting() {
                    let target = meta.path.clone();
                    acting
                        .audit(
                            state,
                            Some(ctx.env()),
                            "permission.denied",
                            &target,
                            e.status,
                            serde_json::json!({ "via": "console" }),
                        )
                        .await;
                }
            }
            ctx.error_page(&e)
        }
    }
}

/// The environment a request is about: `env=` in the form, then in the query, default live.
fn env_of(parts: &Parts, form: &[(String, String)]) -> Environment {
    let query = crate::http::query_pairs(parts.uri.query()).unwrap_or_default();
    form.iter()
        .chain(query.iter())
        .find(|(k, _)| k == "env")
        .and_then(|(_, v)| Environment::from_name(v))
        .unwrap_or(Environment::Live)
}

/// Reads the form, finds the session, and checks what every POST must prove. `Some` is an
/// answer given before routing (the static assets, a redirect to sign in).
async fn prepare<B>(ctx: &mut Ctx<'_>, body: B) -> Result<Option<Response>, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = ctx.parts.uri.path();
    if ctx.parts.method == Method::GET {
        match path {
            "/console/static/console.js" => {
                return Ok(Some(html::asset(
                    "text/javascript; charset=utf-8",
                    include_str!("assets/console.js"),
                )));
            }
            "/console/static/console.css" => {
                return Ok(Some(html::asset(
                    "text/css; charset=utf-8",
                    include_str!("assets/console.css"),
                )));
            }
            _ => {}
        }
    }
    if auth::is_post(ctx.parts) {
        auth::check_origin(ctx.parts, ctx.console.tls, ctx.console.origin.as_deref())?;
        let limit = ctx.state.config.max_body_bytes.min(MAX_FORM_BYTES);
        let bytes = crate::app::read_body(body, limit).await?;
        ctx.form = parse_form(ctx.parts, &bytes)?;
        ctx.set_env(env_of(ctx.parts, &ctx.form));
    }
    ctx.signed = signed_in(ctx).await?;
    if let Some(s) = &ctx.signed {
        let _ = ctx.meta.user.set(s.user.id);
    }
    let public = path == "/console/login";
    match (&ctx.signed, auth::is_post(ctx.parts)) {
        (Some(s), true) if !public && !auth::csrf_matches(&s.session, ctx.field("csrf")) => {
            return Err(ApiError::forbidden(
                "The form's security token is missing or wrong. Reload the page and try again.",
            ));
        }
        (None, true) if !public => {
            return Err(ApiError::forbidden(
                "Your session has ended. Sign in again.",
            ));
        }
        (None, false) if !public => return Ok(Some(html::see_other("/console/login"))),
        _ => {}
    }
    Ok(None)
}

/// The session the request's cookie names, if it is current and its user still exists.
async fn signed_in(ctx: &Ctx<'_>) -> Result<Option<Signed>, ApiError> {
    let Some(token) = auth::cookie(ctx.parts, auth::SESSION_COOKIE) else {
        return Ok(None);
    };
    let hash = SessionHash::of(token);
    let store = ctx.state.store();
    let Some(session) = store.get_session(&hash, chrono::Utc::now()).await? else {
        return Ok(None);
    };
    let Some(user) = store.get_user(session.user_id).await? else {
        return Ok(None);
    };
    Ok(Some(Signed {
        user,
        session,
        hash,
    }))
}

/// A URL-encoded form body.
fn parse_form(parts: &Parts, body: &Bytes) -> Result<Vec<(String, String)>, ApiError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let form_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(ApiError::invalid_request(
            "console forms are sent as application/x-www-form-urlencoded",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid_request("the form is not valid UTF-8"))?;
    crate::http::query_pairs(Some(text))
}

/// The console's routes.
async fn route(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let path = ctx.parts.uri.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(2).collect();
    let post = auth::is_post(ctx.parts);
    let get = ctx.parts.method == Method::GET;
    match (get, post, segments.as_slice()) {
        (true, _, []) => Ok(html::see_other(&format!(
            "/console/keys?{}",
            ctx.env_query()
        ))),
        (true, _, ["login"]) => login_page(ctx, StatusCode::OK, None),
        (_, true, ["login"]) => sign_in(ctx).await,
        (_, true, ["logout"]) => sign_out(ctx).await,
        (true, _, ["keys"]) => keys::list(ctx).await,
        (true, _, ["keys", "new"]) => keys::new_form(ctx).await,
        (_, true, ["keys"]) => keys::create(ctx).await,
        (true, _, ["keys", id, "created"]) => keys::created(ctx, id).await,
        (true, _, ["keys", id]) => usage::show(ctx, id).await,
        (true, _, ["keys", id, "revoke"]) => keys::confirm(ctx, id, keys::Confirm::Revoke).await,
        (_, true, ["keys", id, "revoke"]) => keys::revoke(ctx, id).await,
        (true, _, ["keys", id, "rotate"]) => keys::confirm(ctx, id, keys::Confirm::Rotate).await,
        (_, true, ["keys", id, "rotate"]) => keys::rotate(ctx, id).await,
        (true, _, ["webhooks"]) => webhooks::list(ctx).await,
        (_, true, ["webhooks"]) => webhooks::create(ctx).await,
        (true, _, ["webhooks", id]) => webhooks::show(ctx, id).await,
        (true, _, ["webhooks", id, "created"]) => webhooks::created(ctx, id).await,
        (_, true, ["webhooks", id, "test"]) => webhooks::test(ctx, id).await,
        (true, _, ["keyspaces"]) => keyspaces::list(ctx).await,
        (_, true, ["keyspaces"]) => keyspaces::create(ctx).await,
        (true, _, ["keyspaces", id]) => keyspaces::show(ctx, id).await,
        (_, true, ["keyspaces", id]) => keyspaces::update(ctx, id).await,
        (_, true, ["keyspaces", id, "keys"]) => keyspaces::mint(ctx, id).await,
        (true, _, ["keyspaces", id, "keys", key]) => keyspaces::show_key(ctx, id, key).await,
        (true, _, ["keyspaces", id, "keys", key, "created"]) => {
            keyspaces::created(ctx, id, key).await
        }
        (_, true, ["keyspaces", id, "keys", key, action]) => {
            keyspaces::act(ctx, id, key, action).await
        }
        (true, _, ["audit"]) => audit::list(ctx).await,
        (true, _, ["security"]) => security::show(ctx).await,
        (_, true, ["security"]) => security::update(ctx).await,
        (true, _, ["profile"]) => people::profile(ctx).await,
        (_, true, ["profile"]) => people::save_profile(ctx).await,
        (true, _, ["profile", "export"]) => people::export(ctx).await,
        (true, _, ["users"]) => people::users(ctx).await,
        (_, true, ["users", id, "role"]) => people::set_role(ctx, id).await,
        (_, true, ["users", id, "delete"]) => people::delete(ctx, id).await,
        _ => Err(ApiError::not_found()),
    }
}

/// `GET /console/login`: the sign-in form, with a pre-session CSRF token double-submitted
/// through the `align_csrf` cookie.
fn login_page(
    ctx: &Ctx<'_>,
    status: StatusCode,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    if ctx.signed.is_some() && error.is_none() {
        return Ok(html::see_other("/console/keys"));
    }
    let token = match auth::cookie(ctx.parts, auth::LOGIN_CSRF_COOKIE) {
        Some(t)
            if t.len() == 43
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            t.to_owned()
        }
        _ => auth::random_token()?,
    };
    let body = maud::html! {
        section class="signin" {
            h1 { "Sign in to Align" }
            @if let Some(e) = error {
                p class="error" data-testid="error" { (e.message) }
            }
            form id="login" method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(token);
                label { "Email " input type="email" name="email" autocomplete="username" required autofocus; }
                label { "Password " input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" data-testid="sign-in" { "Sign in" }
            }
            p class="hint" { "No password yet? An operator sets one with " code { "align users set-password EMAIL --password-stdin" } "." }
        }
    };
    let mut r = ctx.page(status, "Sign in", body);
    if let Some(c) = auth::set_cookie(auth::LOGIN_CSRF_COOKIE, Some(&token), ctx.console.tls) {
        r.headers_mut().append(http::header::SET_COOKIE, c);
    }
    if let Some(secs) = error.and_then(|e| e.retry_after) {
        r.headers_mut()
            .insert("retry-after", http::HeaderValue::from(secs));
    }
    Ok(r)
}

/// `POST /console/login`.
async fn sign_in(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let expected = auth::cookie(ctx.parts, auth::LOGIN_CSRF_COOKIE);
    let presented = ctx.field("csrf");
    let csrf_ok = matches!((expected, presented), (Some(a), Some(b)) if auth::same_secret(a, b));
    if !csrf_ok {
        return Err(ApiError::forbidden(
            "The sign-in form's security token is missing or wrong. Reload the page and try again.",
        ));
    }
    let email = ctx.field("email").unwrap_or("").trim().to_owned();
    let password = ctx.field("password").unwrap_or("").to_owned();
    let ip = ctx.meta.peer.ip();
    let console = ctx.console;
    // The attempt takes its slot before any work, so parallel attempts cannot outrun the count.
    let attempt = match console.throttle.reserve(&email, ip) {
        Ok(attempt) => attempt,
        Err(wait) => {
            tracing::warn!(request_id = %ctx.meta.request_id, "console: sign-in throttled");
            return login_page(
                ctx,
                StatusCode::TOO_MANY_REQUESTS,
                Some(&ApiError::sign_in_throttled(wait)),
            );
        }
    };
    let store = ctx.state.store();
    let candidates = if email.is_empty() || email.len() > 320 {
        Vec::new()
    } else {
        match store.user_credentials(&email).await {
            Ok(c) => c,
            Err(e) => {
                attempt.not_checked();
                return Err(e.into());
            }
        }
    };
    let known: Vec<User> = candidates.iter().map(|(u, _)| u.clone()).collect();
    let found = match console.passwords.check(candidates, password).await {
        Ok(found) => found,
        Err(e) => {
            // No free check slot in time (or the blocking pool is gone): nothing was learnt.
            attempt.not_checked();
            return Err(e);
        }
    };
    let Some(user) = found else {
        attempt.failed();
        for u in &known {
            ctx.state
                .audit_by(
                    ctx.meta,
                    u.organization_id,
                    None,
                    align_audit::Actor::System,
                    "user.sign_in_failed",
                    &u.id.to_string(),
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({ "via": "console" }),
                )
                .await;
        }
        return login_page(
            ctx,
            StatusCode::UNAUTHORIZED,
            Some(&ApiError::wrong_password()),
        );
    };
    attempt.succeeded();
    let _ = ctx.meta.user.set(user.id);
    // Signing in always starts a new session: a session id planted before sign-in is useless.
    if let Some(old) = auth::cookie(ctx.parts, auth::SESSION_COOKIE) {
        store.delete_session(&SessionHash::of(old)).await?;
    }
    let (token, hash, session) = auth::new_session(&user)?;
    store.create_session(&hash, &session).await?;
    if let Err(e) = store.delete_expired_sessions(chrono::Utc::now()).await {
        tracing::warn!(error = %e, "could not delete expired console sessions");
    }
    let acting = Acting {
        who: Principal::User(&user),
        meta: ctx.meta,
    };
    acting
        .audit(
            ctx.state,
            None,
            "user.signed_in",
            &user.id.to_string(),
            StatusCode::SEE_OTHER,
            serde_json::json!({ "via": "console" }),
        )
        .await;
    let mut r = html::see_other("/console/keys");
    let tls = console.tls;
    for c in [
        auth::set_cookie(auth::SESSION_COOKIE, Some(&token), tls),
        auth::set_cookie(auth::LOGIN_CSRF_COOKIE, None, tls),
    ]
    .into_iter()
    .flatten()
    {
        r.headers_mut().append(http::header::SET_COOKIE, c);
    }
    Ok(r)
}

/// `POST /console/logout`: the session row goes, and so does anything waiting to be shown.
async fn sign_out(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let hash = ctx.session()?;
    ctx.state.store().delete_session(&hash).await?;
    ctx.console.once.forget_session(hash);
    let acting = ctx.acting()?;
    let user_id = acting.who.user_id().to_string();
    acting
        .audit(
            ctx.state,
            None,
            "user.signed_out",
            &user_id,
            StatusCode::SEE_OTHER,
            serde_json::json!({ "via": "console" }),
        )
        .await;
    let mut r = html::see_other("/console/login");
    if let Some(c) = auth::set_cookie(auth::SESSION_COOKIE, None, ctx.console.tls) {
        r.headers_mut().append(http::header::SET_COOKIE, c);
    }
    Ok(r)
}

/// A time as the pages show it.
fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}
