//! The NATS trust chain of one installation and the keys the coordinator keeps.
//!
//! ```text
//! operator O (identity key offline)  --signs-->  operator JWT (lists its signing key, the system account)
//!   operator signing key (coordinator) --signs--> account JWTs: SYS, PHONEFARM (limits, signing keys, revocations)
//!     PHONEFARM account signing key (coordinator) --signs--> user JWTs: coordinator, each agent
//!     SYS account (identity key offline)           --signs--> the coordinator's system user (pushes account JWTs)
//! ```
//!
//! [`Authority::init`] makes all of it in a directory (`nats init`); [`Authority::load`] reads
//! what the coordinator needs from it:
//!
//! | file | what | secret |
//! |---|---|---|
//! | `authority.json` | public keys: operator, system account, account, its signing keys | no |
//! | `operator-signing.nk` | the operator signing key's seed: re-signs the account JWT (revocations) | yes |
//! | `account-signing.nk` | the account signing key's seed: signs agents' user JWTs | yes |
//! | `system.creds` | a system-account user: pushes account JWTs to the resolver | yes |
//! | `coordinator.creds` | the coordinator's own NATS user (no restrictions) | yes |
//! | `server/auth.conf` | for every nats-server: operator JWT, system account, preloaded account JWTs | no |
//! | `offline/*.nk` | operator, account and system account identity seeds: move them off the host | yes |

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use nkeys::KeyPair;
use serde::{Deserialize, Serialize};

use super::jwt::{self, Account, AccountLimits, Claims, JwtError, Operator, Permission, User};

/// The account agents and coordinators share.
pub const ACCOUNT_NAME: &str = "PHONEFARM";
const SYSTEM_ACCOUNT_NAME: &str = "SYS";
const AUTHORITY_FILE: &str = "authority.json";
const OPERATOR_SIGNING: &str = "operator-signing.nk";
const ACCOUNT_SIGNING: &str = "account-signing.nk";
pub const SYSTEM_CREDS: &str = "system.creds";
pub const COORDINATOR_CREDS: &str = "coordinator.creds";
pub const SERVER_CONF: &str = "server/auth.conf";

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} exists already: this directory holds a trust chain (not overwritten)", .0.display())]
    Exists(PathBuf),
    #[error("{} is not a valid {what}", path.display())]
    BadFile { path: PathBuf, what: &'static str },
    #[error("the account signing key in {} is not listed in {AUTHORITY_FILE}", .0.display())]
    UnlistedSigningKey(PathBuf),
    #[error("{0} is not one of the account's signing keys")]
    UnknownSigningKey(String),
    #[error("{0} signs new users: rotate to a new key before retiring it")]
    CurrentSigningKey(String),
    #[error(transparent)]
    Jwt(#[from] JwtError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuthorityError + '_ {
    move |source| AuthorityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `text` to a new file readable by its owner only.
pub fn write_secret(path: &Path, text: &str) -> Result<(), AuthorityError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                AuthorityError::Exists(path.to_path_buf())
            } else {
                io(path)(e)
            }
        })?;
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Replaces a secret file (a new file renamed over it).
fn replace_secret(path: &Path, text: &str) -> Result<(), AuthorityError> {
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    write_secret(&tmp, text)?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn write_public(path: &Path, text: &str) -> Result<(), AuthorityError> {
    std::fs::write(path, text).map_err(io(path))
}

fn mkdir(path: &Path, mode: u32) -> Result<(), AuthorityError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(io(path))
}

fn seed_of(kp: &KeyPair) -> Result<String, AuthorityError> {
    kp.seed()
        .map_err(|e| AuthorityError::Jwt(JwtError::Sign(e.to_string())))
}

fn read_seed(path: &Path) -> Result<KeyPair, AuthorityError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    KeyPair::from_seed(text.trim()).map_err(|_| AuthorityError::BadFile {
        path: path.to_path_buf(),
        what: "nkey seed",
    })
}

/// The public facts of the trust chain (`authority.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorityFile {
    pub operator: String,
    pub system_account: String,
    pub account: String,
    /// Public keys allowed to sign the account's users; the first is the current one.
    pub account_signing_keys: Vec<String>,
}

/// A user JWT just issued, with the seed of its new key (shown once, never stored).
pub struct Issued {
    pub user_key: String,
    pub jwt: String,
    pub seed: String,
    pub issued_at: i64,
    pub expires_at: Option<i64>,
}

