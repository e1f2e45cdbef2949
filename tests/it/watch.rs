//! Watched inboxes with the real daemon and real files: each dropped archive is
//! one job, nothing is taken while it is still being written or under a temp
//! name, failures land in `failed/` with an error file, and files dropped while
//! the daemon is down are taken when it comes back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use batchd::config::{Duplicates, OnSuccess, Watch};
use serde_json::Value;

use crate::helper::daemon::{Api, Daemon, DaemonProcess};
use crate::helper::*;

fn watch(dir: &Path, settle: f64) -> Watch {
    Watch {
        settle_seconds: settle,
        batch_size: Some(2),
        ..Watch::new("in", dir.to_owned())
    }
}

fn small_zip(env: &Env, name: &str, rows: u64) -> PathBuf {
    env.archive("zip", name, &numbered(rows, 100))
}

fn jobs(d: &impl Api) -> Vec<Value> {
    d.get("/v1/jobs?limit=500").json["jobs"].as_array().cloned().unwrap_or_default()
}

fn ended(d: &impl Api, n: usize) -> bool {
    let j = jobs(d);
    j.len() == n && j.iter().all(|j| matches!(j["status"].as_str(), Some("COMPLETED" | "FAILED")))
}

/// For a `batchd serve` child process: its data dir, an inbox, and a config
/// file watching that inbox with `settle` seconds.
fn process_setup(env: &Env, settle: f64) -> (PathBuf, PathBuf, PathBuf) {
    let (data, dir, config) = (env.path("data"), env.path("inbox"), env.path("batchd.toml"));
    let toml = format!(
        "[[watch]]\nname = \"in\"\ndir = {:?}\nsettle_seconds = {settle}\n",
        dir.to_str().unwrap()
    );
    std::fs::write(&config, toml).unwrap();
    (data, dir, config)
}

/// Names directly in `dir`, without the `.batchd` bookkeeping directory.
fn inbox(dir: &Path) -> Vec<String> {
    listing(dir).into_iter().filter(|n| n != ".batchd").collect()
}

#[test]
fn renamed_into_the_inbox_becomes_one_job_and_leaves_it() {
    let env = Env::new();
    let dir = env.path("inbox");
    let d = Daemon::with(|c| c.watch = vec![watch(&dir, 0.5)]);
    // Written under temp names inside the inbox: never taken as they are.
    std::fs::copy(small_zip(&env, "a.zip", 5), dir.join(".a.zip.Xy12Ab")).unwrap();
    std::fs::copy(small_zip(&env, "b.zip", 3), dir.join("b.zip.partial")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(jobs(&d).is_empty(), "a temp name was taken");
    std::fs::rename(dir.join(".a.zip.Xy12Ab"), dir.join("a.zip")).unwrap();
    std::fs::rename(dir.join("b.zip.partial"), dir.join("b.zip")).unwrap();
    assert!(wait_for(|| ended(&d, 2), Duration::from_secs(20)), "{:?}", jobs(&d));
    for j in jobs(&d) {
        assert_eq!(j["status"], "COMPLETED", "{j}");
        assert_eq!(j["trigger"], "watch");
        assert_eq!(j["settings"]["batch_size"], 2);
    }
    assert!(wait_for(
        || inbox(&dir).is_empty() && listing(&dir.join(".batchd/done")).len() == 2,
        Duration::from_secs(5)
    ));
    assert_eq!(listing(&dir.join(".batchd/done")), vec!["a.zip", "b.zip"]);
    assert!(listing(&dir.join(".batchd/processing")).is_empty());
    // The same name dropped again later is a new job.
    std::fs::copy(small_zip(&env, "a2.zip", 4), dir.join("a.zip")).unwrap();
    assert!(wait_for(|| ended(&d, 3), Duration::from_secs(20)));
    // The watcher moves a source out on its next scan after the job ends.
    assert!(wait_for(|| listing(&dir.join(".batchd/done")).len() == 3, Duration::from_secs(5)));
    assert_eq!(listing(&dir.join(".batchd/done")), vec!["a.zip", "a.zip-2", "b.zip"]);
}

/// A writer pausing longer than half the settle time is not taken early.
#[test]
fn slow_writer_is_not_taken_before_it_is_done() {
    let env = Env::new();
    let dir = env.path("inbox");
    let d = Daemon::with(|c| c.watch = vec![watch(&dir, 1.2)]);
    // A TAR.GZ: there is no end record to wait for, only the settle time.
    let src = env.archive("tar.gz", "slow.tar.gz", &numbered(40, 5000));
    let data = std::fs::read(&src).unwrap();
    let mut f = std::fs::File::create(dir.join("slow.tar.gz")).unwrap();
    for chunk in data.chunks(data.len() / 3 + 1) {
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(800));
        assert!(jobs(&d).is_empty(), "taken while still being written");
    }
    drop(f);
    assert!(wait_for(|| ended(&d, 1), Duration::from_secs(20)));
    let j = &jobs(&d)[0];
    assert_eq!(j["status"], "COMPLETED", "{j}");
    assert_eq!(j["progress"]["processed"], 40);
}

