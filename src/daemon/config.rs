//! `nephrod.toml`: the daemon's configuration (systemd/nephrod.toml documents every key).
//!
//! Invariants checked by [`Config::validate`] before the daemon starts: the five spool folders
//! are distinct and none lies inside another; drop, work, outbox, archive and quarantine are on
//! one filesystem (claims and publications are renames, which cannot cross filesystems).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What happens to a study's input files once its report is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Move them to `spool.archive/<job>/`.
    Archive,
    /// Delete them.
    Delete,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Where studies arrive (a DICOM receiver or a share writes here).
    pub drop: PathBuf,
    /// The daemon's own state: claimed studies and the journal.
    pub work: PathBuf,
    /// One folder per processed study, holding report.json.
    pub outbox: PathBuf,
    pub archive: PathBuf,
    /// Inputs that cannot be processed, each with a reason file.
    pub quarantine: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StudyConfig {
    /// A study is processed once none of its files changed for this long (seconds).
    pub quiet_secs: f64,
    /// A quiet study with fewer series waits for more ...
    pub min_series: usize,
    /// ... but at most this long after its last change (seconds); then it is processed anyway.
    pub incomplete_after_secs: f64,
    /// Full rescan of the drop folder besides inotify events (seconds).
    pub rescan_secs: f64,
    /// Unreadable files are quarantined once unchanged for this long (seconds).
    pub unreadable_after_secs: f64,
}

