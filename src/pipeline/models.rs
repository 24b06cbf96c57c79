//! The models an analysis runs with, opened and verified once (the daemon keeps them between
//! studies and re-opens them when the store's active set changes), and how a report names them.
//!
//! Two sources:
//! * a model store ([`crate::models::store`], what the appliance runs): the active
//!   segmentation model (required) and classifier (optional) named by `active.json`; their
//!   files are re-checked against the signed manifest.toml before loading and, when the
//!   caller passes trusted keys (the daemon: `models.trusted_keys` of its configuration), the
//!   signature is re-verified too, so removing a vendor key from the configuration stops its
//!   packages from serving at the next start; a report names each by package name, version
//!   and manifest.toml SHA-256;
//! * a development models folder (`--models DIR` of `analyze`/`demo`, e.g. the source tree's
//!   `models/`): the bundles [`SEG_BUNDLE`] and optionally [`CLS_BUNDLE`], named by their
//!   manifest.toml when they have one (else folder name and import time) and the SHA-256 of
//!   their manifest; reports mark them `signed: false`.
//!
//! Model status: models whose name ends in `-demo` are nephrod's phantom-trained demonstration
//! models and every report says so.

use std::path::{Path, PathBuf};

use crate::classify::bundle::{ClassifierBundle, ClassifierBundleError};
use crate::models::loaded::Role;
use crate::models::package::verify_package;
use crate::models::signing::PublicKey;
use crate::models::store::{Store, StoreError};
use crate::report::schema::ModelEntry;
use crate::segment::model::{SegmentationModel, SegmentationModelError};

