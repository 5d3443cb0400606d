/*!
The scanner thread: processes files dropped into `upload/` and `remove/`.

It sleeps in a `polling::Poller`, woken by inotify (registered with the poller) when something
changes in the two folders, by a periodic timer as a fallback (and for files that were not yet
ready), or by `Scanner::stop`.

Everything in the folders is hostile, and may be swapped for something else between any two
system calls. So each folder is opened once per pass as a directory descriptor (never through a
link), every entry is looked at with `fstatat` without following links, and a regular file is
opened relative to the folder with `O_NOFOLLOW | O_NONBLOCK` and checked again with `fstat`;
from then on only that descriptor is used. Links, FIFOs, sockets and devices are refused without
being opened and moved aside; directories are left alone. A package is verified while it is
copied from its descriptor into a file of the server's own (`Store::install_copy`).

A file is taken only when nobody has it open for writing: checked with a Linux read lease,
which the kernel refuses while a writer exists. A lease needs the file's owner or `CAP_LEASE`;
where it cannot be taken (another user's file, a file system without leases) the file must
instead stay unchanged in size and modification time for `UNCHANGED_TIME`. Rejected files move
to `upload/rejected/` (at most `MAX_REJECTED`, the oldest dropped), never deleted otherwise; a
file that cannot be moved is left, and looked at again only once it changes. Dot files are
ignored: tools like rsync write under a dot name and rename when done.
*/

use crate::console::{Event, Line};
use crate::fsutil::{Dir, FileKind, FileStat, stat_file};
use crate::package::WRONG_FILE_TYPE;
use crate::store::{InstallError, REJECTED_DIR, Store, UploadOutcome};
mod rejected;
mod watch;
use polling::{Events, Poller};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
pub use watch::ignore_lease_signals;
use watch::{Lease, Watcher, lease};

/// A file must be this long without modification before we take it.
const QUIET_TIME: Duration = Duration::from_millis(200);
/// Without a lease, a file must stay unchanged this long before we take it.
pub const UNCHANGED_TIME: Duration = Duration::from_secs(3);
/// Rescan this often even without inotify events (and while files wait to be ready).
const RESCAN_INTERVAL: Duration = Duration::from_millis(250);
/// After a server-side failure (disk full, say), a file is tried again after this long.
const RETRY_AFTER_SERVER_FAULT: Duration = Duration::from_secs(60);
/// Rejected files kept in `upload/rejected/`.
pub const MAX_REJECTED: usize = 100;
/// Other names tried when `upload/rejected` is not a directory of ours.
const REJECTED_ALTERNATIVES: usize = 9;

pub struct Scanner {
    poller: Arc<Poller>,
    stopping: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Scanner {
    /// Start the scanner thread, going on from the start-up pass's `folders`.
    pub fn start(store: Arc<Store>, mut folders: Folders) -> Result<Scanner, String> {
        let poller =
            Arc::new(Poller::new().map_err(|e| format!("could not create a poller: {e}"))?);
        let stopping = Arc::new(AtomicBool::new(false));
        let watcher = Watcher::new(&poller, &[&store.upload_dir, &store.remove_dir]);
        let thread = {
            let (poller, stopping) = (poller.clone(), stopping.clone());
            std::thread::spawn(move || run(&store, &mut folders, &poller, watcher, &stopping))
        };
        Ok(Scanner {
            poller,
            stopping,
            thread,
        })
    }

    /// Stop the thread after the file it is working on.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.poller.notify();
        let _ = self.thread.join();
    }
}

fn run(
    store: &Store,
    folders: &mut Folders,
    poller: &Poller,
    mut watcher: Option<Watcher>,
    stopping: &AtomicBool,
) {
    let mut events = Events::new();
    while !stopping.load(Ordering::SeqCst) {
        events.clear();
        let _ = poller.wait(&mut events, Some(RESCAN_INTERVAL));
        if let Some(w) = &mut watcher {
            w.drain(poller);
            // Folders deleted and created again need new watches.
            w.watch_again(&[&store.upload_dir, &store.remove_dir]);
        }
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        folders.scan(store);
    }
    if let Some(w) = watcher {
        w.unregister(poller);
    }
}

/// How long start-up waits for uploads that are still being written.
const START_UP_PATIENCE: Duration = Duration::from_secs(3);

/// What a file was when we last decided about it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    stat: FileStat,
    /// When to look at it again although unchanged (`None`: only once it changes).
    retry_at: Option<Instant>,
}

