/*!
What an install did, or why it did not: the answers and console lines of uploads.
*/

use super::index::{self, Entry};
use crate::console::Event;
use std::fs::File;
use std::io;

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
pub(super) struct Tee<'a, R> {
    pub(super) source: R,
    pub(super) copy: &'a mut File,
    pub(super) write_error: Option<io::Error>,
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
pub(super) fn device_warning(entry: &Entry) -> Option<String> {
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