impl Default for StudyConfig {
    fn default() -> Self {
        Self {
            quiet_secs: 30.0,
            min_series: 2,
            incomplete_after_secs: 600.0,
            rescan_secs: 10.0,
            unreadable_after_secs: 120.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    pub dir: PathBuf,
    /// "cpu" or "cuda" (falls back to the CPU with a log line when no GPU is usable).
    #[serde(default = "default_device")]
    pub device: String,
    /// Public keys (`.pub` files from `nephrod models keygen`) whose signatures
    /// `nephrod models verify/install` accept and `nephrod serve` requires of the active
    /// packages (at least one key for serve).
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
}

fn default_device() -> String {
    "cpu".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    pub tta: bool,
    pub kits_postprocessing: bool,
    pub grad_cam: bool,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        Self {
            tta: true,
            kits_postprocessing: true,
            grad_cam: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    pub retention: Retention,
    /// Studies claimed but not yet processed, at most.
    pub queue_capacity: usize,
    /// On SIGTERM, wait this long for the running study; else it is re-run at the next start.
    pub stop_timeout_secs: f64,
    /// Attempts of a study whose processing failed for a reason other than its input.
    pub max_attempts: u32,
    /// Wait before retrying such a study (seconds).
    pub retry_after_secs: f64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            retention: Retention::Archive,
            queue_capacity: 8,
            stop_timeout_secs: 60.0,
            max_attempts: 3,
            retry_after_secs: 60.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub spool: SpoolConfig,
    #[serde(default)]
    pub study: StudyConfig,
    pub models: ModelsConfig,
    #[serde(default)]
    pub analysis: AnalysisConfig,
    #[serde(default)]
    pub service: ServiceConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The five spool folders with their key names.
    pub fn folders(&self) -> [(&'static str, &Path); 5] {
        let s = &self.spool;
        [
            ("drop", &s.drop),
            ("work", &s.work),
            ("outbox", &s.outbox),
            ("archive", &s.archive),
            ("quarantine", &s.quarantine),
        ]
    }

    /// Creates missing spool folders and checks the invariants of the module doc.
    pub fn prepare(&self) -> Result<(), ConfigError> {
        let st = &self.study;
        for (name, v) in [
            ("study.quiet_secs", st.quiet_secs),
            ("study.incomplete_after_secs", st.incomplete_after_secs),
            ("study.rescan_secs", st.rescan_secs),
            ("study.unreadable_after_secs", st.unreadable_after_secs),
            ("service.stop_timeout_secs", self.service.stop_timeout_secs),
            ("service.retry_after_secs", self.service.retry_after_secs),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(ConfigError::Invalid(format!("{name} = {v}: must be ≥ 0")));
            }
        }
        if self.service.queue_capacity == 0 || self.service.queue_capacity > super::QUEUE_MAX {
            return Err(ConfigError::Invalid(format!(
                "service.queue_capacity = {}: must be 1..={}",
                self.service.queue_capacity,
                super::QUEUE_MAX
            )));
        }
        if !matches!(self.models.device.as_str(), "cpu" | "cuda") {
            return Err(ConfigError::Invalid(format!(
                "models.device = {:?}: \"cpu\" or \"cuda\"",
                self.models.device
            )));
        }
        let mut canon = Vec::new();
        for (name, p) in self.folders() {
            std::fs::create_dir_all(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            let c = p.canonicalize().map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            canon.push((name, c));
        }
        for (a, pa) in &canon {
            for (b, pb) in &canon {
                if a != b && pa.starts_with(pb) {
                    return Err(ConfigError::Invalid(format!(
                        "spool.{a} ({}) lies inside spool.{b} ({})",
                        pa.display(),
                        pb.display()
                    )));
                }
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let dev = |p: &Path| {
                std::fs::metadata(p)
                    .map(|m| m.dev())
                    .map_err(|source| ConfigError::Read {
                        path: p.to_path_buf(),
                        source,
                    })
            };
            let first = dev(&canon[0].1)?;
            for (name, p) in &canon[1..] {
                if dev(p)? != first {
                    return Err(ConfigError::Invalid(format!(
                        "spool.{name} is on another filesystem than spool.drop: claims and \
                         reports are moved by rename, which needs one filesystem"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[spool]
drop = "/s/drop"
work = "/s/work"
outbox = "/s/outbox"
archive = "/s/archive"
quarantine = "/s/quarantine"
[study]
quiet_secs = 5
[models]
dir = "/m"
"#;

    #[test]
    fn the_shipped_example_parses_and_states_the_defaults() {
        let c = Config::parse(include_str!("../../systemd/nephrod.toml")).unwrap();
        let d = Config::parse(MINIMAL).unwrap();
        // Every default the example shows is the built-in default (bar the device choice).
        assert_eq!(c.study, StudyConfig::default());
        assert_eq!(c.analysis, d.analysis);
        assert_eq!(c.service, ServiceConfig::default());
        assert_eq!(c.models.device, "cuda");
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.study.quiet_secs, 5.0);
        assert_eq!(c.study.min_series, 2);
        assert_eq!(c.models.device, "cpu");
        assert_eq!(c.service.retention, Retention::Archive);
        assert!(c.analysis.tta);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let typo = MINIMAL.replace("quiet_secs", "quiet_sec");
        assert!(Config::parse(&typo).unwrap_err().contains("quiet_sec"));
        let bad = MINIMAL.replace("quiet_secs = 5", "quiet_secs = -1");
        let dir = tempfile::tempdir().unwrap();
        let text = bad.replace("/s/", &format!("{}/", dir.path().display()));
        let c = Config::parse(&text).unwrap();
        assert!(c.prepare().unwrap_err().to_string().contains("quiet_secs"));
    }

    #[test]
    fn nested_spool_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = MINIMAL
            .replace("/s/", &format!("{}/", dir.path().display()))
            .replace("/outbox\"", "/drop/outbox\"");
        let c = Config::parse(&text).unwrap();
        let e = c.prepare().unwrap_err().to_string();
        assert!(
            e.contains("spool.outbox") && e.contains("inside spool.drop"),
            "{e}"
        );
        let ok =
            Config::parse(&MINIMAL.replace("/s/", &format!("{}/", dir.path().display()))).unwrap();
        ok.prepare().unwrap();
        assert!(dir.path().join("quarantine").is_dir());
    }
}
