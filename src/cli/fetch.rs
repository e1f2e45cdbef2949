//! `batchd fetch JOB [--out DIR]`: downloads every finished part of a job over
//! the API and checks each one's SHA-256 before it takes its name, so a file
//! under the part's name is always whole. A part already there with the right
//! hash is skipped; a broken download left as `NAME.partial` is resumed with a
//! `Range` request (`If-Range` on the part's ETag, so a part made again since
//! is fetched whole).

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use super::client::Client;
use super::serve::DaemonArgs;
use crate::store::model::PartState;
use crate::store::views::PartView;

#[derive(Debug, Args)]
pub struct FetchArgs {
    pub job: String,
    /// Where the parts go (created if missing; default: the current directory).
    #[arg(long, short, default_value = ".")]
    pub out: PathBuf,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

pub fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    let client = Client::connect(&args.daemon)?;
    let list = client.ok("GET", &format!("/v1/jobs/{}/parts", args.job), None)?;
    let parts: Vec<PartView> = serde_json::from_value(list["parts"].clone()).context("reading the daemon's part list")?;
    fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let (mut fetched, mut kept, mut waiting) = (0, 0, 0);
    for p in &parts {
        let (Some(sha), PartState::Done) = (p.sha256.as_deref(), p.state) else {
            waiting += 1;
            continue;
        };
        let name = Path::new(&p.path).file_name().context("a part path has a file name")?;
        let dest = args.out.join(name);
        if crate::fsx::hash_file(&dest).is_ok_and(|h| h == sha) {
            kept += 1;
            continue;
        }
        fetch_part(&client, &args.job, p, sha, &dest)?;
        fetched += 1;
        println!("{}  {} bytes  sha256 {}", dest.display(), p.bytes.unwrap_or(0), &sha[..16]);
    }
    println!("{fetched} part(s) fetched, {kept} already here and whole, {waiting} not written yet");
    if waiting > 0 {
        bail!(
            "{waiting} part(s) of job {} are not written yet; run `batchd fetch` again when it has ended",
            args.job
        );
    }
    Ok(())
}

/// Downloads one part to `dest` by way of `dest.partial`, resuming that file
/// when it is there, and checks the whole file's SHA-256 before the rename.
fn fetch_part(client: &Client, job: &str, p: &PartView, sha: &str, dest: &Path) -> anyhow::Result<()> {
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let have = fs::metadata(&partial).map_or(0, |m| m.len());
    let resume = have > 0 && p.bytes.is_some_and(|b| (have as i64) < b);
    let range = if resume {
        format!("Range: bytes={have}-\r\nIf-Range: \"{sha}\"\r\n")
    } else {
        String::new()
    };
    let path = format!("/v1/jobs/{job}/parts/{}.{}/content", p.source, p.n);
    let (status, _, mut body) = client.get_stream(&path, &range)?;
    // 206: the rest of what the partial file holds; 200: the whole part
    // (nothing to resume, or the part was made again since).
    let mut file = match status {
        206 if resume => OpenOptions::new().append(true).open(&partial),
        200 => fs::File::create(&partial),
        _ => {
            let mut text = String::new();
            let _ = body.read_to_string(&mut text);
            let why = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_default();
            bail!("fetching part {}.{} of job {job}: HTTP {status} {why}", p.source, p.n);
        }
    }
    .with_context(|| format!("opening {}", partial.display()))?;
    let expected = p.bytes.unwrap_or(0) as u64 - if status == 206 { have } else { 0 };
    let copied = std::io::copy(&mut body, &mut file).with_context(|| format!("writing {}", partial.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", partial.display()))?;
    if copied != expected {
        bail!(
            "the connection closed after {copied} of {expected} bytes of part {}.{}; run `batchd fetch` again to resume",
            p.source,
            p.n
        );
    }
    let got = crate::fsx::hash_file(&partial)?;
    if got != sha {
        let _ = fs::remove_file(&partial);
        bail!(
            "part {}.{} of job {job} arrived with SHA-256 {got}, not {sha}; run `batchd fetch` again",
            p.source,
            p.n
        );
    }
    fs::rename(&partial, dest).with_context(|| format!("renaming {} to {}", partial.display(), dest.display()))?;
    crate::fsx::sync_dir(dest.parent().unwrap_or(Path::new(".")))?;
    Ok(())
}
