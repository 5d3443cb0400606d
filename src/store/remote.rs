/*!
The store on S3-compatible object storage (`--store s3://<bucket>/<prefix>`), shared by any
number of replicas.

Objects: `packages/<sha1>.ampkg`, each package file as it was verified (named by content, so
two replicas storing the same package write the same bytes), and `index/<file name>.json`, a
small record of the verified index entry (what the lists show, the icon, the signing cut and
seam, what an upload said): written last, so no replica sees a record without its package.
Replicas never read packages to build their index: at start they read every record, and then
poll the listing of `index/` every `POLL` (a change by another replica is seen within about
two polls); a record whose ETag changed is read again, one that is gone is removed. There are
no conditional writes to rely on (Garage ignores them): two replicas writing the same record
end with the last write, which every replica then reads, so all agree on one winner. A removed
package's object is deleted after `GRACE`, and only when no record points at it any more.
*/

use super::Store;
use super::extras::UploadExtras;
use super::index::{Entry, Icon, MAX_ICON_IN_MEMORY};
use crate::console::Event;
use crate::package::digest::{hex_bytes, to_hex};
use crate::package::splice::{Cut, Splice};
use crate::package::{PackageInfo, tags::Tag};
use crate::s3::{ObjectStore, RemoteObject, S3Error};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a redirect to a presigned URL stays valid.
pub const REDIRECT_VALID: Duration = Duration::from_secs(600);
/// How often the listing is polled.
pub const POLL: Duration = Duration::from_secs(1);
/// How long a removed package's object stays, for downloads still reading it.
const GRACE: Duration = Duration::from_secs(60);
/// Largest record read.
const MAX_RECORD: u64 = 8 << 20;
/// Largest seam kept in a record (larger ones are rebuilt from the object when needed).
const MAX_RECORD_SEAM: usize = 1 << 20;
const INDEX: &str = "index/";
const PACKAGES: &str = "packages/";

/// The S3 side of a store.
pub struct Remote {
    pub objects: Arc<ObjectStore>,
    /// Record name to the ETag last seen of it.
    known: Mutex<HashMap<String, String>>,
    /// Package objects to delete once their grace is over (if unreferenced then).
    doomed: Mutex<Vec<(Instant, String)>>,
    /// Whether the last poll failed (said once per failure streak).
    failing: Mutex<bool>,
    /// Unsigned downloads are redirects to presigned URLs.
    pub redirect_downloads: bool,
}

/// A record read: its name, its ETag, the entry and the seam it carried.
type Loaded = (String, String, Entry, Option<Vec<u8>>);

/// The record of one package.
#[derive(Serialize, Deserialize)]
struct Record {
    id: String,
    architecture: Option<String>,
    names: BTreeMap<String, String>,
    descriptions: BTreeMap<String, String>,
    version: Option<String>,
    categories: Vec<String>,
    /// Base64, when the icon is kept in memory.
    icon: Option<String>,
    /// Size of an icon read from the package when asked for.
    icon_in_package: Option<u64>,
    disk_space_used: u64,
    tags: Vec<String>,
    digest: String,
    sha1: String,
    file_size: u64,
    cut: Option<RecordCut>,
    recompress: Option<String>,
    /// Base64 of the seam member, when small.
    seam: Option<String>,
    /// Seconds since the epoch when it was stored (its `Last-Modified`).
    stored: u64,
    group: String,
    extras: Option<UploadExtras>,
}

#[derive(Serialize, Deserialize)]
struct RecordCut {
    keep: u64,
    closing: String,
    boundary: u64,
    cut: u64,
    between_sha256: String,
}

impl Remote {
    pub fn new(objects: ObjectStore, redirect_downloads: bool) -> Remote {
        Remote {
            redirect_downloads,
            objects: Arc::new(objects),
            known: Mutex::default(),
            doomed: Mutex::default(),
            failing: Mutex::new(false),
        }
    }

    fn object_of(sha1: &[u8; 20]) -> String {
        format!("{PACKAGES}{}.ampkg", to_hex(sha1))
    }

    fn record_name(file_name: &str) -> String {
        format!("{INDEX}{file_name}.json")
    }

