//! Writes an [`Analysis`] to its output folder atomically: everything goes into a temporary
//! sibling folder first (label maps, images, `report.html`, `report.json` last), is `fsync`ed,
//! and the folder is renamed into place ([`crate::fsio::publish_dir`]). A crash or a full disk
//! leaves no partial report folder, only a `.nephrod-tmp-*` sibling that is removed on failure
//! (and by the daemon's start-up sweep after a crash).

use std::path::{Path, PathBuf};

use super::analyze::Analysis;
use crate::fsio::{publish_dir, temp_sibling};
use crate::report::html::render_html;
use crate::volume::nifti;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Nifti { path: PathBuf, message: String },
    #[error("{path}: already exists and is not empty (give another folder or --force)")]
    Exists { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `analysis` into the new folder `dest`. An existing empty `dest` is replaced; an
/// existing non-empty one only with `replace` (the old folder is moved aside, the new one
/// published, then the old one removed).
pub fn write_analysis(analysis: &Analysis, dest: &Path, replace: bool) -> Result<(), OutputError> {
    let staging = temp_sibling(dest);
    let result = write_staging(analysis, &staging).and_then(|()| {
        let mut old = None;
        if dest.exists() {
            let empty = std::fs::read_dir(dest).map_err(io(dest))?.next().is_none();
            if !empty && !replace {
                return Err(OutputError::Exists {
                    path: dest.to_path_buf(),
                });
            }
            let aside = temp_sibling(dest);
            std::fs::rename(dest, &aside).map_err(io(dest))?;
            old = Some(aside);
        }
        publish_dir(&staging, dest).map_err(io(dest))?;
        if let Some(old) = old {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        Ok(())
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

fn write_staging(analysis: &Analysis, staging: &Path) -> Result<(), OutputError> {
    std::fs::create_dir_all(staging).map_err(io(staging))?;
    for (rel, labels) in &analysis.label_maps {
        let path = staging.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        nifti::write(&path, labels).map_err(|e| OutputError::Nifti {
            path: path.clone(),
            message: e.to_string(),
        })?;
    }
    crate::failpoint::hit("output.write").map_err(io(staging))?;
    for (rel, png) in &analysis.images {
        let path = staging.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, png).map_err(io(&path))?;
    }
    let html = staging.join("report.html");
    std::fs::write(&html, render_html(&analysis.report, &analysis.images)).map_err(io(&html))?;
    let json = staging.join("report.json");
    let text = serde_json::to_string_pretty(&analysis.report).map_err(|e| OutputError::Io {
        path: json.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&json, text + "\n").map_err(io(&json))?;
    Ok(())
}
