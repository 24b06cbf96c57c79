//! One reference/moving pair: the coarse-to-fine Adam optimisation of the soft Dice loss and
//! the result record.
//!
//! Per level ([`LevelProblem`]): the reference soft masks live on the reference working grid
//! `W` (index → reference LPS `R`), the moving soft masks on the moving working grid (LPS →
//! index `P`); each iteration resamples the moving masks at `θ = (P·T·R)[0..3]` (trilinear,
//! zero padding, through the backend), computes the soft Dice loss and its gradient on the
//! host, gets `∂L/∂θ` from `Backend::resample_affine_grad` and chains it to `(A, t)`
//! ([`super::transform`]). Each level starts from the previous level's best parameters with a
//! fresh Adam state. Iteration counts count loss evaluations (one per Adam step).

use std::time::Instant;

use serde::Serialize;

use super::adam::Adam;
use super::dice_loss::{soft_dice, soft_dice_with_grad};
use super::grid::{gaussian_smooth, label_fractions, work_grid_around_kidney, WorkGrid};
use super::matrix::{inverse_affine, Mat4};
use super::transform::{theta, transform_gradient, AffineParams, Frame};
use super::{engine_step, LevelOptions, RegisterError, RegisterOptions, Structure};
use crate::engine::{Backend, Interp, Tensor};
use crate::eval::reg::{evaluate_pair, kidney_centre_lps, PairDice};
use crate::volume::Volume;

/// The optimisation problem of one pyramid level.
#[derive(Debug, Clone)]
pub struct LevelProblem {
    /// The level as run: `spacing_mm` raised to the reference's finest spacing if coarser.
    pub level: LevelOptions,
    pub frame: Frame,
    /// Structures, one tensor channel each, in this order.
    pub structures: Vec<Structure>,
    /// Reference working grid.
    pub work: WorkGrid,
    /// Moving working grid.
    pub moving_grid: WorkGrid,
    reference: Tensor,
    moving: Tensor,
    moving_from_lps: Mat4,
    work_to_lps: Mat4,
}

/// Loss value with the per-structure soft Dice.
#[derive(Debug, Clone, PartialEq)]
pub struct LossValue {
    pub loss: f64,
    pub dice: Vec<f64>,
}

impl LevelProblem {
    /// Builds the soft masks of both label maps on their working grids.
    pub fn new(
        reference: &Volume<u8>,
        moving: &Volume<u8>,
        frame: Frame,
        structures: &[Structure],
        level: LevelOptions,
        margin_mm: f64,
    ) -> Result<Self, RegisterError> {
        let no_kidney = |which: &str| RegisterError::NoKidney {
            which: which.to_string(),
        };
        // Never finer than the reference's finest native spacing: the soft masks hold no
        // more detail than that, and the cost grows with the cube of the resolution.
        let finest = reference
            .geometry()
            .spacing_mm
            .iter()
            .fold(f64::INFINITY, |a, b| a.min(*b));
        let level = LevelOptions {
            spacing_mm: level.spacing_mm.max(finest),
            ..level
        };
        let work = work_grid_around_kidney(reference, level.spacing_mm, margin_mm)
            .ok_or_else(|| no_kidney("reference"))?;
        let moving_grid = work_grid_around_kidney(moving, level.spacing_mm, margin_mm)
            .ok_or_else(|| no_kidney("moving"))?;
        let mut r = label_fractions(reference, &work, structures)?;
        let mut m = label_fractions(moving, &moving_grid, structures)?;
        gaussian_smooth(&mut r, level.smoothing_sigma_voxels);
        gaussian_smooth(&mut m, level.smoothing_sigma_voxels);
        let moving_from_lps =
            inverse_affine(&moving_grid.to_lps()).ok_or(RegisterError::Singular {
                what: "moving working grid",
            })?;
        Ok(Self {
            level,
            frame,
            structures: structures.to_vec(),
            work_to_lps: work.to_lps(),
            work,
            moving_grid,
            reference: r,
            moving: m,
            moving_from_lps,
        })
    }

    fn theta(&self, p: &AffineParams) -> [[f64; 4]; 3] {
        theta(
            &self.moving_from_lps,
            &self.frame.matrix(p),
            &self.work_to_lps,
        )
    }

    fn moved(&self, backend: &dyn Backend, th: &[[f64; 4]; 3]) -> Result<Tensor, RegisterError> {
        backend
            .resample_affine(&self.moving, th, self.work.dhw(), Interp::Trilinear)
            .map_err(engine_step("resampling the moving masks"))
    }

