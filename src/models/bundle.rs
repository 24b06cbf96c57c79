//! nephrod model bundles: a directory with `manifest.json` and one `fold_<k>.safetensors` per
//! fold (f16 tensors under nnU-Net's state-dict names, see
//! [`crate::models::nnunet::expected_tensors`]).
//!
//! # Manifest (`schema` = [`SCHEMA`], `schema_version` = [`SCHEMA_VERSION`])
//! The [`InferencePlan`], the parameter count, per fold the weights file name with its
//! [`WeightsManifest`] (SHA-256 of the whole file, every tensor's name/dtype/shape), and the
//! sources (SHA-256 of plans.json, dataset.json and each checkpoint, trainer, configuration),
//! the nephrod version and the import time (UTC, RFC 3339).
//!
//! # Guarantees
//! * [`write_bundle`] writes into a temporary sibling directory and renames it into place only
//!   when every fold converted and every file is synced: a failed import leaves nothing behind
//!   (the temporary directory is removed) and never a half-written bundle.
//! * [`Bundle::open`] refuses other schemas/versions, weights file names that are not plain
//!   file names, files whose SHA-256, tensor names, dtypes (F16 only) or shapes differ from the
//!   manifest, and manifests whose tensors differ from what the plan's architecture needs. The
//!   weights stay memory-mapped ([`WeightFile`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::weights::{
    write_safetensors, DType, TensorToWrite, WeightFile, WeightsError, WeightsManifest,
};
use crate::models::nnunet::{expected_tensors, validate_architecture, NnunetError, PreparedImport};
use crate::segment::plan::InferencePlan;

/// Manifest schema name.
pub const SCHEMA: &str = "nephrod.model-bundle";
/// Manifest schema version written and read by this build.
pub const SCHEMA_VERSION: u32 = 1;
/// File name of the manifest inside a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";

/// A source file of the import, by name and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceDigest {
    pub file: String,
    pub sha256: String,
}

/// Where the bundle came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSource {
    /// `nnunet_v2`.
    pub kind: String,
    /// The trained-model folder as given at import.
    pub model_dir: String,
    pub trainer_name: String,
    pub configuration: String,
    pub plans_json: SourceDigest,
    pub dataset_json: SourceDigest,
    /// One per fold, in fold order.
    pub checkpoints: Vec<SourceDigest>,
    /// nnU-Net's postprocessing.json the plan's rules come from (path as given), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postprocessing_json: Option<SourceDigest>,
}

/// One fold's weights file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFold {
    pub fold: String,
    /// Plain file name inside the bundle.
    pub weights_file: String,
    pub weights: WeightsManifest,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub schema: String,
    pub schema_version: u32,
    pub nephrod_version: String,
    /// UTC, RFC 3339 (`2026-11-23T23:40:00Z`).
    pub imported_at: String,
    pub parameters: u64,
    pub plan: InferencePlan,
    pub folds: Vec<BundleFold>,
    pub source: BundleSource,
}

