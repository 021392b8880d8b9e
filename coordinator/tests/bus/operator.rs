//! A nats-server in operator mode, started from the production configuration
//! (`deploy/nats/nats-server.conf`, its `/etc/nats` and `/var/lib/nats` paths moved into a temp
//! dir) with a trust chain made by `Authority::init` and a test CA (rcgen) for TLS: the server's
//! certificate, and a client certificate for servers that verify clients.

use std::path::{Path, PathBuf};
use std::time::Duration;

use phonefarm_coordinator::bus::{NatsCredentials, NatsLink, NatsTls};
use phonefarm_coordinator::fleet_auth::Authority;

use crate::support::NatsServer;

/// The test CA and the certificates it signed (PEM files).
pub struct TestCa {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestCa {
    pub fn make(dir: &Path) -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "phonefarm test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut server =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        server
            .distinguished_name
            .push(DnType::CommonName, "nats test server");
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "phonefarm test client");
        let client_cert = client.signed_by(&client_key, &issuer).unwrap();

        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        TestCa {
            ca: write("ca.pem", ca_cert.pem()),
            server_cert: write("server.pem", server_cert.pem()),
            server_key: write("server-key.pem", server_key.serialize_pem()),
            client_cert: write("client.pem", client_cert.pem()),
            client_key: write("client-key.pem", client_key.serialize_pem()),
        }
    }
}

/// The production configuration with its paths under `root` (and without its JetStream
/// `store_dir`: the test server gets its store with `-sd`, which may not be given twice).
pub fn production_config(root: &Path, verify_clients: bool) -> String {
    let conf = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/nats-server.conf"),
    )
    .expect("deploy/nats/nats-server.conf");
    let mut conf: String = conf
        .replace("/etc/nats/", &format!("{}/etc/", root.display()))
        .replace("/var/lib/nats/", &format!("{}/var/", root.display()))
        .lines()
        .filter(|l| !l.trim_start().starts_with("store_dir:"))
        .collect::<Vec<_>>()
        .join("\n");
    if verify_clients {
        assert!(conf.contains("# verify: true"));
        conf = conf.replace("# verify: true", "verify: true");
    }
    conf
}

/// nats-server in operator mode with TLS, and the trust chain it trusts.
pub struct OperatorNats {
    pub nats: NatsServer,
    pub authority: Authority,
    pub ca: TestCa,
    pub root: tempfile::TempDir,
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
        let etc = root.path().join("etc");
        let ca = TestCa::make(&etc.join("tls"));
        std::fs::create_dir_all(root.path().join("var")).unwrap();
        std::fs::copy(
            root.path().join("auth/server/auth.conf"),
            etc.join("phonefarm-auth.conf"),
        )
        .unwrap();
        let conf = etc.join("nats-server.conf");
        std::fs::write(&conf, production_config(root.path(), verify_clients)).unwrap();
        let nats = NatsServer::start_with(Some(conf)).await;
        OperatorNats {
            nats,
            authority,
            ca,
            root,
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
