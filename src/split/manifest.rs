//! The manifest: finding it in a source, parsing it as CSV (BOM, CRLF and quoted
//! fields with commas, quotes and newlines are all valid), keeping each row's exact
//! bytes so parts carry the rows as they were written, and synthesising a
//! `path,bytes` manifest for sources that have none.
//!
//! Memory: a row is 16 bytes (its line and where its bytes are) beside the
//! manifest's own bytes; fields are not kept but parsed again when a column is
//! needed ([`Manifest::each_record`]). Keeping a `csv::ByteRecord` per row cost
//! about 240 bytes a row, 48 MB of the 136 MiB a 200,000-row split used.

use super::names;
use super::source::Entry;
use crate::error::{Error, Result};

/// One data row: where its raw bytes are (without the line end).
#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based line where the row starts (the header is line 1).
    pub line: u64,
    start: u32,
    end: u32,
}

impl Row {
    pub fn raw(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

#[derive(Debug)]
pub struct Manifest {
    /// Entry name in the source, or `None` when synthesised.
    pub entry: Option<String>,
    /// Name used in messages.
    pub display: String,
    /// Directory of the manifest inside the source ("" or "folder/"): file values are
    /// relative to it and the part mirrors the layout below it.
    pub root: String,
    /// The bytes of the manifest (BOM included if it had one).
    pub data: std::sync::Arc<[u8]>,
    /// The header line as written (BOM included, line end excluded).
    pub header: std::ops::Range<usize>,
    pub headers: Vec<String>,
    /// "\r\n" or "\n", as the header line uses.
    pub line_end: &'static [u8],
    pub rows: Vec<Row>,
}

/// Where a manifest named `name` may be: at the top, or under exactly one
/// top-level folder; a name with a slash is an exact path.
pub fn is_candidate(entry: &str, name: &str) -> bool {
    if name.contains('/') {
        return entry == name.trim_start_matches("./");
    }
    entry == name || (names::basename(entry) == name && entry.matches('/').count() == 1)
}

/// Picks the manifest among the source's entries.
pub fn locate(entries: &[Entry], name: &str) -> Result<Option<usize>> {
    let found: Vec<usize> = (0..entries.len()).filter(|&i| is_candidate(&entries[i].name, name)).collect();
    if let Some(&top) = found.iter().find(|&&i| !entries[i].name.contains('/') || name.contains('/')) {
        return Ok(Some(top));
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        _ => Err(Error::ManifestAmbiguous {
            found: found.iter().map(|&i| entries[i].name.clone()).collect(),
        }),
    }
}

impl Manifest {
    /// Takes the bytes shared, so a source that captured them keeps no copy.
    pub fn parse(entry: &str, data: impl Into<std::sync::Arc<[u8]>>) -> Result<Manifest> {
        let data: std::sync::Arc<[u8]> = data.into();
        let display = entry.to_owned();
        if data.len() > u32::MAX as usize {
            return Err(Error::ManifestInvalid {
                manifest: display,
                line: 1,
                detail: "a manifest over 4 GiB is not supported".into(),
            });
        }
        let bom = if data.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
        // The csv crate may report a record as starting on the previous line's
        // '\n' (after a CRLF), so offsets and physical line numbers are derived
        // from the bytes: skip line ends, count '\n's.
        let mut lines = LineCounter {
            data: &data,
            at: 0,
            line: 1,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(false)
            .from_reader(&data[bom..]);
        let mut rec = csv::ByteRecord::new();
        let mut records: Vec<(u64, usize)> = Vec::new();
        let mut headers: Vec<String> = Vec::new();
        loop {
            match reader.read_byte_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {
                    let byte = rec.position().map_or(0, |p| p.byte()) as usize + bom;
                    let (start, line) = lines.locate(byte);
                    if rec.iter().any(|f| std::str::from_utf8(f).is_err()) {
                        return Err(Error::ManifestNotUtf8 { manifest: display, line });
                    }
                    if records.is_empty() {
                        headers = rec.iter().map(|h| String::from_utf8_lossy(h).trim().to_owned()).collect();
                    }
                    records.push((line, start));
                }
                Err(e) => {
                    let line = e.position().map_or(lines.line, |p| lines.locate(p.byte() as usize + bom).1);
                    return Err(match e.kind() {
                        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => Error::ManifestRagged {
                            manifest: display,
                            line,
                            expected: *expected_len,
                            found: *len,
                        },
                        other => Error::ManifestInvalid {
                            manifest: display,
                            line,
                            detail: format!("{other:?}"),
                        },
                    });
                }
            }
        }
        if records.is_empty() {
            return Err(Error::ManifestEmpty {
                manifest: display,
                detail: "is empty (no header line)".into(),
            });
        }
        if records.len() == 1 {
            return Err(Error::ManifestEmpty {
                manifest: display,
                detail: "has a header but no rows".into(),
            });
        }
        let mut ends: Vec<usize> = records.iter().skip(1).map(|r| r.1).collect();
        ends.push(data.len());
        let trim = |mut end: usize, start: usize| {
            while end > start && matches!(data[end - 1], b'\r' | b'\n') {
                end -= 1;
            }
            end
        };
        let header_end = trim(ends[0], 0);
        let line_end: &'static [u8] = if data[header_end..].starts_with(b"\r\n") { b"\r\n" } else { b"\n" };
        let rows = records
            .into_iter()
            .enumerate()
            .skip(1)
            .map(|(i, (line, start))| Row {
                line,
                start: start as u32,
                end: trim(ends[i], start) as u32,
            })
            .collect();
        Ok(Manifest {
            entry: Some(entry.to_owned()),
            display,
            root: names::dirname(entry).to_owned(),
            data,
            header: 0..header_end,
            headers,
            line_end,
            rows,
        })
    }

    /// A manifest for a source without one: a `path,bytes` row per regular file.
    pub fn synthesise(files: &[&Entry]) -> Result<Manifest> {
        if files.is_empty() {
            return Err(Error::ManifestEmpty {
                manifest: "(synthesised manifest)".into(),
                detail: "has no rows because the source holds no files".into(),
            });
        }
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        w.write_record(["path", "bytes"]).expect("writing to memory");
        for f in files {
            w.write_record([f.name.as_bytes(), f.size.to_string().as_bytes()])
                .expect("writing to memory");
        }
        let data = w.into_inner().expect("writing to memory");
        let mut m = Manifest::parse("manifest.csv", data)?;
        m.entry = None;
        m.display = "(synthesised manifest)".into();
        Ok(m)
    }

    /// The file name the manifest gets inside each part.
    pub fn part_name(&self) -> &str {
        self.entry.as_deref().map_or("manifest.csv", names::basename)
    }

    /// The bytes of a part's manifest: the header line, then these rows, each ending
    /// with the header's line end.
    pub fn part_bytes<'a>(&self, rows: impl Iterator<Item = &'a Row>) -> Vec<u8> {
        let mut out = self.data[self.header.clone()].to_vec();
        out.extend_from_slice(self.line_end);
        for r in rows {
            out.extend_from_slice(&self.data[r.raw()]);
            out.extend_from_slice(self.line_end);
        }
        out
    }

    /// Parses the rows again, calling `f` with each row's index and fields, in
    /// order. The first parse (in [`Manifest::parse`]) already validated them.
    pub fn each_record(&self, mut f: impl FnMut(usize, &csv::ByteRecord)) {
        let bom = if self.data.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(false)
            .from_reader(&self.data[bom..]);
        let mut rec = csv::ByteRecord::new();
        let mut i = 0usize;
        while let Ok(true) = reader.read_byte_record(&mut rec) {
            if i > 0 {
                f(i - 1, &rec);
            }
            i += 1;
        }
    }

    /// The column index of `name`, or the missing-column error listing the headers.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::ManifestMissingColumn {
                manifest: self.display.clone(),
                column: name.to_owned(),
                headers: self.headers.clone(),
            })
    }
}

