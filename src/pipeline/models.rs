//! The models an analysis runs with, opened and verified once (the daemon keeps them between
//! studies), and how a report names them.
//!
//! A models folder holds the segmentation bundle [`SEG_BUNDLE`] and optionally the classifier
//! bundle [`CLS_BUNDLE`]. A report names each model by its folder name, a version (the
//! bundle's import / creation time until the model store of issue 10 adds explicit versions)
//! and the SHA-256 of its manifest, which itself lists the SHA-256 of every weights file — so the
//! hash identifies the exact weights.
//!
//! Model status: bundles whose name ends in `-demo` are nephrod's phantom-trained demonstration
//! models and every report says so.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::classify::bundle::{ClassifierBundle, ClassifierBundleError};
use crate::models::bundle::{Bundle, BundleError};
use crate::report::schema::ModelEntry;

/// Segmentation bundle folder name inside a models folder.
pub const SEG_BUNDLE: &str = "kidney-seg-demo";
/// Classifier bundle folder name inside a models folder.
pub const CLS_BUNDLE: &str = "renal-mass-classifier-demo";
/// Manifest file name shared by both bundle kinds.
const MANIFEST: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("segmentation model {path}: {source}")]
    Segmentation {
        path: PathBuf,
        #[source]
        source: Box<BundleError>,
    },
    #[error("classifier model {path}: {source}")]
    Classifier {
        path: PathBuf,
        #[source]
        source: Box<ClassifierBundleError>,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Opened models.
pub struct ModelSet {
    pub segmentation: Bundle,
    pub segmentation_entry: ModelEntry,
    /// `None` when the folder has no classifier bundle; lesions are then reported without a
    /// subtype.
    pub classifier: Option<(ClassifierBundle, ModelEntry)>,
    /// Why there is no classifier (when there is none).
    pub classifier_missing: Option<String>,
}

fn manifest_sha256(dir: &Path) -> Result<String, ModelsError> {
    let path = dir.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(|source| ModelsError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

impl ModelSet {
    /// Opens and verifies the bundles of `models_dir`. A missing or broken segmentation model
    /// is an error; a missing classifier folder is not (see [`ModelSet::classifier_missing`]),
    /// a present but broken one is.
    pub fn open(models_dir: &Path) -> Result<Self, ModelsError> {
        let seg_dir = models_dir.join(SEG_BUNDLE);
        let segmentation = Bundle::open(&seg_dir).map_err(|source| ModelsError::Segmentation {
            path: seg_dir.clone(),
            source: Box::new(source),
        })?;
        let segmentation_entry = ModelEntry {
            role: "segmentation".into(),
            name: folder_name(&seg_dir),
            version: segmentation.manifest.imported_at.clone(),
            sha256: manifest_sha256(&seg_dir)?,
        };
        let cls_dir = models_dir.join(CLS_BUNDLE);
        let (classifier, classifier_missing) = if cls_dir.join(MANIFEST).exists() {
            let b = ClassifierBundle::open(&cls_dir).map_err(|source| ModelsError::Classifier {
                path: cls_dir.clone(),
                source: Box::new(source),
            })?;
            let entry = ModelEntry {
                role: "classification".into(),
                name: folder_name(&cls_dir),
                version: b.manifest.created_utc.clone(),
                sha256: manifest_sha256(&cls_dir)?,
            };
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
