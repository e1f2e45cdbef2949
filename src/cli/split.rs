//! `batchd split`: the one-shot splitter, with a progress bar on a terminal and a
//! JSON summary for scripts.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::signals::INTERRUPTED;
use crate::split::{self, Compression, OnMissing, Progress, SplitOptions, Summary};
use crate::text::{human_bytes, thousands};

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// A .zip, .tar, .tar.gz/.tgz or a directory (the kind is read from the content).
    pub source: PathBuf,
    /// Directory for the parts (created if missing).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Manifest rows per part.
    #[arg(long, short = 'n', default_value_t = split::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// A part closes before its files would pass this many bytes (a single
    /// larger file gets a part of its own); with --batch-size, whichever comes first.
    #[arg(long)]
    pub max_part_bytes: Option<u64>,
    /// Manifest file name (at the top of the source or under one top-level folder).
    #[arg(long, default_value = split::DEFAULT_MANIFEST)]
    pub manifest: String,
    /// Manifest column that names the files (detected when not given).
    #[arg(long)]
    pub file_column: Option<String>,
    /// How new entries are written; entries of a ZIP source are always copied as they are.
    #[arg(long, value_enum, default_value_t = Compression::Stored)]
    pub compression: Compression,
    /// What to do with a row whose file is not in the source.
    #[arg(long, value_enum, default_value_t = OnMissing::Fail)]
    pub on_missing_file: OnMissing,
    /// Parts packed in parallel (default: number of cores).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Validate and print the plan without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Print a JSON summary (or a JSON error) on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: SplitArgs) -> anyhow::Result<()> {
    let mut opts = SplitOptions::new(&args.source, &args.out);
    opts.batch_size = args.batch_size;
    opts.max_part_bytes = args.max_part_bytes;
    opts.manifest = args.manifest.clone();
    opts.file_column = args.file_column.clone();
    opts.compression = args.compression;
    opts.on_missing_file = args.on_missing_file;
    if let Some(j) = args.jobs {
        opts.jobs = j.max(1);
    }
    opts.dry_run = args.dry_run;

    crate::signals::install_interrupt_handler();
    let progress = Arc::new(Progress::default());
    let show_bar = !args.json && std::io::stderr().is_terminal();
    let watcher = {
        let progress = Arc::clone(&progress);
        std::thread::spawn(move || watch(&progress, show_bar))
    };
    let result = split::split(&opts, &progress);
    progress.parts_done.store(u64::MAX, Ordering::SeqCst); // tells the watcher to stop
    let _ = watcher.join();

    match result {
        Ok(summary) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print_summary(&summary);
            }
            Ok(())
        }
        Err(err) => {
            if args.json {
                let body = serde_json::json!({"error": {
                    "code": err.code(), "message": err.to_string(), "entry": err.entry(), "line": err.line()
                }});
                println!("{}", serde_json::to_string_pretty(&body)?);
            }
            Err(err.into())
        }
    }
}

/// Forwards Ctrl-C to the split and draws the bar until the split is done.
fn watch(progress: &Progress, show_bar: bool) {
    let bar = show_bar.then(indicatif::ProgressBar::no_length);
    // Until the total is known (a TAR.GZ learns it only at its end) there is no bar
    // to fill and no ETA, just what has been done and how fast.
    let unknown = indicatif::ProgressStyle::with_template("{spinner} {bytes} {binary_bytes_per_sec} {msg}").expect("valid template");
    let known =
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> ");
    let mut has_total = false;
    if let Some(bar) = &bar {
        bar.set_style(unknown);
    }
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            progress.cancel.store(true, Ordering::SeqCst);
        }
        let parts_done = progress.parts_done.load(Ordering::SeqCst);
        if parts_done == u64::MAX {
            break;
        }
        if let Some(bar) = &bar {
            let total = progress.total_bytes.load(Ordering::Relaxed);
            if total > 0 && !has_total {
                has_total = true;
                bar.set_style(known.clone());
            }
            if has_total {
                bar.set_length(total);
            }
            bar.set_position(progress.bytes_done.load(Ordering::Relaxed));
            bar.set_message(format!(
                "{}/{} rows, {}/{} parts",
                thousands(progress.rows_done.load(Ordering::Relaxed)),
                thousands(progress.total_rows.load(Ordering::Relaxed)),
                parts_done,
                progress.total_parts.load(Ordering::Relaxed)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn print_summary(s: &Summary) {
    let verb = if s.dry_run { "Would split" } else { "Split" };
    println!(
        "{verb} {} ({}) by {}, file column {:?}: {} rows into {} part(s) of up to {} rows in {}",
        s.source.display(),
        serde_json::to_value(s.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        s.manifest,
        s.file_column,
        thousands(s.rows as u64),
        s.parts.len(),
        thousands(s.batch_size as u64),
        s.out.display()
    );
    for p in &s.parts {
        let name = p.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let state = if s.dry_run {
            String::new()
        } else if p.kept {
            "  kept (already complete)".into()
        } else {
            String::new()
        };
        let sha = p.sha256.as_deref().map(|h| format!("  sha256 {}", &h[..16])).unwrap_or_default();
        println!(
            "  {name}  {} rows (lines {}-{})  {} files  {}{sha}{state}",
            thousands(p.rows as u64),
            p.lines[0],
            p.lines[1],
            thousands(p.files as u64),
            human_bytes(p.bytes)
        );
    }
    if s.skipped_rows > 0 {
        let lines: Vec<String> = s.skipped.iter().take(10).map(|r| r.line.to_string()).collect();
        println!(
            "note: {} row(s) skipped because their file is not in the source (lines {}{})",
            s.skipped_rows,
            lines.join(", "),
            if s.skipped_rows > 10 { ", …" } else { "" }
        );
    }
    if !s.oversized_parts.is_empty() {
        let list: Vec<String> = s.oversized_parts.iter().map(|n| n.to_string()).collect();
        println!(
            "note: part(s) {} hold a single file larger than --max-part-bytes {} (a file is never split)",
            list.join(", "),
            s.max_part_bytes.map(human_bytes).unwrap_or_default()
        );
    }
    if s.unreferenced_files > 0 {
        println!(
            "note: {} file(s) are named by no manifest row and were not packed: {}{}",
            s.unreferenced_files,
            s.unreferenced.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            if s.unreferenced_files > 5 { ", …" } else { "" }
        );
    }
    if !s.dry_run {
        println!("Done: {} in {:.1} s", human_bytes(s.bytes), s.seconds);
    }
}
