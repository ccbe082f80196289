//! `/docs`: the API reference. Swagger UI (vendored from the npm package `swagger-ui-dist`, see
//! `assets/swagger-ui/README.md`) renders `docs/openapi.yaml`; the page, its scripts, its styles
//! and the spec are all compiled into the binary, so the reference works with no network and
//! always describes the server that serves it.

use bytes::Bytes;
use http::Method;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http_body_util::Full;

use crate::error::ApiError;
use crate::http::Response;
use crate::routes;

/// Swagger UI needs inline styles (it sets `style` attributes) and `data:` images (its icons);
/// scripts come only from this origin, and the page may not be framed.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

/// One file served under `/docs`.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    /// The vendored files change only with the binary; the page and the spec are revalidated.
    cache_control: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const REVALIDATE: &str = "no-cache";
const VENDORED: &str = "public, max-age=3600";

const ASSETS: &[Asset] = &[
    Asset {
        path: "/docs",
        content_type: HTML,
        cache_control: REVALIDATE,
        body: include_bytes!("../assets/docs/index.html"),
    },
    Asset {
        path: "/docs/init.js",
        content_type: JS,
        cache_control: REVALIDATE,
        body: include_bytes!("../assets/docs/init.js"),
    },
    Asset {
        path: "/docs/docs.css",
        content_type: CSS,
        cache_control: REVALIDATE,
        body: include_bytes!("../assets/docs/docs.css"),
    },
    Asset {
        path: "/docs/openapi.yaml",
        content_type: "application/yaml; charset=utf-8",
        cache_control: REVALIDATE,
        body: include_str!("../../docs/openapi.yaml").as_bytes(),
    },
    Asset {
        path: "/docs/swagger-ui-bundle.js",
        content_type: JS,
        cache_control: VENDORED,
        body: include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js"),
    },
    Asset {
        path: "/docs/swagger-ui.css",
        content_type: CSS,
        cache_control: VENDORED,
        body: include_bytes!("../assets/swagger-ui/swagger-ui.css"),
    },
    Asset {
        path: "/docs/licenses.txt",
        content_type: "text/plain; charset=utf-8",
        cache_control: VENDORED,
        body: concat!(
            "Swagger UI (swagger-ui-dist), served under /docs, is licensed as follows.\n\n",
            include_str!("../assets/swagger-ui/LICENSE"),
            "\n---- NOTICE ----\n",
            include_str!("../assets/swagger-ui/NOTICE"),
            "\n---- Licences of the code bundled in swagger-ui-bundle.js ----\n",
            include_str!("../assets/swagger-ui/swagger-ui-bundle.js.LICENSE.txt"),
        )
        .as_bytes(),
    },
];

/// Whether `path` is under `/docs` (answered here, without an API key).
pub(crate) fn is_docs_path(path: &str) -> bool {
    path == "/docs" || path.starts_with("/docs/")
}

/// Answers a request under `/docs`: the file, `404` for an unknown one, `405` for a method other
/// than `GET`.
pub(crate) fn serve(method: &Method, path: &str) -> Result<Response, ApiError> {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return Err(ApiError::not_found());
    };
    if method != Method::GET {
        return Err(routes::unrouted(method, path));
    }
    let mut r = http::Response::new(Full::new(Bytes::from_static(asset.body)));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(asset.cache_control));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(r)
}

/// The paths served under `/docs`, for the route list.
#[cfg(test)]
pub(crate) fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_docs_file_is_in_the_page_list_and_back() {
        let served: std::collections::BTreeSet<_> = paths().collect();
        let listed: std::collections::BTreeSet<_> = routes::ROUTE_TABLE
            .iter()
            .filter(|r| r.listing == routes::Listing::Page && is_docs_path(r.path))
            .map(|r| {
                assert_eq!(r.method, Method::GET, "{}", r.path);
                r.path
            })
            .collect();
        assert_eq!(served, listed);
    }
}
