/*!
What the store counts for metrics: uploads (HTTP and `upload/`) by outcome, and scanner passes.
Plain atomics, read when `/metrics` is scraped.
*/

use std::sync::atomic::{AtomicU64, Ordering};

/// What happened to uploads (HTTP and `upload/`), and how often the scanner looked.
#[derive(Debug, Default)]
pub struct Counters {
    pub uploads_accepted: AtomicU64,
    /// Refused for the client's fault (not a package, too large, not authorized, ...).
    pub uploads_rejected_client: AtomicU64,
    /// Failed by ours (a full disk, an I/O error).
    pub uploads_rejected_server: AtomicU64,
    pub scanner_passes: AtomicU64,
}

/// Whose fault a failed upload was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    Accepted,
    ClientFault,
    ServerFault,
}

impl Counters {
    pub fn upload(&self, outcome: UploadOutcome) {
        let counter = match outcome {
            UploadOutcome::Accepted => &self.uploads_accepted,
            UploadOutcome::ClientFault => &self.uploads_rejected_client,
            UploadOutcome::ServerFault => &self.uploads_rejected_server,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
