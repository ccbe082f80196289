//! Signing in and out, sessions, and what every console POST must prove.
//!
//! - Passwords: PBKDF2 (align-keys' [`PasswordHash`]) on tokio's blocking pool; an unknown
//!   e-mail costs one PBKDF2 against a decoy, so timing does not tell which e-mails exist.
//! - Throttling: more than 5 failures per e-mail or 20 per client IP within 15 minutes and
//!   sign-in is refused (429 with `Retry-After`), even with the right password.
//! - Sessions: a random 32-byte token in the `align_session` cookie (HttpOnly,
//!   SameSite=Strict, Path=/console, Secure under TLS, 12 hours); the store keeps only its
//!   SHA-256, so sessions are shared by every instance on the same database.
//! - CSRF: each session has a random 32-byte token that every form carries back (compared in
//!   constant time); before sign-in the `align_csrf` cookie is double-submitted. A POST whose
//!   `Origin` (or `Sec-Fetch-Site`) says it came from another site is refused.

use std::net::IpAddr;
use std::time::Duration;

use align_keys::{PasswordHash, SessionHash, User, UserSession};
use align_ratelimit::{KeyedLimiter, Rate, RateLimiter, SlidingLog};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use http::request::Parts;
use http::{HeaderValue, Method};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "align_session";
/// The pre-sign-in CSRF cookie.
pub(crate) const LOGIN_CSRF_COOKIE: &str = "align_csrf";
/// How long a session lasts, whatever happens meanwhile.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins allowed per e-mail, and per client IP, within [`THROTTLE_WINDOW`].
const FAILURES_PER_EMAIL: u64 = 5;
const FAILURES_PER_IP: u64 = 20;
const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A fresh random token: 32 bytes, URL-safe base64 (43 characters).
pub(crate) fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::internal())?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// 32 random bytes.
pub(crate) fn random_bytes() -> Result<[u8; 32], ApiError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::internal())?;
    Ok(bytes)
}

/// A session's CSRF token as forms carry it.
pub(crate) fn csrf_text(session: &UserSession) -> String {
    URL_SAFE_NO_PAD.encode(session.csrf)
}

/// Whether a form's `csrf` value is the session's token (constant time).
pub(crate) fn csrf_matches(session: &UserSession, presented: Option<&str>) -> bool {
    let Some(bytes) = presented.and_then(|p| URL_SAFE_NO_PAD.decode(p).ok()) else {
        return false;
    };
    bytes.len() == session.csrf.len() && bool::from(bytes.as_slice().ct_eq(&session.csrf))
}

/// Whether two strings are equal, in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name`, from any `Cookie` header.
pub(crate) fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value for a console cookie; `None` deletes it.
pub(crate) fn set_cookie(name: &str, value: Option<&str>, secure: bool) -> Option<HeaderValue> {
    let (value, age) = match value {
        Some(v) => (v, SESSION_TTL.as_secs()),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; Max-Age={age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .ok()
}

/// Refuses a state-changing request that says it came from another origin: its `Origin`
/// must be this server's own (`configured`, or else `http(s)://` + the `Host` it was sent
/// to), and a browser's `Sec-Fetch-Site` must not say `cross-site` or `same-site`.
pub(crate) fn check_origin(
    parts: &Parts,
    tls: bool,
    configured: Option<&str>,
) -> Result<(), ApiError> {
    let refused = || ApiError::forbidden("this form was posted from another site");
    if let Some(site) = parts.headers.get("sec-fetch-site") {
        if matches!(site.as_bytes(), b"cross-site" | b"same-site") {
            return Err(refused());
        }
    }
    let Some(origin) = parts.headers.get(http::header::ORIGIN) else {
        return Ok(());
    };
    let expected = match configured {
        Some(o) => o.to_owned(),
        None => {
            let host = parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str))
                .ok_or_else(refused)?;
            let scheme = if tls { "https" } else { "http" };
            format!("{scheme}://{host}")
        }
    };
    if origin.as_bytes().eq_ignore_ascii_case(expected.as_bytes()) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Whether `parts` is a POST (every state change is one).
pub(crate) fn is_post(parts: &Parts) -> bool {
    parts.method == Method::POST
}

/// Failed sign-ins, per e-mail and per client IP, on exact sliding windows.
pub(crate) struct Throttle {
    by_email: KeyedLimiter<String, SlidingLog>,
    by_ip: KeyedLimiter<IpAddr, SlidingLog>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Throttle(..)")
    }
}

impl Throttle {
    /// 5 failures per e-mail and 20 per IP within 15 minutes.
    pub(crate) fn new() -> Result<Self, align_ratelimit::Error> {
        Ok(Self {
            by_email: KeyedLimiter::new(SlidingLog::new(Rate::new(
                FAILURES_PER_EMAIL,
                THROTTLE_WINDOW,
            ))?),
            by_ip: KeyedLimiter::new(SlidingLog::new(Rate::new(
                FAILURES_PER_IP,
                THROTTLE_WINDOW,
            ))?),
        })
    }

    fn email_key(email: &str) -> String {
        email.trim().to_lowercase()
    }

