//! Callback signatures.
//!
//! Two schemes are sent side by side on every signed delivery:
//!
//! - the documented Phonefarm scheme: `X-PhoneFarm-Timestamp: <unix seconds>` and
//!   `X-PhoneFarm-Signature: <lowercase hex HMAC-SHA256("{timestamp}.{raw body}")>`, keyed with
//!   the secret string's bytes exactly as configured (what the documented Node verifier does);
//! - Standard Webhooks: `webhook-id: <event_id>`, `webhook-timestamp: <unix seconds>`,
//!   `webhook-signature: v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>`, keyed with the
//!   secret's bytes, or when the secret is written `whsec_<base64>`, with the decoded bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// `X-PhoneFarm-Timestamp`.
pub const PHONEFARM_TIMESTAMP: HeaderName = HeaderName::from_static("x-phonefarm-timestamp");
/// `X-PhoneFarm-Signature`.
pub const PHONEFARM_SIGNATURE: HeaderName = HeaderName::from_static("x-phonefarm-signature");
/// `webhook-id`.
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// `webhook-timestamp`.
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// `webhook-signature`.
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// The signing keys derived from `PHONE_FARM_WEBHOOK_SECRET`. Never printed.
pub struct Signer {
    legacy_key: SecretString,
    standard_key: SecretSlice<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { .. }")
    }
}

impl Signer {
    /// Derives both keys from the configured secret. A `whsec_` secret whose remainder is not
    /// valid base64 is used as plain bytes for Standard Webhooks too (and a warning is logged,
    /// without the secret).
    pub fn new(secret: SecretString) -> Self {
        let raw = secret.expose_secret();
        let standard_key = match raw.strip_prefix("whsec_") {
            Some(encoded) => match STANDARD.decode(encoded) {
                Ok(decoded) => decoded,
                Err(_) => {
                    tracing::warn!(
                        "the callback secret starts with whsec_ but is not valid base64: \
                         standard webhooks signatures use its plain bytes"
                    );
                    raw.as_bytes().to_vec()
                }
            },
            None => raw.as_bytes().to_vec(),
        };
        Self {
            legacy_key: secret,
            standard_key: standard_key.into(),
        }
    }

    /// Adds the signature headers of both schemes for one delivery attempt.
    pub fn sign_into(&self, headers: &mut HeaderMap, event_id: &str, timestamp: i64, body: &[u8]) {
        let ts = timestamp.to_string();

        let legacy = hmac_sha256(
            self.legacy_key.expose_secret().as_bytes(),
            &[ts.as_bytes(), b".", body],
        );
        let standard = hmac_sha256(
            self.standard_key.expose_secret(),
            &[event_id.as_bytes(), b".", ts.as_bytes(), b".", body],
        );

        let mut insert = |name: HeaderName, value: String| {
            // Digits, hex, base64 and UUIDs are always valid header values.
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        insert(PHONEFARM_TIMESTAMP, ts.clone());
        insert(PHONEFARM_SIGNATURE, hex::encode(legacy));
        insert(WEBHOOK_ID, event_id.to_owned());
        insert(WEBHOOK_TIMESTAMP, ts);
        insert(
            WEBHOOK_SIGNATURE,
            format!("v1,{}", STANDARD.encode(standard)),
        );
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length (long keys are hashed), so this never fails.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> &'a str {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .expect("header present")
    }

    #[test]
    fn legacy_signature_known_answer() {
        let signer = Signer::new(SecretString::from("shh"));
        let mut headers = HeaderMap::new();
        signer.sign_into(&mut headers, "evt", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(header(&headers, &PHONEFARM_TIMESTAMP), "1700000000");
        // Computed independently with openssl.
        assert_eq!(
            header(&headers, &PHONEFARM_SIGNATURE),
            "be310eac0f84daf469d630347a950258de768b365563ab68f29f2f783473d547"
        );
    }

    #[test]
    fn standard_webhooks_whsec_key_is_decoded() {
        let key = b"0123456789abcdef0123456789abcdef";
        let secret = format!("whsec_{}", STANDARD.encode(key));
        let signer = Signer::new(SecretString::from(secret.clone()));
        let mut headers = HeaderMap::new();
        signer.sign_into(&mut headers, "msg_1", 42, b"{}");
        // Computed independently with openssl.
        assert_eq!(
            header(&headers, &WEBHOOK_SIGNATURE),
            "v1,jIKDocdnwyY6M8mYtSMety4DcVTobZ+wqfY8xIrHYeE="
        );
        assert_eq!(header(&headers, &WEBHOOK_ID), "msg_1");
        assert_eq!(header(&headers, &WEBHOOK_TIMESTAMP), "42");
        // The legacy scheme keys with the secret string as written.
        let legacy = hex::encode(hmac_sha256(secret.as_bytes(), &[b"42.{}"]));
        assert_eq!(header(&headers, &PHONEFARM_SIGNATURE), legacy);
    }

    #[test]
    fn debug_hides_the_secret() {
        let signer = Signer::new(SecretString::from("top-secret"));
        assert!(!format!("{signer:?}").contains("top-secret"));
    }
}
