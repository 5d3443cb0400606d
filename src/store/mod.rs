/*!
The data directory and the packages in it: `.packages/` (accepted packages), `upload/`,
`remove/`, the `.lock` file, and the index of what is accepted.

All changes (install, remove) go through one `mutation` lock, so the file in `.packages/` and
the index entry always change together; the index lock itself is only held for map operations,
never during I/O or crypto. A package reaches `.packages/` by an atomic rename of a complete,
synced, verified file, so the directory never holds a half-written package.

What is verified is what is served: a package is verified from a file the server created in
`.packages/` itself (an HTTP upload lands there), or, for a file someone put in `upload/`,
while it is copied from that file's descriptor into one (`install_copy`). The uploader's file
is never renamed into `.packages/`, so changing it (or a hard link to it) later changes
nothing that devices download. Errors say whose fault they are (`InstallError`).
*/

pub mod answers;
pub mod index;
mod lru;
mod records;
pub mod signing;

use crate::console::{Console, Event, Line};
use crate::fsutil::{TEMP_MARKER, TempFile};
use crate::package::signature::{TrustStore, digest_content};
use crate::package::splice::Splice;
use crate::package::{Limits, PackageInfo, read_package};
use index::{Entry, Index, file_name};
use std::fs::{self, File};
use std::io;
use std::io::Seek;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub const PACKAGES_DIR: &str = ".packages";
pub const UPLOAD_DIR: &str = "upload";
pub const REMOVE_DIR: &str = "remove";
pub const REJECTED_DIR: &str = "rejected";
pub const CACHE_DIR: &str = ".cache";
pub const LOCK_FILE: &str = ".lock";

/// What an install did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallResult {
    Added,
    Updated,
    NoChanges,
}

impl InstallResult {
    /// The word in the upload answer.
    pub fn as_str(self) -> &'static str {
        match self {
            InstallResult::Added => "added",
            InstallResult::Updated => "updated",
            InstallResult::NoChanges => "no changes",
        }
    }
}

/// Why a package was not installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallError {
    /// The package is invalid: the uploader's fault.
    Rejected(String),
    /// The server could not store it (disk full, permissions): the package may be fine.
    Server(String),
}

impl InstallError {
    pub fn message(&self) -> &str {
        match self {
            InstallError::Rejected(m) | InstallError::Server(m) => m,
        }
    }
}

/// Copies what is read from `source` into `copy`, remembering a failed write (a server fault,
/// not the package's).
struct Tee<'a, R> {
    source: R,
    copy: &'a mut File,
    write_error: Option<io::Error>,
}

impl<R: io::Read> io::Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.source.read(buf)?;
        if let Err(e) = io::Write::write_all(self.copy, &buf[..n]) {
            let message = e.to_string();
            self.write_error = Some(e);
            return Err(io::Error::other(message));
        }
        Ok(n)
    }
}

/// An accepted (or unchanged) package.
#[derive(Debug, Clone)]
pub struct Installed {
    pub id: String,
    pub arch: String,
    pub result: InstallResult,
    /// Something devices will not like about the package, though it is valid.
    pub warning: Option<String>,
}

impl Installed {
    /// The console lines: what happened, and the warning if there is one.
    pub fn events(&self) -> Vec<Event> {
        let (id, arch) = (self.id.clone(), self.arch.clone());
        let mut events = vec![match self.result {
            InstallResult::Added => Event::Adding {
                id: id.clone(),
                arch: arch.clone(),
            },
            InstallResult::Updated => Event::Updating {
                id: id.clone(),
                arch: arch.clone(),
            },
            InstallResult::NoChanges => Event::Unchanged {
                id: id.clone(),
                arch: arch.clone(),
            },
        }];
        if let Some(reason) = &self.warning {
            events.push(Event::Warning {
                id,
                arch,
                reason: reason.clone(),
            });
        }
        events
    }
}

/// Why devices will refuse a valid package, if they will.
fn device_warning(entry: &Entry) -> Option<String> {
    match entry.icon {
        index::Icon::InPackage { size } if size > index::MAX_ICON_IN_MEMORY as u64 => {
            Some(format!(
                "its icon is {size} bytes: Qt's installer refuses icons over {} bytes, so devices will refuse this package",
                index::MAX_ICON_IN_MEMORY
            ))
        }
        _ => None,
    }
}

