//! nats-server in operator mode for tests: a test CA (rcgen) for TLS, and the production
//! configuration (`deploy/nats/nats-server.conf`) with its paths moved into a temp dir.

use std::path::{Path, PathBuf};

/// The test CA and the certificates it signed (PEM files).
pub struct TestCa {
    pub ca: PathBuf,
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
        write("server.pem", server_cert.pem());
        write("server-key.pem", server_key.serialize_pem());
        TestCa {
            ca: write("ca.pem", ca_cert.pem()),
            client_cert: write("client.pem", client_cert.pem()),
            client_key: write("client-key.pem", client_key.serialize_pem()),
        }
    }
}

/// The production configuration with its paths under `root` (and without its JetStream
/// `store_dir`: the test server gets its store with `-sd`, which may not be given twice).
pub fn production_config(root: &Path, verify_clients: bool) -> String {
    let conf = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nats/nats-server.conf"),
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

/// Lays out `root` for the production configuration: `etc/tls` (the test CA's certificates),
/// `etc/phonefarm-auth.conf` (a copy of `auth_conf`, from `nats init`), `var/`, and returns
/// the configuration file (`etc/nats-server.conf`) and the CA.
pub fn prepare(root: &Path, auth_conf: &Path, verify_clients: bool) -> (PathBuf, TestCa) {
    let etc = root.join("etc");
    let ca = TestCa::make(&etc.join("tls"));
    std::fs::create_dir_all(root.join("var")).unwrap();
    std::fs::copy(auth_conf, etc.join("phonefarm-auth.conf")).unwrap();
    let conf = etc.join("nats-server.conf");
    std::fs::write(&conf, production_config(root, verify_clients)).unwrap();
    (conf, ca)
}
