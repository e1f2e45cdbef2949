//! Identifiers: job ids (time-ordered, so they sort by creation) and the
//! random bits behind them. A leaf: depends on nothing of ours.

use std::hash::{BuildHasher, Hasher};

/// 64 random bits, from std's per-process random hasher keys and the clock:
/// enough for ids and retry jitter, no extra crate.
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A new job id: time-ordered, 12 hex digits of milliseconds plus 8 random ones.
pub fn new_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    format!("{ms:012x}{:08x}", random_u64() as u32)
}
