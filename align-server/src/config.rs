//! Settings: every default in one place, read from a TOML file, then `ALIGN_*` environment
//! variables, then command-line flags (each later source wins).
//!
//! Every key has an environment variable named after it: `ALIGN_` + the key path upper-cased,
//! dots as underscores (`ratelimit.per_minute` → `ALIGN_RATELIMIT_PER_MINUTE`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::Error;

/// Cached keys unused for this long are dropped from memory by the periodic sweep (the next
/// use reads the store once).
pub const KEY_CACHE_IDLE: Duration = Duration::from_secs(300);
/// How often idle rate-limit state and idle cached keys are swept out.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// The server's settings. See `docs/operations.md` for each one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on (`listen`, default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Where the database and the bootstrap key live (`data_dir`, default `./align-data`).
    pub data_dir: PathBuf,
    /// Requests per minute per key on a sliding window (`ratelimit.per_minute`, default 600).
    pub rate_limit_per_minute: u32,
    /// Largest request body in bytes (`limits.max_body_bytes`, default 1 MiB).
    pub max_body_bytes: usize,
    /// Time a handler may take before `504 timeout` (`limits.request_timeout_secs`, 30).
    pub request_timeout: Duration,
    /// A connection with no request in flight for this long is closed: one that sent nothing,
    /// an HTTP/2 connection without streams, a keep-alive connection between requests
    /// (`limits.idle_timeout_secs`, 60).
    pub idle_timeout: Duration,
    /// Most connections open at once (`limits.max_connections`; by default sized to the
    /// process's descriptor limit, see `docs/operations.md`). At the cap the longest-idle
    /// connection is closed for each new one.
    pub max_connections: Option<usize>,
    /// How often coalesced `lastUsedAt` times are written (`keys.last_used_flush_ms`, 1000).
    pub last_used_flush: Duration,
    /// Most keys kept in the verification cache (`keys.cache_capacity`, 100000). Beyond it
    /// a full cache shard is emptied and refilled from the store; keys unused for
    /// [`KEY_CACHE_IDLE`] are dropped by the periodic sweep.
    pub key_cache_capacity: usize,
    /// Requests one key may have in flight at once (`limits.max_concurrent_per_key`, 32).
    pub max_concurrent_per_key: u64,
    /// Rejections (`401`, `429`) per client and second that get their own request-log
    /// entries; the rest of that second are folded into one summary entry
    /// (`limits.fold_rejections_after`, default 100; `0` logs every one).
    pub fold_rejections_after: u32,
    /// Requests per key per UTC day (`ratelimit.quota_per_day`, off by default).
    pub quota_per_day: Option<u64>,
    /// Requests per key per UTC calendar month (`ratelimit.quota_per_month`, off by default).
    pub quota_per_month: Option<u64>,
    /// Shared rate-limit state in Redis (`ratelimit.redis_*`; off by default: in memory).
    pub redis: RedisSettings,
    /// PEM certificate chain for HTTPS (`tls.cert_file`; with `tls.key_file`, off by default).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for HTTPS (`tls.key_file`).
    pub tls_key_file: Option<PathBuf>,
    /// Webhook delivery settings (`webhooks.*`).
    pub webhooks: WebhookSettings,
    /// Where keys and the webhook outbox live (`database.url`, default the SQLite file in
    /// the data directory).
    pub database: Database,
    /// The developer console under `/console` (`console.*`).
    pub console: ConsoleSettings,
    /// The key file that seals webhook signing secrets in the database (`secrets.key_file`,
    /// default `DIR/secrets-key`, created `0600` on first start). See
    /// [`Config::secrets_key_path`] and `docs/security.md`.
    pub secrets_key_file: Option<PathBuf>,
    /// How often the heads of the audit and request logs are anchored (signed, appended to
    /// `DIR/audit-anchors.jsonl` and sent as `audit.checkpoint` events) when they moved
    /// (`audit.anchor_interval_secs`, default 60). Records committed since the last anchor
    /// are what someone who can rewrite the database could remove unnoticed; a clean shutdown
    /// anchors too.
    pub audit_anchor_interval: Duration,
    /// Who may read `GET /metrics` (`metrics.*`).
    pub metrics: MetricsSettings,
    /// The logs' disk budget (`logs.*`; see `docs/operations.md`, "Disk budget").
    pub logs: LogSettings,
    /// Leaked-key reports from secret scanners (`secret_scanning.*`).
    pub secret_scanning: SecretScanningSettings,
    /// Security notices by e-mail (`notifications.*`).
    pub notifications: NotificationSettings,
    /// How long personal and operational records are kept (`retention.*`).
    pub retention: RetentionSettings,
}

/// The logs' disk budget (`logs.*`; see `docs/operations.md`, "Disk budget").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    /// Most bytes the data directory may hold before the oldest request-log entries are
    /// purged (`logs.disk_budget_bytes`, default 10 GiB).
    pub disk_budget_bytes: u64,
    /// Below this many free bytes on the data directory's file system the disk is low: the
    /// reserve file is deleted, the oldest request-log entries purged, `/healthz` says
    /// `degraded` (`logs.low_disk_free_bytes`, default 512 MiB).
    pub low_disk_free_bytes: u64,
    /// The reserve file kept for writes that must not fail (`logs.disk_reserve_bytes`,
    /// default 32 MiB; `0` keeps none).
    pub disk_reserve_bytes: u64,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            disk_budget_bytes: 10 << 30,
            low_disk_free_bytes: 512 << 20,
            disk_reserve_bytes: 32 << 20,
        }
    }
}

/// Secret-scanning intake settings (`secret_scanning.*`; see `docs/leaked-keys.md`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretScanningSettings {
    /// GitHub's secret-scanning public keys, in GitHub's own JSON format
    /// (`{"public_keys":[{"key_identifier","key","is_current"}]}`), which
    /// `POST /api/v1/secret-scanning/github` checks report signatures against
    /// (`secret_scanning.github_keys_file`, default none: every report is
    /// `401 invalid_signature`). Read again on every report, so a rotated key file needs no
    /// restart.
    pub github_keys_file: Option<PathBuf>,
}

/// E-mail settings for security notices (`notifications.*`; see `docs/leaked-keys.md`).
#[derive(Clone, PartialEq, Eq)]
pub struct NotificationSettings {
    /// Where security notices are sent from: an SMTP URL such as
    /// `smtps://user:pass@smtp.example.com` or `smtp://127.0.0.1:2525`
    /// (`notifications.smtp_url`, default none: no e-mail, the `api_key.leaked` event only).
    /// It may hold a password, so it never prints.
    pub smtp_url: Option<String>,
    /// The `From:` address of notices (`notifications.smtp_from`, default
    /// `align@localhost`).
    pub smtp_from: String,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            smtp_from: "align@localhost".into(),
        }
    }
}

