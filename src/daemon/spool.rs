//! The drop folder as the daemon sees it: which files exist, which study each belongs to, when
//! each last changed, and when a study is ready to claim.
//!
//! Rules:
//! * files are found by a recursive scan (inotify events only make the next scan come sooner);
//!   names starting with `.` or ending in `.part`, `.tmp` or `.partial` are transfers in
//!   progress and ignored until renamed;
//! * a file "changed" when its size, mtime or ctime differ from the previous scan; times are
//!   the daemon's own observations (copy tools may preserve old mtimes), so after a restart
//!   every file counts as changed at start-up;
//! * a file's DICOM header (Study / Series Instance UID) is read once it is unchanged over one
//!   scan; a file whose header cannot be read is retried after every change and is quarantined
//!   once unchanged for `unreadable_after_secs`;
//! * a study is ready when none of its files changed for `quiet_secs`, no unreadable file
//!   changed within `quiet_secs` (it may still become part of the study), and it has
//!   `min_series` series — or its last change is `incomplete_after_secs` old;
//! * a file whose relative path is not UTF-8 cannot be named in the journal or a report: it
//!   never joins a study and is quarantined, with that reason, once unchanged for
//!   `unreadable_after_secs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::dicom::scan::parse_file;
use crate::privacy::uid_hash;

use super::config::StudyConfig;

/// Whether a file name marks a transfer in progress (see the module doc).
pub fn is_in_progress(name: &str) -> bool {
    name.starts_with('.')
        || [".part", ".tmp", ".partial"]
            .iter()
            .any(|s| name.to_ascii_lowercase().ends_with(s))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

#[derive(Debug, Clone)]
enum Header {
    /// Not read yet (changed since the last scan).
    Unknown,
    Study {
        study_uid: String,
        series_uid: String,
    },
    Unreadable(String),
}

#[derive(Debug, Clone)]
struct FileState {
    stamp: Stamp,
    changed_at: Instant,
    header: Header,
}

/// A study ready to claim.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyStudy {
    pub study_uid: String,
    /// Relative to the drop folder, sorted.
    pub files: Vec<String>,
    pub series: usize,
    /// Processed with fewer than `min_series` series (waited `incomplete_after_secs`).
    pub incomplete: bool,
}

/// A file to quarantine.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// Relative to the drop folder (not necessarily UTF-8).
    pub file: PathBuf,
    pub reason: String,
}

/// Why a file with a non-UTF-8 path is quarantined.
pub const NOT_UTF8_REASON: &str = "the file's path is not valid UTF-8, so it cannot be \
     tracked in the journal or named in a report; rename it (UTF-8) and drop it again";

/// The daemon's view of the drop folder.
pub struct DropFolder {
    root: PathBuf,
    files: BTreeMap<String, FileState>,
    /// Files whose relative path is not UTF-8: when each last changed.
    not_utf8: BTreeMap<PathBuf, (Stamp, Instant)>,
}

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        }
    }
    #[cfg(not(unix))]
    {
        let t = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        Stamp {
            len: meta.len(),
            mtime_ns: t,
            ctime_ns: t,
        }
    }
}

