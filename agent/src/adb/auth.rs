//! ADB authentication: the RSA-2048 key pair kept as `adbkey` (PKCS#8 PEM) and `adbkey.pub`
//! (Android public-key encoding, base64, then ` user@host`), token signing (PKCS#1 v1.5 with the
//! 20-byte token taken as a SHA-1 digest), device-side verification, and the key fingerprint the
//! phone shows in its "Allow USB debugging?" prompt.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest as _, Md5};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use rsa::{BoxedUint, Pkcs1v15Sign, PrivateKey, PublicKey};
use sha1::Sha1;

/// Size of the token the device sends.
pub const TOKEN_SIZE: usize = 20;
/// Modulus size in bytes (ADB keys are 2048-bit).
pub const MODULUS_BYTES: usize = 256;
/// Size of the binary Android public key struct.
pub const ANDROID_PUBKEY_LEN: usize = 4 + 4 + MODULUS_BYTES + MODULUS_BYTES + 4;

/// Errors loading, creating or using keys.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse private key {path}: {reason}")]
    BadPrivateKey { path: PathBuf, reason: String },
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("rsa key must be 2048 bits, got {0}")]
    WrongSize(usize),
    #[error("bad android public key: {0}")]
    BadPublicKey(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A host key: private key plus its Android public-key encoding.
#[derive(Clone)]
pub struct AdbKey {
    private: PrivateKey,
    /// base64 of the 524-byte struct.
    public_b64: String,
    /// The `user@host` comment after the key.
    comment: String,
}

impl std::fmt::Debug for AdbKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdbKey")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

fn user_at_host() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host}")
}

impl AdbKey {
    /// Generates a fresh 2048-bit key.
    pub fn generate() -> Result<Self, AuthError> {
        let private = PrivateKey::new(&mut getrandom::SysRng, 2048)
            .map_err(|e| AuthError::Generate(e.to_string()))?;
        Self::from_private(private, user_at_host())
    }

    /// Wraps an existing private key.
    pub fn from_private(private: PrivateKey, comment: String) -> Result<Self, AuthError> {
        let public_b64 = B64.encode(android_pubkey_encode(private.as_public_key())?);
        Ok(Self {
            private,
            public_b64,
            comment,
        })
    }

    /// Parses a PEM private key (PKCS#8 `PRIVATE KEY` as adb writes, or PKCS#1 `RSA PRIVATE
    /// KEY`).
    pub fn from_pem(pem: &str, path: &Path) -> Result<Self, AuthError> {
        let private = PrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| e.to_string())
            .or_else(|e8| PrivateKey::from_pkcs1_pem(pem).map_err(|e1| format!("{e8}; {e1}")))
            .map_err(|reason| AuthError::BadPrivateKey {
                path: path.to_path_buf(),
                reason,
            })?;
        Self::from_private(private, user_at_host())
    }

    /// Loads `dir/adbkey` (and the comment from `dir/adbkey.pub` if present), generating and
    /// writing both files (private key mode 0600) when there is no key yet.
    pub fn load_or_generate(dir: &Path) -> Result<Self, AuthError> {
        let priv_path = dir.join("adbkey");
        let pub_path = dir.join("adbkey.pub");
        match std::fs::read_to_string(&priv_path) {
            Ok(pem) => {
                let mut key = Self::from_pem(&pem, &priv_path)?;
                if let Ok(pubfile) = std::fs::read_to_string(&pub_path)
                    && let Some((_, c)) = pubfile.trim().split_once(' ')
                {
                    key.comment = c.to_string();
                }
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                key.save(dir)?;
                Ok(key)
            }
            Err(source) => Err(AuthError::Io {
                action: "read",
                path: priv_path,
                source,
            }),
        }
    }

    /// Writes `adbkey` (0600) and `adbkey.pub` into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<(), AuthError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| AuthError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let pem = self
            .private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| AuthError::Generate(e.to_string()))?;
        let priv_path = dir.join("adbkey");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&priv_path)
            .map_err(io("create", &priv_path))?;
        f.write_all(pem.as_bytes())
            .map_err(io("write", &priv_path))?;
        let pub_path = dir.join("adbkey.pub");
        std::fs::write(&pub_path, self.public_key_line()).map_err(io("write", &pub_path))?;
        Ok(())
    }

    /// Signs a device token.
    pub fn sign_token(&self, token: &[u8]) -> Result<Vec<u8>, AuthError> {
        self.private
            .sign(Pkcs1v15Sign::new::<Sha1>(), token)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }

    /// base64 of the Android public key struct.
    pub fn public_key_b64(&self) -> &str {
        &self.public_b64
    }

    /// The `adbkey.pub` contents: base64 key, space, `user@host`.
    pub fn public_key_line(&self) -> String {
        format!("{} {}", self.public_b64, self.comment)
    }

    /// The AUTH RSAPUBLICKEY payload (the public key line with a trailing NUL).
    pub fn auth_payload(&self) -> Vec<u8> {
        let mut v = self.public_key_line().into_bytes();
        v.push(0);
        v
    }

    /// The RSA public key.
    pub fn public_key(&self) -> PublicKey {
        self.private.to_public_key()
    }

    #[cfg(test)]
    pub(crate) fn public_key_for_tests(&self) -> PublicKey {
        self.public_key()
    }

    /// Fingerprint as Android shows it: MD5 of the decoded public key bytes, colon hex.
    pub fn fingerprint(&self) -> String {
        fingerprint_b64(&self.public_b64).unwrap_or_default()
    }
}

