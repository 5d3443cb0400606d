/*!
The in-memory index of accepted packages, keyed by id, architecture and group: the group is
empty as in Qt's server (one package per id and architecture), or, with `--keep-versions`,
the version and tag set (the Deployment Server's identity), so that versions and tag variants
live side by side. Selection picks among the packages that pass the tag filters the one of the
preferred architecture, then the newest version (`package::version`).

It sits behind one `Mutex` in the store; everything here is quick and does no I/O, so callers
copy out what they need (`Arc<Entry>`) and unlock before touching files or crypto. Answers to
`/package/list` are built outside the lock (`list_entries`, then `list_json`) and shared
(`answers`); the index's generation tells them which state they were built from.

Memory is bounded by bytes: an entry keeps only what the list shows (at most
`Limits::max_listed_size`), the digest and hashes, and an icon of at most `MAX_ICON_IN_MEMORY`;
a larger icon is streamed from the package file when asked for.
*/

use crate::package::PackageInfo;
use crate::package::reader::icon_reader;
use crate::package::tags::TagFilter;
use crate::package::version::NO_VERSION;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Icons up to this size are kept in memory; Qt's installer refuses packages with larger
/// ones, so such a package is still accepted (as Qt's server does) but with a warning.
pub const MAX_ICON_IN_MEMORY: usize = 256 * 1024;

/// A package's icon.
#[derive(Debug, Clone)]
pub enum Icon {
    None,
    /// Shared by every answer, never copied per request.
    InMemory(Arc<Vec<u8>>),
    /// Larger than `MAX_ICON_IN_MEMORY`: read from the package file.
    InPackage {
        size: u64,
    },
}

/// One accepted package and its file in `.packages/`.
#[derive(Debug)]
pub struct Entry {
    /// The package's metadata, without what the server does not need after verification
    /// (icon, `extra`, `extraSigned`, signatures).
    pub info: PackageInfo,
    pub icon: Icon,
    pub path: PathBuf,
    /// The file's inode when it was verified: a download checks it still has that file.
    pub inode: u64,
    /// The file's modification time when it was verified (`Last-Modified` of downloads).
    pub modified: std::time::SystemTime,
    /// Whether the recompressed signing body of a package that cannot be cut was built
    /// (`signing`); held while it is built.
    pub signing_body: Mutex<bool>,
    /// Removed or replaced: background work for it stops, and leaves nothing behind.
    pub discarded: AtomicBool,
    /// Empty, or with `--keep-versions` the version and tags that identify it beside others of
    /// its id and architecture (`store::identity`).
    pub group: String,
    /// What an upload through the Deployment Server's API said of it.
    pub extras: Option<super::extras::UploadExtras>,
    /// With `--store s3://...`: its object there (`path` is then not used).
    pub remote: Option<crate::s3::RemoteObject>,
}

impl Entry {
    /// An entry for the verified package `info` stored at `path`, whose file has `inode` and
    /// was last modified at `modified`.
    pub fn new(
        mut info: PackageInfo,
        path: PathBuf,
        inode: u64,
        modified: std::time::SystemTime,
    ) -> Entry {
        let icon = match info.icon.take() {
            // Qt's check is "icon data empty": no icon (a 404), not an empty image.
            None => Icon::None,
            Some(bytes) if bytes.is_empty() => Icon::None,
            Some(bytes) if bytes.len() <= MAX_ICON_IN_MEMORY => Icon::InMemory(Arc::new(bytes)),
            Some(bytes) => Icon::InPackage {
                size: bytes.len() as u64,
            },
        };
        info.extra = None;
        info.extra_signed = None;
        info.take_seam();
        info.developer_signature = None;
        info.store_signature = None;
        Entry {
            info,
            icon,
            path,
            inode,
            modified,
            signing_body: Mutex::new(false),
            discarded: AtomicBool::new(false),
            group: String::new(),
            extras: None,
            remote: None,
        }
    }

    /// Bytes of its icon kept in memory.
    pub fn icon_in_memory(&self) -> u64 {
        match &self.icon {
            Icon::InMemory(bytes) => bytes.len() as u64,
            _ => 0,
        }
    }

    /// Read the icon from the package file when asked for, instead of keeping it.
    pub fn stream_icon(&mut self) {
        if let Icon::InMemory(bytes) = &self.icon {
            self.icon = Icon::InPackage {
                size: bytes.len() as u64,
            };
        }
    }

    /// The bytes of an icon kept in the package file, streamed from it.
    pub fn icon_from_package(
        &self,
        limits: &crate::package::Limits,
    ) -> std::io::Result<(u64, Box<dyn std::io::Read + Send>)> {
        let (size, reader) = icon_reader(self.reader()?, limits)?;
        Ok((size, Box::new(reader)))
    }

    pub fn id(&self) -> &str {
        &self.info.id
    }

    pub fn arch(&self) -> &str {
        self.info.architecture_name()
    }

