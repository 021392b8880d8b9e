//! Command line and environment configuration of the coordinator binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

/// The Phonefarm coordinator: public process API, Postgres state, callbacks.
#[derive(Debug, Parser)]
#[command(name = "phonefarm-coordinator", version, about)]
pub struct Cli {
    /// A TOML file of options (keys: the long flags with `_` for `-`, e.g. `database_url`);
    /// default /etc/phonefarm/coordinator.toml when present. Precedence: flag > environment >
    /// file > default.
    #[arg(long, env = "PHONEFARM_CONFIG", global = true)]
    pub config: Option<PathBuf>,
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
    /// Enroll, revoke and list agents (their NATS credentials).
    #[command(subcommand)]
    Agent(AgentCommand),
    /// The NATS trust chain: make it, push the account JWT.
    #[command(subcommand)]
    Nats(NatsCommand),
    /// Publish signed flow packs to the fleet and see what each agent runs.
    #[command(subcommand)]
    Flowpack(FlowpackCommand),
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
    /// Serve HTTPS with this PEM certificate chain (with --tls-key); else plain HTTP, e.g.
    /// behind a TLS-terminating proxy.
    #[arg(long, env = "PHONEFARM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "PHONEFARM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The NATS trust chain's directory (`nats init`): given, the account JWT (with the
    /// revocations in force) is pushed to the resolver at start.
    #[arg(long, env = "PHONEFARM_NATS_AUTH_DIR")]
    pub nats_auth_dir: Option<PathBuf>,
    /// Serve the API only: no NATS connection, no dispatch (another replica dispatches).
    #[arg(long, env = "PHONEFARM_NO_NATS", default_value_t = false, action = clap::ArgAction::Set)]
    pub no_nats: bool,
    /// Servers each JetStream stream and bucket is stored on: 1 on a single nats-server, 3 on
    /// a production cluster (at most the cluster's size). Existing streams are changed to it.
    #[arg(long, env = "PHONEFARM_NATS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5))]
    pub nats_replicas: u64,
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
    /// Serve /metrics without authentication (by default it needs a bearer token of any role,
    /// like the rest of the API).
    #[arg(long, env = "PHONEFARM_PUBLIC_METRICS")]
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

/// How the coordinator reaches NATS. Credentials are their own options (at most one kind),
/// never part of the URL; each secret can come from a file instead of the environment.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated (nats:// or tls://), without credentials.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// A NATS .creds file (user JWT and nkey seed), e.g. coordinator.creds from `nats init`.
    #[arg(long, env = "PHONEFARM_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// A NATS token.
    #[arg(long, env = "PHONEFARM_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<SecretString>,
    /// A file holding the NATS token.
    #[arg(long, env = "PHONEFARM_NATS_TOKEN_FILE")]
    pub nats_token_file: Option<PathBuf>,
    /// A NATS user (with a password).
    #[arg(long, env = "PHONEFARM_NATS_USER")]
    pub nats_user: Option<String>,
    /// The NATS user's password.
    #[arg(long, env = "PHONEFARM_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<SecretString>,
    /// A file holding the NATS user's password.
    #[arg(long, env = "PHONEFARM_NATS_PASSWORD_FILE")]
    pub nats_password_file: Option<PathBuf>,
    /// PEM CA certificate(s) the NATS servers' certificates chain to (implies TLS).
    #[arg(long, env = "PHONEFARM_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// PEM client certificate, for NATS servers that verify clients (with --nats-client-key).
    #[arg(long, env = "PHONEFARM_NATS_CLIENT_CERT", requires = "nats_client_key")]
    pub nats_client_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    #[arg(long, env = "PHONEFARM_NATS_CLIENT_KEY", requires = "nats_client_cert")]
    pub nats_client_key: Option<PathBuf>,
    /// Require TLS even without --nats-ca (servers with publicly trusted certificates).
    #[arg(long, env = "PHONEFARM_NATS_TLS", default_value_t = false, action = clap::ArgAction::Set)]
    pub nats_tls: bool,
}

fn read_secret(path: &std::path::Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(SecretString::from(text.to_string()))
}

impl NatsArgs {
    /// Without credentials or TLS options.
    pub fn plain(url: impl Into<String>) -> Self {
        Self {
            nats_url: url.into(),
            nats_creds: None,
            nats_token: None,
            nats_token_file: None,
            nats_user: None,
            nats_password: None,
            nats_password_file: None,
            nats_ca: None,
            nats_client_cert: None,
            nats_client_key: None,
            nats_tls: false,
        }
    }

