//! A model package as one file: an uncompressed POSIX/GNU `.tar` of the package folder, so a
//! vendor ships (and a technician copies and checksums) a single file.
//!
//! An archive is only a container: it is unpacked into a folder the caller owns and the
//! folder is then verified like any package (signature, manifest, every file's SHA-256,
//! unlisted files refused). Unpacking itself refuses what could write outside that folder or
//! smuggle something that is not a plain file:
//! * entries are regular files or folders (PAX/GNU header records are read by the `tar`
//!   crate); links, devices, FIFOs and sparse files are refused;
//! * entry paths are relative, made of plain names (`./` prefixes allowed): no `..`, no root,
//!   no repeated file;
//! * at most [`MAX_ENTRIES`] entries. Uncompressed and without sparse entries, the unpacked
//!   size cannot exceed the archive's own size.
//!
//! Layout: `manifest.toml` at the archive's top, or inside its single top-level folder (what
//! `tar cf kidney-seg-2.1.0.tar kidney-seg-2.1.0/` gives). Modes and times in the archive are
//! ignored (the store sets its own).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::package::MANIFEST_TOML;

/// Most entries an archive may hold (a package has a handful of files).
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{archive}: entry {entry:?}: {reason}")]
    Entry {
        archive: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("{archive}: {message}")]
    Layout { archive: PathBuf, message: String },
}

/// Whether `path` names a package archive (a `.tar` file) rather than a package folder.
pub fn is_archive(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tar"))
        && path.is_file()
}

/// The entry's path as plain relative components, or why not.
fn safe_relative(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("a '..' in the path".into()),
            Component::RootDir | Component::Prefix(_) => return Err("an absolute path".into()),
        }
    }
    Ok(out)
}

/// Unpacks `archive` into the empty folder `into` (see the module doc); returns the package
/// folder inside it.
pub fn unpack(archive: &Path, into: &Path) -> Result<PathBuf, ArchiveError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Io { path, source }
    };
    let file = std::fs::File::open(archive).map_err(io(archive))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let entries = tar.entries().map_err(io(archive))?;
    for (n, entry) in entries.enumerate() {
        let mut entry = entry.map_err(io(archive))?;
        let raw = entry.path().map_err(io(archive))?.into_owned();
        let refuse = |reason: String| ArchiveError::Entry {
            archive: archive.to_path_buf(),
            entry: raw.display().to_string(),
            reason,
        };
        if n >= MAX_ENTRIES {
            return Err(refuse(format!("more than {MAX_ENTRIES} entries")));
        }
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let rel = safe_relative(&raw).map_err(refuse)?;
        if rel.as_os_str().is_empty() {
            if kind.is_dir() {
                continue;
            }
            return Err(refuse("an empty path".into()));
        }
        let dest = into.join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&dest).map_err(io(&dest))?;
            continue;
        }
        if !kind.is_file() {
            return Err(refuse(format!(
                "not a regular file or folder (tar type {:?})",
                kind.as_byte() as char
            )));
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => refuse("appears twice".into()),
                _ => ArchiveError::Io {
                    path: dest.clone(),
                    source: e,
                },
            })?;
        let declared = entry.header().size().map_err(io(archive))?;
        let copied =
            std::io::copy(&mut (&mut entry).take(declared), &mut out).map_err(io(&dest))?;
        if copied != declared {
            return Err(refuse(format!(
                "truncated: {copied} of {declared} bytes present"
            )));
        }
        out.sync_all().map_err(io(&dest))?;
    }
    package_root(archive, into)
}

