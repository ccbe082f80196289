//! `align-loadbench all`: the four cases of issue #9, one server process per measured point,
//! the table, the ratios against the floor and the targets.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};

use crate::BoxError;
use crate::load::{self, Report, Target};
use crate::proc::{self, Server};

/// The server-wide rate for (b): 65535 per minute per key, as in every earlier run (the
/// sliding window takes any u32 since issue 24; the rate does not change a request's cost
/// while a key stays under a quarter of it).
const HIGH_RATE_PER_MINUTE: &str = "65535";
/// Keys the (b) requests rotate through, so that no key reaches [`HIGH_RATE_PER_MINUTE`]
/// within a point below ~700 000 requests/s (the server restarts for every point).
const KEY_POOL: usize = 64;

/// Settings of a run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The `align` binary.
    pub(crate) align: PathBuf,
    /// An earlier `align` binary measured beside it in every round (`--baseline`), with its
    /// own data directory and keys.
    pub(crate) baseline: Option<PathBuf>,
    /// This binary (it is also the floor server).
    pub(crate) me: PathBuf,
    /// Connection counts, in order.
    pub(crate) connections: Vec<usize>,
    /// Measured time per point.
    pub(crate) duration: Duration,
    /// Unmeasured time before it, per point.
    pub(crate) warmup: Duration,
    /// Rounds over every point; each point reports its round with the median requests/s.
    pub(crate) repeat: usize,
    /// `ALIGN_LOG` for the servers.
    pub(crate) server_log: String,
    /// Further environment variables for the align servers (`--server-env`).
    pub(crate) server_env: Vec<(String, String)>,
    /// Keep the data directory and logs.
    pub(crate) keep: bool,
    /// Where to put them (default: a fresh directory under the system temp dir).
    pub(crate) work_dir: Option<PathBuf>,
}

/// One of the four cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Floor,
    Ok,
    Limited,
    Invalid,
    /// `POST /api/v1/keys/verify` of a cached key space key with a permission query (issue 28).
    Verify,
}

impl Case {
    const ALL: [Self; 5] = [
        Self::Floor,
        Self::Ok,
        Self::Limited,
        Self::Invalid,
        Self::Verify,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Floor => "(a) hyper floor",
            Self::Ok => "(b) align 200",
            Self::Limited => "(c) align 429",
            Self::Invalid => "(d) align 401",
            Self::Verify => "(e) verify 200",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Self::Floor => "a",
            Self::Ok => "b",
            Self::Limited => "c",
            Self::Invalid => "d",
            Self::Verify => "e",
        }
    }

    fn expect(self) -> StatusCode {
        match self {
            Self::Floor | Self::Ok | Self::Verify => StatusCode::OK,
            Self::Limited => StatusCode::TOO_MANY_REQUESTS,
            Self::Invalid => StatusCode::UNAUTHORIZED,
        }
    }
}

/// The tokens the align cases send.
#[derive(Debug)]
struct Tokens {
    ok: Vec<String>,
    limited: String,
    invalid: String,
    /// Align keys holding only `keys:verify`, one per connection at 64, so that no key's
    /// requests in flight reach `limits.max_concurrent_per_key`.
    verifiers: Vec<String>,
    /// Key space keys the (e) requests verify.
    keyspace: Vec<String>,
}

/// One measured point.
#[derive(Debug)]
struct Point {
    case: Case,
    /// Measured on the `--baseline` binary.
    baseline: bool,
    connections: usize,
    report: Report,
    /// Server CPU time per response.
    cpu_per_request: Option<Duration>,
    /// Server resident memory at the end of the point, KiB.
    rss_kib: Option<u64>,
}

