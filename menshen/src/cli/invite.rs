//! `menshen invite ...`: invite tokens, which let clients see invite-only
//! gateways and bridges (those with a `bucket`).

use std::time::Duration;

use clap::{ArgGroup, Subcommand};

use super::Invalid;
use super::args::{ListArgs, StoreArgs, audit};
use super::table::{format_millis, json_or_table, render_fixed_table};
use crate::auth::invite;
use crate::inventory::validate::valid_bucket;
use crate::store::{InviteRow, InviteSelection, NewInvite, now_millis};

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Create invite tokens and print them, one a line (shown only now;
    /// menshen keeps only a hash).
    Create {
        /// A bucket the tokens grant; repeat for several.
        #[arg(long = "bucket", required = true, value_name = "BUCKET")]
        buckets: Vec<String>,
        /// How many tokens to create.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        count: u32,
        /// How long the tokens are valid (e.g. 30d, 12h); without it, until
        /// deleted.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List invites: ids, buckets and times, never the tokens.
    List(ListArgs),
    /// Delete invites; their tokens stop working.
    #[command(group(ArgGroup::new("which").required(true).args(["id", "bucket", "all"])))]
    Delete {
        /// The invite with this id (as `invite list` shows it).
        #[arg(long)]
        id: Option<String>,
        /// Every invite that grants this bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Every invite.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// A bucket given on the command line must be one an invite can grant.
fn check_bucket(bucket: &str) -> anyhow::Result<()> {
    if valid_bucket(bucket) {
        Ok(())
    } else {
        Err(Invalid::err(format!(
            "bucket {bucket:?}: use 1-64 characters, without spaces or control characters"
        )))
    }
}

pub async fn run(command: InviteCommand) -> anyhow::Result<()> {
    match command {
        InviteCommand::Create {
            mut buckets,
            count,
            expires,
            store,
        } => {
            for bucket in &buckets {
                check_bucket(bucket)?;
            }
            buckets.sort();
            buckets.dedup();
            let now = now_millis();
            let expires_millis = match expires {
                Some(ttl) => Some(now.saturating_add(i64::try_from(ttl.as_millis())?)),
                None => None,
            };
            let mut tokens = Vec::new();
            let mut invites = Vec::new();
            for _ in 0..count {
                let new = invite::generate();
                invites.push(NewInvite {
                    id: new.id,
                    secret_hash: new.secret_hash,
                    buckets: buckets.clone(),
                    expires_millis,
                });
                tokens.push(new.token);
            }
            let ids: Vec<&str> = invites.iter().map(|i| i.id.as_str()).collect();
            let audit = audit("invite.create", "invites", now).after(
                serde_json::json!({"ids": ids, "buckets": buckets, "expires_millis": expires_millis}),
            );
            store
                .with_store(async |db| Ok(db.create_invites(&invites, now, audit).await?))
                .await?;
            for token in tokens {
                println!("{token}");
            }
            eprintln!(
                "{count} invite(s) created for {}{}",
                buckets.join(", "),
                expires_millis
                    .map(|at| format!(", valid until {}", format_millis(at)))
                    .unwrap_or_default()
            );
        }
        InviteCommand::List(ListArgs { json, store }) => {
            let invites = store
                .with_store(async |db| Ok(db.list_invites().await?))
                .await?;
            print!("{}", render_invites(&invites, json, now_millis())?);
        }
        InviteCommand::Delete {
            id,
            bucket,
            all,
            store,
        } => {
            if let Some(bucket) = &bucket {
                check_bucket(bucket)?;
            }
            let which = match (&id, &bucket, all) {
                (Some(id), None, false) => InviteSelection::Id(id),
                (None, Some(bucket), false) => InviteSelection::Bucket(bucket),
                (None, None, true) => InviteSelection::All,
                // clap lets exactly one through.
                _ => return Err(Invalid::err("give exactly one of --id, --bucket, --all")),
            };
            let target = match which {
                InviteSelection::Id(id) => format!("invite/{id}"),
                InviteSelection::Bucket(bucket) => format!("invites?bucket={bucket}"),
                InviteSelection::All => "invites".to_owned(),
            };
            let audit = audit("invite.delete", target, now_millis());
            let deleted = store
                .with_store(async |db| Ok(db.delete_invites(which, audit).await?))
                .await?;
            if let (Some(id), 0) = (&id, deleted) {
                anyhow::bail!("no invite with id {id:?}");
            }
            eprintln!("{deleted} invite(s) deleted");
        }
    }
    Ok(())
}

/// `invite list` output: a table, or JSON. Tokens are not stored, so they
/// cannot appear here.
fn render_invites(invites: &[InviteRow], json: bool, now: i64) -> anyhow::Result<String> {
    json_or_table(json, &invites, || {
        render_fixed_table(
            &["ID", "STATUS", "CREATED", "EXPIRES", "LAST USED", "BUCKETS"],
            &[16, 8, 20, 20, 20, 0],
            invites
                .iter()
                .map(|i| {
                    let expired = i.expires_millis.is_some_and(|at| at <= now);
                    let never = || "never".to_owned();
                    vec![
                        i.id.clone(),
                        if expired { "expired" } else { "active" }.to_owned(),
                        format_millis(i.created_millis),
                        i.expires_millis.map(format_millis).unwrap_or_else(never),
                        i.last_used_millis.map(format_millis).unwrap_or_else(never),
                        i.buckets.join(","),
                    ]
                })
                .collect(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, parse};

    #[test]
    fn invite_delete_takes_exactly_one_selection() {
        for ok in [
            &["invite", "delete", "--id", "abc"][..],
            &["invite", "delete", "--bucket", "friends"],
            &["invite", "delete", "--all"],
        ] {
            assert!(parse(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            &["invite", "delete"][..],
            &["invite", "delete", "--all", "--id", "abc"],
            &["invite", "delete", "--id", "abc", "--bucket", "friends"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invite_create_needs_a_bucket_and_reads_durations() {
        assert!(parse(&["invite", "create"]).is_err());
        assert!(parse(&["invite", "create", "--bucket", "a", "--count", "0"]).is_err());
        let cli = parse(&[
            "invite",
            "create",
            "--bucket",
            "a",
            "--bucket",
            "b",
            "--count",
            "3",
            "--expires",
            "30d",
        ])
        .unwrap();
        let Command::Invite(InviteCommand::Create {
            buckets,
            count,
            expires,
            ..
        }) = cli.command
        else {
            panic!("not invite create");
        };
        assert_eq!(buckets, ["a", "b"]);
        assert_eq!(count, 3);
        assert_eq!(expires, Some(Duration::from_secs(30 * 86_400)));
    }

    #[test]
    fn invite_lists_show_ids_and_times_never_hashes() {
        let new = invite::generate();
        let rows = [
            InviteRow {
                id: new.id.clone(),
                secret_hash: new.secret_hash.clone(),
                buckets: vec!["family".into(), "friends".into()],
                created_millis: 0,
                expires_millis: Some(1_000),
                last_used_millis: None,
            },
            InviteRow {
                id: "0123456789abcdef".into(),
                secret_hash: "00".repeat(32),
                buckets: vec!["friends".into()],
                created_millis: 0,
                expires_millis: None,
                last_used_millis: Some(500),
            },
        ];
        let table = render_invites(&rows, false, 2_000).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[1].starts_with(&new.id), "{table}");
        assert!(lines[1].contains("expired") && lines[1].ends_with("family,friends"));
        assert!(lines[2].contains("active") && lines[2].contains("never"));
        assert!(lines[2].contains("1970-01-01T00:00:00Z"));

        let json = render_invites(&rows, true, 2_000).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["id"], new.id.as_str());
        assert_eq!(parsed[1]["last_used_millis"], 500);
        for text in [&table, &json] {
            assert!(!text.contains(&new.secret_hash), "{text}");
            assert!(!text.contains("secret"), "{text}");
            assert!(!text.contains(&new.token[new.id.len()..]), "{text}");
        }
    }

    #[test]
    fn the_invite_table_keeps_its_fixed_columns() {
        let rows = [InviteRow {
            id: "0123456789abcdef".into(),
            secret_hash: String::new(),
            buckets: vec!["a-bucket".into(), "b".into()],
            created_millis: 0,
            expires_millis: None,
            last_used_millis: Some(500),
        }];
        // The layout as it was written by hand.
        let want = format!(
            "{:<16} {:<8} {:<20} {:<20} {:<20} {}\n{:<16} {:<8} {:<20} {:<20} {:<20} {}\n",
            "ID",
            "STATUS",
            "CREATED",
            "EXPIRES",
            "LAST USED",
            "BUCKETS",
            "0123456789abcdef",
            "active",
            format_millis(0),
            "never",
            format_millis(500),
            "a-bucket,b"
        );
        assert_eq!(render_invites(&rows, false, 1_000).unwrap(), want);
    }
}
