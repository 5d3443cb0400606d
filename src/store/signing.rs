/*!
Store-signing downloads without rebuilding the package.

The reference extracts and rebuilds the whole package for every signed download. We send the
uploaded file's own bytes up to the cut verification found, then a computed tail: the closing
bytes of that member, the seam member, and a member with the new `storeSignature` footer and
the end of the archive (`package::splice`). The per-download cost is one PKCS#7 signature
(cached per package and hardware id) plus a few hundred bytes of gzip; nothing is recompressed
and nothing is copied to disk but a small record (`records`).

A package that cannot be cut (`Splice::Recompress`: rare, said on the console when it is
added) is signed as before: a gzip member holding its tar stream up to the end of the archive
and without earlier store signatures is built once into `.cache/`, in the background.
*/

use super::index::Entry;
use super::lru::ByteLru;
use super::records;
use crate::fsutil::Dir;
use crate::package::Limits;
use crate::package::digest::to_hex;
use crate::package::signature::{SigningKey, store_content};
use crate::package::splice::{Cut, Splice, rebuild_seam};
use crate::package::writer::{
    END_OF_ARCHIVE, SignatureKind, copy_entries, footer_entry, signature_footer_text,
};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Changes whenever the layout of signed downloads changes, so their `ETag`s do too.
const SIGNED_DOWNLOAD_FORMAT: &[u8] = b"amps-signed-2\0";
/// The file in `.cache/` saying which certificate signs since when.
const CERTIFICATE_RECORD: &str = "signing-certificate";
/// Bytes of signature footer members kept (per package and hardware id).
const FOOTER_CACHE_BYTES: usize = 4 << 20;
/// Bytes of seams kept in memory (per package).
const SEAM_CACHE_BYTES: usize = 16 << 20;
/// Packages waiting for background work (records, rebuilt seams, recompressed bodies); when
/// full, the work is done at the first signed download instead.
const QUEUE_LENGTH: usize = 16;

/// A signed download: `body_length` bytes of `body`, then the pieces of `tail`.
/// What a signed download starts with: the package file (or its object in the S3 store) up to
/// the cut, or the recompressed copy in `.cache/`.
pub enum SignedBody {
    File(File),
    Object(crate::s3::RemoteObject),
}

pub struct SignedDownload {
    pub body: SignedBody,
    pub body_length: u64,
    pub tail: Vec<Arc<Vec<u8>>>,
}

pub struct StoreSigner {
    key: SigningKey,
    /// `.cache/`, opened once by `open_cache`.
    cache: OnceLock<Dir>,
    /// The limits packages were verified with: a recompressed copy reads with the same.
    limits: Limits,
    queue: Mutex<Option<SyncSender<Arc<Entry>>>>,
    /// Signature footer members by (package SHA-1, hardware id): signatures are deterministic,
    /// so a resumed or ranged download costs no signature after the first.
    footers: Mutex<ByteLru<([u8; 20], String)>>,
    /// Seams by package SHA-1.
    seams: Mutex<ByteLru<[u8; 20]>>,
    /// Since when this server signs with this certificate (`open_cache`).
    certificate_since: OnceLock<SystemTime>,
    /// Signed downloads answered, signatures made, footers found made, seams rebuilt from
    /// package files, and recompressed bodies built for packages that cannot be cut.
    pub signed_downloads: AtomicU64,
    pub signatures: AtomicU64,
    pub footer_hits: AtomicU64,
    pub seams_rebuilt: AtomicU64,
    pub recompressed_bodies: AtomicU64,
}

