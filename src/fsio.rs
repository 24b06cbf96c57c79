//! Crash-safe file output: what a reader (a PACS export, a radiologist, the daemon after a
//! restart) sees is either the old state or the complete new file / folder, never a part.
//!
//! * [`write_atomic`]: bytes → a temporary file in the destination's folder, `fsync`, rename
//!   over the destination, `fsync` of the folder (the rename itself is durable).
//! * [`publish_dir`]: a fully written staging folder → its final name in one rename, after every
//!   file in it and the folder itself were `fsync`ed. The destination must not exist (a rename
//!   over a non-empty folder fails on POSIX); the staging folder must be on the same filesystem.
//!
//! Temporary names start with `.` and contain the process id, so a crash leaves only dot-files a
//! later run can recognise and remove ([`is_temporary`]).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Prefix of every temporary file or folder this module creates.
pub const TEMP_PREFIX: &str = ".nephrod-tmp-";

/// Whether a file name is one of this module's temporaries.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

fn with_path(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// `fsync` of a folder, so that renames and creations inside it are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| with_path(dir, e))
}

/// The folder holding `path`: its parent, or `.` for a bare relative name (whose parent is
/// the empty path).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary sibling of `dest` (same folder, so a rename is atomic).
pub fn temp_sibling(dest: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = parent_dir(dest);
    parent.join(format!("{TEMP_PREFIX}{}-{n}-{name}", std::process::id()))
}

/// Writes `bytes` to `dest` atomically and durably (see the module doc).
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(dest, bytes, || Ok(()))
}

/// [`write_atomic`], calling `before_rename` once the temporary file is complete and synced
/// (failpoints: a crash there leaves the old `dest`).
pub fn write_atomic_with(
    dest: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = temp_sibling(dest);
    let result = (|| {
        let mut f = File::create(&tmp).map_err(|e| with_path(&tmp, e))?;
        f.write_all(bytes).map_err(|e| with_path(&tmp, e))?;
        f.sync_all().map_err(|e| with_path(&tmp, e))?;
        drop(f);
        before_rename()?;
        std::fs::rename(&tmp, dest).map_err(|e| with_path(dest, e))?;
        sync_dir(parent_dir(dest))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `fsync`s every file and folder under `dir` (depth first, folders after their contents).
pub fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| with_path(dir, e))? {
        let entry = entry.map_err(|e| with_path(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| with_path(&path, e))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| with_path(&path, e))?;
        }
    }
    sync_dir(dir)
}

/// Moves the finished folder `staging` to `dest` in one rename (see the module doc).
pub fn publish_dir(staging: &Path, dest: &Path) -> std::io::Result<()> {
    sync_tree(staging)?;
    if dest.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{}: already exists", dest.display()),
        ));
    }
    std::fs::rename(staging, dest).map_err(|e| with_path(dest, e))?;
    sync_dir(parent_dir(dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_relative_names_live_in_the_current_folder() {
        assert_eq!(parent_dir(Path::new("report")), Path::new("."));
        assert_eq!(parent_dir(Path::new("a/report")), Path::new("a"));
        assert_eq!(parent_dir(Path::new("/report")), Path::new("/"));
        assert!(temp_sibling(Path::new("report")).starts_with("."));
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("report.json");
        write_atomic(&p, b"old").unwrap();
        write_atomic(&p, b"new contents").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new contents");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["report.json".to_string()]);
    }

    #[test]
    fn write_atomic_into_a_missing_folder_fails_without_a_trace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing").join("x.json");
        assert!(write_atomic(&p, b"x").is_err());
        assert!(!p.exists());
    }

    #[test]
    fn publish_dir_moves_a_tree_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let staging = temp_sibling(&dir.path().join("study"));
        std::fs::create_dir_all(staging.join("labels")).unwrap();
        std::fs::write(staging.join("labels").join("a.nii.gz"), b"a").unwrap();
        std::fs::write(staging.join("report.json"), b"{}").unwrap();
        let dest = dir.path().join("study");
        publish_dir(&staging, &dest).unwrap();
        assert!(!staging.exists());
        assert_eq!(std::fs::read(dest.join("labels/a.nii.gz")).unwrap(), b"a");
        let again = temp_sibling(&dest);
        std::fs::create_dir_all(&again).unwrap();
        let err = publish_dir(&again, &dest).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(is_temporary(&again.file_name().unwrap().to_string_lossy()));
    }
}
