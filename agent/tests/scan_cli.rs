//! The `agent scan` binary end to end against loopback servers: JSON shape
//! (docs/scan-json.md), findings from the builtin rules, progress on stderr,
//! and refusals for bad arguments.

mod scan_support;

use std::process::Command;

use scan_support::*;

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agent"));
    c.env("RUST_LOG", "warn");
    c
}

#[tokio::test]
async fn json_report_with_findings() {
    let addr = http_server(
        "HTTP/1.1 200 OK\r\nServer: Apache/2.4.41 (Ubuntu)\r\nX-Powered-By: PHP/7.4.3\r\nContent-Length: 0\r\n\r\n"
            .into(),
    )
    .await;
    let target = format!("127.0.0.1:{}", addr.port());
    let out = tokio::task::spawn_blocking(move || {
        agent()
            .args([
                "scan",
                "--target",
                &target,
                "--checks",
                "ports,http",
                "--format",
                "json",
            ])
            .output()
            .expect("run agent")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(doc["target"], format!("127.0.0.1:{}", addr.port()));
    assert_eq!(doc["checks"], serde_json::json!(["ports", "http"]));
    let records = doc["records"].as_array().expect("records");
    assert_eq!(records.len(), 2, "{records:?}");
    let port = &records[0]["observation"];
    assert_eq!(port["kind"], "port");
    assert_eq!(port["state"], "open");
    assert_eq!(port["service"], "http");
    assert_eq!(port["product"], "Apache/2.4.41 (Ubuntu)");
    assert_eq!(port["tls"], false);
    let http = &records[1]["observation"];
    assert_eq!(http["kind"], "http");
    assert_eq!(http["x_powered_by"], "PHP/7.4.3");
    assert_eq!(http["redirects_to_https"], false);
    assert!(http["hsts"].is_null());
    assert_eq!(records[1]["job_id"], "");

    let findings = doc["findings"].as_array().expect("findings");
    assert!(
        !findings.is_empty(),
        "a bare HTTP server with version leaks must produce findings"
    );
    for f in findings {
        assert!(f["rule_id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(
            ["info", "low", "medium", "high", "critical"]
                .contains(&f["severity"].as_str().unwrap_or(""))
        );
        assert_eq!(f["asset"], format!("127.0.0.1:{}", addr.port()));
    }
    let evidence: String = findings.iter().map(|f| f["evidence"].to_string()).collect();
    assert!(
        evidence.contains("PHP/7.4.3") || evidence.contains("Apache/2.4.41"),
        "{evidence}"
    );
}

#[tokio::test]
async fn progress_goes_to_stderr_and_table_to_stdout() {
    let addr = banner_server(b"SSH-2.0-OpenSSH_9.6\r\n").await;
    // Loopback only, and never the reserved port 2024.
    let ports = format!("1-2023,2025-2100,{}", addr.port());
    let out = tokio::task::spawn_blocking(move || {
        agent()
            .args([
                "scan",
                "--target",
                "127.0.0.1",
                "--checks",
                "ports",
                "--ports",
                &ports,
                "--format",
                "table",
            ])
            .output()
            .expect("run agent")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("scanned 2100/2100 ports"), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.contains(&format!("{}/tcp", addr.port())))
        .unwrap_or_else(|| panic!("listener missing from table: {stdout}"));
    assert!(
        line.contains("ssh") && line.contains("OpenSSH_9.6"),
        "{line}"
    );
    assert!(!stdout.contains("2024/tcp"));
}

#[test]
fn bad_arguments_are_refused() {
    let run = |args: &[&str]| agent().arg("scan").args(args).output().expect("run agent");
    let out = run(&["--target", "127.0.0.1", "--checks", "smtp"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown check"));
    let out = run(&["--target", "localhost", "--checks", "dns"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nameserver"));
    let out = run(&["--target", "127.0.0.0/24"]);
    assert!(!out.status.success());
    let out = run(&["--target", "127.0.0.1", "--ports", "0-5"]);
    assert!(!out.status.success());
}
