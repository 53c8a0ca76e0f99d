//! The `collector` binary's first-run bootstrap and audit verification,
//! offline (no collector running: the CLI opens the database itself).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn collector(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_collector"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("VIGIL_COLLECTOR_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn user_create_then_audit_verify_and_tamper_detection() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();

    // Without a terminal and without --password-stdin there is nothing to prompt on.
    let o = collector(
        data,
        &[
            "user", "create", "--email", "a@b.test", "--tenant", "acme", "--role", "admin",
        ],
        None,
    );
    assert!(!o.status.success(), "{}", text(&o));

    let o = collector(
        data,
        &[
            "user",
            "create",
            "--email",
            "a@b.test",
            "--tenant",
            "acme",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some("bootstrap password\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("created a@b.test"),
        "{}",
        text(&o)
    );

    // Too short a password is refused, and an unknown role does not parse.
    let o = collector(
        data,
        &[
            "user",
            "create",
            "--email",
            "c@b.test",
            "--tenant",
            "acme",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert!(!o.status.success(), "{}", text(&o));
    let o = collector(
        data,
        &[
            "user",
            "create",
            "--email",
            "c@b.test",
            "--tenant",
            "acme",
            "--role",
            "root",
            "--password-stdin",
        ],
        Some("long enough password\n"),
    );
    assert!(!o.status.success(), "{}", text(&o));

    let o = collector(
        data,
        &["token", "create", "--tenant", "acme", "--quiet"],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));

    // Password recovery for a locked-out admin, and the user list.
    let o = collector(
        data,
        &["user", "passwd", "--email", "A@b.test", "--password-stdin"],
        Some("another long password\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = collector(
        data,
        &[
            "user",
            "passwd",
            "--email",
            "nobody@b.test",
            "--password-stdin",
        ],
        Some("another long password\n"),
    );
    assert!(!o.status.success(), "{}", text(&o));
    let o = collector(data, &["user", "list", "--json"], None);
    assert!(o.status.success(), "{}", text(&o));
    let users: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(users[0]["email"], "a@b.test");
    assert_eq!(users[0]["tenants"], serde_json::json!([["acme", "admin"]]));

    let o = collector(data, &["audit", "verify"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("acme: ok, 3 entries"),
        "{}",
        text(&o)
    );

    // Tamper with the first entry's actor directly in the database.
    {
        let db = sled::Config::new().path(data.join("db")).open().unwrap();
        let tree = db.open_tree(console::sled_accounts::AUDIT_TREE).unwrap();
        let mut key = b"acme\0".to_vec();
        key.extend_from_slice(&1u64.to_be_bytes());
        let mut e: serde_json::Value =
            serde_json::from_slice(&tree.get(&key).unwrap().unwrap()).unwrap();
        e["actor"] = "user:someone-else".into();
        tree.insert(key, serde_json::to_vec(&e).unwrap()).unwrap();
        db.flush().unwrap();
    }
    let o = collector(data, &["audit", "verify", "--tenant", "acme"], None);
    assert!(!o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("acme: BROKEN at entry 1"), "{}", text(&o));
}
