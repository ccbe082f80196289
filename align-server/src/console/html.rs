//! The console's responses: pages, redirects and static assets, with the headers every
//! console answer carries. The markup itself is written with `maud`'s `html!`, checked when
//! the crate compiles; every value spliced into it is escaped, so a key named `<script>` is
//! just text.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use http::{HeaderMap, StatusCode};
use http_body_util::Full;

use crate::http::Response;

/// The console's Content-Security-Policy: nothing inline, nothing from elsewhere.
const CSP: &str = "default-src 'self'; frame-ancestors 'none'";

/// Headers every console answer carries: no caching (pages may show a secret once), no
/// framing, no referrer beyond our own origin, a strict CSP.
///
/// `Referrer-Policy: same-origin` rather than `no-referrer`: with `no-referrer` browsers send
/// `Origin: null` on our own form posts (Fetch, "serializing a request origin"), which the
/// origin check must refuse; `same-origin` still sends no referrer to any other site.
fn secure(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
}

/// An HTML page.
pub(crate) fn page(status: StatusCode, html: String) -> Response {
    let mut r = http::Response::new(Full::new(Bytes::from(html)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(r.headers_mut());
    r
}

/// `303 See Other` to `location` (a path of ours).
pub(crate) fn see_other(location: &str) -> Response {
    let mut r = http::Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(LOCATION, v);
    }
    secure(r.headers_mut());
    r
}

/// A static asset compiled into the binary.
pub(crate) fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(r.headers_mut());
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use maud::{PreEscaped, html};

    #[test]
    fn values_are_escaped_and_markup_is_kept() {
        let value = "\"><script>";
        let text = "<script>alert(1)</script>";
        let markup = html! { td title=(value) { (text) } (PreEscaped("<br>")) };
        assert_eq!(
            markup.into_string(),
            "<td title=\"&quot;&gt;&lt;script&gt;\">&lt;script&gt;alert(1)&lt;/script&gt;</td><br>"
        );
        assert_eq!(html! { ("a&b'c") }.into_string(), "a&amp;b'c");
        // Literals are escaped too: a query string's `&` is written `&amp;` in an attribute.
        assert_eq!(
            html! { a href={ "/console/audit?env=live&cursor=" (7) } { "Older" } }.into_string(),
            "<a href=\"/console/audit?env=live&amp;cursor=7\">Older</a>"
        );
    }

    proptest::proptest! {
        /// Whatever a value holds, it cannot open or close a tag or leave a (double-quoted)
        /// attribute.
        #[test]
        fn escaped_text_has_no_markup_characters(text in proptest::prelude::any::<String>()) {
            let rendered = html! { p title=(text) { (text) } }.into_string();
            let inner = rendered
                .strip_prefix("<p title=\"")
                .and_then(|r| r.strip_suffix("</p>"))
                .unwrap_or("<");
            let (attr, content) = inner.split_once("\">").unwrap_or(("<", ""));
            proptest::prop_assert!(!attr.contains(['<', '>', '"']));
            proptest::prop_assert!(!content.contains(['<', '>', '"']));
        }
    }
}
