/*!
Installing a package: verify it (from a file of ours, or while copying someone else's file into
one), check the store has room, then put it in place (a rename into `.packages/`, or the object
and its record in the object store) and into the index, all under the mutation lock so the
file and the index always change together.
*/

use super::files::new_entry;
use super::index::Entry;
use super::installed::Tee;
use super::{
    ICON_BYTES, InstallError, InstallResult, Installed, LISTED_BYTES, PACKAGES_DIR, Store, extras,
    identity,
};
use crate::fsutil::TempFile;
use crate::package::PackageInfo;
use std::fs::{self, File};
use std::io::{self, Seek};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

impl Store {
    /// Verify `upload` (a file of ours from `upload_file`, complete) and install it.
    pub fn install_upload(&self, upload: TempFile) -> Result<Installed, InstallError> {
        self.install_upload_with(upload, None)
    }

    /// `install_upload`, keeping what the upload says of the package (`extras`).
    pub fn install_upload_with(
        &self,
        mut upload: TempFile,
        extras: Option<extras::UploadExtras>,
    ) -> Result<Installed, InstallError> {
        let server = |e: io::Error| InstallError::Server(format!("could not read the upload: {e}"));
        upload.file().seek(io::SeekFrom::Start(0)).map_err(server)?;
        let info = self
            .verify(io::BufReader::with_capacity(256 * 1024, upload.file()))
            .map_err(InstallError::Rejected)?;
        self.commit(info, upload, extras)
    }

    /// Verify the package read from `source` (someone else's file) while copying it into a
    /// file of ours, and install the copy: what devices download is exactly what was verified.
    pub fn install_copy(&self, source: &File) -> Result<Installed, InstallError> {
        let store_error = |e: io::Error| {
            InstallError::Server(format!(
                "could not store the package in {PACKAGES_DIR}: {e}"
            ))
        };
        let mut copy = self.upload_file().map_err(store_error)?;
        let mut tee = Tee {
            source,
            copy: copy.file(),
            write_error: None,
        };
        let verified = self.verify(&mut tee);
        if let Some(e) = tee.write_error {
            return Err(store_error(e));
        }
        self.commit(verified.map_err(InstallError::Rejected)?, copy, None)
    }

    /// Put the verified `file` into `.packages/` as the package `info` describes, replacing one
    /// of the same identity (`identity`); when that one is identical (and so is what the upload
    /// says of it, `extras`), nothing changes.
    fn commit(
        &self,
        mut info: PackageInfo,
        mut file: TempFile,
        extras: Option<extras::UploadExtras>,
    ) -> Result<Installed, InstallError> {
        let seam = info.take_seam();
        let arch = info.architecture_name().to_string();
        let id = info.id.clone();
        let group = identity::group(&info, self.keep_versions);
        let name = identity::stored_name(&id, &arch, &group);
        let destination = self.packages_dir.join(&name);
        let store_error = |e: io::Error| {
            InstallError::Server(format!(
                "could not move the package into {PACKAGES_DIR}: {e}"
            ))
        };

        let changing = self.mutation();
        let existing = self.index().get(&id, &arch, &group);
        if existing.as_ref().is_some_and(|e| {
            e.info.sha1 == info.sha1 && extras.as_ref().is_none_or(|x| e.extras.as_ref() == Some(x))
        }) {
            return Ok(Installed {
                id,
                arch,
                result: InstallResult::NoChanges,
                warning: None,
            });
        }
        let extra_bytes = extras.as_ref().map_or(0, extras::UploadExtras::size);
        let keep_icon = self
            .room_for(&info, extra_bytes, existing.as_deref())
            .map_err(InstallError::Rejected)?;
        if let (Some(extras), Some(dir), None) = (&extras, self.extras_dir.get(), &self.remote) {
            extras::save(dir, &name, &info.sha1, extras).map_err(|e| {
                InstallError::Server(format!("could not keep the upload's description: {e}"))
            })?;
        }
        let mut entry = match &self.remote {
            // The object store: the package, then its record; the staging file goes.
            Some(remote) => remote
                .store(info, file.file(), seam.clone(), &name, group, extras)
                .map_err(|e| InstallError::Server(format!("could not store the package: {e}")))?,
            None => {
                // Readable by everyone, writable only by us, whatever the umask or the uploader.
                file.file()
                    .set_permissions(fs::Permissions::from_mode(0o644))
                    .map_err(store_error)?;
                let metadata = file.file().metadata().map_err(store_error)?;
                file.persist(&destination).map_err(store_error)?;
                let mut entry = new_entry(info, destination, &metadata);
                entry.group = group;
                entry.extras = extras;
                entry
            }
        };
        if !keep_icon {
            entry.stream_icon();
        }
        let entry = Arc::new(entry);
        let warning = self.entry_warning(&entry);
        if let Some(signer) = &self.signer {
            signer.prepare(entry.clone(), seam);
        }
        let previous = self.index().insert(entry.clone());
        // A package kept under Qt's name before `--keep-versions` leaves that name now.
        if let Some(previous) = previous.as_ref().filter(|p| p.path != entry.path) {
            match &self.remote {
                Some(remote) => drop(remote.remove(previous)),
                None => drop(fs::remove_file(&previous.path)),
            }
            self.forget_extras(previous);
        }
        drop(changing);
        if let Some(previous) = previous {
            self.discard_remote(&previous);
        }
        Ok(Installed {
            id,
            arch,
            result: if existing.is_some() {
                InstallResult::Updated
            } else {
                InstallResult::Added
            },
            warning,
        })
    }

    /// Whether the store has room for `info` (replacing `existing`): `Err` with the reason
    /// when it has not; `Ok(false)` when its icon is to be read from the package, as the
    /// icons kept in memory are at their limit.
    fn room_for(
        &self,
        info: &PackageInfo,
        extra_bytes: u64,
        existing: Option<&Entry>,
    ) -> Result<bool, String> {
        let index = self.index();
        if existing.is_none() && index.len() as u64 >= self.max_packages {
            return Err(format!(
                "the store holds {} packages, the most it may (--max-packages)",
                index.len()
            ));
        }
        let replaced = existing.map_or(0, |e| e.listed_size());
        let listed = index.listed_bytes() - replaced + info.listed_size() + extra_bytes;
        if listed > LISTED_BYTES {
            return Err(format!(
                "the store's names, descriptions and categories would take {listed} bytes, more than the {LISTED_BYTES} bytes the server keeps in memory for all packages"
            ));
        }
        let replaced_icon = existing.map_or(0, |e| e.icon_in_memory());
        let icon = info.icon.as_ref().map_or(0, |i| i.len() as u64);
        Ok(index.icon_bytes() - replaced_icon + icon <= ICON_BYTES)
    }
}
