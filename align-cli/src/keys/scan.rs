//! `align keys scan PATH…`: finds Align API keys in files before they are committed or
//! shipped (a pre-commit hook, a CI step).
//!
//! Directories are walked in parallel with the `ignore` crate (ripgrep's walker), which
//! honours `.gitignore`, `.ignore` and git's exclude files; hidden files such as `.env` are
//! scanned (that is where keys hide), `.git` itself is not. A file with a NUL byte in its
//! first 8 KiB is taken as binary and skipped, as git and ripgrep do. Every string of the
//! token's shape is checked with `align_keys::token::parse`, so only strings with a valid
//! checksum count: mistyped keys, look-alikes and test patterns do not. What is printed is
//! where (`path:line`) and the key's prefix, never the secret.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ignore::{WalkBuilder, WalkState};
use regex::bytes::Regex;
use serde_json::json;

use crate::output::Failure;

/// A token's shape: tag, 8 lowercase hex, 49 base62 (43 secret + 6 checksum).
const TOKEN_SHAPE: &str = r"ak[ot]_[0-9a-f]{8}_[0-9A-Za-z]{49}";
/// How much of a file is looked at for a NUL byte.
const BINARY_SNIFF: usize = 8 * 1024;

/// One key found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Found {
    /// The file.
    pub(crate) path: PathBuf,
    /// 1-based line.
    pub(crate) line: usize,
    /// The key's prefix (`ako_9311c954`).
    pub(crate) prefix: String,
}

/// Whether `b` may continue a token (so a token may not start right after it or end right
/// before it).
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The keys with a valid checksum in `bytes`, with their 1-based lines.
pub(crate) fn find_in(shape: &Regex, bytes: &[u8]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let (mut line, mut counted) = (1, 0);
    for m in shape.find_iter(bytes) {
        let before = m.start().checked_sub(1).and_then(|i| bytes.get(i));
        let after = bytes.get(m.end());
        if before.is_some_and(|b| is_word(*b)) || after.is_some_and(|b| b.is_ascii_alphanumeric()) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(m.as_bytes()) else {
            continue;
        };
        let Ok(token) = align_keys::token::parse(text) else {
            continue;
        };
        line += bytes[counted..m.start()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        counted = m.start();
        found.push((line, token.prefix().to_owned()));
    }
    found
}

/// Reads `path` unless it is binary; `None` for a binary file.
fn read_text(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.clear();
    std::fs::File::open(path)?.read_to_end(buf)?;
    let head = &buf[..buf.len().min(BINARY_SNIFF)];
    Ok(!head.contains(&0))
}

/// Scans `paths` (files or directories). Problems reading a file are warned about on
/// stderr and do not stop the scan.
pub(crate) fn scan(paths: &[PathBuf]) -> Result<Vec<Found>, Failure> {
    let shape = Regex::new(TOKEN_SHAPE).map_err(|e| Failure::usage(e.to_string()))?;
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
    walk.build_parallel().run(|| {
        let shape = shape.clone();
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
                    let here = find_in(&shape, &buf);
                    if !here.is_empty() {
                        let mut all = found.lock().unwrap_or_else(PoisonError::into_inner);
                        all.extend(here.into_iter().map(|(line, prefix)| Found {
                            path: entry.path().to_owned(),
                            line,
                            prefix,
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
                let environment = if f.prefix.starts_with("akt_") {
                    "sandbox"
                } else {
                    "live"
                };
                json!({
                    "path": f.path.display().to_string(),
                    "line": f.line,
                    "prefix": f.prefix,
                    "environment": environment,
                })
            })
            .collect();
        out.push_str(&serde_json::Value::Array(rows).to_string());
        out.push('\n');
    } else {
        for f in &found {
            out.push_str(&format!("{}:{} {}\n", f.path.display(), f.line, f.prefix));
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
    Err(Failure::Found(format!(
        "{} API key(s) found: remove them, and revoke any that left this machine \
         (align keys report-compromise ID)",
        found.len()
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code: a failure should panic")]
mod tests {
    use super::*;

    // Test-vector tokens (fixtures, not keys), split so that no scanner flags this file.
    const VALID: &str = concat!(
        "ako_9311c954_",
        "00000000000000000000000000000000000000000000",
        "Rws4U"
    );

    #[test]
    fn only_whole_tokens_with_a_valid_checksum_count() {
        let shape = Regex::new(TOKEN_SHAPE).unwrap();
        let mistyped = VALID.replacen("00000", "00001", 1);
        let longer = format!("x{VALID}");
        let text = format!("a\n{VALID}\n{mistyped}\n{longer}\nkey=\"{VALID}\"\n");
        let found = find_in(&shape, text.as_bytes());
        assert_eq!(
            found,
            vec![
                (2, "ako_9311c954".to_owned()),
                (5, "ako_9311c954".to_owned())
            ]
        );
    }
}
