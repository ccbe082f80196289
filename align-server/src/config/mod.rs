//! Settings: every default in one place, read from a TOML file, then `ALIGN_*` environment
//! variables, then command-line flags (each later source wins).
//!
//! Every setting is declared once below (`settings!`): its field, type, default, doc, key and
//! kind. Its environment variable is `ALIGN_` + the key path upper-cased, dots as underscores
//! (`ratelimit.per_minute` → `ALIGN_RATELIMIT_PER_MINUTE`). The declaration also gives
//! `align config print` ([`Config::load_explained`]), the settings table of
//! `docs/operations.md` ([`settings_table`]) and the start-up warning for an `ALIGN_*` variable
//! that is no setting ([`unknown_variable`]).

mod declare;
mod kinds;
mod names;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use crate::error::Error;
use declare::{must, not_zero, not_zero_in, settings};
use kinds::{
    Bool, DatabaseUrl, Failure, File, Hours, Maybe, MaybeFile, Millis, Number, Origin, Parsed,
    Redis, Schedule, Secret, SecretUrl, Secs, Text,
};

pub use declare::Setting;
pub use names::{OTHER_VARIABLES, settings_table, unknown_variable};

/// Cached keys unused for this long are dropped from memory by the periodic sweep (the next
/// use reads the store once).
pub const KEY_CACHE_IDLE: Duration = Duration::from_secs(300);
/// How often idle rate-limit state and idle cached keys are swept out.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// One rule names these settings together.
const PER_KEY_LIMITS: &str = "limits.max_concurrent_per_key / ratelimit.quota_*";
const LIMITS_POSITIVE: &str = "body limit, timeout and flush interval must be positive";
const WEBHOOKS_POSITIVE: &str = "attempt timeout, concurrency and poll interval must be positive";
const RETENTION_POSITIVE: &str = "retention days and retention.interval_secs must be at least 1";

