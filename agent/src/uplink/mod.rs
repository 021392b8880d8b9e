//! The agent's side of NATS JetStream, designed to nats-server 2.9.10 (the streams, consumers
//! and buckets are listed in the coordinator's `bus` module).
//!
//! - [`connect`]: the connection, with the agent's credentials and its own inbox prefix
//!   (`_INBOX_<agent_id>`, so least-privilege permissions can allow exactly that), retrying the
//!   first connect and reconnecting forever: the agent starts and runs while NATS is away.
//! - [`journal`] + [`publisher`]: every run event is journaled (fsync) before it is published
//!   with `Nats-Msg-Id = AgentEvent::msg_id()`, and deleted only after the publish ack.
//! - [`consumer`]: binding to the agent's durable pull consumers `agent-<id>` on `PF_WORK` and
//!   `PF_CTL` (created by the coordinator; the agent never creates streams or consumers),
//!   riding out `MissingHeartbeat` and rebinding on `ConsumerDeleted`.
//! - [`presence`]: the presence heartbeat in KV `pf_agents` and the inventory reporter.
//! - [`packs`]: the flow-pack watcher on KV `pf_flows`.
//! - [`evidence`]: uploads to the object store `pf_evidence`.
//! - [`screen`]: the console's live view: screen captures while a watch is alive, on core
//!   NATS.

pub mod consumer;
pub mod evidence;
pub mod journal;
pub mod op_reports;
pub mod packs;
pub mod presence;
pub mod publisher;
pub mod screen;

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;

/// How the agent authenticates to NATS.
#[derive(Clone, Default)]
pub enum NatsAuth {
    /// No credentials (tests, a local server).
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    /// An nkey seed (`SU…`).
    NkeySeed(String),
    /// A `.creds` file (JWT + nkey seed), as `nsc` writes it.
    CredsFile(PathBuf),
}

impl std::fmt::Debug for NatsAuth {
    // Secrets never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => write!(f, "None"),
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user}, ***)"),
            NatsAuth::NkeySeed(_) => write!(f, "NkeySeed(***)"),
            NatsAuth::CredsFile(p) => write!(f, "CredsFile({})", p.display()),
        }
    }
}

impl NatsAuth {
    /// The credentials from command-line style options: at most one of user/password (both
    /// together), an nkey seed, or a creds file.
    pub fn from_options(
        user: Option<String>,
        password: Option<String>,
        nkey_seed: Option<String>,
        creds_file: Option<PathBuf>,
    ) -> Result<Self, UplinkError> {
        match (user, password, nkey_seed, creds_file) {
            (None, None, None, None) => Ok(NatsAuth::None),
            (Some(user), Some(password), None, None) => {
                Ok(NatsAuth::UserPassword { user, password })
            }
            (None, None, Some(seed), None) => Ok(NatsAuth::NkeySeed(seed)),
            (None, None, None, Some(path)) => Ok(NatsAuth::CredsFile(path)),
            (Some(_), None, None, None) | (None, Some(_), None, None) => Err(
                UplinkError::BadCredentials("a NATS user needs a password and vice versa"),
            ),
            _ => Err(UplinkError::BadCredentials(
                "give one of: user and password, an nkey seed, a creds file",
            )),
        }
    }
}