#[test]
fn empty_and_truncated_archives_fail_into_the_failed_dir() {
    let env = Env::new();
    let dir = env.path("inbox");
    let d = Daemon::with(|c| c.watch = vec![watch(&dir, 0.3)]);
    std::fs::File::create(dir.join("empty.zip")).unwrap();
    let tgz = std::fs::read(env.archive("tar.gz", "t.tar.gz", &numbered(20, 5000))).unwrap();
    std::fs::write(dir.join("cut.tar.gz"), &tgz[..tgz.len() / 2]).unwrap();
    let zip = std::fs::read(small_zip(&env, "z.zip", 4)).unwrap();
    std::fs::write(dir.join("cut.zip"), &zip[..zip.len() - 30]).unwrap();
    // The truncated ZIP has no end record: taken after four settle times at most
    // (here the 5 s floor), then it fails like the others.
    assert!(wait_for(|| ended(&d, 3), Duration::from_secs(30)), "{:?}", jobs(&d));
    assert!(jobs(&d)
        .iter()
        .all(|j| j["status"] == "FAILED" && j["error"]["code"] == "ARCHIVE_CORRUPT"));
    assert!(wait_for(|| listing(&dir.join(".batchd/failed")).len() == 6, Duration::from_secs(5)));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(".batchd/failed/empty.zip.error.json")).unwrap()).unwrap();
    assert_eq!(report["error"]["code"], "ARCHIVE_CORRUPT");
    assert!(inbox(&dir).is_empty());
}

