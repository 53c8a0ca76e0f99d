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
        "post",
        "/api/v1/me/password",
        "Change your own password; all your sessions end",
        None,
        204,
        Some("PasswordChange"),
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
        "delete",
        "/api/v1/tenants/{tenant}/members/{user}",
        "Remove a member from the tenant (the last admin cannot be removed)",
        Some("admin"),
        204,
        None,
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/audit/export",
        "The whole audit log with its verification result, as a download",
        Some("auditor"),
        200,
        None,
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/scope",
        "Authorised scan scope (CIDRs, host names, ports) and configured jobs",
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
        "post",
        "/api/v1/tenants/{tenant}/schedules/{job}/run",
        "Queue a run of a scheduled job now on every agent of the tenant (the job's windows still apply)",
        Some("admin"),
        202,
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
        "/api/v1/tenants/{tenant}/findings",
        "Search findings and change events, query language of docs/search.md (?q=..&limit=1..1000&offset=0..100000&facets=true)",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/findings/{id}",
        "One finding in full",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "put",
        "/api/v1/tenants/{tenant}/findings/{id}/suppression",
        "Suppress a finding or accept its risk",
        Some("admin"),
        200,
        Some("SuppressionRequest"),
    ),
    r(
        "delete",
        "/api/v1/tenants/{tenant}/findings/{id}/suppression",
        "Remove a suppression",
        Some("admin"),
        200,
        None,
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/changes",
        "Change events, newest first (?asset=..&limit=1..1000)",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/posture/{framework}",
        "Compliance posture against a framework (nis2, iso27001, soc2, cis...) with history (?history=0..1000)",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/assets/{asset}",
        "An asset's snapshot, baseline and pending drift",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "post",
        "/api/v1/tenants/{tenant}/assets/{asset}/accept-baseline",
        "Accept an asset's current snapshot as its baseline",
        Some("admin"),
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
    r(
        "get",
        "/api/v1/tenants/{tenant}/reports",
        "Compliance reports, newest first",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "post",
        "/api/v1/tenants/{tenant}/reports",
        "Queue a compliance report (generated in the background)",
        Some("auditor"),
        202,
        Some("ReportRequest"),
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/reports/{id}",
        "One report's status and progress",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/reports/{id}/download",
        "The finished report file (409 while not done)",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/incidents",
        "NIS2 incidents with deadlines, overdue stages and the next deadline",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "post",
        "/api/v1/tenants/{tenant}/incidents",
        "Record a NIS2 incident",
        Some("auditor"),
        201,
        Some("IncidentRequest"),
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/incidents/{id}",
        "One incident",
        Some("viewer"),
        200,
        None,
    ),
    r(
        "patch",
        "/api/v1/tenants/{tenant}/incidents/{id}",
        "Change an incident, edit stage content or mark a stage sent",
        Some("auditor"),
        200,
        Some("IncidentPatch"),
    ),
    r(
        "get",
        "/api/v1/tenants/{tenant}/incidents/{id}/export/{stage}",
        "One notification stage as a file (?format=)",
        Some("viewer"),
        200,
        None,
    ),
];

/// Every documented route: the core table and the feature modules' tables.
pub fn all_routes() -> impl Iterator<Item = &'static RouteDoc> {
    ROUTES.iter().chain(crate::api::alerts::ROUTES)
}

pub(crate) fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

pub(crate) fn array_of(name: &str) -> Value {
    json!({ "type": "array", "items": schema_ref(name) })
}

/// Success body of a route, by what it returns.
pub fn response_schema(rd: &RouteDoc) -> Value {
    if let Some(schema) = crate::api::alerts::response_schema(rd) {
        return schema;
    }
    let tail = rd.path.rsplit('/').next().unwrap_or_default();
    match (rd.method, tail) {
        ("post", "login") | ("get", "me") => schema_ref("Me"),
        ("get", "agents") => array_of("Agent"),
        ("post", "revoke") => schema_ref("AgentRecord"),
        ("post", "tokens") => schema_ref("CreatedToken"),
        ("get", "stats") => schema_ref("TenantStats"),
        ("get", "records") => array_of("Record"),
        ("get", "schedules") => array_of("Schedule"),
        ("get", "scope") => schema_ref("TenantScope"),
        ("get", "runs") | ("post", "run") => array_of("Run"),
        ("get", "api-keys") => array_of("ApiKey"),
        ("post", "api-keys") => schema_ref("CreatedApiKey"),
        ("get", "members") => array_of("Member"),
        ("post", "members") => schema_ref("Member"),
        ("get", "audit") => array_of("AuditEntry"),
        ("get", "export") => object(&[
            ("tenant", json!({ "type": "string" })),
            ("exported_ms", json!({ "type": "integer" })),
            ("exported_by", json!({ "type": "string" })),
            (
                "verification",
                object(&[
                    ("tenant", json!({ "type": "string" })),
                    ("entries", json!({ "type": "integer" })),
                    ("broken", json!({ "type": ["object", "null"] })),
                ]),
            ),
            ("truncated", json!({ "type": "boolean" })),
            ("entries", array_of("AuditEntry")),
        ]),
        ("get", "openapi.json") => json!({ "type": "object" }),
        ("get", "reports") => array_of("Report"),
        ("post", "reports") => schema_ref("Report"),
        ("get", "incidents") => array_of("Incident"),
        ("post", "incidents") => schema_ref("Incident"),
        _ if is_file(rd) => json!({ "type": "string", "format": "binary" }),
        _ if rd.path.contains("/reports/") => schema_ref("Report"),
        _ if rd.path.contains("/incidents/") => schema_ref("Incident"),
        ("get", "findings") => schema_ref("SearchResult"),
        ("get", "changes") => json!({ "type": "array", "items": { "type": "object" } }),
        _ if rd.path.contains("/findings/")
            || rd.path.contains("/posture/")
            || rd.path.contains("/assets/") =>
        {
            json!({ "type": "object" })
        }
        _ => json!({}),
    }
}