impl StoreSigner {
    /// A signer whose background thread runs until the signer is dropped.
    pub fn new(key: SigningKey, limits: Limits) -> Arc<StoreSigner> {
        let (sender, receiver) = sync_channel::<Arc<Entry>>(QUEUE_LENGTH);
        let signer = Arc::new(StoreSigner {
            key,
            cache: OnceLock::new(),
            certificate_since: OnceLock::new(),
            limits,
            queue: Mutex::new(Some(sender)),
            footers: Mutex::new(ByteLru::new(FOOTER_CACHE_BYTES)),
            seams: Mutex::new(ByteLru::new(SEAM_CACHE_BYTES)),
            signed_downloads: AtomicU64::new(0),
            signatures: AtomicU64::new(0),
            footer_hits: AtomicU64::new(0),
            seams_rebuilt: AtomicU64::new(0),
            recompressed_bodies: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&signer);
        std::thread::spawn(move || background(weak, receiver));
        signer
    }

    /// Use `cache` (`.cache/`, opened by descriptor) from now on, and learn since when this
    /// signing certificate is in use.
    pub fn open_cache(&self, cache: Dir) {
        let _ = self
            .certificate_since
            .set(self.certificate_in_use_since(&cache));
        let _ = self.cache.set(cache);
    }

    /// When this server began signing with this certificate: kept in `.cache/` with the
    /// certificate's hash, set to now when the certificate changed. `Last-Modified` of signed
    /// downloads is never earlier, so a new certificate (whatever its `notBefore`) makes
    /// every signed download newer than copies signed with the old one.
    fn certificate_in_use_since(&self, cache: &Dir) -> SystemTime {
        let hash = to_hex(&self.key.certificate_sha256());
        let recorded = cache
            .read_file(CERTIFICATE_RECORD.as_ref(), 256)
            .ok()
            .and_then(|bytes| {
                let text = String::from_utf8(bytes).ok()?;
                let (recorded_hash, seconds) = text.trim().split_once(' ')?;
                (recorded_hash == hash)
                    .then(|| seconds.parse::<u64>().ok())
                    .flatten()
            });
        if let Some(seconds) = recorded {
            return UNIX_EPOCH + Duration::from_secs(seconds);
        }
        let now = SystemTime::now();
        let seconds = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // Without the record, dates are only as good as this process: the start time.
        let _ = cache.write_file(
            CERTIFICATE_RECORD.as_ref(),
            format!("{hash} {seconds}\n").as_bytes(),
        );
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn cache(&self) -> Result<&Dir, String> {
        self.cache
            .get()
            .ok_or_else(|| "the signing cache is not open".to_string())
    }

    /// A package was added: keep the seam verification built, and have the rest done in the
    /// background (its record, or a rebuilt seam, or a recompressed body).
    pub fn prepare(&self, entry: Arc<Entry>, seam: Option<Vec<u8>>) {
        if let Some(seam) = seam {
            self.remember_seam(&entry, Arc::new(seam));
        }
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = queue.as_ref() {
            // A full queue: done at the first signed download instead.
            let _ = sender.try_send(entry);
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

    /// `Last-Modified` of a signed download of `entry`: the latest of the package's time, the
    /// signing certificate's `notBefore` and when this server began signing with it (a new
    /// certificate makes older copies stale).
    pub fn last_modified(&self, entry: &Entry) -> SystemTime {
        let certificate = self
            .certificate_since
            .get()
            .copied()
            .unwrap_or(UNIX_EPOCH)
            .max(self.key.certificate_not_before());
        entry.modified.max(certificate)
    }

    /// The package of `entry`, store-signed for `hardware_id` (empty: bound to no device).
    pub fn sign(&self, entry: &Entry, hardware_id: &str) -> Result<SignedDownload, String> {
        let signed = self.signed(entry, hardware_id);
        if signed.is_ok() {
            self.signed_downloads.fetch_add(1, Ordering::Relaxed);
        }
        signed
    }

    /// `sign` without the counting.
    fn signed(&self, entry: &Entry, hardware_id: &str) -> Result<SignedDownload, String> {
        let footer = self.footer_member(entry, hardware_id)?;
        match &entry.info.splice {
            Splice::Cut(cut) => {
                let seam = self.seam(entry, cut)?;
                let body = match &entry.remote {
                    Some(remote) => SignedBody::Object(remote.clone()),
                    None => SignedBody::File(
                        entry
                            .open()
                            .map_err(|e| format!("could not open {}: {e}", entry.file_name()))?,
                    ),
                };
                Ok(SignedDownload {
                    body,
                    body_length: cut.keep,
                    tail: vec![Arc::new(cut.closing.clone()), seam, footer],
                })
            }
            Splice::Recompress(_) => {
                let body = self.recompressed_body(entry)?;
                let body_length = body
                    .metadata()
                    .map_err(|e| format!("could not read the signing cache: {e}"))?
                    .len();
                Ok(SignedDownload {
                    body: SignedBody::File(body),
                    body_length,
                    tail: vec![footer],
                })
            }
        }
    }

    /// The gzip member with the store signature for `hardware_id` in a footer, then the end
    /// of the archive.
    fn footer_member(&self, entry: &Entry, hardware_id: &str) -> Result<Arc<Vec<u8>>, String> {
        let key = (entry.info.sha1, hardware_id.to_string());
        // Looked up in a statement of its own: the lock must not live into the match.
        let cached = self
            .footers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key);
        if let Some(footer) = cached {
            self.footer_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(footer);
        }
        let content = store_content(&entry.info.digest, hardware_id).map_err(|e| e.to_string())?;
        let signature = self
            .key
            .sign(content.as_bytes())
            .map_err(|e| e.to_string())?;
        self.signatures.fetch_add(1, Ordering::Relaxed);
        let mut member = GzEncoder::new(Vec::with_capacity(4096), Compression::fast());
        let footer = footer_entry(&signature_footer_text(SignatureKind::Store, &signature));
        let member = member
            .write_all(&footer)
            .and_then(|_| member.write_all(&END_OF_ARCHIVE))
            .and_then(|_| member.finish())
            .map_err(|e| format!("could not build the signature footer: {e}"))?;
        let member = Arc::new(member);
        self.footers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, member.clone());
        Ok(member)
    }

    /// The seam of `entry`: from memory, from its record, or rebuilt from the package file.
    fn seam(&self, entry: &Entry, cut: &Cut) -> Result<Arc<Vec<u8>>, String> {
        if cut.cut == cut.boundary {
            return Ok(Arc::new(Vec::new()));
        }
        let cached = self
            .seams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&entry.info.sha1);
        if let Some(seam) = cached {
            return Ok(seam);
        }
        let recorded = self
            .cache()
            .ok()
            .and_then(|cache| records::read_seam(cache, entry, cut));
        let seam = match recorded {
            Some(seam) => Arc::new(seam),
            None => {
                let file = entry
                    .reader()
                    .map_err(|e| format!("could not open {}: {e}", entry.file_name()))?;
                let seam = rebuild_seam(file, cut)
                    .map_err(|e| format!("could not read {}: {e}", entry.file_name()))?;
                self.seams_rebuilt.fetch_add(1, Ordering::Relaxed);
                let seam = Arc::new(seam);
                self.record(entry, cut, &seam);
                seam
            }
        };
        self.seams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(entry.info.sha1, seam.clone());
        Ok(seam)
    }

    fn remember_seam(&self, entry: &Entry, seam: Arc<Vec<u8>>) {
        self.seams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(entry.info.sha1, seam);
    }

    /// Keep `seam` in `.cache/` when it is small enough beside its package.
    fn record(&self, entry: &Entry, cut: &Cut, seam: &[u8]) {
        if records::worth_recording(seam.len(), entry.info.file_size)
            && let Ok(cache) = self.cache()
        {
            // A cache: when it cannot be written, the seam is rebuilt when needed.
            let _ = records::write_seam(cache, entry, cut, seam);
        }
    }

    /// The background work for a package just added.
    fn prepare_now(&self, entry: &Entry) {
        match &entry.info.splice {
            Splice::Cut(cut) => {
                let cached = self
                    .seams
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&entry.info.sha1);
                match cached {
                    Some(seam) => self.record(entry, cut, &seam),
                    // Errors show at the download that needs the seam.
                    None => drop(self.seam(entry, cut)),
                }
            }
            Splice::Recompress(_) => drop(self.recompressed_body(entry)),
        }
    }