/// The folder holding manifest.toml: `into` itself or its single top-level folder.
fn package_root(archive: &Path, into: &Path) -> Result<PathBuf, ArchiveError> {
    if into.join(MANIFEST_TOML).is_file() {
        return Ok(into.to_path_buf());
    }
    let top: Vec<PathBuf> = std::fs::read_dir(into)
        .map_err(|source| ArchiveError::Io {
            path: into.to_path_buf(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    match top.as_slice() {
        [only] if only.join(MANIFEST_TOML).is_file() => Ok(only.clone()),
        _ => Err(ArchiveError::Layout {
            archive: archive.to_path_buf(),
            message: format!(
                "no {MANIFEST_TOML} at the top of the archive or in its single top-level folder"
            ),
        }),
    }
}

/// A folder removed when dropped: where an archive is unpacked for one command.
pub struct Unpacked {
    dir: PathBuf,
    /// The package folder inside `dir`.
    pub package: PathBuf,
}

impl Unpacked {
    /// Unpacks `archive` into a new folder `dir` (which must not exist).
    pub fn new(archive: &Path, dir: PathBuf) -> Result<Self, ArchiveError> {
        std::fs::create_dir(&dir).map_err(|source| ArchiveError::Io {
            path: dir.clone(),
            source,
        })?;
        // Created: from here on the guard removes it, also on error.
        let mut guard = Unpacked {
            package: dir.clone(),
            dir,
        };
        guard.package = unpack(archive, &guard.dir)?;
        Ok(guard)
    }
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar with `entries` (path bytes, type, content), built header by header so that
    /// hostile paths can be written verbatim.
    fn tar_of(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.as_old_mut().name[..path.len()].copy_from_slice(path);
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                h.set_link_name("/etc/passwd").unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn unpack_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<PathBuf, ArchiveError>) {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("pkg.tar");
        std::fs::write(&archive, bytes).unwrap();
        let into = tmp.path().join("out");
        std::fs::create_dir(&into).unwrap();
        let r = unpack(&archive, &into);
        (tmp, r)
    }

    use tar::EntryType as T;

    #[test]
    fn a_top_folder_or_a_flat_archive_unpacks_to_the_package_folder() {
        let (tmp, r) = unpack_bytes(&tar_of(&[
            (b"pkg/", T::Directory, b""),
            (b"pkg/manifest.toml", T::Regular, b"m"),
            (b"pkg/sub/w.bin", T::Regular, b"0123"),
        ]));
        let root = r.unwrap();
        assert_eq!(root, tmp.path().join("out/pkg"));
        assert_eq!(std::fs::read(root.join("sub/w.bin")).unwrap(), b"0123");
        let (tmp, r) = unpack_bytes(&tar_of(&[
            (b"./manifest.toml", T::Regular, b"m"),
            (b"./w.bin", T::Regular, b"x"),
        ]));
        assert_eq!(r.unwrap(), tmp.path().join("out"));
    }

    #[test]
    fn hostile_or_odd_entries_are_refused() {
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "parent",
                tar_of(&[
                    (b"manifest.toml", T::Regular, b"m"),
                    (b"../evil", T::Regular, b"x"),
                ]),
                "'..'",
            ),
            (
                "absolute",
                tar_of(&[(b"/tmp/evil", T::Regular, b"x")]),
                "absolute",
            ),
            (
                "symlink",
                tar_of(&[
                    (b"manifest.toml", T::Regular, b"m"),
                    (b"link", T::Symlink, b""),
                ]),
                "not a regular file",
            ),
            (
                "duplicate",
                tar_of(&[
                    (b"manifest.toml", T::Regular, b"m"),
                    (b"manifest.toml", T::Regular, b"n"),
                ]),
                "appears twice",
            ),
            (
                "two top folders",
                tar_of(&[
                    (b"a/manifest.toml", T::Regular, b"m"),
                    (b"b/manifest.toml", T::Regular, b"m"),
                ]),
                "single top-level folder",
            ),
        ];
        for (what, bytes, message) in cases {
            let (tmp, r) = unpack_bytes(&bytes);
            let e = r.expect_err(what).to_string();
            assert!(e.contains(message), "{what}: {e}");
            assert!(!tmp.path().join("evil").exists(), "{what}");
        }
        // Truncated in the middle of a file's data.
        let mut cut = tar_of(&[(b"manifest.toml", T::Regular, &[7u8; 3000])]);
        cut.truncate(512 + 1000);
        let (_, r) = unpack_bytes(&cut);
        assert!(r.is_err());
    }

    #[test]
    fn the_unpacked_folder_is_removed_with_its_guard() {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("pkg.tar");
        std::fs::write(&archive, tar_of(&[(b"manifest.toml", T::Regular, b"m")])).unwrap();
        let dir = tmp.path().join("unpacked");
        let u = Unpacked::new(&archive, dir.clone()).unwrap();
        assert!(u.package.join("manifest.toml").is_file());
        drop(u);
        assert!(!dir.exists());
        std::fs::write(&archive, tar_of(&[(b"../x", T::Regular, b"m")])).unwrap();
        assert!(Unpacked::new(&archive, dir.clone()).is_err());
        assert!(!dir.exists());
    }
}
