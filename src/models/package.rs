//! Model packages: a model folder (segmentation or classifier bundle) plus `manifest.toml`,
//! which names the model and lists the SHA-256 of every file, and `manifest.toml.sig`, an
//! Ed25519 signature over the manifest's exact bytes ([`crate::models::signing`]).
//!
//! # Layout (regular files only, no links; flat except a cascade's `previous_stage/`)
//! * `manifest.toml` — schema [`SCHEMA`] v[`SCHEMA_VERSION`]: name, version, role,
//!   architecture, preprocessing, labels, training-data summary and `[[files]]` (path, bytes,
//!   sha256) for every other file except the signature;
//! * `manifest.toml.sig`;
//! * the model's own files (`manifest.json`, weights, model card…) and `self_check.json`
//!   (the vendor's self-check record, [`crate::models::self_check`]);
//! * for a cascade ([`crate::segment::model`]) the first stage's bundle as flat files in
//!   `previous_stage/`, listed as `previous_stage/NAME` — the only sub-folder a package has.
//!
//! # Verification order ([`verify_package`])
//! Signature first (by a trusted key, over the bytes as read), then the manifest's content,
//! then every file: present, same size (a truncated file is named as such), same SHA-256, and no
//! file the manifest does not list. Only then is anything parsed by the model loaders.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::Backend;
use crate::models::loaded::{LoadedModel, Role};
use crate::models::self_check::{self, SelfCheckRecord, SELF_CHECK_FILE};
use crate::models::signing::{hex, PublicKey, SecretKey, SignatureFile};
use crate::segment::model::PREVIOUS_STAGE_DIR;

pub const MANIFEST_TOML: &str = "manifest.toml";
pub const SIGNATURE_FILE: &str = "manifest.toml.sig";
pub const SCHEMA: &str = "nephrod.model-package";
pub const SCHEMA_VERSION: u32 = 1;
/// A manifest larger than this is refused before it is read.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// A signature file is one short line.
const MAX_SIGNATURE_BYTES: u64 = 1024;

/// `[architecture]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchitectureSummary {
    pub description: String,
    pub parameters: u64,
}

/// `[preprocessing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessingSummary {
    pub description: String,
}

/// `[training]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSummary {
    pub summary: String,
}

/// One `[[files]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// `manifest.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageManifest {
    pub schema: String,
    pub schema_version: u32,
    pub name: String,
    pub version: String,
    pub role: Role,
    /// UTC, RFC 3339.
    pub created_utc: String,
    pub nephrod_version: String,
    pub labels: Vec<String>,
    pub architecture: ArchitectureSummary,
    pub preprocessing: PreprocessingSummary,
    pub training: TrainingSummary,
    pub files: Vec<PackageFile>,
}

impl PackageManifest {
    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{dir}: unsigned bundle ({SIGNATURE_FILE} is missing); only signed packages are accepted (vendor side: nephrod models sign)")]
    Unsigned { dir: PathBuf },
    #[error(
        "{dir}: no {MANIFEST_TOML}; this is not a model package (vendor side: nephrod models sign)"
    )]
    NoManifest { dir: PathBuf },
    #[error("{dir}: unreadable signature: {message}")]
    SignatureFormat { dir: PathBuf, message: String },
    #[error("no trusted public keys: list them in the configuration (trusted_keys) or pass --trust KEY.pub")]
    NoTrustedKeys,
    #[error("{dir}: signed by key {key_id}, which is not trusted (trusted: {trusted})")]
    UntrustedKey {
        dir: PathBuf,
        key_id: String,
        trusted: String,
    },
    #[error("{dir}: the signature does not match {MANIFEST_TOML} (the manifest was changed after signing, or the signature is forged)")]
    BadSignature { dir: PathBuf },
    #[error("{path}: invalid manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{dir}: {file} is listed in the manifest but missing")]
    Missing { dir: PathBuf, file: String },
    #[error("{dir}: {file} is {found} bytes, the manifest says {expected} (truncated or damaged)")]
    Size {
        dir: PathBuf,
        file: String,
        expected: u64,
        found: u64,
    },
    #[error(
        "{dir}: {file} has SHA-256 {found}, the manifest says {expected} (damaged or altered)"
    )]
    Hash {
        dir: PathBuf,
        file: String,
        expected: String,
        found: String,
    },
    #[error("{dir}: {file} is not listed in the signed manifest")]
    Unlisted { dir: PathBuf, file: String },
    #[error("{dir}: {file} is not a regular file (packages hold plain files only)")]
    NotPlain { dir: PathBuf, file: String },
    #[error("{dir}: the model does not load: {message}")]
    Model { dir: PathBuf, message: String },
    #[error("{dir}: {source}")]
    SelfCheck {
        dir: PathBuf,
        source: self_check::SelfCheckError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `s` is usable as a model name or version: 1–64 of `A–Z a–z 0–9 . _ + -`, not
/// starting with `.` or `-` (it becomes a folder name and part of `name@version`).
pub fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// SHA-256 (hex) and length of a file.
pub fn file_digest(path: &Path) -> Result<(String, u64), PackageError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io(path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&h.finalize()), n))
}

