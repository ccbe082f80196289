//! The token format: the shared test vectors, and property tests for round-trips and
//! rejection of every single-character change and truncation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

use align_keys::token::{self, BASE62, Environment, TOKEN_LEN, TokenDefect};
use align_keys::{Error, KeyHasher, Sha256Hasher};
use proptest::prelude::*;
use serde_json::Value;

fn vectors() -> Value {
    let text = include_str!("fixtures/token-format.json");
    serde_json::from_str(text).unwrap()
}

#[test]
fn valid_vectors_parse_with_their_prefix_checksum_and_hash() {
    let v = vectors();
    assert_eq!(v["alphabet"].as_str().unwrap().as_bytes(), BASE62);
    for case in v["valid"].as_array().unwrap() {
        let tok = case["token"].as_str().unwrap();
        let parsed = token::parse(tok).unwrap_or_else(|e| panic!("{tok}: {e}"));
        let env = match case["environment"].as_str().unwrap() {
            "live" => Environment::Live,
            _ => Environment::Sandbox,
        };
        assert_eq!(parsed.environment(), env);
        assert_eq!(parsed.prefix(), case["prefix"].as_str().unwrap());
        let body = &tok.as_bytes()[..TOKEN_LEN - 6];
        assert_eq!(
            crc32fast::hash(body) as u64,
            case["crc32"].as_u64().unwrap()
        );
        assert_eq!(
            &token::checksum(body)[..],
            case["checksum"].as_str().unwrap().as_bytes()
        );
        assert_eq!(
            Sha256Hasher.hash(tok).to_hex(),
            case["sha256_hex"].as_str().unwrap()
        );
    }
}

#[test]
fn invalid_vectors_are_rejected_with_the_right_defect() {
    let v = vectors();
    for case in v["invalid"].as_array().unwrap() {
        let tok = case["token"].as_str().unwrap();
        let why = case["why"].as_str().unwrap();
        let expected = match why {
            "truncated" | "too long" => TokenDefect::WrongLength,
            "checksum mismatch" => TokenDefect::ChecksumMismatch,
            "unknown tag" => TokenDefect::UnknownTag,
            "uppercase hex in id" => TokenDefect::BadId,
            "character outside base62" => TokenDefect::BadCharacter,
            other => panic!("unexpected vector reason {other}"),
        };
        match token::parse(tok) {
            Err(Error::MalformedToken(d)) => assert_eq!(d, expected, "{why}"),
            other => panic!("{why}: expected rejection, got {other:?}"),
        }
    }
}

#[test]
fn empty_and_odd_inputs_are_rejected_without_panicking() {
    for s in [
        "",
        "a",
        "ako",
        "ako_",
        "akt_",
        "ako_\u{1F600}",
        "ako_9311c954_",
        "\0\0\0\0",
    ] {
        assert!(
            matches!(token::parse(s), Err(Error::MalformedToken(_))),
            "{s:?}"
        );
    }
    // A multi-byte character at a position where the parser slices must not panic.
    let mut t = token::generate(Environment::Live)
        .unwrap()
        .token
        .expose()
        .to_owned();
    t.replace_range(10..11, "é");
    t.pop();
    assert!(token::parse(&t).is_err());
}

#[test]
fn minted_secrets_use_the_whole_alphabet_evenly() {
    // 2,000 tokens × 43 characters: each of the 62 symbols expected ~1,387 times.
    let mut counts = [0u32; 62];
    for _ in 0..2_000 {
        let m = token::generate(Environment::Live).unwrap();
        for b in &m.token.expose().as_bytes()[13..56] {
            counts[BASE62.iter().position(|c| c == b).unwrap()] += 1;
        }
    }
    let expected = 2_000.0 * 43.0 / 62.0;
    let chi2: f64 = counts
        .iter()
        .map(|&c| (f64::from(c) - expected).powi(2) / expected)
        .sum();
    // 61 degrees of freedom: p = 0.0001 at about 113.
    assert!(
        chi2 < 113.0,
        "base62 sampling looks biased: chi² = {chi2:.1}"
    );
}

