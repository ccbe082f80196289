//! The `align` binary: argument parsing and output only; the work lives in the library crates.
//!
//! Exit codes: 0 success, 1 failure, 2 usage error, 3 not found, 4 an integrity check failed
//! (audit chain broken, webhook signature invalid).

// The doc comments on the argument types are the `--help` text, whose examples show URLs as a
// user types them; rustdoc's link syntax would print angle brackets there.
#![allow(rustdoc::bare_urls)]

mod client;
mod config_print;
mod endpoints;
mod events;
mod hooks_api;
mod listen;
mod ops;
mod output;
mod privacy;
mod progress;
mod scan;
mod tail;
mod verify;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use align_server::{Backends, Bootstrap, Config, Database, Overrides, Server};
use clap::{Args, Parser, Subcommand};

use crate::ops::{DataDir, KeyArgs};
use crate::output::{Failure, Out};

/// Align: API keys, rate limits, webhooks and audit logs for your developer API.
#[derive(Debug, Parser)]
#[command(name = "align", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every data-directory command takes.
#[derive(Debug, Args)]
struct Common {
    /// Data directory (env ALIGN_DATA_DIR; default ./align-data).
    #[arg(
        long,
        value_name = "DIR",
        env = "ALIGN_DATA_DIR",
        default_value = "./align-data",
        global = true
    )]
    data_dir: PathBuf,
    /// The database several instances share, as the server's `database.url` (env
    /// ALIGN_DATABASE_URL): postgres://user:password@host/db; empty for DIR/align.db.
    #[arg(
        long,
        value_name = "URL",
        env = "ALIGN_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    database_url: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Organisation id (needed only when the database holds several).
    #[arg(long, value_name = "ID", global = true)]
    org: Option<String>,
    /// Talk to a running server instead of the data directory (env ALIGN_API_URL), with the
    /// key in ALIGN_API_KEY or --key-file.
    #[arg(long, value_name = "URL", env = "ALIGN_API_URL", global = true)]
    api_url: Option<String>,
    /// File holding the API key for --api-url (instead of ALIGN_API_KEY).
    #[arg(long, value_name = "FILE", global = true)]
    key_file: Option<PathBuf>,
    /// The key file that seals webhook signing secrets, as the server's `secrets.key_file`
    /// (env ALIGN_SECRETS_KEY_FILE; default DIR/secrets-key).
    #[arg(
        long,
        value_name = "FILE",
        env = "ALIGN_SECRETS_KEY_FILE",
        global = true
    )]
    secrets_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the reference API server.
    ///
    /// On first start with an empty data directory it creates DIR/align.db, an organisation
    /// and its admin user, and writes the first admin key to DIR/bootstrap-admin-key (0600).
    ///
    /// Example: align serve --data-dir ./align-data --listen 127.0.0.1:8080
    Serve {
        /// Data directory (env ALIGN_DATA_DIR; default ./align-data).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address to listen on (env ALIGN_LISTEN; default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// TOML configuration file (env ALIGN_CONFIG).
        #[arg(long, value_name = "FILE", env = "ALIGN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Create the database, an organisation, its admin and the bootstrap key, then exit.
    ///
    /// Example: align init --data-dir ./align-data
    Init {
        #[command(flatten)]
        common: Common,
    },
    /// The calling key, from a running server. Example: ALIGN_API_KEY=… align me --api-url http://127.0.0.1:8080
    Me {
        #[command(flatten)]
        common: Common,
    },
    /// Organisations. Example: align orgs list
    Orgs {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: ListOnly,
    },
    /// Users, their roles and console passwords. Example: align users create --email dev@acme.test --role engineer
    Users {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: UserAction,
    },
    /// Projects. Example: align projects create --name billing
    Projects {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: ProjectAction,
    },
    /// API keys. Example: align keys create --name ci-read --permissions keys:read
    Keys {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Leaked keys (API only): reports and the organisation's leak policy.
    Leaks {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: LeakAction,
    },
    /// A consistent copy of the database, safe while the server runs.
    ///
    /// The copy is created 0600 and must not exist yet; the request log's segment files are
    /// copied beside it, to FILE-requests/ (0700, files 0600). Its webhook signing secrets are
    /// sealed: keep a copy of the secrets key file (DIR/secrets-key) apart from the backups.
    ///
    /// Example: align backup --data-dir ./align-data --to align-backup.db
    Backup {
        #[command(flatten)]
        common: Common,
        /// The backup file to create.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Replace the database with a backup. Stop the server first.
    ///
    /// The backup's webhook signing secrets open only with the secrets key file they were
    /// sealed with: restore that file too (DIR/secrets-key, or secrets.key_file).
    ///
    /// Example: align restore --data-dir ./align-data --from align-backup.db --force
    Restore {
        #[command(flatten)]
        common: Common,
        /// The backup file to restore.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Replace an existing database.
        #[arg(long)]
        force: bool,
    },
    /// Webhook endpoints and deliveries (in the data directory, or on a running server with
    /// --api-url), and receiver tools.
    ///
    /// Example: align webhooks endpoints add --url https://hooks.acme.test/align --events api_key.*
    Webhooks {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: WebhookAction,
    },
    /// The server's event log (what webhooks deliver), from a running server.
    ///
    /// Example: ALIGN_API_KEY=… align events list --api-url http://127.0.0.1:8080 --type api_key.revoked
    Events {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: EventAction,
    },
    /// Print shell completions. Example: align completions bash > /etc/bash_completion.d/align
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The audit and request logs. Example: align audit verify --stream audit
    Audit {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Privacy requests: everything Align holds about a person or a key, exported or erased
    /// (in the data directory, or on a running server with --api-url and a key holding
    /// privacy:read / privacy:write).
    ///
    /// Example: align privacy export dev@acme.test --to dev.jsonl
    Privacy {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: PrivacyAction,
    },
    /// Retention: remove what every store keeps past its retention.* setting (the server also
    /// does it every hour).
    ///
    /// Example: align retention run --json
    Retention {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: RetentionAction,
    },
    /// The server's settings: each one's effective value and where it came from.
    ///
    /// Example: align config print --config align.toml
    Config {
        #[command(subcommand)]
        action: config_print::ConfigAction,
    },
    /// The key file that seals webhook signing secrets in the database.
    ///
    /// Example: align secrets rotate-key --data-dir ./align-data
    Secrets {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        action: SecretsAction,
    },
}

#[derive(Debug, Subcommand)]
enum PrivacyAction {
    /// Everything Align holds about a person (user id or e-mail: their user record, the keys
    /// they created, every audit and request-log record of them or their keys) or about one
    /// key (its id), as JSON Lines on stdout or into a new file (created 0600).
    ///
    /// Example: align privacy export dev@acme.test --to dev.jsonl
    Export {
        /// A user id or e-mail, or an API key id.
        subject: String,
        /// Write to this new file instead of stdout.
        #[arg(long, value_name = "FILE")]
        to: Option<PathBuf>,
    },
    /// Erase a person's (or a key's) personal values everywhere Align holds them: IPs and
    /// user agents in the audit and request logs (the chains still verify), their e-mail and
    /// name in webhook messages, attempts and their user record; their sessions end.
    ///
    /// Example: align privacy erase dev@acme.test
    Erase {
        /// A user id or e-mail, or an API key id.
        subject: String,
    },
}

#[derive(Debug, Subcommand)]
enum RetentionAction {
    /// Remove, in every store, what is older than its retention (request log 30 days, audit
    /// log 400, webhook deliveries and attempts 30, events 30, sessions at expiry; see
    /// retention.* in docs/operations.md), and print what was removed per store. The audit
    /// chain still verifies. With PostgreSQL, one run at a time across instances.
    ///
    /// Example: align retention run --as-of 2027-06-01T00:00:00Z --json
    Run {
        /// Measure ages from this RFC 3339 time instead of now (to see what a later run
        /// removes, or to catch up).
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
        /// TOML configuration file for the retention.* settings (env ALIGN_CONFIG).
        #[arg(long, value_name = "FILE", env = "ALIGN_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum SecretsAction {
    /// Seal every webhook signing secret under a new key, in one transaction, and drop the
    /// old key from the key file. Safe while the server runs on this machine: it reads the key
    /// file again before it seals and when it meets the new key. With several instances, each
    /// holding its own copy of the key file, stop them, rotate, copy the new file to each,
    /// start them (docs/operations.md). Prints the new key's id.
    ///
    /// Keep a copy of the old key file while you keep backups made before the rotation: they
    /// open only with it.
    ///
    /// Example: align secrets rotate-key --data-dir ./align-data
    RotateKey,
}

#[derive(Debug, Subcommand)]
enum ListOnly {
    /// List them. Example: align orgs list --json
    List,
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Add a user. Example: printf '%s\n' "$PW" | align users create --email dev@acme.test --role engineer --password-stdin
    Create {
        #[arg(long)]
        email: String,
        /// admin, engineer or viewer.
        #[arg(long)]
        role: String,
        /// Also set the user's console password, read as one line from stdin (at least 12
        /// characters; never echoed or logged).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's console password (at least 12 characters), read as one line from stdin
    /// with --password-stdin, or else from the environment variable ALIGN_USER_PASSWORD.
    /// The password is never echoed or logged; the user's console sessions end.
    ///
    /// Example: printf '%s\n' "$PW" | align users set-password admin@localhost --password-stdin
    SetPassword {
        /// The user's e-mail or id.
        user: String,
        /// Read the password as one line from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users. Example: align users list --json
    List,
    /// Change a user's role (their keys follow at once). Example: align users set-role dev@acme.test viewer
    SetRole {
        /// The user's e-mail or id.
        user: String,
        /// admin, engineer or viewer.
        role: String,
    },
    /// Correct a user's e-mail or name, or change their role (also with --api-url).
    ///
    /// Example: align users update dev@acme.test --name "Dana Dev" --email dana@acme.test
    Update {
        /// The user's e-mail or id.
        user: String,
        /// The corrected e-mail.
        #[arg(long)]
        email: Option<String>,
        /// The corrected name (empty to remove it).
        #[arg(long)]
        name: Option<String>,
        /// admin, engineer or viewer.
        #[arg(long)]
        role: Option<String>,
    },
    /// Delete a user: their sessions end, their personal data is erased everywhere, and the
    /// keys they created are revoked unless --transfer-keys-to hands them to another admin.
    /// The organisation's last admin cannot be deleted. Also with --api-url.
    ///
    /// Example: align users delete dev@acme.test --transfer-keys-to admin@acme.test
    Delete {
        /// The user's e-mail or id.
        user: String,
        /// Another admin (e-mail or id) who takes over the user's keys.
        #[arg(long, value_name = "USER")]
        transfer_keys_to: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectAction {
    /// Add a project. Example: align projects create --name billing
    Create {
        #[arg(long)]
        name: String,
    },
    /// List projects. Example: align projects list --json
    List,
}

#[derive(Debug, Subcommand)]
enum KeyAction {
    /// Mint a key; the token is printed once, to stdout. Example: align keys create --name ci-read
    Create {
        #[arg(long)]
        name: String,
        /// Scope the key to this project (default: the whole organisation).
        #[arg(long, value_name = "PROJECT_ID")]
        project: Option<String>,
        /// Comma-separated permissions, e.g. keys:read,webhooks:read (default: all the scope allows).
        #[arg(long)]
        permissions: Option<String>,
        /// Mint a sandbox (akt_) key instead of a live one.
        #[arg(long)]
        sandbox: bool,
        /// The creating user, by e-mail or id (default: the first admin).
        #[arg(long)]
        user: Option<String>,
        /// Your own id for the key's owner (a customer, a user), at most 256 characters.
        #[arg(long, value_name = "ID")]
        owner: Option<String>,
        /// Your own data about the key: a JSON object of at most 4 KiB, e.g. '{"plan":"pro"}'.
        #[arg(long, value_name = "JSON")]
        meta: Option<String>,
    },
    /// List keys (never tokens). Example: align keys list --json
    List,
    /// Show one key. Example: align keys show 6f1c…
    Show { id: String },
    /// Revoke a key for good; a running server refuses it within 250 ms. Example: align keys revoke 6f1c…
    Revoke { id: String },
    /// Mint a successor; the old key works for --grace seconds more. Example: align keys rotate 6f1c… --grace 3600
    Rotate {
        id: String,
        #[arg(long, default_value_t = 86_400)]
        grace: u64,
    },
    /// Report a key as compromised (API only): it is revoked at once, and the security
    /// contact is told. Example: align keys report-compromise 6f1c… --reason "pasted in chat" --api-url URL
    ReportCompromise {
        id: String,
        /// What happened (never paste the key itself; it is masked if you do).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Find Align API keys (valid checksums only) in files and directories, honouring
    /// .gitignore and skipping binary files. Prints `path:line prefix` (never the secret);
    /// exits 1 when it found any, 0 when none: usable as a pre-commit hook.
    ///
    /// Example: align keys scan . --json
    Scan {
        /// Files or directories.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum LeakAction {
    /// Leak reports (GitHub secret scanning, report-compromise): where, when, what was done.
    /// Example: align leaks list --api-url URL
    List,
    /// Show or set what happens to a leaked key. Example: align leaks policy --live notify --api-url URL
    Policy {
        /// For live keys: revoke (default) or notify.
        #[arg(long, value_parser = ["revoke", "notify"])]
        live: Option<String>,
        /// For sandbox keys: notify (default) or revoke.
        #[arg(long, value_parser = ["revoke", "notify"])]
        sandbox: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum WebhookAction {
    /// Check a delivery's signature, as a receiver would; exits 4 if it does not verify.
    ///
    /// Example: curl -D h.txt … ; align webhooks verify --secret-file s.txt --headers h.txt --payload body.json
    Verify {
        /// File holding the endpoint's whsec_ secret (or whpk_ key); or set ALIGN_WEBHOOK_SECRET.
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// File of `Name: value` header lines (webhook-id, webhook-timestamp, webhook-signature).
        #[arg(long, value_name = "FILE")]
        headers: PathBuf,
        /// File holding the exact body, or `-` for stdin.
        #[arg(long, value_name = "FILE")]
        payload: PathBuf,
        /// Check as of this Unix time (for recorded deliveries); default now.
        #[arg(long, value_name = "UNIX_SECONDS")]
        now: Option<i64>,
    },
    /// Run a local receiver: verify each delivery's signature, de-duplicate on webhook-id,
    /// and print every new event (type, id, timestamp, data) to stdout, one line each (JSON
    /// Lines with --json). Answers 204 to new deliveries, 200 to duplicates, 400 to malformed
    /// ones and 401 to bad signatures or stale timestamps. Runs until Ctrl-C.
    ///
    /// The secret comes from --secret-file or ALIGN_WEBHOOK_SECRET (one key per line, to
    /// accept both while a secret rotates), never from a flag value.
    ///
    /// Example: align webhooks listen --listen 127.0.0.1:8787 --secret-file endpoint-secret
    Listen {
        /// Address to listen on (port 0 picks a free one; the address is printed on stderr).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        /// File holding the endpoint's whsec_ secret (or whpk_ key); or set ALIGN_WEBHOOK_SECRET.
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
    },
    /// Webhook endpoints. Example: align webhooks endpoints list --json
    Endpoints {
        #[command(subcommand)]
        action: EndpointAction,
    },
    /// An endpoint's deliveries, newest first, with their last attempt.
    ///
    /// Example: align webhooks deliveries ep_6f1c… --json
    Deliveries {
        /// The endpoint's id (ep_…).
        endpoint: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// A delivery's attempts, newest first, a page at a time (what each answered, or what
    /// went wrong); the next page's cursor goes to stderr (with --json, in `nextCursor`).
    ///
    /// Example: align webhooks attempts dlv_0b7e… --limit 5
    Attempts {
        /// The delivery's id (dlv_…).
        delivery: String,
        /// At most this many (1 to 100).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Where to continue: the cursor the previous page printed.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Make a delivery due again now, whatever its status; the server's dispatcher sends it.
    ///
    /// Example: align webhooks retry dlv_0b7e…
    Retry {
        /// The delivery's id (dlv_…).
        delivery: String,
    },
    /// Make every failed delivery of an endpoint since a time due again (after an outage of
    /// the receiver); prints how many.
    ///
    /// Example: align webhooks recover ep_6f1c… --since 2026-05-14T10:00:00Z   (or --since 6h)
    Recover {
        /// The endpoint's id (ep_…).
        endpoint: String,
        /// RFC 3339 time, or an age such as 30m, 12h, 7d.
        #[arg(long, value_name = "TIME")]
        since: String,
    },
}

#[derive(Debug, Subcommand)]
enum EventAction {
    /// Events, oldest first (at most --limit); with --follow, then each new one as it is
    /// stored, until Ctrl-C. Needs --api-url and a key with webhooks:read.
    ///
    /// --json prints a JSON array, or with --follow one JSON object per line.
    ///
    /// Example: align events list --api-url http://127.0.0.1:8080 --type api_key.* --since 1h --json
    List {
        /// Only this event type, or a family such as api_key.*.
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        /// live or sandbox (default: the key's environment; a live key may ask for sandbox).
        #[arg(long)]
        environment: Option<String>,
        /// Only events stored at or after this RFC 3339 time or age (30m, 12h, 7d). With
        /// --follow the default is now.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only events stored before this RFC 3339 time or age.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// At most this many (without --follow).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Keep running and print events as they are stored.
        #[arg(short = 'f', long)]
        follow: bool,
        /// With --follow, how often to ask for new events.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        interval_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
enum EndpointAction {
    /// Register an endpoint; its signing secret is printed once, to stdout.
    ///
    /// The URL must pass the delivery policy: https for live endpoints (http allowed for
    /// sandbox), no credentials or secret-looking query parameters, and no private or
    /// loopback destination unless ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS=1 (with
    /// ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS=1 too, a live endpoint may use http to a local receiver).
    ///
    /// Example: align webhooks endpoints add --url https://hooks.acme.test/align --events api_key.revoked,api_key.created
    Add {
        /// Where deliveries go.
        #[arg(long)]
        url: String,
        /// Only this project's events (default: every event of the organisation).
        #[arg(long, value_name = "PROJECT_ID")]
        project: Option<String>,
        /// live or sandbox: which events the endpoint receives (default: live on the data
        /// directory, the calling key's environment over --api-url).
        #[arg(long)]
        environment: Option<String>,
        /// Comma-separated event types; `family.*` matches a family (default: every type).
        #[arg(long)]
        events: Option<String>,
    },
    /// List endpoints (never their secrets). Example: align webhooks endpoints list --json
    List,
    /// Show one endpoint (never its secret). Example: align webhooks endpoints show ep_6f1c…
    Show {
        /// The endpoint's id (ep_…).
        id: String,
    },
    /// Change an endpoint's URL, event types, rate cap, or enable / disable it (needs
    /// --api-url: the server checks the URL against its delivery policy).
    ///
    /// Example: align webhooks endpoints update ep_6f1c… --events api_key.* --enable --api-url http://127.0.0.1:8080
    Update {
        /// The endpoint's id (ep_…).
        id: String,
        /// A new URL.
        #[arg(long)]
        url: Option<String>,
        /// Comma-separated event types (`family.*` for a family, `*` for every type).
        #[arg(long)]
        events: Option<String>,
        /// Enable it again (for instance after the dispatcher disabled it).
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Stop deliveries to it; events keep being recorded.
        #[arg(long)]
        disable: bool,
        /// At most this many deliveries per second to it.
        #[arg(long, value_name = "N")]
        max_per_second: Option<u32>,
    },
    /// Send the endpoint a signed `webhook.test` event now (needs --api-url).
    ///
    /// Example: align webhooks endpoints test ep_6f1c… --api-url http://127.0.0.1:8080
    Test {
        /// The endpoint's id (ep_…).
        id: String,
    },
    /// Delete an endpoint with its deliveries and their attempts (the events stay in the
    /// event log). To pause an endpoint instead, keep it and let the dispatcher disable it.
    ///
    /// Example: align webhooks endpoints remove ep_6f1c…
    Remove {
        /// The endpoint's id (ep_…).
        id: String,
    },
    /// Give an endpoint a new signing secret, printed once.
    ///
    /// The old secret keeps signing every delivery alongside the new one for the grace
    /// period (default 24 hours), so receivers can switch without a gap.
    ///
    /// Example: align webhooks endpoints rotate-secret ep_6f1c… --grace-seconds 3600
    RotateSecret {
        /// The endpoint's id (ep_…).
        id: String,
        #[arg(long, value_name = "N", default_value_t = 86_400)]
        grace_seconds: u64,
    },
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Check a log's hash chain, and that it still reaches its latest anchor (the highest
    /// sequence anchored in DIR/audit-anchors.jsonl and in --anchor FILE), so newest records
    /// removed with the head rewritten are caught; exits 4 naming the first broken record.
    ///
    /// Example: align audit verify --stream audit --anchor /mnt/offsite/audit-anchors.jsonl
    Verify {
        /// audit or request.
        #[arg(long, default_value = "audit")]
        stream: String,
        /// Also check against the anchors in FILE, kept off this machine: a copy of
        /// DIR/audit-anchors.jsonl, or audit.checkpoint events one JSON object a line (as
        /// webhooks deliver them or `align events list --json` prints them).
        #[arg(long, value_name = "FILE")]
        anchor: Option<PathBuf>,
    },
    /// Show recent records, newest first. Example: align audit query --action api_key.revoked
    Query {
        /// audit or request.
        #[arg(long, default_value = "audit")]
        stream: String,
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Delete records older than the retention period (request 30 days, audit 400), leaving a
    /// signed checkpoint so the log still verifies. Example: align audit purge --stream request
    Purge {
        /// request, audit or both.
        #[arg(long, default_value = "both")]
        stream: String,
        /// Instead of the policy's retention.
        #[arg(long, value_name = "DAYS")]
        older_than_days: Option<i64>,
    },
    /// Coarsen IPs (/24, /48) and drop user agents of records older than the policy's age
    /// (request 7 days, audit 90); the log still verifies. Example: align audit anonymize
    Anonymize {
        /// request, audit or both.
        #[arg(long, default_value = "both")]
        stream: String,
        /// Instead of the policy's age.
        #[arg(long, value_name = "DAYS")]
        older_than_days: Option<i64>,
    },
    /// The last records of a log, oldest first; with --follow, then every new record as the
    /// server (or any other process) commits it, until interrupted (Ctrl-C).
    ///
    /// With --json each record is one JSON line (the export view: values, no hashes).
    ///
    /// Example: align audit tail --stream request -n 50 --follow --json
    Tail {
        /// audit or request.
        #[arg(long, default_value = "audit")]
        stream: String,
        /// How many existing records to print first.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 20)]
        lines: usize,
        /// Keep running and print records as they are appended.
        #[arg(short = 'f', long)]
        follow: bool,
        /// With --follow, how often to look for new records.
        #[arg(long, value_name = "MS", default_value_t = 500)]
        interval_ms: u64,
    },
    /// One data subject's records (as subject or actor) as JSON Lines, for access requests,
    /// on stdout or into a new file (created 0600: it holds personal data).
    /// Example: align audit export --subject 3f2a… --to subject.jsonl
    Export {
        /// A user id or API key id.
        #[arg(long)]
        subject: String,
        /// Write to this new file instead of stdout.
        #[arg(long, value_name = "FILE")]
        to: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ALIGN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("align: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("align: {e}");
            e.exit_code()
        }
    }
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Serve {
            data_dir,
            listen,
            config,
        } => Ok(serve(config, Overrides { listen, data_dir }).await?),
        Command::Config { action } => config_print::run(action),
        Command::Init { common } => init(&common).await,
        Command::Orgs {
            common,
            action: ListOnly::List,
        } => {
            let d = data_dir(&common).await?;
            ops::orgs_list(&d, &out(&common)).await
        }
        Command::Users { common, action } if common.api_url.is_some() => {
            let (a, o) = (api(&common, "align users")?, out(&common));
            match action {
                UserAction::List => {
                    let v = a.call("GET", "/api/v1/users", None).await?;
                    client::print(&v, &["id", "email", "name", "role"], &o)
                }
                UserAction::Update {
                    user,
                    email,
                    name,
                    role,
                } => {
                    let change = privacy::UserUpdate { email, name, role };
                    privacy::update_api(&a, &user, change, &o).await
                }
                UserAction::Delete {
                    user,
                    transfer_keys_to,
                } => privacy::delete_api(&a, &user, transfer_keys_to.as_deref(), &o).await,
                _ => Err(Failure::usage(
                    "over --api-url, align users supports list, update and delete; the others \
                     work on the data directory",
                )),
            }
        }
        Command::Privacy { common, action } => {
            let o = out(&common);
            if common.api_url.is_some() {
                let a = api(&common, "align privacy")?;
                return match action {
                    PrivacyAction::Export { subject, to } => {
                        privacy::export_api(&a, &subject, to.as_deref()).await
                    }
                    PrivacyAction::Erase { subject } => privacy::erase_api(&a, &subject, &o).await,
                };
            }
            let d = data_dir(&common).await?;
            let org = common.org.as_deref();
            match action {
                PrivacyAction::Export { subject, to } => {
                    privacy::export_local(&d, org, &subject, to.as_deref()).await
                }
                PrivacyAction::Erase { subject } => {
                    privacy::erase_local(&d, org, &subject, &o).await
                }
            }
        }
        Command::Retention {
            common,
            action: RetentionAction::Run { as_of, config },
        } => {
            if common.api_url.is_some() {
                return Err(Failure::usage(
                    "align retention run works on the data directory (the server runs it by itself)",
                ));
            }
            let as_of = as_of
                .map(|t| events::parse_time("--as-of", &t))
                .transpose()?;
            let settings =
                Config::load(config.as_deref(), std::env::vars(), &Overrides::default())?;
            let d = data_dir(&common).await?;
            privacy::retention_run(
                &d,
                &database(&common)?,
                &settings.retention,
                as_of,
                &out(&common),
            )
            .await
        }
        Command::Users { common, action } => {
            // Read before anything else, so a refused password costs no database work.
            let password = match &action {
                UserAction::Create {
                    password_stdin: true,
                    ..
                }
                | UserAction::SetPassword {
                    password_stdin: true,
                    ..
                } => Some(ops::read_password_line(std::io::stdin().lock())?),
                UserAction::SetPassword { .. } => Some(ops::password_from_env()?),
                _ => None,
            };
            let (d, o, org) = (
                data_dir(&common).await?,
                out(&common),
                common.org.as_deref(),
            );
            match action {
                UserAction::Create { email, role, .. } => {
                    ops::users_create(&d, org, &email, &role, password, &o).await
                }
                UserAction::SetPassword { user, .. } => match password {
                    Some(p) => ops::users_set_password(&d, org, &user, p, &o).await,
                    None => Err(Failure::usage("no password given")),
                },
                UserAction::List => ops::users_list(&d, org, &o).await,
                UserAction::SetRole { user, role } => {
                    ops::users_set_role(&d, org, &user, &role, &o).await
                }
                UserAction::Update {
                    user,
                    email,
                    name,
                    role,
                } => {
                    let change = privacy::UserUpdate { email, name, role };
                    privacy::update_local(&d, org, &user, change, &o).await
                }
                UserAction::Delete {
                    user,
                    transfer_keys_to,
                } => privacy::delete_local(&d, org, &user, transfer_keys_to.as_deref(), &o).await,
            }
        }
        Command::Projects { common, action } => {
            let (d, o, org) = (
                data_dir(&common).await?,
                out(&common),
                common.org.as_deref(),
            );
            match action {
                ProjectAction::Create { name } => ops::projects_create(&d, org, &name, &o).await,
                ProjectAction::List => ops::projects_list(&d, org, &o).await,
            }
        }
        Command::Me { common } => {
            let v = api(&common, "align me")?
                .call("GET", "/api/v1/me", None)
                .await?;
            out(&common).object(&v)
        }
        Command::Keys {
            common,
            action: KeyAction::Scan { paths },
        } => scan::run(&paths, common.json),
        Command::Keys { common, action } if common.api_url.is_some() => {
            keys_over_api(&common, action).await
        }
        Command::Keys { common, action } => {
            let (d, o, org) = (
                data_dir(&common).await?,
                out(&common),
                common.org.as_deref(),
            );
            match action {
                KeyAction::Create {
                    name,
                    project,
                    permissions,
                    sandbox,
                    user,
                    owner,
                    meta,
                } => {
                    let args = KeyArgs {
                        org,
                        name: &name,
                        project: project.as_deref(),
                        permissions: permissions.as_deref(),
                        sandbox,
                        user: user.as_deref(),
                        owner: owner.as_deref(),
                        meta: meta.as_deref(),
                    };
                    ops::keys_create(&d, args, &o).await
                }
                KeyAction::List => ops::keys_list(&d, org, &o).await,
                KeyAction::Show { id } => ops::keys_show(&d, &id, &o).await,
                KeyAction::Revoke { id } => ops::keys_revoke(&d, &id, &o).await,
                KeyAction::Rotate { id, grace } => ops::keys_rotate(&d, &id, grace, &o).await,
                KeyAction::ReportCompromise { .. } => Err(Failure::usage(
                    "report-compromise goes through the server: add --api-url (and ALIGN_API_KEY)",
                )),
                KeyAction::Scan { .. } => Ok(()),
            }
        }
        Command::Webhooks { common, action } => webhooks_command(&common, action).await,
        Command::Leaks { common, action } => leaks_command(&common, action).await,
        Command::Events {
            common,
            action:
                EventAction::List {
                    event_type,
                    environment,
                    since,
                    until,
                    limit,
                    follow,
                    interval_ms,
                },
        } => {
            let time =
                |flag: &str, t: Option<String>| t.map(|t| events::parse_time(flag, &t)).transpose();
            let args = events::EventArgs {
                event_type,
                environment,
                since: time("--since", since)?,
                until: time("--until", until)?,
                limit: limit.max(1),
                follow,
                interval: std::time::Duration::from_millis(interval_ms.max(50)),
            };
            events::list(&api(&common, "align events")?, &args, &out(&common)).await
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "align", &mut std::io::stdout());
            Ok(())
        }
        Command::Backup { common, to } => {
            sqlite_only(&common, "align backup")?;
            ops::backup(&common.data_dir, &to, &out(&common)).await
        }
        Command::Restore {
            common,
            from,
            force,
        } => {
            sqlite_only(&common, "align restore")?;
            ops::restore(&common.data_dir, &from, force, &out(&common)).await
        }
        Command::Secrets {
            common,
            action: SecretsAction::RotateKey,
        } => ops::secrets_rotate_key(&data_dir(&common).await?, &out(&common)).await,
        Command::Audit { common, action } => {
            let (d, o) = (data_dir(&common).await?, out(&common));
            match action {
                AuditAction::Verify { stream, anchor } => {
                    verify::audit_verify(&d, &stream, anchor.as_deref(), &o).await
                }
                AuditAction::Export { subject, to } => {
                    ops::audit_export(&d, &subject, to.as_deref()).await
                }
                AuditAction::Purge {
                    stream,
                    older_than_days,
                } => ops::audit_privacy(&d, true, &stream, older_than_days, &o).await,
                AuditAction::Anonymize {
                    stream,
                    older_than_days,
                } => ops::audit_privacy(&d, false, &stream, older_than_days, &o).await,
                AuditAction::Query {
                    stream,
                    action,
                    limit,
                } => ops::audit_query(&d, &stream, action.as_deref(), limit, &o).await,
                AuditAction::Tail {
                    stream,
                    lines,
                    follow,
                    interval_ms,
                } => {
                    let args = tail::TailArgs {
                        stream: ops::stream(&stream)?,
                        lines,
                        follow,
                        interval: std::time::Duration::from_millis(interval_ms.max(10)),
                    };
                    tail::tail(&d, &args, &o).await
                }
            }
        }
    }
}

/// `align keys …` against a running server.
async fn keys_over_api(common: &Common, action: KeyAction) -> Result<(), Failure> {
    let api = api(common, "align keys")?;
    let o = out(common);
    let columns = [
        "apiKeyId",
        "keyPrefix",
        "keyName",
        "scope",
        "environment",
        "revokedAt",
        "lastUsedAt",
    ];
    let v = match action {
        KeyAction::Create {
            name,
            project,
            permissions,
            sandbox,
            user,
            owner,
            meta,
        } => {
            if user.is_some() {
                return Err(Failure::usage(
                    "--user applies to the data directory; the API mints as the calling key",
                ));
            }
            let mut body = serde_json::json!({
                "name": name,
                "scope": if project.is_some() { "project" } else { "organization" },
            });
            if let Some(p) = project {
                body["projectId"] = serde_json::json!(p);
            }
            if let Some(p) = permissions {
                body["permissions"] =
                    serde_json::json!(p.split(',').map(str::trim).collect::<Vec<_>>());
            }
            if sandbox {
                body["environment"] = serde_json::json!("sandbox");
            }
            if let Some(owner) = owner {
                body["ownerId"] = serde_json::json!(owner);
            }
            if let Some(meta) = meta {
                body["meta"] = serde_json::Value::Object(ops::parse_meta(&meta)?);
            }
            let v = api.call("POST", "/api/v1/keys", Some(body)).await?;
            return o.secret_object(&v, output::KEY_SHOWN_ONCE);
        }
        KeyAction::List => api.call("GET", "/api/v1/keys?limit=200", None).await?,
        KeyAction::Show { id } => api.call("GET", &format!("/api/v1/keys/{id}"), None).await?,
        KeyAction::Revoke { id } => {
            api.call("POST", &format!("/api/v1/keys/{id}/revoke"), None)
                .await?
        }
        KeyAction::Rotate { id, grace } => {
            let body = serde_json::json!({ "graceSeconds": grace });
            let v = api
                .call("POST", &format!("/api/v1/keys/{id}/rotate"), Some(body))
                .await?;
            return o.secret_object(&v, output::KEY_SHOWN_ONCE);
        }
        KeyAction::ReportCompromise { id, reason } => {
            let body = match reason {
                Some(r) => serde_json::json!({ "reason": r }),
                None => serde_json::json!({}),
            };
            let v = api
                .call(
                    "POST",
                    &format!("/api/v1/keys/{id}/report-compromise"),
                    Some(body),
                )
                .await?;
            return o.object(&v);
        }
        KeyAction::Scan { paths } => return scan::run(&paths, common.json),
    };
    client::print(&v, &columns, &o)
}

/// `align leaks …` (API only): the organisation's leak reports and its leak policy.
async fn leaks_command(common: &Common, action: LeakAction) -> Result<(), Failure> {
    let api = api(common, "align leaks")?;
    let o = out(common);
    match action {
        LeakAction::List => {
            let v = api.call("GET", "/api/v1/leaks?limit=200", None).await?;
            let columns = [
                "reportedAt",
                "keyPrefix",
                "environment",
                "reporter",
                "action",
                "url",
            ];
            client::print(&v, &columns, &o)
        }
        LeakAction::Policy { live, sandbox } => {
            let v = if live.is_none() && sandbox.is_none() {
                api.call("GET", "/api/v1/organization", None).await?
            } else {
                let mut body = serde_json::json!({});
                if let Some(a) = live {
                    body["leakedKeyAction"] = serde_json::json!(a);
                }
                if let Some(a) = sandbox {
                    body["leakedSandboxKeyAction"] = serde_json::json!(a);
                }
                api.call("PATCH", "/api/v1/organization", Some(body))
                    .await?
            };
            o.object(&serde_json::json!({
                "leakedKeyAction": v.get("leakedKeyAction"),
                "leakedSandboxKeyAction": v.get("leakedSandboxKeyAction"),
                "securityContact": v.get("securityContact"),
            }))
        }
    }
}

/// The API client for a command that needs a running server.
fn api(common: &Common, command: &str) -> Result<client::Api, Failure> {
    let url = common.api_url.as_deref().ok_or_else(|| {
        Failure::usage(format!(
            "{command} works against a running server: pass --api-url URL (or set ALIGN_API_URL)"
        ))
    })?;
    client::Api::new(url, common.key_file.as_deref())
}

/// `align webhooks …`: receiver tools, and endpoint commands on the data directory or, with
/// --api-url, on a running server.
async fn webhooks_command(common: &Common, action: WebhookAction) -> Result<(), Failure> {
    let o = out(common);
    let local = matches!(
        action,
        WebhookAction::Verify { .. } | WebhookAction::Listen { .. }
    );
    if common.api_url.is_some() && !local {
        if common.org.is_some() {
            return Err(Failure::usage(
                "--org applies to the data directory; over --api-url the key decides the \
                 organisation",
            ));
        }
        return hooks_api::run(&api(common, "this command")?, action, &o).await;
    }
    let hooks = || async {
        Ok::<_, Failure>(endpoints::Hooks::new(
            data_dir(common).await?,
            common.org.as_deref(),
        ))
    };
    match action {
        WebhookAction::Verify {
            secret_file,
            headers,
            payload,
            now,
        } => {
            let args = webhooks::VerifyArgs {
                secret_file,
                headers,
                payload,
                now,
            };
            webhooks::verify(&args, &o)
        }
        WebhookAction::Listen {
            listen,
            secret_file,
        } => {
            let args = listen::ListenArgs {
                listen,
                secret_file,
            };
            listen::listen(&args, &o).await
        }
        WebhookAction::Endpoints { action } => {
            let h = hooks().await?;
            match action {
                EndpointAction::Add {
                    url,
                    project,
                    environment,
                    events,
                } => {
                    let args = endpoints::AddArgs {
                        project: project.as_deref(),
                        url: &url,
                        environment: environment.as_deref().unwrap_or("live"),
                        events: events.as_deref(),
                    };
                    endpoints::add(&h, args, &o).await
                }
                EndpointAction::List => endpoints::list(&h, &o).await,
                EndpointAction::Show { id } => endpoints::show(&h, &id, &o).await,
                EndpointAction::Update { .. } => Err(Failure::usage(
                    "webhooks endpoints update works against a running server (it checks the \
                     URL with the server's policy): pass --api-url URL (or set ALIGN_API_URL)",
                )),
                EndpointAction::Test { .. } => Err(Failure::usage(
                    "webhooks endpoints test works against a running server: pass --api-url \
                     URL (or set ALIGN_API_URL)",
                )),
                EndpointAction::Remove { id } => endpoints::remove(&h, &id, &o).await,
                EndpointAction::RotateSecret { id, grace_seconds } => {
                    endpoints::rotate_secret(&h, &id, grace_seconds, &o).await
                }
            }
        }
        WebhookAction::Deliveries { endpoint, limit } => {
            endpoints::deliveries(&hooks().await?, &endpoint, limit, &o).await
        }
        WebhookAction::Attempts {
            delivery,
            limit,
            cursor,
        } => endpoints::attempts(&hooks().await?, &delivery, limit, cursor.as_deref(), &o).await,
        WebhookAction::Retry { delivery } => endpoints::retry(&hooks().await?, &delivery, &o).await,
        WebhookAction::Recover { endpoint, since } => {
            let since = events::parse_time("--since", &since)?;
            endpoints::recover(&hooks().await?, &endpoint, since, &o).await
        }
    }
}

/// The database `--database-url` (or ALIGN_DATABASE_URL) names: the data directory's SQLite
/// file when absent or empty.
fn database(common: &Common) -> Result<Database, Failure> {
    Ok(common
        .database_url
        .as_deref()
        .unwrap_or_default()
        .parse::<Database>()?)
}

/// The stores of the data directory and database `common` names.
async fn data_dir(common: &Common) -> Result<DataDir, Failure> {
    DataDir::open(
        &common.data_dir,
        &database(common)?,
        &secrets_key_file(common),
    )
    .await
}

/// The secrets key file: `--secrets-key-file` (or ALIGN_SECRETS_KEY_FILE), else
/// DIR/secrets-key.
fn secrets_key_file(common: &Common) -> PathBuf {
    align_server::config::secrets_key_path(&common.data_dir, common.secrets_key_file.as_deref())
}

/// Refuses a command that works on the SQLite file only when the deployment is PostgreSQL.
fn sqlite_only(common: &Common, command: &str) -> Result<(), Failure> {
    match database(common)? {
        Database::Sqlite => Ok(()),
        Database::Postgres(_) => Err(Failure::usage(format!(
            "{command} copies the SQLite file DIR/align.db; for PostgreSQL use its own tools \
             (pg_dump, pg_restore)"
        ))),
    }
}

fn out(common: &Common) -> Out {
    Out { json: common.json }
}

async fn init(common: &Common) -> Result<(), Failure> {
    let flags = Overrides {
        listen: None,
        data_dir: Some(common.data_dir.clone()),
    };
    let mut config = Config::load(None, std::env::vars(), &flags)?;
    config.database = database(common)?;
    config.secrets_key_file.clone_from(&common.secrets_key_file);
    let place = match &config.database {
        Database::Sqlite => config.database_path().display().to_string(),
        Database::Postgres(_) => "the PostgreSQL database".to_owned(),
    };
    // The server's own back-ends: every table (keys, outbox, audit) is created or migrated.
    let backends = Backends::from_config(&config).await?;
    let keys = align_keys::KeyManager::new(
        std::sync::Arc::clone(&backends.keys),
        std::sync::Arc::new(align_keys::Sha256Hasher),
    );
    let made = align_server::bootstrap(&config, &keys).await;
    backends.audit.close().await?;
    match made? {
        Bootstrap::Created { key_prefix } => eprintln!(
            "set up {place} with an organisation and its admin; the admin key {key_prefix}… is in {}; \
             webhook signing secrets are sealed with the key in {}: keep a copy of it apart from \
             the database and its backups",
            config.bootstrap_key_path().display(),
            config.secrets_key_path().display()
        ),
        Bootstrap::Existing => eprintln!("{place} is already initialised"),
    }
    Ok(())
}

async fn serve(config_file: Option<PathBuf>, flags: Overrides) -> Result<(), align_server::Error> {
    let config = Config::load(config_file.as_deref(), std::env::vars(), &flags)?;
    let key_file = config.bootstrap_key_path();
    let server = Server::start(config).await?;
    if let Bootstrap::Created { key_prefix } = server.bootstrap() {
        tracing::info!(
            key_prefix = %key_prefix,
            path = %key_file.display(),
            "created the first organisation and its admin key; the key is in the file (shown nowhere else)"
        );
    }
    let addr = server.local_addr()?;
    tracing::info!(%addr, "listening");
    server.run(align_server::shutdown_signal()).await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command and subcommand, with its path (`align webhooks endpoints add`).
    fn commands(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            out.push((p.clone(), sub.clone()));
            commands(sub, p, out);
        }
    }

    #[test]
    fn every_command_has_an_example_in_its_help() {
        let mut all = Vec::new();
        commands(&super::Cli::command(), "align".into(), &mut all);
        assert!(all.len() > 30);
        for (path, mut cmd) in all {
            if path.ends_with(" help") {
                continue;
            }
            let help = cmd.render_long_help().to_string();
            assert!(help.contains("Example"), "{path} --help has no example");
        }
    }
}