settings! {
    /// The server's settings. See `docs/operations.md` for each one.
    #[derive(Clone, PartialEq, Eq)]
    pub struct Config {
        /// address to listen on
        #[setting("listen", Parsed<SocketAddr>, flag = "`--listen`")]
        pub listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)),

        /// database, bootstrap key, secrets key file; `0700`, files `0600` (see
        /// [Data at rest](#data-at-rest))
        #[setting("data_dir", File, flag = "`--data-dir`")]
        pub data_dir: PathBuf = PathBuf::from("./align-data"),

        /// empty or `sqlite:`: `DIR/align.db`; `postgres://user:password@host:5432/db`: keys,
        /// the webhook outbox and the audit and request logs in PostgreSQL, shared by several
        /// instances (see [Several instances](#several-instances)); the password never appears
        /// in logs or errors
        #[setting("database.url", DatabaseUrl, default = "(embedded SQLite)",
            flag = "`--database-url` (operator commands)")]
        pub database: Database = Database::Sqlite,

        /// requests per key per sliding 60 s window, 1 to 4,294,967,295 (a key's own
        /// `rateLimitPerMinute` likewise); every key costs 48 bytes of limiter state, and a key
        /// above a quarter of its limit or above 65,535 in the window 3.0 KiB more while it
        /// stays there
        #[setting("ratelimit.per_minute", Number<u32>, check = not_zero("must be at least 1"))]
        pub rate_limit_per_minute: u32 = 600,

        /// requests per key per UTC day; beyond it `429 quota_exceeded` (`Retry-After`: until
        /// midnight UTC); counted in Redis with `ratelimit.redis_url`, per instance without
        #[setting("ratelimit.quota_per_day", Maybe<u64>, default = "off",
            check = not_zero_in(PER_KEY_LIMITS, "must be at least 1"))]
        pub quota_per_day: Option<u64> = None,

        /// requests per key per UTC calendar month (likewise)
        #[setting("ratelimit.quota_per_month", Maybe<u64>, default = "off",
            check = not_zero_in(PER_KEY_LIMITS, "must be at least 1"))]
        pub quota_per_month: Option<u64> = None,

        /// larger bodies get `413 payload_too_large`
        #[setting("limits.max_body_bytes", Number<usize>,
            check = not_zero_in("limits", LIMITS_POSITIVE))]
        pub max_body_bytes: usize = 1024 * 1024,

        /// slower handlers get `504 timeout` (a database write already handed to the writer
        /// may still complete)
        #[setting("limits.request_timeout_secs", Secs,
            check = not_zero_in("limits", LIMITS_POSITIVE))]
        pub request_timeout: Duration = Duration::from_secs(30),

        /// a connection with no request in flight for this long is closed: one that never sent
        /// a byte, an HTTP/2 connection after its preface or between streams, a keep-alive
        /// connection between requests (see [Connections](#connections)); at least 1
        #[setting("limits.idle_timeout_secs", Secs, check = not_zero("must be at least 1"))]
        pub idle_timeout: Duration = Duration::from_secs(60),

        /// most client connections open at once; at the cap each new connection closes the
        /// longest-idle one (see [Connections](#connections)); empty in the environment means
        /// the default
        #[setting("limits.max_connections", Maybe<usize>,
            default = "(the descriptor limit less 256, at least half of it; 10000 where it cannot be read)",
            check = not_zero(
                "must be at least 1 (leave it out to size it to the descriptor limit)"
            ))]
        pub max_connections: Option<usize> = None,

        /// more requests in flight for one key get `429 concurrency_limit`
        #[setting("limits.max_concurrent_per_key", Number<u64>,
            check = not_zero_in(PER_KEY_LIMITS, "must be at least 1"))]
        pub max_concurrent_per_key: u64 = 32,

        /// rejections (`401`, `429`) per client and second with a request-log entry of their
        /// own; the rest of that second are counted in one summary entry (see
        /// [Audit and request logs](#audit-and-request-logs)); `0` gives every rejection its
        /// own entry
        #[setting("limits.fold_rejections_after", Number<u32>)]
        pub fold_rejections_after: u32 = 100,

        /// PEM certificate chain; with `tls.key_file` the server speaks HTTPS only (HTTP/2 and
        /// HTTP/1.1 by ALPN; rustls, ring provider)
        #[setting("tls.cert_file", MaybeFile, default = "off")]
        pub tls_cert_file: Option<PathBuf> = None,

        /// PEM private key (PKCS#8, PKCS#1 or SEC1)
        #[setting("tls.key_file", MaybeFile, default = "off")]
        pub tls_key_file: Option<PathBuf> = None,

        /// how often coalesced `lastUsedAt` times are written
        #[setting("keys.last_used_flush_ms", Millis,
            check = not_zero_in("limits", LIMITS_POSITIVE))]
        pub last_used_flush: Duration = Duration::from_secs(1),

        /// most keys kept in the verification cache (about 0.6 KB each); keys unused for 5
        /// minutes are also dropped (swept every 30 s, with idle rate-limit state) and read
        /// from the store again on their next use
        #[setting("keys.cache_capacity", Number<usize>, check = not_zero("must be at least 1"))]
        pub key_cache_capacity: usize = 100_000,

        /// how often the heads of the audit and request logs are anchored when they moved:
        /// signed with `DIR/audit-anchor-key`, appended to `DIR/audit-anchors.jsonl` and sent
        /// as `audit.checkpoint` events (see [Anchors](#anchors)); also at start and at a clean
        /// shutdown. Records newer than the last anchor are the window in which a cut-short log
        /// goes unnoticed; at least 1, anchoring cannot be turned off
        #[setting("audit.anchor_interval_secs", Secs,
            check = not_zero("must be at least 1: anchoring cannot be turned off"))]
        pub audit_anchor_interval: Duration = Duration::from_secs(60),

        /// the key file that seals webhook signing secrets in the database (see
        /// [Data at rest](#data-at-rest)); created `0600` with a fresh key on first start when
        /// missing and the database needs no other key; keep it on a different disk or in a
        /// mounted secret to keep it apart from the database
        #[setting("secrets.key_file", MaybeFile, default = "`DIR/secrets-key`",
            flag = "`--secrets-key-file` (operator commands)")]
        pub secrets_key_file: Option<PathBuf> = None,

        groups {
            /// Shared rate-limit state in Redis (`ratelimit.redis_*`; off by default: in
            /// memory).
            pub redis: RedisSettings,
            /// Webhook delivery settings (`webhooks.*`).
            pub webhooks: WebhookSettings,
            /// The developer console under `/console` (`console.*`).
            pub console: ConsoleSettings,
            /// Who may read `GET /metrics` (`metrics.*`).
            pub metrics: MetricsSettings,
            /// How long personal and operational records are kept (`retention.*`).
            pub retention: RetentionSettings,
            /// Leaked-key reports from secret scanners (`secret_scanning.*`).
            pub secret_scanning: SecretScanningSettings,
            /// Security notices by e-mail (`notifications.*`).
            pub notifications: NotificationSettings,
            /// The logs' disk budget (`logs.*`; see `docs/operations.md`, "Disk budget").
            pub logs: LogSettings,
        }
    }
}