impl Issued {
    /// The `.creds` file of this user.
    pub fn creds(&self) -> String {
        jwt::creds_file(&self.jwt, &self.seed)
    }
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("user_key", &self.user_key)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What the coordinator needs to issue and revoke agents' credentials.
pub struct Authority {
    pub dir: PathBuf,
    pub public: AuthorityFile,
    operator_signing: KeyPair,
    account_signing: KeyPair,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("dir", &self.dir)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn user_claims(
    name: &str,
    user: &KeyPair,
    account: &str,
    publish: Permission,
    subscribe: Permission,
    now: i64,
    exp: Option<i64>,
) -> Claims<User> {
    Claims {
        exp,
        jti: String::new(),
        iat: now,
        iss: String::new(),
        name: name.into(),
        sub: user.public_key(),
        nats: User {
            publish,
            subscribe,
            subs: -1,
            data: -1,
            payload: -1,
            issuer_account: account.into(),
            kind: "user".into(),
            version: 2,
        },
    }
}

fn account_claims(
    name: &str,
    sub: &str,
    jetstream: bool,
    signing_keys: Vec<String>,
    revocations: BTreeMap<String, i64>,
    now: i64,
) -> Claims<Account> {
    Claims {
        exp: None,
        jti: String::new(),
        iat: now,
        iss: String::new(),
        name: name.into(),
        sub: sub.into(),
        nats: Account {
            limits: AccountLimits::unlimited(jetstream),
            signing_keys,
            revocations,
            kind: "account".into(),
            version: 2,
        },
    }
}

impl Authority {
    /// Makes a new trust chain in `dir` (created 0700; refuses a directory that has one).
    pub fn init(dir: &Path, now: i64) -> Result<Authority, AuthorityError> {
        if dir.join(AUTHORITY_FILE).exists() {
            return Err(AuthorityError::Exists(dir.join(AUTHORITY_FILE)));
        }
        mkdir(dir, 0o700)?;
        mkdir(&dir.join("offline"), 0o700)?;
        mkdir(&dir.join("server"), 0o755)?;
        let operator = KeyPair::new_operator();
        let operator_signing = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let account = KeyPair::new_account();
        let account_signing = KeyPair::new_account();

        let mut op = Claims {
            exp: None,
            jti: String::new(),
            iat: now,
            iss: String::new(),
            name: "phonefarm".into(),
            sub: operator.public_key(),
            nats: Operator {
                signing_keys: vec![operator_signing.public_key()],
                system_account: system.public_key(),
                kind: "operator".into(),
                version: 2,
            },
        };
        let operator_jwt = jwt::encode(&mut op, &operator)?;
        let mut sys = account_claims(
            SYSTEM_ACCOUNT_NAME,
            &system.public_key(),
            false,
            Vec::new(),
            BTreeMap::new(),
            now,
        );
        let system_jwt = jwt::encode(&mut sys, &operator_signing)?;

        let public = AuthorityFile {
            operator: operator.public_key(),
            system_account: system.public_key(),
            account: account.public_key(),
            account_signing_keys: vec![account_signing.public_key()],
        };
        let authority = Authority {
            dir: dir.to_path_buf(),
            public,
            operator_signing,
            account_signing,
        };
        // Issued a second before `now`: nats-server keeps a stored account JWT over a preloaded
        // one only when the stored one was issued strictly later, so a revocation pushed in the
        // same second as this init would otherwise be replaced by this preload (which revokes
        // nothing) at the server's next restart.
        let account_jwt = authority.account_jwt(&BTreeMap::new(), preload_issued_at(now))?;

        // The system user is signed by the system account itself (it has no signing key).
        let sys_user = KeyPair::new_user();
        let mut sys_user_claims = user_claims(
            "phonefarm-coordinator-system",
            &sys_user,
            "",
            Permission::default(),
            Permission::default(),
            now,
            None,
        );
        let sys_user_jwt = jwt::encode(&mut sys_user_claims, &system)?;
        let coordinator = authority.issue(
            "phonefarm-coordinator",
            Permission::default(),
            Permission::default(),
            now,
            None,
        )?;

        write_secret(&dir.join("offline/operator.nk"), &seed_of(&operator)?)?;
        write_secret(&dir.join("offline/account.nk"), &seed_of(&account)?)?;
        write_secret(&dir.join("offline/system-account.nk"), &seed_of(&system)?)?;
        write_secret(
            &dir.join(OPERATOR_SIGNING),
            &seed_of(&authority.operator_signing)?,
        )?;
        write_secret(
            &dir.join(ACCOUNT_SIGNING),
            &seed_of(&authority.account_signing)?,
        )?;
        write_secret(
            &dir.join(SYSTEM_CREDS),
            &jwt::creds_file(&sys_user_jwt, &seed_of(&sys_user)?),
        )?;
        write_secret(&dir.join(COORDINATOR_CREDS), &coordinator.creds())?;
        write_public(&dir.join("server/operator.jwt"), &operator_jwt)?;
        write_public(
            &dir.join(SERVER_CONF),
            &server_conf(&authority.public, &operator_jwt, &system_jwt, &account_jwt),
        )?;
        let json = serde_json::to_string_pretty(&authority.public).unwrap_or_default();
        write_public(&dir.join(AUTHORITY_FILE), &(json + "\n"))?;
        Ok(authority)
    }