/// Runs every case and prints the table; fails on any error response or tool failure.
pub(crate) async fn all(settings: &Settings) -> Result<(), BoxError> {
    let dir = match &settings.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("align-loadbench-{}", std::process::id())),
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let result = run_in(settings, &dir).await;
    if settings.keep {
        eprintln!("data and server logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_in(settings: &Settings, dir: &Path) -> Result<(), BoxError> {
    println!("{}", machine_description());
    println!(
        "each point: {:?} warm-up, then {:?} measured, {} round(s) (the median by req/s is \
         shown); one fresh server process per point; servers log at ALIGN_LOG={} to a file",
        settings.warmup,
        settings.duration,
        settings.repeat.max(1),
        settings.server_log
    );
    for (name, value) in &settings.server_env {
        println!("align servers also get {name}={value}");
    }
    let data = dir.join("data");
    let tokens = set_up(settings, &settings.align, &data, dir).await?;
    let baseline = match &settings.baseline {
        Some(binary) => {
            println!(
                "baseline: {} (own data directory and keys), measured after the same case in every round",
                binary.display()
            );
            let data = dir.join("baseline-data");
            let tokens = set_up(settings, binary, &data, dir).await?;
            Some((binary.as_path(), data, tokens))
        }
        None => None,
    };
    // Rounds interleave the cases, so that a change in the machine's load during the run
    // weighs on every case alike.
    let mut rounds: Vec<Vec<Point>> = Vec::new();
    for round in 0..settings.repeat.max(1) {
        let mut points = Vec::new();
        for case in Case::ALL {
            for &connections in &settings.connections {
                let current = (settings.align.as_path(), &data, &tokens, false);
                let earlier = baseline
                    .as_ref()
                    .filter(|_| case != Case::Floor)
                    .map(|(binary, data, tokens)| (*binary, data, tokens, true));
                for (binary, data, tokens, is_baseline) in std::iter::once(current).chain(earlier) {
                    let mut point =
                        measure(settings, binary, data, dir, tokens, case, connections).await?;
                    point.baseline = is_baseline;
                    eprintln!(
                        "  round {} {}{} c={connections}: {:.0} req/s, p99 {} µs, {} errors",
                        round + 1,
                        case.label(),
                        if is_baseline { " [baseline]" } else { "" },
                        point.report.rps(),
                        point.report.quantile_us(0.99),
                        point.report.errors
                    );
                    points.push(point);
                }
            }
        }
        rounds.push(points);
    }
    let per_round = RoundRatios::of(&rounds, false);
    let baseline_rounds = RoundRatios::of(&rounds, true);
    let points = median_points(rounds);
    println!();
    print!("{}", table(&points));
    println!();
    let (verdicts, errors) = targets(&points, per_round.as_ref());
    print!("{verdicts}");
    if let (Some(now), Some(before)) = (&per_round, &baseline_rounds) {
        print!("{}", beside_baseline(now, before));
    }
    println!("load average after the run: {}", load_average());
    if errors > 0 {
        return Err(format!("{errors} responses or connections failed (see the table)").into());
    }
    Ok(())
}

/// `align-loadbench setup`: bootstraps `data` as [`all`] does and writes the tokens of (b),
/// (c) and (d) to files in `out`.
pub(crate) async fn setup_files(align: &Path, data: &Path, out: &Path) -> Result<(), BoxError> {
    std::fs::create_dir_all(out)?;
    let settings = Settings {
        align: align.to_path_buf(),
        baseline: None,
        me: std::env::current_exe()?,
        connections: Vec::new(),
        duration: Duration::ZERO,
        warmup: Duration::ZERO,
        repeat: 1,
        server_log: "info".to_owned(),
        server_env: Vec::new(),
        keep: true,
        work_dir: None,
    };
    let tokens = set_up(&settings, align, data, out).await?;
    let lines = |t: &[String]| t.iter().map(|t| format!("{t}\n")).collect::<String>();
    std::fs::write(out.join("ok.tokens"), lines(&tokens.ok))?;
    std::fs::write(
        out.join("limited.tokens"),
        lines(std::slice::from_ref(&tokens.limited)),
    )?;
    std::fs::write(
        out.join("invalid.tokens"),
        lines(std::slice::from_ref(&tokens.invalid)),
    )?;
    println!(
        "{} bootstrapped; tokens in {}/{{ok,limited,invalid}}.tokens",
        data.display(),
        out.display()
    );
    std::fs::write(out.join("verifiers.tokens"), lines(&tokens.verifiers))?;
    let bodies = tokens
        .keyspace
        .iter()
        .map(|t| verify_body(t).to_string())
        .collect::<Vec<_>>();
    std::fs::write(out.join("verify.bodies"), lines(&bodies))?;
    Ok(())
}

fn align_env(settings: &Settings) -> HashMap<String, String> {
    let mut env = HashMap::from([
        ("ALIGN_LOG".to_owned(), settings.server_log.clone()),
        (
            "ALIGN_RATELIMIT_PER_MINUTE".to_owned(),
            HIGH_RATE_PER_MINUTE.to_owned(),
        ),
    ]);
    env.extend(settings.server_env.iter().cloned());
    env
}

async fn start_align(
    settings: &Settings,
    binary: &Path,
    data: &Path,
    log: PathBuf,
) -> Result<Server, BoxError> {
    let addr = proc::free_addr()?;
    let args = vec![
        "serve".to_owned(),
        "--data-dir".to_owned(),
        data.display().to_string(),
        "--listen".to_owned(),
        addr.to_string(),
    ];
    Server::start(binary, &args, &align_env(settings), addr, log).await
}

/// First start (bootstraps the data directory), then the keys: one plain, one whose own limit
/// is 1 request per minute, and a well-formed token with a valid checksum that is not stored.
async fn set_up(
    settings: &Settings,
    binary: &Path,
    data: &Path,
    dir: &Path,
) -> Result<Tokens, BoxError> {
    let server = start_align(settings, binary, data, dir.join("setup.log")).await?;
    let admin_file = data.join("bootstrap-admin-key");
    let admin = std::fs::read_to_string(&admin_file)
        .map_err(|e| format!("cannot read {}: {e}", admin_file.display()))?;
    let admin = admin.trim();
    let mut ok = Vec::with_capacity(KEY_POOL);
    for i in 0..KEY_POOL {
        ok.push(mint(server.addr, admin, &format!("loadbench-{i}")).await?.0);
    }
    let (limited, limited_id) = mint(server.addr, admin, "loadbench-limited").await?;
    let body = serde_json::json!({ "rateLimitPerMinute": 1 });
    let path = format!("/api/v1/keys/{limited_id}");
    let (status, bytes) =
        load::call(server.addr, Method::PATCH, &path, Some(admin), Some(&body)).await?;
    if status != StatusCode::OK {
        return Err(format!(
            "PATCH {path} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )
        .into());
    }
    let invalid = align_keys::token::generate(align_keys::Environment::Live)?
        .token
        .expose()
        .to_owned();
    // Each token answers as its case expects before anything is measured.
    let checks = [
        (&ok[0], StatusCode::OK),
        (&limited, StatusCode::OK),
        (&limited, StatusCode::TOO_MANY_REQUESTS),
        (&invalid, StatusCode::UNAUTHORIZED),
    ];
    for (token, expect) in checks {
        let (status, bytes) =
            load::call(server.addr, Method::GET, "/api/v1/me", Some(token), None).await?;
        if status != expect {
            return Err(format!(
                "GET /api/v1/me answered {status}, expected {expect}: {}",
                String::from_utf8_lossy(&bytes)
            )
            .into());
        }
    }
    let (verifiers, keyspace) = set_up_keyspace(server.addr, admin).await?;
    server.stop().await?;
    Ok(Tokens {
        ok,
        limited,
        invalid,
        verifiers,
        keyspace,
    })
}

/// The (e) case's set-up: a key space, [`KEY_POOL`] keys in it and as many verifying Align
/// keys; one verification answers `VALID` before anything is measured.
async fn set_up_keyspace(
    addr: std::net::SocketAddr,
    admin: &str,
) -> Result<(Vec<String>, Vec<String>), BoxError> {
    let post = |path: String, body: serde_json::Value| async move {
        let (status, bytes) =
            load::call(addr, Method::POST, &path, Some(admin), Some(&body)).await?;
        if !status.is_success() {
            return Err::<serde_json::Value, BoxError>(
                format!(
                    "POST {path} answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                )
                .into(),
            );
        }
        Ok(serde_json::from_slice(&bytes)?)
    };
    let text = |v: &serde_json::Value, name: &str| {
        v.get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("no {name} in {v}"))
    };
    let ks = post(
        "/api/v1/keyspaces".to_owned(),
        serde_json::json!({"name": "loadbench", "prefix": "bench",
            "permissions": ["invoices:read", "invoices:write", "admin"]}),
    )
    .await?;
    let ks = text(&ks, "id")?;
    let mut keyspace = Vec::with_capacity(KEY_POOL);
    let mut verifiers = Vec::with_capacity(KEY_POOL);
    for i in 0..KEY_POOL {
        let key = post(
            format!("/api/v1/keyspaces/{ks}/keys"),
            serde_json::json!({"name": format!("customer-{i}"), "ownerId": format!("cus_{i}"),
                "permissions": ["invoices:read", "admin"]}),
        )
        .await?;
        keyspace.push(text(&key, "key")?);
        let verifier = post(
            "/api/v1/keys".to_owned(),
            serde_json::json!({"name": format!("gateway-{i}"), "scope": "organization",
                "permissions": ["keys:verify"]}),
        )
        .await?;
        verifiers.push(text(&verifier, "key")?);
    }
    let (status, bytes) = load::call(
        addr,
        Method::POST,
        "/api/v1/keys/verify",
        Some(&verifiers[0]),
        Some(&verify_body(&keyspace[0])),
    )
    .await?;
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if status != StatusCode::OK || answer["code"] != "VALID" {
        return Err(format!("POST /api/v1/keys/verify answered {status}: {answer}").into());
    }
    Ok((verifiers, keyspace))
}

/// The body of an (e) request: the key and a permission query.
fn verify_body(token: &str) -> serde_json::Value {
    serde_json::json!({"key": token, "permissions": "invoices:read AND (invoices:write OR admin)"})
}

/// `POST /api/v1/keys`: returns the token and the key id.
async fn mint(
    addr: std::net::SocketAddr,
    admin: &str,
    name: &str,
) -> Result<(String, String), BoxError> {
    let body = serde_json::json!({ "name": name, "scope": "organization" });
    let (status, bytes) =
        load::call(addr, Method::POST, "/api/v1/keys", Some(admin), Some(&body)).await?;
    if status != StatusCode::CREATED {
        return Err(format!(
            "POST /api/v1/keys answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )
        .into());
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    let field = |name: &str| {
        v.get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("POST /api/v1/keys: no {name} in the answer"))
    };
    Ok((field("key")?, field("apiKeyId")?))
}

async fn measure(
    settings: &Settings,
    binary: &Path,
    data: &Path,
    dir: &Path,
    tokens: &Tokens,
    case: Case,
    connections: usize,
) -> Result<Point, BoxError> {
    let log = dir.join(format!("server-{}-{connections}.log", case.short()));
    let server = match case {
        Case::Floor => {
            let addr = proc::free_addr()?;
            let args = vec!["floor".to_owned(), "--listen".to_owned(), addr.to_string()];
            Server::start(&settings.me, &args, &HashMap::new(), addr, log.clone()).await?
        }
        _ => start_align(settings, binary, data, log.clone()).await?,
    };
    let sent = match case {
        Case::Floor | Case::Ok => tokens.ok.as_slice(),
        Case::Limited => std::slice::from_ref(&tokens.limited),
        Case::Invalid => std::slice::from_ref(&tokens.invalid),
        Case::Verify => tokens.verifiers.as_slice(),
    };
    let authorization = sent
        .iter()
        .map(|t| HeaderValue::try_from(format!("Bearer {t}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut target = Target::get(
        server.addr,
        http::Uri::from_static("/api/v1/me"),
        authorization,
        case.expect(),
    );
    if case == Case::Verify {
        target.method = Method::POST;
        target.uri = http::Uri::from_static("/api/v1/keys/verify");
        target.bodies = tokens
            .keyspace
            .iter()
            .map(|t| serde_json::to_vec(&verify_body(t)).map(bytes::Bytes::from))
            .collect::<Result<Vec<_>, _>>()?;
    }
    let cpu_before = server.cpu_time();
    // The warm-up is not counted in the CPU time either: sample again when it ends.
    let warm = settings.warmup;
    let sampler = async {
        tokio::time::sleep(warm).await;
        server.cpu_time()
    };
    let (report, cpu_at_measure) = tokio::join!(
        load::drive(&target, connections, settings.warmup, settings.duration),
        sampler
    );
    let report = report?;
    let cpu_after = server.cpu_time();
    let rss_kib = server.rss_kib();
    let cpu_per_request = match (cpu_at_measure.or(cpu_before), cpu_after) {
        (Some(a), Some(b)) if !report.latencies_us.is_empty() => {
            Some(b.saturating_sub(a) / u32::try_from(report.latencies_us.len()).unwrap_or(1))
        }
        _ => None,
    };
    if report.errors > 0 {
        eprintln!(
            "  {} c={connections}: {} errors, unexpected statuses {:?}, first transport error {:?}\n  server log tail:\n{}",
            case.label(),
            report.errors,
            report.unexpected,
            report.first_error,
            server.log_tail()
        );
    }
    server.stop().await?;
    if !settings.keep {
        let _ = std::fs::remove_file(&log);
    }
    Ok(Point {
        case,
        baseline: false,
        connections,
        report,
        cpu_per_request,
        rss_kib,
    })
}

/// For each point, the round with the median requests/s; errors are summed over all rounds.
fn median_points(rounds: Vec<Vec<Point>>) -> Vec<Point> {
    let Some(count) = rounds.first().map(Vec::len) else {
        return Vec::new();
    };
    let mut columns: Vec<Vec<Point>> = (0..count).map(|_| Vec::new()).collect();
    for round in rounds {
        for (i, point) in round.into_iter().enumerate() {
            if let Some(column) = columns.get_mut(i) {
                column.push(point);
            }
        }
    }
    columns
        .into_iter()
        .filter_map(|mut column| {
            let errors: u64 = column.iter().map(|p| p.report.errors).sum();
            column.sort_by(|a, b| a.report.rps().total_cmp(&b.report.rps()));
            let middle = column.len() / 2;
            let mut point = column.into_iter().nth(middle)?;
            point.report.errors = errors;
            Some(point)
        })
        .collect()
}

fn ms(us: u32) -> String {
    format!("{:.3}", f64::from(us) / 1000.0)
}

fn floor_of(points: &[Point], connections: usize) -> Option<&Point> {
    points
        .iter()
        .find(|p| p.case == Case::Floor && p.connections == connections)
}

/// The Markdown table of every point, with ratios against the floor at the same connection
/// count.
fn table(points: &[Point]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| case | conns | req/s | p50 ms | p99 ms | p99.9 ms | errors | server CPU µs/req | server RSS MiB | req/s vs (a) | p99 vs (a) |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for p in points {
        let r = &p.report;
        let (ratio, p99_ratio) = match floor_of(points, p.connections) {
            Some(f) if p.case != Case::Floor && f.report.rps() > 0.0 => (
                format!("{:.0}%", 100.0 * r.rps() / f.report.rps()),
                format!(
                    "{:.2}×",
                    f64::from(r.quantile_us(0.99)) / f64::from(f.report.quantile_us(0.99).max(1))
                ),
            ),
            _ => ("—".to_owned(), "—".to_owned()),
        };
        let _ = writeln!(
            out,
            "| {}{} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.case.label(),
            if p.baseline { " [baseline]" } else { "" },
            p.connections,
            r.rps(),
            ms(r.quantile_us(0.5)),
            ms(r.quantile_us(0.99)),
            ms(r.quantile_us(0.999)),
            r.errors,
            p.cpu_per_request.map_or("—".to_owned(), |d| format!(
                "{:.1}",
                d.as_secs_f64() * 1e6
            )),
            p.rss_kib
                .map_or("—".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
            ratio,
            p99_ratio,
        );
    }
    out
}

/// The ratios against the floor within each round, at the largest connection count. Each
/// round runs (a)–(d) back to back, so a ratio within a round is robust to the machine's
/// load drifting between rounds, where the ratio of two medians (each possibly from another
/// round) is not.
#[derive(Debug, Clone, PartialEq)]
struct RoundRatios {
    /// The connection count they are taken at.
    connections: usize,
    /// Per round: (b), (c), (d) requests/s as a share of (a)'s, in percent.
    b: Vec<f64>,
    c: Vec<f64>,
    d: Vec<f64>,
    /// Per round: (b)'s p99 over (a)'s.
    b_p99: Vec<f64>,
    /// Per round: (e) requests/s as a share of (a)'s, and its p99 over (a)'s.
    e: Vec<f64>,
    e_p99: Vec<f64>,
}

impl RoundRatios {
    /// `None` when no round has all four cases at the largest connection count. With
    /// `baseline`, (b)–(d) are the `--baseline` binary's points.
    fn of(rounds: &[Vec<Point>], baseline: bool) -> Option<Self> {
        let top = rounds.iter().flatten().map(|p| p.connections).max()?;
        let mut out = Self {
            connections: top,
            b: Vec::new(),
            c: Vec::new(),
            d: Vec::new(),
            b_p99: Vec::new(),
            e: Vec::new(),
            e_p99: Vec::new(),
        };
        for round in rounds {
            let get = |case| {
                round.iter().find(|p: &&Point| {
                    p.case == case
                        && p.connections == top
                        && (p.baseline == baseline || case == Case::Floor)
                })
            };
            let (Some(a), Some(b), Some(c), Some(d)) = (
                get(Case::Floor),
                get(Case::Ok),
                get(Case::Limited),
                get(Case::Invalid),
            ) else {
                continue;
            };
            let floor = a.report.rps().max(f64::MIN_POSITIVE);
            out.b.push(100.0 * b.report.rps() / floor);
            out.c.push(100.0 * c.report.rps() / floor);
            out.d.push(100.0 * d.report.rps() / floor);
            out.b_p99.push(
                f64::from(b.report.quantile_us(0.99))
                    / f64::from(a.report.quantile_us(0.99).max(1)),
            );
            if let Some(e) = get(Case::Verify) {
                out.e.push(100.0 * e.report.rps() / floor);
                out.e_p99.push(
                    f64::from(e.report.quantile_us(0.99))
                        / f64::from(a.report.quantile_us(0.99).max(1)),
                );
            }
        }
        (!out.b.is_empty()).then_some(out)
    }
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => v.get(n / 2).copied(),
        _ => Some((v.get(n / 2 - 1)? + v.get(n / 2)?) / 2.0),
    }
}

/// `"54/61/63 % (range 54–63, median 61)"` for percentages, or with `×` for factors.
fn spread(values: &[f64], percent: bool) -> String {
    let show = |x: f64| {
        if percent {
            format!("{x:.0}")
        } else {
            format!("{x:.2}")
        }
    };
    let unit = if percent { " %" } else { "×" };
    let each = values
        .iter()
        .map(|x| show(*x))
        .collect::<Vec<_>>()
        .join("/");
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mid = median(values).unwrap_or(f64::NAN);
    format!(
        "{each}{unit} (range {}–{}, median {})",
        show(lo),
        show(hi),
        show(mid)
    )
}

/// Issue 24's targets at the largest connection count (issue #9's were 50 %, 2× and 70 %),
/// and the number of errors overall. The verdict is on the median of the per-round ratios
/// when there are rounds (`per_round`); the ratio of the median points is shown beside it.
fn targets(points: &[Point], per_round: Option<&RoundRatios>) -> (String, u64) {
    let mut out = String::new();
    let errors: u64 = points.iter().map(|p| p.report.errors).sum();
    let Some(&top) = points.iter().map(|p| p.connections).max().as_ref() else {
        return (out, errors);
    };
    let get = |case| {
        points
            .iter()
            .find(|p| p.case == case && p.connections == top && !p.baseline)
    };
    if let (Some(a), Some(b), Some(c), Some(d)) = (
        get(Case::Floor),
        get(Case::Ok),
        get(Case::Limited),
        get(Case::Invalid),
    ) {
        let rps = |p: &Point| p.report.rps();
        let p99 = |p: &Point| f64::from(p.report.quantile_us(0.99));
        let verdict = |met: bool| if met { "met" } else { "NOT met" };
        let share = |p: &Point| 100.0 * rps(p) / rps(a).max(f64::MIN_POSITIVE);
        let rounds = per_round.filter(|r| r.connections == top);
        // What the verdict is on: the median per-round ratio, else the medians' ratio.
        let judged = |values: Option<&Vec<f64>>, of_medians: f64| {
            values.and_then(|v| median(v)).unwrap_or(of_medians)
        };
        let _ = writeln!(
            out,
            "targets at {top} connections{}, judged on the median of the per-round ratios \
             (each round runs (a)–(d) back to back):",
            if top == 64 {
                ""
            } else {
                " (the issue sets them at 64 connections)"
            }
        );
        let b_share = judged(rounds.map(|r| &r.b), share(b));
        let b_p99 = judged(rounds.map(|r| &r.b_p99), p99(b) / p99(a).max(1.0));
        let c_share = judged(rounds.map(|r| &r.c), share(c));
        let d_share = judged(rounds.map(|r| &r.d), share(d));
        let mut rows = vec![
            (
                "(b)/(a) req/s",
                b_share,
                "≥ 60%",
                b_share >= 60.0,
                share(b),
                rounds.map(|r| &r.b),
                true,
            ),
            (
                "(b)/(a) p99",
                b_p99,
                "≤ 2.5×",
                b_p99 <= 2.5,
                p99(b) / p99(a).max(1.0),
                rounds.map(|r| &r.b_p99),
                false,
            ),
            (
                "(c)/(a) req/s",
                c_share,
                "≥ 85%",
                c_share >= 85.0,
                share(c),
                rounds.map(|r| &r.c),
                true,
            ),
            (
                "(d)/(a) req/s",
                d_share,
                "≥ 85%",
                d_share >= 85.0,
                share(d),
                rounds.map(|r| &r.d),
                true,
            ),
        ];
        // Issue 28's targets for verification: ≥ 50% of the floor's req/s, p99 ≤ 3×.
        if let Some(e) = get(Case::Verify) {
            let e_share = judged(rounds.map(|r| &r.e), share(e));
            let e_p99 = judged(rounds.map(|r| &r.e_p99), p99(e) / p99(a).max(1.0));
            rows.push((
                "(e)/(a) req/s",
                e_share,
                "≥ 50%",
                e_share >= 50.0,
                share(e),
                rounds.map(|r| &r.e),
                true,
            ));
            rows.push((
                "(e)/(a) p99",
                e_p99,
                "≤ 3×",
                e_p99 <= 3.0,
                p99(e) / p99(a).max(1.0),
                rounds.map(|r| &r.e_p99),
                false,
            ));
        }
        for (what, value, goal, met, of_medians, values, percent) in rows {
            let show = |x: f64| {
                if percent {
                    format!("{x:.0}%")
                } else {
                    format!("{x:.2}×")
                }
            };
            let _ = writeln!(
                out,
                "  {what} {} ({goal}): {}; per round {}; the median points' ratio {}",
                show(value),
                verdict(met),
                values.map_or("—".to_owned(), |v| spread(v, percent)),
                show(of_medians),
            );
        }
    }
    let _ = writeln!(
        out,
        "  errors other than the intended 401/429: {errors} ({})",
        if errors == 0 { "met" } else { "NOT met" }
    );
    (out, errors)
}

/// The `--baseline` comparison: each round's (b), (c) and (d) against the floor for both
/// binaries, and this build's requests/s as a share of the baseline's within each round.
fn beside_baseline(now: &RoundRatios, before: &RoundRatios) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "beside the baseline at {} connections (per round, share of the floor's req/s):",
        now.connections
    );
    for (what, n, b) in [
        ("(b)", &now.b, &before.b),
        ("(c)", &now.c, &before.c),
        ("(d)", &now.d, &before.d),
    ] {
        let change: Vec<f64> = n
            .iter()
            .zip(b)
            .map(|(n, b)| 100.0 * n / b.max(f64::MIN_POSITIVE))
            .collect();
        let _ = writeln!(
            out,
            "  {what} this build {}; baseline {}; this build as a share of the baseline {}",
            spread(n, true),
            spread(b, true),
            spread(&change, true)
        );
    }
    let _ = writeln!(
        out,
        "  (b) p99 vs the floor: this build {}; baseline {}",
        spread(&now.b_p99, false),
        spread(&before.b_p99, false)
    );
    out
}

/// CPU model, cores, memory, kernel and load, from `/proc`.
pub(crate) fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, v)| v.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0.0, |kib| kib as f64 / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "machine: {model}, {cores} cores available, {mem_gib:.1} GiB RAM, Linux {}; load average before the run: {}",
        kernel.trim(),
        load_average()
    )
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

    use super::*;

    /// A point whose every request took `p99_us` and which served `rps` requests/s.
    fn point(case: Case, connections: usize, rps: u32, p99_us: u32) -> Point {
        let report = Report {
            latencies_us: vec![p99_us; rps as usize],
            ok: u64::from(rps),
            elapsed: Duration::from_secs(1),
            ..Report::default()
        };
        Point {
            case,
            baseline: false,
            connections,
            report,
            cpu_per_request: None,
            rss_kib: None,
        }
    }

    fn round(a: u32, b: u32, c: u32, d: u32) -> Vec<Point> {
        vec![
            point(Case::Floor, 64, a, 100),
            point(Case::Ok, 64, b, 200),
            point(Case::Limited, 64, c, 100),
            point(Case::Invalid, 64, d, 100),
        ]
    }

    #[test]
    fn the_baseline_is_compared_within_each_round() {
        let with_baseline = |a, b, b0| {
            let mut r = round(a, b, 900, 900);
            let mut earlier = point(Case::Ok, 64, b0, 300);
            earlier.baseline = true;
            r.push(earlier);
            for case in [Case::Limited, Case::Invalid] {
                let mut p = point(case, 64, 450, 100);
                p.baseline = true;
                r.push(p);
            }
            r
        };
        let rounds = vec![with_baseline(1000, 600, 500), with_baseline(800, 520, 400)];
        let now = RoundRatios::of(&rounds, false).unwrap();
        let before = RoundRatios::of(&rounds, true).unwrap();
        assert_eq!(now.b, vec![60.0, 65.0]);
        assert_eq!(before.b, vec![50.0, 50.0]);
        assert_eq!(before.b_p99, vec![3.0, 3.0]);
        let text = beside_baseline(&now, &before);
        assert!(
            text.contains("(b) this build 60/65 % (range 60–65, median 62)"),
            "{text}"
        );
        assert!(text.contains("share of the baseline 120/130 %"), "{text}");
        // The targets are this build's, never the baseline's.
        let (verdicts, _) = targets(&median_points(rounds), Some(&now));
        assert!(verdicts.contains("(c)/(a) req/s 101%"), "{verdicts}");
    }

    #[test]
    fn the_median_of_an_odd_and_an_even_count() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn targets_are_judged_on_ratios_within_each_round() {
        // The floor drifts across rounds; within each round (b) is 60-70 % of it, and the
        // median per-round ratio is 63 %, but the median points ((a) 1000 and (b) 700, both
        // of round 1) give 70 %.
        let rounds = vec![
            round(1000, 700, 900, 900),
            round(800, 504, 680, 696),
            round(1200, 720, 1000, 1000),
        ];
        let ratios = RoundRatios::of(&rounds, false).unwrap();
        let b: Vec<i64> = ratios.b.iter().map(|x| x.round() as i64).collect();
        assert_eq!(b, vec![70, 63, 60]);
        assert_eq!(ratios.b_p99, vec![2.0, 2.0, 2.0]);
        let points = median_points(rounds);
        let (text, errors) = targets(&points, Some(&ratios));
        assert_eq!(errors, 0);
        assert!(text.contains("(b)/(a) req/s 63% (≥ 60%): met"), "{text}");
        assert!(
            text.contains("per round 70/63/60 % (range 60–70, median 63)"),
            "{text}"
        );
        assert!(text.contains("(c)/(a) req/s 85% (≥ 85%): met"), "{text}");
        assert!(text.contains("(d)/(a) req/s 87% (≥ 85%): met"), "{text}");
        assert!(text.contains("the median points' ratio 70%"), "{text}");
    }
}