settings! {
    /// Rate limits shared through Redis by several instances (`ratelimit.redis_*`; see
    /// `docs/operations.md`).
    #[derive(Clone, PartialEq, Eq)]
    pub struct RedisSettings {
        /// `redis://[:password@]host[:port][/db]` (or `redis+unix:///path`): rate limits,
        /// quotas and concurrency limits shared by every instance using this Redis (see
        /// [Several instances](#several-instances)); empty keeps them in memory, per instance.
        /// `rediss://` (TLS) is refused: not built in
        #[setting("ratelimit.redis_url", Redis, default = "(in memory)")]
        pub url: Option<RedisUrl> = None,

        /// while Redis does not answer: `open` limits each key on this instance's own
        /// in-memory limiters (a warning is logged once per outage); `closed` answers
        /// key-authenticated requests `503 unavailable` with `Retry-After: 1`
        #[setting("ratelimit.redis_failure", Failure)]
        pub failure: RedisFailure = RedisFailure::Open,

        /// put before every Redis key the server writes, so several deployments can share one
        /// Redis
        #[setting("ratelimit.redis_prefix", Text)]
        pub prefix: String = "align:rl:".to_owned(),
    }
}

settings! {
    /// Webhook settings (`webhooks.*`; see `docs/operations.md`).
    #[derive(Clone, PartialEq, Eq)]
    pub struct WebhookSettings {
        /// let endpoints point at private, loopback, link-local, CGNAT and other non-public
        /// addresses (tests on loopback; never on a server that reaches an internal network)
        #[setting("webhooks.allow_private_targets", Bool)]
        pub allow_private_targets: bool = false,

        /// **development only**: let *live* endpoints use plain `http://` when the receiver is
        /// local (a loopback or private IP address, or `localhost`), so a developer's receiver
        /// gets live events without turning everything into sandbox data; needs
        /// `webhooks.allow_private_targets = true` (refused at start-up otherwise). Live `http`
        /// to any other host stays refused; sandbox endpoints may use `http` either way. Never
        /// on a production server
        #[setting("webhooks.allow_http_targets", Bool)]
        pub allow_http_targets: bool = false,

        /// seconds to wait after each failed attempt (±20 % jitter); in the file a string or an
        /// array of integers
        #[setting("webhooks.retry_schedule", Schedule)]
        pub retry_schedule: align_webhooks::RetrySchedule = align_webhooks::RetrySchedule::default(),

        /// time allowed for one attempt (connect, send, response)
        #[setting("webhooks.attempt_timeout_secs", Secs,
            check = not_zero_in("webhooks", WEBHOOKS_POSITIVE))]
        pub attempt_timeout: Duration = Duration::from_secs(15),

        /// deliveries in flight at once
        #[setting("webhooks.concurrency", Number<usize>,
            check = not_zero_in("webhooks", WEBHOOKS_POSITIVE))]
        pub concurrency: usize = 32,

        /// how often the idle dispatcher looks for due deliveries (the delay before a new event
        /// goes out)
        #[setting("webhooks.poll_interval_ms", Millis,
            check = not_zero_in("webhooks", WEBHOOKS_POSITIVE))]
        pub poll_interval: Duration = Duration::from_millis(250),

        /// an endpoint whose attempts all failed for this long is disabled, and a
        /// `webhook_endpoint.disabled` event says so
        #[setting("webhooks.disable_after_hours", Hours)]
        pub disable_after: Duration = Duration::from_secs(120 * 3600),

        /// run the dispatcher inside `align serve`; turn it off when another process delivers
        /// from the same database
        #[setting("webhooks.dispatcher", Bool)]
        pub dispatcher: bool = true,

        /// webhook endpoints one organisation may have (all its projects and environments
        /// together); creating one more answers `409 conflict`, from the API and the console
        /// alike
        #[setting("webhooks.max_endpoints_per_organization", Number<usize>)]
        pub max_endpoints_per_organization: usize = 100,
    }
}