/// Whether a route answers a file rather than JSON.
fn is_file(rd: &RouteDoc) -> bool {
    rd.path.ends_with("/download") || rd.path.ends_with("/export/{stage}")
}

/// An object schema with every listed property required.
pub(crate) fn object(props: &[(&str, Value)]) -> Value {
    let required: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
    let properties: Map<String, Value> = props
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    json!({ "type": "object", "required": required, "properties": properties })
}

fn response_schemas() -> Map<String, Value> {
    let s = || json!({ "type": "string" });
    let n = || json!({ "type": "integer", "minimum": 0 });
    let opt_n = || json!({ "type": ["integer", "null"], "minimum": 0 });
    let role = || schema_ref("Role");
    let agent_record = [
        ("tenant", s()),
        ("agent", s()),
        ("hostname", s()),
        ("enrolled_ms", n()),
        ("cert_not_after_ms", n()),
        ("revoked_ms", opt_n()),
        ("last_seen_ms", n()),
    ];
    let mut agent = agent_record.to_vec();
    agent.push((
        "delivery",
        object(&[("last_sequence", n()), ("batches", n()), ("records", n())]),
    ));
    agent.push(("online", json!({ "type": "boolean" })));
    let api_key = [
        ("id", s()),
        ("name", s()),
        ("role", role()),
        ("tenant", s()),
        ("created_by", s()),
        ("created_ms", n()),
        ("expires_ms", opt_n()),
    ];
    let mut created_key = api_key.to_vec();
    created_key.push((
        "key",
        json!({ "type": "string", "description": "vgk_<id>_<secret>, shown once" }),
    ));
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    put(
        "Me",
        json!({
            "type": "object", "required": ["tenants"],
            "properties": {
                "user": object(&[("id", s()), ("email", s())]),
                "api_key": object(&[("id", s()), ("name", s())]),
                "tenants": { "type": "array", "items": object(&[("tenant", s()), ("role", role())]) }
            }
        }),
    );
    put("AgentRecord", object(&agent_record));
    put("Agent", object(&agent));
    put(
        "CreatedToken",
        object(&[
            ("token", s()),
            ("tenant", s()),
            ("expires_ms", n()),
            ("ca_fingerprint", s()),
        ]),
    );
    put(
        "TenantStats",
        object(&[
            ("agents", n()),
            ("revoked", n()),
            ("batches", n()),
            ("records", n()),
        ]),
    );
    put(
        "Record",
        object(&[
            ("agent", s()),
            ("sequence", n()),
            ("received_ms", n()),
            ("record", json!({ "type": "object" })),
        ]),
    );
    put(
        "Schedule",
        json!({ "type": "object", "description": "a collector-scheduled job: schedule, windows, time zone, next due time, pending runs" }),
    );
    put(
        "Run",
        json!({ "type": "object", "description": "one scan run: status, scheduled/dispatched/started/finished times, observations, error" }),
    );
    put(
        "SearchResult",
        json!({ "type": "object", "description": "hits (findings and change events) with total and, when asked, facet counts" }),
    );
    put(
        "TenantScope",
        object(&[
            (
                "scope",
                object(&[
                    (
                        "cidrs",
                        json!({ "type": "array", "items": { "type": "string" } }),
                    ),
                    (
                        "hostnames",
                        json!({ "type": "array", "items": { "type": "string" } }),
                    ),
                    ("ports", s()),
                ]),
            ),
            (
                "jobs",
                json!({ "type": "array", "items": { "type": "object" } }),
            ),
        ]),
    );
    put("ApiKey", object(&api_key));
    put("CreatedApiKey", object(&created_key));
    put(
        "Member",
        object(&[("user_id", s()), ("email", s()), ("role", role())]),
    );
    put(
        "AuditEntry",
        object(&[
            ("tenant", s()),
            ("seq", n()),
            ("time_ms", n()),
            ("actor", s()),
            ("action", s()),
            ("target", s()),
            (
                "details",
                json!({ "type": "string", "description": "compact JSON, hashed as stored" }),
            ),
            ("prev_hash", s()),
            ("hash", s()),
        ]),
    );
    let opt_s = || json!({ "type": ["string", "null"] });
    put(
        "Report",
        object(&[
            ("id", s()),
            ("framework", s()),
            (
                "format",
                json!({ "type": "string", "enum": ["pdf", "json", "csv", "ocsf", "sarif"] }),
            ),
            (
                "status",
                json!({ "type": "string", "enum": ["queued", "running", "done", "failed"] }),
            ),
            (
                "progress",
                json!({ "type": "integer", "minimum": 0, "maximum": 100 }),
            ),
            ("created_ms", n()),
            ("finished_ms", opt_n()),
            ("size_bytes", opt_n()),
            ("error", opt_s()),
            ("requested_by", s()),
        ]),
    );
    let stage =
        || json!({ "type": "string", "enum": ["early_warning", "notification", "final_report"] });
    let strings = || json!({ "type": "array", "items": { "type": "string" } });
    put(
        "Incident",
        object(&[
            ("id", s()),
            ("title", s()),
            (
                "status",
                json!({ "type": "string", "enum": ["open", "closed"] }),
            ),
            ("significant", json!({ "type": "boolean" })),
            ("significance", json!({ "type": "object" })),
            ("detected_ms", n()),
            (
                "deadlines",
                object(&[
                    ("early_warning_ms", n()),
                    ("notification_ms", n()),
                    ("final_report_ms", n()),
                ]),
            ),
            (
                "stages",
                json!({ "type": "object", "properties": {
                "early_warning_sent_ms": n(), "notification_sent_ms": n(), "final_report_sent_ms": n()
            } }),
            ),
            ("overdue", json!({ "type": "array", "items": stage() })),
            (
                "next_deadline",
                json!({ "type": ["object", "null"], "properties": { "stage": stage(), "due_ms": n() } }),
            ),
            ("finding_ids", strings()),
            ("assets", strings()),
        ]),
    );
    m
}

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
    // Query parameters are named in the summary as "(?a=..&b=..)".
    let query = rd
        .summary
        .split_once("(?")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map_or("", |(q, _)| q);
    for name in query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, _)| k)
    {
        let schema = match name {
            "limit" | "from" | "history" => json!({ "type": "integer", "minimum": 0 }),
            "facets" => json!({ "type": "boolean" }),
            _ => json!({ "type": "string" }),
        };
        params.push(json!({ "name": name, "in": "query", "required": false, "schema": schema }));
    }
    let mut responses = Map::new();
    let ok = if rd.success == 204 {
        json!({ "description": "done" })
    } else if is_file(rd) {
        let binary = json!({ "schema": { "type": "string", "format": "binary" } });
        json!({
            "description": "the file, with Content-Disposition: attachment",
            "content": {
                "application/pdf": binary,
                "application/json": binary,
                "text/csv": binary,
                "application/sarif+json": binary,
            }
        })
    } else {
        json!({
            "description": "success",
            "content": { "application/json": { "schema": response_schema(rd) } }
        })
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
    if rd.path.ends_with("/download") {
        responses.insert("409".into(), error_response("the report is not done yet"));
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
    for rd in all_routes() {
        let item = paths
            .entry(rd.path.to_string())
            .or_insert_with(|| json!({}));
        item[rd.method] = operation(rd);
    }
    let mut doc = json!({
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
                    "properties": {
                        "name": { "type": "string" },
                        "role": { "$ref": "#/components/schemas/Role" },
                        "ttl_secs": { "type": "integer", "minimum": 1, "description": "never expires when absent" }
                    }
                },
                "SuppressionRequest": {
                    "type": "object", "required": ["kind", "reason"],
                    "properties": {
                        "kind": { "type": "string", "enum": ["suppressed", "accepted_risk"] },
                        "reason": { "type": "string" },
                        "owner": { "type": "string", "description": "accountable person; the caller when absent" },
                        "expires_ms": { "type": "integer", "minimum": 0 }
                    }
                },
                "PasswordChange": {
                    "type": "object", "required": ["current_password", "new_password"],
                    "properties": {
                        "current_password": { "type": "string" },
                        "new_password": { "type": "string", "minLength": 12 }
                    }
                },
                "ReportRequest": {
                    "type": "object", "required": ["framework", "format"],
                    "properties": {
                        "framework": { "type": "string", "description": "nis2, nis2_ir, iso27001, soc2, cis or a user framework" },
                        "format": { "type": "string", "enum": ["pdf", "json", "csv", "ocsf", "sarif"] }
                    }
                },
                "Significance": {
                    "type": "object",
                    "description": "NIS2 Art. 23(3) criteria",
                    "properties": {
                        "severe_operational_disruption": { "type": "boolean" },
                        "financial_loss": { "type": "boolean" },
                        "affects_others": { "type": "boolean" },
                        "rationale": { "type": "string" }
                    }
                },
                "EarlyWarning": {
                    "type": "object",
                    "properties": {
                        "suspected_malicious": { "type": ["boolean", "null"] },
                        "cross_border_impact": { "type": ["boolean", "null"] },
                        "notes": { "type": "string" }
                    }
                },
                "Notification": {
                    "type": "object",
                    "properties": {
                        "initial_assessment": { "type": "string" },
                        "severity": { "type": "string" },
                        "impact": { "type": "string" },
                        "indicators_of_compromise": { "type": "array", "items": { "type": "string" } }
                    }
                },
                "FinalReport": {
                    "type": "object",
                    "properties": {
                        "detailed_description": { "type": "string" },
                        "root_cause": { "type": "string" },
                        "mitigation": { "type": "string" },
                        "cross_border_impact": { "type": "string" }
                    }
                },
                "IncidentRequest": {
                    "type": "object", "required": ["title", "significant"],
                    "properties": {
                        "title": { "type": "string" },
                        "description": { "type": "string" },
                        "detected_ms": { "type": "integer", "minimum": 0, "description": "now when absent" },
                        "significant": { "type": "boolean" },
                        "significance": { "$ref": "#/components/schemas/Significance" },
                        "finding_ids": { "type": "array", "items": { "type": "string" } },
                        "assets": { "type": "array", "items": { "type": "string" } },
                        "early_warning": { "$ref": "#/components/schemas/EarlyWarning" },
                        "notification": { "$ref": "#/components/schemas/Notification" },
                        "final_report": { "$ref": "#/components/schemas/FinalReport" }
                    }
                },
                "IncidentPatch": {
                    "type": "object",
                    "properties": {
                        "title": { "type": "string" },
                        "description": { "type": "string" },
                        "status": { "type": "string", "enum": ["open", "closed"] },
                        "significant": { "type": "boolean" },
                        "significance": { "$ref": "#/components/schemas/Significance" },
                        "detected_ms": { "type": "integer", "minimum": 0 },
                        "finding_ids": { "type": "array", "items": { "type": "string" } },
                        "assets": { "type": "array", "items": { "type": "string" } },
                        "mark_stage_sent": { "type": "string", "enum": ["early_warning", "notification", "final_report"] },
                        "sent_ms": { "type": "integer", "minimum": 0, "description": "when the stage was sent; now when absent" },
                        "early_warning": { "$ref": "#/components/schemas/EarlyWarning" },
                        "notification": { "$ref": "#/components/schemas/Notification" },
                        "final_report": { "$ref": "#/components/schemas/FinalReport" }
                    }
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
    });
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.extend(response_schemas());
        schemas.extend(crate::api::alerts::schemas());
    }
    doc
}

