//! `/docs`: the API reference page, its files and the spec, served by the binary without a key,
//! with the security headers of the console contract.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

mod support;

use http::{Method, StatusCode};
use support::{Reply, TestServer};

async fn get(s: &TestServer, path: &str) -> Reply {
    s.send(Method::GET, path, &[], None).await
}

/// The headers every `/docs` answer carries.
fn assert_page_headers(r: &Reply, path: &str) {
    let csp = r.header("content-security-policy").unwrap_or_default();
    for directive in [
        "default-src 'self'",
        "img-src 'self' data:",
        "style-src 'self' 'unsafe-inline'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{path}: CSP {csp:?} lacks {directive}"
        );
    }
    assert!(
        !csp.contains("script-src") && !csp.contains("unsafe-eval"),
        "{path}: scripts only from 'self': {csp}"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{path}"
    );
    assert!(r.header("cache-control").is_some(), "{path}");
    assert!(r.header("x-request-id").is_some(), "{path}");
}

#[tokio::test]
async fn docs_page_assets_and_spec_are_served_without_a_key() {
    let s = TestServer::start().await;
    let cases = [
        ("/docs", "text/html; charset=utf-8", "id=\"swagger-ui\"", 0),
        (
            "/docs/init.js",
            "text/javascript; charset=utf-8",
            "SwaggerUIBundle",
            0,
        ),
        (
            "/docs/docs.css",
            "text/css; charset=utf-8",
            ".align-docs-header",
            0,
        ),
        (
            "/docs/swagger-ui-bundle.js",
            "text/javascript; charset=utf-8",
            "SwaggerUIBundle",
            500_000,
        ),
        (
            "/docs/swagger-ui.css",
            "text/css; charset=utf-8",
            ".swagger-ui",
            50_000,
        ),
        (
            "/docs/openapi.yaml",
            "application/yaml; charset=utf-8",
            "openapi: 3.1.0",
            10_000,
        ),
        (
            "/docs/licenses.txt",
            "text/plain; charset=utf-8",
            "Apache License",
            1_000,
        ),
    ];
    for (path, content_type, needle, min_len) in cases {
        let r = get(&s, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.header("content-type"), Some(content_type), "{path}");
        assert_page_headers(&r, path);
        let text = String::from_utf8(r.raw.to_vec()).expect("UTF-8");
        assert!(text.contains(needle), "{path} lacks {needle:?}");
        assert!(text.len() >= min_len, "{path}: {} bytes", text.len());
    }
    // Every route and page the server lists under /docs answers.
    for page in align_server::ROUTE_TABLE {
        let (method, path) = (&page.method, page.path);
        if page.listing == align_server::Listing::Page && path.starts_with("/docs") {
            assert_eq!(*method, http::Method::GET);
            assert_eq!(get(&s, path).await.status, StatusCode::OK, "{path}");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn docs_page_loads_only_its_own_files_and_no_inline_script() {
    let s = TestServer::start().await;
    let html = String::from_utf8(get(&s, "/docs").await.raw.to_vec()).unwrap();
    // Every <script> has a src under /docs, and none has a body.
    let mut scripts = 0;
    for part in html.split("<script").skip(1) {
        scripts += 1;
        let (attrs, rest) = part.split_once('>').unwrap();
        let src = attrs
            .split("src=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or_else(|| panic!("an inline script: <script{attrs}>"));
        assert!(src.starts_with("/docs/"), "{src}");
        assert!(rest.starts_with("</script>"), "a script with a body");
        assert_eq!(get(&s, src).await.status, StatusCode::OK, "{src}");
    }
    assert_eq!(scripts, 2, "the bundle and the init script");
    for link in html.split("href=\"").skip(1) {
        let href = link.split('"').next().unwrap();
        assert!(
            href.starts_with('/') || href == "data:,",
            "only same-origin links: {href}"
        );
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN"
    );
    let init = String::from_utf8(get(&s, "/docs/init.js").await.raw.to_vec()).unwrap();
    assert!(init.contains("url: \"/docs/openapi.yaml\""));
    assert!(init.contains("validatorUrl: null"), "no online validator");
    s.stop().await;
}

#[tokio::test]
async fn docs_spec_is_the_repository_spec() {
    let s = TestServer::start().await;
    let r = get(&s, "/docs/openapi.yaml").await;
    assert_eq!(r.raw, include_str!("../../docs/openapi.yaml").as_bytes());
    s.stop().await;
}

#[tokio::test]
async fn unknown_docs_files_are_not_found_and_other_methods_not_allowed() {
    let s = TestServer::start().await;
    let r = get(&s, "/docs/nope.js").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
    let r = get(&s, "/docs/swagger-ui-bundle.js.map").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s
        .send(Method::POST, "/docs", &[], Some(b"x".to_vec()))
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET"));
    // The API still needs a key: /docs opens no door beside it.
    let r = get(&s, "/api/v1/me").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}
