//! The client covers every operation of `docs/openapi.yaml`: this fails as soon as the spec
//! gains an `operationId` that `align_client::OPERATIONS` lacks.

use std::collections::BTreeSet;

const SPEC: &str = include_str!("../../docs/openapi.yaml");

/// Operations the client implements ahead of the spec (DESIGN §11, being added by the lead).
const AHEAD_OF_SPEC: &[&str] = &["getKeyUsage", "listRequestLogs"];

/// The `operationId`s of the spec's operations (not those named by `links`, which are
/// indented deeper).
fn spec_operations() -> BTreeSet<&'static str> {
    SPEC.lines()
        .filter_map(|l| l.strip_prefix("      operationId:"))
        .map(str::trim)
        .collect()
}

#[test]
fn every_operation_of_the_spec_has_a_client_method() {
    let spec = spec_operations();
    assert!(spec.len() >= 54, "too few operations read: {spec:?}");
    let client: BTreeSet<&str> = align_client::OPERATIONS.iter().map(|(id, _)| *id).collect();
    let missing: Vec<_> = spec.difference(&client).collect();
    assert!(
        missing.is_empty(),
        "the spec has operations align-client lacks: {missing:?}"
    );
}

#[test]
fn the_client_lists_no_operation_the_spec_does_not_know() {
    let spec = spec_operations();
    let unknown: Vec<_> = align_client::OPERATIONS
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !spec.contains(id) && !AHEAD_OF_SPEC.contains(id))
        .collect();
    assert!(unknown.is_empty(), "not in the spec: {unknown:?}");
}

#[test]
fn every_error_code_of_the_spec_is_known_to_the_client() {
    let line = SPEC
        .lines()
        .find(|l| l.trim_start().starts_with("enum: [invalid_request"))
        .expect("the Error schema's code enum");
    let list = line
        .split_once('[')
        .and_then(|(_, r)| r.split_once(']'))
        .map(|(l, _)| l)
        .expect("an inline list");
    let spec: BTreeSet<&str> = list.split(',').map(str::trim).collect();
    let client: BTreeSet<&str> = align_client::ERROR_CODES.iter().copied().collect();
    assert_eq!(spec, client);
}