/// TLS towards NATS: a CA to trust (implies TLS), a client certificate for servers that
/// verify clients, or TLS required with the system's roots.
#[derive(Debug, Clone, Default)]
pub struct NatsTls {
    pub ca: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub required: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error(
        "the NATS URL {0} carries credentials: give them as options (--nats-creds, or a user and password), not in the URL"
    )]
    SecretInUrl(String),
    #[error("bad NATS credentials: {0}")]
    BadCredentials(&'static str),
    #[error("agent id {0:?} is not a subject-safe token")]
    BadAgentId(String),
    #[error("cannot read the NATS credentials file {path}")]
    Creds {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad NATS URL in {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
}

/// The servers of a comma-separated list of NATS URLs (at least one): the client fails over
/// between them (and the servers the cluster announces).
pub fn server_addrs(urls: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let servers = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("{}: {e}", phonefarm_shared::redact_url(u)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err("no NATS server URL given".into());
    }
    Ok(servers)
}

/// The inbox prefix of an agent: replies to its requests come only there.
pub fn inbox_prefix(agent_id: &str) -> String {
    format!("_INBOX_{agent_id}")
}

/// The agent's NATS connection.
#[derive(Debug, Clone)]
pub struct Connection {
    pub client: async_nats::Client,
    /// Counts (re)connects: changes every time the connection comes (back) up, so reports
    /// the coordinator keeps (inventory) can be sent again.
    pub connects: tokio::sync::watch::Receiver<u64>,
}

/// Connects to NATS as `agent_id`. The first connect is retried in the background (the call
/// returns at once), and reconnects never give up.
pub async fn connect(
    url: &str,
    agent_id: &str,
    auth: &NatsAuth,
    tls: &NatsTls,
) -> Result<Connection, UplinkError> {
    if !phonefarm_shared::is_subject_token(agent_id) {
        return Err(UplinkError::BadAgentId(agent_id.to_string()));
    }
    if phonefarm_shared::url_has_secret(url) {
        return Err(UplinkError::SecretInUrl(phonefarm_shared::redact_url(url)));
    }
    let (connects_tx, connects) = tokio::sync::watch::channel(0u64);
    let connects_tx = std::sync::Arc::new(connects_tx);
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("phonefarm-agent {agent_id}"))
        .custom_inbox_prefix(inbox_prefix(agent_id))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| {
            // 100 ms, doubling, at most 2 s: an outage ends quickly once the server is back.
            let ms = 100u64.saturating_mul(1 << attempts.min(5));
            Duration::from_millis(ms.min(2000))
        })
        .event_callback(move |event| {
            let connects_tx = connects_tx.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("connected to NATS");
                        connects_tx.send_modify(|n| *n += 1);
                    }
                    async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            }
        });
    opts = match auth {
        NatsAuth::None => opts,
        NatsAuth::UserPassword { user, password } => {
            opts.user_and_password(user.clone(), password.clone())
        }
        NatsAuth::NkeySeed(seed) => opts.nkey(seed.clone()),
        NatsAuth::CredsFile(path) => {
            opts.credentials_file(path)
                .await
                .map_err(|source| UplinkError::Creds {
                    path: path.clone(),
                    source,
                })?
        }
    };
    if let Some(ca) = &tls.ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &tls.client_cert {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    if tls.required {
        opts = opts.require_tls(true);
    }
    let servers = server_addrs(url).map_err(|reason| UplinkError::BadUrl {
        url: phonefarm_shared::redact_url(url),
        reason,
    })?;
    let client = opts
        .connect(servers)
        .await
        .map_err(|source| UplinkError::Connect {
            url: phonefarm_shared::redact_url(url),
            source,
        })?;
    Ok(Connection { client, connects })
}

/// A JetStream context over the agent's connection.
pub fn jetstream(client: async_nats::Client) -> jetstream::Context {
    jetstream::new(client)
}

/// Publishes one message to JetStream under `msg_id` (so a retry is stored once) and waits up
/// to 5 s for the stream's ack; the error says why it is not stored.
pub(crate) async fn publish_stored(
    js: &jetstream::Context,
    subject: &str,
    payload: bytes::Bytes,
    msg_id: &str,
) -> Result<(), String> {
    let publish = async {
        js.send_publish(
            subject.to_string(),
            jetstream::message::PublishMessage::build()
                .payload(payload)
                .message_id(msg_id),
        )
        .await?
        .await?;
        Ok::<(), async_nats::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(5), publish).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no ack within 5 s".into()),
    }
}

/// Sleeps `delay` unless `shutdown` fires first (then false).
pub(crate) async fn pause(delay: Duration, shutdown: &tokio_util::sync::CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_servers() {
        let s = server_addrs("nats://a:4222, nats://b:4223,").expect("parses");
        assert_eq!(s.len(), 2);
        assert_eq!((s[1].host(), s[1].port()), ("b", 4223));
        assert!(server_addrs("").is_err());
        assert!(server_addrs("nats://a:x").is_err());
    }

    #[test]
    fn credentials_from_options() {
        let s = |v: &str| Some(v.to_string());
        assert!(matches!(
            NatsAuth::from_options(None, None, None, None),
            Ok(NatsAuth::None)
        ));
        let auth = NatsAuth::from_options(s("rack-1"), s("pw"), None, None).unwrap();
        assert!(matches!(&auth, NatsAuth::UserPassword { user, .. } if user == "rack-1"));
        assert!(
            !format!("{auth:?}").contains("pw"),
            "secrets are not printed"
        );
        assert!(matches!(
            NatsAuth::from_options(None, None, s("SUAB"), None),
            Ok(NatsAuth::NkeySeed(_))
        ));
        assert!(NatsAuth::from_options(s("rack-1"), None, None, None).is_err());
        assert!(NatsAuth::from_options(s("u"), s("p"), s("SUAB"), None).is_err());
        assert_eq!(inbox_prefix("rack-1"), "_INBOX_rack-1");
    }

    #[tokio::test]
    async fn credentials_in_the_url_are_refused_and_not_repeated() {
        let e = connect(
            "nats://rack-1:s3cret@127.0.0.1:4222",
            "rack-1",
            &NatsAuth::None,
            &NatsTls::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, UplinkError::SecretInUrl(_)));
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