fn env() -> impl Strategy<Value = Environment> {
    prop_oneof![Just(Environment::Live), Just(Environment::Sandbox)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn minted_tokens_round_trip(e in env()) {
        let m = token::generate(e).unwrap();
        let t = m.token.expose();
        prop_assert_eq!(t.len(), TOKEN_LEN);
        let p = token::parse(t).unwrap();
        prop_assert_eq!(p.environment(), e);
        prop_assert_eq!(p.prefix(), m.prefix.as_str());
        prop_assert!(m.prefix.starts_with(e.tag()));
    }

    #[test]
    fn every_single_character_change_is_rejected(
        e in env(),
        replacement in any::<char>(),
        position in 0usize..TOKEN_LEN,
    ) {
        let m = token::generate(e).unwrap();
        let t = m.token.expose();
        let original = t.as_bytes()[position] as char;
        prop_assume!(replacement != original);
        let mut changed = String::with_capacity(t.len() + 4);
        changed.push_str(&t[..position]);
        changed.push(replacement);
        changed.push_str(&t[position + 1..]);
        prop_assert!(token::parse(&changed).is_err(), "accepted a change at {}", position);
    }

    #[test]
    fn every_change_at_every_position_is_rejected_for_base62_swaps(e in env(), shift in 1usize..62) {
        let m = token::generate(e).unwrap();
        let t = m.token.expose().as_bytes();
        for position in 0..TOKEN_LEN {
            let mut changed = t.to_vec();
            let idx = BASE62.iter().position(|c| *c == t[position]).unwrap_or(0);
            changed[position] = BASE62[(idx + shift) % 62];
            if changed[position] == t[position] {
                continue;
            }
            let s = String::from_utf8(changed).unwrap();
            prop_assert!(token::parse(&s).is_err(), "accepted a change at {}", position);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_rejected(e in env(), extra in "[0-9A-Za-z]{1,4}") {
        let m = token::generate(e).unwrap();
        let t = m.token.expose();
        for len in 0..t.len() {
            prop_assert!(token::parse(&t[..len]).is_err(), "accepted a truncation to {}", len);
        }
        let longer = format!("{t}{extra}");
        prop_assert!(token::parse(&longer).is_err());
    }

    #[test]
    fn parser_never_panics_on_arbitrary_input(s in "\\PC{0,80}") {
        let _ = token::parse(&s);
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

    /// Any text, including near-misses of the format, is parsed or refused with a typed
    /// defect; nothing panics and nothing but a well-formed token passes.
    #[test]
    fn hostile_text_never_panics_the_parser(
        s in prop_oneof![
            any::<String>(),
            "ak[a-z]_[0-9a-f]{0,9}_[0-9A-Za-z]{0,60}",
            "ako_[0-9a-f]{8}_[0-9A-Za-z\u{e9}\u{1F600}]{49}",
        ]
    ) {
        match token::parse(&s) {
            Ok(p) => prop_assert_eq!(p.prefix().len(), 12),
            Err(Error::MalformedToken(_)) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    /// Any `Authorization` / `X-API-Key` header values are read or refused with a typed
    /// problem, never a panic; a key is only ever taken from one of the two headers.
    #[cfg(feature = "http")]
    #[test]
    fn hostile_credential_headers_never_panic(
        auth in prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
        api_key in prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
        scheme in prop_oneof![Just(""), Just("Bearer "), Just("bearer  "), Just("Basic ")],
    ) {
        let mut headers = http::HeaderMap::new();
        if let Some(a) = &auth {
            let mut v = scheme.as_bytes().to_vec();
            v.extend_from_slice(a);
            if let Ok(v) = http::HeaderValue::from_bytes(&v) {
                headers.insert(http::header::AUTHORIZATION, v);
            }
        }
        if let Some(k) = &api_key {
            if let Ok(v) = http::HeaderValue::from_bytes(k) {
                headers.insert("x-api-key", v);
            }
        }
        if let Ok(key) = align_keys::http::presented_key(&headers) {
            let from_auth = headers.get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains(key));
            let from_x = headers.get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains(key));
            prop_assert!(from_auth || from_x);
        }
    }
}