#[test]
fn symlinks_and_directories_are_left_alone() {
    let env = Env::new();
    let dir = env.path("inbox");
    let d = Daemon::with(|c| c.watch = vec![watch(&dir, 0.2)]);
    std::os::unix::fs::symlink(small_zip(&env, "real.zip", 2), dir.join("link.zip")).unwrap();
    std::fs::create_dir(dir.join("folder.zip")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not an archive name").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(jobs(&d).is_empty());
    assert_eq!(inbox(&dir), vec!["folder.zip", "link.zip", "notes.txt"]);
}

#[test]
fn files_dropped_while_the_daemon_is_down_are_taken_at_start() {
    let env = Env::new();
    let (data, dir, config) = process_setup(&env, 0.3);
    let d = DaemonProcess::start_with(&data, Some(&config));
    std::fs::copy(small_zip(&env, "one.zip", 3), dir.join("one.zip")).unwrap();
    assert!(wait_for(|| ended(&d, 1), Duration::from_secs(20)));
    assert_eq!(d.terminate().0, Some(0));
    for (name, rows) in [("two.zip", 4), ("three.zip", 5), ("four.zip", 6)] {
        std::fs::copy(small_zip(&env, name, rows), dir.join(name)).unwrap();
    }
    let d = DaemonProcess::start_with(&data, Some(&config));
    assert!(wait_for(|| ended(&d, 4), Duration::from_secs(20)), "{:?}", jobs(&d));
    assert!(jobs(&d).iter().all(|j| j["status"] == "COMPLETED"));
    assert!(inbox(&dir).is_empty());
    assert!(
        wait_for(|| listing(&dir.join(".batchd/done")).len() == 4, Duration::from_secs(5)),
        "{:?}",
        listing(&dir.join(".batchd/done"))
    );
}

/// Many files at once: exactly one job each, and how long from the last rename
/// to the last job QUEUED.
#[test]
fn many_files_dropped_at_once_make_one_job_each() {
    let env = Env::new();
    let dir = env.path("inbox");
    // One archive copied 2,000 times: the same content, so ingested again on purpose.
    let d = Daemon::with(|c| {
        c.watch = vec![Watch {
            duplicates: Duplicates::Ingest,
            ..watch(&dir, 0.5)
        }]
    });
    let src = small_zip(&env, "tiny.zip", 2);
    let stage = env.path("stage");
    std::fs::create_dir(&stage).unwrap();
    let n = 2000;
    for i in 0..n {
        std::fs::copy(&src, stage.join(format!("f{i:04}.zip"))).unwrap();
    }
    let started = Instant::now();
    for i in 0..n {
        std::fs::rename(stage.join(format!("f{i:04}.zip")), dir.join(format!("f{i:04}.zip"))).unwrap();
    }
    assert!(
        wait_for(|| inbox(&dir).is_empty(), Duration::from_secs(30)),
        "{} left",
        inbox(&dir).len()
    );
    eprintln!(
        "{n} files: all claimed and queued {:?} after the renames (settle 0.5 s)",
        started.elapsed()
    );
    let metrics = || d.get("/metrics").text;
    assert!(
        wait_for(
            || metrics().contains(&format!("batchd_jobs{{status=\"COMPLETED\"}} {n}")),
            Duration::from_secs(120)
        ),
        "{}",
        metrics()
    );
    assert!(wait_for(|| listing(&dir.join(".batchd/done")).len() == n, Duration::from_secs(10)));
}

/// A file deleted while it settles makes no job and no error; a file replaced
/// under the same name while it settles (a new inode) restarts the settle time
/// and the job sees only the new content.
#[test]
fn deleted_or_replaced_during_settle() {
    let env = Env::new();
    let dir = env.path("inbox");
    let d = Daemon::with(|c| c.watch = vec![watch(&dir, 1.0)]);
    std::fs::copy(small_zip(&env, "gone.zip", 3), dir.join("gone.zip")).unwrap();
    std::fs::copy(small_zip(&env, "first.zip", 3), dir.join("swap.zip")).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    std::fs::remove_file(dir.join("gone.zip")).unwrap();
    // Replace by rename: same name, another inode, other content (7 rows).
    std::fs::copy(small_zip(&env, "second.zip", 7), env.path("second-staged.zip")).unwrap();
    std::fs::rename(env.path("second-staged.zip"), dir.join("swap.zip")).unwrap();
    assert!(wait_for(|| ended(&d, 1), Duration::from_secs(20)), "{:?}", jobs(&d));
    std::thread::sleep(Duration::from_millis(1500));
    let all = jobs(&d);
    assert_eq!(all.len(), 1, "exactly one job: {all:?}");
    assert_eq!(all[0]["status"], "COMPLETED");
    assert_eq!(all[0]["progress"]["processed"], 7, "the job saw the replacement");
    assert!(listing(&dir.join(".batchd/failed")).is_empty());
}

/// Jobs of one watch share its `output_dir`; a job failing there removes its own
/// parts and nothing else.
#[test]
fn a_failed_job_removes_only_its_own_parts_from_a_shared_output_dir() {
    let env = Env::new();
    let dir = env.path("inbox");
    let out = env.path("parts");
    let d = Daemon::with(|c| {
        c.watch = vec![Watch {
            output_dir: Some(out.clone()),
            ..watch(&dir, 0.3)
        }]
    });
    std::fs::copy(small_zip(&env, "good.zip", 4), dir.join("good.zip")).unwrap();
    assert!(wait_for(|| ended(&d, 1), Duration::from_secs(20)));
    assert_eq!(listing(&out), vec!["good-part1.zip", "good-part2.zip"]);

    // Damage the data of the last file: planning succeeds, packing part 3 fails.
    let mut bad = std::fs::read(env.archive("zip", "bad.zip", &numbered(6, 3000))).unwrap();
    let needle = bytes(5, 3000);
    let at = bad.windows(64).position(|w| w == &needle[..64]).expect("file data present");
    bad[at + 10] ^= 0xFF;
    std::fs::write(dir.join("bad.zip"), bad).unwrap();
    assert!(wait_for(|| ended(&d, 2), Duration::from_secs(20)), "{:?}", jobs(&d));
    let failed = jobs(&d).into_iter().find(|j| j["status"] == "FAILED").expect("the bad drop failed");
    assert_eq!(failed["error"]["code"], "ARCHIVE_CORRUPT");
    assert_eq!(
        listing(&out),
        vec!["good-part1.zip", "good-part2.zip"],
        "the good job's parts stay; the bad job's are gone"
    );
}

/// The same name dropped again with other content is a new job, also when the
/// new file reuses the inode the first one freed (on_success = delete).
#[test]
fn same_name_again_with_other_content_and_a_reused_inode() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let dir = env.path("inbox");
    let d = Daemon::with(|c| {
        c.watch = vec![Watch {
            on_success: OnSuccess::Delete,
            ..watch(&dir, 0.3)
        }]
    });
    let mut inodes = Vec::new();
    for (round, rows) in [(1, 3), (2, 4), (3, 5)] {
        let staged = small_zip(&env, &format!("r{round}.zip"), rows);
        // Written in the inbox's filesystem under a temp name, then renamed.
        std::fs::copy(&staged, dir.join(".a.zip.tmp")).unwrap();
        inodes.push(std::fs::metadata(dir.join(".a.zip.tmp")).unwrap().ino());
        std::fs::rename(dir.join(".a.zip.tmp"), dir.join("a.zip")).unwrap();
        assert!(wait_for(|| ended(&d, round), Duration::from_secs(20)), "{:?}", jobs(&d));
        assert!(wait_for(|| inbox(&dir).is_empty(), Duration::from_secs(5)));
        assert_eq!(jobs(&d)[0]["progress"]["processed"], rows, "round {round} saw its own content");
    }
    eprintln!("inodes of the three a.zip: {inodes:?}");
    assert!(jobs(&d).iter().all(|j| j["status"] == "COMPLETED"));
}

