//! `align webhooks …`: endpoints and deliveries on the data directory ([`endpoints`]) or, with
//! `--api-url`, on a running server ([`api`]), and the receiver tools `verify` and `listen`.

mod api;
mod endpoints;
mod listen;
mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Subcommand;

use crate::common::Area;
use crate::events;
use crate::output::Failure;

/// Its help text is the doc comment of `Command::Webhooks` in `main.rs`.
pub(crate) type Args = Area<Action>;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
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
pub(crate) enum EndpointAction {
    /// Register an endpoint; its signing secret is printed once, to stdout.
    ///
    /// The URL must pass the delivery policy: https for live endpoints (http allowed for
    /// sandbox), no credentials or secret-looking query parameters, and no private or
    /// loopback destination unless ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS=1 (with
    /// ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS=1 too, a live endpoint may use http to a local receiver).
    ///
    /// Example: align webhooks endpoints add --url https://hooks.acme.test/align --events api_key.revoked,api_key.created
    Add(endpoints::AddArgs),
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

/// `align webhooks …`: receiver tools, and endpoint commands on the data directory or, with
/// --api-url, on a running server.
pub(crate) async fn run(Args { common, action }: Args) -> Result<(), Failure> {
    let common = &common;
    let o = common.out();
    let local = matches!(action, Action::Verify { .. } | Action::Listen { .. });
    if common.api_url.is_some() && !local {
        if common.org.is_some() {
            return Err(Failure::usage(
                "--org applies to the data directory; over --api-url the key decides the \
                 organisation",
            ));
        }
        return api::run(&common.api("this command")?, action, &o).await;
    }
    let hooks = || async {
        Ok::<_, Failure>(endpoints::Hooks::new(
            common.open().await?,
            common.org.as_deref(),
        ))
    };
    match action {
        Action::Verify {
            secret_file,
            headers,
            payload,
            now,
        } => {
            let args = verify::VerifyArgs {
                secret_file,
                headers,
                payload,
                now,
            };
            verify::verify(&args, &o)
        }
        Action::Listen {
            listen,
            secret_file,
        } => {
            let args = listen::ListenArgs {
                listen,
                secret_file,
            };
            listen::listen(&args, &o).await
        }
        Action::Endpoints { action } => {
            let h = hooks().await?;
            match action {
                EndpointAction::Add(args) => endpoints::add(&h, args, &o).await,
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
        Action::Deliveries { endpoint, limit } => {
            endpoints::deliveries(&hooks().await?, &endpoint, limit, &o).await
        }
        Action::Attempts {
            delivery,
            limit,
            cursor,
        } => endpoints::attempts(&hooks().await?, &delivery, limit, cursor.as_deref(), &o).await,
        Action::Retry { delivery } => endpoints::retry(&hooks().await?, &delivery, &o).await,
        Action::Recover { endpoint, since } => {
            let since = events::parse_time("--since", &since)?;
            endpoints::recover(&hooks().await?, &endpoint, since, &o).await
        }
    }
}
