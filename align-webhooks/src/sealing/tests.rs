#![allow(clippy::unwrap_used)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{SEALED_PREFIX, Sealer, SealingKey, is_sealed, sealed_key_id};
use crate::error::Error;
use crate::model::EndpointId;

const PLAIN: &[u8] = br#"{"current":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","previous":[]}"#;

#[test]
fn a_sealed_value_opens_only_for_its_endpoint_and_holds_no_plaintext() {
    let sealer = Sealer::new(SealingKey::generate().unwrap());
    let ep = EndpointId::new();
    let sealed = sealer.seal(ep, PLAIN).unwrap();
    assert!(is_sealed(&sealed));
    assert_eq!(sealed_key_id(&sealed).unwrap(), sealer.current_id());
    assert!(!sealed.contains("whsec_") && !sealed.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    assert_eq!(&*sealer.open(ep, &sealed).unwrap(), PLAIN);
    // A fresh nonce every time: the same plaintext never seals the same way twice.
    assert_ne!(sealer.seal(ep, PLAIN).unwrap(), sealed);
    assert!(matches!(
        sealer.open(EndpointId::new(), &sealed),
        Err(Error::Unseal)
    ));
}

#[test]
fn a_wrong_key_or_a_tampered_value_is_refused() {
    let sealer = Sealer::new(SealingKey::generate().unwrap());
    let ep = EndpointId::new();
    let sealed = sealer.seal(ep, PLAIN).unwrap();

    let stranger = Sealer::new(SealingKey::generate().unwrap());
    assert!(matches!(
        stranger.open(ep, &sealed),
        Err(Error::UnknownSealingKey { key_id }) if key_id == sealer.current_id()
    ));
    // Another key claiming the same id (a forged or edited value) does not open it either.
    let (id, body) = sealed
        .strip_prefix(SEALED_PREFIX)
        .unwrap()
        .split_once(':')
        .unwrap();
    let other = stranger.seal(ep, PLAIN).unwrap();
    let other_body = other.rsplit_once(':').unwrap().1;
    assert!(matches!(
        sealer.open(ep, &format!("{SEALED_PREFIX}{id}:{other_body}")),
        Err(Error::Unseal)
    ));

    // Every byte matters: nonce, ciphertext and tag.
    let raw = STANDARD.decode(body).unwrap();
    for i in 0..raw.len() {
        let mut bad = raw.clone();
        bad[i] ^= 0x01;
        let forged = format!("{SEALED_PREFIX}{id}:{}", STANDARD.encode(&bad));
        assert!(
            matches!(sealer.open(ep, &forged), Err(Error::Unseal)),
            "byte {i}"
        );
    }
    for broken in [
        "sealed:v1:",
        "sealed:v1:abc",
        &format!("{SEALED_PREFIX}{id}:not base64!"),
        &format!("{SEALED_PREFIX}{id}:{}", STANDARD.encode([0_u8; 20])),
        "{\"current\":\"whsec_\"}",
    ] {
        assert!(sealer.open(ep, broken).is_err(), "{broken}");
    }
}

#[test]
fn nothing_secret_is_in_debug_output() {
    let key = SealingKey::from_bytes(&[0x41; 32]).unwrap();
    let sealer = Sealer::new(key.clone());
    for text in [format!("{key:?}"), format!("{sealer:?}")] {
        assert!(text.contains(key.id()), "{text}");
        assert!(!text.contains("QUFB") && !text.contains("65, 65"), "{text}");
    }
    assert!(matches!(
        SealingKey::from_bytes(&[1; 31]),
        Err(Error::MalformedSealingKey)
    ));
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_key_file_is_created_once_private_and_loaded_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets-key");
    let (first, created) = Sealer::load_or_create(&path).unwrap();
    assert!(created);
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    let (again, created) = Sealer::load_or_create(&path).unwrap();
    assert!(!created, "an existing key file is never replaced");
    assert_eq!(again.current_id(), first.current_id());
    let ep = EndpointId::new();
    let sealed = first.seal(ep, PLAIN).unwrap();
    assert_eq!(
        &*Sealer::load(&path).unwrap().open(ep, &sealed).unwrap(),
        PLAIN
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&format!("# key {} (current)", first.current_id())));
}

#[test]
fn a_missing_or_malformed_key_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets-key");
    let err = Sealer::load(&path).unwrap_err().to_string();
    assert!(err.contains("secrets-key"), "{err}");
    for (text, says) in [
        ("", "no key"),
        ("# only a comment\n", "no key"),
        ("aes256gcm:c2hvcnQ=\n", "not 32 bytes"),
        ("hello\n", "line 1"),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = Sealer::load(&path).unwrap_err().to_string();
        assert!(err.contains(says), "{text:?}: {err}");
    }
}

#[test]
fn rotation_keeps_the_old_key_until_retired_and_other_sealers_follow_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets-key");
    let (cli, _) = Sealer::load_or_create(&path).unwrap();
    let server = Sealer::load(&path).unwrap();
    let ep = EndpointId::new();
    let old_id = cli.current_id();
    let before = server.seal(ep, PLAIN).unwrap();

    let new_id = cli.rotate().unwrap();
    assert_ne!(new_id, old_id);
    assert_eq!(cli.key_ids(), [new_id.clone(), old_id.clone()]);
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    // During the rotation both keys open, and the other process seals under the new key.
    let during = server.seal(ep, PLAIN).unwrap();
    assert_eq!(sealed_key_id(&during).unwrap(), new_id);
    assert_eq!(&*cli.open(ep, &before).unwrap(), PLAIN);
    assert_eq!(&*server.open(ep, &during).unwrap(), PLAIN);

    cli.retire_previous().unwrap();
    assert_eq!(cli.key_ids(), std::slice::from_ref(&new_id));
    let reloaded = Sealer::load(&path).unwrap();
    assert_eq!(reloaded.key_ids(), [new_id]);
    assert!(matches!(
        reloaded.open(ep, &before),
        Err(Error::UnknownSealingKey { key_id }) if key_id == old_id
    ));
    assert_eq!(&*reloaded.open(ep, &during).unwrap(), PLAIN);
    // The other process follows the file when it next reads it: the old key is gone there too.
    server.refresh().unwrap();
    assert_eq!(server.key_ids(), reloaded.key_ids());
}

#[test]
fn a_sealer_without_a_file_rotates_in_memory() {
    let old = SealingKey::generate().unwrap();
    let sealer = Sealer::new(SealingKey::generate().unwrap()).with_previous(old.clone());
    let ep = EndpointId::new();
    let by_old = Sealer::new(old.clone()).seal(ep, PLAIN).unwrap();
    assert_eq!(&*sealer.open(ep, &by_old).unwrap(), PLAIN);
    assert!(sealer.key_file().is_none());
    let next = sealer.rotate().unwrap();
    assert_eq!(sealer.key_ids().len(), 3);
    sealer.retire_previous().unwrap();
    assert_eq!(sealer.key_ids(), [next]);
    assert!(!sealer.holds(old.id()).unwrap());
}
