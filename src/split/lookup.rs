//! A compact hash index from names to entry numbers, for resolving manifest
//! values against a source's entries. Why not a `HashMap<&str, usize>`: at
//! 200,000 entries the maps of the planner cost about 60 bytes a name (23 MB),
//! and a sorted vector searched by bisection, though small, spent 2.4 s of a
//! 3.3 s plan in cache misses (18 probes a lookup, 800,000 lookups while
//! detecting the file column). This table is a power-of-two array of 8-byte
//! slots (a 32-bit tag of the hash and the entry number), at most half full, so
//! a lookup takes one to three probes: 16 to 32 bytes a name. The hash is keyed at random per process
//! (std's `RandomState`), so a hostile archive cannot aim collisions at it, and
//! names are always compared on a tag match, so a collision costs only time.
//!
//! A key that several entries share (one bare name in many folders) takes one
//! slot, marked shared: its probe sequence never grows with the number of such
//! entries. Who shares it is found by a scan, only for the error that says so.

use std::hash::{BuildHasher, RandomState};

const EMPTY: u32 = 0;
/// Set on a slot whose key more than one entry has.
const SHARED: u32 = 1 << 31;

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    One(u32),
    /// Several entries have this key; here is the first inserted.
    Shared(u32),
}

pub struct NameTable {
    /// (tag, entry + 1, with [`SHARED`] set when the key is shared); 0 is empty.
    slots: Vec<(u32, u32)>,
    mask: usize,
    hasher: RandomState,
}

impl NameTable {
    pub fn with_capacity(n: usize) -> Self {
        // At most half full: linear probing then takes about 2.5 probes to miss
        // (detecting the file column mostly misses), where 3/4 full takes 8.
        let slots = (n.saturating_mul(2) + 1).next_power_of_two().max(16);
        NameTable {
            slots: vec![(0, EMPTY); slots],
            mask: slots - 1,
            hasher: RandomState::new(),
        }
    }

    fn start(&self, key: &str) -> (usize, u32) {
        let h = self.hasher.hash_one(key);
        (h as usize & self.mask, (h >> 32) as u32)
    }

    /// Adds entry `idx` under `key`; `key_of` gives the key of an entry already
    /// in the table. Entries must number fewer than 2^31.
    pub fn insert<'k>(&mut self, key: &str, idx: u32, key_of: impl Fn(u32) -> &'k str) {
        debug_assert!(idx < SHARED - 1);
        let (mut at, tag) = self.start(key);
        loop {
            let (t, v) = self.slots[at];
            if v == EMPTY {
                self.slots[at] = (tag, idx + 1);
                return;
            }
            if t == tag && key_of((v & !SHARED) - 1) == key {
                self.slots[at].1 |= SHARED;
                return;
            }
            at = (at + 1) & self.mask;
        }
    }

    pub fn get<'k>(&self, key: &str, key_of: impl Fn(u32) -> &'k str) -> Option<Found> {
        let (mut at, tag) = self.start(key);
        loop {
            let (t, v) = self.slots[at];
            if v == EMPTY {
                return None;
            }
            let idx = (v & !SHARED) - 1;
            if t == tag && key_of(idx) == key {
                return Some(if v & SHARED != 0 { Found::Shared(idx) } else { Found::One(idx) });
            }
            at = (at + 1) & self.mask;
        }
    }
}

/// A set of names as a bit array that fits in the processor's cache: "surely
/// not here" without touching the table. Detecting the file column looks up
/// every value of every column, nearly all of them misses, and each miss in a
/// table of 200,000 names is a cache miss (a third of a dry run's time before).
/// Eight bits a name: about one miss in nine still goes on to the table.
pub struct Filter {
    bits: Vec<u64>,
    mask: u64,
    hasher: RandomState,
}

impl Filter {
    pub fn with_capacity(n: usize) -> Self {
        let bits = (n.saturating_mul(8)).next_power_of_two().max(64);
        Filter {
            bits: vec![0; bits / 64],
            mask: bits as u64 - 1,
            hasher: RandomState::new(),
        }
    }

    fn bit(&self, key: &str) -> (usize, u64) {
        let b = self.hasher.hash_one(key) & self.mask;
        ((b / 64) as usize, 1 << (b % 64))
    }

    pub fn insert(&mut self, key: &str) {
        let (w, m) = self.bit(key);
        self.bits[w] |= m;
    }

    /// False only when `key` was never inserted.
    pub fn may_contain(&self, key: &str) -> bool {
        let (w, m) = self.bit(key);
        self.bits[w] & m != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_name_and_marks_shared_keys() {
        let names: Vec<String> = (0..10_000).map(|i| format!("dir{}/f{}.jpg", i % 7, i / 2)).collect();
        let base = |i: u32| names[i as usize].rsplit('/').next().unwrap();
        let mut by_path = NameTable::with_capacity(names.len());
        let mut by_base = NameTable::with_capacity(names.len());
        for (i, n) in names.iter().enumerate() {
            by_path.insert(n, i as u32, |j| names[j as usize].as_str());
            by_base.insert(base(i as u32), i as u32, base);
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(by_path.get(n, |j| names[j as usize].as_str()), Some(Found::One(i as u32)));
        }
        // f{k}.jpg is the bare name of entries 2k and 2k+1.
        assert_eq!(by_base.get("f3.jpg", base), Some(Found::Shared(6)));
        assert_eq!(by_path.get("dir0/f9999.jpg", |j| names[j as usize].as_str()), None);
    }

    #[test]
    fn filter_never_forgets_and_rejects_most_strangers() {
        let mut f = Filter::with_capacity(10_000);
        let names: Vec<String> = (0..10_000).map(|i| format!("scan_{i:05}.tif")).collect();
        for n in &names {
            f.insert(n);
        }
        assert!(names.iter().all(|n| f.may_contain(n)));
        let strangers = (0..10_000).filter(|i| f.may_contain(&format!("title {i}"))).count();
        assert!(strangers < 2_000, "{strangers} of 10,000 strangers passed the filter");
    }
}
