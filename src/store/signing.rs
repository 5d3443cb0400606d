/*!
Store-signing downloads without rebuilding the package.

The reference extracts and rebuilds the whole package for every signed download. A gzip file
may consist of several members that the device reads as one stream, so we build once per
package a gzip member holding its tar stream up to (not including) the end-of-archive blocks and
without any earlier store signature (the "signing body", kept in `.cache/`), and per download
send that file followed by a small second member with the new `storeSignature` footer and the
end-of-archive blocks. The digest is unchanged, and the per-download cost is one PKCS#7
signature plus a few hundred bytes of gzip.
*/

use super::index::Entry;
use crate::fsutil::TempFile;
use crate::package::Limits;
use crate::package::digest::to_hex;
use crate::package::signature::{SigningKey, store_content};
use crate::package::writer::{
    END_OF_ARCHIVE, SignatureKind, copy_entries, footer_entry, signature_footer_text,
};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

/// A signed download: `body_length` bytes of the cached body file, then `tail`.
/// Changes whenever the layout of signed downloads changes, so their `ETag`s do too.
const SIGNED_DOWNLOAD_FORMAT: &[u8] = b"amps-signed-1\0";

pub struct SignedDownload {
    pub body: File,
    pub body_length: u64,
    pub tail: Vec<u8>,
}

pub struct StoreSigner {
    key: SigningKey,
    cache_dir: PathBuf,
    /// The limits packages were verified with: the signing copy reads with the same.
    limits: Limits,
    /// Entries whose signing body a background thread builds ahead of the first download.
    pending: Mutex<Option<Sender<Arc<Entry>>>>,
    /// Recent signed tails: signatures are deterministic, so a resumed or ranged download
    /// (RAUC-style clients ask for many ranges) costs no RSA signature after the first.
    tails: Mutex<TailCache>,
}

/// Signed tails by (package SHA-1, hardware id), the oldest dropped beyond `TAIL_CACHE_BYTES`.
#[derive(Default)]
struct TailCache {
    tails: HashMap<([u8; 20], String), Arc<Vec<u8>>>,
    order: VecDeque<([u8; 20], String)>,
    bytes: usize,
}

/// Bytes of signed tails (and their keys) kept.
const TAIL_CACHE_BYTES: usize = 4 << 20;

impl TailCache {
    fn get(&self, key: &([u8; 20], String)) -> Option<Arc<Vec<u8>>> {
        self.tails.get(key).cloned()
    }

    fn insert(&mut self, key: ([u8; 20], String), tail: Arc<Vec<u8>>) {
        let size = |key: &([u8; 20], String), tail: &[u8]| 20 + key.1.len() + tail.len();
        let bytes = size(&key, &tail);
        if bytes > TAIL_CACHE_BYTES || self.tails.contains_key(&key) {
            return;
        }
        while self.bytes + bytes > TAIL_CACHE_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.tails.remove(&oldest) {
                self.bytes -= size(&oldest, &old);
            }
        }
        self.bytes += bytes;
        self.order.push_back(key.clone());
        self.tails.insert(key, tail);
    }
}

impl StoreSigner {
    /// A signer whose background builder thread runs until the signer is dropped.
    pub fn new(key: SigningKey, cache_dir: &Path, limits: Limits) -> Arc<StoreSigner> {
        let (sender, receiver) = channel::<Arc<Entry>>();
        let signer = Arc::new(StoreSigner {
            key,
            cache_dir: cache_dir.to_path_buf(),
            limits,
            pending: Mutex::new(Some(sender)),
            tails: Mutex::default(),
        });
        let weak = Arc::downgrade(&signer);
        std::thread::spawn(move || {
            for entry in receiver {
                let Some(signer) = weak.upgrade() else { break };
                // Errors show at the download that needs the body.
                let _ = signer.signing_body(&entry);
            }
        });
        signer
    }

