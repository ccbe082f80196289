//! Chained append through the SQLite sink against a plain batched insert of the same rows,
//! and chain verification against bare SHA-256 over the same bytes.
//!
//! `cargo bench -p align-audit --features sqlite --bench chain`
#![allow(clippy::unwrap_used, reason = "benchmarks fail loudly on purpose")]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use align_audit::{
    Actor, AuditSink, ChainVerifier, Digest, Entry, MemorySink, Record, SqliteSink,
    SqliteSinkConfig, Stream,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rusqlite::{Connection, params};

/// Rows per measured iteration of the append benchmarks.
const APPEND_ROWS: usize = 2000;
/// Records per measured iteration of the verification benchmarks.
const VERIFY_RECORDS: usize = 10_000;
/// Rounds of the interleaved ratio measurement.
const RATIO_ROUNDS: usize = 31;
/// Rows per transaction in the plain insert: the sink's default `max_batch`.
const PLAIN_BATCH: usize = 1024;

/// A typical request-log entry: every DESIGN §6 field set.
fn entry(n: usize) -> Entry {
    Entry::request("POST", format!("/api/v1/keys/key_{n}/rotate?dry_run=false"))
        .organization("org_0001")
        .environment(align_core::Environment::Live)
        .actor(Actor::ApiKey {
            id: format!("key_{}", n % 50),
            prefix: "ako_9311c954".into(),
        })
        .target(format!("key_{n}"))
        .request_id(format!("req_{n:012}"))
        .status(201)
        .latency(Duration::from_micros(1234))
        .ip([203, 0, 113, (n % 250) as u8].into())
        .user_agent("align-cli/0.1 (linux; x86_64)")
        .metadata(serde_json::json!({"graceSeconds": 3600, "scope": "project"}))
        .build()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The same columns the sink writes, without sealing: hashes are left as zero bytes. The
/// personal data comes precomputed in the bytes the sink stores (the sink encodes it inside
/// its timed path), so the comparison errs in the plain insert's favour.
fn plain_insert(conn: &mut Connection, rows: &[(Entry, Vec<u8>)], next_seq: &mut i64) {
    for chunk in rows.chunks(PLAIN_BATCH) {
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO audit_records (stream, sequence, id, time, organization, \
                     environment, actor_kind, actor_id, actor_prefix, action, target, \
                     request_id, method, path, status, latency_us, subject, metadata, personal, \
                     anonymised, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                     ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
                )
                .unwrap();
            for (e, personal) in chunk {
                *next_seq += 1;
                let (kind, id, prefix) = match e.actor() {
                    Actor::ApiKey { id, prefix } => {
                        ("apiKey", Some(id.as_str()), Some(prefix.as_str()))
                    }
                    Actor::User { id } => ("user", Some(id.as_str()), None),
                    Actor::System => ("system", None, None),
                };
                let zero = [0u8; 32];
                stmt.execute(params![
                    e.stream().as_str(),
                    *next_seq,
                    e.id().as_bytes().as_slice(),
                    e.time().timestamp_millis(),
                    e.organization(),
                    e.environment().map(|v| v.as_str()),
                    kind,
                    id,
                    prefix,
                    e.action(),
                    e.target(),
                    e.request_id(),
                    e.method(),
                    e.path(),
                    e.status(),
                    e.latency_us().map(|l| l as i64),
                    e.subject(),
                    e.metadata_json(),
                    personal,
                    false,
                    zero.as_slice(),
                    zero.as_slice(),
                ])
                .unwrap();
            }
        }
        let heads = "INSERT INTO audit_heads (stream, sequence, hash) VALUES ('request', ?1, ?2) \
            ON CONFLICT(stream) DO UPDATE SET sequence = excluded.sequence, hash = excluded.hash";
        tx.execute(heads, params![*next_seq, [0u8; 32].as_slice()])
            .unwrap();
        tx.commit().unwrap();
    }
}

fn open_sink(rt: &tokio::runtime::Runtime, path: &Path) -> SqliteSink {
    rt.block_on(SqliteSink::open(path, SqliteSinkConfig::default()))
        .unwrap()
}

/// The personal-data column the sink stores for each of `entries`, read back from a sink
/// that wrote them.
fn stored_personal(rt: &tokio::runtime::Runtime, dir: &Path, entries: &[Entry]) -> Vec<Vec<u8>> {
    let path = dir.join("stored.db");
    let sink = open_sink(rt, &path);
    rt.block_on(async {
        for e in entries {
            sink.submit(e.clone()).await.unwrap();
        }
        sink.close().await.unwrap();
    });
    let conn = Connection::open(&path).unwrap();
    let mut stmt = conn
        .prepare("SELECT personal FROM audit_records ORDER BY sequence")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Both sides of the append comparison: a chained SQLite sink and a raw connection to a
/// database with the identical schema (made by the sink's migrations).
struct AppendSetup {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    sink: SqliteSink,
    plain: Connection,
    next_seq: i64,
    template: Vec<Entry>,
    rows: Vec<(Entry, Vec<u8>)>,
}

impl AppendSetup {
    fn new() -> Self {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let template: Vec<Entry> = (0..APPEND_ROWS).map(entry).collect();
        let rows = template
            .iter()
            .cloned()
            .zip(stored_personal(&rt, dir.path(), &template))
            .collect();
        let sink = open_sink(&rt, &dir.path().join("chained.db"));
        let plain_path = dir.path().join("plain.db");
        rt.block_on(open_sink(&rt, &plain_path).close()).unwrap();
        let plain = Connection::open(&plain_path).unwrap();
        plain
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .unwrap();
        Self {
            rt,
            _dir: dir,
            sink,
            plain,
            next_seq: 0,
            template,
            rows,
        }
    }

    fn chained(&self, entries: Vec<Entry>) {
        self.rt.block_on(async {
            for e in entries {
                self.sink.submit(e).await.unwrap();
            }
            self.sink.flush().await.unwrap();
        })
    }

    fn plain(&mut self, rows: &[(Entry, Vec<u8>)]) {
        plain_insert(&mut self.plain, rows, &mut self.next_seq);
    }
}

fn append(c: &mut Criterion) {
    let mut s = AppendSetup::new();
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(APPEND_ROWS as u64));
    g.sample_size(10);
    g.bench_function("chained_sqlite_sink", |b| {
        b.iter_batched(
            || s.template.clone(),
            |e| s.chained(e),
            BatchSize::LargeInput,
        )
    });
    let rows = s.rows.clone();
    g.bench_function("plain_batched_insert", |b| {
        b.iter_batched(|| rows.clone(), |r| s.plain(&r), BatchSize::LargeInput)
    });
    g.finish();
}

