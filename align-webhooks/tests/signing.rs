#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Signing and verification: the spec's fixture, interop with the `standardwebhooks` crate,
//! v1a round trips, tolerance, and redaction.

use std::time::Duration;

use align_webhooks::{
    EndpointKey, EndpointSecrets, Error, SigningKey, SigningSecret, VerificationKey, Verifier,
    WebhookVerifier,
};
use chrono::Utc;
use http::HeaderMap;

const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SPEC_TS: i64 = 1_614_265_330;
const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("webhook-id", id.parse().unwrap());
    h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
    h.insert("webhook-signature", sig.parse().unwrap());
    h
}

#[test]
fn spec_example_signs_to_the_published_signature() {
    let secret = SigningSecret::parse(SPEC_SECRET).unwrap();
    assert_eq!(secret.sign(SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
}

#[test]
fn spec_example_verifies_at_its_timestamp() {
    let v = WebhookVerifier::new(SigningSecret::parse(SPEC_SECRET).unwrap());
    let ok = v
        .verify_at(&headers(SPEC_ID, SPEC_TS, SPEC_SIG), SPEC_BODY, SPEC_TS)
        .unwrap();
    assert_eq!(ok.id, SPEC_ID);
    assert_eq!(ok.timestamp, SPEC_TS);
}

#[test]
fn our_signatures_verify_with_the_standardwebhooks_crate() {
    let secret = SigningSecret::generate().unwrap();
    let theirs = standardwebhooks::Webhook::new(secret.expose().expose()).unwrap();
    let now = Utc::now().timestamp();
    let body = br#"{"type":"api_key.revoked","timestamp":"2026-05-14T10:00:00.000Z","data":{}}"#;
    let sig = secret.sign("msg_ours", now, body);
    theirs
        .verify(body, &headers("msg_ours", now, &sig))
        .unwrap();
}

#[test]
fn rotating_endpoint_header_verifies_with_the_standardwebhooks_crate_for_either_secret() {
    let old = SigningSecret::generate().unwrap();
    let new = SigningSecret::generate().unwrap();
    let mut keys = EndpointSecrets::new(EndpointKey::Symmetric(old.clone()));
    let now = Utc::now();
    keys.rotate(
        EndpointKey::Symmetric(new.clone()),
        now,
        align_webhooks::DEFAULT_GRACE,
    );
    let ts = now.timestamp();
    let sig = keys.signature_header("msg_rot", ts, b"{}", now);
    for s in [old, new] {
        standardwebhooks::Webhook::new(s.expose().expose())
            .unwrap()
            .verify(b"{}", &headers("msg_rot", ts, &sig))
            .unwrap();
    }
}

#[test]
fn their_signatures_verify_with_ours() {
    let secret = SigningSecret::generate().unwrap();
    let theirs = standardwebhooks::Webhook::new(secret.expose().expose()).unwrap();
    let now = Utc::now().timestamp();
    let sig = theirs.sign("msg_theirs", now, b"{\"a\":1}").unwrap();
    let v = WebhookVerifier::new(secret);
    v.verify(&headers("msg_theirs", now, &sig), b"{\"a\":1}")
        .unwrap();
}

#[test]
fn v1a_signatures_round_trip_and_reject_other_keys() {
    let key = SigningKey::generate().unwrap();
    let parsed = SigningKey::parse(key.expose().expose()).unwrap();
    let public = VerificationKey::parse(&key.verifying_key().to_text()).unwrap();
    let v = WebhookVerifier::with_keys(vec![public]);
    let sig = parsed.sign("msg_a", 100, b"body");
    assert!(sig.starts_with("v1a,"));
    v.verify_at(&headers("msg_a", 100, &sig), b"body", 100)
        .unwrap();
    let other = SigningKey::generate().unwrap().sign("msg_a", 100, b"body");
    assert!(matches!(
        v.verify_at(&headers("msg_a", 100, &other), b"body", 100),
        Err(Error::InvalidSignature)
    ));
}

#[test]
fn a_v1a_key_does_not_accept_a_v1_signature_and_vice_versa() {
    let secret = SigningSecret::generate().unwrap();
    let key = SigningKey::generate().unwrap();
    let sym = WebhookVerifier::new(secret.clone());
    let asym = WebhookVerifier::with_keys(vec![VerificationKey::Asymmetric(key.verifying_key())]);
    let v1a = key.sign("m", 5, b"x").replacen("v1a,", "v1,", 1);
    assert!(sym.verify_at(&headers("m", 5, &v1a), b"x", 5).is_err());
    let v1 = secret.sign("m", 5, b"x").replacen("v1,", "v1a,", 1);
    assert!(asym.verify_at(&headers("m", 5, &v1), b"x", 5).is_err());
}

#[test]
fn any_of_several_space_separated_signatures_may_match() {
    let secret = SigningSecret::parse(SPEC_SECRET).unwrap();
    let v = WebhookVerifier::new(secret);
    let sig = format!("v1,Ym9ndXM= v2,whatever {SPEC_SIG} v1a,AAAA");
    v.verify_at(&headers(SPEC_ID, SPEC_TS, &sig), SPEC_BODY, SPEC_TS)
        .unwrap();
}

#[test]
fn timestamps_outside_five_minutes_either_way_are_refused() {
    let v = WebhookVerifier::new(SigningSecret::parse(SPEC_SECRET).unwrap());
    let h = headers(SPEC_ID, SPEC_TS, SPEC_SIG);
    assert!(v.verify_at(&h, SPEC_BODY, SPEC_TS + 300).is_ok());
    assert!(v.verify_at(&h, SPEC_BODY, SPEC_TS - 300).is_ok());
    assert!(matches!(
        v.verify_at(&h, SPEC_BODY, SPEC_TS + 301),
        Err(Error::TimestampTooOld)
    ));
    assert!(matches!(
        v.verify_at(&h, SPEC_BODY, SPEC_TS - 301),
        Err(Error::TimestampTooNew)
    ));
    let lenient = v.tolerance(Duration::from_secs(3600));
    assert!(lenient.verify_at(&h, SPEC_BODY, SPEC_TS + 3000).is_ok());
}

#[test]
fn missing_and_malformed_headers_are_named() {
    let v = WebhookVerifier::new(SigningSecret::parse(SPEC_SECRET).unwrap());
    let mut h = headers(SPEC_ID, SPEC_TS, SPEC_SIG);
    h.remove("webhook-id");
    assert!(matches!(
        v.verify_at(&h, SPEC_BODY, SPEC_TS),
        Err(Error::MissingHeader("webhook-id"))
    ));
    let mut h = headers(SPEC_ID, SPEC_TS, SPEC_SIG);
    h.insert("webhook-timestamp", "soon".parse().unwrap());
    assert!(matches!(
        v.verify_at(&h, SPEC_BODY, SPEC_TS),
        Err(Error::InvalidHeader("webhook-timestamp"))
    ));
    let h = headers(SPEC_ID, SPEC_TS, "garbage");
    assert!(matches!(
        v.verify_at(&h, SPEC_BODY, SPEC_TS),
        Err(Error::InvalidHeader("webhook-signature"))
    ));
}

#[test]
fn secrets_must_be_whsec_base64_of_24_to_64_bytes() {
    use base64::Engine;
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7_u8; n]);
    for n in [0, 1, 23, 65, 128] {
        assert!(
            SigningSecret::parse(&format!("whsec_{}", b64(n))).is_err(),
            "{n}"
        );
    }
    for n in [24, 32, 64] {
        assert!(
            SigningSecret::parse(&format!("whsec_{}", b64(n))).is_ok(),
            "{n}"
        );
    }
    assert!(SigningSecret::parse(&b64(32)).is_err());
    assert!(SigningSecret::parse("whsec_not base64!").is_err());
    let g = SigningSecret::generate().unwrap();
    assert!(g.expose().expose().starts_with("whsec_"));
    assert_eq!(SigningSecret::parse(g.expose().expose()).unwrap(), g);
    assert_ne!(SigningSecret::generate().unwrap(), g);
}

