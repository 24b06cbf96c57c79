//! A model folder of either kind (nnU-Net segmentation bundle or ResNet classifier bundle),
//! opened and verified by its own loader, and what a package manifest says about it.
//!
//! The kind is read from the `schema` of the folder's `manifest.json`; everything else is left
//! to [`Bundle::open`] and [`ClassifierBundle::open`], which verify their weights.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::classify::bundle::ClassifierBundle;
use crate::segment::model::SegmentationModel;
use crate::segment::plan::{NetworkClass, OutputHeads};

/// What a model is for; one active model per role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Segmentation,
    Classification,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Segmentation => "segmentation",
            Role::Classification => "classification",
        }
    }
}

/// An opened model.
pub enum LoadedModel {
    Segmentation(Box<SegmentationModel>),
    Classification(Box<ClassifierBundle>),
}

/// The summary lines a package manifest carries (human-readable, for `models list/verify`
/// and the model card; the loaders read the details from `manifest.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDescription {
    pub role: Role,
    pub architecture: String,
    pub parameters: u64,
    pub preprocessing: String,
    pub labels: Vec<String>,
    /// A default training summary from the bundle's own records.
    pub training: String,
}

/// Why a folder is not a model nephrod can load.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

impl LoadedModel {
    /// Opens `dir` with the loader its `manifest.json` names.
    pub fn open(dir: &Path) -> Result<Self, LoadError> {
        let path = dir.join(crate::models::bundle::MANIFEST_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| LoadError(format!("{}: {e}", path.display())))?;
        let head: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| LoadError(format!("{}: not JSON: {e}", path.display())))?;
        match head["schema"].as_str() {
            Some(crate::models::bundle::SCHEMA) => SegmentationModel::open(dir)
                .map(|b| LoadedModel::Segmentation(Box::new(b)))
                .map_err(|e| LoadError(e.to_string())),
            Some(crate::classify::bundle::SCHEMA) => ClassifierBundle::open(dir)
                .map(|b| LoadedModel::Classification(Box::new(b)))
                .map_err(|e| LoadError(e.to_string())),
            other => Err(LoadError(format!(
                "{}: schema {other:?} is neither a segmentation nor a classifier bundle",
                path.display()
            ))),
        }
    }

    pub fn role(&self) -> Role {
        match self {
            LoadedModel::Segmentation(_) => Role::Segmentation,
            LoadedModel::Classification(_) => Role::Classification,
        }
    }

    pub fn describe(&self, dir: &Path) -> ModelDescription {
        match self {
            LoadedModel::Segmentation(model) => {
                let m = &model.bundle.manifest;
                let p = &m.plan;
                let a = &p.architecture;
                let class = match a.class {
                    NetworkClass::PlainConvUNet => "PlainConvUNet",
                    NetworkClass::ResidualEncoderUNet => "ResidualEncoderUNet",
                };
                let labels = match &p.outputs {
                    OutputHeads::Labels { names } => names.clone(),
                    OutputHeads::Regions { names, .. } => names.clone(),
                };
                let own = read_training_what(&dir.join("training.json"));
                let cascade = model.previous.as_ref().map_or(String::new(), |first| {
                    let f = &first.manifest.plan;
                    format!(
                        "; cascade after {} ({} stages {:?}, spacing {:?} mm, folds {})",
                        f.configuration,
                        f.architecture.features_per_stage.len(),
                        f.architecture.features_per_stage,
                        f.preprocessing.spacing_mm,
                        f.folds.join(",")
                    )
                });
                ModelDescription {
                    role: Role::Segmentation,
                    architecture: format!(
                        "nnU-Net v2 {class} ({} {}), {} stages {:?}, {} -> {} channels, folds {}{cascade}",
                        p.dataset_name,
                        p.configuration,
                        a.features_per_stage.len(),
                        a.features_per_stage,
                        a.input_channels,
                        a.output_channels,
                        p.folds.join(",")
                    ),
                    parameters: model.parameters(),
                    preprocessing: format!(
                        "spacing {:?} mm (nnU-Net order), normalization {:?}, patch {:?}, mirroring axes {:?}",
                        p.preprocessing.spacing_mm,
                        p.preprocessing.normalization,
                        p.sliding_window.patch_size,
                        p.sliding_window.mirror_axes
                    ),
                    labels,
                    training: own.unwrap_or_else(|| {
                        format!(
                            "nnU-Net v2 dataset {}, trainer {}",
                            p.dataset_name, m.source.trainer_name
                        )
                    }),
                }
            }
            LoadedModel::Classification(b) => {
                let m = &b.manifest;
                let training = m
                    .training
                    .as_ref()
                    .and_then(classifier_training_summary)
                    .unwrap_or_else(|| {
                        format!("imported from {} ({})", m.source.kind, m.source.file)
                    });
                ModelDescription {
                    role: Role::Classification,
                    architecture: format!(
                        "{:?} ({} classes, input conv {})",
                        m.architecture.depth, m.architecture.num_classes, m.architecture.input_conv
                    ),
                    parameters: m.parameters as u64,
                    preprocessing: format!(
                        "largest-tumour-slice crops {:?} px, margin {} mm, window {:?}",
                        m.crop.size, m.crop.margin_mm, m.crop.window
                    ),
                    labels: m.classes.clone(),
                    training,
                }
            }
        }
    }
}

fn read_training_what(path: &Path) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let what = v.get("what")?.as_str()?;
    let cases = v.pointer("/dataset/cases").and_then(|c| c.as_u64());
    Some(match cases {
        Some(n) => format!("{what}; {n} training cases"),
        None => what.to_string(),
    })
}

/// "what", else the dataset's generator, study count and seed and the exported lesion count
/// (as `tools/train/train_classifier.sh` records them).
fn classifier_training_summary(t: &serde_json::Value) -> Option<String> {
    if let Some(w) = t.get("what").and_then(|w| w.as_str()) {
        return Some(w.to_string());
    }
    let d = t.get("dataset")?;
    let generator = d.get("generator")?.as_str()?;
    let mut s = generator.to_string();
    if let Some(n) = d.get("studies").and_then(|v| v.as_u64()) {
        s.push_str(&format!(", {n} studies"));
    }
    if let Some(seed) = d.get("seed").and_then(|v| v.as_u64()) {
        s.push_str(&format!(", seed {seed}"));
    }
    if let Some(n) = t
        .pointer("/data/crops_export/lesions_exported")
        .and_then(|v| v.as_u64())
    {
        s.push_str(&format!(", {n} lesions"));
    }
    Some(s)
}