    /// The credentials given (at most one kind), secrets read from their files.
    pub fn credentials(&self) -> Result<crate::bus::NatsCredentials, String> {
        use crate::bus::NatsCredentials as C;
        let token = match (&self.nats_token, &self.nats_token_file) {
            (Some(_), Some(_)) => {
                return Err("give --nats-token or --nats-token-file, not both".into());
            }
            (Some(t), None) => Some(t.clone()),
            (None, Some(f)) => Some(read_secret(f)?),
            (None, None) => None,
        };
        let password = match (&self.nats_password, &self.nats_password_file) {
            (Some(_), Some(_)) => {
                return Err("give --nats-password or --nats-password-file, not both".into());
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(f)) => Some(read_secret(f)?),
            (None, None) => None,
        };
        match (&self.nats_creds, token, &self.nats_user, password) {
            (None, None, None, None) => Ok(C::None),
            (Some(path), None, None, None) => Ok(C::CredsFile(path.clone())),
            (None, Some(t), None, None) => Ok(C::Token(t)),
            (None, None, Some(user), Some(password)) => Ok(C::UserPassword {
                user: user.clone(),
                password,
            }),
            (None, None, Some(_), None) | (None, None, None, Some(_)) => {
                Err("a NATS user needs a password and a password a user".into())
            }
            _ => Err(
                "give one kind of NATS credentials: a creds file, a token, or a user and password"
                    .into(),
            ),
        }
    }

    /// The link these options describe.
    pub fn link(&self) -> Result<crate::bus::NatsLink, String> {
        if phonefarm_shared::url_has_secret(&self.nats_url) {
            return Err(format!(
                "the NATS URL {} carries credentials: give them with --nats-creds, --nats-token(-file) or --nats-user and --nats-password(-file)",
                phonefarm_shared::redact_url(&self.nats_url)
            ));
        }
        Ok(crate::bus::NatsLink {
            url: self.nats_url.clone(),
            credentials: self.credentials()?,
            tls: crate::bus::NatsTls {
                ca: self.nats_ca.clone(),
                client_cert: self
                    .nats_client_cert
                    .clone()
                    .zip(self.nats_client_key.clone()),
                required: self.nats_tls,
            },
        })
    }
}

/// Where the coordinator keeps the NATS trust chain's keys.
#[derive(Debug, Clone, Args)]
pub struct AuthorityArgs {
    /// The directory written by `nats init` (keep it 0700, owned by the coordinator's user).
    #[arg(
        long,
        env = "PHONEFARM_NATS_AUTH_DIR",
        default_value = "/etc/phonefarm/nats"
    )]
    pub nats_auth_dir: PathBuf,
}

// Parsed once per process: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Issue an agent its NATS credentials and write them as a .creds file for its host.
    Enroll {
        /// The agent's id (ASCII letters, digits, '-' and '_'), e.g. rack-07.
        agent_id: String,
        /// Where to write the .creds file (default: <agent_id>.creds here; never overwritten).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Days the credentials are valid (0: no expiry).
        #[arg(long, default_value_t = 365)]
        valid_days: u64,
        /// The agent holds credentials in force: revoke them and issue new ones.
        #[arg(long, default_value_t = false)]
        replace: bool,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        authority: AuthorityArgs,
    },
    /// Revoke an agent's NATS credentials: its connections are closed and refused.
    Revoke {
        agent_id: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        authority: AuthorityArgs,
    },
    /// List enrolled agents, their credentials and when each was last seen.
    List {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        nats: NatsArgs,
    },
}

// Parsed once per process: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum NatsCommand {
    /// Make a new trust chain (operator, accounts, signing keys, the coordinator's creds) and
    /// the nats-server configuration that trusts it.
    Init {
        #[command(flatten)]
        authority: AuthorityArgs,
    },
    /// Sign the account JWT with every revocation in force and push it to the resolver.
    Push {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        authority: AuthorityArgs,
    },
    /// Make a new account signing key for new users (the old ones keep working until retired)
    /// and push the account JWT.
    RotateSigningKey {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        authority: AuthorityArgs,
    },
    /// Retire an account signing key and push the account JWT: users it signed are refused.
    RetireSigningKey {
        /// The public key (A...), as `rotate-signing-key` or authority.json lists it.
        key: String,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        authority: AuthorityArgs,
    },
}

// Parsed once per process: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum FlowpackCommand {
    /// Validate a flow pack, sign it and publish it to every agent (KV pf_flows).
    Publish {
        /// The pack's TOML file.
        file: PathBuf,
        /// The publisher's signing key (`flowpack keygen`).
        #[arg(
            long,
            env = "PHONEFARM_FLOWPACK_KEY",
            default_value = "/etc/phonefarm/flowpack-signing.key"
        )]
        signing_key: PathBuf,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// The published packs, and which revision each agent runs (and what it refused).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Make a publisher signing key and print the line agents put in their trust list.
    Keygen {
        /// Where to write the key (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}
