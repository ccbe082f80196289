//! The redactor masks every token, webhook secret and credential header value, whatever
//! text surrounds it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

use align_keys::token::{self, Environment};
use align_keys::{MASK, Redactor};
use proptest::prelude::*;
use serde_json::json;

const TOKEN: &str = "ako_9311c954_00000000000000000000000000000000000000000000Rws4U";

#[test]
fn a_token_in_text_becomes_its_prefix_and_an_ellipsis() {
    let r = Redactor::new();
    assert_eq!(
        r.redact_text(&format!("key={TOKEN}!")),
        "key=ako_9311c954…!"
    );
    assert_eq!(r.redact_text("nothing here"), "nothing here");
}

#[test]
fn header_values_are_masked_keeping_the_scheme() {
    let r = Redactor::new();
    assert_eq!(
        r.redact_text("authorization: Basic dXNlcjpwYXNz\nnext"),
        "authorization: Basic …\nnext"
    );
    assert_eq!(r.redact_text("X-API-Key: sk_live_other"), "X-API-Key: …");
    assert_eq!(
        r.redact_text(&format!("curl -H 'Authorization: Bearer {TOKEN}' x")),
        "curl -H 'Authorization: Bearer ako_9311c954…' x"
    );
    assert_eq!(
        r.redact_header_value("Authorization", "Bearer opaque"),
        "Bearer …"
    );
    assert_eq!(r.redact_header_value("x-api-key", TOKEN), "ako_9311c954…");
    assert_eq!(r.redact_header_value("user-agent", "curl/8"), "curl/8");
}

#[test]
fn webhook_secrets_are_masked() {
    let r = Redactor::new();
    let s = "secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw end";
    assert_eq!(r.redact_text(s), "secret whsec_… end");
}

#[test]
fn json_is_redacted_in_values_keys_and_credential_fields() {
    let r = Redactor::new();
    let mut v = json!({
        "headers": {"Authorization": format!("Bearer {TOKEN}"), "X-Api-Key": "opaque", "accept": "*/*"},
        "note": format!("used {TOKEN} today"),
        TOKEN: 1,
        "list": [TOKEN, 5, null],
        "password": 1234,
    });
    r.redact_json(&mut v);
    let text = v.to_string();
    assert!(!text.contains(&TOKEN[13..]), "{text}");
    assert_eq!(v["headers"]["Authorization"], "Bearer ako_9311c954…");
    assert_eq!(v["headers"]["X-Api-Key"], MASK);
    assert_eq!(v["headers"]["accept"], "*/*");
    assert_eq!(v["note"], "used ako_9311c954… today");
    assert_eq!(v["list"][0], "ako_9311c954…");
    assert_eq!(v["password"], MASK);
    assert!(v.get("ako_9311c954…").is_some());
}

#[test]
fn overlapping_lookalikes_cannot_shield_a_real_token() {
    let r = Redactor::new();
    let tricky = format!("ako_1234abcd_{TOKEN}");
    let out = r.redact_text(&tricky);
    assert!(!out.contains(&TOKEN[13..]), "{out}");
}

fn surrounding() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,30}",
        "[a-zA-Z0-9_]{0,20}",
        Just("Authorization: Bearer ".to_owned()),
        Just("{\"x-api-key\":\"".to_owned()),
        Just("ako_1234abcd_".to_owned()),
        Just("akt_".to_owned()),
        Just("whsec_".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_part_of_a_secret_survives_redaction(
        before in surrounding(),
        between in surrounding(),
        after in surrounding(),
        live in any::<bool>(),
    ) {
        let env = if live { Environment::Live } else { Environment::Sandbox };
        let a = token::generate(env).unwrap();
        let b = token::generate(env).unwrap();
        let text = format!("{before}{}{between}{}{after}", a.token.expose(), b.token.expose());
        let out = Redactor::new().redact_text(&text).into_owned();
        for minted in [&a, &b] {
            let secret = &minted.token.expose()[13..];
            for window in secret.as_bytes().windows(10) {
                let w = std::str::from_utf8(window).unwrap();
                prop_assert!(!out.contains(w), "secret fragment {} left in {}", w, out);
            }
        }
        // JSON built around the same text is also clean.
        let mut v = serde_json::json!({ "field": text, "authorization": a.token.expose() });
        Redactor::new().redact_json(&mut v);
        let json = v.to_string();
        prop_assert!(!json.contains(&a.token.expose()[13..]));
        prop_assert!(!json.contains(&b.token.expose()[13..]));
    }

    #[test]
    fn redaction_never_panics(s in "\\PC{0,200}") {
        let _ = Redactor::new().redact_text(&s);
    }
}