    /// Seconds until a sign-in for `email` from `ip` may be tried again, if it may not now.
    pub(crate) fn blocked(&self, email: &str, ip: IpAddr) -> Option<u64> {
        // A cost of 0 reads the windows without counting anything.
        let by_email = self.by_email.check(&Self::email_key(email), 0).ok()?;
        let by_ip = self.by_ip.check(&ip, 0).ok()?;
        [by_email, by_ip]
            .iter()
            .filter(|d| d.remaining == 0)
            .map(|d| d.reset_after_secs().max(1))
            .max()
    }

    /// Counts a failed sign-in.
    pub(crate) fn failed(&self, email: &str, ip: IpAddr) {
        let _ = self.by_email.check(&Self::email_key(email), 1);
        let _ = self.by_ip.check(&ip, 1);
    }

    /// Clears the e-mail's failures after a successful sign-in (the IP's stay counted).
    pub(crate) fn succeeded(&self, email: &str) {
        self.by_email.forget(&Self::email_key(email));
    }

    /// Forgets idle windows (the server's periodic sweep).
    pub(crate) fn evict_idle(&self) -> usize {
        self.by_email.evict_idle() + self.by_ip.evict_idle()
    }
}

/// Finds the user among `candidates` whose password `password` is, spending PBKDF2 on the
/// blocking pool: once per candidate, and once against `decoy` when there is none.
pub(crate) async fn check_password(
    candidates: Vec<(User, PasswordHash)>,
    password: String,
    decoy: PasswordHash,
) -> Result<Option<User>, ApiError> {
    let password = align_keys::Secret::new(password);
    tokio::task::spawn_blocking(move || {
        if candidates.is_empty() {
            let _ = decoy.verify(password.expose());
            return None;
        }
        candidates
            .into_iter()
            .find(|(_, hash)| hash.verify(password.expose()))
            .map(|(user, _)| user)
    })
    .await
    .map_err(|_| ApiError::unavailable())
}

/// A new session for `user`: the token for the cookie, and what the store keeps.
pub(crate) fn new_session(user: &User) -> Result<(String, SessionHash, UserSession), ApiError> {
    let token = random_token()?;
    let hash = SessionHash::of(&token);
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(SESSION_TTL).map_err(|_| ApiError::internal())?;
    let session = UserSession {
        user_id: user.id,
        csrf: random_bytes()?,
        created_at: now,
        expires_at: now + ttl,
    };
    Ok((token, hash, session))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder()
            .method(Method::POST)
            .uri("/console/keys");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn only_our_own_origin_may_post() {
        let ok = parts(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(check_origin(&ok, false, None).is_ok());
        assert!(check_origin(&ok, true, None).is_err(), "scheme must match");
        assert!(check_origin(&parts(&[("host", "127.0.0.1:8080")]), false, None).is_ok());
        // Behind a proxy, the configured public origin is the one that counts.
        let proxied = parts(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://align.example.com"),
        ]);
        assert!(check_origin(&proxied, false, Some("https://align.example.com")).is_ok());
        assert!(check_origin(&ok, false, Some("https://align.example.com")).is_err());
        for bad in [
            parts(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.test")]),
            parts(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            parts(&[("origin", "http://127.0.0.1:8080")]),
            parts(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
        ] {
            assert!(check_origin(&bad, false, None).is_err());
        }
    }

    #[test]
    fn cookies_are_found_among_others_and_set_with_every_attribute() {
        let p = parts(&[("cookie", "a=1; align_session=tok; b=2")]);
        assert_eq!(cookie(&p, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&p, LOGIN_CSRF_COOKIE), None);
        let set = set_cookie(SESSION_COOKIE, Some("tok"), true).unwrap();
        assert_eq!(
            set.to_str().unwrap(),
            "align_session=tok; Path=/console; Max-Age=43200; HttpOnly; SameSite=Strict; Secure"
        );
        let gone = set_cookie(SESSION_COOKIE, None, false).unwrap();
        assert!(gone.to_str().unwrap().contains("Max-Age=0"));
        assert!(!gone.to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn the_sixth_failure_is_throttled_and_success_clears_the_email() {
        let t = Throttle::new().unwrap();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(t.blocked("a@b.test", ip), None);
            t.failed("A@b.test ", ip);
        }
        let wait = t.blocked("a@b.test", ip).unwrap();
        assert!((1..=900).contains(&wait), "{wait}");
        t.succeeded("a@b.test");
        assert_eq!(t.blocked("a@b.test", ip), None);
        for i in 0..15 {
            t.failed(&format!("user{i}@b.test"), ip);
        }
        assert!(t.blocked("someone@b.test", ip).is_some(), "20 per IP");
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        let s = UserSession {
            user_id: align_keys::UserId::new(),
            csrf: [9; 32],
            created_at: Utc::now(),
            expires_at: Utc::now(),
        };
        let good = csrf_text(&s);
        assert!(csrf_matches(&s, Some(&good)));
        assert!(!csrf_matches(&s, Some(&good[1..])));
        assert!(!csrf_matches(&s, Some("")));
        assert!(!csrf_matches(&s, None));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd"));
    }
}
