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

/// Most bytes of a configuration, key, certificate or token file.
pub const MAX_SETTINGS_FILE: u64 = 1 << 20;

/// The bytes of a file the user named (a configuration, a key, a certificate, a token): it may
/// be reached through a link, but must be a regular file of at most `max` bytes. A FIFO, a
/// device or `/dev/zero` gets an error naming what it is, never a hang or a flood.
pub fn read_settings_file(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    read_regular(file, max)
}

/// The bytes of `file` if it is a regular file of at most `max` bytes (also when it grows
/// while read).
fn read_regular(file: File, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let stat = stat_file(&file)?;
    if stat.kind != FileKind::Regular {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({})", stat.kind.describe()),
        ));
    }
    let mut bytes = Vec::with_capacity(stat.size.min(max) as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(bytes)
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

/// A directory opened once, by descriptor: everything in it is then opened, checked, renamed
/// and removed relative to that descriptor, never by path again, and no symbolic link is
/// followed. A file swapped for a link, a FIFO or a device between two calls is seen as what
/// it has become (as OpenBSD's daemons and `cap-std` do it).
#[derive(Debug)]
pub struct Dir {
    fd: std::os::fd::OwnedFd,
}

/// What `fstatat`/`fstat` tell about a directory entry, without following links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub kind: FileKind,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Modification time, in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time (a rename sets it), in nanoseconds since the epoch.
    pub ctime_ns: i128,
    pub nlink: u64,
    pub uid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    Device,
}

impl FileKind {
    /// For messages: "a symbolic link", ...
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Regular => "a regular file",
            FileKind::Directory => "a directory",
            FileKind::Symlink => "a symbolic link",
            FileKind::Fifo => "a FIFO",
            FileKind::Socket => "a socket",
            FileKind::Device => "a device",
        }
    }
}

impl FileStat {
    fn from_raw(st: &rustix::fs::Stat) -> FileStat {
        use rustix::fs::FileType;
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => FileKind::Regular,
            FileType::Directory => FileKind::Directory,
            FileType::Symlink => FileKind::Symlink,
            FileType::Fifo => FileKind::Fifo,
            FileType::Socket => FileKind::Socket,
            _ => FileKind::Device,
        };
        FileStat {
            kind,
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size.max(0) as u64,
            mtime_ns: i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
            ctime_ns: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec),
            nlink: st.st_nlink,
            uid: st.st_uid,
        }
    }

    /// Whether two stats describe the same file in the same state.
    pub fn same_file(&self, other: &FileStat) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// `name` if it is a plain file name (no `/`, not empty).
fn plain(name: &std::ffi::OsStr) -> io::Result<&std::ffi::OsStr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a plain file name",
        ));
    }
    Ok(name)
}

/// `fstat` of an open file.
pub fn stat_file(file: &File) -> io::Result<FileStat> {
    Ok(FileStat::from_raw(&rustix::fs::fstat(file)?))
}

impl Dir {
    /// Open the directory at `path`; its last component must not be a symbolic link.
    pub fn open(path: &Path) -> io::Result<Dir> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        Ok(Dir {
            fd: rustix::fs::open(path, flags, Mode::empty())?,
        })
    }

    /// The subdirectory `name`, created (mode 0755) when missing; never through a link.
    pub fn open_dir(&self, name: &str, create: bool) -> io::Result<Dir> {
        use rustix::fs::{Mode, OFlags};
        let name = plain(name.as_ref())?;
        if create {
            match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        Ok(Dir {
            fd: rustix::fs::openat(&self.fd, name, flags, Mode::empty())?,
        })
    }

    /// What `name` is, without following a link; `None` when it does not exist.
    pub fn stat(&self, name: &std::ffi::OsStr) -> io::Result<Option<FileStat>> {
        match rustix::fs::statat(
            &self.fd,
            plain(name)?,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(FileStat::from_raw(&st))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Open `name` for reading without following a link and without blocking on a FIFO; the
    /// caller checks with `stat_file` what it opened.
    pub fn open_file(&self, name: &std::ffi::OsStr) -> io::Result<File> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        Ok(File::from(rustix::fs::openat(
            &self.fd,
            plain(name)?,
            flags,
            Mode::empty(),
        )?))
    }

    /// Move `name` to `to`/`new_name`, failing if `new_name` exists (never replacing).
    pub fn rename_to(
        &self,
        name: &std::ffi::OsStr,
        to: &Dir,
        new_name: &std::ffi::OsStr,
    ) -> io::Result<()> {
        Ok(rustix::fs::renameat_with(
            &self.fd,
            plain(name)?,
            &to.fd,
            plain(new_name)?,
            rustix::fs::RenameFlags::NOREPLACE,
        )?)
    }

    /// A new file of ours (a `TEMP_MARKER` name) to write, created here and never through a
    /// link; the caller renames it into place or removes it.
    pub fn create_temp(&self) -> io::Result<(std::ffi::OsString, File)> {
        use rustix::fs::{Mode, OFlags};
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = std::ffi::OsString::from(format!("{TEMP_MARKER}{}-{n}", std::process::id()));
            let flags =
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(&self.fd, plain(&name)?, flags, Mode::from_raw_mode(0o644)) {
                Ok(fd) => return Ok((name, File::from(fd))),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Rename `name` to `new_name` in this directory, replacing what `new_name` was.
    pub fn rename_replacing(
        &self,
        name: &std::ffi::OsStr,
        new_name: &std::ffi::OsStr,
    ) -> io::Result<()> {
        Ok(rustix::fs::renameat(
            &self.fd,
            plain(name)?,
            &self.fd,
            plain(new_name)?,
        )?)
    }

    /// Replace `name` with `bytes`, all or nothing (a temporary file renamed over it; not
    /// synced: for caches, which a crash may lose).
    pub fn write_file(&self, name: &std::ffi::OsStr, bytes: &[u8]) -> io::Result<()> {
        let (temp, mut file) = self.create_temp()?;
        let written = file
            .write_all(bytes)
            .and_then(|()| self.rename_replacing(&temp, name));
        if written.is_err() {
            let _ = self.remove(&temp);
        }
        written
    }

    /// The bytes of `name` if it is a regular file of at most `max` bytes (never a link, a
    /// FIFO or a device).
    pub fn read_file(&self, name: &std::ffi::OsStr, max: u64) -> io::Result<Vec<u8>> {
        read_regular(self.open_file(name)?, max)
    }

    /// Remove the file (or link) `name`.
    pub fn remove(&self, name: &std::ffi::OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(
            &self.fd,
            plain(name)?,
            rustix::fs::AtFlags::empty(),
        )?)
    }

    /// The names in the directory (without `.` and `..`), sorted. Read through our own
    /// descriptor (no `/proc` needed: it may be missing in a minimal container).
    pub fn names(&self) -> io::Result<Vec<std::ffi::OsString>> {
        use std::os::unix::ffi::OsStrExt;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(std::ffi::OsStr::from_bytes(name).to_os_string());
            }
        }
        names.sort();
        Ok(names)
    }
}
