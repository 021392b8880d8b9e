//! NATS decentralized-auth JWTs (version 2 claims) signed with ed25519 nkeys, and `.creds`
//! files.
//!
//! A JWT is `base64url(header) . base64url(claims) . base64url(signature)`, unpadded; the
//! header is `{"typ":"JWT","alg":"ed25519-nkey"}` and the signature is the issuer's ed25519
//! signature of the first two parts. `jti` is the base32 (unpadded) SHA-512/256 of the claims
//! serialized with an empty `jti`, as the NATS tools make it; nats-server uses it to tell two
//! versions of one account JWT apart. `iss` is the signer's public nkey, `sub` the subject's.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

const HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("a JWT has three dot-separated parts")]
    Shape,
    #[error("the JWT is not base64url or JSON")]
    Encoding,
    #[error("the JWT's signature does not verify against its issuer {0}")]
    Signature(String),
    #[error("signing: {0}")]
    Sign(String),
    #[error("the creds file lacks its {0}")]
    Creds(&'static str),
}

/// The claims every NATS JWT carries around its type-specific `nats` part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims<T> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default)]
    pub jti: String,
    pub iat: i64,
    pub iss: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub sub: String,
    pub nats: T,
}

/// Publish or subscribe permissions: subjects allowed and denied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Permission {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// The `nats` part of an operator JWT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operator {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system_account: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u8,
}

/// Account limits; `-1` is unlimited. Non-zero storage limits enable JetStream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountLimits {
    pub subs: i64,
    pub data: i64,
    pub payload: i64,
    pub imports: i64,
    pub exports: i64,
    pub wildcards: bool,
    pub conn: i64,
    pub leaf: i64,
    pub mem_storage: i64,
    pub disk_storage: i64,
    pub streams: i64,
    pub consumer: i64,
}

impl AccountLimits {
    /// No limits; JetStream enabled or not.
    pub fn unlimited(jetstream: bool) -> Self {
        let js = if jetstream { -1 } else { 0 };
        Self {
            subs: -1,
            data: -1,
            payload: -1,
            imports: -1,
            exports: -1,
            wildcards: true,
            conn: -1,
            leaf: -1,
            mem_storage: js,
            disk_storage: js,
            streams: js,
            consumer: js,
        }
    }
}

/// The `nats` part of an account JWT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub limits: AccountLimits,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<String>,
    /// User public key → Unix seconds: a user JWT of that key issued at or before is refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revocations: BTreeMap<String, i64>,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u8,
}

/// The `nats` part of a user JWT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    #[serde(rename = "pub", default)]
    pub publish: Permission,
    #[serde(rename = "sub", default)]
    pub subscribe: Permission,
    pub subs: i64,
    pub data: i64,
    pub payload: i64,
    /// The account, when the issuer is one of its signing keys.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer_account: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: u8,
}

fn jti<T: Serialize>(claims: &Claims<T>) -> Result<String, JwtError> {
    let json = serde_json::to_vec(claims).map_err(|_| JwtError::Encoding)?;
    let digest = sha2::Sha512_256::digest(&json);
    Ok(data_encoding::BASE32_NOPAD.encode(&digest))
}

/// Signs `claims` as `signer` (sets `iss` and `jti`) and returns the JWT.
pub fn encode<T: Serialize>(claims: &mut Claims<T>, signer: &KeyPair) -> Result<String, JwtError> {
    claims.iss = signer.public_key();
    claims.jti = String::new();
    claims.jti = jti(claims)?;
    let body = serde_json::to_vec(claims).map_err(|_| JwtError::Encoding)?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(body)
    );
    let sig = signer
        .sign(signing_input.as_bytes())
        .map_err(|e| JwtError::Sign(e.to_string()))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// Verifies a JWT's signature against its own `iss` and returns its claims. (Whether that
