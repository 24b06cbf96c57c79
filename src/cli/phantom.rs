//! `nephrod phantom`: generate synthetic multi-phase renal CT studies with ground truth.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::phantom::acquisition::{AcquisitionOptions, StudySize};
use crate::phantom::anatomy::LesionMix;
use crate::phantom::output::{self, DicomOptions, OutputFormat};
use crate::phantom::{generate_case, CaseOptions};

/// Parsed options of `nephrod phantom`.
#[derive(Debug, Clone)]
pub struct PhantomArgs {
    pub cases: usize,
    pub seed: u64,
    pub format: OutputFormat,
    pub size: StudySize,
    pub orientation_variants: bool,
    pub all_phases: bool,
    pub lesion_mix: LesionMix,
    pub dicom: DicomOptions,
}

pub fn run(out: &Path, args: &PhantomArgs) -> anyhow::Result<ExitCode> {
    let opts = CaseOptions {
        acquisition: AcquisitionOptions {
            size: args.size,
            orientation_variants: args.orientation_variants,
            all_phases: args.all_phases,
        },
        anatomy: args.lesion_mix.anatomy_options(),
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut training_cases = 0;
    for index in 0..args.cases {
        let t0 = Instant::now();
        let case = generate_case(args.seed, index, &opts)
            .with_context(|| format!("generating case {index}"))?;
        let generated_s = t0.elapsed().as_secs_f64();
        let truth = output::write_case(&case, out, args.format, &args.dicom)
            .with_context(|| format!("writing case {index}"))?;
        training_cases += truth.phases.len();
        let phases: Vec<&str> = truth.phases.iter().map(|p| p.phase.as_str()).collect();
        let lesions: Vec<String> = truth
            .lesions
            .iter()
            .map(|l| {
                format!(
                    "{:?} {:?} {:.0} mm",
                    l.class, l.side, l.max_axial_diameter_mm
                )
                .to_lowercase()
            })
            .collect();
        println!(
            "{}: phases [{}], {} kidney(s), lesions [{}] (generated in {:.2} s, total {:.2} s)",
            truth.case_id,
            phases.join(", "),
            truth.kidneys.len(),
            lesions.join("; "),
            generated_s,
            t0.elapsed().as_secs_f64()
        );
    }
    if args.format == OutputFormat::Nnunet {
        let p = output::write_nnunet_dataset_json(out, training_cases, args.seed)?;
        println!("wrote {}", p.display());
    }
    println!("wrote {} case(s) to {}", args.cases, out.display());
    Ok(ExitCode::SUCCESS)
}
