//! File-name globs for watched inboxes, schedules, campaigns and glob
//! sources: `*`, `?` and `{a,b}` alternatives, matched against a name (not a
//! path); and [`Selection`], the `regex_filter` and `max_files` that narrow a
//! listing the same way wherever files are chosen. A leaf: depends on nothing
//! of ours.

use std::path::{Path, PathBuf};

/// What narrows a listing of files: a regular expression the full path must
/// match (anywhere in it; anchor with `^…$`), then the first `max_files` by name.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub regex: Option<regex::Regex>,
    pub max_files: Option<usize>,
}

impl Selection {
    /// Compiles `regex_filter`; the error says what is wrong with it.
    pub fn new(regex_filter: Option<&str>, max_files: Option<usize>) -> Result<Selection, String> {
        let regex = regex_filter
            .map(|r| regex::RegexBuilder::new(r).size_limit(1 << 20).build().map_err(|e| e.to_string()))
            .transpose()?;
        Ok(Selection { regex, max_files })
    }

    /// True when `path` passes the regular expression (if any).
    pub fn admits(&self, path: &Path) -> bool {
        self.regex.as_ref().is_none_or(|r| r.is_match(&path.to_string_lossy()))
    }

    /// Of `paths` sorted by name: those the expression admits, at most `max_files`.
    pub fn apply(&self, mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
        paths.sort();
        paths.retain(|p| self.admits(p));
        if let Some(n) = self.max_files {
            paths.truncate(n);
        }
        paths
    }
}

/// True when the last component of `path` is a glob (holds `*`, `?` or `{`).
pub fn is_glob(path: &str) -> bool {
    Path::new(path)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains(['*', '?', '{']))
}

/// The regular files and directories in the directory of `pattern` whose name
/// matches its last component, hidden names left out, narrowed by `selection`.
/// Only the last component may be a glob: a source is chosen in one directory.
pub fn expand(pattern: &Path, selection: &Selection) -> std::io::Result<Vec<PathBuf>> {
    let dir = pattern.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let glob = pattern.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut found = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !glob_match(&glob, &name) {
            continue;
        }
        let kind = item.file_type()?;
        if kind.is_file() || kind.is_dir() {
            found.push(item.path());
        }
    }
    Ok(selection.apply(found))
}

/// Glob match on a file name: `*`, `?` and `{a,b}` alternatives.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if let (Some(open), Some(close)) = (pattern.find('{'), pattern.find('}')) {
        if open < close {
            let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
            return pattern[open + 1..close]
                .split(',')
                .any(|alt| glob_match(&format!("{head}{alt}{tail}"), name));
        }
    }
    fn rec(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => rec(&p[1..], n) || (!n.is_empty() && rec(p, &n[1..])),
            (Some(b'?'), Some(_)) => rec(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &n[1..]),
            _ => false,
        }
    }
    rec(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_marks_and_alternatives() {
        for n in ["a.zip", "b.tar.gz", "c.tgz", "d.tar"] {
            assert!(glob_match("*.{zip,tar,tar.gz,tgz}", n), "{n}");
        }
        assert!(!glob_match("*.{zip,tar}", "x.zip.part"));
        assert!(glob_match("scan-??.zip", "scan-01.zip"));
    }
}