impl DropFolder {
    pub fn new(root: &Path) -> Self {
        DropFolder {
            root: root.to_path_buf(),
            files: BTreeMap::new(),
            not_utf8: BTreeMap::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Files currently tracked (relative paths).
    pub fn len(&self) -> usize {
        self.files.len() + self.not_utf8.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rescans the folder (see the module doc); returns how many files are tracked.
    pub fn rescan(&mut self, now: Instant) -> usize {
        let mut seen = BTreeSet::new();
        let mut seen_not_utf8 = BTreeSet::new();
        for entry in walkdir::WalkDir::new(&self.root)
            .follow_links(false)
            .into_iter()
            .filter_map(Result::ok)
        {
            if !entry.file_type().is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy();
            if is_in_progress(&name) {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(&self.root) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let st = stamp(&meta);
            let Some(rel) = rel.to_str().map(str::to_string) else {
                // Not UTF-8: quarantined once quiet (see the module doc).
                let rel = rel.to_path_buf();
                match self.not_utf8.get_mut(&rel) {
                    Some((old, _)) if *old == st => {}
                    _ => {
                        self.not_utf8.insert(rel.clone(), (st, now));
                    }
                }
                seen_not_utf8.insert(rel);
                continue;
            };
            seen.insert(rel.clone());
            match self.files.get_mut(&rel) {
                Some(f) if f.stamp == st => {
                    if matches!(f.header, Header::Unknown) {
                        f.header = read_header(entry.path());
                    }
                }
                Some(f) => {
                    f.stamp = st;
                    f.changed_at = now;
                    f.header = Header::Unknown;
                }
                None => {
                    self.files.insert(
                        rel,
                        FileState {
                            stamp: st,
                            changed_at: now,
                            header: Header::Unknown,
                        },
                    );
                }
            }
        }
        self.files.retain(|k, _| seen.contains(k));
        self.not_utf8.retain(|k, _| seen_not_utf8.contains(k));
        self.files.len() + self.not_utf8.len()
    }

    /// Stops tracking `files` (claimed or quarantined).
    pub fn forget(&mut self, files: &[String]) {
        for f in files {
            self.files.remove(f);
        }
    }

    /// Stops tracking one file (quarantined), whatever its name.
    pub fn forget_path(&mut self, file: &Path) {
        if let Some(f) = file.to_str() {
            self.files.remove(f);
        } else {
            self.not_utf8.remove(file);
        }
    }

    /// The studies ready to claim and the files to quarantine, at `now`.
    pub fn ready(&self, cfg: &StudyConfig, now: Instant) -> (Vec<ReadyStudy>, Vec<Unreadable>) {
        let secs = |t: Instant| now.saturating_duration_since(t).as_secs_f64();
        let mut unreadable = Vec::new();
        let mut blocking_unknown = false;
        let mut studies: BTreeMap<&str, (Vec<String>, BTreeSet<&str>, f64)> = BTreeMap::new();
        for (rel, f) in &self.files {
            let age = secs(f.changed_at);
            match &f.header {
                Header::Study {
                    study_uid,
                    series_uid,
                } => {
                    let e = studies.entry(study_uid).or_insert((
                        Vec::new(),
                        BTreeSet::new(),
                        f64::INFINITY,
                    ));
                    e.0.push(rel.clone());
                    e.1.insert(series_uid);
                    e.2 = e.2.min(age);
                }
                Header::Unknown => blocking_unknown |= age < cfg.quiet_secs,
                Header::Unreadable(reason) => {
                    if age >= cfg.unreadable_after_secs {
                        unreadable.push(Unreadable {
                            file: PathBuf::from(rel),
                            reason: reason.clone(),
                        });
                    } else if age < cfg.quiet_secs {
                        blocking_unknown = true;
                    }
                }
            }
        }
        for (rel, (_, changed_at)) in &self.not_utf8 {
            if secs(*changed_at) >= cfg.unreadable_after_secs {
                unreadable.push(Unreadable {
                    file: rel.clone(),
                    reason: NOT_UTF8_REASON.into(),
                });
            }
        }
        let mut ready = Vec::new();
        if !blocking_unknown {
            for (uid, (files, series, quiet_for)) in studies {
                if quiet_for < cfg.quiet_secs {
                    continue;
                }
                let enough = series.len() >= cfg.min_series;
                if enough || quiet_for >= cfg.incomplete_after_secs {
                    ready.push(ReadyStudy {
                        study_uid: uid.to_string(),
                        files,
                        series: series.len(),
                        incomplete: !enough,
                    });
                }
            }
        }
        (ready, unreadable)
    }
}

fn read_header(path: &Path) -> Header {
    match parse_file(path, true) {
        Ok(h) => Header::Study {
            study_uid: h.study_uid.to_string(),
            series_uid: h.series_uid.to_string(),
        },
        Err(e) => Header::Unreadable(e.to_string()),
    }
}

/// The job name of a claim: the study's hash and the claim time (ms since the epoch).
pub fn job_name(study_uid: &str, unix_ms: u128) -> String {
    format!("{}-{unix_ms}", uid_hash(study_uid))
}

/// Moves `rel` (relative to `from`) to the same relative path under `to`, creating folders.
/// Already moved (absent in `from`, present in `to`) counts as done.
pub fn move_relative(from: &Path, to: &Path, rel: &str) -> std::io::Result<()> {
    let src = from.join(rel);
    let dst = to.join(rel);
    if !src.exists() && dst.exists() {
        return Ok(());
    }
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(&src, &dst)
}

/// Removes empty folders under `root` (not `root` itself), deepest first; best effort.
pub fn prune_empty_dirs(root: &Path) {
    let dirs: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .contents_first(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    for d in dirs {
        let _ = std::fs::remove_dir(&d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn transfer_names_are_ignored() {
        assert!(is_in_progress(".incoming.dcm"));
        assert!(is_in_progress("IM0001.dcm.PART"));
        assert!(is_in_progress("x.tmp"));
        assert!(!is_in_progress("IM0001"));
        assert!(!is_in_progress("IM0001.dcm"));
    }

    fn quiet_5s_unreadable_20s() -> StudyConfig {
        StudyConfig {
            quiet_secs: 5.0,
            unreadable_after_secs: 20.0,
            ..StudyConfig::default()
        }
    }

    #[test]
    fn unreadable_files_block_then_go_to_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not DICOM").unwrap();
        let cfg = quiet_5s_unreadable_20s();
        let mut d = DropFolder::new(dir.path());
        let t0 = Instant::now();
        d.rescan(t0);
        d.rescan(t0 + Duration::from_secs(1)); // unchanged: header read now
        let (ready, bad) = d.ready(&cfg, t0 + Duration::from_secs(2));
        assert!(ready.is_empty() && bad.is_empty());
        let (_, bad) = d.ready(&cfg, t0 + Duration::from_secs(21));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].file, Path::new("notes.txt"));
        assert!(!bad[0].reason.is_empty());
    }

    #[test]
    fn files_with_non_utf8_paths_go_to_quarantine_once_quiet() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"IM\xff0001.dcm");
        std::fs::create_dir(dir.path().join("sender")).unwrap();
        let odd_dir = std::ffi::OsStr::from_bytes(b"s\xfe");
        std::fs::create_dir(dir.path().join(odd_dir)).unwrap();
        std::fs::write(dir.path().join("sender").join(odd), "x").unwrap();
        std::fs::write(dir.path().join(odd_dir).join("IM2.dcm"), "y").unwrap();
        let cfg = quiet_5s_unreadable_20s();
        let mut d = DropFolder::new(dir.path());
        let t0 = Instant::now();
        assert_eq!(d.rescan(t0), 2);
        let (_, bad) = d.ready(&cfg, t0 + Duration::from_secs(19));
        assert!(bad.is_empty());
        // A change restarts the wait.
        std::fs::write(dir.path().join("sender").join(odd), "xx").unwrap();
        d.rescan(t0 + Duration::from_secs(10));
        let (_, bad) = d.ready(&cfg, t0 + Duration::from_secs(21));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].file, Path::new(odd_dir).join("IM2.dcm"));
        let (_, bad) = d.ready(&cfg, t0 + Duration::from_secs(31));
        let mut files: Vec<PathBuf> = bad.iter().map(|b| b.file.clone()).collect();
        files.sort();
        let mut want = vec![
            Path::new("sender").join(odd),
            Path::new(odd_dir).join("IM2.dcm"),
        ];
        want.sort();
        assert_eq!(files, want);
        assert!(bad.iter().all(|b| b.reason == NOT_UTF8_REASON));
        d.forget_path(&want[0]);
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn moves_are_idempotent_and_prune_leaves_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(a.join("x/y")).unwrap();
        std::fs::write(a.join("x/y/f"), "1").unwrap();
        move_relative(&a, &b, "x/y/f").unwrap();
        move_relative(&a, &b, "x/y/f").unwrap();
        assert_eq!(std::fs::read_to_string(b.join("x/y/f")).unwrap(), "1");
        assert!(move_relative(&a, &b, "missing").is_err());
        prune_empty_dirs(&a);
        assert!(a.is_dir() && !a.join("x").exists());
    }
}
