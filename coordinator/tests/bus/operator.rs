//! A nats-server in operator mode, started from the production configuration
//! (`deploy/nats/nats-server.conf`, its paths moved into a temp dir, `testkit::operator`) with
//! a trust chain made by `Authority::init` and a test CA (rcgen) for TLS: the server's
//! certificate, and a client certificate for servers that verify clients.

use std::path::PathBuf;
use std::time::Duration;

use phonefarm_coordinator::bus::{NatsCredentials, NatsLink, NatsTls};
use phonefarm_coordinator::fleet_auth::Authority;

pub use phonefarm_testkit::operator::TestCa;

use phonefarm_testkit::NatsServer;

/// nats-server in operator mode with TLS, and the trust chain it trusts.
pub struct OperatorNats {
    pub nats: NatsServer,
    pub authority: Authority,
    pub ca: TestCa,
    /// Holds the configuration, certificates and the resolver's directory.
    _root: tempfile::TempDir,
}

impl OperatorNats {
    pub async fn start() -> OperatorNats {
        Self::start_with(false).await
    }

    /// `verify_clients`: the server asks every client for a certificate of the test CA.
    pub async fn start_with(verify_clients: bool) -> OperatorNats {
        let root = tempfile::tempdir().unwrap();
        let authority = Authority::init(
            &root.path().join("auth"),
            time::OffsetDateTime::now_utc().unix_timestamp(),
        )
        .expect("nats init");
        let (conf, ca) = phonefarm_testkit::operator::prepare(
            root.path(),
            &root.path().join("auth/server/auth.conf"),
            verify_clients,
        );
        let nats = NatsServer::start_with_config(Some(conf));
        OperatorNats {
            nats,
            authority,
            ca,
            _root: root,
        }
    }

    pub fn url(&self) -> String {
        self.nats.url()
    }

    /// A link over TLS (the test CA) with `credentials`.
    pub fn link(&self, credentials: NatsCredentials) -> NatsLink {
        NatsLink {
            url: self.url(),
            credentials,
            tls: NatsTls {
                ca: Some(self.ca.ca.clone()),
                client_cert: None,
                required: true,
            },
        }
    }

    /// The coordinator's creds file from `nats init`.
    pub fn coordinator_creds(&self) -> PathBuf {
        self.authority.dir.join("coordinator.creds")
    }

    /// Connects over TLS with a `.creds` text as an agent would (its own inbox prefix).
    pub async fn connect_agent(
        &self,
        creds: &str,
        agent_id: &str,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        async_nats::ConnectOptions::with_credentials(creds)
            .expect("a creds text")
            .add_root_certificates(self.ca.ca.clone())
            .require_tls(true)
            .custom_inbox_prefix(format!("_INBOX_{agent_id}"))
            .connection_timeout(Duration::from_secs(5))
            .connect(self.url())
            .await
    }

    /// Connects as the coordinator (no restrictions).
    pub async fn connect_coordinator(&self) -> async_nats::Client {
        let link = self.link(NatsCredentials::CredsFile(self.coordinator_creds()));
        link.connect(link.options().await.unwrap())
            .await
            .expect("the coordinator connects")
    }
}