/// Records to verify, and the bytes verification hashes, laid out for bare SHA-256.
struct VerifySetup {
    records: Vec<Record>,
    preimages: Vec<Vec<u8>>,
    openings: Vec<Vec<u8>>,
}

impl VerifySetup {
    fn new() -> Self {
        let sink = MemorySink::new();
        runtime().block_on(async {
            for n in 0..VERIFY_RECORDS {
                sink.append(entry(n)).await.unwrap();
            }
        });
        let records = sink.records(Stream::Request);
        let preimages = records.iter().map(Record::preimage).collect();
        let openings = records.iter().flat_map(openings).collect();
        Self {
            records,
            preimages,
            openings,
        }
    }

    fn verify(&self) {
        let mut v = ChainVerifier::new(Stream::Request);
        for r in &self.records {
            assert!(v.push(r));
        }
        black_box(v.finish(None));
    }

    /// SHA-256 over each record's canonical bytes.
    fn bare_records(&self) {
        for p in &self.preimages {
            black_box(Digest::of(p));
        }
    }

    /// SHA-256 over everything verification hashes: each record's canonical bytes and each
    /// commitment opening still held, one call each, as the verifier makes them.
    fn bare_all(&self) {
        for p in self.preimages.iter().chain(&self.openings) {
            black_box(Digest::of(p));
        }
    }
}

fn verify(c: &mut Criterion) {
    let s = VerifySetup::new();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(VERIFY_RECORDS as u64));
    g.bench_function("chain_verifier", |b| b.iter(|| s.verify()));
    g.bench_function("bare_sha256_same_record_bytes", |b| {
        b.iter(|| s.bare_records())
    });
    g.bench_function("bare_sha256_all_hashed_bytes", |b| b.iter(|| s.bare_all()));
    g.finish();
    let bytes: usize = s.preimages.iter().map(Vec::len).sum();
    let opening_bytes: usize = s.openings.iter().map(Vec::len).sum();
    eprintln!(
        "verify: {VERIFY_RECORDS} records, {} canonical bytes and {} commitment openings \
         ({} bytes) per record on average",
        bytes / VERIFY_RECORDS,
        s.openings.len() / VERIFY_RECORDS,
        opening_bytes / VERIFY_RECORDS
    );
}

/// Seconds `f` takes.
fn timed(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The ratios the targets are about, measured with the two sides alternating round by round,
/// so that load from other processes on a shared machine hits both alike. Prints the median
/// of the per-round rate ratios (subject / baseline).
fn interleaved_ratios(_: &mut Criterion) {
    let mut a = AppendSetup::new();
    let append: Vec<f64> = (0..RATIO_ROUNDS)
        .map(|_| {
            let (entries, rows) = (a.template.clone(), a.rows.clone());
            let chained = timed(|| a.chained(entries));
            let plain = timed(|| a.plain(&rows));
            plain / chained
        })
        .collect();
    let v = VerifySetup::new();
    let (mut vs_records, mut vs_all) = (Vec::new(), Vec::new());
    for _ in 0..RATIO_ROUNDS {
        let verify = timed(|| v.verify());
        vs_records.push(timed(|| v.bare_records()) / verify);
        vs_all.push(timed(|| v.bare_all()) / verify);
    }
    eprintln!(
        "interleaved medians over {RATIO_ROUNDS} rounds: chained append at {:.0}% of the plain \
         insert rate; verify at {:.0}% of bare SHA-256 over the record bytes, {:.0}% over all \
         bytes it hashes",
        100.0 * median(append),
        100.0 * median(vs_records),
        100.0 * median(vs_all)
    );
    a.rt.block_on(a.sink.close()).unwrap();
}

/// The commitment opening verification hashes for `record`, rebuilt from its stored JSON
/// form as `docs/audit-chain.md` specifies: `salt || u64 count || (str name || str value)…`.
fn openings(record: &Record) -> Vec<Vec<u8>> {
    let json = serde_json::to_value(record).unwrap();
    let p = &json["entry"]["personal"];
    let mut out = Vec::new();
    for (salt, values) in [("salt", "values"), ("coarseSalt", "coarseValues")] {
        let (Some(salt), Some(values)) = (p[salt].as_str(), p[values].as_object()) else {
            continue;
        };
        let mut o: Vec<u8> = (0..salt.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&salt[i..i + 2], 16).unwrap())
            .collect();
        o.extend_from_slice(&(values.len() as u64).to_be_bytes());
        for (name, value) in values {
            for s in [name.as_str(), value.as_str().unwrap()] {
                o.extend_from_slice(&(s.len() as u32).to_be_bytes());
                o.extend_from_slice(s.as_bytes());
            }
        }
        out.push(o);
    }
    out
}

criterion_group!(benches, append, verify, interleaved_ratios);
criterion_main!(benches);