/// Errors writing or opening a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: already exists (use --force to replace it)")]
    Exists { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{path}: schema {found} is not {SCHEMA} version {SCHEMA_VERSION} (written by another nephrod version?)")]
    Schema { path: PathBuf, found: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Import(#[from] NnunetError),
}

impl BundleError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exists { .. } => "exists",
            Self::Io { .. } => "io",
            Self::Manifest { .. } => "manifest",
            Self::Schema { .. } => "schema",
            Self::Weights(e) => e.kind(),
            Self::Import(e) => e.kind(),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Removes the temporary directory unless disarmed.
struct TempDir {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// UTC RFC 3339 timestamp of `secs` since the Unix epoch.
pub fn rfc3339_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil-from-days (H. Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn sync_dir(path: &Path) -> Result<(), BundleError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}

/// Converts every fold of `prep` and writes the bundle at `out` atomically (see module doc).
/// `on_fold(k, n)` is called after fold `k` of `n` is written (progress).
pub fn write_bundle(
    prep: &PreparedImport,
    out: &Path,
    force: bool,
    mut on_fold: impl FnMut(usize, usize),
) -> Result<BundleManifest, BundleError> {
    if out.exists() && !force {
        return Err(BundleError::Exists {
            path: out.to_path_buf(),
        });
    }
    let name = out
        .file_name()
        .ok_or_else(|| BundleError::Manifest {
            path: out.to_path_buf(),
            message: "output path has no file name".into(),
        })?
        .to_string_lossy()
        .to_string();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let tmp = TempDir {
        path: parent.join(format!(".{name}.tmp-{}-{nanos}", std::process::id())),
        armed: true,
    };
    std::fs::create_dir(&tmp.path).map_err(io(&tmp.path))?;

    let n = prep.checkpoints.len();
    let mut folds = Vec::new();
    let mut checkpoints = Vec::new();
    for i in 0..n {
        let fw = prep.load_fold(i)?;
        let file = format!("fold_{}.safetensors", fw.fold);
        let path = tmp.path.join(&file);
        let bytes: Vec<Vec<u8>> = fw
            .tensors
            .iter()
            .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
            .collect();
        let to_write: Vec<TensorToWrite<'_>> = fw
            .tensors
            .iter()
            .zip(&bytes)
            .map(|((name, shape, _), b)| TensorToWrite {
                name,
                dtype: DType::F16,
                shape,
                bytes: b,
            })
            .collect();
        let metadata = BTreeMap::from([
            ("format".to_string(), "pt".to_string()),
            (
                "producer".to_string(),
                "nephrod models import-nnunet".to_string(),
            ),
            ("fold".to_string(), fw.fold.clone()),
        ]);
        write_safetensors(&path, &to_write, &metadata)?;
        let wf = WeightFile::open(&path)?;
        folds.push(BundleFold {
            fold: fw.fold.clone(),
            weights_file: file,
            weights: wf.manifest(),
        });
        checkpoints.push(SourceDigest {
            file: fw
                .checkpoint
                .path
                .strip_prefix(&prep.dir)
                .unwrap_or(&fw.checkpoint.path)
                .to_string_lossy()
                .to_string(),
            sha256: fw.checkpoint.sha256.clone(),
        });
        on_fold(i, n);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let manifest = BundleManifest {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        nephrod_version: env!("CARGO_PKG_VERSION").into(),
        imported_at: rfc3339_utc(now),
        parameters: prep.parameters(),
        plan: prep.plan.clone(),
        folds,
        source: BundleSource {
            kind: "nnunet_v2".into(),
            model_dir: prep.dir.to_string_lossy().to_string(),
            trainer_name: prep.trainer_name.clone(),
            configuration: prep.plan.configuration.clone(),
            plans_json: SourceDigest {
                file: "plans.json".into(),
                sha256: prep.plans_json.sha256.clone(),
            },
            dataset_json: SourceDigest {
                file: "dataset.json".into(),
                sha256: prep.dataset_json.sha256.clone(),
            },
            checkpoints,
            postprocessing_json: prep.postprocessing_json.as_ref().map(|f| SourceDigest {
                file: f.path.to_string_lossy().to_string(),
                sha256: f.sha256.clone(),
            }),
        },
    };
    let mpath = tmp.path.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| BundleError::Manifest {
        path: mpath.clone(),
        message: e.to_string(),
    })?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&mpath).map_err(io(&mpath))?;
        f.write_all(text.as_bytes()).map_err(io(&mpath))?;
        f.write_all(b"\n").map_err(io(&mpath))?;
        f.sync_all().map_err(io(&mpath))?;
    }
    sync_dir(&tmp.path)?;
    if out.exists() {
        // --force: move the old bundle aside, put the new one in place, then delete the old.
        let old = parent.join(format!(".{name}.old-{}-{nanos}", std::process::id()));
        std::fs::rename(out, &old).map_err(io(out))?;
        if let Err(e) = std::fs::rename(&tmp.path, out) {
            let _ = std::fs::rename(&old, out);
            return Err(io(out)(e));
        }
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp.path, out).map_err(io(out))?;
    }
    let mut tmp = tmp;
    tmp.armed = false;
    sync_dir(&parent)?;
    Ok(manifest)
}

/// An opened, verified bundle with its weights memory-mapped (one file per fold).
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: BundleManifest,
    pub weights: Vec<WeightFile>,
}

impl Bundle {
    /// Opens and verifies `dir` (see module doc).
    pub fn open(dir: &Path) -> Result<Self, BundleError> {
        let mpath = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&mpath).map_err(io(&mpath))?;
        let bad = |message: String| BundleError::Manifest {
            path: mpath.clone(),
            message,
        };
        let raw: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let schema = raw.get("schema").and_then(|v| v.as_str()).unwrap_or("");
        let version = raw.get("schema_version").and_then(|v| v.as_u64());
        if schema != SCHEMA || version != Some(SCHEMA_VERSION as u64) {
            return Err(BundleError::Schema {
                path: mpath.clone(),
                found: format!("{schema:?} version {version:?}"),
            });
        }
        let manifest: BundleManifest =
            serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?;
        if manifest.folds.is_empty() {
            return Err(bad("no folds".into()));
        }
        let fold_names: Vec<&String> = manifest.folds.iter().map(|f| &f.fold).collect();
        if fold_names != manifest.plan.folds.iter().collect::<Vec<_>>() {
            return Err(bad(format!(
                "folds {fold_names:?} differ from the plan's {:?}",
                manifest.plan.folds
            )));
        }
        validate_architecture(&manifest.plan.architecture)
            .map_err(|m| bad(format!("plan.architecture: {m}")))?;
        let expected = expected_tensors(&manifest.plan.architecture);
        let mut weights = Vec::new();
        for f in &manifest.folds {
            let plain = Path::new(&f.weights_file)
                .file_name()
                .is_some_and(|n| n == f.weights_file.as_str());
            if !plain || f.weights_file.starts_with('.') {
                return Err(bad(format!(
                    "weights file {:?} is not a plain file name",
                    f.weights_file
                )));
            }
            // Manifest ↔ architecture.
            let mut listed: Vec<(&str, &Vec<usize>)> = f
                .weights
                .tensors
                .iter()
                .map(|t| (t.name.as_str(), &t.shape))
                .collect();
            listed.sort();
            let mut want: Vec<(&str, &Vec<usize>)> =
                expected.iter().map(|(n, s)| (n.as_str(), s)).collect();
            want.sort();
            if listed != want {
                return Err(bad(format!(
                    "fold {}: tensors differ from what the {:?} architecture needs",
                    f.fold, manifest.plan.architecture.class
                )));
            }
            if let Some(t) = f.weights.tensors.iter().find(|t| t.dtype != DType::F16) {
                return Err(bad(format!(
                    "fold {}: tensor {} is not F16",
                    f.fold, t.name
                )));
            }
            // File ↔ manifest (names, dtypes, shapes, SHA-256).
            let wf = WeightFile::open(&dir.join(&f.weights_file))?;
            wf.verify(&f.weights)?;
            weights.push(wf);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            weights,
        })
    }
}