/// Maps byte offsets (visited in increasing order) to the start of the record's
/// text and its 1-based physical line.
struct LineCounter<'a> {
    data: &'a [u8],
    at: usize,
    line: u64,
}

impl LineCounter<'_> {
    fn locate(&mut self, byte: usize) -> (usize, u64) {
        let mut start = byte.min(self.data.len());
        while start < self.data.len() && matches!(self.data[start], b'\r' | b'\n') {
            start += 1;
        }
        if start >= self.at {
            self.line += self.data[self.at..start].iter().filter(|&&b| b == b'\n').count() as u64;
            self.at = start;
        }
        (start, self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_raw_rows_with_bom_crlf_and_quotes() {
        let data = b"\xEF\xBB\xBFid,file,note\r\n1,a.jpg,\"x, \"\"y\"\"\r\nz\"\r\n2,b.jpg,plain\r\n".to_vec();
        let m = Manifest::parse("export/manifest.csv", data).unwrap();
        assert_eq!(m.headers, ["id", "file", "note"]);
        assert_eq!(m.root, "export/");
        assert_eq!(m.rows.len(), 2);
        assert_eq!(m.rows[0].line, 2);
        assert_eq!(m.rows[1].line, 4);
        let mut notes = Vec::new();
        m.each_record(|_, r| notes.push(r[2].to_vec()));
        assert_eq!(notes[0], b"x, \"y\"\r\nz");
        let part = m.part_bytes(m.rows[1..].iter());
        assert_eq!(part, b"\xEF\xBB\xBFid,file,note\r\n2,b.jpg,plain\r\n");
    }

    #[test]
    fn ragged_and_empty_are_errors() {
        let e = Manifest::parse("m.csv", b"a,b\n1,2\n3\n".to_vec()).unwrap_err();
        assert_eq!((e.code(), e.line()), ("MANIFEST_RAGGED", Some(3)));
        let e = Manifest::parse("m.csv", b"a,b\r\n1,2\r\n\"x\ny\",2\r\n3\r\n".to_vec()).unwrap_err();
        assert_eq!((e.code(), e.line()), ("MANIFEST_RAGGED", Some(5)));
        assert_eq!(Manifest::parse("m.csv", b"a,b\n".to_vec()).unwrap_err().code(), "MANIFEST_EMPTY");
        let e = Manifest::parse("m.csv", b"a,b\n1,\xff\n".to_vec()).unwrap_err();
        assert_eq!((e.code(), e.line()), ("MANIFEST_NOT_UTF8", Some(2)));
    }
}
