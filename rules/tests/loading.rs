//! User rule directories and load-time error reporting.

use std::fs;

use protocol::{HttpObservation, Observation, Record};
use rules::{RuleError, RuleSet};

const GOOD: &str = r#"
[[rule]]
id = "http.custom.no-cache-control"
title = "Custom: internal app served over HTTP"
severity = "low"
applies_to = "http"
condition = 'http.scheme == "http" and http.url matches "*.internal/*"'
remediation = "Serve it over HTTPS."
description = "Internal apps must use TLS too."
evidence = "{http.url} -> {http.status}"

[rule.mappings]
iso27001 = ["A.8.24"]
acme = ["SEC-7"]

[rule.unmapped]
cis = "Covered by the builtin redirect rule."

[[framework]]
key = "acme"
name = "ACME Corp internal security standard"

[[control]]
framework = "acme"
id = "SEC-7"
title = "Internal services use TLS"
"#;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) {
    fs::write(dir.path().join(name), text).expect("write rule file");
}

fn err_text(dir: &tempfile::TempDir) -> String {
    match RuleSet::load_dir(dir.path()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn http(url: &str) -> Record {
    Record {
        asset: "wiki.internal".into(),
        job_id: String::new(),
        observed_ms: 7,
        observation: Observation::Http(HttpObservation {
            url: url.into(),
            status: 200,
            hsts: None,
            hsts_max_age: None,
            hsts_include_subdomains: false,
            csp: None,
            x_frame_options: None,
            x_content_type_options: None,
            referrer_policy: None,
            permissions_policy: None,
            server: None,
            x_powered_by: None,
            redirects_to_https: Some(true),
        }),
    }
}

#[test]
fn user_directory_adds_rules_frameworks_and_controls() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(&dir, "custom.toml", GOOD);
    write(&dir, "README.md", "not a rule file");
    let set = RuleSet::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.rules().len(), 1);
    let findings = set.evaluate(&http("http://wiki.internal/page"));
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].evidence, "http://wiki.internal/page -> 200");
    assert_eq!(findings[0].location, "http://wiki.internal/page");
    let acme = findings[0]
        .mappings
        .iter()
        .find(|m| m.framework == "acme")
        .expect("custom framework mapping");
    assert_eq!(acme.title, "Internal services use TLS");
    assert!(set.evaluate(&http("https://wiki.internal/page")).is_empty());

    let both = RuleSet::builtin_plus_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let builtin = RuleSet::builtin().expect("builtin");
    assert_eq!(both.rules().len(), builtin.rules().len() + 1);
}

#[test]
fn duplicate_ids_are_rejected_with_both_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dup = GOOD.replace("http.custom.no-cache-control", "http.csp.missing");
    write(&dir, "dup.toml", &dup);
    let err = RuleSet::builtin_plus_dir(dir.path()).expect_err("duplicate id");
    let text = err.to_string();
    assert!(matches!(err, RuleError::DuplicateRule { .. }), "{text}");
    assert!(
        text.contains("dup.toml:3:6: duplicate rule id http.csp.missing"),
        "{text}"
    );
    assert!(
        text.contains("first defined at rules/data/http.toml:"),
        "{text}"
    );
}

#[test]
fn unknown_condition_field_names_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = GOOD.replace(
        r#"'http.scheme == "http" and"#,
        r#"'http.scheme == "http" and http.hsts_maxage < 5 and"#,
    );
    write(&dir, "bad.toml", &bad);
    let text = err_text(&dir);
    // Line 7: `condition = '...` ; the field starts after `condition = 'http.scheme == "http" and `.
    let col = "condition = 'http.scheme == \"http\" and ".chars().count() + 1;
    assert!(
        text.ends_with(&format!("bad.toml:7:{col}: unknown field http.hsts_maxage")),
        "{text}"
    );
}

#[test]
fn positions_survive_escapes_in_basic_strings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = GOOD.replace(
        r#"condition = 'http.scheme == "http" and http.url matches "*.internal/*"'"#,
        r#"condition = "http.scheme == \"http\" and http.nope""#,
    );
    write(&dir, "esc.toml", &bad);
    let text = err_text(&dir);
    let col = r#"condition = "http.scheme == \"http\" and "#.chars().count() + 1;
    assert!(
        text.ends_with(&format!("esc.toml:7:{col}: unknown field http.nope")),
        "{text}"
    );
}

#[test]
fn syntax_type_and_kind_errors_are_located() {
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"'http.scheme == "http" and"#,
            r#"'http.scheme = "http" and"#,
            "bad.toml:7:26: unexpected character `=` (use `==` to compare)",
        ),
        (
            r#"'http.scheme == "http" and"#,
            r#"'http.status == "200" and"#,
            "bad.toml:7:29: type mismatch: http.status is an integer but is compared with a string",
        ),
        (
            r#"'http.scheme == "http" and"#,
            r#"'tls.chain_valid and"#,
            "bad.toml:7:14: field tls.chain_valid belongs to tls observations, but the rule applies to http",
        ),
        (
            r#"'http.scheme == "http" and"#,
            r#"'http.scheme == "ftp" and"#,
            r#"bad.toml:7:29: http.scheme is never "ftp"; possible values: http, https"#,
        ),
        (
            r#"evidence = "{http.url} -> {http.status}""#,
            r#"evidence = "{http.url} -> {http.stat}""#,
            "bad.toml:10:28: in template: unknown field http.stat",
        ),
        (
            r#"severity = "low""#,
            r#"severity = "urgent""#,
            "bad.toml:5:12: unknown variant `urgent`",
        ),
        (
            r#"remediation = "#,
            r#"fix = "x"
remediation = "#,
            "bad.toml:8:1: unknown field `fix`",
        ),
        (
            r#"acme = ["SEC-7"]"#,
            r#"acme = ["SEC-8"]"#,
            "bad.toml:14:9: unknown control SEC-8 in framework acme",
        ),
        (
            r#"iso27001 = ["A.8.24"]"#,
            r#"iso2001 = ["A.8.24"]"#,
            "bad.toml:13:1: unknown framework iso2001",
        ),
        (
            r#"id = "http.custom.no-cache-control""#,
            r#"id = "Http Custom""#,
            r#"bad.toml:3:6: invalid rule id "Http Custom""#,
        ),
        (
            "\n[rule.unmapped]\ncis = \"Covered by the builtin redirect rule.\"\n",
            "\n[rule.unmapped]\nacme = \"dup\"\n",
            "bad.toml:17:1: acme is both mapped and listed as unmapped",
        ),
    ];
    for (from, to, want) in cases {
        assert!(GOOD.contains(from), "test bug: {from}");
        let dir = tempfile::tempdir().expect("tempdir");
        write(&dir, "bad.toml", &GOOD.replacen(from, to, 1));
        let text = err_text(&dir);
        assert!(text.contains(want), "want {want:?}\n got {text:?}");
    }
}

#[test]
fn missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let err = RuleSet::load_dir(&missing).expect_err("missing dir");
    assert!(matches!(err, RuleError::Io { .. }), "{err}");
}