    /// The loss at `p`.
    pub fn loss(
        &self,
        backend: &dyn Backend,
        p: &AffineParams,
    ) -> Result<LossValue, RegisterError> {
        let moved = self.moved(backend, &self.theta(p))?;
        let (loss, dice) =
            soft_dice(&self.reference, &moved).map_err(engine_step("soft Dice loss"))?;
        Ok(LossValue { loss, dice })
    }

    /// The loss at `p` and its gradient with respect to `(A, t)`.
    pub fn loss_and_gradient(
        &self,
        backend: &dyn Backend,
        p: &AffineParams,
    ) -> Result<(LossValue, AffineParams), RegisterError> {
        let th = self.theta(p);
        let moved = self.moved(backend, &th)?;
        let d =
            soft_dice_with_grad(&self.reference, &moved).map_err(engine_step("soft Dice loss"))?;
        let g_theta = backend
            .resample_affine_grad(&self.moving, &th, &d.grad)
            .map_err(engine_step("resampling gradient"))?;
        let g_t = transform_gradient(&self.moving_from_lps, &g_theta, &self.work_to_lps);
        Ok((
            LossValue {
                loss: d.loss,
                dice: d.dice,
            },
            self.frame.params_gradient(&g_t),
        ))
    }
}

/// What one level did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelResult {
    /// Working spacing as run (the level's, or the reference's finest spacing if coarser).
    pub spacing_mm: f64,
    pub smoothing_sigma_voxels: f64,
    /// Working-grid dims (i, j, k).
    pub work_dims: [usize; 3],
    /// Loss evaluations (= Adam steps + 1 at most).
    pub iterations: usize,
    /// The patience rule stopped the level before the iteration cap.
    pub converged: bool,
    pub initial_loss: f64,
    pub best_loss: f64,
    /// 0-based iteration of the best loss.
    pub best_iteration: usize,
    /// Soft Dice per structure at the best iteration (order of `PairRegistration::structures`).
    pub best_soft_dice: Vec<f64>,
    /// Loss at every iteration.
    pub loss_trace: Vec<f64>,
    /// Wall time of the level (mask preparation and optimisation), s.
    pub seconds: f64,
}

/// Runs Adam on one level from `start`; returns the best parameters and the record.
pub fn optimise_level(
    backend: &dyn Backend,
    problem: &LevelProblem,
    start: &AffineParams,
    opts: &RegisterOptions,
    level_no: usize,
) -> Result<(AffineParams, LevelResult), RegisterError> {
    let mut x = start.to_flat();
    let mut adam = Adam::<12>::new(opts.adam);
    let mut best = (f64::INFINITY, x, Vec::new(), 0usize);
    let mut anchor = f64::INFINITY;
    let mut since = 0usize;
    let mut trace = Vec::new();
    let mut converged = false;
    for it in 0..opts.max_iterations {
        let (v, g) = problem.loss_and_gradient(backend, &AffineParams::from_flat(&x))?;
        let g = g.to_flat();
        if !v.loss.is_finite() || g.iter().any(|gv| !gv.is_finite()) {
            return Err(RegisterError::NonFinite {
                level: level_no,
                iteration: it,
            });
        }
        trace.push(v.loss);
        if v.loss < best.0 {
            best = (v.loss, x, v.dice, it);
        }
        if v.loss < anchor - opts.tolerance {
            anchor = v.loss;
            since = 0;
        } else {
            since += 1;
            if since >= opts.patience {
                converged = true;
                break;
            }
        }
        if it + 1 < opts.max_iterations {
            adam.step(&mut x, &g);
        }
    }
    let result = LevelResult {
        spacing_mm: problem.level.spacing_mm,
        smoothing_sigma_voxels: problem.level.smoothing_sigma_voxels,
        work_dims: problem.work.dims,
        iterations: trace.len(),
        converged,
        initial_loss: trace.first().copied().unwrap_or(f64::NAN),
        best_loss: best.0,
        best_iteration: best.3,
        best_soft_dice: best.2,
        loss_trace: trace,
        seconds: 0.0,
    };
    Ok((AffineParams::from_flat(&best.1), result))
}

/// The structures driving the loss: kidney always, tumour when both maps have label 2.
pub fn structures_of(reference: &Volume<u8>, moving: &Volume<u8>) -> Vec<Structure> {
    let has_tumour = |v: &Volume<u8>| {
        v.data()
            .iter()
            .any(|l| Structure::Tumor.labels().contains(l))
    };
    if has_tumour(reference) && has_tumour(moving) {
        vec![Structure::Kidney, Structure::Tumor]
    } else {
        vec![Structure::Kidney]
    }
}