/// Checks `value` against `schema` of this document (the subset it uses:
/// `$ref`, `type`, `required`, `properties`, `items`, `enum`); the error names
/// the first offending location. Tests use it to keep the document honest.
pub fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or_default();
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: unknown schema {r}"));
        }
        return conforms(doc, target, value, at);
    }
    let type_ok = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_u64() || value.is_i64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    };
    match schema.get("type") {
        Some(Value::String(t)) if !type_ok(t) => {
            return Err(format!("{at}: expected {t}, got {value}"));
        }
        Some(Value::Array(ts)) if !ts.iter().filter_map(Value::as_str).any(type_ok) => {
            return Err(format!("{at}: expected one of {ts:?}, got {value}"));
        }
        _ => {}
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} not in {allowed:?}"));
    }
    if let Some(obj) = value.as_object() {
        for key in schema["required"].as_array().into_iter().flatten() {
            let key = key.as_str().unwrap_or_default();
            if !obj.contains_key(key) {
                return Err(format!("{at}: missing {key}"));
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (k, s) in props {
                if let Some(v) = obj.get(k) {
                    conforms(doc, s, v, &format!("{at}.{k}"))?;
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            conforms(doc, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// Checks a success answer of `method path` (as documented) against its schema.
pub fn check_response(method: &str, path: &str, value: &Value) -> Result<(), String> {
    let doc = document();
    let rd = all_routes()
        .find(|r| r.method == method && r.path == path)
        .ok_or_else(|| format!("{method} {path} is not documented"))?;
    conforms(
        &doc,
        &response_schema(rd),
        value,
        &format!("{method} {path}"),
    )
}
