//! Command line and environment configuration of the coordinator binary.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

/// The Phonefarm coordinator: public process API, Postgres state, callbacks.
#[derive(Debug, Parser)]
#[command(name = "phonefarm-coordinator", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations, then serve the API until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DbArgs),
    /// Manage API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
}

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Postgres connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/phonefarm"
    )]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address the HTTP API listens on.
    #[arg(long, env = "PHONEFARM_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// NATS server URL (used for dispatch to agents).
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Serve the API only: no NATS connection, no dispatch (another replica dispatches).
    #[arg(long, env = "PHONEFARM_NO_NATS", default_value_t = false, action = clap::ArgAction::Set)]
    pub no_nats: bool,
    /// Lease of a running queue item: renewed by every milestone or heartbeat of the agent.
    #[arg(long, env = "PHONEFARM_LEASE_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..))]
    pub lease_seconds: u64,
    /// How long a dispatched work order may wait for the agent's Accepted.
    #[arg(long, env = "PHONEFARM_ACCEPT_TIMEOUT_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..))]
    pub accept_timeout_seconds: u64,
    /// An agent silent for this long is offline, and so are its phones.
    #[arg(long, env = "PHONEFARM_AGENT_OFFLINE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub agent_offline_seconds: u64,
    /// Compatibility shared secret accepted as a bearer token on every endpoint, every role.
    #[arg(long, env = "INGEST_SECRET", hide_env_values = true)]
    pub ingest_secret: Option<SecretString>,
    /// Secret used to sign callbacks (X-PhoneFarm-Signature and Standard Webhooks headers).
    #[arg(long, env = "PHONE_FARM_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<SecretString>,
    /// CIDRs exempt from the SSRF guard (development and tests only), comma-separated.
    #[arg(
        long = "callback-allow-cidr",
        env = "PHONEFARM_CALLBACK_ALLOW_CIDRS",
        value_delimiter = ',',
        value_parser = parse_cidr
    )]
    pub callback_allow_cidrs: Vec<ipnet::IpNet>,
    /// Serve /metrics without authentication.
    #[arg(long, env = "PHONEFARM_PUBLIC_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub public_metrics: bool,
}

fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("not a CIDR or IP address: {s:?}"))
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key and print it once (only its hash is stored).
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// A unique name for the key (who or what uses it).
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        /// For integrator keys: the requested_by.system the key may act as.
        #[arg(long)]
        system: Option<String>,
    },
    /// List keys (never the secret part).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key by name.
    Revoke {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        name: String,
    },
}

/// The role of an API caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Role {
    Integrator,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Integrator => "integrator",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "integrator" => Some(Role::Integrator),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}