    /// At start, for a package just verified: keep the seam verification built (in memory as
    /// room allows; in a record when it is worth one), or the body a previous run built.
    /// Returns the names in `.cache/` that belong to `entry`.
    pub fn adopt(&self, entry: &Entry, seam: Option<Vec<u8>>) -> Vec<OsString> {
        let Ok(cache) = self.cache() else {
            return Vec::new();
        };
        let sha1 = &entry.info.sha1;
        match &entry.info.splice {
            Splice::Cut(cut) => {
                let recorded = records::read_seam(cache, entry, cut).is_some()
                    || seam.as_ref().is_some_and(|seam| {
                        records::worth_recording(seam.len(), entry.info.file_size)
                            && records::write_seam(cache, entry, cut, seam).is_ok()
                    });
                if let Some(seam) = seam {
                    self.remember_seam(entry, Arc::new(seam));
                }
                if recorded {
                    vec![records::seam_name(sha1)]
                } else {
                    Vec::new()
                }
            }
            Splice::Recompress(_) if self.keep_recompressed_body(cache, entry) => {
                vec![records::body_name(sha1), records::body_check_name(sha1)]
            }
            Splice::Recompress(_) => Vec::new(),
        }
    }

    /// After the start-up scan: remove everything in `.cache/` but `kept` (what older versions
    /// or removed packages left, temporary files, anything that is not ours).
    pub fn remove_cached_except(&self, kept: &HashSet<OsString>) {
        let Ok(cache) = self.cache() else { return };
        for name in cache.names().unwrap_or_default() {
            if !kept.contains(&name) && name != CERTIFICATE_RECORD {
                let _ = cache.remove(&name);
            }
        }
    }

