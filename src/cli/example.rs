//! `nephrod example`: a small generated four-phase CT study written as DICOM.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::dicom::phase::Phase;
use crate::dicom::writer::{uid_from_seed, write_series, FileOrder, SeriesSpec};
use crate::phantom::simple_abdomen;

pub fn run(out: &Path, slices: usize) -> anyhow::Result<ExitCode> {
    let study_uid = uid_from_seed("nephrod example study");
    let phases = [
        (
            Phase::NonContrast,
            "Abdomen NC 3mm",
            "100000",
            FileOrder::Ascending,
        ),
        (
            Phase::Arterial,
            "Abdomen ART 3mm",
            "100135",
            FileOrder::Descending,
        ),
        (
            Phase::Portal,
            "Abdomen PV 3mm",
            "100220",
            FileOrder::Shuffled(7),
        ),
        (
            Phase::Delayed,
            "Abdomen Excretory 3mm",
            "100600",
            FileOrder::Ascending,
        ),
    ];
    for (n, (phase, desc, time, order)) in phases.into_iter().enumerate() {
        let vol = simple_abdomen(phase, [160, 160, slices.max(1)], [2.0, 2.0, 3.0], 8.0)
            .context("generating the phantom")?;
        let spec = SeriesSpec {
            study_uid: study_uid.clone(),
            series_uid: uid_from_seed(&format!("nephrod example series {n}")),
            series_number: n as i32 + 1,
            description: desc.to_string(),
            contrast_agent: (phase != Phase::NonContrast).then(|| "Iohexol 350".to_string()),
            contrast_start_time: (phase != Phase::NonContrast).then(|| "100100".to_string()),
            acquisition_time: time.to_string(),
            acquisition_date: "20260101".to_string(),
            rescale_slope: 1.0,
            rescale_intercept: -1024.0,
            file_order: order,
            scramble_instance_numbers: true,
            first_instance: 0,
            patient: Default::default(),
            pixel_encoding: Default::default(),
            layout: Default::default(),
        };
        let dir = out.join(format!("series{}", n + 1));
        write_series(&dir, &vol, &spec).with_context(|| format!("writing {}", dir.display()))?;
    }
    println!("wrote a 4-phase example study to {}", out.display());
    Ok(ExitCode::SUCCESS)
}
