//! `phonefarm-coordinator flowpack publish FILE | list | keygen`.

use sqlx::PgPool;

use super::{FlowPackError, keygen, load_key, public_key_text, publish};
use crate::config::{FlowpackCommand, NatsArgs};
use crate::db;
use crate::domain::time::fmt;

async fn pool(url: &str) -> Result<PgPool, FlowPackError> {
    let pool = db::connect(url).await?;
    db::MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| FlowPackError::Usage(format!("applying migrations: {e}")))?;
    Ok(pool)
}

async fn jetstream(nats: &NatsArgs) -> Result<async_nats::jetstream::Context, FlowPackError> {
    let link = nats.link().map_err(FlowPackError::Usage)?;
    let opts = link
        .options()
        .await
        .map_err(|e| FlowPackError::Nats(e.to_string()))?
        .name("phonefarm-coordinator flowpack");
    let client = link
        .connect(opts)
        .await
        .map_err(|e| FlowPackError::Nats(e.to_string()))?;
    Ok(async_nats::jetstream::new(client))
}

/// Runs one `flowpack` command, printing its result on stdout.
pub async fn flowpack(cmd: FlowpackCommand) -> Result<(), FlowPackError> {
    match cmd {
        FlowpackCommand::Publish {
            file,
            signing_key,
            db,
            nats,
        } => {
            let key = load_key(&signing_key)?;
            let toml = std::fs::read_to_string(&file).map_err(|error| FlowPackError::Io {
                path: file.clone(),
                error,
            })?;
            let pool = pool(&db.database_url).await?;
            let js = jetstream(&nats).await?;
            let p = publish(&pool, &js, &key, &file.display().to_string(), &toml).await?;
            println!(
                "published {} revision {} (sha256 {}, pf_flows revision {}), signed by {}",
                p.name, p.revision, p.sha256, p.kv_revision, p.signer
            );
            Ok(())
        }
        FlowpackCommand::List { db } => {
            let pool = pool(&db.database_url).await?;
            println!(
                "{:<20} {:<9} {:<24} signer",
                "pack", "revision", "published"
            );
            for p in db::flow_packs::latest_publications(&pool).await? {
                println!(
                    "{:<20} {:<9} {:<24} {}",
                    p.name,
                    p.revision,
                    fmt(p.published_at),
                    p.signer
                );
            }
            println!();
            println!(
                "{:<20} {:<20} {:<9} {:<10} reported",
                "agent", "pack", "revision", "from"
            );
            for a in db::flow_packs::agents(&pool).await? {
                let running: Vec<phonefarm_shared::PackRunning> =
                    serde_json::from_value(a.running).unwrap_or_default();
                let rejected: Vec<phonefarm_shared::PackRejected> =
                    serde_json::from_value(a.rejected).unwrap_or_default();
                for p in running {
                    println!(
                        "{:<20} {:<20} {:<9} {:<10} {}",
                        a.agent_id,
                        p.name,
                        p.revision,
                        if p.kv.is_some() { "published" } else { "local" },
                        fmt(a.report_at)
                    );
                }
                for r in rejected {
                    println!(
                        "{:<20} {:<20} {:<9} {:<10} {} (signer {})",
                        a.agent_id,
                        r.key,
                        "-",
                        "REFUSED",
                        r.reason,
                        r.signer.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(())
        }
        FlowpackCommand::Keygen { out } => {
            let key = keygen(&out)?;
            println!(
                "wrote {} (a secret). Agents trust it with this line in their --flowpack-trust file:\n{}",
                out.display(),
                public_key_text(&key)
            );
            Ok(())
        }
    }
}
