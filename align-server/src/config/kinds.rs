//! The kinds of setting: how each reads its value from the TOML file and from an environment
//! variable, and how it shows in `Debug` and in `align config print` (secrets masked).
//!
//! A setting's declaration (`config/mod.rs`) names its kind; nothing else about reading it is
//! written per setting.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{Database, RedisFailure, RedisUrl};
use crate::error::Error;

/// How one kind of setting is read and shown.
pub(crate) trait Kind {
    /// The type of the `Config` field.
    type Value: fmt::Debug;
    /// Reads an environment variable's text; errors name `key` (the variable).
    fn from_text(key: &str, text: &str) -> Result<Self::Value, Error>;
    /// Reads the TOML file's value at `key` in `file`: by default a string, read as the
    /// environment's text is.
    fn from_toml(key: &str, value: toml::Value, file: &Path) -> Result<Self::Value, Error> {
        Self::from_text(key, &typed::<String>(key, value, file)?)
    }
    /// The value as `align config print` shows it, secrets masked; `None` when unset.
    fn show(value: &Self::Value) -> Option<String>;
    /// The value in the settings' `Debug`, secrets masked.
    fn debug(value: &Self::Value, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(value, f)
    }
}

/// A value of the TOML file's type `T`, or the file's error naming `key`.
fn typed<T: DeserializeOwned>(key: &str, value: toml::Value, file: &Path) -> Result<T, Error> {
    value
        .try_into()
        .map_err(|e: toml::de::Error| Error::ConfigSyntax {
            path: file.to_owned(),
            message: format!("{key}: {}", e.message()),
        })
}

/// A number (or any `FromStr` value the file writes in its own type): `u32`, `u64`, `usize`.
pub(crate) struct Number<T>(PhantomData<T>);

impl<T: DeserializeOwned + FromStr + fmt::Display + fmt::Debug> Kind for Number<T> {
    type Value = T;
    fn from_text(key: &str, text: &str) -> Result<T, Error> {
        parse_value(key, text)
    }
    fn from_toml(key: &str, value: toml::Value, file: &Path) -> Result<T, Error> {
        typed(key, value, file)
    }
    fn show(value: &T) -> Option<String> {
        Some(value.to_string())
    }
}

/// A value written as a string in both places and parsed with `FromStr` (an address).
pub(crate) struct Parsed<T>(PhantomData<T>);

impl<T: FromStr + fmt::Display + fmt::Debug> Kind for Parsed<T> {
    type Value = T;
    fn from_text(key: &str, text: &str) -> Result<T, Error> {
        parse_value(key, text)
    }
    fn show(value: &T) -> Option<String> {
        Some(value.to_string())
    }
}

/// `true`/`false` in the file; `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`/empty in the
/// environment (any case).
pub(crate) struct Bool;

impl Kind for Bool {
    type Value = bool;
    fn from_text(key: &str, text: &str) -> Result<bool, Error> {
        match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" | "" => Ok(false),
            _ => Err(Error::Setting {
                key: key.to_owned(),
                reason: format!("expected true or false, got {text:?}"),
            }),
        }
    }
    fn from_toml(key: &str, value: toml::Value, file: &Path) -> Result<bool, Error> {
        typed(key, value, file)
    }
    fn show(value: &bool) -> Option<String> {
        Some(value.to_string())
    }
}

/// A whole number of a time unit (`UNIT_MS` milliseconds each) read into a `Duration`.
pub(crate) struct Interval<const UNIT_MS: u64>;
/// Whole seconds (`…_secs`).
pub(crate) type Secs = Interval<1000>;
/// Whole milliseconds (`…_ms`).
pub(crate) type Millis = Interval<1>;
/// Whole hours (`…_hours`).
pub(crate) type Hours = Interval<3_600_000>;

impl<const UNIT_MS: u64> Interval<UNIT_MS> {
    fn duration(n: u64) -> Duration {
        if UNIT_MS % 1000 == 0 {
            Duration::from_secs(n.saturating_mul(UNIT_MS / 1000))
        } else {
            Duration::from_millis(n.saturating_mul(UNIT_MS))
        }
    }
}

