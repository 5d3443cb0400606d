/*!
Start-up: every file in `.packages/` verified (on all cores) and indexed, within the store's
bounds, with what `.cache/` and `.extras/` keep for it; a file that fails is skipped with its
reason, never removed.
*/

use super::files::{display_name, new_entry, open_regular, verify_in_parallel};
use super::index::{Entry, Index};
use super::{ICON_BYTES, LISTED_BYTES, Store, extras, identity};
use crate::console::Event;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl Store {
    /// Verify every file in `.packages/` (on all cores) and index the valid ones, printing a
    /// line for each in file-name order.
    pub fn load_packages(&self) {
        self.console.heading("Scanning .packages");
        let mut files: Vec<PathBuf> = match fs::read_dir(&self.packages_dir) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        let results = verify_in_parallel(&files, |path| self.verify_stored(path));
        let mut lines = Vec::new();
        let mut index = Index::sharing(self.size.clone());
        let mut cached = std::collections::HashSet::new();
        for (path, result) in files.iter().zip(results) {
            let name = display_name(path);
            let result = result.and_then(|(mut entry, kept)| {
                let full = index.len() as u64 >= self.max_packages;
                if index.get_same(&entry).is_some() {
                    return Err("the same package (id, architecture and group) as another file".into());
                }
                let listed = index.listed_bytes() + entry.listed_size();
                if full || listed > LISTED_BYTES {
                    return Err(format!(
                        "the store is full: at most {} packages and {LISTED_BYTES} bytes of names, descriptions and categories",
                        self.max_packages
                    ));
                }
                if index.icon_bytes() + entry.icon_in_memory() > ICON_BYTES {
                    entry.stream_icon();
                }
                Ok((entry, kept))
            });
            match result {
                Ok((entry, kept)) => {
                    let (id, arch) = (entry.id().to_string(), entry.arch().to_string());
                    lines.push(Event::Adding {
                        id: id.clone(),
                        arch: arch.clone(),
                    });
                    if let Some(reason) = self.entry_warning(&entry) {
                        lines.push(Event::Warning { id, arch, reason });
                    }
                    index.insert(Arc::new(entry));
                    cached.extend(kept);
                }
                Err(reason) => lines.push(Event::Skipping { file: name, reason }),
            }
        }
        if lines.is_empty() {
            self.console.plain(" (none found)");
        }
        for line in &lines {
            self.console.event(line);
        }
        if let Some(signer) = &self.signer {
            signer.remove_cached_except(&cached);
        }
        *self.index() = index;
    }

    /// Verify a package file in `.packages/`; with store signing, also what `.cache/` keeps
    /// for it (the names of its files there).
    fn verify_stored(&self, path: &Path) -> Result<(Entry, Vec<std::ffi::OsString>), String> {
        let file = open_regular(path)?;
        let mut info = self.verify(&file)?;
        let seam = info.take_seam();
        let (id, arch) = (info.id.clone(), info.architecture_name().to_string());
        let group = identity::group(&info, self.keep_versions);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !identity::acceptable_name(name, &id, &arch, &group) {
            return Err(format!(
                "invalid package name: expected {}, found {}",
                identity::stored_name(&id, &arch, &group),
                display_name(path)
            ));
        }
        let metadata = file
            .metadata()
            .map_err(|e| format!("could not read {}: {e}", display_name(path)))?;
        let mut entry = new_entry(info, path.to_path_buf(), &metadata);
        entry.group = group;
        entry.extras = self
            .extras_dir
            .get()
            .and_then(|dir| extras::load(dir, name, &entry.info.sha1));
        let cached = match &self.signer {
            Some(signer) => signer.adopt(&entry, seam),
            None => Vec::new(),
        };
        Ok((entry, cached))
    }
}
