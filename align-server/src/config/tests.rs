use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn defaults_match_the_design() {
    let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.rate_limit_per_minute, 600);
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
}

#[test]
fn leak_settings_from_file_and_env_and_the_smtp_url_never_prints() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("align.toml");
    std::fs::write(
        &file,
        "[secret_scanning]\ngithub_keys_file = \"/etc/align/gh.json\"\n\
         [notifications]\nsmtp_url = \"smtps://u:hunter2@smtp.example.com\"\n\
         smtp_from = \"security@example.com\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
    assert_eq!(
        c.secret_scanning.github_keys_file,
        Some(PathBuf::from("/etc/align/gh.json"))
    );
    assert_eq!(c.notifications.smtp_from, "security@example.com");
    assert!(!format!("{c:?}").contains("hunter2"));

    let c = Config::load(
        None,
        env(&[
            ("ALIGN_SECRET_SCANNING_GITHUB_KEYS_FILE", "/tmp/gh.json"),
            ("ALIGN_NOTIFICATIONS_SMTP_URL", "smtp://127.0.0.1:2525"),
        ]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        c.secret_scanning.github_keys_file,
        Some(PathBuf::from("/tmp/gh.json"))
    );
    assert_eq!(
        c.notifications.smtp_url.as_deref(),
        Some("smtp://127.0.0.1:2525")
    );

    for (name, value) in [
        (
            "ALIGN_NOTIFICATIONS_SMTP_URL",
            "http://u:hunter2@example.com",
        ),
        ("ALIGN_NOTIFICATIONS_SMTP_FROM", "not an address"),
    ] {
        let e = Config::load(None, env(&[(name, value)]), &Overrides::default()).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("notifications."), "{e}");
    }
}

#[test]
fn file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("align.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9000\"\n[ratelimit]\nper_minute = 100\n",
    )
    .unwrap();
    let c = Config::load(
        Some(&file),
        env(&[
            ("ALIGN_RATELIMIT_PER_MINUTE", "50"),
            ("ALIGN_DATA_DIR", "/tmp/x"),
        ]),
        &Overrides {
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            data_dir: None,
        },
    )
    .unwrap();
    assert_eq!(c.rate_limit_per_minute, 50);
    assert_eq!(c.listen.port(), 9001);
    assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
}

