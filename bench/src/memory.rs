//! `align-loadbench memory`: resident memory of `align serve` after many distinct keys have
//! each made one request, then after the server's idle eviction has run.
//!
//! Valid keys: one key is minted through the API, then `--keys - 1` more rows are copied from
//! it straight into `keys_api_keys` in one SQLite transaction (each with its own id, prefix and
//! the SHA-256 of a freshly generated token), because minting a million keys one commit at a
//! time takes hours. The server is then restarted, so every key starts cold, exactly as if it
//! had been minted through the API. Invalid keys: well-formed tokens with valid checksums that
//! are not in the store (the negative cache).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use align_keys::KeyHasher;
use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::BoxError;
use crate::load;
use crate::proc::{self, Server};

/// Options of `align-loadbench memory`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// The `align` binary (default: next to this one).
    #[arg(long, value_name = "PATH")]
    pub(crate) align: Option<PathBuf>,
    /// Distinct keys, each making one request.
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    /// Which keys: `valid` (stored), `invalid` (well-formed, unknown) or `both` (one server
    /// each).
    #[arg(long, default_value = "both")]
    kind: String,
    /// Concurrent connections sending the requests.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds to keep sampling resident memory after the last request (eviction runs
    /// meanwhile).
    #[arg(long, default_value_t = 150)]
    settle: u64,
    /// `ALIGN_LOG` for the server.
    #[arg(long, default_value = "info")]
    server_log: String,
    /// Keep the data directory and server logs.
    #[arg(long)]
    keep: bool,
    /// Directory for the data and logs (default: a new one under the temp dir).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

