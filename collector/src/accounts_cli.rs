//! `collector user ...` and `collector audit ...`: console accounts and the audit log.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use collector::admin::AdminRequest;
use collector::console_api::{AccountRequest, CreatedUser, UserSummary};
use console::audit::VerifyReport;
use protocol::TenantId;

/// Console users.
#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user with a role in a tenant (or add an existing user to a tenant).
    Create {
        /// Login email.
        #[arg(long)]
        email: String,
        /// Tenant to join; created on first use.
        #[arg(long)]
        tenant: TenantId,
        /// Role in the tenant: admin, auditor or viewer.
        #[arg(long)]
        role: console::Role,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (e.g. for a locked-out admin); their sessions end.
    Passwd {
        /// Login email.
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users with their tenants and roles.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The audit log.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute every tenant's hash chain and report the first broken link.
    Verify {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<TenantId>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn read_password(from_stdin: bool) -> Result<String> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    if !from_stdin {
        if !tty {
            bail!("no terminal to prompt on; pass --password-stdin");
        }
        eprint!("password: ");
        std::io::stderr().flush()?;
    }
    // Hide the typed password; failing to do so only costs the echo.
    let echo_off = !from_stdin
        && tty
        && std::process::Command::new("stty")
            .arg("-echo")
            .stdin(std::process::Stdio::inherit())
            .status()
            .is_ok_and(|s| s.success());
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if echo_off {
        let _ = std::process::Command::new("stty")
            .arg("echo")
            .stdin(std::process::Stdio::inherit())
            .status();
        eprintln!();
    }
    read.context("reading the password")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}

/// The admin request for a user command, and whether to print JSON.
pub fn user_request(cmd: UserCommand) -> Result<(AdminRequest, bool)> {
    Ok(match cmd {
        UserCommand::Passwd {
            email,
            password_stdin,
        } => (
            AdminRequest::Accounts(AccountRequest::SetPassword {
                email,
                password: read_password(password_stdin)?,
            }),
            false,
        ),
        UserCommand::List { json } => (AdminRequest::Accounts(AccountRequest::ListUsers), json),
        create => (create_request(create)?, false),
    })
}

fn create_request(cmd: UserCommand) -> Result<AdminRequest> {
    match cmd {
        UserCommand::Create {
            email,
            tenant,
            role,
            password_stdin,
        } => Ok(AdminRequest::Accounts(AccountRequest::CreateUser {
            email,
            tenant,
            role,
            password: Some(read_password(password_stdin)?),
        })),
        _ => bail!("not a user creation"),
    }
}

/// Prints the answer to a user command.
pub fn print_user(v: serde_json::Value, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if let Ok(users) = serde_json::from_value::<Vec<UserSummary>>(v.clone()) {
        for u in users {
            let tenants: Vec<String> = u.tenants.iter().map(|(t, r)| format!("{t}:{r}")).collect();
            println!("{:<20} {:<40} {}", u.user_id, u.email, tenants.join(" "));
        }
        return Ok(());
    }
    if let Some(ended) = v.get("sessions_ended") {
        println!(
            "password set for {}; {ended} session(s) ended",
            v["email"].as_str().unwrap_or_default()
        );
        return Ok(());
    }
    let u: CreatedUser = serde_json::from_value(v)?;
    println!(
        "{} {} ({}) as {} in {}",
        if u.created { "created" } else { "updated" },
        u.email,
        u.user_id,
        u.role,
        u.tenant
    );
    Ok(())
}

/// The admin request for an audit command, and whether to print JSON.
pub fn audit_request(cmd: AuditCommand) -> (AdminRequest, bool) {
    match cmd {
        AuditCommand::Verify { tenant, json } => (
            AdminRequest::Accounts(AccountRequest::AuditVerify { tenant }),
            json,
        ),
    }
}

/// Prints verification reports; fails when any chain is broken.
pub fn print_audit(v: serde_json::Value, json: bool) -> Result<()> {
    let reports: Vec<VerifyReport> = serde_json::from_value(v)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else if reports.is_empty() {
        println!("no audit logs yet");
    }
    let mut broken = 0;
    for r in &reports {
        match &r.broken {
            None if !json => println!("{}: ok, {} entries", r.tenant, r.entries),
            None => {}
            Some(b) => {
                broken += 1;
                if !json {
                    println!(
                        "{}: BROKEN at entry {} ({}); {} entries verified before it",
                        r.tenant, b.seq, b.reason, r.entries
                    );
                }
            }
        }
    }
    if broken > 0 {
        bail!("{broken} audit log(s) failed verification");
    }
    Ok(())
}