/// The starting frame: both kidney centres of mass and the length scale.
pub fn initial_frame(
    reference: &Volume<u8>,
    moving: &Volume<u8>,
    length_scale_mm: f64,
) -> Result<Frame, RegisterError> {
    let no_kidney = |which: &str| RegisterError::NoKidney {
        which: which.to_string(),
    };
    Ok(Frame {
        reference_centre_mm: kidney_centre_lps(reference).ok_or_else(|| no_kidney("reference"))?,
        moving_centre_mm: kidney_centre_lps(moving).ok_or_else(|| no_kidney("moving"))?,
        length_scale_mm,
    })
}

/// The result of registering one moving phase to the reference (serialisable).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairRegistration {
    /// `T`: reference LPS mm → moving LPS mm, row-major 4×4.
    pub reference_to_moving_lps: Mat4,
    /// The parameters of `T` in `frame`.
    pub params: AffineParams,
    pub frame: Frame,
    /// The centre-of-mass baseline's translation applied to the moving phase (reference
    /// centre − moving centre, LPS mm), as `nephrod eval reg` reports it.
    pub centre_of_mass_shift_mm: Option<[f64; 3]>,
    pub structures: Vec<Structure>,
    /// Every level converged (stopped by the patience rule, not the cap).
    pub converged: bool,
    /// Iterations per level, coarse to fine.
    pub iterations: Vec<usize>,
    /// Loss of the finest level at its start and its best.
    pub initial_loss: f64,
    pub best_loss: f64,
    pub levels: Vec<LevelResult>,
    /// Label Dice on the reference grid (nearest-neighbour labels, `crate::eval::reg`).
    pub dice_identity: PairDice,
    pub dice_centre_of_mass: PairDice,
    pub dice_aligned: PairDice,
    pub backend: String,
    pub seconds: f64,
    pub options: RegisterOptions,
}

/// A registration with the moving labels resampled onto the reference grid.
#[derive(Debug, Clone)]
pub struct RegisteredPair {
    pub registration: PairRegistration,
    pub aligned_labels: Volume<u8>,
}

/// Registers `moving` to `reference` (label maps) and evaluates the alignment.
pub fn register_pair(
    backend: &dyn Backend,
    reference: &Volume<u8>,
    moving: &Volume<u8>,
    opts: &RegisterOptions,
) -> Result<RegisteredPair, RegisterError> {
    opts.validate()?;
    let started = Instant::now();
    let frame = initial_frame(reference, moving, opts.length_scale_mm)?;
    let structures = structures_of(reference, moving);
    let mut params = AffineParams::identity();
    let mut levels = Vec::new();
    for (n, level) in opts.levels.iter().enumerate() {
        let level_start = Instant::now();
        let problem = LevelProblem::new(
            reference,
            moving,
            frame,
            &structures,
            *level,
            opts.margin_mm,
        )?;
        let (best, mut result) = optimise_level(backend, &problem, &params, opts, n)?;
        result.seconds = level_start.elapsed().as_secs_f64();
        tracing::debug!(
            level = n,
            spacing_mm = level.spacing_mm,
            iterations = result.iterations,
            initial_loss = result.initial_loss,
            best_loss = result.best_loss,
            converged = result.converged,
            "registration level done"
        );
        params = best;
        levels.push(result);
    }
    let t = frame.matrix(&params);
    let aligned_labels =
        super::apply::resample_labels(moving, &t, reference.geometry(), reference.dims())?;
    let report = evaluate_pair("moving", reference, moving, Some(&aligned_labels))?;
    let last = levels.last();
    let registration = PairRegistration {
        reference_to_moving_lps: t,
        params,
        frame,
        centre_of_mass_shift_mm: report.centre_of_mass_shift_mm,
        structures,
        converged: levels.iter().all(|l| l.converged),
        iterations: levels.iter().map(|l| l.iterations).collect(),
        initial_loss: last.map_or(f64::NAN, |l| l.initial_loss),
        best_loss: last.map_or(f64::NAN, |l| l.best_loss),
        dice_identity: report.identity,
        dice_centre_of_mass: report.centre_of_mass,
        dice_aligned: report.aligned.unwrap_or(report.centre_of_mass),
        backend: backend.name().to_string(),
        seconds: started.elapsed().as_secs_f64(),
        options: opts.clone(),
        levels,
    };
    Ok(RegisteredPair {
        registration,
        aligned_labels,
    })
}
