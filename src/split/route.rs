//! The provisional routing of a TAR.GZ's single pass: from the manifest alone
//! and the entries seen so far, which parts an entry belongs to. Only a guess
//! (the file column and bare-name matches could still change with later
//! entries); `stream` compares it with the real plan before publishing a part.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, RandomState};
use std::sync::Arc;

use super::handoff::PartSpec;
use super::manifest::Manifest;
use super::names::{self, DosTime};
use super::plan;
use super::source::Entry;
use super::{Compression, SplitOptions};
use crate::error::Result;

/// One candidate file column: each row's value key as a keyed 64-bit hash
/// (16 bytes a row, no strings), sorted so a name's rows are one run. Routing
/// here is only a guess that the real plan checks before any part is published,
/// so a hash stands in for the value; the key is random per process, so a
/// hostile manifest cannot aim collisions at it.
pub(super) struct Column {
    keys: Vec<(u64, u32)>,
    /// For the chosen column: hash → its run in `keys`, one probe per entry
    /// (bisecting `keys` for each of 200,000 entries cost 2 s of cache misses).
    runs: HashMap<u64, (u32, u32), BuildHasherDefault<Prehashed>>,
}

/// The keys of [`Column::runs`] are keyed hashes already.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl Column {
    fn build(manifest: &Manifest, col: usize, hasher: &RandomState) -> Column {
        let mut keys = Vec::with_capacity(manifest.rows.len());
        manifest.each_record(|r, rec| {
            if let Some(k) = rec.get(col).and_then(plan::value_key) {
                keys.push((hasher.hash_one(k.as_ref()), r as u32));
            }
        });
        keys.sort_unstable();
        Column {
            keys,
            runs: HashMap::default(),
        }
    }

    /// Indexes the runs, once the column is chosen.
    fn index_runs(&mut self) {
        let mut at = 0;
        while at < self.keys.len() {
            let h = self.keys[at].0;
            let end = at + self.keys[at..].partition_point(|&(k, _)| k == h);
            self.runs.insert(h, (at as u32, (end - at) as u32));
            at = end;
        }
    }

    /// Positions in `keys` of the rows whose value is `name`.
    fn run(&self, hasher: &RandomState, name: &str) -> std::ops::Range<usize> {
        let h = hasher.hash_one(name);
        if !self.runs.is_empty() {
            return self.runs.get(&h).map_or(0..0, |&(at, n)| at as usize..(at + n) as usize);
        }
        let from = self.keys.partition_point(|&(k, _)| k < h);
        from..from + self.keys[from..].partition_point(|&(k, _)| k == h)
    }
}

/// The provisional routing of the single pass, made from the manifest alone and
/// the entries seen so far.
pub(super) struct Router {
    pub(super) manifest: Arc<Manifest>,
    pub(super) batch: usize,
    pub(super) parts: usize,
    hasher: RandomState,
    /// Candidate columns; once a file matches one, only that one is kept.
    columns: Vec<Column>,
    chosen: bool,
    /// Per position in the chosen column: whether the value starting a run there
    /// has already been matched by a file.
    matched: Vec<bool>,
    remaining: Vec<usize>,
    pub(super) files: Vec<Vec<usize>>,
    finished: Vec<bool>,
    /// Set when the guess went wrong for a part (a second file matched one value).
    pub(super) spoiled: Vec<bool>,
    pub(super) comments: Vec<String>,
}

impl Router {
    pub(super) fn new(manifest: Manifest, opts: &SplitOptions) -> Result<Router> {
        let cols: Vec<usize> = match &opts.file_column {
            Some(c) => vec![manifest.column(c)?],
            None => (0..manifest.headers.len()).collect(),
        };
        let hasher = RandomState::new();
        let columns = cols.into_iter().map(|c| Column::build(&manifest, c, &hasher)).collect();
        let parts = manifest.rows.len().div_ceil(opts.batch_size);
        Ok(Router {
            manifest: Arc::new(manifest),
            batch: opts.batch_size,
            parts,
            hasher,
            columns,
            chosen: false,
            matched: Vec::new(),
            remaining: vec![0; parts],
            files: vec![Vec::new(); parts],
            finished: vec![false; parts],
            spoiled: vec![false; parts],
            comments: vec![String::new(); parts],
        })
    }

