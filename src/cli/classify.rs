//! `nephrod classify`: register a study's phases, classify every tumour lesion with a
//! classifier bundle, write `classification.json` (schema `nephrod.classify/1`) and, with
//! `--grad-cam`, one Grad-CAM overlay PNG per lesion, input image and phase.

use std::path::Path;

use anyhow::Context;
use serde_json::json;

use super::phases_input::{fresh_out_dir, load_registered};
use crate::classify::bundle::ClassifierBundle;
use crate::classify::crop::PhaseView;
use crate::classify::dataset::CasePhase;
use crate::classify::predict::{classify_study, Outcome, PredictOptions};
use crate::classify::settings::CLASSES;
use crate::engine::Backend;
use crate::register::RegisterOptions;

pub struct ClassifyArgs<'a> {
    pub model: &'a Path,
    pub phases: Vec<CasePhase>,
    pub out: &'a Path,
    pub register: bool,
    pub grad_cam: bool,
}

pub fn run(args: &ClassifyArgs, backend: &dyn Backend) -> anyhow::Result<()> {
    let bundle = ClassifierBundle::open(args.model)
        .with_context(|| format!("opening classifier bundle {}", args.model.display()))?;
    let ropts = RegisterOptions::default();
    let study = load_registered(&args.phases, backend, args.register, &ropts)?;
    fresh_out_dir(args.out)?;
    let Some(reference) = study.reference() else {
        anyhow::bail!("the reference phase has no volume");
    };
    let views = PhaseView::of_study(&study);
    let lesions = classify_study(
        &bundle,
        &reference.labels,
        &views,
        PredictOptions {
            grad_cam: args.grad_cam,
        },
    )?;
    let mut lesion_docs = Vec::new();
    for d in &lesions {
        let mut doc = serde_json::to_value(d)?;
        if let Outcome::Classified(p) = &d.outcome {
            doc["probabilities_by_class"] = json!(CLASSES
                .iter()
                .zip(&p.probabilities)
                .map(|(c, v)| (c.to_string(), json!(v)))
                .collect::<serde_json::Map<_, _>>());
        }
        let mut files = Vec::new();
        if !d.grad_cam.is_empty() {
            let dir = args.out.join("grad_cam");
            std::fs::create_dir_all(&dir)?;
            for g in &d.grad_cam {
                let tag: Vec<&str> = g.triple.iter().map(|p| p.as_str()).collect();
                let f = format!(
                    "lesion{}_{}_{}.png",
                    d.lesion.id,
                    tag.join("-"),
                    g.phase.as_str()
                );
                std::fs::write(dir.join(&f), &g.png)?;
                files.push(format!("grad_cam/{f}"));
            }
        }
        doc["grad_cam_files"] = json!(files);
        lesion_docs.push(doc);
    }
    let doc = json!({
        "schema": "nephrod.classify/1",
        "model": {
            "dir": args.model.display().to_string(),
            "architecture": bundle.manifest.architecture,
            "weights_sha256": bundle.manifest.weights.sha256,
            "classes": CLASSES,
        },
        "registration": study.report(),
        "lesions": lesion_docs,
    });
    std::fs::write(
        args.out.join("classification.json"),
        serde_json::to_string_pretty(&doc)?,
    )?;
    for d in &lesions {
        match &d.outcome {
            Outcome::Classified(p) => println!(
                "lesion {}: {} ({:.2}); benign {:.2}, malignant {:.2}",
                d.lesion.id,
                p.top_class_name,
                p.probabilities[p.top_class],
                p.benign_probability,
                p.malignant_probability
            ),
            Outcome::NotClassified(n) => println!(
                "lesion {}: not classified: {} (phases found: {:?})",
                d.lesion.id, n.reason, n.phases_found
            ),
        }
    }
    println!(
        "{} lesion(s); wrote {}",
        lesions.len(),
        args.out.join("classification.json").display()
    );
    Ok(())
}