settings! {
    /// Console settings (`console.*`; see `docs/operations.md`).
    #[derive(Clone, PartialEq, Eq)]
    pub struct ConsoleSettings {
        /// serve the developer console under `/console` (see [Console](#console)); off,
        /// `/console` answers `404`
        #[setting("console.enabled", Bool)]
        pub enabled: bool = true,

        /// PBKDF2-HMAC-SHA256 iterations for passwords set from now on (`align users
        /// set-password` reads the variable too) and for the decoy hash unknown e-mails are
        /// checked against; 100000 to 100000000. Existing hashes keep their own count until the
        /// password is set again
        #[setting("console.pbkdf2_iterations", Number<u32>, check = must(
            |n: &u32| {
                (align_keys::MIN_PBKDF2_ITERATIONS..=align_keys::MAX_PBKDF2_ITERATIONS)
                    .contains(n)
            },
            "must be between 100000 and 100000000",
        ))]
        pub pbkdf2_iterations: u32 = align_keys::DEFAULT_PBKDF2_ITERATIONS,

        /// the origin browsers reach the console at, when it is not what the server sees, e.g.
        /// `https://align.example.com` behind a TLS-terminating proxy: form posts must come
        /// from it, and an `https://` origin makes the console's cookies `Secure`
        #[setting("console.origin", Origin, default = "(none)")]
        pub origin: Option<String> = None,
    }
}

settings! {
    /// Metrics settings (`metrics.*`; see `docs/operations.md`).
    #[derive(Clone, PartialEq, Eq)]
    pub struct MetricsSettings {
        /// bearer token for `GET /metrics` (a Prometheus scraper); at least 32 printable
        /// characters; see [Metrics](#metrics)
        #[setting("metrics.token", Secret, default = "(none)", check = must(
            |t: &Option<String>| {
                !t.as_ref().is_some_and(|t| {
                    t.chars().count() < 32 || t.chars().any(|c| !c.is_ascii_graphic())
                })
            },
            "must be at least 32 printable ASCII characters without spaces",
        ))]
        pub token: Option<String> = None,
    }
}

settings! {
    /// How long each store keeps its records (`retention.*`; DESIGN §9, `docs/privacy.md`).
    /// Nothing is kept forever: the server removes what is older every `interval` (jittered),
    /// and `align retention run` does the same on demand. Sessions go when they expire.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct RetentionSettings {
        /// days the request log is kept (see [Retention](#retention-and-anonymisation)); at
        /// least 1
        #[setting("retention.request_log_days", Number<u32>,
            check = not_zero_in("retention.*", RETENTION_POSITIVE))]
        pub request_log_days: u32 = 30,

        /// days the audit log is kept; removal takes whole prefixes of the chain and leaves a
        /// signed checkpoint, so `align audit verify` stays green
        #[setting("retention.audit_log_days", Number<u32>,
            check = not_zero_in("retention.*", RETENTION_POSITIVE))]
        pub audit_log_days: u32 = 400,

        /// days finished webhook deliveries and their attempts (with the receivers' responses)
        /// are kept
        #[setting("retention.webhook_days", Number<u32>,
            check = not_zero_in("retention.*", RETENTION_POSITIVE))]
        pub webhook_days: u32 = 30,

        /// days events (webhook messages, `GET /events`) are kept, with whatever deliveries are
        /// left of them
        #[setting("retention.events_days", Number<u32>,
            check = not_zero_in("retention.*", RETENTION_POSITIVE))]
        pub events_days: u32 = 30,

        /// run retention inside `align serve`; expired console sessions go with it
        #[setting("retention.enabled", Bool)]
        pub enabled: bool = true,

        /// how often it runs, plus up to a tenth at random so instances drift apart; with
        /// PostgreSQL one instance at a time (an advisory lock)
        #[setting("retention.interval_secs", Secs,
            check = not_zero_in("retention.*", RETENTION_POSITIVE))]
        pub interval: Duration = Duration::from_secs(3600),
    }
}

