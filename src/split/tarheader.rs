//! The fields of a tar header and of pax extended records, read the way bsdtar,
//! Python and GNU tar read them: numbers (octal, NUL- or space-ended, GNU
//! base-256), the header checksum, names, pax records in written order and pax
//! times. Pure functions over bytes, apart from `tarread`'s walk over entries.

use crate::error::{Error, Result};

/// Reads a numeric header field the way bsdtar and Python do, so that we never
/// read a different size than they extract: octal digits after optional spaces,
/// ending at the first NUL or space (an empty or all-NUL field is 0; a field that
/// starts with NUL is 0 too, whatever follows the NUL), or GNU's base-256
/// (positive and negative). Anything else after the digits is refused.
pub(super) fn parse_signed(field: &[u8]) -> Option<i64> {
    match field.first() {
        // GNU base-256: big-endian two's complement behind a marker bit (0x80, or 0xFF when negative).
        Some(&first) if first & 0x80 != 0 => {
            let negative = first & 0x40 != 0;
            let mut v: i128 = if negative { -1 } else { 0 };
            for (i, &b) in field.iter().enumerate() {
                let b = if i == 0 && !negative { b & 0x7F } else { b };
                v = (v << 8) | b as i128;
            }
            i64::try_from(v).ok()
        }
        _ => {
            let field = cstr(field);
            let start = field.iter().position(|&b| b != b' ').unwrap_or(field.len());
            let digits = field[start..].iter().take_while(|b| (b'0'..=b'7').contains(*b)).count();
            if !field[start + digits..].iter().all(|&b| b == 0 || b == b' ') {
                return None;
            }
            let mut v: i64 = 0;
            for &b in &field[start..start + digits] {
                v = v.checked_mul(8)?.checked_add((b - b'0') as i64)?;
            }
            Some(v)
        }
    }
}

pub(super) fn parse_num(field: &[u8]) -> Option<u64> {
    parse_signed(field).and_then(|v| u64::try_from(v).ok())
}

pub(super) fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// True when `block` is a plausible tar header (its checksum matches).
pub fn checksum_ok(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    let Some(stored) = parse_num(&block[148..156]) else { return false };
    let unsigned: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u64 })
        .sum();
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as i8 as i64 })
        .sum();
    stored == unsigned || stored as i64 == signed
}

pub(super) fn utf8_name(raw: &[u8], at: u64) -> Result<String> {
    String::from_utf8(raw.to_vec()).map_err(|_| Error::UnsafePath {
        entry: String::from_utf8_lossy(raw).into_owned(),
        reason: format!("(header at offset {at}) is not valid UTF-8"),
    })
}

/// PAX records in the order written: the sparse format 0.0 repeats its keys, and
/// order is what pairs each offset with its length.
#[derive(Default)]
pub(super) struct Pax(pub(super) Vec<(String, Vec<u8>)>);

impl Pax {
    /// The last value of `key` (POSIX: a later record overrides an earlier one).
    pub(super) fn get(&self, key: &str) -> Option<&[u8]> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }
    pub(super) fn number(&self, key: &str, entry: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or_else(|| Error::corrupt(Some(entry), format!("pax {key} is not a number")))
            })
            .transpose()
    }
    pub(super) fn any_sparse(&self) -> bool {
        self.0.iter().any(|(k, _)| k.starts_with("GNU.sparse."))
    }
}

/// Keys that change what an entry's bytes or name are: a global header that sets
/// one for every entry is refused by name rather than half applied.
pub(super) const GLOBAL_REFUSED: &[&str] = &["path", "size", "linkpath"];

/// A pax time ("1714979289.5" or "-12"): whole seconds, rounded down.
pub(super) fn pax_time(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let whole: i64 = s.split('.').next()?.parse().ok()?;
    let frac = s.split('.').nth(1).is_some_and(|f| f.bytes().any(|b| b != b'0'));
    Some(if whole < 0 && frac { whole - 1 } else { whole })
}

pub(super) fn parse_pax(data: &[u8], out: &mut Vec<(String, Vec<u8>)>) -> Option<()> {
    let mut rest = data;
    while !rest.is_empty() {
        // Some writers pad the record area with NULs.
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let sp = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp + 1 || len > rest.len() {
            return None;
        }
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n")?;
        let eq = record.iter().position(|&b| b == b'=')?;
        let key = std::str::from_utf8(&record[..eq]).ok()?;
        out.push((key.to_owned(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Some(())
}
