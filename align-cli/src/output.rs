//! Output: human tables by default, JSON with `--json`; errors with documented exit codes.

use std::process::ExitCode;

use serde_json::Value;

/// Why a command failed, with its exit code:
/// 1 failure, 2 usage, 3 not found, 4 log tampered with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// Bad arguments or state the operator must fix (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The named object does not exist (exit 3).
    #[error("no such {0}")]
    NotFound(&'static str),
    /// `audit verify` found a broken link (exit 4).
    #[error("{0}")]
    Tampered(String),
    /// The server failed, refused for now (429) or could not be reached (exit 1).
    #[error("{0}")]
    Remote(String),
    /// The key store failed (exit 1).
    #[error(transparent)]
    Keys(#[from] align_keys::Error),
    /// The audit log failed (exit 1).
    #[error(transparent)]
    Audit(#[from] align_audit::Error),
    /// The server failed (exit 1).
    #[error(transparent)]
    Server(#[from] align_server::Error),
    /// The webhook store failed (exit 1).
    #[error(transparent)]
    Webhooks(align_webhooks::Error),
    /// `keys scan` found API keys (exit 1).
    #[error("{0}")]
    Found(String),
    /// `keys verify`: the presented key is not VALID; its code (exit 1).
    #[error("the key did not verify: {0}")]
    NotValid(String),
    /// Writing the output failed (exit 1).
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl From<align_webhooks::Error> for Failure {
    fn from(e: align_webhooks::Error) -> Self {
        use align_webhooks::{Error, ObjectKind};
        match e {
            Error::NotFound(ObjectKind::Endpoint) => Self::NotFound("endpoint"),
            Error::NotFound(ObjectKind::Delivery) => Self::NotFound("delivery"),
            Error::NotFound(ObjectKind::Message) => Self::NotFound("message"),
            // The policy's reasons never contain the URL (which may hold a secret).
            Error::UrlRefused(defect) => Self::Usage(format!("endpoint URL refused: {defect}")),
            Error::InvalidSetting(name) => Self::Usage(format!("invalid value for {name}")),
            other => Self::Webhooks(other),
        }
    }
}

impl Failure {
    pub(crate) fn usage(m: impl Into<String>) -> Self {
        Self::Usage(m.into())
    }
    pub(crate) fn not_found(what: &'static str) -> Self {
        Self::NotFound(what)
    }
    pub(crate) fn remote(m: impl Into<String>) -> Self {
        Self::Remote(m.into())
    }
    pub(crate) fn tampered(m: impl Into<String>) -> Self {
        Self::Tampered(m.into())
    }
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Usage(_) => 2,
            Self::NotFound(_) => 3,
            Self::Tampered(_) => 4,
            _ => 1,
        })
    }
}

/// What `secret_object` says after printing a freshly minted API key.
pub(crate) const KEY_SHOWN_ONCE: &str =
    "The key above is shown once. Store it now: only its hash is kept.";

/// Where results go.
pub(crate) struct Out {
    pub(crate) json: bool,
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Out {
    /// One object: JSON, or `key: value` lines.
    pub(crate) fn object(&self, v: &Value) -> Result<(), Failure> {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{v}")?;
        } else if let Value::Object(map) = v {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            for (k, val) in map {
                writeln!(stdout, "{k:width$}  {}", cell(val))?;
            }
        }
        Ok(())
    }

    /// One line of text.
    pub(crate) fn line(&self, text: &str) -> Result<(), Failure> {
        use std::io::Write;
        writeln!(std::io::stdout().lock(), "{text}")?;
        Ok(())
    }

    /// An object holding a secret shown once: the same output on stdout, plus `warning` on
    /// stderr (never the secret itself).
    pub(crate) fn secret_object(&self, v: &Value, warning: &str) -> Result<(), Failure> {
        self.object(v)?;
        eprintln!("{warning}");
        Ok(())
    }

    /// Rows: a JSON array, or an aligned table of `columns`.
    pub(crate) fn table(&self, rows: &[Value], columns: &[&str]) -> Result<(), Failure> {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{}", Value::Array(rows.to_vec()))?;
            return Ok(());
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| columns.iter().map(|c| cell(&r[*c])).collect())
            .collect();
        let widths: Vec<usize> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cells
                    .iter()
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(c.len())
            })
            .collect();
        let line = |values: Vec<&str>| {
            values
                .iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        writeln!(stdout, "{}", line(columns.to_vec()))?;
        for r in &cells {
            writeln!(stdout, "{}", line(r.iter().map(String::as_str).collect()))?;
        }
        Ok(())
    }
}
