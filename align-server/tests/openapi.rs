//! `docs/openapi.yaml` and the server's one route table (`align_server::ROUTE_TABLE`, from which
//! dispatch, metrics labels and `405`s come) list the same operations with the same methods;
//! browser pages (`/docs`) are in the table as pages and stay out of the spec.

use std::collections::BTreeSet;

use align_server::{Listing, ROUTE_TABLE};

const SPEC: &str = include_str!("../../docs/openapi.yaml");
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// (METHOD, path) pairs under `paths:`, read from the document's indentation: paths at two
/// spaces, methods at four.
fn spec_routes() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut in_paths = false;
    let mut path = None;
    for line in SPEC.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            path = Some(format!("/{}", p.trim_end().trim_end_matches(':')));
        } else if let Some(m) = line.strip_prefix("    ") {
            let m = m.trim_end().trim_end_matches(':');
            if METHODS.contains(&m) {
                if let Some(p) = &path {
                    out.insert((m.to_ascii_uppercase(), p.clone()));
                }
            }
        }
    }
    out
}

#[test]
fn every_route_is_in_the_spec_and_every_spec_route_exists() {
    let spec = spec_routes();
    let router: BTreeSet<(String, String)> = ROUTE_TABLE
        .iter()
        .filter(|r| r.listing == Listing::Api)
        .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
        .collect();
    assert!(!spec.is_empty());
    let missing_in_spec: Vec<_> = router.difference(&spec).collect();
    let missing_in_router: Vec<_> = spec.difference(&router).collect();
    assert!(
        missing_in_spec.is_empty(),
        "routes the spec lacks: {missing_in_spec:?}"
    );
    assert!(
        missing_in_router.is_empty(),
        "spec routes the router lacks: {missing_in_router:?}"
    );
}

#[test]
fn browser_pages_are_outside_the_api_and_its_spec() {
    let spec = spec_routes();
    let api: BTreeSet<_> = ROUTE_TABLE
        .iter()
        .filter(|r| r.listing == Listing::Api)
        .map(|r| (r.method.as_str(), r.path))
        .collect();
    let pages: Vec<_> = ROUTE_TABLE
        .iter()
        .filter(|r| r.listing == Listing::Page)
        .collect();
    assert!(!pages.is_empty());
    for page in pages {
        let (method, path) = (page.method.as_str(), page.path);
        assert!(
            !api.contains(&(method, path)),
            "{method} {path} is both a page and a route"
        );
        assert!(
            !spec.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is a page, not an API operation: keep it out of the spec"
        );
        assert!(!path.starts_with("/api/"), "{path}");
    }
}

#[test]
fn every_table_route_is_listed_once() {
    let mut seen = BTreeSet::new();
    for r in ROUTE_TABLE {
        assert!(
            seen.insert((r.method.as_str(), r.path)),
            "{} {} is in the route table twice",
            r.method,
            r.path
        );
    }
}

#[test]
fn the_spec_has_a_relative_server_first_so_docs_try_it_calls_the_same_origin() {
    let servers = SPEC
        .split_once("\nservers:\n")
        .map(|(_, rest)| rest)
        .expect("a servers section");
    let first = servers
        .lines()
        .find_map(|l| l.trim().strip_prefix("- url:"))
        .expect("a server url");
    assert_eq!(first.trim(), "/");
}

#[test]
fn the_spec_names_every_error_code_of_the_design() {
    for code in [
        "invalid_request",
        "ambiguous_credentials",
        "missing_key",
        "invalid_key",
        "key_revoked",
        "key_expired",
        "key_suspended",
        "forbidden",
        "not_found",
        "idempotency_conflict",
        "payload_too_large",
        "unsupported_media_type",
        "idempotency_key_reused",
        "rate_limit",
        "concurrency_limit",
        "quota_exceeded",
        "unavailable",
        "timeout",
        "internal_error",
    ] {
        assert!(SPEC.contains(code), "{code}");
    }
}

#[test]
fn the_spec_names_the_codes_beyond_the_design_in_its_error_enum() {
    let codes = SPEC
        .lines()
        .find_map(|l| l.trim().strip_prefix("enum: [invalid_request,"))
        .expect("the Error schema's code enum");
    for code in ["endpoint_disabled", "key_not_active", "method_not_allowed"] {
        assert!(codes.contains(code), "{code}");
    }
}
