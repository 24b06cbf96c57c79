//! `nephrod bench phantom`: seconds to generate (render, no writing) synthetic studies, on one
//! thread and on all threads. No reference phantom generator exists to run beside it, so the
//! ratio reported is against the budget (a small 4-phase study in 2 s on one core).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::phantom::acquisition::{AcquisitionOptions, StudySize};
use crate::phantom::{generate_case, CaseOptions};

/// Budget for a small 4-phase study on one core, seconds.
const SMALL_BUDGET_S: f64 = 2.0;

fn time_cases(opts: &CaseOptions, cases: usize, threads: usize) -> anyhow::Result<(f64, usize)> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("building a thread pool")?;
    pool.install(|| {
        let t0 = Instant::now();
        let mut voxels = 0;
        for i in 0..cases {
            let case = generate_case(7, i, opts).context("generating")?;
            voxels += case.phases.iter().map(|p| p.hu.len()).sum::<usize>();
        }
        Ok((
            t0.elapsed().as_secs_f64() / cases as f64,
            voxels / cases.max(1),
        ))
    })
}

pub fn run(cases: usize, full: bool) -> anyhow::Result<ExitCode> {
    let cases = cases.max(1);
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut sizes = vec![StudySize::Small];
    if full {
        sizes.push(StudySize::Full);
    }
    for size in sizes {
        let opts = CaseOptions {
            acquisition: AcquisitionOptions {
                size,
                orientation_variants: false,
                all_phases: true,
            },
            ..CaseOptions::default()
        };
        let (one, voxels) = time_cases(&opts, cases, 1)?;
        let (many, _) = time_cases(&opts, cases, all)?;
        println!(
            "phantom {size:?} 4-phase study ({:.1} M voxels): {one:.3} s on 1 thread, \
             {many:.3} s on {all} threads",
            voxels as f64 / 1e6
        );
        if size == StudySize::Small {
            println!(
                "  budget {SMALL_BUDGET_S} s on one core: {:.2}× of budget used",
                one / SMALL_BUDGET_S
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
