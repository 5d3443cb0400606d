/*!
The in-memory index of accepted packages, keyed by id and architecture.

It sits behind one `Mutex` in the store; everything here is quick and does no I/O, so callers
copy out what they need (`Arc<Entry>`) and unlock before touching files or crypto. Answers to
`/package/list` are cached per query and the cache is dropped on every change.
*/

use crate::package::PackageInfo;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One accepted package and its file in `.packages/`.
#[derive(Debug)]
pub struct Entry {
    pub info: PackageInfo,
    pub path: PathBuf,
    /// The file's inode when it was verified: a download checks it still has that file.
    pub inode: u64,
    /// The store-signing body (a gzip member of the tar stream without its end), once built.
    pub signing_body: Mutex<Option<PathBuf>>,
}

impl Entry {
    pub fn id(&self) -> &str {
        &self.info.id
    }

    pub fn arch(&self) -> &str {
        self.info.architecture_name()
    }

    /// `<id>_<arch>.ampkg`
    pub fn file_name(&self) -> String {
        file_name(self.id(), self.arch())
    }
}

/// The file name of a package in `.packages/`.
pub fn file_name(id: &str, arch: &str) -> String {
    format!("{id}_{arch}.ampkg")
}

/// Filters of `/package/list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ListQuery {
    pub category: Option<String>,
    pub filter: Option<String>,
    pub architecture: Option<String>,
}

#[derive(Default)]
pub struct Index {
    packages: BTreeMap<(String, String), Arc<Entry>>,
    list_cache: HashMap<ListQuery, Arc<Vec<u8>>>,
}

/// Upper bound on cached list answers; distinct queries beyond it are rebuilt each time.
const LIST_CACHE_SIZE: usize = 256;

impl Index {
    pub fn insert(&mut self, entry: Arc<Entry>) -> Option<Arc<Entry>> {
        self.list_cache.clear();
        let key = (entry.id().to_string(), entry.arch().to_string());
        self.packages.insert(key, entry)
    }

    pub fn remove(&mut self, id: &str, arch: &str) -> Option<Arc<Entry>> {
        self.list_cache.clear();
        self.packages.remove(&(id.to_string(), arch.to_string()))
    }

    pub fn get(&self, id: &str, arch: &str) -> Option<Arc<Entry>> {
        self.packages
            .get(&(id.to_string(), arch.to_string()))
            .cloned()
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

    /// The package of exactly `arch`, else the platform independent one; without `arch`, the
    /// platform independent one.
    pub fn select(&self, id: &str, arch: Option<&str>) -> Option<Arc<Entry>> {
        arch.and_then(|a| self.get(id, a))
            .or_else(|| self.get(id, "all"))
    }

    /// All packages `remove` matches: `arch` is the stored name (`all` for platform
    /// independent ones); without it, every architecture of `id`.
    pub fn matching(&self, id: &str, arch: Option<&str>) -> Vec<Arc<Entry>> {
        self.packages
            .values()
            .filter(|e| e.id() == id && arch.is_none_or(|a| e.arch() == a))
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

    /// The JSON answer of `/package/list` for `query`, from the cache when possible.
    pub fn list_json(&mut self, query: &ListQuery) -> Arc<Vec<u8>> {
        if let Some(json) = self.list_cache.get(query) {
            return json.clone();
        }
        let json = Arc::new(self.build_list(query));
        if self.list_cache.len() < LIST_CACHE_SIZE {
            self.list_cache.insert(query.clone(), json.clone());
        }
        json
    }

    fn build_list(&self, query: &ListQuery) -> Vec<u8> {
        let needle = query.filter.as_deref().map(str::to_lowercase);
        let items: Vec<ListItem<'_>> = self
            .packages
            .values()
            .filter(|e| match &query.architecture {
                // Per id: the package for that architecture, else the platform independent one.
                Some(arch) => {
                    e.arch() == arch || (e.arch() == "all" && self.get(e.id(), arch).is_none())
                }
                None => true,
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
            .map(|e| ListItem::new(e))
            .collect();
        serde_json::to_vec(&items).unwrap_or_else(|_| b"[]".to_vec())
    }
}

/// One element of `/package/list`, fields in the reference's order.
#[derive(Serialize)]
struct ListItem<'a> {
    id: &'a str,
    architecture: &'a str,
    names: &'a BTreeMap<String, String>,
    descriptions: &'a BTreeMap<String, String>,
    version: &'a str,
    categories: &'a [String],
    #[serde(rename = "iconUrl")]
    icon_url: String,
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
