//! Integration tests: our client against the simulator, and the simulator against Debian's
//! real `adb`.

mod hostile;
mod ours;
mod real_adb;

use std::sync::OnceLock;
use std::time::Duration;

use phonefarm_agent::adb::auth::{AdbKey, KeyRing};
use phonefarm_agent::phone::{PhoneHandle, PhoneOptions};
use tokio::time::Instant;

/// One key for the whole test binary (RSA generation is slow in debug builds).
pub fn test_key() -> AdbKey {
    static KEY: OnceLock<AdbKey> = OnceLock::new();
    KEY.get_or_init(|| AdbKey::generate().expect("generate key"))
        .clone()
}

pub fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

pub async fn connect(addr: &str, keys: Vec<AdbKey>) -> PhoneHandle {
    PhoneHandle::connect_tcp(addr, PhoneOptions::new(KeyRing::new(keys)))
        .await
        .expect("connect")
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
