//! `nephrod register`: one moving phase's label map (and optionally its CT) registered to a
//! reference phase's label map (src/register); writes `transform.json`
//! (schema `nephrod.register/1`), `aligned_labels.nii.gz` and, with `--moving-image`,
//! `aligned_image.nii.gz`, both on the reference grid (what `nephrod eval reg --aligned` reads).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::engine::select_backend;
use crate::register::{register_pair, resample_image, RegisterOptions};
use crate::volume::nifti;

/// Arguments of `nephrod register`.
pub struct RegisterArgs<'a> {
    pub reference_labels: &'a Path,
    pub moving_labels: &'a Path,
    pub moving_image: Option<&'a Path>,
    pub out: &'a Path,
    pub gpu: bool,
    pub json: bool,
}

pub fn run(a: &RegisterArgs) -> anyhow::Result<ExitCode> {
    let read = |p: &Path| nifti::read_labels(p).with_context(|| format!("reading {}", p.display()));
    let reference = read(a.reference_labels)?;
    let moving = read(a.moving_labels)?;
    let image = a
        .moving_image
        .map(|p| {
            nifti::read(p)
                .map(|i| i.volume)
                .with_context(|| format!("reading {}", p.display()))
        })
        .transpose()?;
    let backend = select_backend(a.gpu);
    let opts = RegisterOptions::default();
    let pair = register_pair(backend.as_ref(), &reference, &moving, &opts)
        .with_context(|| format!("registering {}", a.moving_labels.display()))?;
    std::fs::create_dir_all(a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let labels_path = a.out.join("aligned_labels.nii.gz");
    nifti::write(&labels_path, &pair.aligned_labels)
        .with_context(|| format!("writing {}", labels_path.display()))?;
    let reg = &pair.registration;
    let mut image_path = None;
    if let Some(img) = &image {
        let aligned = resample_image(
            backend.as_ref(),
            img,
            &reg.reference_to_moving_lps,
            reference.geometry(),
            reference.dims(),
        )?;
        let p = a.out.join("aligned_image.nii.gz");
        nifti::write(&p, &aligned).with_context(|| format!("writing {}", p.display()))?;
        image_path = Some(p);
    }
    let doc = serde_json::json!({
        "schema": "nephrod.register/1",
        "reference_labels": a.reference_labels,
        "moving_labels": a.moving_labels,
        "moving_image": a.moving_image,
        "aligned_labels": labels_path,
        "aligned_image": image_path,
        "registration": reg,
    });
    let text = serde_json::to_string_pretty(&doc)?;
    let tpath = a.out.join("transform.json");
    std::fs::write(&tpath, &text).with_context(|| format!("writing {}", tpath.display()))?;
    if a.json {
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let f = |v: Option<f64>| v.map_or("—".to_string(), |x| format!("{x:.4}"));
    println!(
        "registered on {} in {:.1} s: iterations {:?}, converged {}, loss {:.5}",
        reg.backend, reg.seconds, reg.iterations, reg.converged, reg.best_loss
    );
    println!("{:<16} {:>8} {:>8}", "Dice", "kidney", "tumour");
    for (name, d) in [
        ("no alignment", &reg.dice_identity),
        ("centre of mass", &reg.dice_centre_of_mass),
        ("registration", &reg.dice_aligned),
    ] {
        println!("{name:<16} {:>8} {:>8}", f(d.kidney), f(d.tumor));
    }
    println!("wrote {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