impl std::fmt::Debug for NotificationSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationSettings")
            .field("smtp_url", &self.smtp_url.as_ref().map(|_| "[redacted]"))
            .field("smtp_from", &self.smtp_from)
            .finish()
    }
}

/// How long each store keeps its records (`retention.*`; DESIGN §9, `docs/privacy.md`).
/// Nothing is kept forever: the server removes what is older every `interval` (jittered),
/// and `align retention run` does the same on demand. Sessions go when they expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Days the request log is kept (`retention.request_log_days`, default 30).
    pub request_log_days: u32,
    /// Days the audit log is kept (`retention.audit_log_days`, default 400). Removal takes
    /// whole prefixes of the chain and leaves a signed checkpoint, so it still verifies.
    pub audit_log_days: u32,
    /// Days webhook deliveries and their attempts (receivers' responses) are kept once
    /// finished (`retention.webhook_days`, default 30).
    pub webhook_days: u32,
    /// Days events (webhook messages, `GET /events`) are kept (`retention.events_days`,
    /// default 30).
    pub events_days: u32,
    /// Run retention inside `align serve` (`retention.enabled`, default true).
    pub enabled: bool,
    /// How often it runs (`retention.interval_secs`, default 3600, with up to a tenth more
    /// at random so that instances drift apart).
    pub interval: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            request_log_days: 30,
            audit_log_days: 400,
            webhook_days: 30,
            events_days: 30,
            enabled: true,
            interval: Duration::from_secs(3600),
        }
    }
}

/// Metrics settings (`metrics.*`; see `docs/operations.md`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct MetricsSettings {
    /// A bearer token for `GET /metrics` (`metrics.token`, default none), for a Prometheus
    /// scraper: `Authorization: Bearer <token>`. At least 32 characters. Without it only an
    /// admin's organisation-scoped live key with every permission reads metrics, and only in
    /// a deployment of one organisation (metrics cover the whole deployment).
    pub token: Option<String>,
}

impl std::fmt::Debug for MetricsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSettings")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Console settings (`console.*`; see `docs/operations.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// Serve the console under `/console` (`console.enabled`, default true).
    pub enabled: bool,
    /// PBKDF2-HMAC-SHA256 iterations for passwords set from now on, and for the decoy an
    /// unknown e-mail is checked against (`console.pbkdf2_iterations`, default 600000,
    /// at least 100000).
    pub pbkdf2_iterations: u32,
    /// The origin browsers use to reach the console when it differs from what the server
    /// sees, e.g. `https://align.example.com` behind a TLS-terminating proxy
    /// (`console.origin`, default none: `http(s)://` + the request's `Host`). Form posts must
    /// come from it, and an `https://` origin makes the cookies `Secure`.
    pub origin: Option<String>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            pbkdf2_iterations: align_keys::DEFAULT_PBKDF2_ITERATIONS,
            origin: None,
        }
    }
}

/// The database the stores run on (`database.url`).
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Database {
    /// `DIR/align.db` in the data directory (an empty `database.url` or `sqlite:`).
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by several instances (`postgres://…`). The URL may hold
    /// a password, so this value's `Debug` shows only the back-end.
    Postgres(String),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "Sqlite",
            Self::Postgres(_) => "Postgres(..)",
        })
    }
}

impl std::str::FromStr for Database {
    type Err = Error;

    /// Reads a `database.url` value: empty or `sqlite:` for the data directory's file,
    /// `postgres://…` for PostgreSQL. The error never quotes the URL.
    fn from_str(url: &str) -> Result<Self, Error> {
        parse_database_url(url)
    }
}

/// Webhook settings (`webhooks.*`; see `docs/operations.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Let endpoints point at private, loopback and link-local addresses
    /// (`webhooks.allow_private_targets`, default false; tests on loopback turn it on).
    pub allow_private_targets: bool,
    /// For development: let live endpoints use plain `http://` to a local receiver (a
    /// loopback or private IP address, or `localhost`), instead of making every endpoint a
    /// sandbox one (`webhooks.allow_http_targets`, default false; needs
    /// `allow_private_targets`).
    pub allow_http_targets: bool,
    /// Waits after the first attempt (`webhooks.retry_schedule`, seconds, default
    /// `5,300,1800,7200,18000,36000,36000`).
    pub retry_schedule: align_webhooks::RetrySchedule,
    /// Time allowed for one delivery attempt (`webhooks.attempt_timeout_secs`, default 15).
    pub attempt_timeout: Duration,
    /// Deliveries in flight at once (`webhooks.concurrency`, default 32).
    pub concurrency: usize,
    /// How often the outbox is polled when idle (`webhooks.poll_interval_ms`, default 250).
    pub poll_interval: Duration,
    /// An endpoint failing for this long is disabled (`webhooks.disable_after_hours`,
    /// default 120: five days).
    pub disable_after: Duration,
    /// Run the dispatcher inside `align serve` (`webhooks.dispatcher`, default true; turn it
    /// off when another process delivers from the same database).
    pub dispatcher: bool,
    /// Endpoints one organisation may have at most
    /// (`webhooks.max_endpoints_per_organization`, default 100); creating one more answers
    /// `409 conflict`.
    pub max_endpoints_per_organization: usize,
}

/// Rate limits shared through Redis by several instances (`ratelimit.redis_*`; see
/// `docs/operations.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// Where Redis is (`ratelimit.redis_url`, e.g. `redis://:password@10.0.0.5:6379/0`);
    /// `None` keeps the limits in memory, per instance.
    pub url: Option<RedisUrl>,
    /// What to do while Redis does not answer (`ratelimit.redis_failure`, default `open`).
    pub failure: RedisFailure,
    /// Put before every Redis key (`ratelimit.redis_prefix`, default `align:rl:`).
    pub prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            failure: RedisFailure::Open,
            prefix: "align:rl:".to_owned(),
        }
    }
}

/// The policy while the shared Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFailure {
    /// Keep serving, limited per instance by the in-memory limiter (`open`, the default); a
    /// warning is logged once per outage.
    Open,
    /// Refuse key-authenticated requests with `503 unavailable` and `Retry-After` (`closed`).
    Closed,
}