    /// `entry` is gone or replaced (the store has marked it `discarded`): drop what `.cache/`
    /// and memory hold for it. Never waits for a body being built (that build removes its own
    /// result when it ends).
    pub fn discard(&self, entry: &Entry) {
        let sha1 = &entry.info.sha1;
        self.seams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sha1);
        let Ok(cache) = self.cache() else { return };
        let _ = cache.remove(&records::seam_name(sha1));
        if let Ok(mut built) = entry.signing_body.try_lock()
            && std::mem::take(&mut *built)
        {
            let _ = cache.remove(&records::body_check_name(sha1));
            let _ = cache.remove(&records::body_name(sha1));
        }
    }

    /// The recompressed body of `entry`, built on first use (one build at a time per package).
    fn recompressed_body(&self, entry: &Entry) -> Result<File, String> {
        let cache = self.cache()?;
        let sha1 = &entry.info.sha1;
        let mut built = entry.signing_body.lock().unwrap_or_else(|p| p.into_inner());
        if *built && let Some(file) = open_body(cache, sha1) {
            return Ok(file);
        }
        let source = entry
            .reader()
            .map_err(|e| format!("could not open {}: {e}", entry.file_name()))?;
        let (temp, file) = cache
            .create_temp()
            .map_err(|e| format!("could not create a file in the signing cache: {e}"))?;
        let written = write_body(source, &file, &self.limits)
            .and_then(|()| {
                cache
                    .rename_replacing(&temp, &records::body_name(sha1))
                    .map_err(|e| format!("could not write the signing cache: {e}"))
            })
            .and_then(|()| {
                let stat = crate::fsutil::stat_file(&file)
                    .map_err(|e| format!("could not read the signing cache: {e}"))?;
                cache
                    .write_file(
                        &records::body_check_name(sha1),
                        records::body_check_text(&stat).as_bytes(),
                    )
                    .map_err(|e| format!("could not write the signing cache: {e}"))
            });
        if let Err(e) = written {
            let _ = cache.remove(&temp);
            return Err(e);
        }
        self.recompressed_bodies.fetch_add(1, Ordering::Relaxed);
        if entry.discarded.load(Ordering::Acquire) {
            let _ = cache.remove(&records::body_check_name(sha1));
            let _ = cache.remove(&records::body_name(sha1));
            return Err("the package was removed".into());
        }
        *built = true;
        Ok(file)
    }

    /// At start: use the body a previous run built for `entry`, if it is still the file that
    /// run wrote (size, modification time and inode as its check file says).
    fn keep_recompressed_body(&self, cache: &Dir, entry: &Entry) -> bool {
        let same = open_body(cache, &entry.info.sha1).is_some();
        if same {
            *entry.signing_body.lock().unwrap_or_else(|p| p.into_inner()) = true;
        }
        same
    }
}

/// The recompressed body of the package with SHA-1 `sha1`, if its check file vouches for it.
fn open_body(cache: &Dir, sha1: &[u8; 20]) -> Option<File> {
    let file = cache.open_file(&records::body_name(sha1)).ok()?;
    let stat = crate::fsutil::stat_file(&file).ok()?;
    let check = cache.read_file(&records::body_check_name(sha1), 256).ok()?;
    (stat.kind == crate::fsutil::FileKind::Regular
        && check == records::body_check_text(&stat).as_bytes())
    .then_some(file)
}

/// The package in `source` as one gzip member without its end and its store signatures.
fn write_body(source: impl Read, out: &File, limits: &Limits) -> Result<(), String> {
    let write_error = |e| format!("could not write the signing cache: {e}");
    let mut gzip = GzEncoder::new(
        BufWriter::with_capacity(256 * 1024, out),
        Compression::new(6),
    );
    copy_entries(source, &mut gzip, SignatureKind::Store, limits).map_err(|e| e.to_string())?;
    let mut out = gzip.finish().map_err(write_error)?;
    out.flush().map_err(write_error)?;
    out.get_ref().sync_all().map_err(write_error)
}

fn background(signer: std::sync::Weak<StoreSigner>, queue: Receiver<Arc<Entry>>) {
    for entry in queue {
        let Some(signer) = signer.upgrade() else {
            break;
        };
        if !entry.discarded.load(Ordering::Acquire) {
            signer.prepare_now(&entry);
        }
    }
}