    /// Build the signing body of `entry` in the background.
    pub fn prepare(&self, entry: Arc<Entry>) {
        if let Some(sender) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = sender.send(entry);
        }
    }

    /// The strong `ETag` of `entry` store-signed for `hardware_id`: its SHA-1, then a hash of
    /// the signing certificate and the hardware id (the signed bytes depend on exactly these,
    /// since signatures are deterministic).
    pub fn etag(&self, entry: &Entry, hardware_id: &str) -> String {
        let mut hasher = openssl::sha::Sha1::new();
        hasher.update(SIGNED_DOWNLOAD_FORMAT);
        hasher.update(&self.key.certificate_sha256());
        hasher.update(hardware_id.as_bytes());
        format!(
            "\"{}-{}\"",
            to_hex(&entry.info.sha1),
            to_hex(&hasher.finish())
        )
    }

    /// `Last-Modified` of a signed download of `entry`: the later of the package's time and
    /// the signing certificate's `notBefore` (a new certificate makes older copies stale).
    pub fn last_modified(&self, entry: &Entry) -> std::time::SystemTime {
        entry.modified.max(self.key.certificate_not_before())
    }

    /// The package of `entry`, store-signed for `hardware_id` (empty: bound to no device).
    pub fn sign(&self, entry: &Entry, hardware_id: &str) -> Result<SignedDownload, String> {
        let body = self.signing_body(entry)?;
        let key = (entry.info.sha1, hardware_id.to_string());
        // Looked up in a statement of its own: the lock must not live into the match.
        let cached = self
            .tails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key);
        let tail = match cached {
            Some(tail) => tail,
            None => {
                let tail = Arc::new(self.signed_tail(entry, hardware_id)?);
                self.tails
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, tail.clone());
                tail
            }
        };
        let body_length = body
            .metadata()
            .map_err(|e| format!("could not read the signing cache: {e}"))?
            .len();
        Ok(SignedDownload {
            body,
            body_length,
            tail: tail.to_vec(),
        })
    }

    /// The gzip member after the body: the store signature for `hardware_id` in a footer,
    /// then the end of the archive.
    fn signed_tail(&self, entry: &Entry, hardware_id: &str) -> Result<Vec<u8>, String> {
        let content = store_content(&entry.info.digest, hardware_id).map_err(|e| e.to_string())?;
        let signature = self
            .key
            .sign(content.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut tail = GzEncoder::new(Vec::with_capacity(4096), Compression::fast());
        let footer = footer_entry(&signature_footer_text(SignatureKind::Store, &signature));
        let tail = tail
            .write_all(&footer)
            .and_then(|_| tail.write_all(&END_OF_ARCHIVE))
            .and_then(|_| tail.finish())
            .map_err(|e| format!("could not build the signature footer: {e}"))?;
        Ok(tail)
    }

    /// The entry's signing body, built on first use (one build at a time per package).
    fn signing_body(&self, entry: &Entry) -> Result<File, String> {
        let mut slot = entry.signing_body.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = slot.as_ref()
            && let Ok(file) = File::open(path)
        {
            return Ok(file);
        }
        let source = entry
            .open()
            .map_err(|e| format!("could not open {}: {e}", entry.file_name()))?;
        let path = self.body_path(&entry.info.sha1);
        let mut temp = TempFile::new_in(&self.cache_dir)
            .map_err(|e| format!("could not create a file in the signing cache: {e}"))?;
        {
            let mut gzip = GzEncoder::new(
                BufWriter::with_capacity(256 * 1024, temp.file()),
                Compression::new(6),
            );
            copy_entries(source, &mut gzip, SignatureKind::Store, &self.limits)
                .map_err(|e| e.to_string())?;
            let mut out = gzip
                .finish()
                .map_err(|e| format!("could not write the signing cache: {e}"))?;
            out.flush()
                .map_err(|e| format!("could not write the signing cache: {e}"))?;
        }
        temp.persist(&path)
            .map_err(|e| format!("could not write the signing cache: {e}"))?;
        let file =
            File::open(&path).map_err(|e| format!("could not open the signing cache: {e}"))?;
        // What the body is, so a later start can keep it (`keep_cached_body`).
        if let Ok(stat) = crate::fsutil::stat_file(&file) {
            let _ = crate::fsutil::write_atomically(&check_path(&path), |f| {
                f.write_all(check_text(&stat).as_bytes())
            });
        }
        *slot = Some(path);
        Ok(file)
    }

    /// Where the signing body of a package with SHA-1 `sha1` lives.
    pub fn body_path(&self, sha1: &[u8; 20]) -> PathBuf {
        self.cache_dir
            .join(format!("{}.body.gz", crate::package::digest::to_hex(sha1)))
    }

    /// At start: use the body a previous run built for `entry`, if it is still the file that
    /// run wrote (size, modification time and inode as its `.check` file says: cheap, no
    /// re-reading). The first signed download after a restart is then as fast as any.
    pub fn keep_cached_body(&self, entry: &Entry) -> bool {
        let path = self.body_path(&entry.info.sha1);
        let Ok(file) = File::open(&path) else {
            return false;
        };
        let same = crate::fsutil::stat_file(&file).is_ok_and(|stat| {
            std::fs::read_to_string(check_path(&path)).is_ok_and(|t| t == check_text(&stat))
        });
        if same {
            *entry.signing_body.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
        }
        same
    }
}

/// The `.check` file beside a cached body.
pub fn check_path(body: &Path) -> PathBuf {
    let mut name = body.as_os_str().to_os_string();
    name.push(".check");
    PathBuf::from(name)
}

fn check_text(stat: &crate::fsutil::FileStat) -> String {
    format!("{} {} {}\n", stat.size, stat.mtime_ns, stat.ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_cache_keeps_within_its_bytes_dropping_the_oldest() {
        let mut cache = TailCache::default();
        let tail = Arc::new(vec![0u8; 4000]);
        let key = |n: usize| ([0u8; 20], format!("device-{n}"));
        for n in 0..5000 {
            cache.insert(key(n), tail.clone());
            assert!(cache.bytes <= TAIL_CACHE_BYTES);
        }
        assert!(cache.get(&key(4999)).is_some());
        assert!(cache.get(&key(0)).is_none(), "the oldest went first");
        assert_eq!(cache.tails.len(), cache.order.len());
        // A key longer than the whole cache is not kept (hardware ids come from clients).
        cache.insert(([1; 20], "x".repeat(TAIL_CACHE_BYTES)), tail);
        assert!(cache.bytes <= TAIL_CACHE_BYTES);
    }
}
