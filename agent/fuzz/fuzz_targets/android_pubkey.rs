//! Android public-key decoding: any bytes (as the raw 524-byte struct, as an `adbkey.pub` line
//! or AUTH payload) decode to a key or a typed error, never a panic. A decoded key re-encodes
//! to the same length, modulus and exponent, and verifying a token against it never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use phonefarm_agent_fuzz::adb::auth::{
    ANDROID_PUBKEY_LEN, android_pubkey_decode, android_pubkey_encode, fingerprint_b64,
    parse_public_key_line, verify_token,
};

fuzz_target!(|data: &[u8]| {
    let _ = parse_public_key_line(data);
    let _ = fingerprint_b64(&String::from_utf8_lossy(data));
    let _ = android_pubkey_decode(data);
    // Also as a well-sized struct with the right word count, so the deep path runs every time.
    let mut raw = data.to_vec();
    raw.resize(ANDROID_PUBKEY_LEN, 0);
    raw[..4].copy_from_slice(&64u32.to_le_bytes());
    let Ok(key) = android_pubkey_decode(&raw) else {
        return;
    };
    if let Ok(enc) = android_pubkey_encode(&key) {
        assert_eq!(enc.len(), ANDROID_PUBKEY_LEN);
        assert_eq!(&enc[..4], &raw[..4]);
        assert_eq!(&enc[8..264], &raw[8..264]);
        assert_eq!(&enc[520..], &raw[520..]);
        let again = android_pubkey_decode(&enc).expect("a re-encoded key decodes");
        assert_eq!(again, key);
    }
    let sig: Vec<u8> = data.iter().rev().copied().cycle().take(256).collect();
    let _ = verify_token(&key, &data[..data.len().min(20)], &sig);
});