    /// Reads the coordinator's part of the trust chain from `dir`.
    pub fn load(dir: &Path) -> Result<Authority, AuthorityError> {
        let path = dir.join(AUTHORITY_FILE);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let public: AuthorityFile =
            serde_json::from_str(&text).map_err(|_| AuthorityError::BadFile {
                path: path.clone(),
                what: "authority file",
            })?;
        let operator_signing = read_seed(&dir.join(OPERATOR_SIGNING))?;
        let account_signing = read_seed(&dir.join(ACCOUNT_SIGNING))?;
        if !public
            .account_signing_keys
            .contains(&account_signing.public_key())
        {
            return Err(AuthorityError::UnlistedSigningKey(
                dir.join(ACCOUNT_SIGNING),
            ));
        }
        Ok(Authority {
            dir: dir.to_path_buf(),
            public,
            operator_signing,
            account_signing,
        })
    }

    /// The account JWT with these revocations (user key → Unix seconds), signed now.
    pub fn account_jwt(
        &self,
        revocations: &BTreeMap<String, i64>,
        now: i64,
    ) -> Result<String, AuthorityError> {
        let mut claims = account_claims(
            ACCOUNT_NAME,
            &self.public.account,
            true,
            self.public.account_signing_keys.clone(),
            revocations.clone(),
            now,
        );
        Ok(jwt::encode(&mut claims, &self.operator_signing)?)
    }