/// One inode, two contents: a file rewritten in place while it settles is taken
/// with its final content. And a file that comes back with the very inode it was
/// claimed with (moved back from done/) is judged by content, not inode.
#[test]
fn the_same_inode_is_not_the_same_file() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let dir = env.path("inbox");
    let d = Daemon::with(|c| c.watch = vec![watch(&dir, 1.0)]);
    std::fs::copy(small_zip(&env, "three.zip", 3), dir.join("a.zip")).unwrap();
    let inode = std::fs::metadata(dir.join("a.zip")).unwrap().ino();
    std::thread::sleep(Duration::from_millis(500));
    // Truncate and rewrite in place: same inode, other content (6 rows).
    std::fs::write(dir.join("a.zip"), std::fs::read(small_zip(&env, "six.zip", 6)).unwrap()).unwrap();
    assert_eq!(std::fs::metadata(dir.join("a.zip")).unwrap().ino(), inode);
    assert!(wait_for(|| ended(&d, 1), Duration::from_secs(20)));
    assert_eq!(jobs(&d)[0]["progress"]["processed"], 6, "the final content");
    // Back from done/ with its original inode: the same content, so a duplicate.
    assert!(wait_for(|| listing(&dir.join(".batchd/done")) == ["a.zip"], Duration::from_secs(5)));
    std::fs::rename(dir.join(".batchd/done/a.zip"), dir.join("a.zip")).unwrap();
    assert_eq!(std::fs::metadata(dir.join("a.zip")).unwrap().ino(), inode);
    assert!(wait_for(
        || listing(&dir.join(".batchd/duplicates")).len() == 2,
        Duration::from_secs(10)
    ));
    assert_eq!(jobs(&d).len(), 1);
}

