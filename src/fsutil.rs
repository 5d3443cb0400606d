/*!
Files that appear complete or not at all.

Packages and packager outputs are written to a temporary file beside their destination, synced,
and renamed into place; a crash at any moment leaves either the old file or the new one, plus at
most a temporary file whose name marks it as ours (`TEMP_MARKER`) so a later start can remove it.
*/

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Every temporary file we create has this in its name.
pub const TEMP_MARKER: &str = ".amps-tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary file in `dir`, removed on drop unless persisted.
pub struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    /// Create a new temporary file in `dir`.
    pub fn new_in(dir: &Path) -> io::Result<TempFile> {
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{TEMP_MARKER}{}-{n}", std::process::id()));
            match File::options()
                .write(true)
                .read(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file,
                        persisted: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (for writing, or reading back after a seek).
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Sync the file and rename it to `destination` (replacing it), then sync the directory.
    pub fn persist(mut self, destination: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        fs::rename(&self.path, destination)?;
        self.persisted = true;
        if let Some(parent) = destination.parent() {
            // Directory sync makes the rename durable; not all file systems support it.
            let _ = File::open(parent).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Write `path` atomically with what `write` produces.
pub fn write_atomically<E: From<io::Error>>(
    path: &Path,
    write: impl FnOnce(&mut TempFile) -> Result<(), E>,
) -> Result<(), E> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp = TempFile::new_in(dir)?;
    write(&mut temp)?;
    temp.flush()?;
    temp.persist(path)?;
    Ok(())
}
