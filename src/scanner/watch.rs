/*!
What the scanner asks of the kernel: read leases (is someone still writing this file?) and
inotify on the folders, registered with the poller so a pass starts as soon as something
changes (with a periodic rescan as the fallback).
*/

use polling::{Event as PollEvent, Poller};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The poller key of the inotify descriptor.
pub(super) const INOTIFY_KEY: usize = 1;

/// What a read lease says about writers.
pub(super) enum Lease {
    /// Nobody has the file open for writing.
    Free,
    /// Someone does.
    Busy,
    /// No lease could be taken (not our file and no `CAP_LEASE`, or no lease support).
    Unavailable,
}

pub(super) fn lease(file: &File) -> Lease {
    match set_lease(file, libc::F_RDLCK) {
        Ok(()) => {
            let _ = set_lease(file, libc::F_UNLCK);
            Lease::Free
        }
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Lease::Busy,
        Err(_) => Lease::Unavailable,
    }
}

/// Take (`F_RDLCK`) or release (`F_UNLCK`) a lease on `file`. Neither rustix nor std offers
/// `F_SETLEASE`.
fn set_lease(file: &File, kind: libc::c_int) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor that `file` keeps open for the call; F_SETLEASE takes one
    // int argument and touches no memory of ours.
    let result = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, kind) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Handle SIGIO: a writer opening a file while we hold a lease for an instant would otherwise
/// send us the lease-break signal, whose default action ends the process. The handler only
/// sets a flag nobody reads.
pub fn ignore_lease_signals() {
    let seen = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGIO, seen);
}

/// An inotify descriptor registered with the poller.
pub(super) struct Watcher {
    fd: OwnedFd,
}

impl Watcher {
    pub(super) fn new(poller: &Poller, dirs: &[&Path]) -> Option<Watcher> {
        use rustix::fs::inotify::{CreateFlags, init};
        let fd = init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).ok()?;
        let mut watcher = Watcher { fd };
        watcher.watch_again(dirs);
        // SAFETY: the descriptor stays open until after it is removed from the poller (drop).
        unsafe { poller.add(watcher.fd.as_raw_fd(), PollEvent::readable(INOTIFY_KEY)) }.ok()?;
        Some(watcher)
    }

    /// (Re-)add the watches; for an unchanged folder this is a no-op.
    pub(super) fn watch_again(&mut self, dirs: &[&Path]) {
        use rustix::fs::inotify::{WatchFlags, add_watch};
        let mask = WatchFlags::CLOSE_WRITE
            | WatchFlags::MOVED_TO
            | WatchFlags::CREATE
            | WatchFlags::MODIFY
            | WatchFlags::ATTRIB
            | WatchFlags::DONT_FOLLOW;
        for dir in dirs {
            let _ = add_watch(&self.fd, *dir, mask);
        }
    }

    /// Take the descriptor out of the poller (before it is closed).
    pub(super) fn unregister(self, poller: &Poller) {
        let _ = poller.delete(&self.fd);
    }

    /// Read all pending events (we rescan anyway) and re-arm the oneshot registration.
    pub(super) fn drain(&mut self, poller: &Poller) {
        let mut buffer = [0u8; 4096];
        while rustix::io::read(&self.fd, &mut buffer).is_ok_and(|n| n > 0) {}
        let _ = poller.modify(&self.fd, PollEvent::readable(INOTIFY_KEY));
    }
}