/// issuer is trusted is the caller's question.)
pub fn decode<T: DeserializeOwned>(token: &str) -> Result<Claims<T>, JwtError> {
    let mut parts = token.trim().split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Shape);
    };
    let body = URL_SAFE_NO_PAD.decode(c).map_err(|_| JwtError::Encoding)?;
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Encoding)?;
    let claims: Claims<T> = serde_json::from_slice(&body).map_err(|_| JwtError::Encoding)?;
    let issuer = KeyPair::from_public_key(&claims.iss)
        .map_err(|_| JwtError::Signature(claims.iss.clone()))?;
    issuer
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| JwtError::Signature(claims.iss.clone()))?;
    Ok(claims)
}

/// A `.creds` file: the user JWT and the user's nkey seed, framed as the NATS tools write them.
pub fn creds_file(user_jwt: &str, user_seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

/// The JWT and seed of a `.creds` file.
pub fn parse_creds(text: &str) -> Result<(String, String), JwtError> {
    fn framed<'a>(text: &'a str, begin: &str, what: &'static str) -> Result<&'a str, JwtError> {
        let start = text.find(begin).ok_or(JwtError::Creds(what))? + begin.len();
        let rest = &text[start..];
        let end = rest.find("------END").ok_or(JwtError::Creds(what))?;
        let value = rest[..end].trim();
        if value.is_empty() {
            return Err(JwtError::Creds(what));
        }
        Ok(value)
    }
    let jwt = framed(text, "-----BEGIN NATS USER JWT-----", "user JWT")?;
    let seed = framed(text, "-----BEGIN USER NKEY SEED-----", "nkey seed")?;
    Ok((jwt.to_string(), seed.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(issuer_account: &str) -> User {
        User {
            publish: Permission {
                allow: vec!["pf.evt.rack-1.>".into()],
                deny: vec![],
            },
            subscribe: Permission::default(),
            subs: -1,
            data: -1,
            payload: -1,
            issuer_account: issuer_account.into(),
            kind: "user".into(),
            version: 2,
        }
    }

    #[test]
    fn signs_verifies_and_refuses_tampering() {
        let account = KeyPair::new_account();
        let signing = KeyPair::new_account();
        let u = KeyPair::new_user();
        let mut claims = Claims {
            exp: Some(2_000_000_000),
            jti: String::new(),
            iat: 1_700_000_000,
            iss: String::new(),
            name: "rack-1".into(),
            sub: u.public_key(),
            nats: user(&account.public_key()),
        };
        let token = encode(&mut claims, &signing).unwrap();
        assert_eq!(token.split('.').count(), 3);
        let back: Claims<User> = decode(&token).unwrap();
        assert_eq!(back, claims);
        assert_eq!(back.iss, signing.public_key());
        assert_eq!(back.jti.len(), 52, "base32 of 32 bytes, unpadded");

        // Another payload under the same signature does not verify.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut forged = claims.clone();
        forged.nats.publish.allow = vec![">".into()];
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert!(matches!(
            decode::<User>(&parts.join(".")),
            Err(JwtError::Signature(_))
        ));
        assert!(matches!(decode::<User>("a.b"), Err(JwtError::Shape)));
        assert!(matches!(decode::<User>("a.b.c"), Err(JwtError::Encoding)));

        // Another version of the claims has another id.
        let mut later = claims.clone();
        later.iat += 1;
        encode(&mut later, &signing).unwrap();
        assert_ne!(later.jti, claims.jti);
    }

    #[test]
    fn creds_files_round_trip() {
        let u = KeyPair::new_user();
        let seed = u.seed().unwrap();
        let text = creds_file("eyJhbGciOi.x.y", &seed);
        assert!(text.starts_with("-----BEGIN NATS USER JWT-----\neyJhbGciOi.x.y\n"));
        assert_eq!(
            parse_creds(&text).unwrap(),
            ("eyJhbGciOi.x.y".to_string(), seed)
        );
        assert!(matches!(
            parse_creds("-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------"),
            Err(JwtError::Creds("nkey seed"))
        ));
    }
}