    /// Issues a user of the account with a new key.
    pub fn issue(
        &self,
        name: &str,
        publish: Permission,
        subscribe: Permission,
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<Issued, AuthorityError> {
        let user = KeyPair::new_user();
        let mut claims = user_claims(
            name,
            &user,
            &self.public.account,
            publish,
            subscribe,
            now,
            expires_at,
        );
        let token = jwt::encode(&mut claims, &self.account_signing)?;
        Ok(Issued {
            user_key: user.public_key(),
            jwt: token,
            seed: seed_of(&user)?,
            issued_at: now,
            expires_at,
        })
    }

    /// Makes a new account signing key, the one new users are signed with from now on; the
    /// previous ones stay listed (their users keep working) until retired. Returns its public
    /// key. Push the account JWT next, then enroll agents again (`--replace`).
    pub fn rotate_account_signing_key(&mut self) -> Result<String, AuthorityError> {
        let key = KeyPair::new_account();
        let mut public = self.public.clone();
        public.account_signing_keys.insert(0, key.public_key());
        replace_secret(&self.dir.join(ACCOUNT_SIGNING), &seed_of(&key)?)?;
        self.save(public)?;
        self.account_signing = key;
        Ok(self.signing_key())
    }

    /// Drops `key` from the account's signing keys: once the account JWT is pushed, users it
    /// signed are refused.
    pub fn retire_account_signing_key(&mut self, key: &str) -> Result<(), AuthorityError> {
        if key == self.signing_key() {
            return Err(AuthorityError::CurrentSigningKey(key.into()));
        }
        let mut public = self.public.clone();
        let before = public.account_signing_keys.len();
        public.account_signing_keys.retain(|k| k != key);
        if public.account_signing_keys.len() == before {
            return Err(AuthorityError::UnknownSigningKey(key.into()));
        }
        self.save(public)
    }

    fn save(&mut self, public: AuthorityFile) -> Result<(), AuthorityError> {
        let json = serde_json::to_string_pretty(&public).unwrap_or_default();
        let path = self.dir.join(AUTHORITY_FILE);
        let tmp = self.dir.join(format!("{AUTHORITY_FILE}.new"));
        std::fs::write(&tmp, json + "\n").map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        self.public = public;
        Ok(())
    }

    /// The public key signing new users.
    pub fn signing_key(&self) -> String {
        self.account_signing.public_key()
    }

    /// The system user's creds file (pushes account JWTs).
    pub fn system_creds(&self) -> PathBuf {
        self.dir.join(SYSTEM_CREDS)
    }
}

/// When the preloaded account JWT of a chain made at `now` says it was issued: before any JWT
/// pushed after the init, even in the same second.
fn preload_issued_at(now: i64) -> i64 {
    now - 1
}

/// The part of every nats-server's configuration that trusts this operator: the operator JWT
/// inline, the system account, and the account JWTs the resolver starts from (a newer pushed
/// JWT, kept in the resolver's directory, wins over these).
fn server_conf(
    public: &AuthorityFile,
    operator_jwt: &str,
    system_jwt: &str,
    account_jwt: &str,
) -> String {
    format!(
        "# Written by `phonefarm-coordinator nats init`: the trust chain of this installation.\n\
         # Include it from every nats-server's configuration (with a `resolver {{ type: full … }}`\n\
         # block there); it holds no secret.\n\
         operator: \"{operator_jwt}\"\n\
         system_account: {sys}\n\
         resolver_preload: {{\n  {sys}: \"{system_jwt}\"\n  {acc}: \"{account_jwt}\"\n}}\n",
        sys = public.system_account,
        acc = public.account,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nats-server replaces a stored account JWT by the preloaded one at start unless the stored
    /// one was issued strictly later: a revocation pushed in the init's own second must win.
    #[test]
    fn a_jwt_pushed_in_the_init_s_second_is_newer_than_the_preload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nats");
        let a = Authority::init(&path, 1_700_000_000).unwrap();
        let conf = std::fs::read_to_string(path.join(SERVER_CONF)).unwrap();
        let line = conf
            .lines()
            .find(|l| {
                l.trim_start()
                    .starts_with(&format!("{}:", a.public.account))
            })
            .expect("the account's preload line");
        let token = line.split('"').nth(1).expect("a quoted JWT");
        let preload: Claims<Account> = jwt::decode(token).unwrap();
        let pushed: Claims<Account> =
            jwt::decode(&a.account_jwt(&BTreeMap::new(), 1_700_000_000).unwrap()).unwrap();
        assert!(
            pushed.iat > preload.iat,
            "pushed at {} vs preload at {}",
            pushed.iat,
            preload.iat
        );
    }

    #[test]
    fn init_writes_a_chain_that_loads_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nats");
        let a = Authority::init(&path, 1_700_000_000).unwrap();
        assert!(matches!(
            Authority::init(&path, 1_700_000_001),
            Err(AuthorityError::Exists(_))
        ));
        let b = Authority::load(&path).unwrap();
        assert_eq!(a.public, b.public);
        let mode = |f: &str| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(path.join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        for secret in [
            OPERATOR_SIGNING,
            ACCOUNT_SIGNING,
            SYSTEM_CREDS,
            COORDINATOR_CREDS,
            "offline/operator.nk",
        ] {
            assert_eq!(mode(secret), 0o600, "{secret}");
        }
        assert_eq!(mode("."), 0o700);

        let mut revoked = BTreeMap::new();
        revoked.insert("UABC".to_string(), 1_700_000_100);
        let acc: Claims<Account> =
            jwt::decode(&b.account_jwt(&revoked, 1_700_000_200).unwrap()).unwrap();
        assert_eq!(acc.sub, b.public.account);
        assert_eq!(acc.nats.revocations, revoked);
        assert_eq!(acc.nats.signing_keys, [b.signing_key()]);
        let op: Claims<Operator> = jwt::decode(
            std::fs::read_to_string(path.join("server/operator.jwt"))
                .unwrap()
                .trim(),
        )
        .unwrap();
        assert_eq!(op.sub, b.public.operator);
        assert_eq!(
            op.nats.signing_keys,
            std::slice::from_ref(&acc.iss),
            "operator signs the account"
        );

        let issued = b
            .issue(
                "rack-1",
                Permission::default(),
                Permission::default(),
                5,
                Some(9),
            )
            .unwrap();
        let user: Claims<User> = jwt::decode(&issued.jwt).unwrap();
        assert_eq!(user.nats.issuer_account, b.public.account);
        assert_eq!((user.iat, user.exp), (5, Some(9)));
        assert!(!format!("{issued:?}").contains(&issued.seed));
        let conf = std::fs::read_to_string(path.join(SERVER_CONF)).unwrap();
        assert!(conf.contains(&b.public.system_account));
        for secret in [
            OPERATOR_SIGNING,
            ACCOUNT_SIGNING,
            "offline/operator.nk",
            "offline/account.nk",
        ] {
            let seed = std::fs::read_to_string(path.join(secret)).unwrap();
            assert!(
                !conf.contains(seed.trim()),
                "{secret} is in the server's config"
            );
        }
    }
}