/// The files of a package folder other than the manifest and signature, sorted; refuses
/// anything that is not a regular file.
fn content_files(dir: &Path) -> Result<Vec<String>, PackageError> {
    let mut out = Vec::new();
    list_plain_files(dir, None, &mut out)?;
    out.sort();
    Ok(out)
}

/// Appends the regular files of `dir` (or of its `sub`-folder) to `out` as package paths;
/// only the top level may hold the one sub-folder [`PREVIOUS_STAGE_DIR`].
fn list_plain_files(
    dir: &Path,
    sub: Option<&str>,
    out: &mut Vec<String>,
) -> Result<(), PackageError> {
    let here = sub.map_or_else(|| dir.to_path_buf(), |s| dir.join(s));
    for entry in std::fs::read_dir(&here).map_err(io(&here))? {
        let entry = entry.map_err(io(&here))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = sub.map_or_else(|| name.clone(), |s| format!("{s}/{name}"));
        if sub.is_none() && (name == MANIFEST_TOML || name == SIGNATURE_FILE) {
            continue;
        }
        let kind = entry.file_type().map_err(io(&entry.path()))?;
        if sub.is_none() && kind.is_dir() && name == PREVIOUS_STAGE_DIR {
            list_plain_files(dir, Some(PREVIOUS_STAGE_DIR), out)?;
            continue;
        }
        if !kind.is_file() || entry.file_name().to_str().is_none() {
            return Err(PackageError::NotPlain {
                dir: dir.to_path_buf(),
                file: path,
            });
        }
        out.push(path);
    }
    Ok(())
}

/// Checks every file of `dir` against `manifest` (see the module doc); the signature is not
/// looked at.
pub fn check_files(dir: &Path, manifest: &PackageManifest) -> Result<(), PackageError> {
    let present = content_files(dir)?;
    for f in &manifest.files {
        let plain = valid_file_name(&f.path);
        if !plain {
            return Err(PackageError::Manifest {
                path: dir.join(MANIFEST_TOML),
                message: format!("file {:?} is not a plain file name", f.path),
            });
        }
        if !present.contains(&f.path) {
            return Err(PackageError::Missing {
                dir: dir.to_path_buf(),
                file: f.path.clone(),
            });
        }
        let (sha, len) = file_digest(&dir.join(&f.path))?;
        if len != f.bytes {
            return Err(PackageError::Size {
                dir: dir.to_path_buf(),
                file: f.path.clone(),
                expected: f.bytes,
                found: len,
            });
        }
        if sha != f.sha256 {
            return Err(PackageError::Hash {
                dir: dir.to_path_buf(),
                file: f.path.clone(),
                expected: f.sha256.clone(),
                found: sha,
            });
        }
    }
    if let Some(extra) = present
        .iter()
        .find(|p| !manifest.files.iter().any(|f| &f.path == *p))
    {
        return Err(PackageError::Unlisted {
            dir: dir.to_path_buf(),
            file: extra.clone(),
        });
    }
    Ok(())
}

/// A package path: a plain file name, or one inside [`PREVIOUS_STAGE_DIR`].
fn valid_file_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((PREVIOUS_STAGE_DIR, name)) => valid_token(name),
        Some(_) => false,
        None => valid_token(s) && s != MANIFEST_TOML && s != SIGNATURE_FILE,
    }
}

/// Reads `manifest.toml`'s bytes (bounded).
fn read_manifest_bytes(dir: &Path) -> Result<Vec<u8>, PackageError> {
    let path = dir.join(MANIFEST_TOML);
    let meta = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PackageError::NoManifest {
                dir: dir.to_path_buf(),
            })
        }
        other => other.map_err(io(&path))?,
    };
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(PackageError::Manifest {
            path,
            message: format!("{} bytes is more than a manifest can be", meta.len()),
        });
    }
    std::fs::read(&path).map_err(io(&path))
}

