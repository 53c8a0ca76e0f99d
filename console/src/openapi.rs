//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`, written by hand
//! from one route table (a test checks it against the router).

use serde_json::{Map, Value, json};

/// One documented operation.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    /// HTTP method, lower case.
    pub method: &'static str,
    /// Path with `{param}` placeholders.
    pub path: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Lowest role allowed (`None`: public or any authenticated caller).
    pub min_role: Option<&'static str>,
    /// Success status.
    pub success: u16,
    /// Request body schema name in `components.schemas`, if any.
    pub body: Option<&'static str>,
    /// Whether the caller must be authenticated.
    pub auth: bool,
}

const fn r(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    min_role: Option<&'static str>,
    success: u16,
    body: Option<&'static str>,
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        summary,
        min_role,
        success,
        body,
        auth: true,
    }
}

/// Every route of API v1.
pub const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        auth: false,
        ..r(
            "post",
            "/api/v1/login",
            "Log in; sets the session cookie",
            None,
            200,
            Some("LoginRequest"),
        )
    },
    r(
        "post",
        "/api/v1/logout",
        "End the current session",
        None,
        204,
        None,
    ),
    r(
        "get",
        "/api/v1/me",
        "The caller with its tenants and roles",
        None,
        200,
        None,
    ),
    RouteDoc {
        auth: false,
        ..r(
            "get",
            "/api/v1/openapi.json",
            "This document",
            None,
            200,
            None,
        )
    },
    r(
        "get",
        "/api/v1/tenants/{tenant}/agents",
        "Agents with status and last seen",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "post",
        "/api/v1/tenants/{tenant}/agents/{agent}/revoke",
        "Revoke an agent",
        Some("admin"),
        200,
        None,
    ),
    r(
        "post",
        "/api/v1/tenants/{tenant}/tokens",
        "Create a single-use enrolment token",
        Some("admin"),
        201,
        Some("TokenRequest"),
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/stats",
        "Batch and record totals",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/records",
        "Newest stored records (?limit=1..1000)",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/schedules",
        "Collector-scheduled scan jobs with their next due time",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/runs",
        "Scan runs, newest first (?limit=1..1000)",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/api-keys",
        "API keys (without secrets)",
        Some("auditor"),
        200,
        None,
    ),
    r(
        "post",
        "/api/v1/tenants/{tenant}/api-keys",
        "Create an API key; the secret is shown once",
        Some("admin"),
        201,
        Some("ApiKeyRequest"),
    ),
    r(
        "delete",
        "/api/v1/tenants/{tenant}/api-keys/{key}",
        "Delete an API key",
        Some("admin"),
        204,
        None,
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/members",
        "Members and their roles",
        Some("auditor"),
        200,
        None,
    ),
    r(
        "post",
        "/api/v1/tenants/{tenant}/members",
        "Add a member (creating the user) or change a role",
        Some("admin"),
        200,
        Some("MemberRequest"),
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/audit",
        "Hash-chained audit log (?from=&limit=)",
        Some("auditor"),
        200,
        None,
    ),
];

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn operation(rd: &RouteDoc) -> Value {
    let mut params = Vec::new();
    for seg in rd.path.split('/') {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            params.push(json!({
                "name": name, "in": "path", "required": true, "schema": { "type": "string" }
            }));
        }
    }
    for q in ["limit", "from"] {
        if rd.summary.contains(&format!("{q}=")) {
            params.push(json!({
                "name": q, "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 1 }
            }));
        }
    }
    let mut responses = Map::new();
    let ok = if rd.success == 204 {
        json!({ "description": "done" })
    } else {
        json!({ "description": "success", "content": { "application/json": { "schema": {} } } })
    };
    responses.insert(rd.success.to_string(), ok);
    if rd.body.is_some() || rd.summary.contains('=') {
        responses.insert("400".into(), error_response("malformed request"));
    }
    if rd.auth {
        responses.insert("401".into(), error_response("not logged in / bad API key"));
    }
    if rd.min_role.is_some() {
        responses.insert("403".into(), error_response("role too low in this tenant"));
        responses.insert(
            "404".into(),
            error_response("unknown tenant or resource, or a tenant the caller does not belong to"),
        );
    }
    if rd.path.ends_with("/login") {
        responses.insert("401".into(), error_response("wrong email or password"));
        responses.insert(
            "429".into(),
            error_response("too many failed logins; see Retry-After"),
        );
    }
    let mut op = json!({
        "summary": rd.summary,
        "operationId": format!("{}{}", rd.method, rd.path.replace(['/', '{', '}', '.', '-'], "_")),
        "parameters": params,
        "responses": responses,
    });
    if let Some(role) = rd.min_role {
        op["x-min-role"] = json!(role);
    }
    if !rd.auth {
        op["security"] = json!([]);
    }
    if let Some(schema) = rd.body {
        op["requestBody"] = json!({
            "required": schema != "TokenRequest",
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
        });
    }
    op
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for rd in ROUTES {
        let item = paths
            .entry(rd.path.to_string())
            .or_insert_with(|| json!({}));
        item[rd.method] = operation(rd);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "vigil console API",
            "version": "1",
            "description": "Tenant-scoped API of the vigil collector. Roles: viewer (read), auditor (read + audit log), admin (everything). A tenant the caller does not belong to answers 404."
        },
        "paths": paths,
        "security": [ { "session": [] }, { "apiKey": [] } ],
        "components": {
            "securitySchemes": {
                "session": { "type": "apiKey", "in": "cookie", "name": crate::api::SESSION_COOKIE },
                "apiKey": { "type": "http", "scheme": "bearer", "description": "vgk_<id>_<secret>" }
            },
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": { "error": {
                        "type": "object", "required": ["code", "message"],
                        "properties": { "code": { "type": "string" }, "message": { "type": "string" } }
                    } }
                },
                "Role": { "type": "string", "enum": ["admin", "auditor", "viewer"] },
                "LoginRequest": {
                    "type": "object", "required": ["email", "password"],
                    "properties": { "email": { "type": "string" }, "password": { "type": "string" } }
                },
                "TokenRequest": {
                    "type": "object",
                    "properties": { "ttl_secs": { "type": "integer", "minimum": 1, "maximum": 2592000 } }
                },
                "ApiKeyRequest": {
                    "type": "object", "required": ["name", "role"],
                    "properties": { "name": { "type": "string" }, "role": { "$ref": "#/components/schemas/Role" } }
                },
                "MemberRequest": {
                    "type": "object", "required": ["email", "role"],
                    "properties": {
                        "email": { "type": "string" },
                        "role": { "$ref": "#/components/schemas/Role" },
                        "password": { "type": "string", "minLength": 12, "description": "required when the user does not exist yet" }
                    }
                }
            }
        }
    })
}