/// Segmentation bundle folder name inside a models folder.
pub const SEG_BUNDLE: &str = "kidney-seg-demo";
/// Classifier bundle folder name inside a models folder.
pub const CLS_BUNDLE: &str = "renal-mass-classifier-demo";
/// Manifest file name shared by both bundle kinds.
const MANIFEST: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("segmentation model: {0}")]
    Segmentation(#[source] Box<SegmentationModelError>),
    #[error("classifier model {path}: {source}")]
    Classifier {
        path: PathBuf,
        #[source]
        source: Box<ClassifierBundleError>,
    },
    #[error("model store: {0}")]
    Store(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Opened models.
pub struct ModelSet {
    pub segmentation: SegmentationModel,
    pub segmentation_entry: ModelEntry,
    /// `None` when the folder has no classifier bundle; lesions are then reported without a
    /// subtype.
    pub classifier: Option<(ClassifierBundle, ModelEntry)>,
    /// Why there is no classifier (when there is none).
    pub classifier_missing: Option<String>,
    /// The store's active-set generation the models were opened at (`None`: a development
    /// folder).
    pub generation: Option<u64>,
}

impl ModelsError {
    fn store(e: StoreError) -> Self {
        ModelsError::Store(e.to_string())
    }
}

/// A development folder's entry: name and version from its manifest.toml when it has one.
fn folder_entry(dir: &Path, role: &str, fallback_version: &str) -> Result<ModelEntry, ModelsError> {
    let toml_path = dir.join(crate::models::package::MANIFEST_TOML);
    let package = std::fs::read(&toml_path)
        .ok()
        .and_then(|b| crate::models::package::parse_manifest(&toml_path, &b).ok());
    Ok(match package {
        Some(m) => ModelEntry {
            role: role.into(),
            name: m.name,
            version: m.version,
            sha256: file_sha256(&toml_path)?,
            signed: false,
        },
        None => ModelEntry {
            role: role.into(),
            name: folder_name(dir),
            version: fallback_version.into(),
            sha256: file_sha256(&dir.join(MANIFEST))?,
            signed: false,
        },
    })
}

fn file_sha256(path: &Path) -> Result<String, ModelsError> {
    crate::models::package::file_digest(path)
        .map(|(sha, _)| sha)
        .map_err(|e| ModelsError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
}

fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

impl ModelSet {
    /// Opens the active models of the store at `models_dir`, or the bundles of a development
    /// folder (see the module doc). A missing or broken segmentation model is an error; a
    /// missing classifier is not (see [`ModelSet::classifier_missing`]), a broken one is.
    pub fn open(models_dir: &Path) -> Result<Self, ModelsError> {
        Self::open_with_trust(models_dir, None)
    }

    /// [`ModelSet::open`]; with `trusted` keys, a store's active packages must also carry a
    /// valid signature by one of them (a development folder is opened as by `open`).
    pub fn open_with_trust(
        models_dir: &Path,
        trusted: Option<&[PublicKey]>,
    ) -> Result<Self, ModelsError> {
        if Store::exists(models_dir) {
            Self::open_store(models_dir, trusted)
        } else {
            Self::open_folder(models_dir)
        }
    }

    fn open_store(root: &Path, trusted: Option<&[PublicKey]>) -> Result<Self, ModelsError> {
        let store = Store::new(root);
        let state = store.state().map_err(ModelsError::store)?;
        let package = |role: Role| -> Result<Option<(PathBuf, ModelEntry)>, ModelsError> {
            let Some(a) = state.active.get(&role) else {
                return Ok(None);
            };
            let sha = match trusted {
                None => {
                    store
                        .check_installed(&a.name, &a.version)
                        .map_err(ModelsError::store)?
                        .1
                }
                Some(keys) => {
                    verify_package(&store.package_dir(&a.name, &a.version), keys)
                        .map_err(|e| ModelsError::Store(format!("{}: {e}", a.id())))?
                        .manifest_sha256
                }
            };
            if sha != a.manifest_sha256 {
                return Err(ModelsError::Store(format!(
                    "{}: manifest.toml changed since activation (SHA-256 {sha}, activated {})",
                    a.id(),
                    a.manifest_sha256
                )));
            }
            Ok(Some((
                store.package_dir(&a.name, &a.version),
                ModelEntry {
                    role: role.as_str().into(),
                    name: a.name.clone(),
                    version: a.version.clone(),
                    sha256: sha,
                    signed: true,
                },
            )))
        };
        let (seg_dir, segmentation_entry) = package(Role::Segmentation)?.ok_or_else(|| {
            ModelsError::Store(format!(
                "{}: no active segmentation model (nephrod models install … then activate)",
                root.display()
            ))
        })?;
        let segmentation = SegmentationModel::open(&seg_dir)
            .map_err(|e| ModelsError::Segmentation(Box::new(e)))?;
        let (classifier, classifier_missing) = match package(Role::Classification)? {
            Some((dir, entry)) => {
                let b = ClassifierBundle::open(&dir).map_err(|source| ModelsError::Classifier {
                    path: dir.clone(),
                    source: Box::new(source),
                })?;
                (Some((b, entry)), None)
            }
            None => (
                None,
                Some(format!(
                    "no active classifier in the model store {}",
                    root.display()
                )),
            ),
        };
        Ok(ModelSet {
            segmentation,
            segmentation_entry,
            classifier,
            classifier_missing,
            generation: Some(state.generation),
        })
    }

    fn open_folder(models_dir: &Path) -> Result<Self, ModelsError> {
        let seg_dir = models_dir.join(SEG_BUNDLE);
        let segmentation = SegmentationModel::open(&seg_dir)
            .map_err(|e| ModelsError::Segmentation(Box::new(e)))?;
        let segmentation_entry = folder_entry(
            &seg_dir,
            "segmentation",
            &segmentation.bundle.manifest.imported_at,
        )?;
        let cls_dir = models_dir.join(CLS_BUNDLE);
        let (classifier, classifier_missing) = if cls_dir.join(MANIFEST).exists() {
            let b = ClassifierBundle::open(&cls_dir).map_err(|source| ModelsError::Classifier {
                path: cls_dir.clone(),
                source: Box::new(source),
            })?;
            let entry = folder_entry(&cls_dir, "classification", &b.manifest.created_utc)?;
            (Some((b, entry)), None)
        } else {
            (
                None,
                Some(format!("no classifier model in {}", models_dir.display())),
            )
        };
        Ok(ModelSet {
            segmentation,
            segmentation_entry,
            classifier,
            classifier_missing,
            generation: None,
        })
    }

    /// The report entries of the models.
    pub fn entries(&self) -> Vec<ModelEntry> {
        let mut v = vec![self.segmentation_entry.clone()];
        if let Some((_, e)) = &self.classifier {
            v.push(e.clone());
        }
        v
    }

    /// The plain statement of the models' status for the report.
    pub fn status(&self) -> String {
        if self.entries().iter().any(|e| e.name.ends_with("-demo")) {
            "Demonstration models trained on synthetic phantoms only. NOT FOR CLINICAL USE: \
             results must not be used for diagnosis. Import validated nnU-Net v2 models \
             (nephrod models import-nnunet) for real studies."
                .into()
        } else {
            "Site-supplied models. nephrod reproduces their inference; their clinical validity \
             is established by the site, not by nephrod."
                .into()
        }
    }
}