impl Seen {
    fn unchanged(&self, now: &FileStat) -> bool {
        self.stat.same_file(now) && self.stat.size == now.size && self.stat.mtime_ns == now.mtime_ns
    }
}

/// What the scanner remembers between passes.
#[derive(Default)]
pub struct Folders {
    /// Files decided about that stay in `upload/` (could not be moved, or a server fault).
    seen: HashMap<OsString, Seen>,
    /// Files that could not be leased: how they looked and since when.
    unchanged_since: HashMap<OsString, (FileStat, Instant)>,
    /// Problems already reported (a folder that is a link, say), so they are said once.
    reported: Vec<String>,
}

/// A look at `upload/` that processes what is ready, or only counts what is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Process,
    Count,
}

/// Whether an upload can be taken now.
enum Readiness {
    Ready,
    /// Still written, or too recently changed: try again later.
    Wait,
}

impl Folders {
    /// Process what is in `upload/`, then `remove/`.
    pub fn scan(&mut self, store: &Store) {
        self.uploads(store, Pass::Process);
        self.scan_removals(store);
        store
            .counters
            .scanner_passes
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The start-up pass: uploads first, in one pass once none is still being written (or
    /// after `START_UP_PATIENCE`), so a removal in the same start cannot overtake them; then
    /// removals.
    pub fn initial_scan(&mut self, store: &Store) {
        let deadline = Instant::now() + START_UP_PATIENCE;
        while self.uploads(store, Pass::Count) > 0 && Instant::now() < deadline {
            std::thread::sleep(QUIET_TIME / 4);
        }
        self.scan(store);
    }

    /// Leave `name` (as `stat` shows it) alone while it is unchanged, until `retry_at` if given.
    fn remember(&mut self, name: &OsStr, stat: &FileStat, retry_at: Option<Instant>) {
        let seen = Seen {
            stat: *stat,
            retry_at,
        };
        self.seen.insert(name.to_os_string(), seen);
    }

    /// Say `problem` once (until it goes away and comes back, it is not repeated).
    fn report_once(&mut self, store: &Store, file: &str, problem: String) {
        if !self.reported.contains(&problem) {
            self.reported.push(problem.clone());
            store.console.event(&Event::Failed {
                file: file.to_string(),
                reason: problem,
            });
        }
    }

    /// Open `store`'s folder `path` (created when missing), never through a link.
    fn open_folder(&mut self, store: &Store, path: &Path) -> Option<Dir> {
        let _ = std::fs::create_dir(path);
        match Dir::open(path) {
            Ok(dir) => {
                let name = display_path(path);
                self.reported
                    .retain(|p| !p.starts_with(&format!("the folder {name} ")));
                Some(dir)
            }
            Err(e) => {
                let name = display_path(path);
                let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
                let why = match e.raw_os_error() {
                    _ if is_link => "is a symbolic link".to_string(),
                    Some(libc::ENOTDIR) => "is not a directory".to_string(),
                    _ => format!("cannot be opened: {e}"),
                };
                self.report_once(store, &name, format!("the folder {name} {why}"));
                None
            }
        }
    }

    /// Install the ready files of `upload/` (or only count, with `Pass::Count`); returns how
    /// many are not ready yet.
    fn uploads(&mut self, store: &Store, pass: Pass) -> usize {
        let Some(upload) = self.open_folder(store, &store.upload_dir) else {
            return 0;
        };
        let names = candidates(&upload);
        self.seen.retain(|name, _| names.contains(name));
        self.unchanged_since.retain(|name, _| names.contains(name));
        let mut waiting = 0;
        let mut heading_done = false;
        for name in names {
            let Ok(Some(stat)) = upload.stat(&name) else {
                continue;
            };
            if stat.kind == FileKind::Directory {
                continue;
            }
            if let Some(seen) = self.seen.get(&name) {
                let retry = seen.retry_at.is_some_and(|at| Instant::now() >= at);
                if seen.unchanged(&stat) && !retry {
                    continue;
                }
            }
            let opened = if stat.kind == FileKind::Regular {
                match self.open_upload(&upload, &name, &stat) {
                    Some((file, Readiness::Ready)) => Some(file),
                    Some((_, Readiness::Wait)) => {
                        waiting += 1;
                        continue;
                    }
                    // Swapped or gone since the stat: look again next time.
                    None => continue,
                }
            } else {
                None
            };
            if pass == Pass::Count {
                continue;
            }
            if !heading_done {
                store.console.heading("Scanning upload");
                heading_done = true;
            }
            match opened {
                Some(file) => self.process_upload(store, &upload, &name, &file, &stat),
                None => {
                    let reason = format!("{}: only regular files are taken", stat.kind.describe());
                    self.reject(store, &upload, &name, &stat, reason);
                }
            }
        }
        waiting
    }

    /// Open the regular file `name` (as `stat` showed it) and decide whether it is ready;
    /// `None` when it is no longer that file.
    fn open_upload(
        &mut self,
        upload: &Dir,
        name: &OsStr,
        stat: &FileStat,
    ) -> Option<(File, Readiness)> {
        let file = upload.open_file(name).ok()?;
        let opened = stat_file(&file).ok()?;
        if opened.kind != FileKind::Regular || !opened.same_file(stat) {
            return None;
        }
        let age_ns = now_ns() - opened.mtime_ns;
        if age_ns < QUIET_TIME.as_nanos() as i128 {
            return Some((file, Readiness::Wait));
        }
        let readiness = match lease(&file) {
            Lease::Free => Readiness::Ready,
            Lease::Busy => Readiness::Wait,
            Lease::Unavailable => self.unchanged_long_enough(name, &opened),
        };
        Some((file, readiness))
    }

    /// Without a lease: ready once the file has looked the same for `UNCHANGED_TIME`.
    fn unchanged_long_enough(&mut self, name: &OsStr, stat: &FileStat) -> Readiness {
        let now = Instant::now();
        match self.unchanged_since.get(name) {
            Some((before, since))
                if before.same_file(stat)
                    && before.size == stat.size
                    && before.mtime_ns == stat.mtime_ns =>
            {
                if now.duration_since(*since) >= UNCHANGED_TIME {
                    Readiness::Ready
                } else {
                    Readiness::Wait
                }
            }
            _ => {
                self.unchanged_since
                    .insert(name.to_os_string(), (*stat, now));
                Readiness::Wait
            }
        }
    }

    fn process_upload(
        &mut self,
        store: &Store,
        upload: &Dir,
        name: &OsStr,
        file: &File,
        stat: &FileStat,
    ) {
        let shown = name.to_string_lossy().into_owned();
        let installed = store.install_copy(file);
        store.counters.upload(match &installed {
            Ok(_) => UploadOutcome::Accepted,
            Err(InstallError::Rejected(_)) => UploadOutcome::ClientFault,
            Err(InstallError::Server(_)) => UploadOutcome::ServerFault,
        });
        match installed {
            Ok(installed) => {
                // Remove the uploaded file only if it is still the one we copied.
                if upload
                    .stat(name)
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.same_file(stat))
                {
                    let _ = upload.remove(name);
                }
                self.unchanged_since.remove(name);
                for event in installed.events() {
                    store.console.event(&event);
                }
            }
            Err(InstallError::Rejected(reason)) => {
                // Qt's words, with the bytes that are wrong.
                let reason = match reason.as_str() {
                    WRONG_FILE_TYPE => format!("{WRONG_FILE_TYPE} ({})", first_bytes_hex(file)),
                    _ => reason,
                };
                self.reject(store, upload, name, stat, reason)
            }
            Err(InstallError::Server(reason)) => {
                store.console.event(&Event::Failed {
                    file: shown,
                    reason: format!("{reason}; the file stays in upload/"),
                });
                self.remember(name, stat, Some(Instant::now() + RETRY_AFTER_SERVER_FAULT));
            }
        }
    }

    fn scan_removals(&mut self, store: &Store) {
        let Some(remove) = self.open_folder(store, &store.remove_dir) else {
            return;
        };
        let names: Vec<OsString> = candidates(&remove)
            .into_iter()
            .filter(|n| {
                remove
                    .stat(n)
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.kind != FileKind::Directory)
            })
            .collect();
        if names.is_empty() {
            return;
        }
        store.console.heading("Scanning remove");
        for name in names {
            let shown = name.to_string_lossy().into_owned();
            let pattern = shown.strip_suffix(".ampkg").unwrap_or(&shown);
            let removed = store.remove_by_name(pattern);
            for event in Store::removal_lines(&removed, pattern) {
                store.console.event(&event);
            }
            let _ = remove.remove(&name);
        }
    }
}

/// The names in `dir` that are not dot files.
fn candidates(dir: &Dir) -> Vec<OsString> {
    dir.names()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| !n.as_bytes().starts_with(b"."))
        .collect()
}

/// The first bytes of `file` in hex, as Qt's message shows them.
fn first_bytes_hex(file: &File) -> String {
    use std::os::unix::fs::FileExt;
    let mut start = [0u8; 4];
    let n = file.read_at(&mut start, 0).unwrap_or(0);
    start[..n].iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn display_path(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
