//! `align keys scan PATH…`: finds API keys in files before they are committed or shipped (a
//! pre-commit hook, a CI step): Align's own (`ako_…`, `akt_…`) and the keys of any key space
//! (DESIGN §12, `acme_…`).
//!
//! Directories are walked in parallel with the `ignore` crate (ripgrep's walker), which
//! honours `.gitignore`, `.ignore` and git's exclude files; hidden files such as `.env` are
//! scanned (that is where keys hide), `.git` itself is not. A file with a NUL byte in its
//! first 8 KiB is taken as binary and skipped, as git and ripgrep do. Every string of the
//! token's shape (`{tag}_{id8}_{49 base62}`, found for both kinds in one pass by
//! [`KeyFinder::find_in`]) is checked with `align_keys::token::parse` (tag `ako`/`akt`) or
//! `align_keys::parse_keyspace_token` (any other tag of 2 to 8 lowercase letters), so only
//! strings with a valid checksum count: mistyped keys, look-alikes and test patterns do not.
//! What is printed is where (`path:line`) and the key's prefix, never the secret.

mod find;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ignore::{WalkBuilder, WalkState};
use serde_json::json;

use crate::output::Failure;
use find::{Hit, KeyFinder, Kind};

/// How much of a file is looked at for a NUL byte.
const BINARY_SNIFF: usize = 8 * 1024;

/// One key found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Found {
    /// The file.
    pub(crate) path: PathBuf,
    /// Where in the file, the key's prefix (`ako_9311c954`, `acme_9311c954`) and its kind.
    pub(crate) hit: Hit,
}

/// Reads `path` unless it is binary; `None` for a binary file.
fn read_text(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.clear();
    std::fs::File::open(path)?.read_to_end(buf)?;
    let head = &buf[..buf.len().min(BINARY_SNIFF)];
    // memchr's vector search: `<[u8]>::contains` is a word-at-a-time loop, a few per cent of
    // the whole scan on a source tree.
    Ok(memchr::memchr(0, head).is_none())
}

/// Scans `paths` (files or directories). Problems reading a file are warned about on
/// stderr and do not stop the scan.
pub(crate) fn scan(paths: &[PathBuf]) -> Result<Vec<Found>, Failure> {
    let (first, rest) = paths
        .split_first()
        .ok_or_else(|| Failure::usage("name at least one file or directory to scan"))?;
    for p in paths {
        if !p.exists() {
            return Err(Failure::usage(format!(
                "{}: no such file or directory",
                p.display()
            )));
        }
    }
    let mut walk = WalkBuilder::new(first);
    for p in rest {
        walk.add(p);
    }
    walk.hidden(false)
        .require_git(false)
        .filter_entry(|e| e.file_name() != ".git");
    let found = Arc::new(Mutex::new(Vec::new()));
    let finder = KeyFinder::new();
    walk.build_parallel().run(|| {
        let found = Arc::clone(&found);
        let mut buf = Vec::new();
        Box::new(move |entry| {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("align: warning: {e}");
                    return WalkState::Continue;
                }
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                return WalkState::Continue;
            }
            match read_text(entry.path(), &mut buf) {
                Ok(true) => {
                    let here = finder.find_in(&buf);
                    if !here.is_empty() {
                        let mut all = found.lock().unwrap_or_else(PoisonError::into_inner);
                        all.extend(here.into_iter().map(|hit| Found {
                            path: entry.path().to_owned(),
                            hit,
                        }));
                    }
                }
                Ok(false) => {}
                Err(e) => eprintln!("align: warning: {}: {e}", entry.path().display()),
            }
            WalkState::Continue
        })
    });
    let mut found = std::mem::take(&mut *found.lock().unwrap_or_else(PoisonError::into_inner));
    found.sort();
    found.dedup();
    Ok(found)
}

/// `align keys scan`: prints each find (`path:line prefix`, or a JSON array with `--json`)
/// and fails (exit 1) when there is any.
pub(crate) fn run(paths: &[PathBuf], json: bool) -> Result<(), Failure> {
    let found = scan(paths)?;
    let mut out = String::new();
    if json {
        let rows: Vec<_> = found
            .iter()
            .map(|f| {
                let (path, line, prefix) =
                    (f.path.display().to_string(), f.hit.line, &f.hit.prefix);
                match f.hit.kind {
                    Kind::Align(environment) => json!({
                        "path": path, "line": line, "prefix": prefix,
                        "environment": environment.as_str(), "kind": "align",
                    }),
                    // A key space's token does not name an environment; its tag (the prefix
                    // before `_`) names the key space.
                    Kind::Keyspace => json!({
                        "path": path, "line": line, "prefix": prefix, "kind": "keyspace",
                    }),
                }
            })
            .collect();
        out.push_str(&serde_json::Value::Array(rows).to_string());
        out.push('\n');
    } else {
        for f in &found {
            out.push_str(&format!(
                "{}:{} {}\n",
                f.path.display(),
                f.hit.line,
                f.hit.prefix
            ));
        }
    }
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(out.as_bytes())?;
        stdout.flush()?;
    }
    if found.is_empty() {
        return Ok(());
    }
    let revoke = if found.iter().any(|f| f.hit.kind == Kind::Keyspace) {
        "align keys report-compromise ID for Align's keys; a key space's keys through the \
         service that issued them"
    } else {
        "align keys report-compromise ID"
    };
    Err(Failure::Found(format!(
        "{} API key(s) found: remove them, and revoke any that left this machine ({revoke})",
        found.len()
    )))
}