/// Most packages in the store by default (`--max-packages`).
pub const DEFAULT_MAX_PACKAGES: u64 = 10_000;
/// Most bytes of names, descriptions, categories, versions and tags of all packages (what
/// the lists show, kept in memory): an upload beyond is refused.
pub const LISTED_BYTES: u64 = 16 << 20;
/// Most bytes of icons kept in memory; beyond, icons are read from their packages.
pub const ICON_BYTES: u64 = 16 << 20;

/// The data directory with its packages.
pub struct Store {
    pub data_dir: PathBuf,
    pub packages_dir: PathBuf,
    pub upload_dir: PathBuf,
    pub remove_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub limits: Limits,
    /// Most packages in the store.
    pub max_packages: u64,
    pub console: Console,
    verification: Option<TrustStore>,
    /// Store signing of downloads, when configured.
    pub signer: Option<Arc<signing::StoreSigner>>,
    index: Mutex<Index>,
    mutation: Mutex<()>,
    /// Lists and the page, built once per change and shared.
    answers: answers::Answers,
}

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

impl Store {
    pub fn new(
        data_dir: &Path,
        limits: Limits,
        max_packages: u64,
        verification: Option<TrustStore>,
        signing_key: Option<crate::package::signature::SigningKey>,
        console: Console,
    ) -> Store {
        let cache_dir = data_dir.join(CACHE_DIR);
        Store {
            signer: signing_key.map(|key| signing::StoreSigner::new(key, limits)),
            data_dir: data_dir.to_path_buf(),
            packages_dir: data_dir.join(PACKAGES_DIR),
            upload_dir: data_dir.join(UPLOAD_DIR),
            remove_dir: data_dir.join(REMOVE_DIR),
            cache_dir,
            limits,
            max_packages,
            console,
            verification,
            index: Mutex::new(Index::default()),
            mutation: Mutex::new(()),
            answers: answers::Answers::default(),
        }
    }

    /// Create the folders (`.cache/` only when downloads are store-signed) and remove what a
    /// killed earlier run left behind.
    pub fn prepare(&self) -> Result<(), String> {
        for dir in [&self.packages_dir, &self.upload_dir, &self.remove_dir] {
            fs::create_dir_all(dir)
                .map_err(|e| format!("could not create {}: {e}", dir.display()))?;
        }
        // A package directory we cannot write to would make every valid upload fail.
        self.upload_file().map_err(|e| {
            format!(
                "the package directory {} is not writable: {e}",
                self.packages_dir.display()
            )
        })?;
        for dir in [&self.data_dir, &self.packages_dir] {
            remove_temp_files(dir, None);
        }
        if let Some(signer) = &self.signer {
            signer.open_cache(open_cache_dir(&self.cache_dir)?);
        }
        Ok(())
    }

    /// Remove the temporary files of this process (at shutdown; `.cache/` is cleaned at the
    /// next start).
    pub fn remove_own_temp_files(&self) {
        let pid = std::process::id();
        for dir in [&self.data_dir, &self.packages_dir] {
            remove_temp_files(dir, Some(pid));
        }
    }

    /// What `.cache/` and the signer drop for `entry`, removed or replaced (after the
    /// mutation lock: it never waits for anything).
    fn discard_signing(&self, entry: &Entry) {
        entry.discarded.store(true, Ordering::Release);
        if let Some(signer) = &self.signer {
            signer.discard(entry);
        }
    }