#[test]
fn signing_keys_accept_seed_or_seed_and_public_key_and_check_the_pair() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = SigningKey::generate().unwrap();
    let text = key.expose().expose().to_owned();
    let raw = b64.decode(text.strip_prefix("whsk_").unwrap()).unwrap();
    assert_eq!(raw.len(), 64);
    let seed_only = SigningKey::parse(&format!("whsk_{}", b64.encode(&raw[..32]))).unwrap();
    assert_eq!(seed_only.verifying_key(), key.verifying_key());
    let mut wrong = raw.clone();
    wrong[40] ^= 1;
    assert!(SigningKey::parse(&format!("whsk_{}", b64.encode(&wrong))).is_err());
    assert!(align_webhooks::VerifyingKey::parse("whpk_AAAA").is_err());
}

#[test]
fn no_secret_appears_in_debug_or_errors() {
    let secret = SigningSecret::generate().unwrap();
    let key = SigningKey::generate().unwrap();
    let secret_text = secret.expose().expose().to_owned();
    let key_text = key.expose().expose().to_owned();
    let mut keys = EndpointSecrets::new(EndpointKey::Symmetric(secret.clone()));
    keys.rotate(
        EndpointKey::Asymmetric(key.clone()),
        Utc::now(),
        align_webhooks::DEFAULT_GRACE,
    );
    let verifier = WebhookVerifier::new(secret.clone());
    let printed = format!(
        "{secret:?} {key:?} {keys:?} {verifier:?} {:?} {:?}",
        secret.expose(),
        key.expose()
    );
    for s in [&secret_text, &key_text] {
        let body = &s[s.find('_').unwrap() + 1..];
        assert!(!printed.contains(body), "leaked in {printed}");
    }
    // A malformed secret's error does not echo it.
    let bad = "whsec_c2VjcmV0LXRvby1zaG9ydA==";
    let err = SigningSecret::parse(bad).unwrap_err();
    assert!(!format!("{err} {err:?}").contains("c2VjcmV0"));
}
