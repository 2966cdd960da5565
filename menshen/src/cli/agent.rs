//! `menshen agent ...`: the agents that report gateways and bridges, and
//! their tokens.

use std::time::Duration;

use clap::Subcommand;

use super::Invalid;
use super::args::{KeyArgs, ListArgs, StoreArgs, audit};
use super::table::{format_millis, json_or_table, render_fixed_table};
use crate::auth::{SigningKey, random_id, valid_agent_name};
use crate::store::{AgentRow, now_millis};

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Create an agent and print its token (one line, shown only now).
    Create {
        /// The agent's name: lowercase letters, digits, '-', '_', '.'.
        name: String,
        /// How long the token is valid (e.g. 365d, 12h).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "365d")]
        ttl: Duration,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Mint a new token for an existing agent, signed with the first
    /// signing key (one line, shown only now). Its previous token stops
    /// working unless --keep-old-token.
    Reissue {
        name: String,
        /// How long the token is valid (e.g. 365d, 12h).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "365d")]
        ttl: Duration,
        /// Keep the previous token valid too (until it expires or its
        /// signing key is removed): for rotating the signing key while
        /// agents get their new tokens. Without it, a token that leaked is
        /// replaced at once.
        #[arg(long)]
        keep_old_token: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Revoke an agent: its token stops working and what it reported leaves
    /// the lists.
    Revoke {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List agents.
    List(ListArgs),
}

pub async fn run(command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::Create {
            name,
            ttl,
            store,
            key,
        } => {
            if !valid_agent_name(&name) {
                return Err(Invalid::err(format!(
                    "agent name {name:?}: use 1-64 lowercase letters, digits, '-', '_' or '.'"
                )));
            }
            let signing_key = key.load(&store.data_dir)?;
            let token_id = random_id(16);
            let now = now_millis();
            let audit = audit("agent.create", format!("agent/{name}"), now).after(
                serde_json::json!({"name": name, "expires_millis": now + ttl.as_millis() as i64}),
            );
            store
                .with_store(async |db| Ok(db.create_agent(&name, &token_id, now, audit).await?))
                .await?;
            println!("{}", mint(&signing_key, &name, &token_id, now, ttl));
        }
        AgentCommand::Reissue {
            name,
            ttl,
            keep_old_token,
            store,
            key,
        } => {
            let signing_key = key.load(&store.data_dir)?;
            let now = now_millis();
            let audit = audit("agent.reissue", format!("agent/{name}"), now).after(
                serde_json::json!({"name": name, "kid": signing_key.signing_kid(),
                "old_token_kept": keep_old_token,
                "expires_millis": now + ttl.as_millis() as i64}),
            );
            let token_id = store
                .with_store(async |db| {
                    // Not found is status 1, as for `agent revoke`.
                    Ok(db.reissue_agent(&name, keep_old_token, audit).await?)
                })
                .await?;
            println!("{}", mint(&signing_key, &name, &token_id, now, ttl));
        }
        AgentCommand::Revoke { name, store } => {
            let now = now_millis();
            let audit = audit("agent.revoke", format!("agent/{name}"), now)
                .before(serde_json::json!({"name": name}));
            store
                .with_store(async |db| Ok(db.revoke_agent(&name, now, audit).await?))
                .await?;
            eprintln!("agent {name} revoked");
        }
        AgentCommand::List(ListArgs { json, store }) => {
            let agents = store
                .with_store(async |db| Ok(db.list_agents().await?))
                .await?;
            print!("{}", json_or_table(json, &agents, || agent_table(&agents))?);
        }
    }
    Ok(())
}

fn mint(key: &SigningKey, name: &str, token_id: &str, now: i64, ttl: Duration) -> String {
    key.mint_agent_token(name, token_id, now / 1000, ttl.as_secs() as i64)
}

/// `agent list` as a table.
fn agent_table(agents: &[AgentRow]) -> String {
    render_fixed_table(
        &["NAME", "STATUS", "CREATED", "REVOKED"],
        &[32, 8, 20, 20],
        agents
            .iter()
            .map(|a| {
                vec![
                    a.name.clone(),
                    if a.revoked_millis.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                    .to_owned(),
                    format_millis(a.created_millis),
                    a.revoked_millis.map(format_millis).unwrap_or_default(),
                ]
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_table_keeps_its_fixed_columns() {
        let rows = [
            AgentRow {
                name: "a-name-longer-than-the-thirty-two-columns".into(),
                token_id: String::new(),
                created_millis: 0,
                revoked_millis: None,
            },
            AgentRow {
                name: "gw-paris".into(),
                token_id: String::new(),
                created_millis: 1_000,
                revoked_millis: Some(2_000),
            },
        ];
        // The layout as it was written by hand.
        let mut want = format!(
            "{:<32} {:<8} {:<20} {:<20}\n",
            "NAME", "STATUS", "CREATED", "REVOKED"
        );
        for (a, status) in rows.iter().zip(["active", "revoked"]) {
            want.push_str(&format!(
                "{:<32} {:<8} {:<20} {:<20}\n",
                a.name,
                status,
                format_millis(a.created_millis),
                a.revoked_millis.map(format_millis).unwrap_or_default()
            ));
        }
        assert_eq!(agent_table(&rows), want);
    }
}
