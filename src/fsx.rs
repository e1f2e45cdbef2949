//! File-system helpers shared by the splitter, the watcher, the daemon and the
//! API: a file's SHA-256 in hex, fsync of a directory (so a rename is
//! durable), and the free space where a directory is (or will be). A leaf:
//! depends only on the error type.

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

/// Bytes an unprivileged writer may still use on the file system that holds
/// `path`, or would hold it: the nearest existing ancestor is asked, since an
/// output directory is only created when its first part is written.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let mut at = path;
    while !at.exists() {
        at = at.parent().unwrap_or(Path::new("/"));
    }
    let c = std::ffi::CString::new(at.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: statvfs fills `st` when it returns 0; `c` is NUL-terminated.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: initialised by the successful call above.
    let st = unsafe { st.assume_init() };
    // The field types differ between libc targets.
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "syncing directory", e))
}
