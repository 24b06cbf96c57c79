//! `nephrod models`: import trained nnU-Net v2 models into nephrod bundles and verify bundles.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::models::bundle::{write_bundle, Bundle, BundleManifest};
use crate::models::nnunet::{prepare_import, ImportOptions, PostprocessingSource};
use crate::segment::plan::{NetworkClass, OutputHeads};

/// Arguments of `models import-nnunet`.
pub struct ImportArgs<'a> {
    pub model_dir: &'a Path,
    pub configuration: &'a str,
    pub folds: Option<Vec<String>>,
    pub checkpoint: &'a str,
    pub out: &'a Path,
    pub force: bool,
    pub allow_custom_trainer: bool,
    pub postprocessing: PostprocessingSource,
}

pub fn run_import(a: &ImportArgs<'_>) -> anyhow::Result<ExitCode> {
    let opts = ImportOptions {
        configuration: a.configuration.to_string(),
        folds: a.folds.clone(),
        checkpoint_name: a.checkpoint.to_string(),
        allow_custom_trainer: a.allow_custom_trainer,
        postprocessing: a.postprocessing.clone(),
    };
    let prep = prepare_import(a.model_dir, &opts)
        .with_context(|| format!("importing {}", a.model_dir.display()))?;
    let manifest = write_bundle(&prep, a.out, a.force, |k, n| {
        eprintln!("fold {} converted ({}/{n})", prep.checkpoints[k].0, k + 1);
    })
    .with_context(|| format!("writing the bundle {}", a.out.display()))?;
    println!("wrote {}", a.out.display());
    print_summary(&manifest);
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `nephrod models import-classifier`.
pub struct ImportClassifierArgs<'a> {
    pub weights: &'a Path,
    pub arch: &'a str,
    pub input_conv: bool,
    pub crop_settings: Option<&'a Path>,
    pub training: Option<&'a Path>,
    pub out: &'a Path,
}

fn read_json(p: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

pub fn run_import_classifier(a: &ImportClassifierArgs) -> anyhow::Result<ExitCode> {
    use crate::classify::bundle::{import_weights, ImportRequest};
    use crate::classify::resnet::{ResNetConfig, ResNetDepth};
    let depth: ResNetDepth = serde_json::from_value(serde_json::Value::String(a.arch.into()))
        .map_err(|_| {
            anyhow::anyhow!(
                "--arch {:?}: expected resnet18, resnet34, resnet50 or resnet101",
                a.arch
            )
        })?;
    let crop = match a.crop_settings {
        Some(p) => serde_json::from_value(read_json(p)?)
            .with_context(|| format!("{}: not crop settings", p.display()))?,
        None => crate::classify::settings::CropSettings::default(),
    };
    let training = a.training.map(read_json).transpose()?;
    let m = import_weights(&ImportRequest {
        weights: a.weights,
        architecture: ResNetConfig {
            depth,
            num_classes: crate::classify::settings::CLASSES.len(),
            input_conv: a.input_conv,
        },
        crop,
        training,
        out: a.out,
    })
    .with_context(|| format!("importing {}", a.weights.display()))?;
    println!(
        "{}: {:?} classifier, {} parameters, weights SHA-256 {}",
        a.out.display(),
        m.architecture.depth,
        m.parameters,
        m.weights.sha256
    );
    Ok(ExitCode::SUCCESS)
}

fn is_classifier_bundle(dir: &Path) -> bool {
    read_json(&dir.join(crate::classify::bundle::MANIFEST_FILE))
        .ok()
        .and_then(|v| {
            v["schema"]
                .as_str()
                .map(|s| s == crate::classify::bundle::SCHEMA)
        })
        .unwrap_or(false)
}

pub fn run_verify(dir: &Path) -> anyhow::Result<ExitCode> {
    if is_classifier_bundle(dir) {
        let b = crate::classify::bundle::ClassifierBundle::open(dir)
            .with_context(|| format!("verifying {}", dir.display()))?;
        println!(
            "{}: OK (classifier {:?}, {} parameters; SHA-256, names, shapes and dtypes match the manifest)",
            dir.display(),
            b.manifest.architecture.depth,
            b.manifest.parameters
        );
        return Ok(ExitCode::SUCCESS);
    }
    let b = Bundle::open(dir).with_context(|| format!("verifying {}", dir.display()))?;
    println!(
        "{}: OK ({} weights file(s), SHA-256, names, shapes and dtypes match the manifest)",
        dir.display(),
        b.weights.len()
    );
    print_summary(&b.manifest);
    Ok(ExitCode::SUCCESS)
}

fn print_summary(m: &BundleManifest) {
    let p = &m.plan;
    let a = &p.architecture;
    let class = match a.class {
        NetworkClass::PlainConvUNet => "PlainConvUNet",
        NetworkClass::ResidualEncoderUNet => "ResidualEncoderUNet",
    };
    println!(
        "model        {} {} (trainer {})",
        p.dataset_name, p.configuration, m.source.trainer_name
    );
    println!(
        "architecture {class}, {} stages, features {:?}, {} -> {} channels, {} parameters",
        a.features_per_stage.len(),
        a.features_per_stage,
        a.input_channels,
        a.output_channels,
        m.parameters
    );
    println!("folds        {}", p.folds.join(", "));
    match &p.outputs {
        OutputHeads::Labels { names } => println!("labels       {}", names.join(", ")),
        OutputHeads::Regions {
            names, class_order, ..
        } => println!(
            "regions      {} (class order {:?})",
            names.join(", "),
            class_order
        ),
    }
    println!(
        "patch        {:?}, spacing {:?} mm, mirroring axes {:?}",
        p.sliding_window.patch_size, p.preprocessing.spacing_mm, p.sliding_window.mirror_axes
    );
    if let Some(prev) = &p.previous_stage {
        println!("cascade      needs the {prev} segmentation as input");
    }
    if !p.postprocessing.is_empty() {
        let sets: Vec<String> = p
            .postprocessing
            .iter()
            .map(|r| format!("{:?}", r.labels))
            .collect();
        println!(
            "postprocess  keep the largest component of {} (nnU-Net postprocessing.json)",
            sets.join(", then ")
        );
    }
}