#[test]
fn connection_settings_from_file_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("align.toml");
    std::fs::write(
        &file,
        "[limits]\nidle_timeout_secs = 20\nmax_connections = 5000\n",
    )
    .unwrap();
    let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
    assert_eq!(c.idle_timeout, Duration::from_secs(20));
    assert_eq!(c.max_connections, Some(5000));
    let c = Config::load(
        Some(&file),
        env(&[
            ("ALIGN_LIMITS_IDLE_TIMEOUT_SECS", "5"),
            ("ALIGN_LIMITS_MAX_CONNECTIONS", "50"),
        ]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!((c.idle_timeout.as_secs(), c.max_connections), (5, Some(50)));
    let c = Config::load(
        Some(&file),
        env(&[("ALIGN_LIMITS_MAX_CONNECTIONS", "")]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        c.max_connections, None,
        "empty: sized to the descriptor limit"
    );
    for (name, value, key) in [
        (
            "ALIGN_LIMITS_IDLE_TIMEOUT_SECS",
            "0",
            "limits.idle_timeout_secs",
        ),
        (
            "ALIGN_LIMITS_MAX_CONNECTIONS",
            "0",
            "limits.max_connections",
        ),
        (
            "ALIGN_LIMITS_MAX_CONNECTIONS",
            "many",
            "ALIGN_LIMITS_MAX_CONNECTIONS",
        ),
    ] {
        let e = Config::load(None, env(&[(name, value)]), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains(key), "{e}");
    }
}

#[test]
fn bad_settings_are_refused_with_the_key_named() {
    let e = Config::load(
        None,
        env(&[("ALIGN_RATELIMIT_PER_MINUTE", "lots")]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("ALIGN_RATELIMIT_PER_MINUTE"), "{e}");
    let e = Config::load(
        None,
        env(&[("ALIGN_DATABASE_URL", "mysql://x")]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("database.url"), "{e}");
    let e = Config::load(
        None,
        env(&[("ALIGN_DATABASE_URL", "postgres://u:s3cret@db:port/align")]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("database.url"), "{e}");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    let c = Config::load(
        None,
        env(&[("ALIGN_DATABASE_URL", "postgres://u:s3cret@db/align")]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        c.database,
        Database::Postgres("postgres://u:s3cret@db/align".into())
    );
    assert!(!format!("{c:?}").contains("s3cret"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("align.toml");
    std::fs::write(&file, "nonsense = 1\n").unwrap();
    assert!(Config::load(Some(&file), env(&[]), &Overrides::default()).is_err());
}

#[test]
fn redis_settings_from_file_and_env_never_show_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("align.toml");
    std::fs::write(
        &file,
        "[ratelimit]\nredis_url = \"redis://:s3cret@127.0.0.1:6379/2\"\nredis_failure = \"closed\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
    let url = c.redis.url.as_ref().unwrap();
    assert_eq!(url.expose(), "redis://:s3cret@127.0.0.1:6379/2");
    assert_eq!(c.redis.failure, RedisFailure::Closed);
    assert_eq!(c.redis.prefix, "align:rl:");
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("127.0.0.1:6379"), "{shown}");

    let c = Config::load(
        Some(&file),
        env(&[
            ("ALIGN_RATELIMIT_REDIS_URL", ""),
            ("ALIGN_RATELIMIT_REDIS_FAILURE", "open"),
            ("ALIGN_RATELIMIT_REDIS_PREFIX", "staging:"),
        ]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.redis.url, None);
    assert_eq!(c.redis.failure, RedisFailure::Open);
    assert_eq!(c.redis.prefix, "staging:");

    for (name, value, hint) in [
        ("ALIGN_RATELIMIT_REDIS_URL", "rediss://:s3cret@h/", "TLS"),
        ("ALIGN_RATELIMIT_REDIS_URL", "http://:s3cret@h/", "redis://"),
        ("ALIGN_RATELIMIT_REDIS_URL", "s3cret", "redis://"),
        (
            "ALIGN_RATELIMIT_REDIS_FAILURE",
            "sometimes",
            "open or closed",
        ),
    ] {
        let e = Config::load(None, env(&[(name, value)]), &Overrides::default()).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(hint), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}

#[test]
fn the_endpoint_cap_comes_from_file_and_env() {
    assert_eq!(
        Config::default().webhooks.max_endpoints_per_organization,
        100
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("align.toml");
    std::fs::write(&file, "[webhooks]\nmax_endpoints_per_organization = 7\n").unwrap();
    let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
    assert_eq!(c.webhooks.max_endpoints_per_organization, 7);
    let c = Config::load(
        Some(&file),
        env(&[("ALIGN_WEBHOOKS_MAX_ENDPOINTS_PER_ORGANIZATION", "12")]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.webhooks.max_endpoints_per_organization, 12);
    let e = Config::load(
        None,
        env(&[("ALIGN_WEBHOOKS_MAX_ENDPOINTS_PER_ORGANIZATION", "many")]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("ALIGN_WEBHOOKS_MAX_ENDPOINTS_PER_ORGANIZATION"),
        "{e}"
    );
}

#[test]
fn webhook_settings_from_file_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("align.toml");
    std::fs::write(
        &file,
        "[webhooks]\nretry_schedule = [1, 2]\nallow_private_targets = true\n",
    )
    .unwrap();
    let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
    assert!(c.webhooks.allow_private_targets);
    assert_eq!(c.webhooks.retry_schedule.delays().len(), 2);
    let c = Config::load(
        Some(&file),
        env(&[
            ("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "0"),
            ("ALIGN_WEBHOOKS_RETRY_SCHEDULE", "5,300,1800"),
        ]),
        &Overrides::default(),
    )
    .unwrap();
    assert!(!c.webhooks.allow_private_targets);
    assert_eq!(
        c.webhooks.retry_schedule.delays(),
        [5, 300, 1800].map(Duration::from_secs)
    );
    let e = Config::load(
        None,
        env(&[("ALIGN_WEBHOOKS_RETRY_SCHEDULE", "soon")]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("ALIGN_WEBHOOKS_RETRY_SCHEDULE"),
        "{e}"
    );
    let e = Config::load(
        None,
        env(&[("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "maybe")]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("ALLOW_PRIVATE"), "{e}");
}

#[test]
fn http_targets_for_live_endpoints_are_a_development_setting_off_by_default() {
    let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
    assert!(!c.webhooks.allow_http_targets);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("align.toml");
    std::fs::write(
        &file,
        "[webhooks]\nallow_private_targets = true\nallow_http_targets = true\n",
    )
    .unwrap();
    let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
    assert!(c.webhooks.allow_http_targets);
    let c = Config::load(
        Some(&file),
        env(&[("ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS", "false")]),
        &Overrides::default(),
    )
    .unwrap();
    assert!(!c.webhooks.allow_http_targets);
    // Local receivers are private destinations: the setting alone is refused, by name.
    let e = Config::load(
        None,
        env(&[("ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS", "1")]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("webhooks.allow_http_targets"), "{e}");
    assert!(e.to_string().contains("allow_private_targets"), "{e}");
    let c = Config::load(
        None,
        env(&[
            ("ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS", "1"),
            ("ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "1"),
        ]),
        &Overrides::default(),
    )
    .unwrap();
    assert!(c.webhooks.allow_http_targets);
    let e = Config::load(
        None,
        env(&[("ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS", "maybe")]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("ALLOW_HTTP"), "{e}");
}

#[test]
fn the_secrets_key_file_is_in_the_data_directory_unless_set() {
    let c = Config::load(
        None,
        env(&[("ALIGN_DATA_DIR", "/srv/align")]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        c.secrets_key_path(),
        PathBuf::from("/srv/align/secrets-key")
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("align.toml");
    std::fs::write(&file, "[secrets]\nkey_file = \"/etc/align/key\"\n").unwrap();
    let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
    assert_eq!(c.secrets_key_path(), PathBuf::from("/etc/align/key"));
    let c = Config::load(
        Some(&file),
        env(&[("ALIGN_SECRETS_KEY_FILE", "/run/secrets/align")]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.secrets_key_path(), PathBuf::from("/run/secrets/align"));
}

#[test]
fn console_settings_from_file_and_env() {
    let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
    assert!(c.console.enabled);
    assert_eq!(c.console.pbkdf2_iterations, 600_000);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("align.toml");
    std::fs::write(
        &file,
        "[console]\nenabled = false\npbkdf2_iterations = 200000\n",
    )
    .unwrap();
    let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
    assert!(!c.console.enabled);
    assert_eq!(c.console.pbkdf2_iterations, 200_000);
    let c = Config::load(
        Some(&file),
        env(&[
            ("ALIGN_CONSOLE_ENABLED", "1"),
            ("ALIGN_CONSOLE_PBKDF2_ITERATIONS", "100000"),
        ]),
        &Overrides::default(),
    )
    .unwrap();
    assert!(c.console.enabled);
    assert_eq!(c.console.pbkdf2_iterations, 100_000);
    let e = Config::load(
        None,
        env(&[("ALIGN_CONSOLE_PBKDF2_ITERATIONS", "1000")]),
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("console.pbkdf2_iterations"), "{e}");
    let c = Config::load(
        None,
        env(&[("ALIGN_CONSOLE_ORIGIN", "HTTPS://Align.Example.com/")]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(
        c.console.origin.as_deref(),
        Some("https://align.example.com")
    );
    for bad in [
        "align.example.com",
        "ftp://x",
        "https://x/console",
        "https://u:p@x",
    ] {
        let e = Config::load(
            None,
            env(&[("ALIGN_CONSOLE_ORIGIN", bad)]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("console.origin"), "{bad}: {e}");
    }
}

#[test]
fn the_anchor_interval_from_file_and_env() {
    let c = Config::load(None, env(&[]), &Overrides::default()).unwrap();
    assert_eq!(c.audit_anchor_interval, Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("align.toml");
    std::fs::write(&file, "[audit]\nanchor_interval_secs = 300\n").unwrap();
    let c = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
    assert_eq!(c.audit_anchor_interval, Duration::from_secs(300));
    let c = Config::load(
        Some(&file),
        env(&[("ALIGN_AUDIT_ANCHOR_INTERVAL_SECS", "5")]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.audit_anchor_interval, Duration::from_secs(5));
    for bad in ["0", "soon"] {
        let e = Config::load(
            None,
            env(&[("ALIGN_AUDIT_ANCHOR_INTERVAL_SECS", bad)]),
            &Overrides::default(),
        )
        .unwrap_err();
        let text = e.to_string().to_lowercase();
        assert!(text.contains("anchor_interval"), "{bad}: {e}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    /// Any file text and any values for our variables load or fail with a typed error
    /// that names a setting; nothing panics.
    #[test]
    fn hostile_settings_never_panic(
        text in proptest::prelude::prop_oneof![
            proptest::prelude::any::<String>(),
            "(listen|data_dir|\\[ratelimit\\]|\\[webhooks\\]|per_minute|retry_schedule) ?= ?[\"0-9a-z:.\\[\\], ]{0,30}\n{0,2}",
        ],
        name in proptest::sample::select(vec![
            "ALIGN_LISTEN", "ALIGN_RATELIMIT_PER_MINUTE", "ALIGN_LIMITS_MAX_BODY_BYTES",
            "ALIGN_WEBHOOKS_RETRY_SCHEDULE", "ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS",
            "ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS",
            "ALIGN_RATELIMIT_QUOTA_PER_DAY", "ALIGN_DATABASE_URL", "ALIGN_TLS_CERT_FILE",
            "ALIGN_LIMITS_IDLE_TIMEOUT_SECS", "ALIGN_LIMITS_MAX_CONNECTIONS",
        ]),
        value in proptest::prelude::any::<String>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("align.toml");
        std::fs::write(&file, &text).unwrap();
        match Config::load(Some(&file), env(&[(name, &value)]), &Overrides::default()) {
            Ok(_) | Err(Error::ConfigSyntax { .. } | Error::Setting { .. }) => {}
            Err(other) => proptest::prop_assert!(false, "unexpected {other:?}"),
        }
    }
}

/// The workspace's root (this crate's parent).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

const TABLE_START: &str = "<!-- settings table: generated from align-server/src/config/mod.rs; \
                           ALIGN_BLESS=1 cargo test -p align-server --lib config:: rewrites it -->\n";
const TABLE_END: &str = "<!-- end of the generated settings table -->\n";

#[test]
fn the_settings_table_in_operations_md_is_the_generated_one() {
    let path = workspace().join("docs/operations.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(TABLE_START).expect("the table's start marker") + TABLE_START.len();
    let end = start
        + text[start..]
            .find(TABLE_END)
            .expect("the table's end marker");
    let generated = settings_table();
    if text[start..end] == generated {
        return;
    }
    if std::env::var_os("ALIGN_BLESS").is_some() {
        let rewritten = format!("{}{generated}{}", &text[..start], &text[end..]);
        std::fs::write(&path, rewritten).unwrap();
        return;
    }
    panic!(
        "docs/operations.md's settings table differs from the settings declared in \
         align-server/src/config/mod.rs; rewrite it with \
         `ALIGN_BLESS=1 cargo test -p align-server --lib config::`. The generated table:\n{generated}"
    );
}

#[test]
fn every_setting_is_declared_once_with_its_variable_doc_and_a_default_that_reads_back() {
    let all = settings();
    assert!(all.len() >= 46, "{}", all.len());
    let mut keys: Vec<&str> = all.iter().map(|s| s.key()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), all.len(), "a key is declared twice");
    let defaults = Config::default();
    for s in all {
        assert_eq!(
            s.env(),
            format!("ALIGN_{}", s.key().to_uppercase().replace('.', "_"))
        );
        assert!(!s.doc().is_empty(), "{} has no doc", s.key());
        assert!(!s.doc().contains('\n'), "{}", s.key());
        // What `align config print` shows of a default reads back as that default.
        let Some(shown) = defaults.show(s.key()).flatten() else {
            continue;
        };
        let c = Config::load(None, env(&[(&s.env(), &shown)]), &Overrides::default()).unwrap();
        assert_eq!(c, defaults, "{} = {shown}", s.key());
    }
}

#[test]
fn load_explained_names_each_value_s_source_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("align.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9000\"\n\
         [database]\nurl = \"postgres://align:PlantedS3cret@db.example:5432/align\"\n\
         [notifications]\nsmtp_url = \"smtps://u:PlantedS3cret@smtp.example.com\"\n\
         [ratelimit]\nper_minute = 100\n",
    )
    .unwrap();
    let (c, effective) = Config::load_explained(
        Some(&file),
        env(&[
            ("ALIGN_RATELIMIT_PER_MINUTE", "50"),
            (
                "ALIGN_RATELIMIT_REDIS_URL",
                "redis://:PlantedS3cret@127.0.0.1:6379/2",
            ),
            (
                "ALIGN_METRICS_TOKEN",
                "PlantedS3cret-PlantedS3cret-PlantedS3cret",
            ),
            ("ALIGN_LOG", "debug"),
        ]),
        &Overrides {
            listen: None,
            data_dir: Some("/srv/align".into()),
        },
    )
    .unwrap();
    assert_eq!(c.rate_limit_per_minute, 50);
    assert_eq!(effective.len(), settings().len());
    let row = |key: &str| {
        let e = effective.iter().find(|e| e.setting.key() == key).unwrap();
        (e.value.clone(), e.source.to_string())
    };
    let from_file = format!("file {}", file.display());
    assert_eq!(
        row("listen"),
        (Some("127.0.0.1:9000".into()), from_file.clone())
    );
    assert_eq!(
        row("data_dir"),
        (Some("/srv/align".into()), "flag --data-dir".into())
    );
    assert_eq!(
        row("ratelimit.per_minute"),
        (Some("50".into()), "env ALIGN_RATELIMIT_PER_MINUTE".into())
    );
    assert_eq!(
        row("webhooks.concurrency"),
        (Some("32".into()), "default".into())
    );
    assert_eq!(row("tls.cert_file"), (None, "default".into()));
    assert_eq!(
        row("database.url"),
        (
            Some("postgres://align:***@db.example:5432/align".into()),
            from_file
        )
    );
    assert_eq!(
        row("ratelimit.redis_url").0.as_deref(),
        Some("redis://:***@127.0.0.1:6379/2")
    );
    assert_eq!(
        row("notifications.smtp_url").0.as_deref(),
        Some("smtps://u:***@smtp.example.com")
    );
    assert_eq!(row("metrics.token").0.as_deref(), Some("***"));
    let everything = format!("{effective:?}");
    assert!(!everything.contains("PlantedS3cret"), "{everything}");
}

#[test]
fn a_password_in_a_url_query_is_masked_too() {
    assert_eq!(
        kinds::mask_url("postgres://db.example/align?user=a&password=PlantedS3cret"),
        "postgres://db.example/align?user=a&password=***"
    );
    assert_eq!(kinds::mask_url("not a url PlantedS3cret"), "***");
}

#[test]
fn an_unknown_align_variable_warns_naming_the_closest_setting() {
    let warning = unknown_variable("ALIGN_RATELIMIT_PERMINUTE").unwrap();
    assert!(
        warning.contains("ALIGN_RATELIMIT_PERMINUTE")
            && warning.contains("did you mean ALIGN_RATELIMIT_PER_MINUTE?"),
        "{warning}"
    );
    let warning = unknown_variable("ALIGN_WEBHOOK_RETRY_SCHEDULE").unwrap();
    assert!(
        warning.contains("did you mean ALIGN_WEBHOOKS_RETRY_SCHEDULE?"),
        "{warning}"
    );
    for quiet in [
        "ALIGN_LOG",
        "ALIGN_CONFIG",
        "ALIGN_API_URL",
        "ALIGN_API_KEY",
        "ALIGN_WEBHOOK_SECRET",
        "ALIGN_USER_PASSWORD",
        "ALIGN_BLESS",
        "ALIGN_TEST_POSTGRES_URL",
        "ALIGN_TEST_ANYTHING",
        "ALIGN_RATELIMIT_PER_MINUTE",
        "ALIGN_SECRET_SCANNING_GITHUB_KEYS_FILE",
        "PATH",
        "RUST_LOG",
    ] {
        assert_eq!(unknown_variable(quiet), None, "{quiet}");
    }
    // It is a warning, not an error: the variable is ignored.
    let c = Config::load(
        None,
        env(&[("ALIGN_RATELIMIT_PERMINUTE", "5")]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn every_align_variable_the_repository_reads_is_a_setting_or_a_known_other_one() {
    let root = workspace();
    // Full string literals in Rust; any use in scripts.
    let in_rust = regex::Regex::new(r#""(ALIGN_[A-Z0-9_]*[A-Z0-9])""#).unwrap();
    let in_scripts = regex::Regex::new(r"(?-u:\b)(ALIGN_[A-Z0-9_]*[A-Z0-9])(?-u:\b)").unwrap();
    // These name unknown variables on purpose.
    let skip = [
        root.join("align-server/src/config"),
        root.join("align-cli/tests/config_print.rs"),
    ];
    let mut pending = vec![root.clone()];
    let mut unknown = Vec::new();
    let mut seen = 0;
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if skip.contains(&path) || ["target", ".git", "node_modules"].contains(&name.as_str()) {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let pattern = match path.extension().and_then(|e| e.to_str()) {
                Some("rs") => &in_rust,
                Some("mjs" | "js" | "sh") | None => &in_scripts,
                _ => continue,
            };
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for m in pattern.captures_iter(&text) {
                seen += 1;
                let var = &m[1];
                if var.starts_with("ALIGN_")
                    && !var.starts_with("ALIGN_TEST_")
                    && !OTHER_VARIABLES.contains(&var)
                    && !settings().iter().any(|s| s.env() == var)
                {
                    unknown.push(format!("{var} in {}", path.display()));
                }
            }
        }
    }
    assert!(seen > 100, "the scan found only {seen} uses");
    assert!(
        unknown.is_empty(),
        "add these to config::OTHER_VARIABLES (or declare them as settings): {unknown:#?}"
    );
}

#[test]
fn an_unknown_file_key_is_refused_naming_the_closest_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("align.toml");
    std::fs::write(&file, "[ratelimit]\nper_minut = 5\n").unwrap();
    let e = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
    assert!(matches!(e, Error::ConfigSyntax { .. }), "{e:?}");
    assert!(e.to_string().contains("`ratelimit.per_minut`"), "{e}");
    assert!(
        e.to_string()
            .contains("did you mean `ratelimit.per_minute`?"),
        "{e}"
    );
    std::fs::write(&file, "ratelimit = 5\n").unwrap();
    let e = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("expected a table"), "{e}");
    std::fs::write(&file, "[ratelimit]\nper_minute = \"many\"\n").unwrap();
    let e = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
    assert!(matches!(e, Error::ConfigSyntax { .. }), "{e:?}");
    assert!(e.to_string().contains("ratelimit.per_minute"), "{e}");
}
