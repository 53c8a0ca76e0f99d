//! Web console UI: static HTML, CSS and ES modules embedded at compile time and
//! served next to the API with strict security headers. The UI is a
//! single-page app; every `/ui/...` path that is not an asset answers the same
//! `index.html` so deep links and reloads work with History API routing.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Content-Security-Policy of every UI response: same-origin only, no inline
/// script or style, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../ui/index.html"),
};

const JS: &str = "text/javascript; charset=utf-8";

/// Files under `/ui/assets/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../ui/assets/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../ui/assets/favicon.svg"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_bytes!("../ui/assets/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        body: include_bytes!("../ui/assets/api.js"),
    },
    Asset {
        name: "dom.js",
        content_type: JS,
        body: include_bytes!("../ui/assets/dom.js"),
    },
    Asset {
        name: "pages/dashboard.js",
        content_type: JS,
        body: include_bytes!("../ui/assets/pages/dashboard.js"),
    },
    Asset {
        name: "pages/search.js",
        content_type: JS,
        body: include_bytes!("../ui/assets/pages/search.js"),
    },
    Asset {
        name: "pages/finding.js",
        content_type: JS,
        body: include_bytes!("../ui/assets/pages/finding.js"),
    },
    Asset {
        name: "pages/asset.js",
        content_type: JS,
        body: include_bytes!("../ui/assets/pages/asset.js"),
    },
    Asset {
        name: "pages/agents.js",
        content_type: JS,
        body: include_bytes!("../ui/assets/pages/agents.js"),
    },
    Asset {
        name: "pages/schedules.js",
        content_type: JS,
        body: include_bytes!("../ui/assets/pages/schedules.js"),
    },
    Asset {
        name: "pages/reports.js",
        content_type: JS,
        body: include_bytes!("../ui/assets/pages/reports.js"),
    },
    Asset {
        name: "pages/incidents.js",
        content_type: JS,
        body: include_bytes!("../ui/assets/pages/incidents.js"),
    },
    Asset {
        name: "pages/alerts.js",
        content_type: JS,
        body: include_bytes!("../ui/assets/pages/alerts.js"),
    },
];

/// Strong ETag of a body, so browsers revalidate cheaply instead of re-downloading.
fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..12]))
}

fn etags() -> &'static Vec<String> {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        std::iter::once(&INDEX)
            .chain(ASSETS)
            .map(|a| etag(a.body))
            .collect()
    })
}

/// Headers every UI response carries.
fn security_headers(headers: &mut HeaderMap) {
    let set = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

fn serve(asset: &'static Asset, tag: &str, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, asset.body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Names are not content-hashed, so every use revalidates against the ETag.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    security_headers(h);
    resp
}

async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &etags()[0], &headers)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == file) {
        Some(i) => serve(&ASSETS[i], &etags()[i + 1], &headers),
        None => {
            let mut resp = ApiError::not_found().into_response();
            security_headers(resp.headers_mut());
            resp
        }
    }
}

/// Routes of the UI: `/`, `/ui`, `/ui/assets/...` and the SPA fallback `/ui/...`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/assets/{*file}", get(asset))
        .route("/ui/{*path}", get(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_has_a_distinct_name_and_a_body() {
        let mut names: Vec<_> = ASSETS.iter().map(|a| a.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        assert!(ASSETS.iter().all(|a| !a.body.is_empty()));
    }

    #[test]
    fn index_loads_only_external_modules_and_styles() {
        let html = std::str::from_utf8(INDEX.body).expect("utf-8");
        assert!(html.contains("<script type=\"module\" src=\"/ui/assets/app.js\"></script>"));
        assert!(!html.contains("style="), "inline style attribute");
        assert!(!html.contains("onclick"), "inline handler");
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            let js = std::str::from_utf8(a.body).expect("utf-8");
            // CSP forbids eval-like constructs; keep the code free of them.
            assert!(!js.contains("eval("), "{} uses eval", a.name);
            assert!(!js.contains("new Function"), "{} uses Function", a.name);
        }
    }
}
