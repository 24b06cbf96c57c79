//! `nephrod export-crops DATASET --out DIR`: the classifier's exact inputs for training.
//!
//! For every case of a labelled dataset ([`crate::classify::dataset`]): load the phases,
//! register them to the reference phase (as `nephrod classify` does), find the tumour lesions
//! of the reference labels, match them to the labelled lesions, and write every phase triple
//! of every matched lesion as `crops/<case>_lesion<id>_<p1>-<p2>-<p3>.npy` (float32,
//! 3 × rows × columns, normalised — byte for byte what the network receives), plus
//! `index.csv` (one row per file) and `export.json` (settings, counts, skipped cases and
//! lesions with reasons). Cases that fail are skipped with a reason; the export goes on.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use super::phases_input::{fresh_out_dir, load_registered};
use crate::classify::combine::{phase_triples, stack_image};
use crate::classify::crop::{check_views, crop_phase, tumour_lesions, PhaseView};
use crate::classify::dataset::{case_dirs, class_index, match_lesion, npy_f32, read_case};
use crate::classify::settings::{CropSettings, CLASSES};
use crate::engine::Backend;
use crate::register::RegisterOptions;

pub struct ExportArgs<'a> {
    pub dataset: &'a Path,
    pub out: &'a Path,
    pub crop: CropSettings,
    pub register: bool,
    pub png: bool,
}

#[derive(Debug, Serialize)]
struct Skipped {
    case: String,
    lesion: Option<usize>,
    reason: String,
}

#[derive(Debug, Serialize)]
struct ExportSummary {
    schema: &'static str,
    nephrod_version: &'static str,
    classes: [&'static str; 5],
    crop: CropSettings,
    registration: Option<RegisterOptions>,
    cases: usize,
    lesions_exported: usize,
    images: usize,
    per_class_lesions: [usize; 5],
    skipped: Vec<Skipped>,
}

pub fn run(args: &ExportArgs, backend: &dyn Backend) -> anyhow::Result<()> {
    args.crop.validate()?;
    let cases = case_dirs(args.dataset)?;
    if cases.is_empty() {
        anyhow::bail!(
            "{}: no case folders with a truth.json",
            args.dataset.display()
        );
    }
    fresh_out_dir(args.out)?;
    let crops_dir = args.out.join("crops");
    std::fs::create_dir_all(&crops_dir)?;
    let ropts = RegisterOptions::default();
    let mut index =
        String::from("file,case,lesion_id,class_index,class_name,phases,slices,mask_sources\n");
    let mut summary = ExportSummary {
        schema: "nephrod.export-crops/1",
        nephrod_version: env!("CARGO_PKG_VERSION"),
        classes: CLASSES,
        crop: args.crop.clone(),
        registration: args.register.then(|| ropts.clone()),
        cases: cases.len(),
        lesions_exported: 0,
        images: 0,
        per_class_lesions: [0; 5],
        skipped: Vec::new(),
    };
    let [nr, nc] = args.crop.size;
    for dir in &cases {
        let name = dir
            .file_name()
            .map_or("case".into(), |n| n.to_string_lossy().into_owned());
        let skip = |lesion, reason: String| Skipped {
            case: name.clone(),
            lesion,
            reason,
        };
        let case = match read_case(dir) {
            Ok(c) => c,
            Err(e) => {
                summary.skipped.push(skip(None, e.to_string()));
                continue;
            }
        };
        let study = match load_registered(&case.phases, backend, args.register, &ropts) {
            Ok(s) => s,
            Err(e) => {
                summary.skipped.push(skip(None, format!("{e:#}")));
                continue;
            }
        };
        for f in &study.failures {
            summary.skipped.push(skip(
                None,
                format!("phase {} not registered: {}", f.phase.as_str(), f.message),
            ));
        }
        let views = PhaseView::of_study(&study);
        let Some(reference) = study.reference() else {
            summary
                .skipped
                .push(skip(None, "no reference phase".to_string()));
            continue;
        };
        if let Err(e) = check_views(&views, &reference.labels) {
            summary.skipped.push(skip(None, e.to_string()));
            continue;
        }
        let mut found: Vec<_> = views.iter().map(|v| v.phase).collect();
        found.sort();
        let triples = match phase_triples(&found) {
            Ok(t) => t,
            Err(nc) => {
                summary.skipped.push(skip(
                    None,
                    format!(
                        "not classifiable: {} (found {:?})",
                        nc.reason, nc.phases_found
                    ),
                ));
                continue;
            }
        };
        let mut ordered = views.clone();
        ordered.sort_by_key(|v| v.phase);
        for lesion in tumour_lesions(&reference.labels) {
            let Some(truth) = match_lesion(&lesion, &reference.labels, &case.lesions) else {
                summary
                    .skipped
                    .push(skip(Some(lesion.id), "matches no labelled lesion".into()));
                continue;
            };
            let Some(class) = class_index(&truth.class) else {
                summary.skipped.push(skip(
                    Some(lesion.id),
                    format!("labelled class {:?} is not classified", truth.class),
                ));
                continue;
            };
            let crops = ordered
                .iter()
                .map(|v| crop_phase(v, &lesion, &args.crop))
                .collect::<Result<Vec<_>, _>>()?;
            for t in &triples {
                let Some(img) = stack_image(t, &crops, &args.crop) else {
                    continue;
                };
                let tag: Vec<&str> = t.iter().map(|p| p.as_str()).collect();
                let file = format!("{name}_lesion{}_{}.npy", lesion.id, tag.join("-"));
                std::fs::write(crops_dir.join(&file), npy_f32(&[3, nr, nc], &img))
                    .with_context(|| format!("writing {file}"))?;
                let used: Vec<_> = t
                    .iter()
                    .filter_map(|p| crops.iter().find(|c| c.phase == *p))
                    .collect();
                let slices: Vec<String> = used.iter().map(|c| c.slice_index.to_string()).collect();
                let sources: Vec<String> = used
                    .iter()
                    .map(|c| format!("{:?}", c.mask_source).to_lowercase())
                    .collect();
                let _ = writeln!(
                    index,
                    "crops/{file},{name},{},{class},{},{},{},{}",
                    lesion.id,
                    CLASSES[class],
                    tag.join("-"),
                    slices.join("-"),
                    sources.join("-")
                );
                if args.png {
                    for c in &used {
                        let heat = vec![0.0f32; c.hu.len()];
                        if let Some(png) =
                            crate::classify::overlay::overlay_png(&c.hu, &heat, &args.crop)
                        {
                            let pf = format!("{name}_lesion{}_{}.png", lesion.id, c.phase.as_str());
                            std::fs::write(crops_dir.join(pf), png)?;
                        }
                    }
                }
                summary.images += 1;
            }
            summary.lesions_exported += 1;
            summary.per_class_lesions[class] += 1;
        }
    }
    std::fs::write(args.out.join("index.csv"), index)?;
    let mut f = std::fs::File::create(args.out.join("export.json"))?;
    f.write_all(serde_json::to_string_pretty(&summary)?.as_bytes())?;
    println!(
        "exported {} image(s) of {} lesion(s) from {} case(s) to {} ({} skipped item(s), see export.json)",
        summary.images,
        summary.lesions_exported,
        summary.cases,
        args.out.display(),
        summary.skipped.len()
    );
    Ok(())
}
