//! Entry names: the one place that decides whether a name from an archive is safe to
//! use as a relative path, and turns it into the canonical form the rest of the
//! splitter compares and writes. Also the DOS date/time conversion ZIP needs, so
//! that timestamps always come from the source and never from the clock.

use crate::clock::civil_from_days;
use crate::error::{Error, Result};

/// What a raw archive name turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Name {
    File(String),
    Dir(String),
    /// The archive root itself (`./` in tars made with `tar -C dir .`).
    Root,
}

/// Normalises an archive entry name: strips `./` and empty segments, and rejects
/// anything that could address a place outside the output directory.
pub fn normalize(raw: &str) -> Result<Name> {
    let unsafe_path = |reason: &str| Error::UnsafePath {
        entry: raw.to_owned(),
        reason: reason.to_owned(),
    };
    if raw.contains('\0') {
        return Err(unsafe_path("contains a NUL byte"));
    }
    if raw.contains('\\') {
        return Err(unsafe_path("contains a backslash"));
    }
    if raw.starts_with('/') {
        return Err(unsafe_path("is an absolute path"));
    }
    let b = raw.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Err(unsafe_path("starts with a drive letter"));
    }
    let is_dir = raw.ends_with('/');
    let mut parts = Vec::new();
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(unsafe_path("contains a '..' component")),
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return Ok(Name::Root);
    }
    let joined = parts.join("/");
    Ok(if is_dir { Name::Dir(joined) } else { Name::File(joined) })
}

/// Refuses a source whose names repeat (`DUPLICATE_ENTRY`), or differ only in
/// ways the filesystems parts are often unpacked on ignore: macOS folds letter
/// case and (HFS+) Unicode normalisation, Windows folds case. A delivery whose
/// parts silently lose a file there breaks our first promise, so such a source
/// fails up front, naming both entries (the later one first).
///
/// Each name's folded form is hashed (keyed at random, so a hostile archive
/// cannot aim collisions) and the hashes are sorted, so that clashes end up
/// side by side: 16 bytes a name, no copies for ASCII names. A hash set of
/// folded copies cost about 80 bytes a name, and sorting the names themselves
/// spent a sixth of a 200,000-entry dry run chasing them through memory. Of
/// several clashes, the one whose later entry comes first in the source is
/// reported, exact duplicates before folds.
pub fn check_unique<'a>(count: usize, name: impl Fn(usize) -> &'a str) -> Result<()> {
    use std::hash::{BuildHasher, Hasher};
    let folded = |s: &str| -> String {
        use unicode_normalization::UnicodeNormalization;
        s.nfc().collect::<String>().to_lowercase()
    };
    // For ASCII names the folded form is the lowercase bytes, as `folded` gives.
    let same_fold = |a: &str, b: &str| {
        if a.is_ascii() && b.is_ascii() {
            a.eq_ignore_ascii_case(b)
        } else {
            folded(a) == folded(b)
        }
    };
    let keyed = std::hash::RandomState::new();
    let hash_folded = |s: &str| -> u64 {
        let mut h = keyed.build_hasher();
        if s.is_ascii() {
            let mut chunk = [0u8; 64];
            for piece in s.as_bytes().chunks(64) {
                let c = &mut chunk[..piece.len()];
                c.copy_from_slice(piece);
                c.make_ascii_lowercase();
                h.write(c);
            }
        } else {
            h.write(folded(s).as_bytes());
        }
        h.finish()
    };
    let mut keys: Vec<(u64, u32)> = (0..count).map(|i| (hash_folded(name(i)), i as u32)).collect();
    keys.sort_unstable();
    let mut exact: Option<(usize, usize)> = None;
    let mut fold: Option<(usize, usize)> = None;
    for run in keys.chunk_by(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
        // A run shares a hash, in source order; names that truly fold alike clash.
        for (k, &(_, later)) in run.iter().enumerate().skip(1) {
            let later = later as usize;
            let before = || run[..k].iter().map(|&(_, e)| e as usize);
            let Some(first) = before().find(|&e| same_fold(name(e), name(later))) else {
                continue;
            };
            let same = before().find(|&e| name(e) == name(later));
            let slot = if same.is_some() { &mut exact } else { &mut fold };
            let earlier = same.unwrap_or(first);
            if slot.is_none_or(|(l, _)| later < l) {
                *slot = Some((later, earlier));
            }
        }
    }
    if let Some((later, _)) = exact {
        return Err(Error::DuplicateEntry {
            entry: name(later).to_owned(),
        });
    }
    let Some((later, earlier)) = fold else { return Ok(()) };
    let (name, other) = (name(later), name(earlier));
    use unicode_normalization::UnicodeNormalization;
    let same_nfc = |a: &str, b: &str| a.nfc().eq(b.nfc());
    let reason = if same_nfc(name, other) {
        "Unicode normalisation (NFC/NFD)"
    } else if name.to_lowercase() == other.to_lowercase() {
        "letter case"
    } else {
        "letter case and Unicode normalisation"
    };
    Err(Error::NameCollision {
        entry: name.to_owned(),
        other: other.to_owned(),
        reason,
    })
}

