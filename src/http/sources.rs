//! What a request may name on the daemon's disk: sources (which must exist
//! below an allowed root; a glob in the last component is expanded once, at
//! submit time, with `regex_filter` and `max_files`, and what it matched is
//! recorded) and an `output_dir` (below an allowed root too, created when
//! the job runs). `s3://` sources are checked (and prefixes expanded) in
//! the configured buckets by `crate::objects`.

use std::path::{Component, Path, PathBuf};

use super::reply::{fail, Reply};
use super::Api;
use crate::glob::Selection;

/// A glob, with what it matched.
pub(super) type Expanded = Vec<serde_json::Value>;

impl Api {
    fn roots_list(&self) -> String {
        self.roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    /// Sources with each glob replaced by its matches (sorted by name, narrowed
    /// by `regex_filter` and `max_files`); also what each glob matched.
    pub(super) fn expand_sources(
        &self,
        raw: &[String],
        regex_filter: Option<&str>,
        max_files: Option<usize>,
    ) -> Result<(Vec<String>, Expanded), Reply> {
        if max_files == Some(0) {
            return Err(fail(400, "BAD_REQUEST", "max_files must be at least 1"));
        }
        let selection = Selection::new(regex_filter, max_files).map_err(|e| fail(400, "BAD_REQUEST", format!("regex_filter: {e}")))?;
        let globs = raw
            .iter()
            .filter(|s| crate::glob::is_glob(s) || crate::objects::is_prefix(s))
            .count();
        if globs == 0 && (regex_filter.is_some() || max_files.is_some()) {
            return Err(fail(
                400,
                "BAD_REQUEST",
                "regex_filter and max_files narrow glob sources (e.g. /data/exports/*.zip); no source is a glob",
            ));
        }
        let (mut out, mut expanded) = (Vec::new(), Vec::new());
        for s in raw {
            // A bucket prefix or a path glob: expanded now, the matches recorded.
            let found = if crate::objects::is_prefix(s) {
                let found = crate::objects::expand(&self.config, s, &selection).map_err(|e| fail(400, "SOURCE_NOT_FOUND", e))?;
                if found.is_empty() {
                    return Err(fail(
                        400,
                        "SOURCE_NOT_FOUND",
                        format!("{s} holds no archive (.zip, .tar, .tar.gz, .tgz) that regex_filter and max_files admit"),
                    ));
                }
                found
            } else if crate::glob::is_glob(s) {
                let found = crate::glob::expand(Path::new(s), &selection)
                    .map_err(|e| fail(400, "SOURCE_NOT_FOUND", format!("{s}: listing its directory: {e}")))?;
                if found.is_empty() {
                    return Err(fail(
                        400,
                        "SOURCE_NOT_FOUND",
                        format!(
                            "{s} matched no file{}",
                            if regex_filter.is_some() { " that regex_filter admits" } else { "" }
                        ),
                    ));
                }
                found.iter().map(|p| p.to_string_lossy().into_owned()).collect()
            } else {
                out.push(s.clone());
                continue;
            };
            expanded.push(serde_json::json!({"glob": s, "regex_filter": regex_filter, "max_files": max_files, "matched": found}));
            out.extend(found);
        }
        Ok((out, expanded))
    }

    /// An `output_dir` of a request: absolute, without `..`, and below an
    /// allowed root (judged by its nearest existing ancestor, symlinks resolved).
    pub(super) fn check_output_dir(&self, dir: &str) -> Result<PathBuf, Reply> {
        let path = Path::new(dir);
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return Err(fail(
                400,
                "BAD_REQUEST",
                format!("output_dir {dir:?} must be an absolute path without .."),
            ));
        }
        let mut existing = path;
        let mut rest = Vec::new();
        while !existing.exists() {
            rest.push(existing.file_name().unwrap_or_default().to_owned());
            existing = existing.parent().unwrap_or(Path::new("/"));
        }
        let mut canon = std::fs::canonicalize(existing).map_err(|e| fail(400, "BAD_REQUEST", format!("output_dir {dir}: {e}")))?;
        if !canon.is_dir() {
            return Err(fail(
                400,
                "BAD_REQUEST",
                format!("output_dir {dir}: {} is not a directory", canon.display()),
            ));
        }
        canon.extend(rest.iter().rev());
        if !self.roots.iter().any(|r| canon.starts_with(r)) {
            return Err(fail(
                403,
                "FORBIDDEN_PATH",
                format!(
                    "output_dir {} is outside the allowed roots ({}); add it to http.allowed_roots",
                    canon.display(),
                    self.roots_list()
                ),
            ));
        }
        Ok(canon)
    }

    /// Resolves and checks a source path: it must exist and lie below an allowed root.
    pub(super) fn check_source(&self, p: &str) -> Result<String, Reply> {
        if crate::objects::is_s3(p) {
            crate::objects::check(&self.config, p).map_err(|e| fail(400, "SOURCE_NOT_FOUND", e))?;
            return Ok(p.to_owned());
        }
        let canon = std::fs::canonicalize(p).map_err(|e| fail(400, "SOURCE_NOT_FOUND", format!("{p}: {e}")))?;
        if !self.roots.iter().any(|r| canon.starts_with(r)) {
            return Err(fail(
                403,
                "FORBIDDEN_PATH",
                format!(
                    "{} is outside the allowed roots ({}); add its directory to http.allowed_roots",
                    canon.display(),
                    self.roots_list()
                ),
            ));
        }
        Ok(canon.to_string_lossy().into_owned())
    }

    pub(super) fn check_sources(&self, paths: &[String], existing: &[String]) -> Result<Vec<String>, Reply> {
        let checked = paths.iter().map(|p| self.check_source(p)).collect::<Result<Vec<_>, _>>()?;
        let mut stems = std::collections::HashSet::new();
        for p in existing.iter().chain(&checked) {
            if !stems.insert(crate::split::source::stem(Path::new(p))) {
                return Err(fail(
                    400,
                    "DUPLICATE_SOURCE",
                    format!(
                        "two sources of one job would write parts named {}-part*.zip; submit them as separate jobs",
                        crate::split::source::stem(Path::new(p))
                    ),
                ));
            }
        }
        Ok(checked)
    }
}