    /// Store the verified package `file` and its record; the entry for the index.
    pub fn store(
        &self,
        info: PackageInfo,
        file: &std::fs::File,
        seam: Option<Vec<u8>>,
        name: &str,
        group: String,
        extras: Option<UploadExtras>,
    ) -> Result<Entry, S3Error> {
        let object = Remote::object_of(&info.sha1);
        self.objects.put_file(&object, file, info.file_size)?;
        let seam = match (&info.splice, seam) {
            (_, Some(seam)) => Some(seam),
            // Verification kept no seam (a large one): make it now, from our own file.
            (Splice::Cut(cut), None) if cut.cut != cut.boundary => {
                let mut source = file;
                use std::io::Seek;
                source
                    .seek(std::io::SeekFrom::Start(0))
                    .ok()
                    .and_then(|_| crate::package::splice::rebuild_seam(source, cut).ok())
            }
            _ => None,
        };
        let stored = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let record = to_record(&info, seam.as_deref(), stored, &group, extras.as_ref());
        let bytes = serde_json::to_vec(&record).map_err(|e| S3Error::Refused(e.to_string()))?;
        let record_name = Remote::record_name(name);
        let etag = self.objects.put_with_etag(&record_name, &bytes)?;
        self.known_mut()
            .insert(record_name, etag.unwrap_or_default());
        Ok(self.entry(record, name, seam.is_some()).0)
    }

    fn known_mut(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remove the record of `entry`; its object goes after the grace period.
    pub fn remove(&self, entry: &Entry) -> Result<(), S3Error> {
        let record_name = Remote::record_name(&entry.file_name());
        self.objects.delete(&record_name)?;
        self.known_mut().remove(&record_name);
        self.doom(&entry.info.sha1);
        Ok(())
    }

    pub(super) fn doom(&self, sha1: &[u8; 20]) {
        let mut doomed = self.doomed.lock().unwrap_or_else(|p| p.into_inner());
        doomed.push((Instant::now() + GRACE, Remote::object_of(sha1)));
    }

    /// The entry of a record (and whether it carried a seam), pointing at its object.
    fn entry(&self, record: Record, name: &str, _has_seam: bool) -> (Entry, Option<Vec<u8>>) {
        let (info, seam, icon_size, group, extras, stored) = from_record(record);
        let modified = UNIX_EPOCH + Duration::from_secs(stored);
        let object = Remote::object_of(&info.sha1);
        let mut entry = Entry::new(info, PathBuf::from(name), 0, modified);
        if let Some(size) = icon_size {
            entry.icon = Icon::InPackage { size };
        }
        entry.group = group;
        entry.extras = extras;
        entry.remote = Some(RemoteObject {
            objects: self.objects.clone(),
            name: object,
        });
        (entry, seam)
    }

    /// Every record's entry (with its seam), read in parallel.
    fn read_all(&self) -> Result<Vec<Loaded>, S3Error> {
        let listed = self.objects.list(INDEX)?;
        type Slot = Mutex<Option<Result<(Entry, Option<Vec<u8>>), S3Error>>>;
        let results: Vec<Slot> = listed.iter().map(|_| Mutex::new(None)).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..crate::s3::READERS.min(listed.len()) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(object) = listed.get(i) else { break };
                        let read = self.read_record(&object.name);
                        *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(read);
                    }
                });
            }
        });
        let mut out = Vec::new();
        for (object, result) in listed.into_iter().zip(results) {
            match result.into_inner().unwrap_or_else(|p| p.into_inner()) {
                Some(Ok((entry, seam))) => out.push((object.name, object.etag, entry, seam)),
                // Gone meanwhile (removed by another replica), or not a record of ours.
                Some(Err(S3Error::NotFound)) | Some(Err(S3Error::Refused(_))) | None => {}
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(out)
    }

    fn read_record(&self, record_name: &str) -> Result<(Entry, Option<Vec<u8>>), S3Error> {
        let bytes = self.objects.get(record_name, MAX_RECORD)?;
        let record: Record = serde_json::from_slice(&bytes)
            .map_err(|e| S3Error::Refused(format!("{record_name} is not a record: {e}")))?;
        let name = record_name
            .strip_prefix(INDEX)
            .and_then(|n| n.strip_suffix(".json"))
            .unwrap_or(record_name)
            .to_string();
        Ok(self.entry(record, &name, false))
    }
}

