//! `nephrod segment`: one CT image (NIfTI file or DICOM series) → a label map (NIfTI, u8) on
//! the image's own grid, with an nnU-Net model bundle (`nephrod models import-nnunet`).
//! Progress over tiles goes to stderr; the summary names the input by its UID hash or file
//! stem, never by patient attributes.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use super::segment_input;
use crate::engine::select_backend;
use crate::models::bundle::Bundle;
use crate::segment::instances::lesion_instances;
use crate::segment::model::PREVIOUS_STAGE_DIR;
use crate::segment::pipeline::{cascade_first_stage, segment_stage, Progress, SegmentOptions};
use crate::segment::postprocess::postprocess_kits;
use crate::volume::nifti;

/// Which engine backend `--device` asks for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda,
}

pub struct SegmentArgs<'a> {
    pub input: &'a Path,
    pub model: &'a Path,
    pub out: &'a Path,
    pub no_tta: bool,
    pub device: Device,
    pub series: Option<&'a str>,
    pub phase: Option<&'a str>,
    pub kits_postprocess: bool,
    pub previous_stage: Option<&'a Path>,
    pub previous_seg: Option<&'a Path>,
    pub nnunet_postprocessing: bool,
    /// Folder for one float32 NIfTI of class probabilities per output channel.
    pub save_probabilities: Option<&'a Path>,
}

/// Writes `DIR/probabilities_<channel>.nii.gz` per output channel (label or region names in
/// the model's channel order), float32 on the image's grid.
fn write_probabilities(
    dir: &Path,
    volumes: &[crate::volume::Volume<f32>],
    outputs: &crate::segment::plan::OutputHeads,
) -> anyhow::Result<()> {
    use crate::segment::plan::OutputHeads;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let names = match outputs {
        OutputHeads::Labels { names } | OutputHeads::Regions { names, .. } => names,
    };
    for (c, v) in volumes.iter().enumerate() {
        let name: String = names
            .get(c)
            .map_or_else(|| format!("channel{c}"), |n| n.clone())
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || ch == '-' {
                    ch
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("probabilities_{c}_{name}.nii.gz"));
        nifti::write(&path, v).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "wrote {} probability map(s) (before post-processing) to {}",
        volumes.len(),
        dir.display()
    );
    Ok(())
}

