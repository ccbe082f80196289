//! Signing in and out, sessions, and what every console POST must prove.
//!
//! - Passwords: PBKDF2 (align-keys' [`PasswordHash`]) on tokio's blocking pool; an unknown
//!   e-mail costs one PBKDF2 against a decoy, so timing does not tell which e-mails exist.
//! - Throttling: more than 5 failures per e-mail or 20 per client IP within 15 minutes and
//!   sign-in is refused (429 with `Retry-After`), even with the right password. An attempt
//!   takes its slot before PBKDF2 runs ([`Throttle::reserve`]), so parallel attempts cannot
//!   outrun the count, and only as many checks run at once as there are cores ([`Passwords`]).
//! - Sessions: a random 32-byte token in the `align_session` cookie (HttpOnly,
//!   SameSite=Strict, Path=/console, Secure under TLS, 12 hours); the store keeps only its
//!   SHA-256, so sessions are shared by every instance on the same database.
//! - CSRF: each session has a random 32-byte token that every form carries back (compared in
//!   constant time); before sign-in the `align_csrf` cookie is double-submitted. A POST whose
//!   `Origin` (or `Sec-Fetch-Site`) says it came from another site is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
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
use tokio::sync::Semaphore;

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
/// How long a sign-in waits for a free password-check slot before `503`.
const CHECK_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Failed sign-ins, per e-mail and per client IP, on exact sliding windows, and the attempts
/// being checked right now.
///
/// An attempt takes a slot in both windows before its password is checked
/// ([`Throttle::reserve`], one step under one lock), so attempts sent in parallel cannot all
/// pass the check before the first failure is counted: at most 5 per e-mail and 20 per IP are
/// ever checked within 15 minutes. A failed attempt's slot stays counted; a successful one
/// frees its slot (and clears the e-mail's failures).
pub(crate) struct Throttle {
    by_email: KeyedLimiter<String, SlidingLog>,
    by_ip: KeyedLimiter<IpAddr, SlidingLog>,
    /// Attempts reserved and not yet settled: they count against the limits like failures.
    pending: Mutex<Pending>,
}

/// Attempts in progress, per e-mail and per IP (no entry for zero).
#[derive(Default)]
struct Pending {
    by_email: HashMap<String, u64>,
    by_ip: HashMap<IpAddr, u64>,
}

impl Pending {
    fn add(&mut self, email: &str, ip: IpAddr) {
        *self.by_email.entry(email.to_owned()).or_default() += 1;
        *self.by_ip.entry(ip).or_default() += 1;
    }

    fn remove(&mut self, email: &str, ip: IpAddr) {
        if let Some(n) = self.by_email.get_mut(email) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_email.remove(email);
            }
        }
        if let Some(n) = self.by_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }
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
            pending: Mutex::new(Pending::default()),
        })
    }

    fn email_key(email: &str) -> String {
        email.trim().to_lowercase()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for one sign-in attempt for `email` from `ip`, or says how many seconds
    /// to wait when the failures and the attempts in progress fill either window. The slot
    /// is settled through the returned [`Attempt`].
    /// Attempts from IPv6 addresses count per /64 (issue 21: one host holds a whole /64).
    pub(crate) fn reserve(&self, email: &str, ip: IpAddr) -> Result<Attempt<'_>, u64> {
        let ip = crate::http::client_network(ip);
        let email = Self::email_key(email);
        let mut pending = self.pending();
        let in_progress_email = pending.by_email.get(&email).copied().unwrap_or(0);
        let in_progress_ip = pending.by_ip.get(&ip).copied().unwrap_or(0);
        // A cost of 0 reads a window without counting anything.
        let windows = [
            (self.by_email.check(&email, 0), in_progress_email),
            (self.by_ip.check(&ip, 0), in_progress_ip),
        ];
        let mut wait = None;
        for (decision, in_progress) in windows {
            // An unreadable window refuses: failing closed costs a legitimate user a retry.
            let Ok(d) = decision else {
                wait = wait.max(Some(1));
                continue;
            };
            if d.remaining == 0 {
                // Full of failures: until the oldest leaves the window.
                wait = wait.max(Some(d.reset_after_secs().max(1)));
            } else if d.remaining <= in_progress {
                // Full with attempts being checked now: they settle within a second or so.
                wait = wait.max(Some(1));
            }
        }
        if let Some(secs) = wait {
            return Err(secs);
        }
        pending.add(&email, ip);
        Ok(Attempt {
            throttle: self,
            email,
            ip,
            settled: false,
        })
    }

    /// Settles an attempt: its slot is freed, and counted as a failure if `failed`.
    fn settle(&self, attempt: &Attempt<'_>, outcome: Outcome) {
        let (email, ip) = (&attempt.email, attempt.ip);
        let mut pending = self.pending();
        match outcome {
            Outcome::Failed => {
                // Counted under the same lock, so no reservation sees the slot free between.
                let _ = self.by_email.check(email, 1);
                let _ = self.by_ip.check(&ip, 1);
            }
            Outcome::Succeeded => self.by_email.forget(email),
            Outcome::NotChecked => {}
        }
        pending.remove(email, ip);
    }

    /// Forgets idle windows (the server's periodic sweep).
    pub(crate) fn evict_idle(&self) -> usize {
        self.by_email.evict_idle() + self.by_ip.evict_idle()
    }
}

/// How an [`Attempt`] ended.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Failed,
    Succeeded,
    NotChecked,
}