impl Store {
    /// Build the index from the records in the object store (no package is read).
    pub fn load_remote(&self, remote: &Remote) -> Result<(), String> {
        self.console.heading("Reading the store's index");
        let records = remote
            .read_all()
            .map_err(|e| format!("could not read the store's index: {e}"))?;
        let mut index = super::index::Index::sharing(self.size.clone());
        let mut cached = std::collections::HashSet::new();
        let mut known = HashMap::new();
        for (name, etag, mut entry, seam) in records {
            if index.icon_bytes() + entry.icon_in_memory() > super::ICON_BYTES {
                entry.stream_icon();
            }
            if let Some(signer) = &self.signer {
                cached.extend(signer.adopt(&entry, seam));
            }
            self.console.event(&Event::Adding {
                id: entry.id().to_string(),
                arch: entry.arch().to_string(),
            });
            index.insert(Arc::new(entry));
            known.insert(name, etag);
        }
        if let Some(signer) = &self.signer {
            signer.remove_cached_except(&cached);
        }
        *remote.known_mut() = known;
        *self.index() = index;
        Ok(())
    }

    /// One poll of the object store: apply what other replicas changed.
    pub fn poll_remote(&self, remote: &Remote) {
        // What we knew before listing: a record this replica writes while the listing is made
        // is not in it, and must not be taken for one another replica removed.
        let known = remote.known_mut().clone();
        let listed = match remote.objects.list(INDEX) {
            Ok(listed) => listed,
            Err(e) => return self.remote_failing(remote, &e),
        };
        self.remote_back(remote);
        let current: HashMap<String, String> =
            listed.into_iter().map(|o| (o.name, o.etag)).collect();
        for (name, etag) in &current {
            if known.get(name) == Some(etag) {
                continue;
            }
            match remote.read_record(name) {
                Ok((entry, seam)) => self.apply_remote(remote, name, etag, entry, seam),
                Err(S3Error::NotFound) => {}
                Err(e) => return self.remote_failing(remote, &e),
            }
        }
        for (name, etag) in known.iter().filter(|(n, _)| !current.contains_key(*n)) {
            self.forget_remote(remote, name, etag);
        }
        self.collect_doomed(remote);
    }

    fn apply_remote(
        &self,
        remote: &Remote,
        name: &str,
        etag: &str,
        entry: Entry,
        seam: Option<Vec<u8>>,
    ) {
        let entry = Arc::new(entry);
        if let Some(signer) = &self.signer {
            signer.prepare(entry.clone(), seam);
        }
        let changing = self.mutation();
        let previous = self.index().insert(entry.clone());
        remote
            .known_mut()
            .insert(name.to_string(), etag.to_string());
        drop(changing);
        if let Some(previous) = previous
            && previous.info.sha1 != entry.info.sha1
        {
            self.discard_remote(&previous);
        }
    }

    /// Drop the package of record `name`, gone from the listing, unless this replica wrote
    /// it again meanwhile (its ETag is no longer the one we knew, `etag`).
    fn forget_remote(&self, remote: &Remote, name: &str, etag: &str) {
        let file_name = name
            .strip_prefix(INDEX)
            .and_then(|n| n.strip_suffix(".json"))
            .unwrap_or(name);
        let changing = self.mutation();
        if remote.known_mut().get(name).is_none_or(|now| now != etag) {
            return;
        }
        let gone = self
            .index()
            .all()
            .find(|e| e.file_name() == file_name)
            .cloned();
        if let Some(entry) = &gone {
            self.index().remove(entry);
        }
        remote.known_mut().remove(name);
        drop(changing);
        if let Some(entry) = gone {
            self.discard_remote(&entry);
        }
    }

    /// Delete the objects whose grace is over and that no record points at.
    fn collect_doomed(&self, remote: &Remote) {
        let now = Instant::now();
        let due: Vec<String> = {
            let mut doomed = remote.doomed.lock().unwrap_or_else(|p| p.into_inner());
            let (due, later): (Vec<_>, Vec<_>) = doomed.drain(..).partition(|(at, _)| *at <= now);
            *doomed = later;
            due.into_iter().map(|(_, object)| object).collect()
        };
        for object in due {
            let used = self
                .index()
                .all()
                .any(|e| e.remote.as_ref().is_some_and(|r| r.name == object));
            if !used {
                let _ = remote.objects.delete(&object);
            }
        }
    }

