//! A segmentation model as the appliance runs it: one nnU-Net bundle, or a cascade — the
//! `3d_cascade_fullres`-type stage's bundle with its previous stage's bundle (e.g. `3d_lowres`)
//! in the subfolder [`PREVIOUS_STAGE_DIR`]. One folder, so a cascade is installed, signed,
//! self-checked, activated and named in reports as one model.
//!
//! Invariant: `previous` is `Some` exactly when the bundle's plan names a previous stage, and
//! then its configuration and dataset are the ones named (checked at open, so a mismatched
//! pair never reaches a study).

use std::path::{Path, PathBuf};

use crate::engine::Backend;
use crate::models::bundle::{Bundle, BundleError, MANIFEST_FILE};
use crate::segment::pipeline::{
    segment_cascade, segment_volume, Progress, SegmentError, SegmentOptions,
};
use crate::volume::Volume;

/// The subfolder of a cascade stage's bundle that holds the previous stage's bundle.
pub const PREVIOUS_STAGE_DIR: &str = "previous_stage";

#[derive(Debug, thiserror::Error)]
pub enum SegmentationModelError {
    #[error("{path}: {source}")]
    Bundle {
        path: PathBuf,
        #[source]
        source: Box<BundleError>,
    },
    #[error("{path}: a cascade stage needs its previous stage ({want}) as a bundle in {PREVIOUS_STAGE_DIR}/")]
    MissingPreviousStage { path: PathBuf, want: String },
    #[error("{path}: the previous stage is {got}, but this cascade stage needs {want}")]
    PreviousStageMismatch {
        path: PathBuf,
        want: String,
        got: String,
    },
    #[error("{path}: {PREVIOUS_STAGE_DIR}/ is there, but this model is not a cascade stage")]
    UnexpectedPreviousStage { path: PathBuf },
}

/// An opened segmentation model (see the module doc).
pub struct SegmentationModel {
    /// The model whose output is the result (the cascade stage, or the only model).
    pub bundle: Bundle,
    /// The cascade's first stage.
    pub previous: Option<Bundle>,
}

fn open_bundle(dir: &Path) -> Result<Bundle, SegmentationModelError> {
    Bundle::open(dir).map_err(|source| SegmentationModelError::Bundle {
        path: dir.to_path_buf(),
        source: Box::new(source),
    })
}

impl SegmentationModel {
    /// Opens the bundle in `dir` and, for a cascade stage, its previous stage (see the module
    /// doc); every bundle's weights are verified by [`Bundle::open`].
    pub fn open(dir: &Path) -> Result<Self, SegmentationModelError> {
        let bundle = open_bundle(dir)?;
        let previous_dir = dir.join(PREVIOUS_STAGE_DIR);
        let plan = &bundle.manifest.plan;
        let previous = match &plan.previous_stage {
            None if previous_dir.exists() => {
                return Err(SegmentationModelError::UnexpectedPreviousStage {
                    path: dir.to_path_buf(),
                })
            }
            None => None,
            Some(want) => {
                let want = format!("{want} of {}", plan.dataset_name);
                if !previous_dir.join(MANIFEST_FILE).is_file() {
                    return Err(SegmentationModelError::MissingPreviousStage {
                        path: dir.to_path_buf(),
                        want,
                    });
                }
                let previous = open_bundle(&previous_dir)?;
                let p = &previous.manifest.plan;
                let got = format!("{} of {}", p.configuration, p.dataset_name);
                if got != want {
                    return Err(SegmentationModelError::PreviousStageMismatch {
                        path: dir.to_path_buf(),
                        want,
                        got,
                    });
                }
                Some(previous)
            }
        };
        Ok(SegmentationModel { bundle, previous })
    }

    /// Segments `volume` (HU): the bundle alone, or the cascade (first stage, then the
    /// bundle with the first stage's labels; progress as stage 1, then stage 2).
    pub fn segment(
        &self,
        volume: &Volume<f32>,
        backend: &dyn Backend,
        options: SegmentOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Volume<u8>, SegmentError> {
        match &self.previous {
            None => segment_volume(volume, &self.bundle, backend, options, progress),
            Some(first) => segment_cascade(volume, first, &self.bundle, backend, options, progress)
                .map(|(_, last)| last),
        }
    }

    /// Parameters of every stage.
    pub fn parameters(&self) -> u64 {
        self.bundle.manifest.parameters
            + self.previous.as_ref().map_or(0, |p| p.manifest.parameters)
    }
}
