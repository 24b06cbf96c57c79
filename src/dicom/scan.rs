//! Recursive scan of a folder: every regular file is parsed (under `catch_unwind`) and ends in
//! exactly one of two lists — a usable CT instance header, or a skipped file with its reason.
//! Files are visited in sorted path order so results are deterministic.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use super::error::panic_message;
use super::header::{read_header, skip_reason, InstanceHeader};
use super::DicomError;

/// A file that will not be used, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// The outcome of scanning a folder.
#[derive(Debug, Default)]
pub struct ScanResult {
    pub instances: Vec<InstanceHeader>,
    pub skipped: Vec<Skipped>,
}

/// What parsing one file gave.
pub enum FileOutcome {
    Instance(Box<InstanceHeader>),
    Skipped(Skipped),
}

/// Lists regular files under `root` (or `root` itself), sorted.
pub fn list_files(root: &Path) -> (Vec<PathBuf>, Vec<Skipped>) {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        match entry {
            Ok(e) if e.file_type().is_file() => files.push(e.into_path()),
            Ok(_) => {}
            Err(err) => skipped.push(Skipped {
                path: err
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| root.to_path_buf()),
                reason: format!("cannot be read: {err}"),
            }),
        }
    }
    (files, skipped)
}

/// Parses one file's header. Never panics. See [`read_header`] for `require_uids`.
pub fn parse_file(path: &Path, require_uids: bool) -> Result<InstanceHeader, DicomError> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let obj = dicom_object::OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Auto)
            .open_file(path)
            .map_err(|e| DicomError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let ts = obj.meta().transfer_syntax().to_string();
        let sop_class = obj.meta().media_storage_sop_class_uid().to_string();
        let has_pixels = obj.get(dicom_dictionary_std::tags::PIXEL_DATA).is_some();
        read_header(path, &obj, &ts, &sop_class, has_pixels, require_uids)
    }));
    match result {
        Ok(r) => r,
        Err(payload) => Err(DicomError::ParserPanic {
            path: path.to_path_buf(),
            message: panic_message(payload.as_ref()),
        }),
    }
}

/// Parses one file and decides whether it is a usable CT instance.
pub fn classify_file(path: &Path) -> FileOutcome {
    match parse_file(path, true) {
        Ok(h) => match skip_reason(&h) {
            None => FileOutcome::Instance(Box::new(h)),
            Some(reason) => FileOutcome::Skipped(Skipped {
                path: path.to_path_buf(),
                reason,
            }),
        },
        Err(e) => FileOutcome::Skipped(Skipped {
            path: path.to_path_buf(),
            reason: skip_text(&e),
        }),
    }
}

fn skip_text(e: &DicomError) -> String {
    match e {
        DicomError::Parse { message, .. } => format!("not readable as DICOM: {message}"),
        DicomError::ParserPanic { message, .. } => format!("parser panicked: {message}"),
        DicomError::MissingAttribute { attribute, .. } => format!("missing {attribute}"),
        other => other.to_string(),
    }
}

/// Scans `root` recursively (in parallel).
pub fn scan(root: &Path) -> ScanResult {
    let (files, mut skipped) = list_files(root);
    let outcomes: Vec<FileOutcome> = files.par_iter().map(|p| classify_file(p)).collect();
    let mut instances = Vec::new();
    for o in outcomes {
        match o {
            FileOutcome::Instance(h) => instances.push(*h),
            FileOutcome::Skipped(s) => skipped.push(s),
        }
    }
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    ScanResult { instances, skipped }
}
