//! Key-space tokens: round trips for any valid tag, rejection of every single-character
//! change, and the two formats (Align's `ako`/`akt`, a key space's own tag) never both
//! accepting one string.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

use align_keys::keyspace_token::{
    KeyspaceTag, generate_keyspace_token, parse_keyspace_token, prefix_len, token_len,
};
use align_keys::token::{self, BASE62, Environment, checksum};
use align_keys::{Error, TokenDefect};
use proptest::prelude::*;

/// Any valid key-space tag.
fn tag() -> impl Strategy<Value = KeyspaceTag> {
    "[a-z]{2,8}"
        .prop_filter("ako and akt are Align's", |t| t != "ako" && t != "akt")
        .prop_map(|t| KeyspaceTag::new(&t).unwrap())
}

/// A string of the token shape under `tag` with a correct checksum, built from its parts
/// (a fixture, not a key).
fn shaped(tag: &str, id: &str, secret: &str) -> String {
    let body = format!("{tag}_{id}_{secret}");
    let check = checksum(body.as_bytes());
    format!("{body}{}", std::str::from_utf8(&check).unwrap())
}

#[test]
fn align_keys_are_not_key_space_keys_and_the_reverse() {
    for env in [Environment::Live, Environment::Sandbox] {
        let align = token::generate(env).unwrap();
        assert!(matches!(
            parse_keyspace_token(align.token.expose()),
            Err(Error::MalformedToken(TokenDefect::BadKeyspaceTag))
        ));
    }
    let ks = generate_keyspace_token(&KeyspaceTag::new("acme").unwrap()).unwrap();
    assert!(matches!(
        token::parse(ks.token.expose()),
        Err(Error::MalformedToken(TokenDefect::UnknownTag))
    ));
    // A well-formed body under `ako` with a correct checksum is Align's only.
    let fixture = shaped("ako", "00000000", &"0".repeat(43));
    assert!(token::parse(&fixture).is_ok());
    assert!(parse_keyspace_token(&fixture).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn minted_key_space_tokens_round_trip_for_any_valid_tag(tag in tag()) {
        let m = generate_keyspace_token(&tag).unwrap();
        let t = m.token.expose();
        let n = tag.as_str().len();
        prop_assert_eq!(t.len(), token_len(n));
        prop_assert_eq!(m.prefix.len(), prefix_len(n));
        prop_assert_eq!(&m.tag, &tag);
        let p = parse_keyspace_token(t).unwrap();
        prop_assert_eq!(p.tag(), tag.as_str());
        prop_assert_eq!(p.prefix(), m.prefix.as_str());
        prop_assert_eq!(p.as_secret_str(), t);
        let tag_and_separator = format!("{tag}_");
        prop_assert!(m.prefix.starts_with(&tag_and_separator));
        prop_assert!(token::parse(t).is_err());
    }

    #[test]
    fn every_single_character_change_is_rejected(
        tag in tag(),
        replacement in any::<char>(),
        position in 0usize..128,
    ) {
        let m = generate_keyspace_token(&tag).unwrap();
        let t = m.token.expose();
        let position = position % t.len();
        let original = t.as_bytes()[position] as char;
        prop_assume!(replacement != original);
        let mut changed = String::with_capacity(t.len() + 4);
        changed.push_str(&t[..position]);
        changed.push(replacement);
        changed.push_str(&t[position + 1..]);
        prop_assert!(parse_keyspace_token(&changed).is_err(), "accepted a change at {}", position);
    }

    #[test]
    fn every_base62_swap_at_every_position_is_rejected(tag in tag(), shift in 1usize..62) {
        let m = generate_keyspace_token(&tag).unwrap();
        let t = m.token.expose().as_bytes();
        for position in 0..t.len() {
            let mut changed = t.to_vec();
            let idx = BASE62.iter().position(|c| *c == t[position]).unwrap_or(0);
            changed[position] = BASE62[(idx + shift) % 62];
            if changed[position] == t[position] {
                continue;
            }
            let s = String::from_utf8(changed).unwrap();
            prop_assert!(parse_keyspace_token(&s).is_err(), "accepted a change at {}", position);
        }
    }

    #[test]
    fn every_truncation_and_extension_is_rejected(tag in tag(), extra in "[0-9A-Za-z]{1,4}") {
        let m = generate_keyspace_token(&tag).unwrap();
        let t = m.token.expose();
        for len in 0..t.len() {
            prop_assert!(parse_keyspace_token(&t[..len]).is_err(), "accepted a truncation to {}", len);
        }
        let longer = format!("{t}{extra}");
        prop_assert!(parse_keyspace_token(&longer).is_err());
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1024)))]

    /// No string is both an Align key and a key-space key, including well-formed bodies with
    /// a correct checksum under any lowercase tag (`ako` and `akt` among them); neither
    /// parser panics or answers with anything but a typed defect.
    #[test]
    fn the_two_parsers_never_both_accept_a_string(
        s in prop_oneof![
            any::<String>(),
            "[a-z]{0,10}_[0-9a-f]{0,9}_[0-9A-Za-z]{0,60}",
            ("(ak[a-z]|[a-z]{2,8})", "[0-9a-f]{8}", "[0-9A-Za-z]{43}")
                .prop_map(|(t, id, secret)| shaped(&t, &id, &secret)),
        ]
    ) {
        let align = token::parse(&s);
        let ks = parse_keyspace_token(&s);
        prop_assert!(!(align.is_ok() && ks.is_ok()), "both accepted {}", s);
        for r in [align.map(|_| ()), ks.map(|_| ())] {
            match r {
                Ok(()) | Err(Error::MalformedToken(_)) => {}
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }
}

proptest! {
    /// A minted key-space token is masked to its prefix wherever it appears in logged text
    /// (the redactor of `align-core`, which every log and record goes through).
    #[test]
    fn minted_keyspace_tokens_never_survive_redaction(tag in tag(), before in "[ =:\"]{0,3}") {
        let minted = generate_keyspace_token(&tag).unwrap();
        let line = format!("verify{before}{} failed", minted.token.expose());
        let masked = align_keys::Redactor::new().redact_text(&line);
        prop_assert!(!masked.contains(minted.token.expose()), "{masked}");
        prop_assert!(masked.contains(&format!("{}…", minted.prefix)), "{masked}");
    }
}