/// The same content under two names: the second is a duplicate (moved aside
/// with a report naming the first job), or a second job with duplicates = ingest.
#[test]
fn same_content_under_two_names() {
    let env = Env::new();
    let src = small_zip(&env, "x.zip", 3);
    for (policy, want_jobs) in [(Duplicates::Skip, 1), (Duplicates::Ingest, 2)] {
        let dir = env.path(&format!("inbox-{policy:?}"));
        let d = Daemon::with(|c| {
            c.watch = vec![Watch {
                duplicates: policy,
                ..watch(&dir, 0.3)
            }]
        });
        std::fs::copy(&src, dir.join("x.zip")).unwrap();
        assert!(wait_for(|| ended(&d, 1), Duration::from_secs(20)));
        let first = jobs(&d)[0]["id"].as_str().unwrap().to_owned();
        std::fs::copy(&src, dir.join("y.zip")).unwrap();
        assert!(wait_for(|| inbox(&dir).is_empty(), Duration::from_secs(10)));
        assert!(
            wait_for(|| ended(&d, want_jobs), Duration::from_secs(20)),
            "{policy:?}: {:?}",
            jobs(&d)
        );
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(jobs(&d).len(), want_jobs, "{policy:?}");
        let dups = listing(&dir.join(".batchd/duplicates"));
        if policy == Duplicates::Skip {
            assert_eq!(dups, ["y.zip", "y.zip.duplicate.json"]);
            let report: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(".batchd/duplicates/y.zip.duplicate.json")).unwrap()).unwrap();
            assert_eq!(report["duplicate_of"]["job_id"], first.as_str());
            assert_eq!(report["duplicate_of"]["name"], "x.zip");
            assert_eq!(
                std::fs::read(dir.join(".batchd/duplicates/y.zip")).unwrap(),
                std::fs::read(&src).unwrap()
            );
        } else {
            assert!(dups.is_empty(), "{dups:?}");
            assert!(wait_for(|| listing(&dir.join(".batchd/done")).len() == 2, Duration::from_secs(5)));
        }
    }
}

/// The daemon dies (abort: no cleanup, like SIGKILL) between each step of a
/// claim and of the hand-back; after a restart the file is in exactly one job,
/// which completes, and ends up in done/ exactly once.
#[cfg(feature = "failpoints")]
#[test]
fn killed_between_each_claim_step() {
    for point in [
        "watch.claim.recorded",
        "watch.claim.renamed",
        "watch.claim.synced",
        "watch.claim.queued",
        "watch.finalize.moved",
    ] {
        let env = Env::new();
        let (data, dir, config) = process_setup(&env, 0.2);
        let mut d = DaemonProcess::start_env(&data, Some(&config), &[("BATCHD_FAILPOINT", point)]);
        std::fs::copy(small_zip(&env, "a.zip", 3), dir.join("a.zip")).unwrap();
        assert!(d.wait_exit(Duration::from_secs(30)), "{point}: the failpoint was not reached");
        drop(d);
        let d = DaemonProcess::start_with(&data, Some(&config));
        assert!(wait_for(|| ended(&d, 1), Duration::from_secs(20)), "{point}: {:?}", jobs(&d));
        assert!(
            wait_for(|| listing(&dir.join(".batchd/done")) == ["a.zip"], Duration::from_secs(10)),
            "{point}: done/ {:?}",
            listing(&dir.join(".batchd/done"))
        );
        std::thread::sleep(Duration::from_millis(700));
        let all = jobs(&d);
        assert_eq!(all.len(), 1, "{point}: {all:?}");
        assert_eq!(all[0]["status"], "COMPLETED", "{point}");
        assert!(inbox(&dir).is_empty(), "{point}: {:?}", inbox(&dir));
        assert!(listing(&dir.join(".batchd/processing")).is_empty(), "{point}");
        assert!(listing(&dir.join(".batchd/failed")).is_empty(), "{point}");
        let parts = d.get(&format!("/v1/jobs/{}/parts", all[0]["id"].as_str().unwrap())).json;
        assert_eq!(parts["parts"].as_array().unwrap().len(), 1, "{point}: 3 rows, one part");
    }
}

