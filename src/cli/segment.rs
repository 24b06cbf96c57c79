//! `nephrod segment`: one CT image (NIfTI file or DICOM series) → a label map (NIfTI, u8) on
//! the image's own grid, with an nnU-Net model bundle (`nephrod models import-nnunet`).
//! Progress over tiles goes to stderr; the summary names the input by its UID hash or file
//! stem, never by patient attributes.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use super::segment_input;
use crate::engine::select_backend;
use crate::models::bundle::Bundle;
use crate::segment::instances::lesion_instances;
use crate::segment::pipeline::{segment_volume, Progress, SegmentOptions};
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
    let start = Instant::now();
    let mut last = 0usize;
    let mut labels = segment_volume(
        &input.volume,
        &bundle,
        backend.as_ref(),
        SegmentOptions {
            mirroring: !a.no_tta,
        },
        &mut |p: Progress| {
            let pct = p.done * 100 / p.total.max(1);
            if pct != last || p.done == p.total {
                last = pct;
                let width = 30;
                let filled = p.done * width / p.total.max(1);
                eprint!(
                    "\r[{}{}] {}/{} tiles",
                    "#".repeat(filled),
                    " ".repeat(width - filled),
                    p.done,
                    p.total
                );
                let _ = std::io::stderr().flush();
            }
        },
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
