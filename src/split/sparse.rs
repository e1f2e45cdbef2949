//! Sparse tar entries. GNU tar, bsdtar and Go store a file with holes as its data
//! runs only, plus a map of where those runs lie in the real file: in the old GNU
//! `S` header (and its extension blocks), or in PAX records (formats 0.0 and 0.1),
//! or at the start of the entry's data (format 1.0). Packing the stored bytes as
//! they are would hand users a different file, so this module owns the one thing
//! every reader path needs: the validated map, and the expansion of stored bytes
//! into the real file (zeros for holes) that the streaming and the random-access
//! packers both use.

use crate::error::{Error, Result};

/// Data runs of a sparse file: `(offset in the real file, length)`, sorted and
/// disjoint; everything else up to `real` is a hole (zeros).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparseMap {
    pub real: u64,
    pub runs: Box<[(u64, u64)]>,
}

impl SparseMap {
    /// Checks a map read from an archive against the entry's stored size: runs in
    /// order, not overlapping, inside the real size, and their lengths adding up
    /// to exactly the bytes stored. Anything else would make us invent or drop
    /// bytes, so it is refused.
    pub fn new(entry: &str, real: u64, runs: Vec<(u64, u64)>, stored: u64) -> Result<SparseMap> {
        let bad = |detail: String| Error::corrupt(Some(entry), format!("sparse map {detail}"));
        let mut end = 0u64;
        let mut sum = 0u64;
        let mut kept = Vec::with_capacity(runs.len());
        for (off, len) in runs {
            let run_end = off.checked_add(len).ok_or_else(|| bad(format!("run at {off} overflows")))?;
            if off < end {
                return Err(bad(format!("runs overlap or are out of order at offset {off}")));
            }
            if run_end > real {
                return Err(bad(format!("run {off}+{len} lies past the real size of {real} bytes")));
            }
            end = run_end;
            sum += len;
            // GNU tar ends the map with an empty run at the real size.
            if len > 0 {
                kept.push((off, len));
            }
        }
        if sum != stored {
            return Err(bad(format!("covers {sum} bytes but the entry stores {stored}")));
        }
        Ok(SparseMap {
            real,
            runs: kept.into_boxed_slice(),
        })
    }
}

/// Walks a sparse file front to back, turning stored bytes into real ones.
#[derive(Debug, Clone)]
pub struct Expand {
    map: SparseMap,
    /// Position in the real file.
    pos: u64,
    /// Index of the first run that ends after `pos`.
    run: usize,
}

impl Expand {
    pub fn new(map: SparseMap) -> Self {
        Expand { map, pos: 0, run: 0 }
    }

    pub fn map(&self) -> &SparseMap {
        &self.map
    }

    /// Fills `buf` with the next real bytes: zeros inside a hole, or bytes read
    /// through `stored` (which reads the entry's stored data in order) inside a
    /// data run. Returns 0 at the end of the real file.
    pub fn read_with<E>(&mut self, buf: &mut [u8], mut stored: impl FnMut(&mut [u8]) -> Result<usize, E>) -> Result<usize, E> {
        if self.pos >= self.map.real || buf.is_empty() {
            return Ok(0);
        }
        let n = match self.map.runs.get(self.run) {
            Some(&(off, _)) if self.pos < off => fill_zeros(buf, off - self.pos),
            Some(&(off, len)) => {
                let want = ((off + len - self.pos) as usize).min(buf.len());
                let got = stored(&mut buf[..want])?;
                if got == 0 {
                    return Ok(0); // the caller's reader reports truncation
                }
                got
            }
            None => fill_zeros(buf, self.map.real - self.pos),
        };
        self.pos += n as u64;
        while self.map.runs.get(self.run).is_some_and(|&(off, len)| self.pos >= off + len) {
            self.run += 1;
        }
        Ok(n)
    }
}

/// The real bytes of a sparse file, from a reader of its stored bytes.
pub struct ExpandRead<R> {
    pub expand: Expand,
    pub stored: R,
}

impl<R: std::io::Read> std::io::Read for ExpandRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let stored = &mut self.stored;
        self.expand.read_with(buf, |b| stored.read(b))
    }
}

impl SparseMap {
    /// Bytes the archive stores for this file.
    pub fn stored(&self) -> u64 {
        self.runs.iter().map(|r| r.1).sum()
    }
}

fn fill_zeros(buf: &mut [u8], hole: u64) -> usize {
    let n = (hole.min(buf.len() as u64)) as usize;
    buf[..n].fill(0);
    n
}

/// Parses the decimal numbers of a PAX 0.1 `GNU.sparse.map` ("off,len,off,len").
pub fn parse_map_list(entry: &str, text: &[u8]) -> Result<Vec<(u64, u64)>> {
    let bad = || Error::corrupt(Some(entry), "GNU.sparse.map is not a list of number pairs");
    let nums: Vec<u64> = std::str::from_utf8(text)
        .map_err(|_| bad())?
        .split(',')
        .map(|s| s.trim().parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    if !nums.len().is_multiple_of(2) {
        return Err(bad());
    }
    Ok(nums.chunks(2).map(|c| (c[0], c[1])).collect())
}

/// Parses the map that starts the data of a PAX 1.0 sparse entry: a count and
/// then that many offset/length pairs, one decimal number per line. `next_line`
/// reads one line (without its newline); returns the runs.
pub fn parse_map_block(entry: &str, mut next_line: impl FnMut() -> Result<Vec<u8>>) -> Result<Vec<(u64, u64)>> {
    let mut num = || -> Result<u64> {
        let line = next_line()?;
        std::str::from_utf8(&line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::corrupt(Some(entry), "the sparse map at the start of the data is not decimal numbers"))
    };
    let count = num()?;
    // Each pair takes at least four bytes of the map, which is bounded by the caller.
    let mut runs = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        runs.push((num()?, num()?));
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(map: SparseMap, stored: &[u8], chunk: usize) -> Vec<u8> {
        let mut x = Expand::new(map);
        let mut at = 0;
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = x
                .read_with(&mut buf, |b: &mut [u8]| -> Result<usize> {
                    let n = b.len().min(stored.len() - at);
                    b[..n].copy_from_slice(&stored[at..at + n]);
                    at += n;
                    Ok(n)
                })
                .unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn expands_holes_at_start_middle_and_end() {
        let map = SparseMap::new("f", 20, vec![(3, 2), (10, 4), (20, 0)], 6).unwrap();
        let want = b"\0\0\0ab\0\0\0\0\0cdef\0\0\0\0\0\0".to_vec();
        for chunk in [1, 3, 7, 64] {
            assert_eq!(expand(map.clone(), b"abcdef", chunk), want, "chunk {chunk}");
        }
    }

    #[test]
    fn refuses_maps_that_would_invent_or_drop_bytes() {
        for (runs, stored) in [
            (vec![(0, 5), (3, 2)], 7), // overlap
            (vec![(5, 2), (0, 2)], 4), // out of order
            (vec![(0, 5)], 4),         // covers more than stored
            (vec![(18, 5)], 5),        // past the real size
            (vec![(u64::MAX, 2)], 2),  // overflow
        ] {
            assert_eq!(SparseMap::new("f", 20, runs, stored).unwrap_err().code(), "ARCHIVE_CORRUPT");
        }
    }
}
