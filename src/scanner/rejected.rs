/*!
`upload/rejected/`: a rejected upload is moved there (never overwriting an earlier one: up to
`REJECTED_ALTERNATIVES` other names), through directory descriptors and never a link, and the
folder is pruned to its `MAX_REJECTED` newest files.
*/

use super::*;

impl Folders {
    /// Move a rejected upload to `upload/rejected/` (never overwriting an earlier one), then
    /// say why. A file that cannot be moved stays, and is not looked at until it changes.
    pub(super) fn reject(
        &mut self,
        store: &Store,
        upload: &Dir,
        name: &OsStr,
        stat: &FileStat,
        reason: String,
    ) {
        let shown = name.to_string_lossy().into_owned();
        let moved = self.move_to_rejected(store, upload, name, stat);
        let failed = Event::Failed {
            file: shown.clone(),
            reason,
        };
        match &moved {
            Ok(place) => {
                let kept = Event::Kept {
                    file: shown.clone(),
                    place: place.clone(),
                };
                store
                    .console
                    .lines(&[Line::Event(&failed), Line::Event(&kept)]);
            }
            Err(_) => store.console.event(&failed),
        }
        if let Err(problem) = moved {
            store.console.event(&Event::Failed {
                file: shown,
                reason: format!("could not move it to {REJECTED_DIR}/: {problem}; it stays"),
            });
            self.remember(name, stat, None);
        }
    }

    fn move_to_rejected(
        &mut self,
        store: &Store,
        upload: &Dir,
        name: &OsStr,
        stat: &FileStat,
    ) -> Result<String, String> {
        let (rejected, folder) = self.open_rejected(store, upload)?;
        if !upload
            .stat(name)
            .ok()
            .flatten()
            .is_some_and(|s| s.same_file(stat))
        {
            return Err("it changed meanwhile".into());
        }
        let mut last_error = String::new();
        for target in rejected_names(name) {
            match upload.rename_to(name, &rejected, &target) {
                Ok(()) => {
                    prune_rejected(store, &rejected);
                    return Ok(format!("upload/{folder}/{}", target.to_string_lossy()));
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EEXIST) | Some(libc::ENAMETOOLONG)
                    ) =>
                {
                    last_error = e.to_string();
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!("no free name ({last_error})"))
    }

    /// `upload/rejected/`, created and opened by us; when something else is in the way, the
    /// first of `rejected.1` ... that works (said once).
    fn open_rejected(&mut self, store: &Store, upload: &Dir) -> Result<(Dir, String), String> {
        let mut problem = None;
        for n in 0..=REJECTED_ALTERNATIVES {
            let name = match n {
                0 => REJECTED_DIR.to_string(),
                n => format!("{REJECTED_DIR}.{n}"),
            };
            match upload.open_dir(&name, true) {
                Ok(dir) => {
                    if let Some(problem) = problem {
                        self.report_once(
                            store,
                            &format!("upload/{REJECTED_DIR}"),
                            format!("{problem}: rejected files go to upload/{name}/"),
                        );
                    }
                    return Ok((dir, name));
                }
                Err(e) => {
                    problem.get_or_insert_with(|| {
                        match upload.stat(OsStr::new(REJECTED_DIR)).ok().flatten() {
                            Some(stat) if stat.kind != FileKind::Directory => {
                                format!("upload/{REJECTED_DIR} is {}", stat.kind.describe())
                            }
                            _ => format!("upload/{REJECTED_DIR} cannot be opened: {e}"),
                        }
                    });
                }
            }
        }
        Err(problem.unwrap_or_default())
    }
}

/// `name`, then `name.1`, `name.2`, ..., shortened where needed to fit a file name (255 bytes).
fn rejected_names(name: &OsStr) -> impl Iterator<Item = OsString> + '_ {
    std::iter::once(name.to_os_string()).chain((1..1000).map(move |n| {
        let suffix = format!(".{n}");
        let mut base = name.as_bytes().to_vec();
        base.truncate(255 - suffix.len());
        base.extend_from_slice(suffix.as_bytes());
        OsString::from_vec(base)
    }))
}

/// Keep the newest `MAX_REJECTED` files in `rejected`, dropping the oldest with a line each.
fn prune_rejected(store: &Store, rejected: &Dir) {
    let names = rejected.names().unwrap_or_default();
    if names.len() <= MAX_REJECTED {
        return;
    }
    let mut files: Vec<(i128, OsString)> = names
        .into_iter()
        .filter_map(|n| {
            let stat = rejected.stat(&n).ok().flatten()?;
            (stat.kind != FileKind::Directory).then_some((stat.ctime_ns, n))
        })
        .collect();
    files.sort();
    let excess = files.len().saturating_sub(MAX_REJECTED);
    for (_, name) in files.into_iter().take(excess) {
        if rejected.remove(&name).is_ok() {
            store.console.event(&Event::Dropped {
                file: format!("{REJECTED_DIR}/{}", name.to_string_lossy()),
                reason: format!("only the newest {MAX_REJECTED} rejected files are kept"),
            });
        }
    }
}