/// Parses and validates manifest bytes.
pub fn parse_manifest(path: &Path, bytes: &[u8]) -> Result<PackageManifest, PackageError> {
    let bad = |message: String| PackageError::Manifest {
        path: path.to_path_buf(),
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
    let raw: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let schema = raw.get("schema").and_then(|v| v.as_str()).unwrap_or("");
    let version = raw.get("schema_version").and_then(|v| v.as_integer());
    if schema != SCHEMA || version != Some(i64::from(SCHEMA_VERSION)) {
        return Err(bad(format!(
            "schema {schema:?} version {version:?}, this build reads {SCHEMA} version {SCHEMA_VERSION}"
        )));
    }
    let m: PackageManifest = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    if !valid_token(&m.name) || !valid_token(&m.version) {
        return Err(bad(format!(
            "name {:?} / version {:?}: 1-64 of A-Z a-z 0-9 . _ + - expected",
            m.name, m.version
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in &m.files {
        if !valid_file_name(&f.path) || !seen.insert(f.path.as_str()) {
            return Err(bad(format!(
                "file {:?} is not a plain, unique file name",
                f.path
            )));
        }
        if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!(
                "file {:?}: sha256 is not 64 hex digits",
                f.path
            )));
        }
    }
    if !seen.contains(SELF_CHECK_FILE) {
        return Err(bad(format!(
            "no {SELF_CHECK_FILE} (the vendor's self-check record)"
        )));
    }
    Ok(m)
}

/// A package whose signature and files verified.
#[derive(Debug, Clone)]
pub struct VerifiedPackage {
    pub dir: PathBuf,
    pub manifest: PackageManifest,
    /// SHA-256 of `manifest.toml` (it covers every file's SHA-256): the package's identity.
    pub manifest_sha256: String,
    /// Id of the trusted key that signed it.
    pub key_id: String,
}

/// Verifies `dir` against `trusted` keys (see the module doc).
pub fn verify_package(dir: &Path, trusted: &[PublicKey]) -> Result<VerifiedPackage, PackageError> {
    let bytes = read_manifest_bytes(dir)?;
    let sig_path = dir.join(SIGNATURE_FILE);
    let sig_len = match std::fs::symlink_metadata(&sig_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PackageError::Unsigned {
                dir: dir.to_path_buf(),
            })
        }
        other => other.map_err(io(&sig_path))?.len(),
    };
    if sig_len > MAX_SIGNATURE_BYTES {
        return Err(PackageError::SignatureFormat {
            dir: dir.to_path_buf(),
            message: format!("{sig_len} bytes is more than a signature file can be"),
        });
    }
    let sig_text = std::fs::read(&sig_path).map_err(io(&sig_path))?;
    let sig = std::str::from_utf8(&sig_text)
        .map_err(|_| "not text".to_string())
        .and_then(SignatureFile::parse)
        .map_err(|message| PackageError::SignatureFormat {
            dir: dir.to_path_buf(),
            message,
        })?;
    if trusted.is_empty() {
        return Err(PackageError::NoTrustedKeys);
    }
    let Some(key) = trusted.iter().find(|k| k.verifies(&bytes, &sig.signature)) else {
        return Err(if trusted.iter().any(|k| k.id() == sig.key_id) {
            PackageError::BadSignature {
                dir: dir.to_path_buf(),
            }
        } else {
            PackageError::UntrustedKey {
                dir: dir.to_path_buf(),
                key_id: sig.key_id,
                trusted: trusted
                    .iter()
                    .map(PublicKey::id)
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        });
    };
    let manifest = parse_manifest(&dir.join(MANIFEST_TOML), &bytes)?;
    check_files(dir, &manifest)?;
    Ok(VerifiedPackage {
        dir: dir.to_path_buf(),
        manifest,
        manifest_sha256: hex(&Sha256::digest(&bytes)),
        key_id: key.id(),
    })
}

/// Reads an installed package's manifest and re-checks its files (no signature: it was
/// verified at install). Returns the manifest and its SHA-256.
pub fn read_installed(dir: &Path) -> Result<(PackageManifest, String), PackageError> {
    let bytes = read_manifest_bytes(dir)?;
    let manifest = parse_manifest(&dir.join(MANIFEST_TOML), &bytes)?;
    check_files(dir, &manifest)?;
    Ok((manifest, hex(&Sha256::digest(&bytes))))
}

/// Loads the model of a verified package and runs its self-check against the recorded output.
/// Returns the loaded model and the self-check summary.
pub fn load_and_self_check(
    pkg: &VerifiedPackage,
    backend: &dyn Backend,
) -> Result<(LoadedModel, String), PackageError> {
    let dir = &pkg.dir;
    let model = LoadedModel::open(dir).map_err(|e| PackageError::Model {
        dir: dir.clone(),
        message: e.0,
    })?;
    if model.role() != pkg.manifest.role {
        return Err(PackageError::Model {
            dir: dir.clone(),
            message: format!(
                "the manifest says {}, the model is a {} model",
                pkg.manifest.role.as_str(),
                model.role().as_str()
            ),
        });
    }
    let path = dir.join(SELF_CHECK_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let expected: SelfCheckRecord =
        serde_json::from_str(&text).map_err(|e| PackageError::SelfCheck {
            dir: dir.clone(),
            source: self_check::SelfCheckError::Record(e.to_string()),
        })?;
    let sc = |source| PackageError::SelfCheck {
        dir: dir.clone(),
        source,
    };
    let actual = self_check::run(&model, backend).map_err(sc)?;
    let summary = self_check::compare(&expected, &actual).map_err(sc)?;
    Ok((model, summary))
}

/// What the vendor states when signing.
#[derive(Debug, Clone)]
pub struct SignRequest {
    /// Defaults to the existing manifest's name, else the folder name.
    pub name: Option<String>,
    /// Defaults to the existing manifest's version; required otherwise.
    pub version: Option<String>,
    /// Defaults to the existing manifest's, else the model's own training records.
    pub training: Option<String>,
}

/// Vendor side: loads the model in `dir`, records its self-check output, writes
/// `manifest.toml` over every file and signs it with `key`. Each file is replaced atomically;
/// the signature is written last, so an interrupted run leaves an unsigned (refused) package.
pub fn sign_package(
    dir: &Path,
    key: &SecretKey,
    req: &SignRequest,
    backend: &dyn Backend,
) -> Result<(PackageManifest, String), PackageError> {
    let previous = read_manifest_bytes(dir)
        .ok()
        .and_then(|b| parse_manifest(&dir.join(MANIFEST_TOML), &b).ok());
    let name = req
        .name
        .clone()
        .or_else(|| previous.as_ref().map(|m| m.name.clone()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let version = req
        .version
        .clone()
        .or_else(|| previous.as_ref().map(|m| m.version.clone()))
        .ok_or_else(|| PackageError::Manifest {
            path: dir.join(MANIFEST_TOML),
            message: "no version: pass --version".into(),
        })?;
    for (what, v) in [("name", &name), ("version", &version)] {
        if !valid_token(v) {
            return Err(PackageError::Manifest {
                path: dir.join(MANIFEST_TOML),
                message: format!("{what} {v:?}: 1-64 of A-Z a-z 0-9 . _ + - expected"),
            });
        }
    }
    let model = LoadedModel::open(dir).map_err(|e| PackageError::Model {
        dir: dir.to_path_buf(),
        message: e.0,
    })?;
    let record = self_check::run(&model, backend).map_err(|source| PackageError::SelfCheck {
        dir: dir.to_path_buf(),
        source,
    })?;
    let sc_path = dir.join(SELF_CHECK_FILE);
    let sc_text = serde_json::to_string(&record).map_err(|e| PackageError::Manifest {
        path: sc_path.clone(),
        message: e.to_string(),
    })?;
    crate::fsio::write_atomic(&sc_path, format!("{sc_text}\n").as_bytes()).map_err(io(&sc_path))?;
    let desc = model.describe(dir);
    drop(model);
    let mut files = Vec::new();
    for f in content_files(dir)? {
        if crate::fsio::is_temporary(&f) {
            continue;
        }
        let (sha256, bytes) = file_digest(&dir.join(&f))?;
        files.push(PackageFile {
            path: f,
            bytes,
            sha256,
        });
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let manifest = PackageManifest {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        name,
        version,
        role: desc.role,
        created_utc: crate::models::bundle::rfc3339_utc(now),
        nephrod_version: env!("CARGO_PKG_VERSION").into(),
        labels: desc.labels,
        architecture: ArchitectureSummary {
            description: desc.architecture,
            parameters: desc.parameters,
        },
        preprocessing: PreprocessingSummary {
            description: desc.preprocessing,
        },
        training: TrainingSummary {
            summary: req
                .training
                .clone()
                .or_else(|| previous.as_ref().map(|m| m.training.summary.clone()))
                .unwrap_or(desc.training),
        },
        files,
    };
    let mpath = dir.join(MANIFEST_TOML);
    let text = toml::to_string(&manifest).map_err(|e| PackageError::Manifest {
        path: mpath.clone(),
        message: e.to_string(),
    })?;
    let sig_path = dir.join(SIGNATURE_FILE);
    // Old signature first: a crash in between leaves an unsigned package, never a signature
    // over another manifest.
    match std::fs::remove_file(&sig_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&sig_path)(e)),
        _ => {}
    }
    crate::fsio::write_atomic(&mpath, text.as_bytes()).map_err(io(&mpath))?;
    crate::fsio::write_atomic(&sig_path, key.sign_manifest(text.as_bytes()).as_bytes())
        .map_err(io(&sig_path))?;
    Ok((manifest, hex(&Sha256::digest(text.as_bytes()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        for ok in ["kidney-seg", "1.2.0", "2026.12.06+cpu", "v1_rc2"] {
            assert!(valid_token(ok), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "a b",
            "a@b",
            "..",
            &"x".repeat(65),
        ] {
            assert!(!valid_token(bad), "{bad}");
        }
    }
}