pub fn run(a: &SegmentArgs) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::open(a.model)
        .with_context(|| format!("opening model bundle {}", a.model.display()))?;
    let input = segment_input::load(a.input, a.series, a.phase)?;
    let backend = select_backend(a.device == Device::Cuda);
    let dims = input.volume.dims();
    eprintln!(
        "segmenting {} ({}×{}×{} voxels) with {} ({} fold(s), TTA {}) on {}",
        input.name,
        dims[0],
        dims[1],
        dims[2],
        bundle.manifest.plan.dataset_name,
        bundle.weights.len(),
        if a.no_tta { "off" } else { "on" },
        backend.name()
    );
    // A cascade packaged as one model carries its first stage in previous_stage/.
    let packaged = a.model.join(PREVIOUS_STAGE_DIR);
    let previous_stage = match a.previous_stage {
        None if a.previous_seg.is_none() && packaged.is_dir() => Some(packaged.as_path()),
        other => other,
    };
    let previous_bundle = match previous_stage {
        Some(p) => Some(
            Bundle::open(p)
                .with_context(|| format!("opening previous-stage bundle {}", p.display()))?,
        ),
        None => None,
    };
    let previous_seg = match a.previous_seg {
        Some(p) => Some(
            nifti::read_labels(p)
                .with_context(|| format!("reading previous-stage label map {}", p.display()))?,
        ),
        None => None,
    };
    let start = Instant::now();
    let mut last = (0u8, usize::MAX);
    let mut bar = |p: Progress| {
        let pct = p.done * 100 / p.total.max(1);
        if (p.stage, pct) != last || p.done == p.total {
            if p.stage != last.0 && last.1 != usize::MAX {
                eprintln!();
            }
            last = (p.stage, pct);
            let width = 30;
            let filled = p.done * width / p.total.max(1);
            let stage = match p.stage {
                0 => String::new(),
                s => format!("stage {s}/2 "),
            };
            eprint!(
                "\r{stage}[{}{}] {}/{} tiles",
                "#".repeat(filled),
                " ".repeat(width - filled),
                p.done,
                p.total
            );
            let _ = std::io::stderr().flush();
        }
    };
    let options = SegmentOptions {
        mirroring: !a.no_tta,
        nnunet_postprocessing: a.nnunet_postprocessing,
    };
    let rules = &bundle.manifest.plan.postprocessing;
    if a.nnunet_postprocessing && !rules.is_empty() {
        let sets: Vec<String> = rules.iter().map(|r| format!("{:?}", r.labels)).collect();
        eprintln!(
            "nnU-Net post-processing: keep the largest component of {}",
            sets.join(", then ")
        );
    }
    // The previous stage's labels: given, or run now (stage 1 of the cascade).
    let previous = match (&previous_bundle, previous_seg) {
        (Some(low), _) => Some(cascade_first_stage(
            &input.volume,
            low,
            &bundle,
            backend.as_ref(),
            options,
            &mut bar,
        )?),
        (None, seg) => seg,
    };
    let stage = u8::from(previous_bundle.is_some()) * 2;
    let mut last_stage = |p: Progress| bar(Progress { stage, ..p });
    let (mut labels, probabilities) = segment_stage(
        Cow::Owned(input.volume),
        previous.as_ref(),
        &bundle,
        backend.as_ref(),
        options,
        a.save_probabilities.is_some(),
        &mut last_stage,
    )?;
    eprintln!();
    if a.kits_postprocess {
        let dims = labels.dims();
        // Volume memory is [k][j][i]: the rules only use neighbourhoods.
        let r = postprocess_kits(labels.data_mut(), [dims[2], dims[1], dims[0]]);
        eprintln!(
            "post-processing (seed 004): {} tumour/cyst component(s) without kidney contact removed ({} voxels), {} kidney fragment(s) relabelled ({} voxels)",
            r.masses_removed, r.mass_voxels_removed, r.kidney_fragments_relabelled, r.kidney_voxels_relabelled
        );
        for l in lesion_instances(&labels) {
            eprintln!(
                "lesion {}: {:?}, {:?} side, {:?} pole, {:.2} mL, max axial diameter {:.1} mm, centre LPS ({:.1}, {:.1}, {:.1}) mm",
                l.id,
                l.kind,
                l.side,
                l.pole,
                l.volume_ml,
                l.max_axial_diameter_mm,
                l.centre_lps_mm[0],
                l.centre_lps_mm[1],
                l.centre_lps_mm[2]
            );
        }
    }
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    nifti::write(a.out, &labels).with_context(|| format!("writing {}", a.out.display()))?;
    if let (Some(dir), Some(volumes)) = (a.save_probabilities, &probabilities) {
        write_probabilities(dir, volumes, &bundle.manifest.plan.outputs)?;
    }
    let mut counts = [0usize; 256];
    for v in labels.data() {
        counts[*v as usize] += 1;
    }
    let voxel_ml = labels.geometry().spacing_mm.iter().product::<f64>() / 1000.0;
    let present: Vec<String> = counts
        .iter()
        .enumerate()
        .filter(|(l, c)| *l > 0 && **c > 0)
        .map(|(l, c)| format!("label {l}: {:.1} mL", *c as f64 * voxel_ml))
        .collect();
    eprintln!(
        "wrote {} in {:.1} s; {}",
        a.out.display(),
        start.elapsed().as_secs_f64(),
        if present.is_empty() {
            "no foreground".to_string()
        } else {
            present.join(", ")
        }
    );
    Ok(ExitCode::SUCCESS)
}
