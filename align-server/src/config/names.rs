//! What the settings' names give besides reading them: the warning for an `ALIGN_*` variable
//! that is no setting, the refusal of an unknown file key (both naming the closest known
//! name), and the settings table of `docs/operations.md`.

use super::{Config, settings};

/// `ALIGN_*` environment variables that are not settings but are read by Align's programs,
/// scripts and tests: they never warn. Any `ALIGN_TEST_…` variable is one too.
pub const OTHER_VARIABLES: &[&str] = &[
    // The `align` command.
    "ALIGN_LOG",
    "ALIGN_CONFIG",
    "ALIGN_API_URL",
    "ALIGN_API_KEY",
    "ALIGN_WEBHOOK_SECRET",
    "ALIGN_USER_PASSWORD",
    "ALIGN_PROGRESS",
    // The examples.
    "ALIGN_RECEIVER_LISTEN",
    // Tests, benchmarks and scripts.
    "ALIGN_BLESS",
    "ALIGN_SOAK_SECS",
    "ALIGN_FUZZ_EXAMPLES",
    "ALIGN_FUZZ_SEED",
    "ALIGN_RELIABILITY_VENV",
    // The objects reliability/fuzz-api creates for reliability/schemathesis.toml.
    "ALIGN_FUZZ_KEY_UPDATE",
    "ALIGN_FUZZ_KEY_REVOKE",
    "ALIGN_FUZZ_KEY_REPORT",
    "ALIGN_FUZZ_KEY_ROTATE",
    "ALIGN_FUZZ_KEY_SUSPEND",
    "ALIGN_FUZZ_KEY_PRIVACY",
    "ALIGN_FUZZ_DELIVERY",
    "ALIGN_FUZZ_USER",
    "ALIGN_FUZZ_KEYSPACE",
    "ALIGN_FUZZ_KEYSPACE_UPDATE",
    "ALIGN_FUZZ_KEYSPACE_VOCABULARY",
    // The generated SDKs' run (`sdk/run`; ALIGN_BASE_URL as in the browser tests).
    "ALIGN_SDK_VENV",
    "ALIGN_SDK_USAGE",
    "ALIGN_SDK_ADMIN_KEY",
    "ALIGN_SDK_WEBHOOK_TARGET",
    "ALIGN_LEAST_PRIVILEGE_CASES",
    "ALIGN_AUDIT_CRASH_CHILD_DB",
    "ALIGN_WEBHOOKS_CRASH_CHILD_DB",
    // The browser tests (`browser/run`).
    "ALIGN_CHROMIUM",
    "ALIGN_BROWSER_NO_CHROMIUM",
    "ALIGN_BROWSER_ARTIFACTS",
    "ALIGN_BASE_URL",
    "ALIGN_BOOTSTRAP_KEY",
    "ALIGN_PROJECT_ID",
    "ALIGN_ADMIN_EMAIL",
    "ALIGN_ADMIN_PASSWORD",
    "ALIGN_ENGINEER_EMAIL",
    "ALIGN_ENGINEER_PASSWORD",
    "ALIGN_THROTTLE_EMAIL",
    "ALIGN_THROTTLE_PASSWORD",
    "ALIGN_THROTTLE_HTTP_EMAIL",
    "ALIGN_THROTTLE_HTTP_PASSWORD",
    "ALIGN_PROFILE_EMAIL",
    "ALIGN_PROFILE_PASSWORD",
    "ALIGN_DOOMED_EMAIL",
    "ALIGN_DOOMED_PASSWORD",
];

/// The warning for the environment variable `name`: `None` unless it starts with `ALIGN_`
/// and is neither a setting nor one of [`OTHER_VARIABLES`]; else it names the closest known
/// variable by edit distance (`ALIGN_RATELIMIT_PERMINUTE` → "did you mean
/// ALIGN_RATELIMIT_PER_MINUTE?"). It names the variable, never its value.
///
/// ```
/// let w = align_server::config::unknown_variable("ALIGN_RATELIMIT_PERMINUTE").unwrap();
/// assert!(w.contains("did you mean ALIGN_RATELIMIT_PER_MINUTE?"));
/// assert_eq!(align_server::config::unknown_variable("ALIGN_LOG"), None);
/// ```
pub fn unknown_variable(name: &str) -> Option<String> {
    if !name.starts_with("ALIGN_")
        || name.starts_with("ALIGN_TEST_")
        || OTHER_VARIABLES.contains(&name)
    {
        return None;
    }
    let known: Vec<String> = settings()
        .iter()
        .map(|s| s.env())
        .chain(OTHER_VARIABLES.iter().map(|v| (*v).to_owned()))
        .collect();
    if known.iter().any(|k| k == name) {
        return None;
    }
    let closest = closest(name, known.iter().map(String::as_str))?;
    Some(format!(
        "the environment variable {name} is not a setting and is ignored; did you mean {closest}?"
    ))
}

/// The refusal of the file key `key`, naming the closest known key.
pub(crate) fn unknown_key(key: &str) -> String {
    match closest(key, settings().iter().map(|s| s.key)) {
        Some(near) => format!("unknown key `{key}`; did you mean `{near}`?"),
        None => format!("unknown key `{key}`"),
    }
}

/// The candidate nearest to `name` by Levenshtein distance (the first of equals).
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates.min_by_key(|c| strsim::levenshtein(name, c))
}

/// The settings table of `docs/operations.md` (key, environment variable, flag, default,
/// meaning), rendered from the declarations; a test keeps the committed one equal to it.
pub fn settings_table() -> String {
    let defaults = Config::default();
    let mut out = String::from(
        "| key | environment variable | flag | default | meaning |\n|---|---|---|---|---|\n",
    );
    for s in settings() {
        let default = match s.documented_default() {
            Some(text) => text.to_owned(),
            None => match defaults.show(s.key).flatten() {
                Some(value) => format!("`{value}`"),
                None => "(none)".to_owned(),
            },
        };
        let row = [
            format!("`{}`", s.key),
            format!("`{}`", s.env()),
            s.flag().unwrap_or("–").to_owned(),
            default,
            s.doc(),
        ];
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}
