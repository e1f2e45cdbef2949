//! File-system helpers shared by the splitter, the watcher, the daemon and the
//! API: a file's SHA-256 in hex, and fsync of a directory (so a rename is
//! durable). A leaf: depends only on the error type.

use std::fs::File;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hash_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(path, "opening", e))?;
    let mut sha = Sha256::new();
    io::copy(&mut f, &mut sha).map_err(|e| Error::io(path, "reading", e))?;
    Ok(hex(&sha.finalize()))
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "syncing directory", e))
}
