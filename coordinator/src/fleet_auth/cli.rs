//! `phonefarm-coordinator agent enroll | revoke | list` and `nats init | push`.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt as _;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::{Authority, EnrollOptions, FleetAuthError, authority, enroll, push_account, revoke};
use crate::config::{AgentCommand, AuthorityArgs, NatsArgs, NatsCommand};
use crate::db;
use crate::domain::time::fmt;

async fn pool(url: &str) -> Result<PgPool, FleetAuthError> {
    let pool = db::connect(url).await?;
    db::MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| FleetAuthError::Usage(format!("applying migrations: {e}")))?;
    Ok(pool)
}

fn load(args: &AuthorityArgs) -> Result<Authority, FleetAuthError> {
    Ok(Authority::load(&args.nats_auth_dir)?)
}

fn link(nats: &NatsArgs) -> Result<crate::bus::NatsLink, FleetAuthError> {
    nats.link().map_err(FleetAuthError::Usage)
}

/// Pushes the account JWT, saying what to do if NATS cannot take it now.
async fn push_or_explain(
    db: &PgPool,
    authority: &Authority,
    nats: &NatsArgs,
) -> Result<(), FleetAuthError> {
    match push_account(db, authority, &link(nats)?).await {
        Ok(()) => Ok(()),
        Err(e) => Err(FleetAuthError::Usage(format!(
            "recorded, but not in force yet: {e}. Run `phonefarm-coordinator nats push` once NATS \
             is reachable (a serving coordinator given --nats-auth-dir pushes it at start)"
        ))),
    }
}

fn write_creds(path: &Path, text: &str) -> Result<(), FleetAuthError> {
    authority::write_secret(path, text).map_err(FleetAuthError::from)
}

/// Runs one `agent` command, printing its result on stdout.
pub async fn agent(cmd: AgentCommand) -> Result<(), FleetAuthError> {
    match cmd {
        AgentCommand::Enroll {
            agent_id,
            out,
            valid_days,
            replace,
            db,
            nats,
            authority,
        } => {
            let authority = load(&authority)?;
            let path = out.unwrap_or_else(|| format!("{agent_id}.creds").into());
            if path.exists() {
                return Err(FleetAuthError::Usage(format!(
                    "{} exists already (not overwritten)",
                    path.display()
                )));
            }
            let pool = pool(&db.database_url).await?;
            let options = EnrollOptions {
                valid_for: (valid_days > 0).then(|| Duration::from_secs(valid_days * 86_400)),
                replace,
            };
            let enrolled = enroll(&pool, &authority, &agent_id, &options).await?;
            write_creds(&path, &enrolled.issued.creds())?;
            let expires = enrolled
                .issued
                .expires_at
                .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
                .map_or_else(|| "never".to_string(), fmt);
            println!(
                "enrolled {agent_id}: NATS user {} (expires {expires})\nwrote {} (a secret: copy it to the rack host as /etc/phonefarm/agent.creds, mode 0600, and start the agent with --nats-creds /etc/phonefarm/agent.creds)",
                enrolled.issued.user_key,
                path.display()
            );
            if !enrolled.replaced.is_empty() {
                push_or_explain(&pool, &authority, &nats).await?;
                println!(
                    "revoked the credentials it replaces: {}",
                    enrolled.replaced.join(", ")
                );
            }
            Ok(())
        }
        AgentCommand::Revoke {
            agent_id,
            db,
            nats,
            authority,
        } => {
            let authority = load(&authority)?;
            let pool = pool(&db.database_url).await?;
            let keys = revoke(&pool, &agent_id).await?;
            push_or_explain(&pool, &authority, &nats).await?;
            println!(
                "revoked {agent_id} ({}): its connections are closed and refused",
                keys.join(", ")
            );
            Ok(())
        }
        AgentCommand::List { db, nats } => {
            let pool = pool(&db.database_url).await?;
            let rows = db::agent_credentials::list(&pool).await?;
            let live = live_heartbeats(&nats).await;
            let now = OffsetDateTime::now_utc();
            println!(
                "{:<20} {:<10} {:<24} {:<24} {:<8} last seen",
                "agent", "credential", "issued", "expires", "online"
            );
            for r in rows {
                let state = match (&r.user_key, r.revoked_at, r.expires_at) {
                    (None, _, _) => "none",
                    (Some(_), Some(_), _) => "revoked",
                    (Some(_), None, Some(e)) if e <= now => "expired",
                    (Some(_), None, _) => "active",
                };
                let seen = live
                    .as_ref()
                    .and_then(|m| m.get(&r.agent_id).copied())
                    .or(r.last_seen_at)
                    .map_or_else(|| "never".to_string(), fmt);
                println!(
                    "{:<20} {:<10} {:<24} {:<24} {:<8} {seen}",
                    r.agent_id,
                    state,
                    r.issued_at.map_or_else(|| "-".to_string(), fmt),
                    r.expires_at.map_or_else(|| "-".to_string(), fmt),
                    if r.online { "yes" } else { "no" },
                );
            }
            if live.is_none() {
                println!("(NATS not reachable: last seen is the last change Postgres recorded)");
            }
            Ok(())
        }
    }
}