    /// A console note for a package added: one a device may refuse, or one whose signed
    /// downloads are made from a recompressed copy.
    fn entry_warning(&self, entry: &Entry) -> Option<String> {
        let recompressed = match (&self.signer, &entry.info.splice) {
            (Some(_), Splice::Recompress(reason)) => Some(format!(
                "signed downloads of it are made from a recompressed copy: {reason}"
            )),
            _ => None,
        };
        match (device_warning(entry), recompressed) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        }
    }

    /// The index, locked. Keep the guard short: no I/O while holding it.
    pub fn index(&self) -> MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The shared answer for `key`, built by `build` (outside the index lock) when the store
    /// changed since it was last built.
    pub fn answer(
        &self,
        key: answers::AnswerKey,
        build: impl FnOnce(&Store) -> Vec<u8>,
    ) -> Result<answers::Answer, answers::AnswerError> {
        let generation = self.index().generation();
        self.answers.get(&key, generation, || build(self))
    }

    /// The JSON answer of `/package/list` for `query`.
    pub fn list_json(
        &self,
        query: &index::ListQuery,
    ) -> Result<answers::Answer, answers::AnswerError> {
        self.answer(answers::AnswerKey::List(query.clone()), |store| {
            let entries = store.index().list_entries(query);
            index::list_json(&entries)
        })
    }

    /// The JSON answer of `/category/list`: every category, sorted.
    pub fn categories_json(&self) -> Result<answers::Answer, answers::AnswerError> {
        self.answer(answers::AnswerKey::Categories, |store| {
            let categories = store.index().categories();
            serde_json::to_vec(&categories).unwrap_or_else(|_| b"[]".to_vec())
        })
    }

    fn mutation(&self) -> MutexGuard<'_, ()> {
        self.mutation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Verify every file in `.packages/` (on all cores) and index the valid ones, printing a
    /// line for each in file-name order.
    pub fn load_packages(&self) {
        self.console.heading("Scanning .packages");
        let mut files: Vec<PathBuf> = match fs::read_dir(&self.packages_dir) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        let results = verify_in_parallel(&files, |path| self.verify_stored(path));
        let mut lines = Vec::new();
        let mut index = Index::default();
        let mut cached = std::collections::HashSet::new();
        for (path, result) in files.iter().zip(results) {
            let name = display_name(path);
            let result = result.and_then(|(mut entry, kept)| {
                let full = index.len() as u64 >= self.max_packages;
                let listed = index.listed_bytes() + entry.info.listed_size();
                if full || listed > LISTED_BYTES {
                    return Err(format!(
                        "the store is full: at most {} packages and {LISTED_BYTES} bytes of names, descriptions and categories",
                        self.max_packages
                    ));
                }
                if index.icon_bytes() + entry.icon_in_memory() > ICON_BYTES {
                    entry.stream_icon();
                }
                Ok((entry, kept))
            });
            match result {
                Ok((entry, kept)) => {
                    let (id, arch) = (entry.id().to_string(), entry.arch().to_string());
                    lines.push(Event::Adding {
                        id: id.clone(),
                        arch: arch.clone(),
                    });
                    if let Some(reason) = self.entry_warning(&entry) {
                        lines.push(Event::Warning { id, arch, reason });
                    }
                    index.insert(Arc::new(entry));
                    cached.extend(kept);
                }
                Err(reason) => lines.push(Event::Skipping { file: name, reason }),
            }
        }
        if lines.is_empty() {
            self.console.plain(" (none found)");
        }
        for line in &lines {
            self.console.event(line);
        }
        if let Some(signer) = &self.signer {
            signer.remove_cached_except(&cached);
        }
        *self.index() = index;
    }

    /// Verify a package file in `.packages/`; with store signing, also what `.cache/` keeps
    /// for it (the names of its files there).
    fn verify_stored(&self, path: &Path) -> Result<(Entry, Vec<std::ffi::OsString>), String> {
        let file = open_regular(path)?;
        let mut info = self.verify(&file)?;
        let seam = info.take_seam();
        let expected = file_name(&info.id, info.architecture_name());
        if path.file_name().and_then(|n| n.to_str()) != Some(expected.as_str()) {
            return Err(format!(
                "invalid package name: expected {expected}, found {}",
                display_name(path)
            ));
        }
        let metadata = file
            .metadata()
            .map_err(|e| format!("could not read {}: {e}", display_name(path)))?;
        let entry = new_entry(info, path.to_path_buf(), &metadata);
        let cached = match &self.signer {
            Some(signer) => signer.adopt(&entry, seam),
            None => Vec::new(),
        };
        Ok((entry, cached))
    }

    /// Read and check a package: format, digest, and (when configured) the developer
    /// signature.
    pub fn verify(&self, input: impl io::Read) -> Result<PackageInfo, String> {
        let info = read_package(input, &self.limits).map_err(|e| e.to_string())?;
        if let Some(trust) = &self.verification {
            let Some(signature) = &info.developer_signature else {
                return Err("no developer signature".into());
            };
            trust
                .verify(signature, digest_content(&info.digest).as_bytes())
                .map_err(|e| {
                    let e = e.to_string();
                    // The usual cause: the developer certificate's intermediate CA is missing.
                    let hint = if e.contains("unable to get local issuer certificate") {
                        "; pass the intermediate CA too: --dc may be repeated"
                    } else {
                        ""
                    };
                    format!("invalid developer signature ({e}){hint}")
                })?;
        }
        Ok(info)
    }

    /// A new file for an upload, in `.packages/` (so installing it is a rename).
    pub fn upload_file(&self) -> io::Result<TempFile> {
        TempFile::new_in(&self.packages_dir)
    }

    /// Verify `upload` (a file of ours from `upload_file`, complete) and install it.
    pub fn install_upload(&self, mut upload: TempFile) -> Result<Installed, InstallError> {
        let server = |e: io::Error| InstallError::Server(format!("could not read the upload: {e}"));
        upload.file().seek(io::SeekFrom::Start(0)).map_err(server)?;
        let info = self
            .verify(io::BufReader::with_capacity(256 * 1024, upload.file()))
            .map_err(InstallError::Rejected)?;
        self.commit(info, upload)
    }

    /// Verify the package read from `source` (someone else's file) while copying it into a
    /// file of ours, and install the copy: what devices download is exactly what was verified.
    pub fn install_copy(&self, source: &File) -> Result<Installed, InstallError> {
        let store_error = |e: io::Error| {
            InstallError::Server(format!(
                "could not store the package in {PACKAGES_DIR}: {e}"
            ))
        };
        let mut copy = self.upload_file().map_err(store_error)?;
        let mut tee = Tee {
            source,
            copy: copy.file(),
            write_error: None,
        };
        let verified = self.verify(&mut tee);
        if let Some(e) = tee.write_error {
            return Err(store_error(e));
        }
        self.commit(verified.map_err(InstallError::Rejected)?, copy)
    }

    /// Put the verified `file` into `.packages/` as the package `info` describes, replacing one
    /// with the same id and architecture; when that one is identical, nothing changes.
    fn commit(&self, mut info: PackageInfo, mut file: TempFile) -> Result<Installed, InstallError> {
        let seam = info.take_seam();
        let arch = info.architecture_name().to_string();
        let id = info.id.clone();
        let destination = self.packages_dir.join(file_name(&id, &arch));
        let store_error = |e: io::Error| {
            InstallError::Server(format!(
                "could not move the package into {PACKAGES_DIR}: {e}"
            ))
        };

        let changing = self.mutation();
        let existing = self.index().get(&id, &arch);
        if existing.as_ref().is_some_and(|e| e.info.sha1 == info.sha1) {
            return Ok(Installed {
                id,
                arch,
                result: InstallResult::NoChanges,
                warning: None,
            });
        }
        let keep_icon = self
            .room_for(&info, existing.as_deref())
            .map_err(InstallError::Rejected)?;
        // Readable by everyone, writable only by us, whatever the umask or the uploader.
        file.file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(store_error)?;
        let metadata = file.file().metadata().map_err(store_error)?;
        file.persist(&destination).map_err(store_error)?;
        let mut entry = new_entry(info, destination, &metadata);
        if !keep_icon {
            entry.stream_icon();
        }
        let entry = Arc::new(entry);
        let warning = self.entry_warning(&entry);
        if let Some(signer) = &self.signer {
            signer.prepare(entry.clone(), seam);
        }
        let previous = self.index().insert(entry);
        drop(changing);
        if let Some(previous) = previous {
            self.discard_signing(&previous);
        }
        Ok(Installed {
            id,
            arch,
            result: if existing.is_some() {
                InstallResult::Updated
            } else {
                InstallResult::Added
            },
            warning,
        })
    }

    /// Whether the store has room for `info` (replacing `existing`): `Err` with the reason
    /// when it has not; `Ok(false)` when its icon is to be read from the package, as the
    /// icons kept in memory are at their limit.
    fn room_for(&self, info: &PackageInfo, existing: Option<&Entry>) -> Result<bool, String> {
        let index = self.index();
        if existing.is_none() && index.len() as u64 >= self.max_packages {
            return Err(format!(
                "the store holds {} packages, the most it may (--max-packages)",
                index.len()
            ));
        }
        let replaced = existing.map_or(0, |e| e.info.listed_size());
        let listed = index.listed_bytes() - replaced + info.listed_size();
        if listed > LISTED_BYTES {
            return Err(format!(
                "the store's names, descriptions and categories would take {listed} bytes, more than the {LISTED_BYTES} bytes the server keeps in memory for all packages"
            ));
        }
        let replaced_icon = existing.map_or(0, |e| e.icon_in_memory());
        let icon = info.icon.as_ref().map_or(0, |i| i.len() as u64);
        Ok(index.icon_bytes() - replaced_icon + icon <= ICON_BYTES)
    }

    /// Remove every package matching `id` (and `arch`, when given). Returns the removed ones.
    pub fn remove(&self, id: &str, arch: Option<&str>) -> Vec<Arc<Entry>> {
        self.remove_entries(|index| index.matching(id, arch))
    }

    /// Remove every package whose id or `<id>_<arch>` is `pattern`.
    pub fn remove_by_name(&self, pattern: &str) -> Vec<Arc<Entry>> {
        self.remove_entries(|index| index.matching_name(pattern))
    }

    fn remove_entries(&self, select: impl FnOnce(&Index) -> Vec<Arc<Entry>>) -> Vec<Arc<Entry>> {
        let changing = self.mutation();
        let matches = select(&self.index());
        let mut removed = Vec::new();
        for entry in matches {
            match fs::remove_file(&entry.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.console.event(&Event::Failed {
                        file: entry.file_name(),
                        reason: format!("could not remove: {e}"),
                    });
                    continue;
                }
            }
            self.index().remove(entry.id(), entry.arch());
            removed.push(entry);
        }
        drop(changing);
        for entry in &removed {
            self.discard_signing(entry);
        }
        if !removed.is_empty() {
            let _ = File::open(&self.packages_dir).and_then(|d| d.sync_all());
        }
        removed
    }

    /// When `entry`'s file is no longer in `.packages/` (deleted under the running server),
    /// drop it from the index and say so. True if it was gone.
    pub fn forget_if_gone(&self, entry: &Arc<Entry>) -> bool {
        let changing = self.mutation();
        let current = self.index().get(entry.id(), entry.arch());
        if !current.is_some_and(|c| Arc::ptr_eq(&c, entry)) {
            return false; // replaced by a newer package: not gone
        }
        let still_there = fs::symlink_metadata(&entry.path).is_ok_and(|m| m.ino() == entry.inode);
        if still_there {
            return false;
        }
        self.index().remove(entry.id(), entry.arch());
        drop(changing);
        self.discard_signing(entry);
        self.console.event(&Event::Failed {
            file: entry.file_name(),
            reason: format!(
                "the package file was deleted from {PACKAGES_DIR}/: it is no longer listed"
            ),
        });
        true
    }

    /// Whether uploads must carry a valid developer signature.
    pub fn verifies_developer_signatures(&self) -> bool {
        self.verification.is_some()
    }

    /// Print lines for removed entries, or a no-match line.
    pub fn removal_lines(removed: &[Arc<Entry>], pattern: &str) -> Vec<Event> {
        if removed.is_empty() {
            return vec![Event::NoMatch {
                pattern: pattern.to_string(),
            }];
        }
        removed
            .iter()
            .map(|e| Event::Removing {
                id: e.id().to_string(),
                arch: e.arch().to_string(),
            })
            .collect()
    }

    /// Print a heading followed by events, as one block.
    pub fn report(&self, heading: &str, events: &[Event]) {
        let mut lines = vec![Line::Heading(heading)];
        lines.extend(events.iter().map(Line::Event));
        self.console.lines(&lines);
    }
}

impl Entry {
    /// Open the package file (never through a link), checking it is still the file this entry
    /// describes.
    pub fn open(&self) -> io::Result<File> {
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
}

/// `.cache/`, opened by descriptor. Created when missing; a symbolic link in its place (which
/// would put our files elsewhere) is removed first.
fn open_cache_dir(path: &Path) -> Result<crate::fsutil::Dir, String> {
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
fn open_regular(path: &Path) -> Result<File, String> {
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

fn new_entry(info: PackageInfo, path: PathBuf, metadata: &fs::Metadata) -> Entry {
    let modified = metadata.modified().unwrap_or(std::time::UNIX_EPOCH);
    Entry::new(info, path, metadata.ino(), modified)
}

/// Run `verify` over `files` on all cores, results in the same order.
fn verify_in_parallel<T: Send>(files: &[PathBuf], verify: impl Fn(&Path) -> T + Sync) -> Vec<T> {
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
fn remove_temp_files(dir: &Path, pid: Option<u32>) {
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