    /// Its file's name in `.packages/` (`<id>_<arch>.ampkg`, with `--keep-versions` also its
    /// group).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| file_name(self.id(), self.arch()))
    }

    /// Bytes of what lists show of it: its metadata and what its upload said.
    pub fn listed_size(&self) -> u64 {
        self.info.listed_size() + self.extras.as_ref().map_or(0, |x| x.size())
    }

    /// Its version, `0.0.0` when the manifest has none.
    pub fn version(&self) -> &str {
        self.info.version.as_deref().unwrap_or(NO_VERSION)
    }

    fn key(&self) -> Key {
        (
            self.id().to_string(),
            self.arch().to_string(),
            self.group.clone(),
        )
    }
}

/// Id, architecture, group.
type Key = (String, String, String);

/// The file name of a package in `.packages/`.
pub fn file_name(id: &str, arch: &str) -> String {
    format!("{id}_{arch}.ampkg")
}

/// A strong entity tag for `bytes`: a quoted SHA-1 of them.
pub fn content_etag(bytes: &[u8]) -> String {
    format!(
        "\"{}\"",
        crate::package::digest::to_hex(&openssl::sha::sha1(bytes))
    )
}

/// Filters of `/package/list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ListQuery {
    pub category: Option<String>,
    pub filter: Option<String>,
    pub architecture: Option<String>,
    pub tags: TagFilter,
    /// Exactly this version (`version=`), else the newest of each.
    pub version: Option<String>,
}

/// How many packages the index holds and their files' bytes, readable without its lock (for
/// metrics).
#[derive(Debug, Default)]
pub struct IndexSize {
    pub packages: AtomicU64,
    pub bytes: AtomicU64,
}

#[derive(Default)]
pub struct Index {
    packages: BTreeMap<Key, Arc<Entry>>,
    size: Arc<IndexSize>,
    /// Counts changes, so an answer built from an older state is not used.
    generation: u64,
    /// What the entries keep in memory: listed metadata, and icons.
    listed_bytes: u64,
    icon_bytes: u64,
}

impl Index {
    pub fn insert(&mut self, entry: Arc<Entry>) -> Option<Arc<Entry>> {
        self.changed();
        self.count(&entry, true);
        let previous = self.packages.insert(entry.key(), entry);
        if let Some(previous) = &previous {
            self.count(previous, false);
        }
        previous
    }

    /// Remove the package stored under `entry`'s key.
    pub fn remove(&mut self, entry: &Entry) -> Option<Arc<Entry>> {
        self.changed();
        let removed = self.packages.remove(&entry.key());
        if let Some(removed) = &removed {
            self.count(removed, false);
        }
        removed
    }

    fn count(&mut self, entry: &Entry, added: bool) {
        let (listed, icon) = (entry.listed_size(), entry.icon_in_memory());
        if added {
            self.listed_bytes += listed;
            self.icon_bytes += icon;
            self.size.packages.fetch_add(1, Ordering::Relaxed);
            self.size
                .bytes
                .fetch_add(entry.info.file_size, Ordering::Relaxed);
        } else {
            self.listed_bytes = self.listed_bytes.saturating_sub(listed);
            self.icon_bytes = self.icon_bytes.saturating_sub(icon);
            self.size.packages.fetch_sub(1, Ordering::Relaxed);
            self.size
                .bytes
                .fetch_sub(entry.info.file_size, Ordering::Relaxed);
        }
    }

    /// An empty index that keeps `size` up to date (from zero: it replaces any other index
    /// that kept it).
    pub fn sharing(size: Arc<IndexSize>) -> Index {
        size.packages.store(0, Ordering::Relaxed);
        size.bytes.store(0, Ordering::Relaxed);
        Index {
            size,
            ..Index::default()
        }
    }

    /// Bytes of listed metadata (names, descriptions, ...) of all packages.
    pub fn listed_bytes(&self) -> u64 {
        self.listed_bytes
    }

    /// Bytes of icons kept in memory.
    pub fn icon_bytes(&self) -> u64 {
        self.icon_bytes
    }

    fn changed(&mut self) {
        self.generation += 1;
    }

    /// The state's generation: it changes with every insert and remove.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The package of `id`, `arch` and `group`.
    pub fn get(&self, id: &str, arch: &str, group: &str) -> Option<Arc<Entry>> {
        let key = (id.to_string(), arch.to_string(), group.to_string());
        self.packages.get(&key).cloned()
    }

    /// The package with `entry`'s id, architecture and group.
    pub fn get_same(&self, entry: &Entry) -> Option<Arc<Entry>> {
        self.packages.get(&entry.key()).cloned()
    }