settings! {
    /// Secret-scanning intake settings (`secret_scanning.*`; see `docs/leaked-keys.md`).
    #[derive(Clone, PartialEq, Eq)]
    pub struct SecretScanningSettings {
        /// GitHub's secret-scanning public keys in GitHub's JSON (`{"public_keys":[…]}`);
        /// checked at start when it exists, read again on every report; see
        /// [leaked-keys.md](leaked-keys.md)
        #[setting("secret_scanning.github_keys_file", MaybeFile,
            default = "(none: every GitHub report is `401 invalid_signature`)")]
        pub github_keys_file: Option<PathBuf> = None,
    }
}

settings! {
    /// E-mail settings for security notices (`notifications.*`; see `docs/leaked-keys.md`).
    #[derive(Clone, PartialEq, Eq)]
    pub struct NotificationSettings {
        /// where security notices (leaked keys) are sent: `smtps://user:pass@host`,
        /// `smtp://host?tls=required`, or `smtp://127.0.0.1:25` for a local relay; never logged
        #[setting("notifications.smtp_url", SecretUrl, default = "(none: no e-mail)", check = must(
            |u: &Option<String>| {
                u.as_deref()
                    .is_none_or(|u| u.starts_with("smtp://") || u.starts_with("smtps://"))
            },
            "must be an smtp:// or smtps:// URL",
        ))]
        pub smtp_url: Option<String> = None,

        /// the `From:` of security notices
        #[setting("notifications.smtp_from", Text, check = must(
            |from: &String| from.parse::<lettre::message::Mailbox>().is_ok(),
            "must be an e-mail address such as align@example.com",
        ))]
        pub smtp_from: String = "align@localhost".into(),
    }
}

settings! {
    /// The logs' disk budget (`logs.*`; see `docs/operations.md`, "Disk budget").
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct LogSettings {
        /// most bytes the data directory may hold before the oldest request-log entries are
        /// purged (see [Disk budget](#disk-budget)); at least 16 MiB
        #[setting("logs.disk_budget_bytes", Number<u64>, default = "`10737418240` (10 GiB)",
            check = must(|b: &u64| *b >= 16 << 20, "must be at least 16 MiB (16777216)"))]
        pub disk_budget_bytes: u64 = 10 << 30,

        /// below this many free bytes on the data directory's file system the disk is low: the
        /// reserve file is deleted, the oldest request-log entries purged, `/healthz` says
        /// `degraded`
        #[setting("logs.low_disk_free_bytes", Number<u64>, default = "`536870912` (512 MiB)")]
        pub low_disk_free_bytes: u64 = 512 << 20,

        /// the reserve file kept for writes that must not fail; `0` keeps none
        #[setting("logs.disk_reserve_bytes", Number<u64>, default = "`33554432` (32 MiB)")]
        pub disk_reserve_bytes: u64 = 32 << 20,
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
        kinds::parse_database_url(url)
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

/// Command-line overrides (`align serve --listen … --data-dir …`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

/// Where a setting's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Nothing set it.
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This command-line flag.
    Flag(&'static str),
}

impl std::fmt::Display for Source {
    /// `default`, `file PATH`, `env ALIGN_X` or `flag --x`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(name) => write!(f, "env {name}"),
            Self::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// One setting's effective value and its source, as `align config print` shows them.
#[derive(Debug, Clone)]
pub struct Effective {
    /// The setting.
    pub setting: &'static Setting,
    /// The value as text, secrets masked (`***`); `None` when unset.
    pub value: Option<String>,
    /// Where the value came from.
    pub source: Source,
}

/// Every setting, in the order of `docs/operations.md`'s table: by section, each section
/// where its first setting is declared.
pub fn settings() -> &'static [&'static Setting] {
    static ALL: LazyLock<Vec<&'static Setting>> = LazyLock::new(|| {
        let mut all = Vec::new();
        Config::declared(&mut all);
        let section = |s: &Setting| s.key.split_once('.').map_or("", |(head, _)| head);
        let mut order: Vec<&str> = Vec::new();
        for s in &all {
            if !order.contains(&section(s)) {
                order.push(section(s));
            }
        }
        all.sort_by_key(|s| order.iter().position(|o| *o == section(s)));
        all
    });
    &ALL
}