/// Marker mode: a file is taken when NAME.done appears, however long the
/// settle time, and not before; the marker is removed.
#[test]
fn marker_files_say_when_a_file_is_ready() {
    let env = Env::new();
    let dir = env.path("inbox");
    let d = Daemon::with(|c| {
        c.watch = vec![Watch {
            marker: true,
            ..watch(&dir, 3600.0)
        }]
    });
    std::fs::copy(small_zip(&env, "a.zip", 3), dir.join("a.zip")).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(jobs(&d).is_empty(), "taken without its marker");
    std::fs::write(dir.join("a.zip.done"), b"").unwrap();
    assert!(wait_for(|| ended(&d, 1), Duration::from_secs(10)), "{:?}", jobs(&d));
    assert!(wait_for(|| inbox(&dir).is_empty(), Duration::from_secs(5)), "{:?}", inbox(&dir));
}

/// Filesystem events only hint: with `events = false` (as on a filesystem that
/// delivers none) the scan alone takes files, a marker drop and a settled one.
#[test]
fn an_inbox_without_events_is_still_scanned() {
    let env = Env::new();
    let (dir, other) = (env.path("inbox"), env.path("other"));
    let d = Daemon::with(|c| {
        c.watch = vec![
            Watch {
                marker: true,
                events: false,
                ..watch(&dir, 3600.0)
            },
            Watch {
                name: "other".into(),
                events: false,
                ..watch(&other, 0.5)
            },
        ]
    });
    std::fs::copy(small_zip(&env, "a.zip", 3), dir.join("a.zip")).unwrap();
    std::fs::write(dir.join("a.zip.done"), b"").unwrap();
    std::fs::copy(small_zip(&env, "b.zip", 4), other.join("b.zip")).unwrap();
    assert!(wait_for(|| ended(&d, 2), Duration::from_secs(20)), "{:?}", jobs(&d));
    assert!(wait_for(
        || inbox(&dir).is_empty() && inbox(&other).is_empty(),
        Duration::from_secs(10)
    ));
}

