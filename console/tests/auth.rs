//! Login, sessions and their cookie, login rate limiting and API keys.

mod common;

use axum::http::{Method, StatusCode, header};
use common::{Auth, Fixture, PASSWORD, t};
use console::accounts::{Session, secret_hash};
use console::{AccountStore, ConsoleOptions};
use serde_json::json;

fn login_body(email: &str, password: &str) -> Option<serde_json::Value> {
    Some(json!({ "email": email, "password": password }))
}

#[tokio::test]
async fn session_cookie_is_httponly_samesite_strict_and_secure_only_over_tls() {
    let f = Fixture::new();
    let r = f
        .call(
            Method::POST,
            "/api/v1/login",
            &Auth::None,
            login_body("Admin@Acme.test", PASSWORD),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    let attrs: Vec<&str> = cookie.split("; ").collect();
    assert!(attrs[0].starts_with("vigil_session=") && attrs[0].len() > "vigil_session=".len() + 32);
    for want in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(attrs.contains(&want), "{want} missing in {cookie}");
    }
    assert!(
        !attrs.contains(&"Secure"),
        "plain HTTP must not set Secure: {cookie}"
    );
    assert_eq!(r.body["user"]["email"], "admin@acme.test");
    assert!(r.body["user"].get("password_hash").is_none());

    // Behind a TLS-terminating proxy the cookie is Secure.
    let r = f
        .call(
            Method::POST,
            "/api/v1/login",
            &Auth::Headers(vec![("x-forwarded-proto".into(), "https".into())]),
            login_body("admin@acme.test", PASSWORD),
        )
        .await;
    let c = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(c.split("; ").any(|a| a == "Secure"), "{c}");

    // And when the console is configured as served over TLS.
    let g = Fixture::with_options(ConsoleOptions {
        secure_cookies: true,
        ..ConsoleOptions::default()
    });
    let r = g
        .call(
            Method::POST,
            "/api/v1/login",
            &Auth::None,
            login_body("admin@acme.test", PASSWORD),
        )
        .await;
    let c = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(c.split("; ").any(|a| a == "Secure"), "{c}");
}