/// Fingerprint (MD5 of the decoded 524-byte struct, upper-case colon-separated hex) of a
/// base64 public key, as shown by the phone.
pub fn fingerprint_b64(b64: &str) -> Result<String, AuthError> {
    let raw = B64
        .decode(b64.trim().as_bytes())
        .map_err(|e| AuthError::BadPublicKey(e.to_string()))?;
    let digest = Md5::digest(&raw);
    Ok(digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Encodes a public key as Android's 524-byte little-endian struct {len, n0inv, n, rr, e}.
pub fn android_pubkey_encode(key: &PublicKey) -> Result<Vec<u8>, AuthError> {
    let n_be = key.n_bytes();
    if n_be.len() != MODULUS_BYTES {
        return Err(AuthError::WrongSize(n_be.len() * 8));
    }
    let mut n_le = [0u8; MODULUS_BYTES];
    for (i, b) in n_be.iter().rev().enumerate() {
        n_le[i] = *b;
    }
    let n_words: Vec<u32> = n_le
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let n0inv = inv_mod_2_32(n_words[0]).wrapping_neg();
    let rr = r_squared_mod_n(&n_words);
    let e_be = key.e_bytes();
    let mut e: u32 = 0;
    for b in e_be.iter() {
        e = (e << 8) | u32::from(*b);
    }
    let mut out = Vec::with_capacity(ANDROID_PUBKEY_LEN);
    out.extend_from_slice(&((MODULUS_BYTES / 4) as u32).to_le_bytes());
    out.extend_from_slice(&n0inv.to_le_bytes());
    out.extend_from_slice(&n_le);
    for w in rr {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&e.to_le_bytes());
    Ok(out)
}

/// Decodes Android's public key struct (raw bytes) into an RSA public key.
pub fn android_pubkey_decode(raw: &[u8]) -> Result<PublicKey, AuthError> {
    if raw.len() != ANDROID_PUBKEY_LEN {
        return Err(AuthError::BadPublicKey(format!(
            "{} bytes, want {ANDROID_PUBKEY_LEN}",
            raw.len()
        )));
    }
    let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    if len as usize != MODULUS_BYTES / 4 {
        return Err(AuthError::BadPublicKey(format!("modulus of {len} words")));
    }
    let n = BoxedUint::from_le_slice(&raw[8..8 + MODULUS_BYTES], 2048)
        .map_err(|e| AuthError::BadPublicKey(format!("{e:?}")))?;
    let off = 8 + 2 * MODULUS_BYTES;
    let e = u32::from_le_bytes([raw[off], raw[off + 1], raw[off + 2], raw[off + 3]]);
    PublicKey::new(n, BoxedUint::from(u64::from(e)))
        .map_err(|e| AuthError::BadPublicKey(e.to_string()))
}

/// Decodes an `adbkey.pub` line or an AUTH RSAPUBLICKEY payload (base64, optional comment,
/// optional NUL).
pub fn parse_public_key_line(line: &[u8]) -> Result<PublicKey, AuthError> {
    let text = String::from_utf8_lossy(line);
    let b64 = text
        .trim_end_matches('\0')
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let raw = B64
        .decode(b64.as_bytes())
        .map_err(|e| AuthError::BadPublicKey(e.to_string()))?;
    android_pubkey_decode(&raw)
}

/// Checks a token signature against a public key.
pub fn verify_token(key: &PublicKey, token: &[u8], signature: &[u8]) -> bool {
    key.verify(Pkcs1v15Sign::new::<Sha1>(), token, signature)
        .is_ok()
}

/// Inverse of an odd `x` modulo 2^32 (Newton iteration).
fn inv_mod_2_32(x: u32) -> u32 {
    let mut y = x; // correct to 3 bits for odd x
    for _ in 0..5 {
        y = y.wrapping_mul(2u32.wrapping_sub(x.wrapping_mul(y)));
    }
    y
}

/// (2^(32 * words))^2 mod n for little-endian word vector n, by repeated doubling.
fn r_squared_mod_n(n: &[u32]) -> Vec<u32> {
    let words = n.len();
    let mut nn: Vec<u32> = n.to_vec();
    nn.push(0);
    let mut r = vec![0u32; words + 1];
    r[0] = 1;
    for _ in 0..(2 * 32 * words) {
        // r <<= 1
        let mut carry = 0u32;
        for w in r.iter_mut() {
            let next = *w >> 31;
            *w = (*w << 1) | carry;
            carry = next;
        }
        // if r >= n { r -= n }
        let ge = {
            let mut ord = std::cmp::Ordering::Equal;
            for i in (0..=words).rev() {
                if r[i] != nn[i] {
                    ord = r[i].cmp(&nn[i]);
                    break;
                }
            }
            ord != std::cmp::Ordering::Less
        };
        if ge {
            let mut borrow = 0u64;
            for i in 0..=words {
                let d = u64::from(r[i])
                    .wrapping_sub(u64::from(nn[i]))
                    .wrapping_sub(borrow);
                r[i] = d as u32;
                borrow = (d >> 63) & 1;
            }
        }
    }
    r.truncate(words);
    r
}

/// A set of host keys tried in order during AUTH.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: Vec<std::sync::Arc<AdbKey>>,
}

impl KeyRing {
    pub fn new(keys: Vec<AdbKey>) -> Self {
        Self {
            keys: keys.into_iter().map(std::sync::Arc::new).collect(),
        }
    }

    pub fn keys(&self) -> &[std::sync::Arc<AdbKey>] {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_mod_2_32() {
        for x in [1u32, 3, 0xffff_ffff, 0x1234_5677, 65537] {
            assert_eq!(x.wrapping_mul(inv_mod_2_32(x)), 1);
        }
    }

    proptest::proptest! {
        /// Any struct with the right size and word count decodes to a key or an error, never a
        /// panic; a decoded key re-encodes with the same modulus and exponent (n0inv and rr
        /// recomputed), and checking a signature against it never panics. As the
        /// `android_pubkey` fuzz target.
        #[test]
        fn any_struct_decodes_or_errs(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), ANDROID_PUBKEY_LEN - 4),
            line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let _ = parse_public_key_line(&line);
            let _ = android_pubkey_decode(&line);
            let mut raw = 64u32.to_le_bytes().to_vec();
            raw.extend_from_slice(&body);
            if let Ok(key) = android_pubkey_decode(&raw) {
                if let Ok(enc) = android_pubkey_encode(&key) {
                    proptest::prop_assert_eq!(&enc[8..264], &raw[8..264]);
                    proptest::prop_assert_eq!(&enc[520..], &raw[520..]);
                    proptest::prop_assert_eq!(android_pubkey_decode(&enc).ok(), Some(key.clone()));
                }
                let _ = verify_token(&key, &raw[..20], &raw[..256]);
            }
        }
    }

    #[test]
    fn rr_small_modulus() {
        // n = 2^32 - 5 (one word): R = 2^32, R^2 mod n = 25
        let r = r_squared_mod_n(&[0xffff_fffb]);
        assert_eq!(r, vec![25]);
    }
}