/// One sign-in attempt holding a slot in the throttle's windows. Settle it with
/// [`Attempt::failed`], [`Attempt::succeeded`] or [`Attempt::not_checked`]; dropped
/// unsettled (the request was cancelled while its password was being checked), it counts as a
/// failure, since the check may have run.
pub(crate) struct Attempt<'a> {
    throttle: &'a Throttle,
    email: String,
    ip: IpAddr,
    settled: bool,
}

impl std::fmt::Debug for Attempt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attempt(..)")
    }
}

impl Attempt<'_> {
    fn settle(mut self, outcome: Outcome) {
        self.settled = true;
        self.throttle.settle(&self, outcome);
    }

    /// The password was wrong (or the e-mail unknown): the slot stays counted as a failure.
    pub(crate) fn failed(self) {
        self.settle(Outcome::Failed);
    }

    /// The password was right: the slot is freed and the e-mail's failures are cleared (the
    /// IP's stay counted).
    pub(crate) fn succeeded(self) {
        self.settle(Outcome::Succeeded);
    }

    /// No password was checked (the store could not be read, or the server was too busy):
    /// the slot is freed without counting.
    pub(crate) fn not_checked(self) {
        self.settle(Outcome::NotChecked);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.settle(self, Outcome::Failed);
        }
    }
}

/// Checks passwords with PBKDF2 on the blocking pool, a bounded number at a time.
pub(crate) struct Passwords {
    /// What an unknown e-mail is checked against, so it costs what a known one costs.
    decoy: PasswordHash,
    /// One permit per check that may run at once.
    slots: Semaphore,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl Passwords {
    /// Checks against `decoy` for unknown e-mails, as many at once as the machine has cores.
    pub(crate) fn new(decoy: PasswordHash) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self {
            decoy,
            slots: Semaphore::new(cores),
        }
    }

    /// Finds the user among `candidates` whose password `password` is: PBKDF2 once per
    /// candidate, and once against the decoy when there is none. Waits for a free slot at
    /// most [`CHECK_QUEUE_TIMEOUT`], then answers `503` (nothing was checked).
    pub(crate) async fn check(
        &self,
        candidates: Vec<(User, PasswordHash)>,
        password: String,
    ) -> Result<Option<User>, ApiError> {
        let password = align_keys::Secret::new(password);
        let _slot = tokio::time::timeout(CHECK_QUEUE_TIMEOUT, self.slots.acquire())
            .await
            .map_err(|_| ApiError::unavailable())?
            .map_err(|_| ApiError::unavailable())?;
        let decoy = self.decoy.clone();
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
            t.reserve("A@b.test ", ip).unwrap().failed();
        }
        let wait = t.reserve("a@b.test", ip).unwrap_err();
        assert!((1..=900).contains(&wait), "{wait}");
        // The right password is refused too: a success needs a slot like any attempt.
        assert!(t.reserve("a@b.test", ip).is_err());
        // A success is not a failure: 15 more failures fill the IP's window of 20.
        t.reserve("c@b.test", ip).unwrap().succeeded();
        for i in 0..15 {
            t.reserve(&format!("user{i}@b.test"), ip).unwrap().failed();
        }
        assert!(t.reserve("someone@b.test", ip).is_err(), "20 per IP");
        let other: IpAddr = "203.0.113.10".parse().unwrap();
        assert!(t.reserve("someone@b.test", other).is_ok());
        // One IPv6 /64 is one client.
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        for i in 0..20u16 {
            let addr = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i + 1));
            t.reserve(&format!("v6-{i}@b.test"), addr).unwrap().failed();
        }
        assert!(t.reserve("next@b.test", v6).is_err(), "20 per IPv6 /64");
        let next_net: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(t.reserve("next@b.test", next_net).is_ok());
    }

    #[test]
    fn attempts_in_progress_hold_their_slots_until_settled() {
        let t = Throttle::new().unwrap();
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let held: Vec<_> = (0..5).map(|_| t.reserve("a@b.test", ip).unwrap()).collect();
        assert_eq!(
            t.reserve("a@b.test", ip).unwrap_err(),
            1,
            "in progress: retry soon"
        );
        let mut held = held.into_iter();
        held.next().unwrap().succeeded();
        // The success cleared the e-mail's failures (none yet) and freed its slot.
        let again = t.reserve("a@b.test", ip).unwrap();
        again.not_checked();
        for a in held {
            a.failed();
        }
        assert!(
            t.reserve("a@b.test", ip).is_ok(),
            "4 failures leave one slot"
        );
    }

    #[test]
    fn an_attempt_dropped_unsettled_counts_as_a_failure() {
        let t = Throttle::new().unwrap();
        let ip: IpAddr = "198.51.100.2".parse().unwrap();
        for _ in 0..5 {
            drop(t.reserve("a@b.test", ip).unwrap());
        }
        assert!(
            t.reserve("a@b.test", ip).unwrap_err() > 1,
            "failures, not in progress"
        );
        // Neither a success nor an unchecked attempt uses up the IP's window.
        for i in 0..40 {
            let e = format!("ok{i}@b.test");
            t.reserve(&e, ip).unwrap().succeeded();
            t.reserve(&e, ip).unwrap().not_checked();
        }
        assert!(t.pending().by_email.is_empty() && t.pending().by_ip.is_empty());
    }

    #[test]
    fn parallel_reservations_never_exceed_the_ip_limit() {
        let t = std::sync::Arc::new(Throttle::new().unwrap());
        let ip: IpAddr = "198.51.100.3".parse().unwrap();
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let (t, admitted) = (&t, &admitted);
                scope.spawn(move || {
                    for i in 0..40 {
                        if let Ok(a) = t.reserve(&format!("u{thread}-{i}@b.test"), ip) {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            a.failed();
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), FAILURES_PER_IP);
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