    /// The packages of `id`.
    fn of_id<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Arc<Entry>> + 'a {
        let start = (id.to_string(), String::new(), String::new());
        self.packages
            .range(start..)
            .take_while(move |(key, _)| key.0 == id)
            .map(|(_, entry)| entry)
    }

    pub fn len(&self) -> usize {
        self.packages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.packages.values()
    }

    /// Every package.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.packages.values()
    }

    /// The package of exactly `arch`, else the platform independent one; without `arch`, the
    /// platform independent one. Only packages that pass `tags` (and are of `version`, when
    /// given) count: the native one that does not is passed over for the platform independent
    /// one. Among several of one architecture, the newest version.
    pub fn select(
        &self,
        id: &str,
        arch: Option<&str>,
        version: Option<&str>,
        tags: &TagFilter,
    ) -> Option<Arc<Entry>> {
        self.select_by(id, version, tags, |e| match arch {
            Some(arch) if e.arch() == arch => Some(1),
            _ if e.arch() == "all" => Some(0),
            _ => None,
        })
    }

    /// The package of `id` that passes `tags` (and is of `version`, when given) with the
    /// highest rank (`None`: not eligible), then the newest version.
    pub fn select_by(
        &self,
        id: &str,
        version: Option<&str>,
        tags: &TagFilter,
        rank: impl Fn(&Entry) -> Option<u8>,
    ) -> Option<Arc<Entry>> {
        self.of_id(id)
            .filter(|e| tags.passes(&e.info.tags) && version.is_none_or(|v| e.version() == v))
            .filter_map(|e| rank(e).map(|r| (r, e)))
            .max_by(|(ra, a), (rb, b)| {
                ra.cmp(rb)
                    .then_with(|| crate::package::version::compare(a.version(), b.version()))
            })
            .map(|(_, e)| e.clone())
    }

    /// All packages `remove` matches: `arch` is the stored name (`all` for platform
    /// independent ones); without it, every architecture of `id`; with `version`, only that
    /// version.
    pub fn matching(&self, id: &str, arch: Option<&str>, version: Option<&str>) -> Vec<Arc<Entry>> {
        self.of_id(id)
            .filter(|e| arch.is_none_or(|a| e.arch() == a))
            .filter(|e| version.is_none_or(|v| e.version() == v))
            .cloned()
            .collect()
    }

    /// All packages whose id or `<id>_<arch>` equals `pattern` (the `remove/` folder).
    pub fn matching_name(&self, pattern: &str) -> Vec<Arc<Entry>> {
        self.packages
            .values()
            .filter(|e| e.id() == pattern || format!("{}_{}", e.id(), e.arch()) == pattern)
            .cloned()
            .collect()
    }

    /// Sorted names of all categories.
    pub fn categories(&self) -> Vec<String> {
        let all: BTreeSet<&String> = self
            .packages
            .values()
            .flat_map(|e| e.info.categories.iter())
            .collect();
        all.into_iter().cloned().collect()
    }

    /// The packages `/package/list` shows for `query`, in order (quick: no JSON here).
    pub fn list_entries(&self, query: &ListQuery) -> Vec<Arc<Entry>> {
        let needle = query.filter.as_deref().map(str::to_lowercase);
        let (tags, version) = (&query.tags, query.version.as_deref());
        self.packages
            .values()
            // Tags first: the architecture preference picks among the packages that pass;
            // then, per id, the one `select` picks (per id and architecture without one).
            .filter(|e| tags.passes(&e.info.tags) && version.is_none_or(|v| e.version() == v))
            .filter(|e| {
                let chosen = match &query.architecture {
                    Some(arch) => self.select(e.id(), Some(arch), version, tags),
                    None => self.select_by(e.id(), version, tags, |c| {
                        (c.arch() == e.arch()).then_some(0)
                    }),
                };
                chosen.is_some_and(|c| Arc::ptr_eq(&c, e))
            })
            .filter(|e| {
                query
                    .category
                    .as_ref()
                    .is_none_or(|c| e.info.categories.contains(c))
            })
            .filter(|e| {
                needle.as_ref().is_none_or(|n| {
                    e.info
                        .names
                        .values()
                        .any(|name| name.to_lowercase().contains(n))
                })
            })
            .cloned()
            .collect()
    }
}

/// The JSON answer of `/package/list` for `entries`.
pub fn list_json(entries: &[Arc<Entry>]) -> Vec<u8> {
    let items: Vec<ListItem<'_>> = entries.iter().map(|e| ListItem::new(e)).collect();
    serde_json::to_vec(&items).unwrap_or_else(|_| b"[]".to_vec())
}

/// One element of `/package/list`, fields in the reference's order: Qt's `QJsonObject`
/// sorts its keys.
#[derive(Serialize)]
struct ListItem<'a> {
    architecture: &'a str,
    categories: &'a [String],
    descriptions: &'a BTreeMap<String, String>,
    #[serde(rename = "iconUrl")]
    icon_url: String,
    id: &'a str,
    names: &'a BTreeMap<String, String>,
    /// Only for packages with tags: the others keep exactly Qt's fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    version: &'a str,
}

impl<'a> ListItem<'a> {
    fn new(entry: &'a Entry) -> ListItem<'a> {
        let info = &entry.info;
        ListItem {
            id: &info.id,
            architecture: info.architecture.as_deref().unwrap_or(""),
            names: &info.names,
            descriptions: &info.descriptions,
            version: info.version.as_deref().unwrap_or(""),
            categories: &info.categories,
            icon_url: format!(
                "package/icon?id={}&architecture={}",
                percent_encode(&info.id),
                percent_encode(entry.arch())
            ),
            tags: info.tags.iter().map(|t| t.to_string()).collect(),
        }
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
