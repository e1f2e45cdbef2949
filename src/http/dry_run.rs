//! `POST /v1/jobs` with `"dry_run": true`: every source is indexed and
//! planned exactly as the job's PLAN would (manifest, file column, parts,
//! bytes), and every problem found is listed, each with its code and, for a
//! row, its manifest line. Nothing is written and no job is recorded: the
//! answer is the whole result. Rows whose file is missing are all listed (the
//! plan runs with `on_missing_file = skip` so one missing file does not hide
//! the next); under the job's own `fail` policy each is an error.

use serde::Serialize;
use serde_json::{json, Value};

use super::reply::{reply, Reply};
use super::Api;
use crate::split::{self, OnMissing};
use crate::store::jobs::Settings;

/// At most this many missing-file rows are listed per source (all are counted).
const LISTED: usize = 200;

#[derive(Serialize)]
struct Problem {
    code: String,
    message: String,
    /// `error`: the job would fail; `warning`: it would run, without these rows.
    severity: &'static str,
    line: Option<u64>,
    entry: Option<String>,
}

#[derive(Serialize)]
struct SourcePlan {
    path: String,
    kind: Option<Value>,
    manifest: Option<String>,
    file_column: Option<String>,
    rows: usize,
    missing_rows: usize,
    unreferenced_files: usize,
    bytes: u64,
    parts: Vec<Value>,
    problems: Vec<Problem>,
}

fn problem(e: &crate::Error, severity: &'static str) -> Problem {
    Problem {
        code: e.code().into(),
        message: e.to_string(),
        severity,
        line: e.line(),
        entry: e.entry().map(str::to_owned),
    }
}

impl Api {
    /// Plans every source with `settings`; parts would go to `out_dir`.
    pub(super) fn dry_run(&self, sources: &[String], settings: &Settings, out_dir: &std::path::Path) -> Reply {
        let plans: Vec<SourcePlan> = sources.iter().map(|s| self.plan_one(s, settings, out_dir)).collect();
        let errors = plans.iter().flat_map(|p| &p.problems).filter(|p| p.severity == "error").count();
        let warnings = plans.iter().flat_map(|p| &p.problems).filter(|p| p.severity == "warning").count();
        reply(
            200,
            json!({
                "dry_run": true,
                "ok": errors == 0,
                "errors": errors,
                "warnings": warnings,
                "rows": plans.iter().map(|p| p.rows).sum::<usize>(),
                "parts": plans.iter().map(|p| p.parts.len()).sum::<usize>(),
                "bytes": plans.iter().map(|p| p.bytes).sum::<u64>(),
                "settings": settings,
                "out_dir": out_dir,
                "sources": plans,
            }),
        )
    }

    fn plan_one(&self, source: &str, settings: &Settings, out_dir: &std::path::Path) -> SourcePlan {
        let mut opts = settings.split_options(source, &out_dir.to_string_lossy());
        opts.on_missing_file = OnMissing::Skip;
        opts.dry_run = true;
        let mut out = SourcePlan {
            path: source.to_owned(),
            kind: None,
            manifest: None,
            file_column: None,
            rows: 0,
            missing_rows: 0,
            unreferenced_files: 0,
            bytes: 0,
            parts: Vec::new(),
            problems: Vec::new(),
        };
        let (src, plan) = match split::plan(&opts) {
            Ok(r) => r,
            Err(e) => {
                out.problems.push(problem(&e, "error"));
                return out;
            }
        };
        out.kind = serde_json::to_value(src.kind).ok();
        out.manifest = Some(plan.manifest.display.clone());
        out.file_column = Some(plan.file_column.clone());
        out.rows = plan.rows;
        out.missing_rows = plan.skipped.len();
        out.unreferenced_files = plan.unreferenced.len();
        out.bytes = plan.parts.iter().map(|p| p.payload_bytes).sum();
        out.parts = plan
            .parts
            .iter()
            .map(|p| {
                json!({"n": p.n, "file_name": p.file_name, "rows": p.rows, "lines": [p.first_line, p.last_line],
                       "files": p.files.len(), "payload_bytes": p.payload_bytes,
                       "oversized": plan.oversized.contains(&p.n)})
            })
            .collect();
        let severity = if settings.on_missing_file == OnMissing::Fail {
            "error"
        } else {
            "warning"
        };
        for row in plan.skipped.iter().take(LISTED) {
            let e = crate::Error::MissingFile {
                manifest: plan.manifest.display.clone(),
                line: row.line,
                value: row.value.clone(),
            };
            out.problems.push(Problem {
                entry: Some(row.value.clone()),
                ..problem(&e, severity)
            });
        }
        for &n in &plan.oversized {
            out.problems.push(Problem {
                code: "PART_OVER_MAX_BYTES".into(),
                message: format!(
                    "part {n} holds one file larger than max_part_bytes ({} bytes); a file is never split, so it gets a part of its own",
                    settings.max_part_bytes.unwrap_or(0)
                ),
                severity: "warning",
                line: None,
                entry: None,
            });
        }
        out
    }
}
