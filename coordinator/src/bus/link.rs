//! How the coordinator reaches NATS: server URLs, credentials given as their own options (a
//! `.creds` file, a token, or a user and password; never inside the URL) and TLS (a CA to
//! trust, a client certificate). Secrets never reach a log line or an error message.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};

/// The coordinator's NATS credentials.
#[derive(Clone, Default)]
pub enum NatsCredentials {
    /// None (a local server without authentication).
    #[default]
    None,
    /// A `.creds` file (user JWT + nkey seed), e.g. from `nats init`.
    CredsFile(PathBuf),
    Token(SecretString),
    UserPassword {
        user: String,
        password: SecretString,
    },
}

impl std::fmt::Debug for NatsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsCredentials::None => write!(f, "None"),
            NatsCredentials::CredsFile(p) => write!(f, "CredsFile({})", p.display()),
            NatsCredentials::Token(_) => write!(f, "Token(***)"),
            NatsCredentials::UserPassword { user, .. } => write!(f, "UserPassword({user}, ***)"),
        }
    }
}

/// TLS towards NATS. With a CA (or `required`), the connection must be TLS.
#[derive(Debug, Clone, Default)]
pub struct NatsTls {
    /// PEM CA certificates to trust (besides the system's roots).
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub required: bool,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct NatsLink {
    /// One or more server URLs, comma-separated (`nats://` or `tls://`).
    pub url: String,
    pub credentials: NatsCredentials,
    pub tls: NatsTls,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(
        "the NATS URL {0} carries credentials: give them as options (a creds file, a token, or a user and password), not in the URL"
    )]
    SecretInUrl(String),
    #[error("cannot read the NATS credentials file {}: {source}", path.display())]
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

impl NatsLink {
    /// A link without credentials or TLS options.
    pub fn plain(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            credentials: NatsCredentials::None,
            tls: NatsTls::default(),
        }
    }

    /// The URL as it may be logged.
    pub fn display_url(&self) -> String {
        phonefarm_shared::redact_url(&self.url)
    }

    /// Connect options with these credentials and TLS settings (the caller adds its own).
    pub async fn options(&self) -> Result<async_nats::ConnectOptions, LinkError> {
        self.options_as(&self.credentials).await
    }

    /// Connect options with other credentials (the system user pushing account JWTs) over the
    /// same servers and TLS settings.
    pub async fn options_as(
        &self,
        credentials: &NatsCredentials,
    ) -> Result<async_nats::ConnectOptions, LinkError> {
        if phonefarm_shared::url_has_secret(&self.url) {
            return Err(LinkError::SecretInUrl(self.display_url()));
        }
        let mut opts = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5));
        opts = match credentials {
            NatsCredentials::None => opts,
            NatsCredentials::CredsFile(path) => {
                opts.credentials_file(path)
                    .await
                    .map_err(|source| LinkError::Creds {
                        path: path.clone(),
                        source,
                    })?
            }
            NatsCredentials::Token(t) => opts.token(t.expose_secret().to_string()),
            NatsCredentials::UserPassword { user, password } => {
                opts.user_and_password(user.clone(), password.expose_secret().to_string())
            }
        };
        if let Some(ca) = &self.tls.ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &self.tls.client_cert {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        if self.tls.required {
            opts = opts.require_tls(true);
        }
        Ok(opts)
    }

    /// Connects with `opts` (from [`NatsLink::options`]).
    pub async fn connect(
        &self,
        opts: async_nats::ConnectOptions,
    ) -> Result<async_nats::Client, LinkError> {
        let servers = server_addrs(&self.url).map_err(|reason| LinkError::BadUrl {
            url: self.display_url(),
            reason,
        })?;
        opts.connect(servers)
            .await
            .map_err(|source| LinkError::Connect {
                url: self.display_url(),
                source,
            })
    }
}

/// The servers of a comma-separated list of NATS URLs (at least one). The client tries them
/// in turn and, once connected, fails over to any of them (and to the servers the cluster
/// announces).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_servers() {
        let s = server_addrs("nats://a:4222, nats://b:4223,tls://c:4224").expect("parses");
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].host(), "b");
        assert_eq!(s[1].port(), 4223);
        assert!(s[2].tls_required());
        assert_eq!(server_addrs("nats://a:4222").expect("one").len(), 1);
        assert!(server_addrs(" , ").is_err());
        let err = server_addrs("nats://a:4222,nats://b:notaport").expect_err("bad port");
        assert!(err.contains("b:notaport"), "{err}");
    }
}