/// True when `name` is already what [`normalize`] makes of a file name, so a
/// caller can use it without copying: no empty, `.` or `..` segment, no leading
/// or trailing slash, no backslash, NUL or drive letter.
pub fn is_canonical(name: &str) -> bool {
    let b = name.as_bytes();
    let drive = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
    let odd = name.is_empty() || drive || b.contains(&b'\\') || b.contains(&0);
    !odd && name.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// The last path segment of a normalised name.
pub fn basename(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The directory part of a normalised name including its trailing slash ("" at top).
pub fn dirname(name: &str) -> &str {
    match name.rfind('/') {
        Some(i) => &name[..=i],
        None => "",
    }
}

/// A ZIP (MS-DOS) timestamp: `time` and `date` fields as stored in headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DosTime {
    pub time: u16,
    pub date: u16,
}

impl DosTime {
    /// 1980-01-01 00:00:00, the earliest time ZIP can hold.
    pub const EPOCH: DosTime = DosTime {
        time: 0,
        date: (1 << 5) | 1,
    };

    /// Converts Unix seconds (UTC) to a DOS timestamp, clamped to 1980..=2107.
    /// DOS time counts in steps of two seconds; an odd second is rounded up, as
    /// Info-ZIP rounds, so a ZIP made by Info-ZIP and a tar of the same files
    /// give the same parts (the one rule for every source kind).
    pub fn from_unix(secs: i64) -> DosTime {
        let secs = secs.saturating_add(secs.rem_euclid(2));
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        if y < 1980 {
            return DosTime::EPOCH;
        }
        if y > 2107 {
            return DosTime {
                time: (23 << 11) | (59 << 5) | 29,
                date: (127 << 9) | (12 << 5) | 31,
            };
        }
        let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
        DosTime {
            time: ((h as u16) << 11) | ((mi as u16) << 5) | ((s / 2) as u16),
            date: (((y - 1980) as u16) << 9) | ((m as u16) << 5) | d as u16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_rejects() {
        assert_eq!(normalize("./a//b/./c.jpg").unwrap(), Name::File("a/b/c.jpg".into()));
        assert_eq!(normalize("images/").unwrap(), Name::Dir("images".into()));
        assert_eq!(normalize("./").unwrap(), Name::Root);
        for bad in ["../x", "a/../../x", "/etc/passwd", "C:/x", "c:x", "a\\b", "a\0b"] {
            let err = normalize(bad).unwrap_err();
            assert_eq!(err.code(), "UNSAFE_PATH", "{bad}");
            assert_eq!(err.entry(), Some(bad));
        }
    }

    #[test]
    fn dos_time_matches_known_dates() {
        // 2021-03-04 05:06:08 UTC
        let t = DosTime::from_unix(1_614_834_368);
        assert_eq!(t.date, ((2021 - 1980) << 9) | (3 << 5) | 4);
        assert_eq!(t.time, (5 << 11) | (6 << 5) | 4);
        assert_eq!(DosTime::from_unix(0), DosTime::EPOCH);
        // An odd second rounds up, like Info-ZIP: 05:06:09 -> 05:06:10.
        assert_eq!(DosTime::from_unix(1_614_834_369).time, (5 << 11) | (6 << 5) | 5);
    }
}