/// With `directories = true`, a dropped directory is one directory source: it
/// is taken only once nothing in its tree has changed for the settle time, it
/// moves to `done/` whole, and the same tree dropped again is a duplicate.
#[test]
fn directories_are_sources_when_configured() {
    let env = Env::new();
    let dir = env.path("inbox");
    let d = Daemon::with(|c| {
        c.watch = vec![Watch {
            directories: true,
            directory_pattern: "scan-*".into(),
            ..watch(&dir, 1.0)
        }]
    });
    let tree = env.archive("dir", "tree", &numbered(6, 2000));
    // Filled slowly: created empty, then one file at a time, each pause longer
    // than half the settle time. A file landing in a subdirectory counts too.
    let target = dir.join("scan-001");
    std::fs::create_dir(&target).unwrap();
    let mut names = listing(&tree);
    names.sort_by_key(|n| n != "manifest.csv");
    for name in &names {
        std::fs::copy(tree.join(name), target.join(name)).unwrap();
        std::thread::sleep(Duration::from_millis(700));
        assert!(jobs(&d).is_empty(), "taken while {name} was still arriving");
    }
    std::fs::create_dir(target.join("extra")).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    std::fs::write(target.join("extra/readme.txt"), "not in the manifest").unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(jobs(&d).is_empty(), "taken while its subdirectory was changing");
    // A directory not matching directory_pattern is left alone.
    std::fs::create_dir(dir.join("other")).unwrap();
    assert!(wait_for(|| ended(&d, 1), Duration::from_secs(20)), "{:?}", jobs(&d));
    let j = &jobs(&d)[0];
    assert_eq!(j["status"], "COMPLETED", "{j}");
    assert_eq!(j["progress"]["processed"], 6);
    assert!(j["sources"][0].as_str().unwrap().ends_with("/scan-001"), "{j}");
    let parts = inspect(&d.data_dir().join("parts").join(j["id"].as_str().unwrap()));
    assert_eq!(parts.parts.len(), 3);
    assert!(wait_for(
        || listing(&dir.join(".batchd/done")) == ["scan-001"],
        Duration::from_secs(5)
    ));
    assert_eq!(listing(&dir.join(".batchd/done/scan-001")).len(), 8, "moved whole");
    assert_eq!(inbox(&dir), vec!["other"]);
    // The same tree under another name: same content, so a duplicate.
    copy_tree(&dir.join(".batchd/done/scan-001"), &env.path("stage"));
    std::fs::rename(env.path("stage"), dir.join("scan-002")).unwrap();
    assert!(wait_for(
        || listing(&dir.join(".batchd/duplicates")).len() == 2,
        Duration::from_secs(20)
    ));
    assert_eq!(
        listing(&dir.join(".batchd/duplicates")),
        vec!["scan-002", "scan-002.duplicate.json"]
    );
    assert_eq!(jobs(&d).len(), 1);
    // One byte different somewhere in the tree: a new job.
    copy_tree(&dir.join(".batchd/done/scan-001"), &env.path("stage"));
    std::fs::write(env.path("stage/extra/readme.txt"), "changed").unwrap();
    std::fs::rename(env.path("stage"), dir.join("scan-003")).unwrap();
    assert!(wait_for(|| ended(&d, 2), Duration::from_secs(20)), "{:?}", jobs(&d));
    assert_eq!(inbox(&dir), vec!["other"]);
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

/// A watched file's job records where the file went; a failed one, fixed in
/// `failed/` and retried, moves on to `done/` and loses its error report.
/// `regex_filter` and `max_files` narrow what a watch takes.
#[test]
fn a_watched_files_job_records_where_it_went() {
    let env = Env::new();
    let dir = env.path("inbox");
    let d = Daemon::with(|c| {
        c.watch = vec![Watch {
            regex_filter: Some("/(good|bad|late).*\\.zip$".into()),
            max_files: Some(1),
            ..watch(&dir, 0.2)
        }]
    });
    let good = small_zip(&env, "good.zip", 3);
    let mut broken = numbered(3, 40);
    broken.retain(|e| e.name != "f2.bin");
    let bad = env.archive("zip", "bad.zip", &broken);
    std::fs::copy(&good, dir.join("good.zip")).unwrap();
    std::fs::copy(&bad, dir.join("bad.zip")).unwrap();
    std::fs::copy(&good, dir.join("other.zip")).unwrap();
    assert!(wait_for(|| ended(&d, 2), Duration::from_secs(20)), "{:?}", jobs(&d));
    // other.zip does not pass regex_filter: left where it is.
    assert_eq!(inbox(&dir), ["other.zip"]);
    let find = |name: &str| -> Value {
        let mut v = Value::Null;
        assert!(wait_for(
            || {
                v = jobs(&d).into_iter().find(|j| j["watched_file"]["name"] == name).unwrap_or_default();
                !v["watched_file"]["disposition"].is_null()
            },
            Duration::from_secs(5)
        ));
        v
    };
    let (g, b) = (find("good.zip"), find("bad.zip"));
    let done = dir.join(".batchd/done/good.zip");
    assert_eq!(g["watched_file"]["disposition"], "done", "{g}");
    assert_eq!(g["watched_file"]["path"], done.to_str().unwrap());
    assert_eq!(g["sources"][0], done.to_str().unwrap());
    let failed = dir.join(".batchd/failed/bad.zip");
    assert_eq!(
        (b["status"].as_str(), b["watched_file"]["disposition"].as_str()),
        (Some("FAILED"), Some("failed")),
        "{b}"
    );
    assert_eq!(b["sources"][0], failed.to_str().unwrap());
    let report = dir.join(".batchd/failed/bad.zip.error.json");
    assert!(report.exists());

    std::fs::copy(&good, &failed).unwrap();
    let id = b["id"].as_str().unwrap();
    assert_eq!(d.post(&format!("/v1/jobs/{id}/retry"), &serde_json::json!({})).status, 200);
    assert_eq!(d.wait_job(id, Duration::from_secs(30))["status"], "COMPLETED");
    let moved = dir.join(".batchd/done/bad.zip");
    assert!(wait_for(|| moved.exists(), Duration::from_secs(5)));
    assert!(!failed.exists() && !report.exists());
    // The move is recorded just after it is made.
    let mut b = Value::Null;
    assert!(
        wait_for(
            || {
                b = d.get(&format!("/v1/jobs/{id}")).json;
                (b["watched_file"]["disposition"].as_str(), b["sources"][0].as_str()) == (Some("done"), moved.to_str())
            },
            Duration::from_secs(5)
        ),
        "{b}"
    );
}
