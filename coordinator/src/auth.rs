//! Bearer-token authentication: the `INGEST_SECRET` compatibility mode and hashed API keys with
//! a role and, for integrators, a bound `requested_by.system`.
//!
//! Tokens are cached for 5 s. Answers: 401, 403 `system_mismatch`, 500 `auth_not_configured`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::config::Role;
use crate::db;
use crate::error::ApiError;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    /// The only `requested_by.system` this caller may act as and see; `None` means any.
    pub system: Option<String>,
    /// The API key's name (`ingest-secret` for the compatibility secret): who did it, in
    /// records such as a phone's moves.
    pub name: String,
}

impl Caller {
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "insufficient_role",
                format!("this endpoint needs role {} or higher", role.as_str()),
            ))
        }
    }

    /// 403 `system_mismatch` when a system-bound caller acts as another system.
    pub fn may_act_as(&self, system: &str) -> Result<(), ApiError> {
        match &self.system {
            Some(own) if own != system => Err(ApiError::forbidden(
                "system_mismatch",
                "this API key may not act for that requested_by.system",
            )),
            _ => Ok(()),
        }
    }

    /// Whether the caller may see a process of `system` (otherwise it is a 404, so ids do not
    /// leak).
    pub fn sees(&self, system: &str) -> bool {
        self.system.as_deref().is_none_or(|own| own == system)
    }
}

/// How long a verified key is trusted without asking Postgres again. Revocation takes effect
/// within this time on every replica.
const CACHE_TTL: Duration = Duration::from_secs(5);

pub struct Auth {
    ingest_secret: Option<SecretString>,
    cache: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("ingest_secret", &self.ingest_secret.is_some())
            .finish()
    }
}

/// A new API key: `pf_` and 32 random bytes, base64url.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    format!(
        "pf_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub fn key_prefix(key: &str) -> String {
    key.chars().take(10).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Compare digests so the length of the secret does not leak either.
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Auth {
    pub fn new(ingest_secret: Option<SecretString>) -> Self {
        let ingest_secret = ingest_secret.filter(|s| !s.expose_secret().is_empty());
        Self {
            ingest_secret,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves the `Authorization` header into a caller: 401 for a missing or wrong token,
    /// 500 `auth_not_configured` when there is neither a secret nor any key at all.
    pub async fn authenticate(
        &self,
        db: &PgPool,
        header: Option<&str>,
    ) -> Result<Caller, ApiError> {
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if let Some(token) = token {
            if let Some(secret) = &self.ingest_secret
                && constant_time_eq(token.as_bytes(), secret.expose_secret().as_bytes())
            {
                return Ok(Caller {
                    role: Role::Admin,
                    system: None,
                    name: "ingest-secret".into(),
                });
            }
            let hash = hash_key(token);
            if let Some(caller) = self.cached(&hash) {
                return Ok(caller);
            }
            if let Some((role, system, name)) = db::api_keys::find_active(db, &hash).await? {
                let role = Role::parse(&role).ok_or_else(ApiError::internal)?;
                let caller = Caller { role, system, name };
                self.remember(hash, caller.clone());
                return Ok(caller);
            }
        }
        if self.ingest_secret.is_none() && !db::api_keys::any_active(db).await? {
            return Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "no INGEST_SECRET and no API key is configured",
                vec!["auth_not_configured".into()],
            ));
        }
        Err(ApiError::unauthorized())
    }

    fn cached(&self, hash: &[u8; 32]) -> Option<Caller> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(hash)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(c, _)| c.clone())
    }

    fn remember(&self, hash: [u8; 32], caller: Caller) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            }
            cache.insert(hash, (caller, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hash_stably() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert!(a.starts_with("pf_") && a.len() == 46);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_ne!(hash_key(&a), hash_key(&b));
    }

    #[test]
    fn roles_are_ordered() {
        let op = Caller {
            role: Role::Operator,
            system: None,
            name: "op".into(),
        };
        assert!(op.require(Role::Integrator).is_ok());
        assert!(op.require(Role::Operator).is_ok());
        assert_eq!(op.require(Role::Admin).unwrap_err().status, 403);
    }

    #[test]
    fn system_binding() {
        let c = Caller {
            role: Role::Integrator,
            system: Some("x".into()),
            name: "int".into(),
        };
        assert!(c.may_act_as("x").is_ok());
        assert_eq!(
            c.may_act_as("y").unwrap_err().errors,
            vec!["system_mismatch"]
        );
        assert!(c.sees("x") && !c.sees("y"));
        let any = Caller {
            role: Role::Integrator,
            system: None,
            name: "any".into(),
        };
        assert!(any.may_act_as("y").is_ok() && any.sees("y"));
    }

    #[test]
    fn secret_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