impl<const UNIT_MS: u64> Kind for Interval<UNIT_MS> {
    type Value = Duration;
    fn from_text(key: &str, text: &str) -> Result<Duration, Error> {
        parse_value(key, text).map(Self::duration)
    }
    fn from_toml(key: &str, value: toml::Value, file: &Path) -> Result<Duration, Error> {
        typed(key, value, file).map(Self::duration)
    }
    fn show(value: &Duration) -> Option<String> {
        Some((value.as_millis() / u128::from(UNIT_MS)).to_string())
    }
}

/// An optional number: an empty variable means unset (off, or sized automatically).
pub(crate) struct Maybe<T>(PhantomData<T>);

impl<T: DeserializeOwned + FromStr + fmt::Display + fmt::Debug> Kind for Maybe<T> {
    type Value = Option<T>;
    fn from_text(key: &str, text: &str) -> Result<Option<T>, Error> {
        if text.trim().is_empty() {
            Ok(None)
        } else {
            parse_value(key, text).map(Some)
        }
    }
    fn from_toml(key: &str, value: toml::Value, file: &Path) -> Result<Option<T>, Error> {
        typed(key, value, file).map(Some)
    }
    fn show(value: &Option<T>) -> Option<String> {
        value.as_ref().map(ToString::to_string)
    }
}

/// A path.
pub(crate) struct File;

impl Kind for File {
    type Value = PathBuf;
    fn from_text(_: &str, text: &str) -> Result<PathBuf, Error> {
        Ok(PathBuf::from(text))
    }
    fn show(value: &PathBuf) -> Option<String> {
        Some(value.display().to_string())
    }
}

/// An optional path: an empty variable means unset.
pub(crate) struct MaybeFile;

impl Kind for MaybeFile {
    type Value = Option<PathBuf>;
    fn from_text(_: &str, text: &str) -> Result<Option<PathBuf>, Error> {
        Ok((!text.trim().is_empty()).then(|| PathBuf::from(text)))
    }
    fn from_toml(key: &str, value: toml::Value, file: &Path) -> Result<Option<PathBuf>, Error> {
        typed(key, value, file).map(Some)
    }
    fn show(value: &Option<PathBuf>) -> Option<String> {
        value.as_ref().map(|p| p.display().to_string())
    }
}

/// Text, taken as it is.
pub(crate) struct Text;

impl Kind for Text {
    type Value = String;
    fn from_text(_: &str, text: &str) -> Result<String, Error> {
        Ok(text.to_owned())
    }
    fn show(value: &String) -> Option<String> {
        Some(value.clone())
    }
}

/// A secret (a token): empty means unset; never shown.
pub(crate) struct Secret;

impl Kind for Secret {
    type Value = Option<String>;
    fn from_text(_: &str, text: &str) -> Result<Option<String>, Error> {
        Ok(non_empty(text))
    }
    fn show(value: &Option<String>) -> Option<String> {
        value.as_ref().map(|_| MASK.to_owned())
    }
    fn debug(value: &Option<String>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&value.as_ref().map(|_| "[redacted]"), f)
    }
}

/// A URL that may carry a password (an SMTP URL): empty means unset; shown with the password
/// masked, never in `Debug`.
pub(crate) struct SecretUrl;

impl Kind for SecretUrl {
    type Value = Option<String>;
    fn from_text(key: &str, text: &str) -> Result<Option<String>, Error> {
        Secret::from_text(key, text)
    }
    fn show(value: &Option<String>) -> Option<String> {
        value.as_deref().map(mask_url)
    }
    fn debug(value: &Option<String>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Secret::debug(value, f)
    }
}

/// `database.url`: empty or `sqlite:` for the data directory's file, `postgres://…`.
pub(crate) struct DatabaseUrl;

impl Kind for DatabaseUrl {
    type Value = Database;
    fn from_text(_: &str, text: &str) -> Result<Database, Error> {
        parse_database_url(text)
    }
    fn show(value: &Database) -> Option<String> {
        match value {
            Database::Sqlite => Some("sqlite:".to_owned()),
            Database::Postgres(url) => Some(mask_url(url)),
        }
    }
}

/// `ratelimit.redis_url`: empty means no Redis (limits in memory).
pub(crate) struct Redis;

impl Kind for Redis {
    type Value = Option<RedisUrl>;
    fn from_text(_: &str, text: &str) -> Result<Option<RedisUrl>, Error> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        RedisUrl::parse(text).map(Some)
    }
    fn show(value: &Option<RedisUrl>) -> Option<String> {
        value.as_ref().map(|u| mask_url(u.expose()))
    }
}

