//! `menshen admin ...`: operators' tokens for the admin API (/admin/v1).

use std::time::Duration;

use clap::Subcommand;

use super::Invalid;
use super::args::{KeyArgs, ListArgs, StoreArgs, audit};
use super::table::{format_millis, json_or_table, render_fixed_table};
use crate::auth::admin::Role;
use crate::auth::random_id;
use crate::store::{AdminTokenRow, NewAdminToken, now_millis, valid_jti};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Mint an admin API token and print it (one line); its id (jti) goes
    /// to stderr. The store keeps the id, subject and lifetime, not the
    /// token: it is valid until it expires, is revoked (`admin revoke`), or
    /// the signing key changes.
    Token {
        /// Who the token is for; recorded in the audit log.
        #[arg(long)]
        subject: String,
        /// `admin` may change things, `viewer` may only read.
        #[arg(long, value_enum)]
        role: Role,
        /// How long the token is valid (e.g. 12h, 30d).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "12h")]
        ttl: Duration,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Revoke an admin token by its id (as `admin token` printed it), or
    /// every admin token of a subject issued up to now. Servers refuse it
    /// from their next reload (at once on Postgres).
    #[command(group = clap::ArgGroup::new("which").required(true).args(["jti", "subject"]))]
    Revoke {
        /// The token's id (jti): 32 hex digits.
        jti: Option<String>,
        /// Revoke every token of this subject issued up to now; tokens
        /// minted for it afterwards work.
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the admin tokens minted (ids, subjects, roles, lifetimes;
    /// never the tokens), newest first.
    List(ListArgs),
}

/// A token's subject, trimmed: 1-256 characters (bytes).
fn subject(text: &str) -> anyhow::Result<&str> {
    let subject = text.trim();
    if subject.is_empty() || subject.len() > 256 {
        return Err(Invalid::err("--subject must be 1-256 characters"));
    }
    Ok(subject)
}

pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Token {
            subject: given,
            role,
            ttl,
            store,
            key,
        } => {
            let subject = subject(&given)?;
            if ttl.as_secs() < 1 {
                return Err(Invalid::err("--ttl must be at least a second"));
            }
            let signing_key = key.load(&store.data_dir)?;
            let ttl_secs = i64::try_from(ttl.as_secs())?;
            let now = now_millis();
            let jti = random_id(16);
            let record = NewAdminToken {
                jti: jti.clone(),
                subject: subject.to_owned(),
                role: role.as_str().to_owned(),
                issued_millis: now,
                expires_millis: (now / 1000).saturating_add(ttl_secs).saturating_mul(1000),
            };
            let audit = audit("admin_token.mint", format!("admin_token/{jti}"), now).after(
                serde_json::json!({"jti": jti, "subject": subject, "role": role.as_str(),
                "expires_millis": record.expires_millis, "kid": signing_key.signing_kid()}),
            );
            store
                .with_store(async |db| Ok(db.record_admin_token(&record, &audit).await?))
                .await?;
            let token =
                signing_key.mint_admin_token_with_id(subject, role, &jti, now / 1000, ttl_secs);
            println!("{token}");
            eprintln!(
                "admin token for {subject} ({}), id {jti}; revoke it with: menshen admin revoke {jti}",
                role.as_str()
            );
        }
        AdminCommand::Revoke {
            jti,
            subject: by_subject,
            store,
        } => {
            let now = now_millis();
            if let Some(jti) = jti {
                let jti = jti.trim().to_ascii_lowercase();
                if !valid_jti(&jti) {
                    return Err(Invalid::err(format!(
                        "{jti:?} is not an admin token id (32 hex digits, as `menshen admin token` printed it)"
                    )));
                }
                let audit = audit("admin_token.revoke", format!("admin_token/{jti}"), now);
                // Unknown or revoked already: refused (exit 1; the API's
                // 404 and 409), as other commands refuse what is not there.
                let row = store
                    .with_store(async |db| Ok(db.revoke_admin_token(&jti, now, audit).await?))
                    .await?;
                eprintln!("admin token {jti} of {} revoked", row.subject);
            } else if let Some(given) = by_subject {
                let subject = subject(&given)?;
                let audit = audit(
                    "admin_token.revoke_subject",
                    format!("admin_subject/{subject}"),
                    now,
                );
                let count = store
                    .with_store(async |db| Ok(db.revoke_admin_subject(subject, now, audit).await?))
                    .await?;
                eprintln!(
                    "every admin token of {subject} issued up to now is revoked ({count} recorded)"
                );
            }
        }
        AdminCommand::List(ListArgs { json, store }) => {
            let tokens = store
                .with_store(async |db| Ok(db.list_admin_tokens().await?))
                .await?;
            print!(
                "{}",
                json_or_table(json, &tokens, || token_table(&tokens, now_millis()))?
            );
        }
    }
    Ok(())
}

/// `admin list` as a table.
fn token_table(tokens: &[AdminTokenRow], now: i64) -> String {
    render_fixed_table(
        &["ID", "SUBJECT", "ROLE", "STATUS", "ISSUED", "EXPIRES"],
        &[32, 24, 6, 8, 20, 20],
        tokens
            .iter()
            .map(|t| {
                let status = if t.revoked_millis.is_some() {
                    "revoked"
                } else if t.expires_millis <= now {
                    "expired"
                } else {
                    "active"
                };
                vec![
                    t.jti.clone(),
                    t.subject.clone(),
                    t.role.clone(),
                    status.to_owned(),
                    format_millis(t.issued_millis),
                    format_millis(t.expires_millis),
                ]
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, parse};

    #[test]
    fn admin_token_takes_a_subject_and_a_role() {
        assert!(parse(&["admin", "token", "--role", "admin"]).is_err());
        assert!(parse(&["admin", "token", "--subject", "a", "--role", "root"]).is_err());
        let cli = parse(&[
            "admin",
            "token",
            "--subject",
            "alice",
            "--role",
            "viewer",
            "--ttl",
            "1h",
        ])
        .unwrap();
        let Command::Admin(AdminCommand::Token {
            subject, role, ttl, ..
        }) = cli.command
        else {
            panic!("not admin token");
        };
        assert_eq!(
            (subject.as_str(), role, ttl),
            ("alice", Role::Viewer, Duration::from_secs(3600))
        );
    }

    #[test]
    fn the_token_table_keeps_its_fixed_columns() {
        let token = |jti: &str, subject: &str, expires_millis, revoked_millis| AdminTokenRow {
            jti: jti.into(),
            subject: subject.into(),
            role: "viewer".into(),
            issued_millis: 0,
            expires_millis,
            revoked_millis,
        };
        let rows = [
            token(&"a".repeat(32), "alice", 5_000, None),
            token(
                &"b".repeat(32),
                "a-subject-longer-than-its-column",
                500,
                None,
            ),
            token(&"c".repeat(32), "carol", 5_000, Some(100)),
        ];
        // The layout as it was written by hand.
        let mut want = format!(
            "{:<32} {:<24} {:<6} {:<8} {:<20} {:<20}\n",
            "ID", "SUBJECT", "ROLE", "STATUS", "ISSUED", "EXPIRES"
        );
        for (t, status) in rows.iter().zip(["active", "expired", "revoked"]) {
            want.push_str(&format!(
                "{:<32} {:<24} {:<6} {:<8} {:<20} {:<20}\n",
                t.jti,
                t.subject,
                t.role,
                status,
                format_millis(t.issued_millis),
                format_millis(t.expires_millis)
            ));
        }
        assert_eq!(token_table(&rows, 1_000), want);
    }
}