/// Runs the memory measurement(s) and prints the figures.
pub(crate) async fn run(args: &Args, align: &Path) -> Result<(), BoxError> {
    let kinds: &[bool] = match args.kind.as_str() {
        "valid" => &[true],
        "invalid" => &[false],
        "both" => &[true, false],
        other => return Err(format!("--kind must be valid, invalid or both, not {other}").into()),
    };
    let dir = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("align-loadbench-mem-{}", std::process::id())),
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    println!("{}", crate::run::machine_description());
    let mut result = Ok(());
    for &valid in kinds {
        result = measure(args, align, &dir, valid).await;
        if result.is_err() {
            break;
        }
    }
    if args.keep {
        eprintln!("data and server logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn env(args: &Args) -> HashMap<String, String> {
    HashMap::from([("ALIGN_LOG".to_owned(), args.server_log.clone())])
}

async fn start(args: &Args, align: &Path, data: &Path, log: PathBuf) -> Result<Server, BoxError> {
    let addr = proc::free_addr()?;
    let argv = vec![
        "serve".to_owned(),
        "--data-dir".to_owned(),
        data.display().to_string(),
        "--listen".to_owned(),
        addr.to_string(),
    ];
    Server::start(align, &argv, &env(args), addr, log).await
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

async fn measure(args: &Args, align: &Path, dir: &Path, valid: bool) -> Result<(), BoxError> {
    let kind = if valid { "valid" } else { "invalid" };
    let data = dir.join(format!("data-{kind}"));
    let n = args.keys.max(1);
    let tokens = if valid {
        eprintln!("minting {n} keys…");
        let started = Instant::now();
        let tokens = mint_many(args, align, &data, dir, n).await?;
        eprintln!("  done in {:.1} s", started.elapsed().as_secs_f64());
        tokens
    } else {
        let mut tokens = Vec::with_capacity(n);
        for _ in 0..n {
            let minted = align_keys::token::generate(align_keys::Environment::Live)?;
            tokens.push(minted.token.expose().to_owned());
        }
        tokens
    };
    let server = start(args, align, &data, dir.join(format!("memory-{kind}.log"))).await?;
    let pid = server.pid();
    let baseline = server.rss_kib();
    eprintln!("sending one request with each of {n} {kind} keys…");
    let started = Instant::now();
    let expect = if valid {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    let errors = send_each(server.addr, Arc::new(tokens), args.connections, expect).await?;
    let took = started.elapsed();
    let after = server.rss_kib();
    let peak = proc::peak_rss_kib(pid);
    eprintln!(
        "  done in {:.1} s ({:.0} req/s), {errors} unexpected answers",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    let mut samples = Vec::new();
    let settle_started = Instant::now();
    while settle_started.elapsed() < Duration::from_secs(args.settle) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss = server.rss_kib();
        eprintln!(
            "  +{:>3} s: {}",
            settle_started.elapsed().as_secs(),
            mib(rss)
        );
        samples.push((settle_started.elapsed().as_secs(), rss));
    }
    let settled = samples.last().and_then(|(_, r)| *r).or(after);
    println!(
        "{kind} keys: {n} distinct keys, one request each ({errors} unexpected answers); \
         resident memory: at start {}, after the requests {} (peak {}), {} s later {}",
        mib(baseline),
        mib(after),
        mib(peak),
        args.settle,
        mib(settled)
    );
    server.stop().await?;
    if errors > 0 {
        return Err(format!("{errors} requests did not answer {expect}").into());
    }
    Ok(())
}

/// Bootstraps `data`, mints a template key through the API, and copies it `n - 1` times
/// (fresh id, prefix and token each) in one transaction. Returns the `n` tokens.
async fn mint_many(
    args: &Args,
    align: &Path,
    data: &Path,
    dir: &Path,
    n: usize,
) -> Result<Vec<String>, BoxError> {
    let server = start(args, align, data, dir.join("memory-setup.log")).await?;
    let admin_file = data.join("bootstrap-admin-key");
    let admin = std::fs::read_to_string(&admin_file)
        .map_err(|e| format!("cannot read {}: {e}", admin_file.display()))?;
    let body = serde_json::json!({ "name": "loadbench-memory", "scope": "organization" });
    let (status, bytes) = load::call(
        server.addr,
        Method::POST,
        "/api/v1/keys",
        Some(admin.trim()),
        Some(&body),
    )
    .await?;
    if status != StatusCode::CREATED {
        return Err(format!(
            "POST /api/v1/keys answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )
        .into());
    }
    server.stop().await?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    let token = v
        .get("key")
        .and_then(serde_json::Value::as_str)
        .ok_or("no key in the answer")?
        .to_owned();
    let id = v
        .get("apiKeyId")
        .and_then(serde_json::Value::as_str)
        .ok_or("no apiKeyId in the answer")?
        .to_owned();
    let db = data.join("align.db");
    tokio::task::spawn_blocking(move || copy_key(&db, &id, token, n)).await?
}

fn copy_key(db: &Path, template: &str, token: String, n: usize) -> Result<Vec<String>, BoxError> {
    let mut conn = rusqlite::Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let columns: Vec<String> = {
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('keys_api_keys')")?;
        stmt.query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?
    };
    let copied: Vec<&str> = columns
        .iter()
        .map(String::as_str)
        .filter(|c| !matches!(*c, "seq" | "id" | "hash" | "prefix"))
        .collect();
    let sql = format!(
        "INSERT OR IGNORE INTO keys_api_keys (id, hash, prefix, {cols}) \
         SELECT ?1, ?2, ?3, {cols} FROM keys_api_keys WHERE id = ?4",
        cols = copied.join(", ")
    );
    let hasher = align_keys::Sha256Hasher;
    let mut tokens = Vec::with_capacity(n);
    tokens.push(token);
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(&sql)?;
        while tokens.len() < n {
            let minted = align_keys::token::generate(align_keys::Environment::Live)?;
            let hash = hasher.hash(minted.token.expose());
            let id = align_keys::KeyId::new().to_string();
            let inserted = stmt.execute(rusqlite::params![
                id,
                &hash.as_bytes()[..],
                minted.prefix,
                template
            ])?;
            // 0: the random prefix was taken already; try another token.
            if inserted == 1 {
                tokens.push(minted.token.expose().to_owned());
            }
        }
    }
    tx.commit()?;
    Ok(tokens)
}

/// Sends `GET /api/v1/me` once with each token over `connections` keep-alive connections;
/// returns how many answers were not `expect`. A request whose connection fails is sent again
/// on a new connection (up to 3 times; the count of such retries is printed).
async fn send_each(
    addr: std::net::SocketAddr,
    tokens: Arc<Vec<String>>,
    connections: usize,
    expect: StatusCode,
) -> Result<u64, BoxError> {
    let next = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let (tokens, next, bad, retried) = (
                Arc::clone(&tokens),
                Arc::clone(&next),
                Arc::clone(&bad),
                Arc::clone(&retried),
            );
            tokio::spawn(async move {
                let mut sender = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(token) = tokens.get(i) else {
                        return Ok::<(), BoxError>(());
                    };
                    let mut attempt = 0;
                    let status = loop {
                        let s = match sender.as_mut() {
                            Some(s) => s,
                            None => sender.insert(open(addr).await?),
                        };
                        match one(s, token).await {
                            Ok(status) => break status,
                            Err(e) if attempt < 3 => {
                                attempt += 1;
                                retried.fetch_add(1, Ordering::Relaxed);
                                eprintln!("  request {i}: {e}; again on a new connection");
                                sender = None;
                            }
                            Err(e) => return Err(e),
                        }
                    };
                    if status != expect {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                    if i > 0 && i % 100_000 == 0 {
                        eprintln!("  {i} requests");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let retried = retried.load(Ordering::Relaxed);
    if retried > 0 {
        eprintln!("  {retried} requests were sent again after a connection failed");
    }
    Ok(bad.load(Ordering::Relaxed))
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn open(addr: std::net::SocketAddr) -> Result<Sender, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn one(sender: &mut Sender, token: &str) -> Result<StatusCode, BoxError> {
    let mut request = http::Request::new(Empty::<Bytes>::new());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = http::Uri::from_static("/api/v1/me");
    let headers = request.headers_mut();
    headers.insert(HOST, HeaderValue::from_static("127.0.0.1"));
    headers.insert(
        AUTHORIZATION,
        HeaderValue::try_from(format!("Bearer {token}"))?,
    );
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}