impl std::str::FromStr for RedisFailure {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim().to_ascii_lowercase().as_str() {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err(()),
        }
    }
}

/// A Redis URL, which may carry a password: shown with the password masked.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Checks that `url` is one the server can use (`redis://`, `redis+unix://`, `unix://`).
    pub fn parse(url: &str) -> Result<Self, Error> {
        let refuse = |reason: &str| Error::Setting {
            key: "ratelimit.redis_url".into(),
            reason: reason.into(),
        };
        // The URL may hold a password: errors name the problem, never quote the value.
        let parsed = url::Url::parse(url.trim())
            .map_err(|_| refuse("not a URL; expected redis://[:password@]host[:port][/db]"))?;
        match parsed.scheme() {
            "redis" | "redis+unix" | "unix" => Ok(Self(url.trim().to_owned())),
            "rediss" => Err(refuse(
                "TLS to Redis (rediss://) is not built in; use redis:// over a private network or a local TLS tunnel",
            )),
            _ => Err(refuse("expected a redis:// URL")),
        }
    }

    /// The URL itself, password included: only for opening the connection.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                write!(f, "{:?}", u.as_str())
            }
            Err(_) => f.write_str("\"<redis url>\""),
        }
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            allow_http_targets: false,
            retry_schedule: align_webhooks::RetrySchedule::default(),
            attempt_timeout: Duration::from_secs(15),
            concurrency: 32,
            poll_interval: Duration::from_millis(250),
            disable_after: Duration::from_secs(120 * 3600),
            dispatcher: true,
            max_endpoints_per_organization: 100,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./align-data"),
            rate_limit_per_minute: 600,
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: None,
            last_used_flush: Duration::from_secs(1),
            key_cache_capacity: 100_000,
            max_concurrent_per_key: 32,
            fold_rejections_after: 100,
            quota_per_day: None,
            quota_per_month: None,
            redis: RedisSettings::default(),
            tls_cert_file: None,
            tls_key_file: None,
            webhooks: WebhookSettings::default(),
            database: Database::Sqlite,
            console: ConsoleSettings::default(),
            metrics: MetricsSettings::default(),
            logs: LogSettings::default(),
            audit_anchor_interval: Duration::from_secs(60),
            secrets_key_file: None,
            secret_scanning: SecretScanningSettings::default(),
            notifications: NotificationSettings::default(),
            retention: RetentionSettings::default(),
        }
    }
}