    pub(super) fn specs(&self, opts: &SplitOptions, stem: &str, time: DosTime) -> Vec<PartSpec> {
        (0..self.parts)
            .map(|p| {
                let rows = ((p + 1) * self.batch).min(self.manifest.rows.len()) - p * self.batch;
                PartSpec {
                    n: p + 1,
                    path: opts.out.join(format!("{stem}-part{}.zip", p + 1)),
                    manifest_name: self.manifest.part_name().to_owned(),
                    time,
                    rows,
                }
            })
            .collect()
    }

    /// The manifest bytes of part `p` (all rows: the single pass skips none).
    pub(super) fn part_manifest(manifest: &Manifest, batch: usize, p: usize) -> Vec<u8> {
        let rows = &manifest.rows[p * batch..((p + 1) * batch).min(manifest.rows.len())];
        manifest.part_bytes(rows.iter())
    }

    /// Runs of `column` whose value is `rel` or, for a nested file, its bare name.
    fn hits(&self, column: &Column, rel: &str) -> Vec<std::ops::Range<usize>> {
        let mut keys = vec![rel];
        if rel.contains('/') {
            keys.push(names::basename(rel));
        }
        keys.into_iter()
            .map(|k| column.run(&self.hasher, k))
            .filter(|r| !r.is_empty())
            .collect()
    }

    /// The parts of the rows at `run` of the chosen column.
    fn parts_of(&self, run: std::ops::Range<usize>) -> Vec<usize> {
        let mut parts: Vec<usize> = self.columns[0].keys[run].iter().map(|&(_, r)| r as usize / self.batch).collect();
        parts.dedup();
        parts
    }

    /// The parts that want entry `idx` named `name`.
    pub(super) fn route(&mut self, idx: usize, name: &str) -> Vec<usize> {
        let root = &self.manifest.root;
        let Some(rel) = name.strip_prefix(root.as_str()) else {
            return Vec::new();
        };
        if Some(name) == self.manifest.entry.as_deref() {
            return Vec::new();
        }
        if !self.chosen {
            let Some(slot) = (0..self.columns.len()).find(|&s| !self.hits(&self.columns[s], rel).is_empty()) else {
                return Vec::new();
            };
            let mut column = self.columns.swap_remove(slot);
            column.index_runs();
            self.columns = vec![column];
            self.chosen = true;
            self.matched = vec![false; self.columns[0].keys.len()];
            // Each part waits for one file per distinct value among its rows.
            let runs: Vec<(u32, u32)> = self.columns[0].runs.values().copied().collect();
            for (at, n) in runs {
                for p in self.parts_of(at as usize..(at + n) as usize) {
                    self.remaining[p] += 1;
                }
            }
        }
        let hits: Vec<(usize, Vec<usize>)> = self
            .hits(&self.columns[0], rel)
            .into_iter()
            .map(|run| (run.start, self.parts_of(run)))
            .collect();
        let mut targets = Vec::new();
        for (start, parts) in hits {
            let first = !std::mem::replace(&mut self.matched[start], true);
            for p in parts {
                if first {
                    self.remaining[p] -= 1;
                } else {
                    self.spoiled[p] = true;
                }
                if self.finished[p] {
                    self.spoiled[p] = true;
                } else if !targets.contains(&p) {
                    targets.push(p);
                }
            }
        }
        for &p in &targets {
            self.files[p].push(idx);
        }
        targets
    }

    /// Parts whose last file has just been routed.
    pub(super) fn completed(&mut self, entries: &[Entry], compression: Compression) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for p in 0..self.parts {
            if !self.finished[p] && self.chosen && self.remaining[p] == 0 && !self.files[p].is_empty() {
                self.finished[p] = true;
                let comment = plan::fingerprint(
                    entries,
                    &self.manifest,
                    compression,
                    p + 1,
                    self.parts,
                    &Self::part_manifest(&self.manifest, self.batch, p),
                    &self.files[p],
                );
                self.comments[p] = comment.clone();
                out.push((p, comment));
            }
        }
        out
    }
}

/// What the single pass guessed for each part, kept to compare with the plan.
pub(super) struct Guess {
    pub(super) parts: usize,
    pub(super) spoiled: Vec<bool>,
    pub(super) files: Vec<Vec<usize>>,
    pub(super) comments: Vec<String>,
}

impl Router {
    /// Keeps only what the real plan is compared with; the index and the
    /// manifest copy go before the plan makes its own.
    pub(super) fn into_guess(self) -> Guess {
        Guess {
            parts: self.parts,
            spoiled: self.spoiled,
            files: self.files,
            comments: self.comments,
        }
    }
}