/// `ratelimit.redis_failure`: `open` or `closed`.
pub(crate) struct Failure;

impl Kind for Failure {
    type Value = RedisFailure;
    fn from_text(key: &str, text: &str) -> Result<RedisFailure, Error> {
        text.parse().map_err(|()| Error::Setting {
            key: key.to_owned(),
            reason: format!("expected open or closed, got {text:?}"),
        })
    }
    fn show(value: &RedisFailure) -> Option<String> {
        Some(
            match value {
                RedisFailure::Open => "open",
                RedisFailure::Closed => "closed",
            }
            .to_owned(),
        )
    }
}

/// `console.origin`: `http(s)://host[:port]` as browsers send it in `Origin` (lower-case, no
/// path); empty means none.
pub(crate) struct Origin;

impl Kind for Origin {
    type Value = Option<String>;
    fn from_text(_: &str, text: &str) -> Result<Option<String>, Error> {
        let value = text.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let refuse = || Error::Setting {
            key: "console.origin".into(),
            reason: "expected http(s)://host[:port], e.g. https://align.example.com".into(),
        };
        let url = url::Url::parse(value).map_err(|_| refuse())?;
        let plain = url.path() == "/" && url.query().is_none() && url.username().is_empty();
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !plain {
            return Err(refuse());
        }
        Ok(Some(url.origin().ascii_serialization()))
    }
    fn show(value: &Option<String>) -> Option<String> {
        value.clone()
    }
}

/// `webhooks.retry_schedule`: `"5,300,1800"`, or in the file also `[5, 300, 1800]`.
pub(crate) struct Schedule;

impl Kind for Schedule {
    type Value = align_webhooks::RetrySchedule;
    fn from_text(key: &str, text: &str) -> Result<Self::Value, Error> {
        text.parse()
            .map_err(|e: align_webhooks::ScheduleParseError| Error::Setting {
                key: key.to_owned(),
                reason: e.to_string(),
            })
    }
    fn from_toml(key: &str, value: toml::Value, file: &Path) -> Result<Self::Value, Error> {
        match value {
            toml::Value::String(text) => Self::from_text(key, &text),
            other => {
                let secs: Vec<u64> = typed(key, other, file)?;
                Ok(align_webhooks::RetrySchedule::new(
                    secs.into_iter().map(Duration::from_secs).collect(),
                ))
            }
        }
    }
    fn show(value: &Self::Value) -> Option<String> {
        let secs: Vec<String> = value
            .delays()
            .iter()
            .map(|d| d.as_secs().to_string())
            .collect();
        Some(secs.join(","))
    }
}

/// What `align config print` shows for a secret.
const MASK: &str = "***";

/// `url` with its password (and a `password=` query parameter) replaced by `***`; a value
/// that is not a URL is masked whole.
pub(crate) fn mask_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url.trim()) else {
        return MASK.to_owned();
    };
    if parsed.password().is_some() && parsed.set_password(Some(MASK)).is_err() {
        return MASK.to_owned();
    }
    if parsed
        .query_pairs()
        .any(|(k, _)| k.eq_ignore_ascii_case("password"))
    {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    MASK.to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

pub(crate) fn parse_value<T: FromStr>(key: &str, value: &str) -> Result<T, Error> {
    value.trim().parse().map_err(|_| Error::Setting {
        key: key.to_owned(),
        reason: format!("cannot parse {value:?}"),
    })
}

/// An empty value unsets an optional text setting.
fn non_empty(value: &str) -> Option<String> {
    (!value.trim().is_empty()).then(|| value.to_owned())
}

/// `sqlite:…` or empty: the embedded file; `postgres://…`: a shared PostgreSQL database,
/// checked here so a bad URL fails at start-up. The error never repeats the URL (it may hold
/// a password).
pub(crate) fn parse_database_url(url: &str) -> Result<Database, Error> {
    let url = url.trim();
    if url.is_empty() || url.starts_with("sqlite:") {
        return Ok(Database::Sqlite);
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return match align_keys::postgres::parse_url(url) {
            Ok(_) => Ok(Database::Postgres(url.to_owned())),
            Err(e) => Err(Error::Setting {
                key: "database.url".into(),
                reason: e.to_string(),
            }),
        };
    }
    Err(Error::Setting {
        key: "database.url".into(),
        reason: "expected an empty value, sqlite: or postgres://…".into(),
    })
}
