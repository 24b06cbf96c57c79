//! The daemon's journal: an append-only JSON-lines file (`<work>/journal.jsonl`) of what it did
//! to every job, written before (intent) or after (fact) each step and `fsync`ed before the
//! daemon acts on it, so a restart after kill -9 at any moment can finish or redo every step
//! exactly once.
//!
//! A job is one claimed study, named `<study hash>-<claim time ms>`. Its life:
//! `claim` (intent: these drop files move to `work/<job>/input/`) → `claimed` (all moved) →
//! `published` (`outbox/<job>/` renamed into place) → `retained` (inputs archived or deleted,
//! `work/<job>` removed) — or → `quarantined` (inputs moved to `quarantine/<job>/` with
//! `reason.txt`). `failed` records an attempt that may be retried. Unreadable single files are
//! journalled as `quarantined` with no job.
//!
//! The journal lists the relative paths of input files, which a sender may have named after
//! the patient: it stays in the work folder (mode 0700) like the images, and is never logged.
//! A torn line (a crash or a full disk mid-append; the step it announced was never taken) is
//! ignored on replay; after a failed append the next one starts on a new line, so the daemon
//! keeps journalling without a restart once the disk has room again.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The journal file inside the work folder.
pub const JOURNAL_FILE: &str = "journal.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Claim {
        job: String,
        study_hash: String,
        /// Relative to the drop folder.
        files: Vec<String>,
    },
    Claimed {
        job: String,
    },
    Failed {
        job: String,
        attempt: u32,
        error: String,
    },
    Published {
        job: String,
    },
    Retained {
        job: String,
        /// "archive" or "delete".
        retention: String,
        files: usize,
    },
    Quarantined {
        /// `None` for a single unreadable file.
        job: Option<String>,
        /// Folder name under the quarantine folder.
        entry: String,
        reason: String,
        files: usize,
    },
}

impl Event {
    pub fn job(&self) -> Option<&str> {
        match self {
            Event::Claim { job, .. }
            | Event::Claimed { job }
            | Event::Failed { job, .. }
            | Event::Published { job }
            | Event::Retained { job, .. } => Some(job),
            Event::Quarantined { job, .. } => job.as_deref(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    /// Seconds since the Unix epoch.
    time: u64,
    #[serde(flatten)]
    event: Event,
}

/// Where a job stands after replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// `claim` written; some files may still be in the drop folder.
    Claiming {
        files: Vec<String>,
    },
    /// Inputs in `work/<job>/input/`; `attempts` failed so far.
    Claimed {
        attempts: u32,
    },
    Published,
    /// Finished: retained or quarantined.
    Done,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct Journal {
    path: PathBuf,
    file: File,
    /// The last append failed and may have left part of a line: the next one starts with a
    /// newline so that it is a line of its own (the fragment is skipped on replay).
    torn: bool,
}

impl Journal {
    /// Opens (creating) the journal in `work` and replays it: every job's state, in claim order.
    pub fn open(work: &Path) -> Result<(Self, Vec<(String, JobState)>), JournalError> {
        let path = work.join(JOURNAL_FILE);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let mut jobs: Vec<(String, JobState)> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        if path.exists() {
            let reader = BufReader::new(File::open(&path).map_err(io)?);
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(io)?;
                if line.is_empty() {
                    continue;
                }
                let Ok(parsed) = serde_json::from_str::<Line>(&line) else {
                    tracing::warn!(
                        line = n + 1,
                        "journal: unreadable line ignored (torn write?)"
                    );
                    continue;
                };
                apply(&mut jobs, &mut index, parsed.event);
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        // A torn last line gets its newline, so the next event starts a line of its own.
        let ends_open = std::fs::read(&path)
            .map_err(io)?
            .last()
            .is_some_and(|b| *b != b'\n');
        if ends_open {
            file.write_all(b"\n")
                .and_then(|()| file.sync_data())
                .map_err(io)?;
        }
        Ok((
            Journal {
                path,
                file,
                torn: false,
            },
            jobs,
        ))
    }

    /// Appends `event` and `fsync`s it (see the module doc).
    pub fn append(&mut self, event: Event) -> Result<(), JournalError> {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut text = String::from(if self.torn { "\n" } else { "" });
        text += &serde_json::to_string(&Line { time, event }).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        text.push('\n');
        let (head, tail) = text.as_bytes().split_at(text.len() / 2);
        let written = self
            .file
            .write_all(head)
            .and_then(|()| crate::failpoint::hit("journal.append.torn"))
            .and_then(|()| self.file.write_all(tail))
            .and_then(|()| self.file.sync_data());
        self.torn = written.is_err();
        written.map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

fn apply(jobs: &mut Vec<(String, JobState)>, index: &mut BTreeMap<String, usize>, e: Event) {
    let Some(job) = e.job().map(str::to_string) else {
        return;
    };
    let state = match e {
        Event::Claim { files, .. } => JobState::Claiming { files },
        Event::Claimed { .. } => JobState::Claimed { attempts: 0 },
        Event::Failed { attempt, .. } => JobState::Claimed { attempts: attempt },
        Event::Published { .. } => JobState::Published,
        Event::Retained { .. } | Event::Quarantined { .. } => JobState::Done,
    };
    match index.get(&job) {
        Some(&k) => jobs[k].1 = state,
        None => {
            index.insert(job.clone(), jobs.len());
            jobs.push((job, state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_gives_each_jobs_last_state_and_skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut j, jobs) = Journal::open(dir.path()).unwrap();
            assert!(jobs.is_empty());
            j.append(Event::Claim {
                job: "a".into(),
                study_hash: "h".into(),
                files: vec!["x/1.dcm".into()],
            })
            .unwrap();
            j.append(Event::Claim {
                job: "b".into(),
                study_hash: "h2".into(),
                files: vec![],
            })
            .unwrap();
            j.append(Event::Claimed { job: "a".into() }).unwrap();
            j.append(Event::Failed {
                job: "a".into(),
                attempt: 1,
                error: "disk full".into(),
            })
            .unwrap();
            j.append(Event::Claimed { job: "b".into() }).unwrap();
            j.append(Event::Published { job: "b".into() }).unwrap();
            j.append(Event::Quarantined {
                job: None,
                entry: "file-1".into(),
                reason: "not DICOM".into(),
                files: 1,
            })
            .unwrap();
        }
        let path = dir.path().join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"time\": 1, \"event\": \"retai").unwrap();
        drop(f);
        let (mut j, jobs) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            jobs,
            vec![
                ("a".to_string(), JobState::Claimed { attempts: 1 }),
                ("b".to_string(), JobState::Published),
            ]
        );
        // The torn line is closed on open: the next event is read on replay.
        j.append(Event::Retained {
            job: "b".into(),
            retention: "archive".into(),
            files: 0,
        })
        .unwrap();
        let (_, jobs) = Journal::open(dir.path()).unwrap();
        assert_eq!(jobs[1], ("b".to_string(), JobState::Done));
    }
}
