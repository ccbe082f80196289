#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests: tampering with any signed part fails; rotated-out secrets sign only during
//! their grace period.

use std::time::Duration;

use align_webhooks::{
    EndpointKey, EndpointSecrets, SigningKey, SigningSecret, VerificationKey, Verifier,
    WebhookVerifier,
};
use chrono::{TimeZone, Utc};
use http::HeaderMap;
use proptest::prelude::*;

fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("webhook-id", id.parse().unwrap());
    h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
    h.insert("webhook-signature", sig.parse().unwrap());
    h
}

fn id() -> impl Strategy<Value = String> {
    "msg_[A-Za-z0-9]{1,30}"
}

fn passes(v: &WebhookVerifier, id: &str, ts: i64, sig: &str, body: &[u8], now: i64) -> bool {
    v.verify_at(&headers(id, ts, sig), body, now).is_ok()
}

const EMPTY: &[u8] = b"{}";
const WIDE: Duration = Duration::from_secs(1 << 40);

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn changing_id_timestamp_or_body_fails_v1(
        id in id(), other_id in id(),
        ts in 0_i64..4_000_000_000, dts in 1_i64..1_000_000,
        body in proptest::collection::vec(any::<u8>(), 0..256),
        flip in any::<prop::sample::Index>(), extra in any::<u8>(),
    ) {
        let secret = SigningSecret::generate().unwrap();
        let sig = secret.sign(&id, ts, &body);
        let v = WebhookVerifier::new(secret).tolerance(WIDE);
        prop_assert!(passes(&v, &id, ts, &sig, &body, ts));
        if other_id != id {
            prop_assert!(!passes(&v, &other_id, ts, &sig, &body, ts));
        }
        prop_assert!(!passes(&v, &id, ts + dts, &sig, &body, ts));
        let mut changed = body.clone();
        if changed.is_empty() {
            changed.push(extra);
        } else {
            let i = flip.index(changed.len());
            changed[i] ^= extra | 1;
        }
        prop_assert!(!passes(&v, &id, ts, &sig, &changed, ts));
        let mut longer = body.clone();
        longer.push(extra);
        prop_assert!(!passes(&v, &id, ts, &sig, &longer, ts));
    }

    #[test]
    fn changing_id_timestamp_or_body_fails_v1a(
        id in id(), ts in 0_i64..4_000_000_000, dts in 1_i64..1_000_000,
        body in proptest::collection::vec(any::<u8>(), 1..128), flip in any::<prop::sample::Index>(),
    ) {
        let key = SigningKey::generate().unwrap();
        let sig = key.sign(&id, ts, &body);
        let v = WebhookVerifier::with_keys(vec![VerificationKey::Asymmetric(key.verifying_key())])
            .tolerance(WIDE);
        prop_assert!(passes(&v, &id, ts, &sig, &body, ts));
        prop_assert!(!passes(&v, &(id.clone() + "x"), ts, &sig, &body, ts));
        prop_assert!(!passes(&v, &id, ts + dts, &sig, &body, ts));
        let mut changed = body.clone();
        let i = flip.index(changed.len());
        changed[i] ^= 0x20;
        prop_assert!(!passes(&v, &id, ts, &sig, &changed, ts));
    }

    #[test]
    fn rotated_out_secret_passes_during_grace_and_fails_after(
        grace_s in 1_i64..200_000, into in 0.0_f64..1.0, after in 0_i64..1_000_000,
        start in 1_600_000_000_i64..1_900_000_000,
    ) {
        let old = SigningSecret::generate().unwrap();
        let new = SigningSecret::generate().unwrap();
        let mut keys = EndpointSecrets::new(EndpointKey::Symmetric(old.clone()));
        let rotated_at = Utc.timestamp_opt(start, 0).unwrap();
        keys.rotate(EndpointKey::Symmetric(new.clone()), rotated_at,
            Duration::from_secs(grace_s.unsigned_abs()));
        let old_only = WebhookVerifier::new(old).tolerance(WIDE);
        let new_only = WebhookVerifier::new(new).tolerance(WIDE);

        // Inside the grace period: both the old and the new secret verify.
        #[allow(clippy::cast_possible_truncation)]
        let during = start + ((grace_s as f64) * into) as i64;
        let at = Utc.timestamp_opt(during, 0).unwrap();
        let sig = keys.signature_header("msg_r", during, b"{}", at);
        prop_assert!(passes(&old_only, "msg_r", during, &sig, EMPTY, during));
        prop_assert!(passes(&new_only, "msg_r", during, &sig, EMPTY, during));

        // From the end of the grace period on: only the new one.
        let late = start + grace_s + after;
        let at = Utc.timestamp_opt(late, 0).unwrap();
        let sig = keys.signature_header("msg_r", late, b"{}", at);
        prop_assert!(!passes(&old_only, "msg_r", late, &sig, EMPTY, late));
        prop_assert!(passes(&new_only, "msg_r", late, &sig, EMPTY, late));
    }
}

/// Case count: `PROPTEST_CASES` when set (long campaigns), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1024)))]

    /// Any bytes in the three Standard Webhooks headers are refused with a typed error (or, for
    /// a forged value, "no matching signature"); nothing panics and nothing forged passes.
    #[test]
    fn hostile_webhook_headers_never_panic_or_pass(
        id in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        ts in prop::option::of(prop_oneof![
            "[0-9]{0,25}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..32),
        ]),
        sig in prop::option::of(prop_oneof![
            "(v1,[A-Za-z0-9+/=]{0,60} ?){0,4}".prop_map(String::into_bytes),
            "(v1a,[A-Za-z0-9+/=]{0,100} ?){0,3}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..128),
        ]),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let secret = SigningSecret::generate().unwrap();
        let v = WebhookVerifier::new(secret);
        let mut h = HeaderMap::new();
        for (name, value) in [("webhook-id", &id), ("webhook-timestamp", &ts), ("webhook-signature", &sig)] {
            if let Some(bytes) = value {
                if let Ok(v) = http::HeaderValue::from_bytes(bytes) {
                    h.insert(name, v);
                }
            }
        }
        prop_assert!(v.verify_at(&h, &body, 1_700_000_000).is_err());
    }
}