/// The latest presence put of every agent (KV `pf_agents`), if NATS answers within a few
/// seconds.
async fn live_heartbeats(
    nats: &NatsArgs,
) -> Option<std::collections::HashMap<String, OffsetDateTime>> {
    let read = async {
        let link = nats.link().ok()?;
        let client = link.connect(link.options().await.ok()?).await.ok()?;
        let js = async_nats::jetstream::new(client);
        let kv = js
            .get_key_value(phonefarm_shared::subjects::AGENTS_BUCKET)
            .await
            .ok()?;
        let mut out = std::collections::HashMap::new();
        if kv.status().await.ok()?.values() == 0 {
            return Some(out);
        }
        let mut watch = kv.watch_with_history(">").await.ok()?;
        while let Some(Ok(entry)) = watch.next().await {
            out.insert(entry.key.clone(), entry.created);
            if entry.delta == 0 {
                break;
            }
        }
        Some(out)
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()
        .flatten()
}

/// Runs one `nats` command.
pub async fn nats(cmd: NatsCommand) -> Result<(), FleetAuthError> {
    match cmd {
        NatsCommand::Init { authority } => {
            let dir = &authority.nats_auth_dir;
            let a = Authority::init(dir, OffsetDateTime::now_utc().unix_timestamp())?;
            println!(
                "made the NATS trust chain in {dir}:\n  operator {op}\n  system account {sys}\n  account {acc} (agents and coordinators)\n\
                 Next:\n  1. copy {dir}/{conf} to every nats-server as phonefarm-auth.conf (see deploy/nats/README.md)\n  \
                 2. move {dir}/offline/ off this host (identity keys: needed only to rotate signing keys)\n  \
                 3. serve with --nats-creds {dir}/{creds} --nats-auth-dir {dir}",
                dir = dir.display(),
                op = a.public.operator,
                sys = a.public.system_account,
                acc = a.public.account,
                conf = authority::SERVER_CONF,
                creds = authority::COORDINATOR_CREDS,
            );
            Ok(())
        }
        NatsCommand::Push {
            db,
            nats,
            authority,
        } => {
            let authority = load(&authority)?;
            let pool = pool(&db.database_url).await?;
            push_account(&pool, &authority, &link(&nats)?).await?;
            println!("account JWT pushed");
            Ok(())
        }
        NatsCommand::RotateSigningKey {
            db,
            nats,
            authority,
        } => {
            let mut authority = load(&authority)?;
            let key = authority.rotate_account_signing_key()?;
            let pool = pool(&db.database_url).await?;
            push_or_explain(&pool, &authority, &nats).await?;
            println!(
                "new users are signed with {key}; enroll every agent again with --replace, then retire the old key{}: {}",
                if authority.public.account_signing_keys.len() > 2 {
                    "s"
                } else {
                    ""
                },
                authority.public.account_signing_keys[1..].join(", ")
            );
            Ok(())
        }
        NatsCommand::RetireSigningKey {
            key,
            db,
            nats,
            authority,
        } => {
            let mut authority = load(&authority)?;
            authority.retire_account_signing_key(&key)?;
            let pool = pool(&db.database_url).await?;
            push_or_explain(&pool, &authority, &nats).await?;
            println!("retired {key}: users it signed are refused");
            Ok(())
        }
    }
}
