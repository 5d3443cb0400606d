/*!
The scanner thread: processes files dropped into `upload/` and `remove/`.

It sleeps in a `polling::Poller`, woken by inotify (registered with the poller) when something
changes in the two folders, by a periodic timer as a fallback (and for files that were not yet
ready), or by `Scanner::stop`. A file in `upload/` is taken only when nobody has it open for
writing (checked with a Linux read lease, which the kernel refuses while a writer exists) and it
has been quiet for a moment; so a half-copied file is never read. Rejected files move to
`upload/rejected/`, never deleted. Dot files are ignored: tools like rsync write under a dot name
and rename when done.
*/

use crate::console::Event;
use crate::store::{REJECTED_DIR, Store, display_name};
use polling::{Event as PollEvent, Events, Poller};
use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// A file must be this long without modification before we take it.
const QUIET_TIME: Duration = Duration::from_millis(200);
/// Rescan this often even without inotify events (and while files wait to be ready).
const RESCAN_INTERVAL: Duration = Duration::from_millis(250);
const INOTIFY_KEY: usize = 1;

pub struct Scanner {
    poller: Arc<Poller>,
    stopping: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Scanner {
    /// Start the scanner thread.
    pub fn start(store: Arc<Store>) -> Result<Scanner, String> {
        let poller =
            Arc::new(Poller::new().map_err(|e| format!("could not create a poller: {e}"))?);
        let stopping = Arc::new(AtomicBool::new(false));
        let watcher = Watcher::new(&poller, &[&store.upload_dir, &store.remove_dir]);
        let thread = {
            let (poller, stopping) = (poller.clone(), stopping.clone());
            std::thread::spawn(move || run(&store, &poller, watcher, &stopping))
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

fn run(store: &Store, poller: &Poller, mut watcher: Option<Watcher>, stopping: &AtomicBool) {
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
        scan_once(store);
    }
    if let Some(w) = watcher {
        let _ = poller.delete(&w.fd);
    }
}

/// How long start-up waits for uploads that are still being written.
const START_UP_PATIENCE: Duration = Duration::from_secs(3);

/// Process what is in `upload/`, then `remove/`.
pub fn scan_once(store: &Store) {
    scan_uploads(store);
    scan_removals(store);
}

/// The start-up pass: uploads first (waiting a little for files still being written, so a
/// removal in the same start cannot overtake them), then removals.
pub fn initial_scan(store: &Store) {
    let deadline = std::time::Instant::now() + START_UP_PATIENCE;
    while scan_uploads(store) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(QUIET_TIME / 4);
    }
    scan_removals(store);
}

/// Install the ready files of `upload/`; returns how many are not ready yet.
fn scan_uploads(store: &Store) -> usize {
    let _ = fs::create_dir_all(&store.upload_dir);
    let (ready, waiting): (Vec<PathBuf>, Vec<PathBuf>) = candidates(&store.upload_dir)
        .into_iter()
        .partition(|p| is_ready(p));
    if !ready.is_empty() {
        store.console.heading("Scanning upload");
        for path in ready {
            process_upload(store, &path);
        }
    }
    waiting.len()
}

fn scan_removals(store: &Store) {
    let _ = fs::create_dir_all(&store.remove_dir);
    let removals = candidates(&store.remove_dir);
    if removals.is_empty() {
        return;
    }
    store.console.heading("Scanning remove");
    for path in removals {
        let name = display_name(&path);
        let pattern = name.strip_suffix(".ampkg").unwrap_or(&name);
        let removed = store.remove_by_name(pattern);
        for event in Store::removal_lines(&removed, pattern) {
            store.console.event(&event);
        }
        let _ = fs::remove_file(&path);
    }
}

/// Regular files in `dir` that are not dot files, sorted.
fn candidates(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

fn process_upload(store: &Store, path: &Path) {
    let name = display_name(path);
    match store.install(path) {
        Ok(installed) => store.console.event(&installed.event()),
        Err(reason) => {
            // Move first, so the file is in rejected/ when the line appears.
            let moved = reject(store, path, &name);
            store.console.event(&Event::Failed {
                file: name.clone(),
                reason,
            });
            if let Err(e) = moved {
                store.console.event(&Event::Failed {
                    file: name,
                    reason: format!("could not move it to {REJECTED_DIR}/: {e}"),
                });
            }
        }
    }
}

/// Move a rejected upload to `upload/rejected/`, never overwriting an earlier one.
fn reject(store: &Store, path: &Path, name: &str) -> std::io::Result<()> {
    let dir = store.upload_dir.join(REJECTED_DIR);
    fs::create_dir_all(&dir)?;
    let mut target = dir.join(name);
    let mut n = 1;
    while target.exists() {
        target = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    fs::rename(path, target)
}

/// True when the file has been quiet for a moment and no process has it open for writing.
fn is_ready(path: &Path) -> bool {
    let Ok(metadata) = fs::metadata(path) else {
        return false;
    };
    let quiet = metadata
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_none_or(|age| age >= QUIET_TIME);
    quiet && !open_for_writing(path)
}

/// Whether another process has `path` open for writing. A read lease can only be taken when
/// nobody does; where leases are not supported, we rely on the quiet time alone.
fn open_for_writing(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return true;
    };
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; F_SETLEASE takes an int argument.
    let taken = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) };
    if taken == 0 {
        // SAFETY: as above; release the lease at once.
        unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
        return false;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
}

/// Ignore SIGIO: a writer opening a file while we hold a lease for an instant would otherwise
/// send us the lease-break signal, whose default action ends the process.
pub fn ignore_lease_signals() {
    // SAFETY: setting a signal to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGIO, libc::SIG_IGN);
    }
}

/// An inotify descriptor registered with the poller.
struct Watcher {
    fd: OwnedFd,
}

impl Watcher {
    fn new(poller: &Poller, dirs: &[&Path]) -> Option<Watcher> {
        // SAFETY: inotify_init1 has no preconditions; we own the returned descriptor.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut watcher = Watcher { fd };
        watcher.watch_again(dirs);
        // SAFETY: the descriptor stays open until after it is removed from the poller (drop).
        unsafe { poller.add(watcher.fd.as_raw_fd(), PollEvent::readable(INOTIFY_KEY)) }.ok()?;
        Some(watcher)
    }

    /// (Re-)add the watches; for an unchanged folder this is a no-op.
    fn watch_again(&mut self, dirs: &[&Path]) {
        let mask = libc::IN_CLOSE_WRITE
            | libc::IN_MOVED_TO
            | libc::IN_CREATE
            | libc::IN_MODIFY
            | libc::IN_ATTRIB;
        for dir in dirs {
            let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: valid descriptor and NUL-terminated path.
            unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), mask) };
        }
    }

    /// Read all pending events (we rescan anyway) and re-arm the oneshot registration.
    fn drain(&mut self, poller: &Poller) {
        let mut buffer = [0u8; 4096];
        loop {
            // SAFETY: reading into a buffer we own, of the length we pass.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                )
            };
            if n <= 0 {
                break;
            }
        }
        let _ = poller.modify(&self.fd, PollEvent::readable(INOTIFY_KEY));
    }
}
