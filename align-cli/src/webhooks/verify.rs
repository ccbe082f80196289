//! `align webhooks verify`: check a delivery (payload and headers from files or stdin) against
//! an endpoint secret, as a receiver would.

use std::io::Read;
use std::path::{Path, PathBuf};

use align_webhooks::{
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, VerificationKey, WebhookVerifier,
};
use serde_json::json;

use crate::output::{Failure, Out};

/// What `webhooks verify` was given.
pub(crate) struct VerifyArgs {
    pub(crate) secret_file: Option<PathBuf>,
    pub(crate) headers: PathBuf,
    pub(crate) payload: PathBuf,
    pub(crate) now: Option<i64>,
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))
    }
}

/// The value of header `name` in `Name: value` lines (case-insensitive; `curl -D` output).
fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The verification keys in `secret_file`, or else in `ALIGN_WEBHOOK_SECRET`: one `whsec_`
/// secret or `whpk_` key per line (or separated by spaces), so that both the old and the new
/// secret can be accepted while an endpoint's secret rotates.
///
/// The secret comes from a file or the environment, never from a flag value that would land
/// in shell history and `ps` output; errors never repeat it.
pub(crate) fn verification_keys(
    secret_file: Option<&Path>,
) -> Result<Vec<VerificationKey>, Failure> {
    let text =
        zeroize::Zeroizing::new(match (secret_file, std::env::var("ALIGN_WEBHOOK_SECRET")) {
            (Some(f), _) => String::from_utf8(read(f)?)
                .map_err(|_| Failure::usage("the secret file is not UTF-8"))?,
            (None, Ok(s)) => s,
            (None, Err(_)) => {
                return Err(Failure::usage(
                    "pass --secret-file FILE or set ALIGN_WEBHOOK_SECRET",
                ));
            }
        });
    let keys = text
        .split_whitespace()
        .enumerate()
        .map(|(i, k)| {
            VerificationKey::parse(k).map_err(|_| {
                Failure::usage(format!("secret {} is not a whsec_ or whpk_ key", i + 1))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(Failure::usage("the secret is empty"));
    }
    Ok(keys)
}

pub(crate) fn verify(a: &VerifyArgs, out: &Out) -> Result<(), Failure> {
    let keys = verification_keys(a.secret_file.as_deref())?;
    let headers = String::from_utf8(read(&a.headers)?)
        .map_err(|_| Failure::usage("the headers file is not UTF-8"))?;
    let body = read(&a.payload)?;
    let missing = |h: &str| Failure::usage(format!("the headers have no {h}"));
    let id = header(&headers, HEADER_ID).ok_or_else(|| missing(HEADER_ID))?;
    let ts = header(&headers, HEADER_TIMESTAMP).ok_or_else(|| missing(HEADER_TIMESTAMP))?;
    let sig = header(&headers, HEADER_SIGNATURE).ok_or_else(|| missing(HEADER_SIGNATURE))?;
    let now = a.now.unwrap_or_else(|| chrono::Utc::now().timestamp());
    match WebhookVerifier::with_keys(keys).verify_parts(id, ts, sig, &body, now) {
        Ok(v) => {
            out.object(&json!({ "verified": true, "webhookId": v.id, "timestamp": v.timestamp }))
        }
        Err(e) => Err(Failure::tampered(format!(
            "the delivery does not verify: {e}"
        ))),
    }
}