    fn remote_failing(&self, remote: &Remote, error: &S3Error) {
        let mut failing = remote.failing.lock().unwrap_or_else(|p| p.into_inner());
        if !*failing {
            *failing = true;
            self.console.event(&Event::Failed {
                file: "the object store".to_string(),
                reason: format!("{error}; serving what is known, retrying"),
            });
        }
    }

    fn remote_back(&self, remote: &Remote) {
        let mut failing = remote.failing.lock().unwrap_or_else(|p| p.into_inner());
        if *failing {
            *failing = false;
            self.console.heading("The object store answers again");
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    openssl::base64::encode_block(bytes)
}

fn to_record(
    info: &PackageInfo,
    seam: Option<&[u8]>,
    stored: u64,
    group: &str,
    extras: Option<&UploadExtras>,
) -> Record {
    let (cut, recompress) = match &info.splice {
        Splice::Cut(cut) => (
            Some(RecordCut {
                keep: cut.keep,
                closing: to_hex(&cut.closing),
                boundary: cut.boundary,
                cut: cut.cut,
                between_sha256: to_hex(&cut.between_sha256),
            }),
            None,
        ),
        Splice::Recompress(reason) => (None, Some(reason.clone())),
    };
    let icon = info.icon.as_deref().filter(|i| !i.is_empty());
    Record {
        id: info.id.clone(),
        architecture: info.architecture.clone(),
        names: info.names.clone(),
        descriptions: info.descriptions.clone(),
        version: info.version.clone(),
        categories: info.categories.clone(),
        icon: icon.filter(|i| i.len() <= MAX_ICON_IN_MEMORY).map(base64),
        icon_in_package: icon
            .filter(|i| i.len() > MAX_ICON_IN_MEMORY)
            .map(|i| i.len() as u64),
        disk_space_used: info.disk_space_used,
        tags: info.tags.iter().map(Tag::to_string).collect(),
        digest: to_hex(&info.digest),
        sha1: to_hex(&info.sha1),
        file_size: info.file_size,
        cut,
        recompress,
        seam: seam.filter(|s| s.len() <= MAX_RECORD_SEAM).map(base64),
        stored,
        group: group.to_string(),
        extras: extras.cloned(),
    }
}

type FromRecord = (
    PackageInfo,
    Option<Vec<u8>>,
    Option<u64>,
    String,
    Option<UploadExtras>,
    u64,
);

fn from_record(record: Record) -> FromRecord {
    let array = |hex: &str| hex_bytes(hex).unwrap_or_default();
    let mut digest = [0u8; 32];
    let mut sha1 = [0u8; 20];
    let (d, s) = (array(&record.digest), array(&record.sha1));
    if d.len() == 32 {
        digest.copy_from_slice(&d);
    }
    if s.len() == 20 {
        sha1.copy_from_slice(&s);
    }
    let splice = match (record.cut, record.recompress) {
        (Some(cut), _) => {
            let mut between = [0u8; 32];
            let b = array(&cut.between_sha256);
            if b.len() == 32 {
                between.copy_from_slice(&b);
            }
            Splice::Cut(Cut {
                keep: cut.keep,
                closing: array(&cut.closing),
                boundary: cut.boundary,
                cut: cut.cut,
                between_sha256: between,
                seam: None,
            })
        }
        (None, reason) => Splice::Recompress(reason.unwrap_or_default()),
    };
    let decode = |text: &str| openssl::base64::decode_block(text).ok();
    let info = PackageInfo {
        id: record.id,
        architecture: record.architecture,
        names: record.names,
        descriptions: record.descriptions,
        version: record.version,
        categories: record.categories,
        icon: record.icon.as_deref().and_then(decode),
        disk_space_used: record.disk_space_used,
        extra: None,
        extra_signed: None,
        tags: record
            .tags
            .iter()
            .filter_map(|t| Tag::parse(t).ok())
            .collect(),
        digest,
        developer_signature: None,
        store_signature: None,
        sha1,
        file_size: record.file_size,
        splice,
    };
    let seam = record.seam.as_deref().and_then(decode);
    (
        info,
        seam,
        record.icon_in_package,
        record.group,
        record.extras,
        record.stored,
    )
}
