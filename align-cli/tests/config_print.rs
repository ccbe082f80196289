//! `align config print`: every setting's effective value with its source, secrets masked; an
//! `ALIGN_*` variable that is no setting warns, naming the closest one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const PLANTED: &str = "PlantedS3cretValue";

/// `align config print ARGS` with only `env` among the `ALIGN_*` variables.
fn print(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_align"));
    for (name, _) in std::env::vars() {
        if name.starts_with("ALIGN_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(["config", "print"])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn config_file(dir: &Path) -> String {
    let file = dir.join("align.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:9000\"\n\
             [database]\nurl = \"postgres://align:{PLANTED}@db.example:5432/align\"\n\
             [notifications]\nsmtp_url = \"smtps://mailer:{PLANTED}@smtp.example.com\"\n\
             [ratelimit]\nper_minute = 100\n"
        ),
    )
    .unwrap();
    file.display().to_string()
}

#[test]
fn config_print_shows_each_setting_s_value_and_source_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path());
    let redis = format!("redis://:{PLANTED}@127.0.0.1:6379/2");
    let token = format!("{PLANTED}-{PLANTED}-{PLANTED}");
    let env = [
        ("ALIGN_RATELIMIT_PER_MINUTE", "50"),
        ("ALIGN_RATELIMIT_REDIS_URL", redis.as_str()),
        ("ALIGN_METRICS_TOKEN", token.as_str()),
        ("ALIGN_LOG", "debug"),
    ];
    let json = print(
        &["--config", &file, "--data-dir", "/srv/align", "--json"],
        &env,
    );
    assert!(json.status.success(), "{}", text(&json.stderr));
    let table = print(&["--config", &file, "--data-dir", "/srv/align"], &env);
    assert!(table.status.success(), "{}", text(&table.stderr));
    for out in [&json, &table] {
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!all.contains(PLANTED), "a secret was printed:\n{all}");
    }

    let rows: Value = serde_json::from_slice(&json.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(rows.len() >= 46, "{}", rows.len());
    let row = |key: &str| {
        let r = rows.iter().find(|r| r["key"] == key).unwrap();
        (r["value"].clone(), r["source"].as_str().unwrap().to_owned())
    };
    let from_file = format!("file {file}");
    assert_eq!(row("listen"), ("127.0.0.1:9000".into(), from_file.clone()));
    assert_eq!(
        row("data_dir"),
        ("/srv/align".into(), "flag --data-dir".into())
    );
    assert_eq!(
        row("ratelimit.per_minute"),
        ("50".into(), "env ALIGN_RATELIMIT_PER_MINUTE".into())
    );
    assert_eq!(row("webhooks.concurrency"), ("32".into(), "default".into()));
    assert_eq!(row("tls.cert_file"), (Value::Null, "default".into()));
    assert_eq!(
        row("database.url"),
        (
            "postgres://align:***@db.example:5432/align".into(),
            from_file.clone()
        )
    );
    assert_eq!(
        row("ratelimit.redis_url").0,
        "redis://:***@127.0.0.1:6379/2"
    );
    assert_eq!(
        row("notifications.smtp_url"),
        ("smtps://mailer:***@smtp.example.com".into(), from_file)
    );
    assert_eq!(row("metrics.token").0, "***");
    let env_of = rows.iter().find(|r| r["key"] == "limits.max_body_bytes");
    assert_eq!(env_of.unwrap()["env"], "ALIGN_LIMITS_MAX_BODY_BYTES");

    let table = text(&table.stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with("ratelimit.per_minute "))
        .unwrap();
    assert!(line.contains("env ALIGN_RATELIMIT_PER_MINUTE"), "{line}");
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path());
    let out = print(
        &["--config", &file, "--listen", "127.0.0.1:9002", "--json"],
        &[("ALIGN_LISTEN", "127.0.0.1:9001")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listen = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "listen")
        .unwrap();
    assert_eq!(listen["value"], "127.0.0.1:9002");
    assert_eq!(listen["source"], "flag --listen");
}

#[test]
fn a_bad_setting_fails_config_print_with_the_setting_named() {
    let out = print(&[], &[("ALIGN_RATELIMIT_PER_MINUTE", "lots")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("ALIGN_RATELIMIT_PER_MINUTE"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_unknown_align_variable_is_a_warning_naming_the_closest_setting() {
    let out = print(
        &["--json"],
        &[
            ("ALIGN_RATELIMIT_PERMINUTE", "5"),
            // Read by the program or its tests, not settings: no warning.
            ("ALIGN_LOG", "warn"),
            ("ALIGN_API_URL", "http://127.0.0.1:1"),
            ("ALIGN_API_KEY", "not-a-key"),
            ("ALIGN_WEBHOOK_SECRET", "not-a-secret"),
            ("ALIGN_TEST_ANYTHING", "1"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("ALIGN_RATELIMIT_PERMINUTE")
            && warnings[0].contains("did you mean ALIGN_RATELIMIT_PER_MINUTE?"),
        "{stderr}"
    );
    // The value is ignored: the default stands.
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let per_minute = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "ratelimit.per_minute")
        .unwrap();
    assert_eq!(per_minute["value"], "600");
    assert_eq!(per_minute["source"], "default");
}
