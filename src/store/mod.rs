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
mod commit;
mod counters;
pub mod extras;
mod files;
pub mod identity;
pub mod index;
mod installed;
mod loading;
mod lock;
pub use counters::{Counters, UploadOutcome};
pub use files::display_name;
pub use files::open_regular;
use files::{open_cache_dir, remove_temp_files};
use installed::device_warning;
pub use installed::{InstallError, InstallResult, Installed};
pub use lock::DirLock;
mod lru;
mod records;
pub mod remote;
pub mod signing;

use crate::console::{Console, Event, Line};
use crate::fsutil::TempFile;
use crate::package::signature::{TrustStore, digest_content};
use crate::package::splice::Splice;
use crate::package::{Limits, PackageInfo, read_package};
use index::{Entry, Index};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

pub const PACKAGES_DIR: &str = ".packages";
pub const UPLOAD_DIR: &str = "upload";
pub const REMOVE_DIR: &str = "remove";
pub const REJECTED_DIR: &str = "rejected";
pub const CACHE_DIR: &str = ".cache";
pub const LOCK_FILE: &str = ".lock";

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
    /// The index's size, readable without its lock.
    pub size: Arc<index::IndexSize>,
    /// Uploads and scanner passes, for metrics.
    pub counters: Counters,
    mutation: Mutex<()>,
    /// Lists and the page, built once per change and shared.
    answers: answers::Answers,
    /// Versions and tag variants side by side (`identity`).
    pub keep_versions: bool,
    /// The object store, with `--store s3://...`.
    pub remote: Option<Arc<remote::Remote>>,
    /// `.extras/`, opened once by `prepare`.
    extras_dir: std::sync::OnceLock<crate::fsutil::Dir>,
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
        let size = Arc::new(index::IndexSize::default());
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
            index: Mutex::new(Index::sharing(size.clone())),
            size,
            counters: Counters::default(),
            mutation: Mutex::new(()),
            answers: answers::Answers::default(),
            keep_versions: false,
            remote: None,
            extras_dir: std::sync::OnceLock::new(),
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
        let _ = self
            .extras_dir
            .set(open_cache_dir(&self.data_dir.join(extras::EXTRAS_DIR))?);
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

    /// What goes with a replaced package: its signing state, and in the object store its
    /// object once no record points at it.
    fn discard_remote(&self, entry: &Entry) {
        self.discard_signing(entry);
        if let (Some(remote), Some(_)) = (&self.remote, &entry.remote) {
            remote.doom(&entry.info.sha1);
        }
    }

    /// Forget what an upload said of `entry` (removed, or moved to another name).
    fn forget_extras(&self, entry: &Entry) {
        if let Some(dir) = self.extras_dir.get() {
            extras::forget(dir, &entry.file_name());
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
                .map_err(|e| format!("invalid developer signature ({e})"))?;
        }
        Ok(info)
    }

    /// A new file for an upload, in `.packages/` (so installing it is a rename).
    pub fn upload_file(&self) -> io::Result<TempFile> {
        TempFile::new_in(&self.packages_dir)
    }

    /// Remove every package matching `id` (and `arch` and `version`, when given). Returns the
    /// removed ones.
    pub fn remove(&self, id: &str, arch: Option<&str>, version: Option<&str>) -> Vec<Arc<Entry>> {
        self.remove_entries(|index| index.matching(id, arch, version))
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
            let deleted = match &self.remote {
                Some(remote) => remote
                    .remove(&entry)
                    .map_err(|e| io::Error::other(e.to_string())),
                None => fs::remove_file(&entry.path),
            };
            match deleted {
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
            self.index().remove(&entry);
            self.forget_extras(&entry);
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
        if entry.remote.is_some() {
            // Objects are never deleted under a record: a failed read is the store's fault.
            return false;
        }
        let changing = self.mutation();
        let current = self.index().get_same(entry);
        if !current.is_some_and(|c| Arc::ptr_eq(&c, entry)) {
            return false; // replaced by a newer package: not gone
        }
        let still_there = fs::symlink_metadata(&entry.path).is_ok_and(|m| m.ino() == entry.inode);
        if still_there {
            return false;
        }
        self.index().remove(entry);
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
