//! `phonefarm-coordinator`: parse the configuration, initialise tracing, run the command.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use phonefarm_coordinator::config::{ApiKeyCommand, Cli, Command, ServeArgs};
use phonefarm_coordinator::{app, auth, bus, db, fleet_auth, flowpacks};

/// mimalloc: the request path allocates a lot of small, short-lived buffers; glibc's malloc was
/// ~10 % of the coordinator's CPU in the API bench.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = phonefarm_startup::parse::<Cli>(
        std::path::Path::new("/etc/phonefarm/coordinator.toml"),
        &["serve"],
    )
    .unwrap_or_else(|e| e.exit());
    // One-shot commands print their result only; the server logs at info.
    let default_filter = match cli.command {
        Command::Serve(_) => "info,sqlx=warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        // Colours only on a terminal: journald and log files get plain lines.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => {
            let pool = db::connect(&args.database_url)
                .await
                .context("connecting to Postgres")?;
            db::MIGRATOR
                .run(&pool)
                .await
                .context("applying migrations")?;
            println!("migrations applied");
            Ok(())
        }
        Command::ApiKey(cmd) => api_key(cmd).await,
        Command::Agent(cmd) => Ok(fleet_auth::cli::agent(cmd).await?),
        Command::Nats(cmd) => Ok(fleet_auth::cli::nats(cmd).await?),
        Command::Flowpack(cmd) => Ok(flowpacks::cli::flowpack(cmd).await?),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Bad TLS files fail before anything connects.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(phonefarm_coordinator::tls::server_config(cert, key).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    let pool = db::connect(&args.db.database_url)
        .await
        .context("connecting to Postgres")?;
    db::MIGRATOR
        .run(&pool)
        .await
        .context("applying migrations")?;
    let bus = if args.no_nats {
        None
    } else {
        let link = args.nats.link().map_err(anyhow::Error::msg)?;
        if let Some(dir) = &args.nats_auth_dir {
            // Revocations recorded while NATS was away take effect now.
            let authority = fleet_auth::Authority::load(dir)?;
            if let Err(e) = fleet_auth::push_account(&pool, &authority, &link).await {
                tracing::warn!(error = %e, "cannot push the account JWT at start");
            }
        }
        let mut config = bus::BusConfig::new(link.url.clone());
        config.nats_credentials = link.credentials.clone();
        config.nats_tls = link.tls.clone();
        config.lease = std::time::Duration::from_secs(args.lease_seconds);
        config.accept_timeout = std::time::Duration::from_secs(args.accept_timeout_seconds);
        config.offline_after = std::time::Duration::from_secs(args.agent_offline_seconds);
        config.replicas = args.nats_replicas as usize;
        Some(bus::connect(config).await.context("connecting to NATS")?)
    };
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    tracing::info!(addr = %args.bind, tls = tls.is_some(), "coordinator listening");
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        signal.cancel();
                        return;
                    }
                };
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    let settings = app::Settings {
        ingest_secret: args.ingest_secret,
        webhook_secret: args.webhook_secret,
        allow: args.callback_allow_cidrs,
        public_metrics: args.public_metrics,
        deliverer: Some(Default::default()),
    };
    // systemd (Type=notify): listening; keep-alives from a task on this runtime, so a runtime
    // that stops scheduling tasks stops them and WatchdogSec restarts the coordinator.
    if let Err(e) = phonefarm_startup::notify::ready() {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
    if let Some(every) = phonefarm_startup::notify::watchdog_interval() {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let _ = phonefarm_startup::notify::watchdog();
                    }
                }
            }
            let _ = phonefarm_startup::notify::stopping();
        });
    }
    match tls {
        Some(config) => {
            let listener = phonefarm_coordinator::tls::TlsListener::new(listener, config)
                .context("the TLS listener")?;
            app::run_with_bus(listener, pool, settings, bus, shutdown).await
        }
        None => app::run_with_bus(listener, pool, settings, bus, shutdown).await,
    }
}

async fn api_key(cmd: ApiKeyCommand) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCommand::Create {
            db: dbargs,
            name,
            role,
            system,
        } => {
            let pool = db::connect(&dbargs.database_url)
                .await
                .context("connecting to Postgres")?;
            db::MIGRATOR
                .run(&pool)
                .await
                .context("applying migrations")?;
            let key = auth::generate_key();
            db::api_keys::insert(
                &pool,
                &name,
                &auth::hash_key(&key),
                &auth::key_prefix(&key),
                role.as_str(),
                system.as_deref(),
            )
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => {
                    anyhow::anyhow!("a key named {name:?} exists already")
                }
                other => anyhow::Error::new(other).context("storing the key"),
            })?;
            println!("{key}");
            Ok(())
        }
        ApiKeyCommand::List { db: dbargs } => {
            let pool = db::connect(&dbargs.database_url)
                .await
                .context("connecting to Postgres")?;
            println!(
                "{:<24} {:<12} {:<11} {:<16} {:<24} revoked",
                "name", "prefix", "role", "system", "created"
            );
            for k in db::api_keys::list(&pool).await.context("listing keys")? {
                println!(
                    "{:<24} {:<12} {:<11} {:<16} {:<24} {}",
                    k.name,
                    k.prefix,
                    k.role,
                    k.system.unwrap_or_else(|| "-".into()),
                    phonefarm_coordinator::domain::time::fmt(k.created_at),
                    k.revoked_at
                        .map(phonefarm_coordinator::domain::time::fmt)
                        .unwrap_or_else(|| "-".into())
                );
            }
            Ok(())
        }
        ApiKeyCommand::Revoke { db: dbargs, name } => {
            let pool = db::connect(&dbargs.database_url)
                .await
                .context("connecting to Postgres")?;
            if db::api_keys::revoke(&pool, &name)
                .await
                .context("revoking the key")?
            {
                println!("revoked {name}");
                Ok(())
            } else {
                anyhow::bail!("no active key named {name:?}")
            }
        }
    }
}
