//! The web UI is served by the API router: index.html for UI paths, embedded
//! assets with the right types, strict security headers, ETag revalidation,
//! and JSON 404s that stay JSON for unknown API paths.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::Fixture;
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn get(
    f: &Fixture,
    uri: &str,
    headers: &[(header::HeaderName, &str)],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    let resp = f
        .app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let h = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, h, body)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

fn assert_security_headers(h: &HeaderMap, uri: &str) {
    let csp = header(h, "content-security-policy");
    assert!(csp.contains("default-src 'self'"), "{uri}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{uri}: {csp}");
    assert!(csp.contains("script-src 'self'"), "{uri}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{uri}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{uri}: {csp}");
    assert_eq!(header(h, "x-frame-options"), "DENY", "{uri}");
    assert_eq!(header(h, "x-content-type-options"), "nosniff", "{uri}");
    assert_eq!(header(h, "referrer-policy"), "no-referrer", "{uri}");
}

#[tokio::test]
async fn ui_paths_serve_index_html_with_security_headers() {
    let f = Fixture::new();
    for uri in [
        "/",
        "/ui",
        "/ui/",
        "/ui/dashboard",
        "/ui/findings/abc123",
        "/ui/asset/web.acme.test",
        "/ui/login?next=%2Fui%2Fsearch",
    ] {
        let (status, h, body) = get(&f, uri, &[]).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(
            header(&h, "content-type"),
            "text/html; charset=utf-8",
            "{uri}"
        );
        assert_eq!(header(&h, "cache-control"), "no-cache", "{uri}");
        assert_security_headers(&h, uri);
        let html = String::from_utf8(body).unwrap();
        assert!(
            html.contains("<script type=\"module\" src=\"/ui/assets/app.js\">"),
            "{uri}"
        );
        // No inline script: every <script> has a src.
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script type=\"module\" src=").count(),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn assets_have_their_content_types_and_revalidate_by_etag() {
    let f = Fixture::new();
    let cases = [
        (
            "/ui/assets/app.js",
            "text/javascript; charset=utf-8",
            "import",
        ),
        (
            "/ui/assets/pages/search.js",
            "text/javascript; charset=utf-8",
            "export async function render",
        ),
        ("/ui/assets/app.css", "text/css; charset=utf-8", ".shell"),
        ("/ui/assets/favicon.svg", "image/svg+xml", "<svg"),
    ];
    for (uri, ctype, needle) in cases {
        let (status, h, body) = get(&f, uri, &[]).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(header(&h, "content-type"), ctype, "{uri}");
        assert_security_headers(&h, uri);
        assert!(String::from_utf8(body).unwrap().contains(needle), "{uri}");
        let etag = header(&h, "etag").to_string();
        let (status, h2, body) = get(&f, uri, &[(header::IF_NONE_MATCH, &etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{uri}");
        assert!(body.is_empty(), "{uri}");
        assert_eq!(header(&h2, "etag"), etag, "{uri}");
        let (status, _, _) = get(&f, uri, &[(header::IF_NONE_MATCH, "\"stale\"")]).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn unknown_assets_and_api_paths_are_json_404s() {
    let f = Fixture::new();
    for uri in [
        "/ui/assets/nope.js",
        "/ui/assets/../Cargo.toml",
        "/api/v1/nope",
        "/api/v2/tenants",
        "/elsewhere",
    ] {
        let (status, h, body) = get(&f, uri, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(
            header(&h, "content-type").starts_with("application/json"),
            "{uri}"
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "not_found", "{uri}");
    }
    // The API itself is untouched by the UI routes.
    let (status, _, _) = get(&f, "/api/v1/me", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn search_pages_with_offset_and_rejects_a_huge_one() {
    let f = Fixture::new();
    {
        let mut findings = f.ops.findings.lock().unwrap();
        for i in 2..=5 {
            let id = format!("f-acme{i}");
            findings.insert(
                (common::t("acme"), id.clone()),
                serde_json::json!({ "id": id }),
            );
        }
    }
    let cookie = f.login("viewer@acme.test").await;
    let auth = common::Auth::Cookie(cookie);
    let page = |offset: usize| format!("/api/v1/tenants/acme/findings?q=&limit=2&offset={offset}");
    let a = f.call(axum::http::Method::GET, &page(0), &auth, None).await;
    let b = f.call(axum::http::Method::GET, &page(2), &auth, None).await;
    let c = f.call(axum::http::Method::GET, &page(4), &auth, None).await;
    assert_eq!(
        (a.body["total"].as_u64(), c.body["total"].as_u64()),
        (Some(5), Some(5))
    );
    let ids = |r: &common::Resp| {
        r.body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].to_string())
            .collect::<Vec<_>>()
    };
    let (a, b, c) = (ids(&a), ids(&b), ids(&c));
    assert_eq!((a.len(), b.len(), c.len()), (2, 2, 1));
    assert!(a.iter().chain(&b).all(|id| !c.contains(id)) && a.iter().all(|id| !b.contains(id)));
    let r = f
        .call(
            axum::http::Method::GET,
            "/api/v1/tenants/acme/findings?offset=100001",
            &auth,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}