/// The shape of the TOML file; every field optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    database: DatabaseSection,
    #[serde(default)]
    ratelimit: RatelimitSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    keys: KeysSection,
    #[serde(default)]
    tls: TlsSection,
    #[serde(default)]
    webhooks: WebhooksSection,
    #[serde(default)]
    console: ConsoleSection,
    #[serde(default)]
    metrics: MetricsSection,
    #[serde(default)]
    audit: AuditSection,
    #[serde(default)]
    secrets: SecretsSection,
    #[serde(default)]
    logs: LogsSection,
    #[serde(default)]
    secret_scanning: SecretScanningSection,
    #[serde(default)]
    notifications: NotificationsSection,
    #[serde(default)]
    retention: RetentionSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsSection {
    disk_budget_bytes: Option<u64>,
    low_disk_free_bytes: Option<u64>,
    disk_reserve_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretScanningSection {
    github_keys_file: Option<PathBuf>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotificationsSection {
    smtp_url: Option<String>,
    smtp_from: Option<String>,
}

impl std::fmt::Debug for NotificationsSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationsSection")
            .field("smtp_url", &self.smtp_url.as_ref().map(|_| "[redacted]"))
            .field("smtp_from", &self.smtp_from)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSection {
    request_log_days: Option<u32>,
    audit_log_days: Option<u32>,
    webhook_days: Option<u32>,
    events_days: Option<u32>,
    enabled: Option<bool>,
    interval_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsSection {
    key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    anchor_interval_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleSection {
    enabled: Option<bool>,
    pbkdf2_iterations: Option<u32>,
    origin: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhooksSection {
    allow_private_targets: Option<bool>,
    allow_http_targets: Option<bool>,
    retry_schedule: Option<ScheduleValue>,
    attempt_timeout_secs: Option<u64>,
    concurrency: Option<usize>,
    poll_interval_ms: Option<u64>,
    disable_after_hours: Option<u64>,
    dispatcher: Option<bool>,
    max_endpoints_per_organization: Option<usize>,
}

/// `retry_schedule = "5,300,1800"` or `retry_schedule = [5, 300, 1800]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScheduleValue {
    Text(String),
    Seconds(Vec<u64>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseSection {
    url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RatelimitSection {
    per_minute: Option<u32>,
    redis_url: Option<String>,
    redis_failure: Option<String>,
    redis_prefix: Option<String>,
    quota_per_day: Option<u64>,
    quota_per_month: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_body_bytes: Option<usize>,
    request_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    max_concurrent_per_key: Option<u64>,
    fold_rejections_after: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysSection {
    last_used_flush_ms: Option<u64>,
    cache_capacity: Option<usize>,
}

/// Command-line overrides (`align serve --listen … --data-dir …`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads defaults ← `file` (if given) ← `env` (pairs such as `std::env::vars()`) ← flags.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Self, Error> {
        let mut c = Self::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigFile {
                path: path.to_owned(),
                source,
            })?;
            let parsed: FileConfig = toml::from_str(&text).map_err(|e| Error::ConfigSyntax {
                path: path.to_owned(),
                message: e.message().to_owned(),
            })?;
            c.apply_file(parsed)?;
        }
        for (name, value) in env {
            c.apply_env(&name, &value)?;
        }
        if let Some(l) = flags.listen {
            c.listen = l;
        }
        if let Some(d) = &flags.data_dir {
            c.data_dir.clone_from(d);
        }
        c.validate()?;
        Ok(c)
    }

    fn apply_file(&mut self, f: FileConfig) -> Result<(), Error> {
        if let Some(l) = f.listen {
            self.listen = parse_value("listen", &l)?;
        }
        if let Some(d) = f.data_dir {
            self.data_dir = d;
        }
        if let Some(url) = f.database.url.as_deref() {
            self.database = parse_database_url(url)?;
        }
        if let Some(u) = f.ratelimit.redis_url {
            self.redis.url = redis_url(&u)?;
        }
        if let Some(v) = f.ratelimit.redis_failure {
            self.redis.failure = parse_failure("ratelimit.redis_failure", &v)?;
        }
        if let Some(v) = f.ratelimit.redis_prefix {
            self.redis.prefix = v;
        }
        if let Some(v) = f.ratelimit.per_minute {
            self.rate_limit_per_minute = v;
        }
        if f.ratelimit.quota_per_day.is_some() {
            self.quota_per_day = f.ratelimit.quota_per_day;
        }
        if f.ratelimit.quota_per_month.is_some() {
            self.quota_per_month = f.ratelimit.quota_per_month;
        }
        if let Some(v) = f.limits.fold_rejections_after {
            self.fold_rejections_after = v;
        }
        if let Some(v) = f.limits.max_concurrent_per_key {
            self.max_concurrent_per_key = v;
        }
        if let Some(v) = f.limits.max_body_bytes {
            self.max_body_bytes = v;
        }
        if let Some(v) = f.limits.request_timeout_secs {
            self.request_timeout = Duration::from_secs(v);
        }
        if let Some(v) = f.limits.idle_timeout_secs {
            self.idle_timeout = Duration::from_secs(v);
        }
        if f.limits.max_connections.is_some() {
            self.max_connections = f.limits.max_connections;
        }
        if f.tls.cert_file.is_some() {
            self.tls_cert_file = f.tls.cert_file;
        }
        if f.tls.key_file.is_some() {
            self.tls_key_file = f.tls.key_file;
        }
        if let Some(v) = f.keys.last_used_flush_ms {
            self.last_used_flush = Duration::from_millis(v);
        }
        if let Some(v) = f.keys.cache_capacity {
            self.key_cache_capacity = v;
        }
        if let Some(v) = f.console.enabled {
            self.console.enabled = v;
        }
        if let Some(v) = f.console.pbkdf2_iterations {
            self.console.pbkdf2_iterations = v;
        }
        if let Some(v) = f.console.origin {
            self.console.origin = console_origin(&v)?;
        }
        if let Some(v) = f.audit.anchor_interval_secs {
            self.audit_anchor_interval = Duration::from_secs(v);
        }
        if let Some(v) = f.logs.disk_budget_bytes {
            self.logs.disk_budget_bytes = v;
        }
        if let Some(v) = f.logs.low_disk_free_bytes {
            self.logs.low_disk_free_bytes = v;
        }
        if let Some(v) = f.logs.disk_reserve_bytes {
            self.logs.disk_reserve_bytes = v;
        }
        if let Some(v) = f.metrics.token {
            self.metrics.token = non_empty(v);
        }
        if f.secrets.key_file.is_some() {
            self.secrets_key_file = f.secrets.key_file;
        }
        if f.secret_scanning.github_keys_file.is_some() {
            self.secret_scanning.github_keys_file = f.secret_scanning.github_keys_file;
        }
        if let Some(v) = f.notifications.smtp_url {
            self.notifications.smtp_url = non_empty(v);
        }
        if let Some(v) = f.notifications.smtp_from {
            self.notifications.smtp_from = v;
        }
        let r = f.retention;
        let keep = &mut self.retention;
        for (value, field) in [
            (r.request_log_days, &mut keep.request_log_days),
            (r.audit_log_days, &mut keep.audit_log_days),
            (r.webhook_days, &mut keep.webhook_days),
            (r.events_days, &mut keep.events_days),
        ] {
            if let Some(v) = value {
                *field = v;
            }
        }
        if let Some(v) = r.enabled {
            keep.enabled = v;
        }
        if let Some(v) = r.interval_secs {
            keep.interval = Duration::from_secs(v);
        }
        let w = f.webhooks;
        let hooks = &mut self.webhooks;
        if let Some(v) = w.allow_private_targets {
            hooks.allow_private_targets = v;
        }
        if let Some(v) = w.allow_http_targets {
            hooks.allow_http_targets = v;
        }
        match w.retry_schedule {
            None => {}
            Some(ScheduleValue::Text(t)) => {
                hooks.retry_schedule = parse_schedule("webhooks.retry_schedule", &t)?;
            }
            Some(ScheduleValue::Seconds(secs)) => {
                hooks.retry_schedule = align_webhooks::RetrySchedule::new(
                    secs.into_iter().map(Duration::from_secs).collect(),
                );
            }
        }
        if let Some(v) = w.attempt_timeout_secs {
            hooks.attempt_timeout = Duration::from_secs(v);
        }
        if let Some(v) = w.concurrency {
            hooks.concurrency = v;
        }
        if let Some(v) = w.poll_interval_ms {
            hooks.poll_interval = Duration::from_millis(v);
        }
        if let Some(v) = w.disable_after_hours {
            hooks.disable_after = Duration::from_secs(v.saturating_mul(3600));
        }
        if let Some(v) = w.max_endpoints_per_organization {
            hooks.max_endpoints_per_organization = v;
        }
        if let Some(v) = w.dispatcher {
            hooks.dispatcher = v;
        }
        Ok(())
    }

    fn apply_env(&mut self, name: &str, value: &str) -> Result<(), Error> {
        match name {
            "ALIGN_LISTEN" => self.listen = parse_value(name, value)?,
            "ALIGN_DATA_DIR" => self.data_dir = PathBuf::from(value),
            "ALIGN_DATABASE_URL" => self.database = parse_database_url(value)?,
            "ALIGN_RATELIMIT_REDIS_URL" => self.redis.url = redis_url(value)?,
            "ALIGN_RATELIMIT_REDIS_FAILURE" => {
                self.redis.failure = parse_failure(name, value)?;
            }
            "ALIGN_RATELIMIT_REDIS_PREFIX" => self.redis.prefix = value.to_owned(),
            "ALIGN_RATELIMIT_PER_MINUTE" => self.rate_limit_per_minute = parse_value(name, value)?,
            "ALIGN_LIMITS_MAX_BODY_BYTES" => self.max_body_bytes = parse_value(name, value)?,
            "ALIGN_LIMITS_MAX_CONCURRENT_PER_KEY" => {
                self.max_concurrent_per_key = parse_value(name, value)?;
            }
            "ALIGN_LIMITS_FOLD_REJECTIONS_AFTER" => {
                self.fold_rejections_after = parse_value(name, value)?;
            }
            "ALIGN_RATELIMIT_QUOTA_PER_DAY" => self.quota_per_day = optional(name, value)?,
            "ALIGN_RATELIMIT_QUOTA_PER_MONTH" => self.quota_per_month = optional(name, value)?,
            "ALIGN_LIMITS_REQUEST_TIMEOUT_SECS" => {
                self.request_timeout = Duration::from_secs(parse_value(name, value)?);
            }
            "ALIGN_LIMITS_IDLE_TIMEOUT_SECS" => {
                self.idle_timeout = Duration::from_secs(parse_value(name, value)?);
            }
            "ALIGN_LIMITS_MAX_CONNECTIONS" => {
                self.max_connections = match value.trim() {
                    "" => None,
                    v => Some(parse_value(name, v)?),
                };
            }
            "ALIGN_TLS_CERT_FILE" => self.tls_cert_file = non_empty_path(value),
            "ALIGN_TLS_KEY_FILE" => self.tls_key_file = non_empty_path(value),
            "ALIGN_KEYS_LAST_USED_FLUSH_MS" => {
                self.last_used_flush = Duration::from_millis(parse_value(name, value)?);
            }
            "ALIGN_KEYS_CACHE_CAPACITY" => self.key_cache_capacity = parse_value(name, value)?,
            "ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS" => {
                self.webhooks.allow_private_targets = parse_bool(name, value)?;
            }
            "ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS" => {
                self.webhooks.allow_http_targets = parse_bool(name, value)?;
            }
            "ALIGN_WEBHOOKS_RETRY_SCHEDULE" => {
                self.webhooks.retry_schedule = parse_schedule(name, value)?;
            }
            "ALIGN_WEBHOOKS_ATTEMPT_TIMEOUT_SECS" => {
                self.webhooks.attempt_timeout = Duration::from_secs(parse_value(name, value)?);
            }
            "ALIGN_WEBHOOKS_CONCURRENCY" => self.webhooks.concurrency = parse_value(name, value)?,
            "ALIGN_WEBHOOKS_POLL_INTERVAL_MS" => {
                self.webhooks.poll_interval = Duration::from_millis(parse_value(name, value)?);
            }
            "ALIGN_WEBHOOKS_DISABLE_AFTER_HOURS" => {
                let hours: u64 = parse_value(name, value)?;
                self.webhooks.disable_after = Duration::from_secs(hours.saturating_mul(3600));
            }
            "ALIGN_WEBHOOKS_DISPATCHER" => self.webhooks.dispatcher = parse_bool(name, value)?,
            "ALIGN_WEBHOOKS_MAX_ENDPOINTS_PER_ORGANIZATION" => {
                self.webhooks.max_endpoints_per_organization = parse_value(name, value)?;
            }
            "ALIGN_CONSOLE_ENABLED" => self.console.enabled = parse_bool(name, value)?,
            "ALIGN_CONSOLE_PBKDF2_ITERATIONS" => {
                self.console.pbkdf2_iterations = parse_value(name, value)?;
            }
            "ALIGN_CONSOLE_ORIGIN" => self.console.origin = console_origin(value)?,
            "ALIGN_METRICS_TOKEN" => self.metrics.token = non_empty(value.to_owned()),
            "ALIGN_AUDIT_ANCHOR_INTERVAL_SECS" => {
                self.audit_anchor_interval = Duration::from_secs(parse_value(name, value)?);
            }
            "ALIGN_SECRETS_KEY_FILE" => self.secrets_key_file = non_empty_path(value),
            "ALIGN_LOGS_DISK_BUDGET_BYTES" => {
                self.logs.disk_budget_bytes = parse_value(name, value)?;
            }
            "ALIGN_LOGS_LOW_DISK_FREE_BYTES" => {
                self.logs.low_disk_free_bytes = parse_value(name, value)?;
            }
            "ALIGN_LOGS_DISK_RESERVE_BYTES" => {
                self.logs.disk_reserve_bytes = parse_value(name, value)?;
            }
            "ALIGN_SECRET_SCANNING_GITHUB_KEYS_FILE" => {
                self.secret_scanning.github_keys_file = non_empty_path(value);
            }
            "ALIGN_NOTIFICATIONS_SMTP_URL" => {
                self.notifications.smtp_url = non_empty(value.to_owned());
            }
            "ALIGN_NOTIFICATIONS_SMTP_FROM" => self.notifications.smtp_from = value.to_owned(),
            "ALIGN_RETENTION_REQUEST_LOG_DAYS" => {
                self.retention.request_log_days = parse_value(name, value)?;
            }
            "ALIGN_RETENTION_AUDIT_LOG_DAYS" => {
                self.retention.audit_log_days = parse_value(name, value)?;
            }
            "ALIGN_RETENTION_WEBHOOK_DAYS" => {
                self.retention.webhook_days = parse_value(name, value)?;
            }
            "ALIGN_RETENTION_EVENTS_DAYS" => self.retention.events_days = parse_value(name, value)?,
            "ALIGN_RETENTION_ENABLED" => self.retention.enabled = parse_bool(name, value)?,
            "ALIGN_RETENTION_INTERVAL_SECS" => {
                self.retention.interval = Duration::from_secs(parse_value(name, value)?);
            }
            _ => {}
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), Error> {
        if self.webhooks.allow_http_targets && !self.webhooks.allow_private_targets {
            return Err(Error::Setting {
                key: "webhooks.allow_http_targets".into(),
                reason: "lets live endpoints use http only to a local receiver (loopback or private addresses), which also needs webhooks.allow_private_targets = true".into(),
            });
        }
        let r = &self.retention;
        if [
            r.request_log_days,
            r.audit_log_days,
            r.webhook_days,
            r.events_days,
        ]
        .contains(&0)
            || r.interval.is_zero()
        {
            return Err(Error::Setting {
                key: "retention.*".into(),
                reason: "retention days and retention.interval_secs must be at least 1".into(),
            });
        }
        if self
            .metrics
            .token
            .as_ref()
            .is_some_and(|t| t.chars().count() < 32 || t.chars().any(|c| !c.is_ascii_graphic()))
        {
            return Err(Error::Setting {
                key: "metrics.token".into(),
                reason: "must be at least 32 printable ASCII characters without spaces".into(),
            });
        }
        if self
            .notifications
            .smtp_url
            .as_deref()
            .is_some_and(|u| !(u.starts_with("smtp://") || u.starts_with("smtps://")))
        {
            return Err(Error::Setting {
                key: "notifications.smtp_url".into(),
                reason: "must be an smtp:// or smtps:// URL".into(),
            });
        }
        if self
            .notifications
            .smtp_from
            .parse::<lettre::message::Mailbox>()
            .is_err()
        {
            return Err(Error::Setting {
                key: "notifications.smtp_from".into(),
                reason: "must be an e-mail address such as align@example.com".into(),
            });
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(Error::Setting {
                key: "tls".into(),
                reason: "set both tls.cert_file and tls.key_file, or neither".into(),
            });
        }
        if self.rate_limit_per_minute == 0 {
            return Err(Error::Setting {
                key: "ratelimit.per_minute".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.max_concurrent_per_key == 0
            || self.quota_per_day == Some(0)
            || self.quota_per_month == Some(0)
        {
            return Err(Error::Setting {
                key: "limits.max_concurrent_per_key / ratelimit.quota_*".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.key_cache_capacity == 0 {
            return Err(Error::Setting {
                key: "keys.cache_capacity".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.max_body_bytes == 0
            || self.request_timeout.is_zero()
            || self.last_used_flush.is_zero()
        {
            return Err(Error::Setting {
                key: "limits".into(),
                reason: "body limit, timeout and flush interval must be positive".into(),
            });
        }
        if self.idle_timeout.is_zero() {
            return Err(Error::Setting {
                key: "limits.idle_timeout_secs".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.logs.disk_budget_bytes < 16 << 20 {
            return Err(Error::Setting {
                key: "logs.disk_budget_bytes".into(),
                reason: "must be at least 16 MiB (16777216)".into(),
            });
        }
        if self.max_connections == Some(0) {
            return Err(Error::Setting {
                key: "limits.max_connections".into(),
                reason: "must be at least 1 (leave it out to size it to the descriptor limit)"
                    .into(),
            });
        }
        let iterations = self.console.pbkdf2_iterations;
        if !(align_keys::MIN_PBKDF2_ITERATIONS..=align_keys::MAX_PBKDF2_ITERATIONS)
            .contains(&iterations)
        {
            return Err(Error::Setting {
                key: "console.pbkdf2_iterations".into(),
                reason: "must be between 100000 and 100000000".into(),
            });
        }
        if self.audit_anchor_interval.is_zero() {
            return Err(Error::Setting {
                key: "audit.anchor_interval_secs".into(),
                reason: "must be at least 1: anchoring cannot be turned off".into(),
            });
        }
        let w = &self.webhooks;
        if w.attempt_timeout.is_zero() || w.concurrency == 0 || w.poll_interval.is_zero() {
            return Err(Error::Setting {
                key: "webhooks".into(),
                reason: "attempt timeout, concurrency and poll interval must be positive".into(),
            });
        }
        Ok(())
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("align.db")
    }

    /// Where the first admin key is written on first start.
    pub fn bootstrap_key_path(&self) -> PathBuf {
        self.data_dir.join("bootstrap-admin-key")
    }

    /// The key file that seals webhook signing secrets: `secrets.key_file`, or
    /// `DIR/secrets-key`.
    pub fn secrets_key_path(&self) -> PathBuf {
        secrets_key_path(&self.data_dir, self.secrets_key_file.as_deref())
    }
}

/// The secrets key file: `configured`, or `secrets-key` in the data directory `data_dir`.
pub fn secrets_key_path(data_dir: &Path, configured: Option<&Path>) -> PathBuf {
    configured.map_or_else(|| data_dir.join("secrets-key"), Path::to_owned)
}

fn parse_value<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, Error> {
    value.trim().parse().map_err(|_| Error::Setting {
        key: key.to_owned(),
        reason: format!("cannot parse {value:?}"),
    })
}

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off` (any case).
fn parse_bool(key: &str, value: &str) -> Result<bool, Error> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(Error::Setting {
            key: key.to_owned(),
            reason: format!("expected true or false, got {value:?}"),
        }),
    }
}

fn parse_schedule(key: &str, value: &str) -> Result<align_webhooks::RetrySchedule, Error> {
    value
        .parse()
        .map_err(|e: align_webhooks::ScheduleParseError| Error::Setting {
            key: key.to_owned(),
            reason: e.to_string(),
        })
}

fn non_empty_path(value: &str) -> Option<PathBuf> {
    (!value.trim().is_empty()).then(|| PathBuf::from(value))
}

/// An optional number: empty means "off".
fn optional(key: &str, value: &str) -> Result<Option<u64>, Error> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        parse_value(key, value).map(Some)
    }
}

/// `sqlite:…` or empty: the embedded file; `postgres://…`: a shared PostgreSQL database,
/// checked here so a bad URL fails at start-up. The error never repeats the URL (it may hold
/// a password).
fn parse_database_url(url: &str) -> Result<Database, Error> {
    let url = url.trim();
    if url.is_empty() || url.starts_with("sqlite:") {
        return Ok(Database::Sqlite);
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return match align_keys::postgres::parse_url(url) {
            Ok(_) => Ok(Database::Postgres(url.to_owned())),
            Err(e) => Err(Error::Setting {
                key: "database.url".into(),
                reason: e.to_string(),
            }),
        };
    }
    Err(Error::Setting {
        key: "database.url".into(),
        reason: "expected an empty value, sqlite: or postgres://…".into(),
    })
}

/// `http(s)://host[:port]` as browsers send it in `Origin` (lower-case, no path); empty
/// means none.
/// An empty value unsets an optional text setting.
fn non_empty(value: String) -> Option<String> {
    (!value.trim().is_empty()).then_some(value)
}

fn console_origin(value: &str) -> Result<Option<String>, Error> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let refuse = || Error::Setting {
        key: "console.origin".into(),
        reason: "expected http(s)://host[:port], e.g. https://align.example.com".into(),
    };
    let url = url::Url::parse(value).map_err(|_| refuse())?;
    let plain = url.path() == "/" && url.query().is_none() && url.username().is_empty();
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !plain {
        return Err(refuse());
    }
    Ok(Some(url.origin().ascii_serialization()))
}

/// An empty URL means "no Redis": limits stay in memory.
fn redis_url(value: &str) -> Result<Option<RedisUrl>, Error> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    RedisUrl::parse(value).map(Some)
}

fn parse_failure(key: &str, value: &str) -> Result<RedisFailure, Error> {
    value.parse().map_err(|()| Error::Setting {
        key: key.to_owned(),
        reason: format!("expected open or closed, got {value:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.rate_limit_per_minute, 600);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn leak_settings_from_file_and_env_and_the_smtp_url_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("align.toml");
        std::fs::write(
            &file,
            "[secret_scanning]\ngithub_keys_file = \"/etc/align/gh.json\"\n\
             [notifications]\nsmtp_url = \"smtps://u:hunter2@smtp.example.com\"\n\
             smtp_from = \"security@example.com\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(
            c.secret_scanning.github_keys_file,
            Some(PathBuf::from("/etc/align/gh.json"))
        );
        assert_eq!(c.notifications.smtp_from, "security@example.com");
        assert!(!format!("{c:?}").contains("hunter2"));

        let c = Config::load(
            None,
            env(&[
                ("ALIGN_SECRET_SCANNING_GITHUB_KEYS_FILE", "/tmp/gh.json"),
                ("ALIGN_NOTIFICATIONS_SMTP_URL", "smtp://127.0.0.1:2525"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.secret_scanning.github_keys_file,
            Some(PathBuf::from("/tmp/gh.json"))
        );
        assert_eq!(
            c.notifications.smtp_url.as_deref(),
            Some("smtp://127.0.0.1:2525")
        );

        for (name, value) in [
            (
                "ALIGN_NOTIFICATIONS_SMTP_URL",
                "http://u:hunter2@example.com",
            ),
            ("ALIGN_NOTIFICATIONS_SMTP_FROM", "not an address"),
        ] {
            let e = Config::load(None, env(&[(name, value)]), &Overrides::default()).unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{e}");
            assert!(e.to_string().contains("notifications."), "{e}");
        }
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("align.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[ratelimit]\nper_minute = 100\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("ALIGN_RATELIMIT_PER_MINUTE", "50"),
                ("ALIGN_DATA_DIR", "/tmp/x"),
            ]),
            &Overrides {
                listen: Some("127.0.0.1:9001".parse().unwrap()),
                data_dir: None,
            },
        )
        .unwrap();
        assert_eq!(c.rate_limit_per_minute, 50);
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn connection_settings_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("align.toml");
        std::fs::write(
            &file,
            "[limits]\nidle_timeout_secs = 20\nmax_connections = 5000\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.idle_timeout, Duration::from_secs(20));
        assert_eq!(c.max_connections, Some(5000));
        let c = Config::load(
            Some(&file),
            env(&[
                ("ALIGN_LIMITS_IDLE_TIMEOUT_SECS", "5"),
                ("ALIGN_LIMITS_MAX_CONNECTIONS", "50"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!((c.idle_timeout.as_secs(), c.max_connections), (5, Some(50)));
        let c = Config::load(
            Some(&file),
            env(&[("ALIGN_LIMITS_MAX_CONNECTIONS", "")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.max_connections, None,
            "empty: sized to the descriptor limit"
        );
        for (name, value, key) in [
            (
                "ALIGN_LIMITS_IDLE_TIMEOUT_SECS",
                "0",
                "limits.idle_timeout_secs",
            ),
            (
                "ALIGN_LIMITS_MAX_CONNECTIONS",
                "0",
                "limits.max_connections",
            ),
            (
                "ALIGN_LIMITS_MAX_CONNECTIONS",
                "many",
                "ALIGN_LIMITS_MAX_CONNECTIONS",
            ),
        ] {
            let e = Config::load(None, env(&[(name, value)]), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn bad_settings_are_refused_with_the_key_named() {
        let e = Config::load(
            None,
            env(&[("ALIGN_RATELIMIT_PER_MINUTE", "lots")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("ALIGN_RATELIMIT_PER_MINUTE"), "{e}");
        let e = Config::load(
            None,
            env(&[("ALIGN_DATABASE_URL", "mysql://x")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("database.url"), "{e}");
        let e = Config::load(
            None,
            env(&[("ALIGN_DATABASE_URL", "postgres://u:s3cret@db:port/align")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("database.url"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let c = Config::load(
            None,
            env(&[("ALIGN_DATABASE_URL", "postgres://u:s3cret@db/align")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.database,
            Database::Postgres("postgres://u:s3cret@db/align".into())
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("align.toml");
        std::fs::write(&file, "nonsense = 1\n").unwrap();
        assert!(Config::load(Some(&file), env(&[]), &Overrides::default()).is_err());
    }

    #[test]
    fn redis_settings_from_file_and_env_never_show_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("align.toml");
        std::fs::write(
            &file,
            "[ratelimit]\nredis_url = \"redis://:s3cret@127.0.0.1:6379/2\"\nredis_failure = \"closed\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        let url = c.redis.url.as_ref().unwrap();
        assert_eq!(url.expose(), "redis://:s3cret@127.0.0.1:6379/2");
        assert_eq!(c.redis.failure, RedisFailure::Closed);
        assert_eq!(c.redis.prefix, "align:rl:");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("127.0.0.1:6379"), "{shown}");

        let c = Config::load(
            Some(&file),
            env(&[
                ("ALIGN_RATELIMIT_REDIS_URL", ""),
                ("ALIGN_RATELIMIT_REDIS_FAILURE", "open"),
                ("ALIGN_RATELIMIT_REDIS_PREFIX", "staging:"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.redis.url, None);
        assert_eq!(c.redis.failure, RedisFailure::Open);
        assert_eq!(c.redis.prefix, "staging:");

        for (name, value, hint) in [
            ("ALIGN_RATELIMIT_REDIS_URL", "rediss://:s3cret@h/", "TLS"),
            ("ALIGN_RATELIMIT_REDIS_URL", "http://:s3cret@h/", "redis://"),
            ("ALIGN_RATELIMIT_REDIS_URL", "s3cret", "redis://"),
            (
                "ALIGN_RATELIMIT_REDIS_FAILURE",
                "sometimes",
                "open or closed",
            ),
        ] {
            let e = Config::load(None, env(&[(name, value)]), &Overrides::default()).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(hint), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn the_endpoint_cap_comes_from_file_and_env() {
        assert_eq!(
            Config::default().webhooks.max_endpoints_per_organization,
            100
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("align.toml");
        std::fs::write(&file, "[webhooks]\nmax_endpoints_per_organization = 7\n").unwrap();
        let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.webhooks.max_endpoints_per_organization, 7);
        let c = Config::load(
            Some(&file),
            env(&[("ALIGN_WEBHOOKS_MAX_ENDPOINTS_PER_ORGANIZATION", "12")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.webhooks.max_endpoints_per_organization, 12);
        let e = Config::load(
            None,
            env(&[("ALIGN_WEBHOOKS_MAX_ENDPOINTS_PER_ORGANIZATION", "many")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("ALIGN_WEBHOOKS_MAX_ENDPOINTS_PER_ORGANIZATION"),
            "{e}"
        );
    }

    #[test]
    fn webhook_settings_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("align.toml");
        std::fs::write(
            &file,
            "[webhooks]\nretry_schedule = [1, 2]\nallow_private_targets = true\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert!(c.webhooks.allow_private_targets);
        assert_eq!(c.webhooks.retry_schedule.delays().len(), 2);
        let c = Config::load(
            Some(&file),
            env(&[
                ("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "0"),
                ("ALIGN_WEBHOOKS_RETRY_SCHEDULE", "5,300,1800"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(!c.webhooks.allow_private_targets);
        assert_eq!(
            c.webhooks.retry_schedule.delays(),
            [5, 300, 1800].map(Duration::from_secs)
        );
        let e = Config::load(
            None,
            env(&[("ALIGN_WEBHOOKS_RETRY_SCHEDULE", "soon")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("ALIGN_WEBHOOKS_RETRY_SCHEDULE"),
            "{e}"
        );
        let e = Config::load(
            None,
            env(&[("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "maybe")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("ALLOW_PRIVATE"), "{e}");
    }

    #[test]
    fn http_targets_for_live_endpoints_are_a_development_setting_off_by_default() {
        let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert!(!c.webhooks.allow_http_targets);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("align.toml");
        std::fs::write(
            &file,
            "[webhooks]\nallow_private_targets = true\nallow_http_targets = true\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert!(c.webhooks.allow_http_targets);
        let c = Config::load(
            Some(&file),
            env(&[("ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS", "false")]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(!c.webhooks.allow_http_targets);
        // Local receivers are private destinations: the setting alone is refused, by name.
        let e = Config::load(
            None,
            env(&[("ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS", "1")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("webhooks.allow_http_targets"), "{e}");
        assert!(e.to_string().contains("allow_private_targets"), "{e}");
        let c = Config::load(
            None,
            env(&[
                ("ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS", "1"),
                ("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "1"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(c.webhooks.allow_http_targets);
        let e = Config::load(
            None,
            env(&[("ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS", "maybe")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("ALLOW_HTTP"), "{e}");
    }

    #[test]
    fn the_secrets_key_file_is_in_the_data_directory_unless_set() {
        let c = Config::load(
            None,
            env(&[("ALIGN_DATA_DIR", "/srv/align")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.secrets_key_path(),
            PathBuf::from("/srv/align/secrets-key")
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("align.toml");
        std::fs::write(&file, "[secrets]\nkey_file = \"/etc/align/key\"\n").unwrap();
        let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.secrets_key_path(), PathBuf::from("/etc/align/key"));
        let c = Config::load(
            Some(&file),
            env(&[("ALIGN_SECRETS_KEY_FILE", "/run/secrets/align")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.secrets_key_path(), PathBuf::from("/run/secrets/align"));
    }

    #[test]
    fn console_settings_from_file_and_env() {
        let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert!(c.console.enabled);
        assert_eq!(c.console.pbkdf2_iterations, 600_000);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("align.toml");
        std::fs::write(
            &file,
            "[console]\nenabled = false\npbkdf2_iterations = 200000\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert!(!c.console.enabled);
        assert_eq!(c.console.pbkdf2_iterations, 200_000);
        let c = Config::load(
            Some(&file),
            env(&[
                ("ALIGN_CONSOLE_ENABLED", "1"),
                ("ALIGN_CONSOLE_PBKDF2_ITERATIONS", "100000"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(c.console.enabled);
        assert_eq!(c.console.pbkdf2_iterations, 100_000);
        let e = Config::load(
            None,
            env(&[("ALIGN_CONSOLE_PBKDF2_ITERATIONS", "1000")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("console.pbkdf2_iterations"), "{e}");
        let c = Config::load(
            None,
            env(&[("ALIGN_CONSOLE_ORIGIN", "HTTPS://Align.Example.com/")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.console.origin.as_deref(),
            Some("https://align.example.com")
        );
        for bad in [
            "align.example.com",
            "ftp://x",
            "https://x/console",
            "https://u:p@x",
        ] {
            let e = Config::load(
                None,
                env(&[("ALIGN_CONSOLE_ORIGIN", bad)]),
                &Overrides::default(),
            )
            .unwrap_err();
            assert!(e.to_string().contains("console.origin"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_anchor_interval_from_file_and_env() {
        let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.audit_anchor_interval, Duration::from_secs(60));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("align.toml");
        std::fs::write(&file, "[audit]\nanchor_interval_secs = 300\n").unwrap();
        let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.audit_anchor_interval, Duration::from_secs(300));
        let c = Config::load(
            Some(&file),
            env(&[("ALIGN_AUDIT_ANCHOR_INTERVAL_SECS", "5")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.audit_anchor_interval, Duration::from_secs(5));
        for bad in ["0", "soon"] {
            let e = Config::load(
                None,
                env(&[("ALIGN_AUDIT_ANCHOR_INTERVAL_SECS", bad)]),
                &Overrides::default(),
            )
            .unwrap_err();
            let text = e.to_string().to_lowercase();
            assert!(text.contains("anchor_interval"), "{bad}: {e}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
        ))]

        /// Any file text and any values for our variables load or fail with a typed error
        /// that names a setting; nothing panics.
        #[test]
        fn hostile_settings_never_panic(
            text in proptest::prelude::prop_oneof![
                proptest::prelude::any::<String>(),
                "(listen|data_dir|\\[ratelimit\\]|\\[webhooks\\]|per_minute|retry_schedule) ?= ?[\"0-9a-z:.\\[\\], ]{0,30}\n{0,2}",
            ],
            name in proptest::sample::select(vec![
                "ALIGN_LISTEN", "ALIGN_RATELIMIT_PER_MINUTE", "ALIGN_LIMITS_MAX_BODY_BYTES",
                "ALIGN_WEBHOOKS_RETRY_SCHEDULE", "ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS",
                "ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS",
                "ALIGN_RATELIMIT_QUOTA_PER_DAY", "ALIGN_DATABASE_URL", "ALIGN_TLS_CERT_FILE",
                "ALIGN_LIMITS_IDLE_TIMEOUT_SECS", "ALIGN_LIMITS_MAX_CONNECTIONS",
            ]),
            value in proptest::prelude::any::<String>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("align.toml");
            std::fs::write(&file, &text).unwrap();
            match Config::load(Some(&file), env(&[(name, &value)]), &Overrides::default()) {
                Ok(_) | Err(Error::ConfigSyntax { .. } | Error::Setting { .. }) => {}
                Err(other) => proptest::prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}
