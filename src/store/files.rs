/*!
Files of the data directory, by descriptor and never through a link: opening a package file,
`.cache/`, removing our temporary files, verifying `.packages/` on all cores.
*/

use super::index::Entry;
use crate::fsutil::TEMP_MARKER;
use crate::package::PackageInfo;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

impl Entry {
    /// Open the package file (never through a link), checking it is still the file this entry
    /// describes.
    pub fn open(&self) -> io::Result<File> {
        if self.remote.is_some() {
            // Its `path` is only a name: the package is an object (`reader`).
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the package is in the object store",
            ));
        }
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)?;
        if file.metadata()?.ino() != self.inode {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the package was replaced",
            ));
        }
        Ok(file)
    }

    /// A reader of the whole package: its file, or its object in the S3 store.
    pub fn reader(&self) -> io::Result<Box<dyn io::Read + Send>> {
        match &self.remote {
            Some(remote) => Ok(Box::new(remote.objects.reader(
                &remote.name,
                0,
                self.info.file_size,
            ))),
            None => Ok(Box::new(self.open()?)),
        }
    }
}

/// `.cache/`, opened by descriptor. Created when missing; a symbolic link in its place (which
/// would put our files elsewhere) is removed first.
pub(super) fn open_cache_dir(path: &Path) -> Result<crate::fsutil::Dir, String> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(path).map_err(|e| {
            format!(
                "{} is a symbolic link and cannot be removed: {e}",
                path.display()
            )
        })?;
    }
    match fs::create_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(format!("could not create {}: {e}", path.display()));
        }
        _ => {}
    }
    crate::fsutil::Dir::open(path).map_err(|e| format!("could not open {}: {e}", path.display()))
}

/// Open `path` for reading if it is a regular file, never following a link or blocking on a
/// FIFO.
pub fn open_regular(path: &Path) -> Result<File, String> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "not a package file (a symbolic link)".to_string(),
            _ => format!("could not open {}: {e}", display_name(path)),
        })?;
    let stat = crate::fsutil::stat_file(&file)
        .map_err(|e| format!("could not read {}: {e}", display_name(path)))?;
    if stat.kind != crate::fsutil::FileKind::Regular {
        return Err(format!("not a package file ({})", stat.kind.describe()));
    }
    Ok(file)
}

pub(super) fn new_entry(info: PackageInfo, path: PathBuf, metadata: &fs::Metadata) -> Entry {
    let modified = metadata.modified().unwrap_or(std::time::UNIX_EPOCH);
    Entry::new(info, path, metadata.ino(), modified)
}

/// Run `verify` over `files` on all cores, results in the same order.
pub(super) fn verify_in_parallel<T: Send>(
    files: &[PathBuf],
    verify: impl Fn(&Path) -> T + Sync,
) -> Vec<T> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<T>>> = files.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(i) else { break };
                    let result = verify(path);
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .filter_map(|slot| slot.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

/// Remove our temporary files in `dir`: all of them, or only those of process `pid`. Only
/// names exactly of our form (`TEMP_MARKER`, then `<pid>-<n>`) count, so no package file
/// (`<id>_<arch>.ampkg`, whatever the id) can ever be taken for one.
pub(super) fn remove_temp_files(dir: &Path, pid: Option<u32>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_MARKER)) else {
            continue;
        };
        let Some((owner, n)) = rest.split_once('-') else {
            continue;
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if digits(owner) && digits(n) && pid.is_none_or(|pid| owner == pid.to_string()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A file's name for messages.
pub fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
