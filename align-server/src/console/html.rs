//! A tiny HTML writer. Markup comes only from `&'static str` literals in this crate; every
//! value put into it goes through [`escape`], so a key named `<script>` is just text.

use std::fmt::{Display, Write};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use http::{HeaderMap, StatusCode};
use http_body_util::Full;

use crate::http::Response;

/// The console's Content-Security-Policy: nothing inline, nothing from elsewhere.
const CSP: &str = "default-src 'self'; frame-ancestors 'none'";

/// Escapes text for element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// HTML under construction.
#[derive(Debug, Default)]
pub(crate) struct Html(String);

impl Html {
    /// Empty.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends trusted markup (a literal: values go through [`Html::put`]).
    pub(crate) fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.0.push_str(markup);
        self
    }

    /// Appends `template` with each `{}` replaced by the next argument, escaped.
    ///
    /// ```ignore
    /// h.put("<td data-col=\"name\">{}</td>", &[&key.name]);
    /// ```
    pub(crate) fn put(&mut self, template: &'static str, args: &[&dyn Display]) -> &mut Self {
        let mut args = args.iter();
        let mut pieces = template.split("{}");
        if let Some(first) = pieces.next() {
            self.0.push_str(first);
        }
        for piece in pieces {
            if let Some(arg) = args.next() {
                let mut text = String::new();
                let _ = write!(text, "{arg}");
                self.0.push_str(&escape(&text));
            }
            self.0.push_str(piece);
        }
        self
    }

    /// Appends already-built HTML.
    pub(crate) fn append(&mut self, other: Self) -> &mut Self {
        self.0.push_str(&other.0);
        self
    }

    /// The markup.
    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

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
    use super::*;

    #[test]
    fn values_are_escaped_and_markup_is_kept() {
        let mut h = Html::new();
        h.put(
            "<td title=\"{}\">{}</td>",
            &[&"\"><script>", &"<script>alert(1)</script>"],
        );
        assert_eq!(
            h.into_string(),
            "<td title=\"&quot;&gt;&lt;script&gt;\">&lt;script&gt;alert(1)&lt;/script&gt;</td>"
        );
        assert_eq!(escape("a&b'c"), "a&amp;b&#39;c");
    }

    #[test]
    fn missing_arguments_leave_the_gap_empty() {
        let mut h = Html::new();
        h.put("<p>{} and {}</p>", &[&1]);
        assert_eq!(h.into_string(), "<p>1 and </p>");
    }

    proptest::proptest! {
        /// Whatever a value holds, it cannot open or close a tag or leave an attribute.
        #[test]
        fn escaped_text_has_no_markup_characters(text in proptest::prelude::any::<String>()) {
            let e = escape(&text);
            proptest::prop_assert!(!e.contains(['<', '>', '"', '\'']));
        }
    }
}