/// The setting named `key` (`ratelimit.per_minute`).
fn setting(key: &str) -> Option<&'static Setting> {
    settings().iter().copied().find(|s| s.key == key)
}

impl Config {
    /// Loads defaults ← `file` (if given) ← `env` (pairs such as `std::env::vars()`) ← flags.
    /// An `ALIGN_*` variable that is no setting is logged as a warning naming the closest one.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Self, Error> {
        Self::load_explained(file, env, flags).map(|(config, _)| config)
    }

    /// [`Config::load`], with every setting's effective value (secrets masked) and source.
    pub fn load_explained(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<(Self, Vec<Effective>), Error> {
        let mut c = Self::default();
        let mut sources = HashMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigFile {
                path: path.to_owned(),
                source,
            })?;
            let table: toml::Table = toml::from_str(&text).map_err(|e| Error::ConfigSyntax {
                path: path.to_owned(),
                message: e.message().to_owned(),
            })?;
            c.apply_file(table, "", path, &mut sources)?;
        }
        let variables: Vec<(String, &'static Setting)> =
            settings().iter().map(|s| (s.env(), *s)).collect();
        for (name, value) in env {
            match variables.iter().find(|(env, _)| *env == name) {
                Some((_, s)) => {
                    if let Some(done) = c.set_text(s.key, &name, &value) {
                        done?;
                    }
                    sources.insert(s.key, Source::Env(name));
                }
                None => {
                    if let Some(warning) = unknown_variable(&name) {
                        tracing::warn!("{warning}");
                    }
                }
            }
        }
        if let Some(l) = flags.listen {
            c.listen = l;
            sources.insert("listen", Source::Flag("--listen"));
        }
        if let Some(d) = &flags.data_dir {
            c.data_dir.clone_from(d);
            sources.insert("data_dir", Source::Flag("--data-dir"));
        }
        c.validate()?;
        let effective = settings()
            .iter()
            .map(|s| Effective {
                setting: s,
                value: c.show(s.key).flatten(),
                source: sources.remove(s.key).unwrap_or(Source::Default),
            })
            .collect();
        Ok((c, effective))
    }

    /// Applies the file's `table` under `prefix`; an unknown key is refused, naming the
    /// closest known one.
    fn apply_file(
        &mut self,
        table: toml::Table,
        prefix: &str,
        file: &Path,
        sources: &mut HashMap<&'static str, Source>,
    ) -> Result<(), Error> {
        let refuse = |message: String| Error::ConfigSyntax {
            path: file.to_owned(),
            message,
        };
        for (name, value) in table {
            let key = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}.{name}")
            };
            if let Some(s) = setting(&key) {
                if let Some(done) = self.set_toml(s.key, value, file) {
                    done?;
                }
                sources.insert(s.key, Source::File(file.to_owned()));
            } else if settings().iter().any(|s| {
                s.key
                    .strip_prefix(key.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
            }) {
                match value {
                    toml::Value::Table(inner) => self.apply_file(inner, &key, file, sources)?,
                    _ => return Err(refuse(format!("{key}: expected a table ([{key}])"))),
                }
            } else {
                return Err(refuse(names::unknown_key(&key)));
            }
        }
        Ok(())
    }

    /// Every setting's declared check, then the rules between settings.
    fn validate(&self) -> Result<(), Error> {
        if self.webhooks.allow_http_targets && !self.webhooks.allow_private_targets {
            return Err(Error::Setting {
                key: "webhooks.allow_http_targets".into(),
                reason: "lets live endpoints use http only to a local receiver (loopback or private addresses), which also needs webhooks.allow_private_targets = true".into(),
            });
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(Error::Setting {
                key: "tls".into(),
                reason: "set both tls.cert_file and tls.key_file, or neither".into(),
            });
        }
        self.check()
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

#[cfg(test)]
mod tests;