#[tokio::test]
async fn logout_ends_the_session_and_expired_sessions_are_refused() {
    let f = Fixture::new();
    let cookie = Auth::Cookie(f.login("viewer@acme.test").await);
    assert_eq!(
        f.call(Method::GET, "/api/v1/me", &cookie, None)
            .await
            .status,
        StatusCode::OK
    );
    let r = f.call(Method::POST, "/api/v1/logout", &cookie, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let c = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        c.starts_with("vigil_session=;") && c.contains("Max-Age=0"),
        "{c}"
    );
    let r = f.call(Method::GET, "/api/v1/me", &cookie, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A stored session past its expiry is refused and removed.
    let user = f
        .accounts
        .user_by_email("viewer@acme.test")
        .unwrap()
        .unwrap();
    let sid = "expired-session-id";
    f.accounts
        .put_session(
            secret_hash(sid),
            &Session {
                user_id: user.id,
                created_ms: 1,
                expires_ms: 2,
            },
        )
        .unwrap();
    let r = f
        .call(
            Method::GET,
            "/api/v1/me",
            &Auth::Cookie(format!("vigil_session={sid}")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(f.accounts.session(secret_hash(sid)).unwrap().is_none());

    // Expired sessions nobody presents again are swept at the next login.
    let sid2 = "expired-and-forgotten";
    let user = f
        .accounts
        .user_by_email("viewer@acme.test")
        .unwrap()
        .unwrap();
    let old = Session {
        user_id: user.id,
        created_ms: 1,
        expires_ms: 2,
    };
    f.accounts.put_session(secret_hash(sid2), &old).unwrap();
    f.login("admin@acme.test").await;
    assert!(f.accounts.session(secret_hash(sid2)).unwrap().is_none());

    // A made-up session id is refused.
    let r = f
        .call(
            Method::GET,
            "/api/v1/me",
            &Auth::Cookie("vigil_session=made-up".into()),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let f = Fixture::new();
    let a = f
        .call(
            Method::POST,
            "/api/v1/login",
            &Auth::None,
            login_body("admin@acme.test", "wrong password!"),
        )
        .await;
    let b = f
        .call(
            Method::POST,
            "/api/v1/login",
            &Auth::None,
            login_body("nobody@acme.test", "wrong password!"),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.status, b.status);
    assert_eq!(a.body, b.body);
    assert_eq!(a.error_code(), "invalid_credentials");
    assert!(a.headers.get(header::SET_COOKIE).is_none());
    let r = f
        .call(
            Method::POST,
            "/api/v1/login",
            &Auth::None,
            Some(json!({ "email": 1 })),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
}

#[tokio::test]
async fn login_is_rate_limited_per_account() {
    let f = Fixture::new();
    for i in 0..5 {
        // Each from a different address, so only the account limit applies.
        let peer = format!("10.1.0.{i}:4000");
        let r = f
            .call_from(
                Method::POST,
                "/api/v1/login",
                &Auth::None,
                login_body("admin@acme.test", "nope nope nope"),
                &peer,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // Even the right password is refused now, with a Retry-After.
    let r = f
        .call_from(
            Method::POST,
            "/api/v1/login",
            &Auth::None,
            login_body("admin@acme.test", PASSWORD),
            "10.1.0.9:4000",
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error_code(), "rate_limited");
    let wait: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&wait), "{wait}");
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    // Other accounts are unaffected.
    let r = f
        .call_from(
            Method::POST,
            "/api/v1/login",
            &Auth::None,
            login_body("viewer@acme.test", PASSWORD),
            "10.1.0.9:4000",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn login_is_rate_limited_per_source_address() {
    let f = Fixture::new();
    for i in 0..5 {
        // Spraying different accounts from one address.
        let r = f
            .call_from(
                Method::POST,
                "/api/v1/login",
                &Auth::None,
                login_body(&format!("guess{i}@acme.test"), "nope nope nope"),
                "192.0.2.7:1111",
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = f
        .call_from(
            Method::POST,
            "/api/v1/login",
            &Auth::None,
            login_body("admin@acme.test", PASSWORD),
            "192.0.2.7:2222",
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    let r = f
        .call_from(
            Method::POST,
            "/api/v1/login",
            &Auth::None,
            login_body("admin@acme.test", PASSWORD),
            "192.0.2.8:2222",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn successful_login_resets_the_account_counter() {
    let f = Fixture::new();
    for round in 0..2 {
        for i in 0..4 {
            let peer = format!("10.2.{round}.{i}:1");
            let r = f
                .call_from(
                    Method::POST,
                    "/api/v1/login",
                    &Auth::None,
                    login_body("auditor@acme.test", "bad bad bad bad"),
                    &peer,
                )
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
        let r = f
            .call_from(
                Method::POST,
                "/api/v1/login",
                &Auth::None,
                login_body("auditor@acme.test", PASSWORD),
                &format!("10.2.{round}.9:1"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "round {round}");
    }
}

#[tokio::test]
async fn api_keys_are_shown_once_stored_hashed_and_bound_to_their_tenant() {
    let f = Fixture::new();
    let admin = Auth::Cookie(f.login("admin@acme.test").await);
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/acme/api-keys",
            &admin,
            Some(json!({ "name": "ci", "role": "viewer" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let key = r.body["key"].as_str().unwrap().to_string();
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(key.starts_with(&format!("vgk_{id}_")));
    // Only a hash is stored, and listing never shows secrets.
    let stored = f.accounts.api_key(&id).unwrap().unwrap();
    assert!(!stored.secret_sha256.is_empty() && !key.contains(&stored.secret_sha256));
    let list = f
        .call(Method::GET, "/api/v1/tenants/acme/api-keys", &admin, None)
        .await;
    let text = list.body.to_string();
    assert!(
        text.contains(&id)
            && !text.contains(&key[key.len() - 16..])
            && !text.contains(&stored.secret_sha256)
    );

    let bearer = Auth::Bearer(key.clone());
    let r = f
        .call(Method::GET, "/api/v1/tenants/acme/agents", &bearer, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let me = f.call(Method::GET, "/api/v1/me", &bearer, None).await;
    assert_eq!(
        me.body["tenants"],
        json!([{ "tenant": "acme", "role": "viewer" }])
    );
    // Its role is its own, not its creator's.
    let r = f
        .call(Method::POST, "/api/v1/tenants/acme/tokens", &bearer, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Another tenant does not exist for it.
    let r = f
        .call(Method::GET, "/api/v1/tenants/globex/agents", &bearer, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A wrong secret, a malformed header, or a bad key next to a valid cookie: 401.
    let wrong = format!("{}0", &key[..key.len() - 1]);
    let wrong = if wrong == key {
        format!("{}1", &key[..key.len() - 1])
    } else {
        wrong
    };
    for bad in [wrong.as_str(), "vgk_nounderscore", "something-else"] {
        let r = f
            .call(
                Method::GET,
                "/api/v1/tenants/acme/agents",
                &Auth::Bearer(bad.into()),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    let Auth::Cookie(c) = &admin else {
        unreachable!()
    };
    let both = Auth::Headers(vec![
        ("cookie".into(), c.clone()),
        ("authorization".into(), format!("Bearer {wrong}")),
    ]);
    let r = f
        .call(Method::GET, "/api/v1/tenants/acme/agents", &both, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Deleting it (only through its own tenant) ends its use.
    let globex_admin = Auth::Cookie(f.login("admin@globex.test").await);
    let r = f
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/globex/api-keys/{id}"),
            &globex_admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = f
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/acme/api-keys/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = f
        .call(Method::GET, "/api/v1/tenants/acme/agents", &bearer, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/acme/api-keys/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn members_can_be_added_and_the_last_admin_cannot_be_demoted() {
    let f = Fixture::new();
    let admin = Auth::Cookie(f.login("admin@globex.test").await);
    // An existing user (MSP staff) joins another tenant without a password.
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/globex/members",
            &admin,
            Some(json!({ "email": "viewer@acme.test", "role": "auditor" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A new user needs a password of at least 12 characters.
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/globex/members",
            &admin,
            Some(json!({ "email": "new@globex.test", "role": "viewer" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/globex/members",
            &admin,
            Some(json!({ "email": "new@globex.test", "role": "viewer", "password": "short" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = f
        .call(Method::POST, "/api/v1/tenants/globex/members", &admin, Some(json!({ "email": "new@globex.test", "role": "viewer", "password": "long enough secret" })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = f
        .call(
            Method::POST,
            "/api/v1/login",
            &Auth::None,
            login_body("new@globex.test", "long enough secret"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let members = f
        .call(Method::GET, "/api/v1/tenants/globex/members", &admin, None)
        .await;
    let mut emails: Vec<&str> = members
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    emails.sort();
    assert_eq!(
        emails,
        [
            "admin@globex.test",
            "msp@staff.test",
            "new@globex.test",
            "viewer@acme.test"
        ]
    );
    // globex has one admin: demoting it is refused.
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/globex/members",
            &admin,
            Some(json!({ "email": "admin@globex.test", "role": "viewer" })),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::CONFLICT, "last_admin")
    );
    assert_eq!(
        f.accounts
            .membership(
                &f.accounts
                    .user_by_email("admin@globex.test")
                    .unwrap()
                    .unwrap()
                    .id,
                &t("globex")
            )
            .unwrap(),
        Some(console::Role::Admin)
    );
}

#[tokio::test]
async fn removed_members_lose_the_tenant_and_the_last_admin_stays() {
    let f = Fixture::new();
    let admin = Auth::Cookie(f.login("admin@acme.test").await);
    let viewer = Auth::Cookie(f.login("viewer@acme.test").await);
    let viewer_id = f
        .accounts
        .user_by_email("viewer@acme.test")
        .unwrap()
        .unwrap()
        .id;
    let uri = format!("/api/v1/tenants/acme/members/{viewer_id}");
    let r = f.call(Method::DELETE, &uri, &admin, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // The live session now finds no such tenant.
    let r = f
        .call(Method::GET, "/api/v1/tenants/acme/agents", &viewer, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = f.call(Method::DELETE, &uri, &admin, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // acme has two admins (admin@acme.test and msp@staff.test): one can go, not both.
    let msp = f
        .accounts
        .user_by_email("msp@staff.test")
        .unwrap()
        .unwrap()
        .id;
    let me = f
        .accounts
        .user_by_email("admin@acme.test")
        .unwrap()
        .unwrap()
        .id;
    let r = f
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/acme/members/{msp}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = f
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/acme/members/{me}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::CONFLICT, "last_admin")
    );
    // msp keeps its globex membership.
    assert_eq!(
        f.accounts.membership(&msp, &t("globex")).unwrap(),
        Some(console::Role::Viewer)
    );
    let actions: Vec<String> = f
        .accounts
        .audit_entries(&t("acme"), 1, 10)
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.action, e.target))
        .collect();
    assert_eq!(
        actions,
        [
            "member.remove viewer@acme.test",
            "member.remove msp@staff.test"
        ]
    );
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_every_session() {
    let f = Fixture::new();
    let first = Auth::Cookie(f.login("auditor@acme.test").await);
    let second = Auth::Cookie(f.login("auditor@acme.test").await);
    let body = |cur: &str, new: &str| Some(json!({ "current_password": cur, "new_password": new }));
    let r = f
        .call(
            Method::POST,
            "/api/v1/me/password",
            &first,
            body("not it at all", "a brand new password"),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let r = f
        .call(
            Method::POST,
            "/api/v1/me/password",
            &first,
            body(PASSWORD, "short"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // API keys have no password.
    let key = Auth::Bearer(f.api_key("acme", console::Role::Admin).1);
    let r = f
        .call(
            Method::POST,
            "/api/v1/me/password",
            &key,
            body(PASSWORD, "a brand new password"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = f
        .call(
            Method::POST,
            "/api/v1/me/password",
            &first,
            body(PASSWORD, "a brand new password"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for s in [&first, &second] {
        assert_eq!(
            f.call(Method::GET, "/api/v1/me", s, None).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = f
        .call(
            Method::POST,
            "/api/v1/login",
            &Auth::None,
            login_body("auditor@acme.test", PASSWORD),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = f
        .call(
            Method::POST,
            "/api/v1/login",
            &Auth::None,
            login_body("auditor@acme.test", "a brand new password"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let last = f.accounts.audit_entries(&t("acme"), 1, 10).unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(
        (
            last[0].action.as_str(),
            last[0].target.as_str(),
            last[0].actor.as_str()
        ),
        (
            "user.password_set",
            "auditor@acme.test",
            "user:auditor@acme.test"
        )
    );
}

#[tokio::test]
async fn api_keys_with_a_lifetime_stop_working_when_it_ends() {
    let f = Fixture::new();
    let admin = Auth::Cookie(f.login("admin@acme.test").await);
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/acme/api-keys",
            &admin,
            Some(json!({ "name": "ci", "role": "viewer", "ttl_secs": 3600 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let expires = r.body["expires_ms"].as_u64().unwrap();
    let created = r.body["created_ms"].as_u64().unwrap();
    assert_eq!(expires - created, 3_600_000);
    let key = Auth::Bearer(r.body["key"].as_str().unwrap().to_string());
    assert_eq!(
        f.call(Method::GET, "/api/v1/me", &key, None).await.status,
        StatusCode::OK
    );
    // Move its expiry into the past.
    let id = r.body["id"].as_str().unwrap();
    let mut rec = f.accounts.api_key(id).unwrap().unwrap();
    rec.expires_ms = Some(1);
    f.accounts.put_api_key(&rec).unwrap();
    assert_eq!(
        f.call(Method::GET, "/api/v1/me", &key, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = f
        .call(
            Method::POST,
            "/api/v1/tenants/acme/api-keys",
            &admin,
            Some(json!({ "name": "ci", "role": "viewer", "ttl_secs": 0 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let f = Fixture::with_options(ConsoleOptions {
        trusted_proxies: vec!["10.9.9.9".parse().unwrap()],
        ..ConsoleOptions::default()
    });
    let xff = |v: &str| Auth::Headers(vec![("x-forwarded-for".into(), v.into())]);
    let fail = |auth: Auth, peer: &'static str, n: usize| {
        let f = &f;
        async move {
            let r = f
                .call_from(
                    Method::POST,
                    "/api/v1/login",
                    &auth,
                    login_body(&format!("guess{n}@acme.test"), "nope nope nope"),
                    peer,
                )
                .await;
            r.status
        }
    };
    // Through the proxy: five failures from one real client block that client only.
    for n in 0..5 {
        assert_eq!(
            fail(xff("198.51.100.1"), "10.9.9.9:1", n).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        fail(xff("198.51.100.1"), "10.9.9.9:1", 9).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A client-supplied entry left of the real one cannot dodge the limit.
    assert_eq!(
        fail(xff("203.0.113.5, 198.51.100.1"), "10.9.9.9:1", 9).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        fail(xff("198.51.100.2"), "10.9.9.9:1", 9).await,
        StatusCode::UNAUTHORIZED
    );
    // From an untrusted peer the header is ignored: rotating it does not help.
    for n in 0..5 {
        let spoof = format!("203.0.113.{n}");
        assert_eq!(
            fail(xff(&spoof), "192.0.2.50:1", n).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        fail(xff("203.0.113.99"), "192.0.2.50:1", 7).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}
