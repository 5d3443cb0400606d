/*!
The data directory's `.lock`: one server per data directory. An flock on a plain file, taken
and released without races (a stopping server unlinks the file while it still holds the
lock; a starting one checks that the file it locked is still `.lock`).
*/

use super::LOCK_FILE;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Holds the data directory's `.lock` (an flock, released by the kernel if we die).
pub struct DirLock {
    path: PathBuf,
    _file: File,
}

impl DirLock {
    /// Lock `data_dir`, or explain who holds it. The lock file is opened without following
    /// a link and must be a regular file with no other name, so a symbolic or hard link
    /// planted as `.lock` can never make us truncate or overwrite a file elsewhere.
    pub fn acquire(data_dir: &Path) -> Result<DirLock, String> {
        // A server that stops unlinks `.lock` while it still holds it: the file we locked may
        // be unlinked by then, so we check that it is still `.lock`, else try again.
        for _ in 0..100 {
            if let Some(lock) = DirLock::try_acquire(data_dir)? {
                return Ok(lock);
            }
        }
        Err(format!(
            "could not lock the data directory {}: its .lock file keeps being replaced",
            data_dir.display()
        ))
    }

    /// One attempt: `None` when the file locked was no longer `.lock`.
    fn try_acquire(data_dir: &Path) -> Result<Option<DirLock>, String> {
        let path = data_dir.join(LOCK_FILE);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => format!(
                    "the lock file {} is a symbolic link: remove it",
                    path.display()
                ),
                _ => format!("could not create the lock file {}: {e}", path.display()),
            })?;
        let stat = crate::fsutil::stat_file(&file)
            .map_err(|e| format!("could not read the lock file {}: {e}", path.display()))?;
        if stat.kind != crate::fsutil::FileKind::Regular || stat.nlink != 1 {
            return Err(format!(
                "the lock file {} is not a plain file (it is {} with {} names): remove it",
                path.display(),
                stat.kind.describe(),
                stat.nlink
            ));
        }
        if file.try_lock().is_err() {
            let pid = std::io::read_to_string(&file).unwrap_or_default();
            return Err(format!(
                "could not lock the data directory {} - there is an existing .lock file (belonging to pid {})",
                data_dir.display(),
                pid.trim()
            ));
        }
        let still_there =
            fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == stat.ino && m.dev() == stat.dev);
        if !still_there {
            return Ok(None);
        }
        use std::io::Write;
        let _ = file.set_len(0);
        let _ = write!(file, "{}", std::process::id());
        Ok(Some(DirLock { path, _file: file }))
    }
}

impl Drop for DirLock {
    /// Remove the lock file while still holding its lock (the lock goes with the descriptor,
    /// closed after this): a server that opened it meanwhile sees that its file is no longer
    /// `.lock` once it gets the lock (`acquire`).
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
