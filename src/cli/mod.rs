//! Command-line interface: subcommand definitions and dispatch. Each subcommand lives in its
//! own file and talks to the library through typed structs; errors are `anyhow` here only.

mod analyze;
mod bench;
mod bench_classifier;
mod bench_ops;
mod bench_phantom;
mod classify;
mod convert;
mod demo;
mod demo_models;
mod eval;
mod eval_plots;
mod example;
mod export_crops;
mod inspect;
mod model_store;
mod models;
mod phantom;
mod phases_input;
mod register;
mod segment;
mod segment_input;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::models::nnunet::PostprocessingSource;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "nephrod",
    version,
    about = "Offline kidney-cancer CT appliance"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug). Logs go to stderr and never contain patient data.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the studies and series of a DICOM folder: phase, geometry, warnings, skipped files.
    Inspect {
        /// Folder scanned recursively.
        dir: PathBuf,
        /// Machine-readable JSON on stdout (schema in README).
        #[arg(long)]
        json: bool,
    },
    /// Write one NIfTI (.nii.gz, HU as float32) per assembled series.
    Convert {
        dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Benchmarks, side by side with the reference implementation.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// The main job on the embedded default data: generate a synthetic 4-phase study into a
    /// spool folder, run the pipeline as far as it exists, print where the result is.
    Demo {
        /// Output folder (default: a new folder under the system temporary directory).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Folder holding the demo bundles kidney-seg-demo/ and renal-mass-classifier-demo/
        /// (default: $NEPHROD_MODELS, else the models/ folder of the source tree).
        #[arg(long)]
        models: Option<PathBuf>,
        /// Engine device for the models.
        #[arg(long, value_enum, default_value_t = segment::Device::Cpu)]
        device: segment::Device,
        /// Segment without mirroring test-time augmentation (8x faster on a CPU, slightly
        /// less accurate; nnU-Net's default, and the demo's, is with it).
        #[arg(long)]
        no_tta: bool,
    },
    /// Analyse one DICOM study folder end to end: segmentation of every phase, registration,
    /// measurements, classification of every tumour; report.json, report.html, label maps.
    Analyze {
        /// Folder holding one study's DICOM files (searched recursively).
        study: PathBuf,
        /// Report folder to create (written atomically; must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Folder holding kidney-seg-demo/ and renal-mass-classifier-demo/
        /// (default: $NEPHROD_MODELS, else the models/ folder of the source tree).
        #[arg(long)]
        models: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = segment::Device::Cpu)]
        device: segment::Device,
        /// Segment without mirroring test-time augmentation (8x faster on a CPU).
        #[arg(long)]
        no_tta: bool,
        /// Skip the KiTS post-processing (masses off the kidney, kidney fragments).
        #[arg(long)]
        no_kits_postprocess: bool,
        /// Skip the Grad-CAM overlays.
        #[arg(long)]
        no_grad_cam: bool,
        /// Replace a non-empty --out folder.
        #[arg(long)]
        force: bool,
    },
    /// The appliance daemon: watch the drop folder, analyse each study once, publish reports
    /// (see systemd/nephrod.toml for the configuration).
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Check the configuration, spool folders, model store, trusted keys and active
        /// models as the daemon would before serving, print what would serve, and exit
        /// (safe beside a running daemon).
        #[arg(long)]
        check: bool,
    },
    /// Generate synthetic multi-phase renal CT studies with ground truth (truth.json).
    Phantom {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        cases: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = crate::phantom::output::OutputFormat::Dicom)]
        format: crate::phantom::output::OutputFormat,
        #[arg(long, value_enum, default_value_t = crate::phantom::acquisition::StudySize::Small)]
        size: crate::phantom::acquisition::StudySize,
        /// Also draw feet-first, prone and slightly oblique image orientations.
        #[arg(long)]
        orientation_variants: bool,
        /// Always acquire all four phases (default: 2–4 drawn per case).
        #[arg(long)]
        all_phases: bool,
        /// Lesion counts and subtypes: clinic-like, or balanced subtypes for classifier training.
        #[arg(long, value_enum, default_value_t = crate::phantom::anatomy::LesionMix::Clinic)]
        lesion_mix: crate::phantom::anatomy::LesionMix,
        /// Write some series' files in shuffled order.
        #[arg(long)]
        shuffle_files: bool,
        /// DICOM pixel-data compression.
        #[arg(long, value_enum, default_value_t = crate::phantom::output::Compression::None)]
        compression: crate::phantom::output::Compression,
        /// DICOM single-frame files or Enhanced CT multi-frame.
        #[arg(long, value_enum, default_value_t = crate::phantom::output::Frames::Single)]
        frames: crate::phantom::output::Frames,
    },
    /// Classify every tumour lesion of a multi-phase study into ccRCC, pRCC, chRCC, oncocytoma
    /// and AML (seed 001): registers the phases to the reference phase, crops each lesion's
    /// largest axial slice per phase, runs a classifier bundle; writes classification.json.
    Classify {
        /// Classifier bundle folder (`nephrod models import-classifier`).
        #[arg(long)]
        model: PathBuf,
        /// A case folder with a truth.json naming each phase's image and labels (the layout
        /// of `nephrod phantom --format nifti`; lesion labels in it are ignored).
        #[arg(long, conflicts_with = "phase", required_unless_present = "phase")]
        case: Option<PathBuf>,
        /// PHASE=IMAGE,LABELS (repeat): a phase's CT (.nii.gz or DICOM folder) and label map.
        #[arg(long)]
        phase: Vec<String>,
        /// Output folder (created; must be empty).
        #[arg(long)]
        out: PathBuf,
        /// The phases are already on one grid: skip registration.
        #[arg(long)]
        no_register: bool,
        /// Also write Grad-CAM overlays of the top class on every input crop.
        #[arg(long)]
        grad_cam: bool,
        #[arg(long, value_enum, default_value_t = segment::Device::Cpu)]
        device: segment::Device,
    },
    /// Write the classifier's exact inputs (normalised 3-phase crops, .npy) and their labels
    /// for every lesion of a labelled dataset, made as `nephrod classify` makes them.
    ExportCrops {
        /// Folder of case folders with truth.json (`nephrod phantom --format nifti` layout).
        dataset: PathBuf,
        /// Output folder (created; must be empty).
        #[arg(long)]
        out: PathBuf,
        /// Take the crop settings from this classifier bundle (default: nephrod's defaults).
        #[arg(long)]
        model: Option<PathBuf>,
        /// The phases of each case are already on one grid: skip registration.
        #[arg(long)]
        no_register: bool,
        /// Also write a PNG of every phase crop (windowed).
        #[arg(long)]
        png: bool,
        #[arg(long, value_enum, default_value_t = segment::Device::Cpu)]
        device: segment::Device,
    },
    /// Write a small generated multi-phase CT study (DICOM) to try the other commands on.
    Example {
        #[arg(long)]
        out: PathBuf,
        /// Slices per series.
        #[arg(long, default_value_t = 40)]
        slices: usize,
    },
    /// Segment kidneys, tumours and cysts in one CT image with a model bundle (nnU-Net v2
    /// inference): writes a label map (NIfTI, u8) on the image's grid.
    Segment {
        /// A .nii/.nii.gz file or a DICOM folder (one series, or choose with --series/--phase).
        input: PathBuf,
        /// Model bundle folder (from `nephrod models import-nnunet`).
        #[arg(long)]
        model: PathBuf,
        /// Output label map (.nii.gz).
        #[arg(long)]
        out: PathBuf,
        /// Turn off mirroring test-time augmentation (8× faster, slightly less accurate).
        #[arg(long)]
        no_tta: bool,
        #[arg(long, value_enum, default_value_t = segment::Device::Cpu)]
        device: segment::Device,
        /// In a DICOM folder: the series' UID hash (as `nephrod inspect` prints it).
        #[arg(long)]
        series: Option<String>,
        /// In a DICOM folder: the series' detected contrast phase (e.g. portal).
        #[arg(long)]
        phase: Option<String>,
        /// Apply seed 004's post-processing (labels 1 kidney, 2 tumour, 3 cyst): masses without
        /// kidney contact → background, small kidney fragments → their surroundings' label;
        /// then list every lesion (side, pole, volume, axial diameter, centre).
        #[arg(long)]
        kits_postprocess: bool,
        /// For a cascade stage (3d_cascade_fullres): the previous stage's bundle (3d_lowres),
        /// run first on the same image. Default: the model's own previous_stage/ folder (a
        /// cascade packaged as one model), if it has one.
        #[arg(long, conflicts_with = "previous_seg")]
        previous_stage: Option<PathBuf>,
        /// For a cascade stage: the previous stage's label map (NIfTI on the image's grid)
        /// instead of running it.
        #[arg(long)]
        previous_seg: Option<PathBuf>,
        /// Do not apply the model's nnU-Net post-processing rules (postprocessing.json found at
        /// import), i.e. write what `nnUNetv2_predict` alone writes.
        #[arg(long)]
        no_nnunet_postprocessing: bool,
        /// Also write the class probabilities (nnU-Net's --save_probabilities) into this
        /// folder: probabilities_<channel>_<name>.nii.gz, float32, before post-processing.
        #[arg(long, value_name = "DIR")]
        save_probabilities: Option<PathBuf>,
    },
    /// Affine registration of a moving phase to a reference phase on their kidney/tumour label
    /// maps (seed 001): writes transform.json, aligned_labels.nii.gz and aligned_image.nii.gz
    /// on the reference grid.
    Register {
        #[arg(long)]
        reference_labels: PathBuf,
        #[arg(long)]
        moving_labels: PathBuf,
        /// The moving phase's CT, resampled with the transform found.
        #[arg(long)]
        moving_image: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = segment::Device::Cpu)]
        device: segment::Device,
        /// Print transform.json on stdout instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Evaluation metrics equal to the field's reference code (KiTS, scikit-learn).
    Eval {
        #[command(subcommand)]
        what: EvalCommand,
    },
    /// Models: import trained nnU-Net v2 models and classifiers; the signed model store
    /// (verify, install, activate, rollback, remove, list; vendor side keygen, sign).
    Models {
        #[command(subcommand)]
        what: ModelsCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Convert a trained nnU-Net v2 model folder (plans.json, dataset.json, fold_<k>/) into a
    /// nephrod bundle (manifest.json + one f16 safetensors file per fold). No Python needed.
    ImportNnunet {
        /// e.g. nnUNet_results/Dataset220_KiTS2023/nnUNetTrainer__nnUNetPlans__3d_fullres
        model_dir: PathBuf,
        /// Configuration name (must match the checkpoints' init_args).
        #[arg(long = "config")]
        configuration: String,
        /// Folds to import (default: every fold_<int> folder with the checkpoint; `all` only
        /// when named).
        #[arg(long, num_args = 1..)]
        folds: Option<Vec<String>>,
        #[arg(long, default_value = "checkpoint_final.pth")]
        checkpoint: String,
        /// Bundle directory to create.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing bundle.
        #[arg(long)]
        force: bool,
        /// Accept a trainer outside nnU-Net's network-preserving variants (the state-dict
        /// check against the plans still applies).
        #[arg(long)]
        allow_custom_trainer: bool,
        /// nnU-Net's postprocessing.json to apply after inference (default: the one in
        /// crossval_results_folds_<folds>/ of the model folder, if present).
        #[arg(long, conflicts_with = "no_postprocessing")]
        postprocessing: Option<PathBuf>,
        /// Import without nnU-Net post-processing rules.
        #[arg(long)]
        no_postprocessing: bool,
    },
    /// Check a package (a folder, or one .tar of it): signature by a trusted key, every file's
    /// SHA-256 against the signed manifest.toml, and that the model loads. Refuses unsigned
    /// bundles unless --unsigned.
    Verify {
        bundle: PathBuf,
        /// Configuration whose models.trusted_keys to trust (default:
        /// /etc/nephrod/nephrod.toml when it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        trust: model_store::TrustArgs,
        /// A development bundle without manifest.toml: check only that its weights match its
        /// manifest.json (names, shapes, dtypes, SHA-256). Such a bundle cannot be installed.
        #[arg(long)]
        unsigned: bool,
    },
    /// Installed packages of the model store, with the active ones and the rollback target.
    List {
        #[command(flatten)]
        store: model_store::StoreArgs,
        #[command(flatten)]
        trust: model_store::TrustArgs,
        /// Re-check every installed package's files against its manifest.toml (SHA-256) and,
        /// when trusted keys are known (configuration or --trust), its signature; the exit
        /// status is non-zero when one is damaged or an active one's signer is not trusted.
        #[arg(long)]
        check: bool,
    },
    /// Verify a signed package (a folder, or one .tar of it), copy it into the store, verify the
    /// copy, load it and run the self-check on the built-in phantom. The active models are
    /// unchanged unless --activate.
    Install {
        bundle: PathBuf,
        #[command(flatten)]
        store: model_store::StoreArgs,
        #[command(flatten)]
        trust: model_store::TrustArgs,
        /// Activate it once installed.
        #[arg(long)]
        activate: bool,
        /// Run the self-check on the CPU even where the configuration says cuda.
        #[arg(long)]
        cpu: bool,
    },
    /// Make an installed NAME@VERSION the active model of its role (one atomic rename).
    Activate {
        id: String,
        #[command(flatten)]
        store: model_store::StoreArgs,
    },
    /// Restore the active models the last activation replaced (repeatable: steps back through
    /// earlier activations; the store keeps the last 16).
    Rollback {
        #[command(flatten)]
        store: model_store::StoreArgs,
    },
    /// Delete an installed NAME@VERSION that is neither active nor the rollback target.
    Remove {
        id: String,
        #[command(flatten)]
        store: model_store::StoreArgs,
    },
    /// Vendor side: a new Ed25519 signing key, written to OUT (secret, mode 0600) and OUT.pub.
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// Free text stored in OUT.pub (who owns the key).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Vendor side: record the model's self-check output, write manifest.toml (name, version,
    /// architecture, preprocessing, labels, training summary, SHA-256 of every file) and sign it.
    Sign {
        bundle: PathBuf,
        /// The secret key file (from models keygen).
        #[arg(long)]
        key: PathBuf,
        /// Default: the existing manifest.toml's name, else the folder name.
        #[arg(long)]
        name: Option<String>,
        /// Default: the existing manifest.toml's version (required for a first signature).
        #[arg(long)]
        version: Option<String>,
        /// Training-data summary (default: the existing one, else the bundle's own records).
        #[arg(long)]
        training_summary: Option<String>,
    },
    /// Convert a classifier's weights (torchvision ResNet state dict with `input_conv.*`, as
    /// .safetensors or a PyTorch .pth) into a classifier bundle.
    ImportClassifier {
        #[arg(long)]
        weights: PathBuf,
        /// resnet18, resnet34, resnet50 or resnet101.
        #[arg(long, default_value = "resnet101")]
        arch: String,
        /// The weights have no 1×1 input convolution.
        #[arg(long)]
        no_input_conv: bool,
        /// Crop settings (JSON, the manifest's `crop` object; default: nephrod's).
        #[arg(long)]
        crop_settings: Option<PathBuf>,
        /// What the training recorded (JSON, kept in the manifest).
        #[arg(long)]
        training: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Segmentation: Dice, Surface Dice (KiTS tolerances), HD95, ASSD, volumes for the KiTS
    /// classes and per label, lesion detection; files or folders of NIfTI label maps matched by
    /// case name (file name without .nii/.nii.gz).
    Seg {
        #[arg(long)]
        pred: PathBuf,
        #[arg(long)]
        truth: PathBuf,
        /// JSON (schema nephrod.eval.seg/1) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Classification: accuracy, top-2 accuracy, confusion matrix, per-class sensitivity,
    /// specificity, PPV, F1, one-vs-rest ROC AUC with bootstrap and DeLong 95 % CIs, optional
    /// model-vs-reader permutation tests; CSVs `case,<class>…` (probabilities) and `case,label`.
    Cls {
        #[arg(long)]
        pred: PathBuf,
        #[arg(long)]
        truth: PathBuf,
        /// A reader's diagnoses (`case,label`) to compare the model with.
        #[arg(long)]
        reader: Option<PathBuf>,
        /// JSON (schema nephrod.eval.cls/1) instead of the table.
        #[arg(long)]
        json: bool,
        /// Write ROC and precision–recall curves (PNG and SVG) into this folder.
        #[arg(long)]
        plots: Option<PathBuf>,
        /// Bootstrap resamples for the AUC CIs.
        #[arg(long, default_value_t = 1000)]
        resamples: usize,
        /// Permutations of the model-vs-reader test.
        #[arg(long, default_value_t = 10_000)]
        permutations: usize,
        /// Seed of the bootstrap and permutation draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Registration: Dice of the reference phase's labels vs each moving phase's labels with no
    /// alignment, with the centre-of-mass baseline and (with --aligned) after registration.
    Reg {
        /// The reference phase's label map.
        #[arg(long)]
        reference: PathBuf,
        /// A moving phase's label map (repeat for several phases).
        #[arg(long, required = true)]
        moving: Vec<PathBuf>,
        /// The registration's output for each --moving, on the reference grid, same order.
        #[arg(long)]
        aligned: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Classifier forward (candle ResNet) vs torchvision CPU, same weights and input, as a ratio.
    Classifier {
        #[arg(long, default_value = "resnet101")]
        arch: String,
        /// Images per forward (3 = a four-phase study's leave-one-out images).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Python with torch + torchvision (default: .cache/nnunet-venv/bin/python).
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// DICOM ingest (scan, sort, decode, rescale) of a generated 512×512×N series vs pydicom.
    Ingest {
        #[arg(long, default_value_t = 300)]
        slices: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Python with pydicom (default: .cache/venv/bin/python, else python3).
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// Phantom generation time per study (one thread and all threads).
    Phantom {
        #[arg(long, default_value_t = 3)]
        cases: usize,
        /// Also time full-size (512²) studies.
        #[arg(long)]
        full: bool,
    },
    /// conv3d / conv_transpose3d of the CPU backend at nnU-Net shapes: ms and GFLOP/s.
    Ops {
        /// One JSON object per row: {"op","shape","threads","ms","gflops", …}.
        #[arg(long)]
        json: bool,
        /// Worker threads (default: all available cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Smaller spatial sizes (128³ → 32³, 64³ → 32³; ups up to 16³ input) for a quick run.
        #[arg(long)]
        quick: bool,
        /// Minimum timed runs per row (median reported; fast rows run up to ~1 s).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Instruction set: avx512, avx2, neon, scalar (default: best available).
        #[arg(long)]
        isa: Option<String>,
        /// Register tiling: spatial or channel (default: chosen per layer).
        #[arg(long)]
        tiling: Option<String>,
        /// Only rows whose "op shape" text contains this.
        #[arg(long)]
        only: Option<String>,
    },
}

/// Installs the tracing subscriber (stderr; `NEPHROD_LOG` overrides the level).
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEPHROD_LOG")
        // notify (inotify) reports routine watch removals at info level: keep them out.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},notify=warn")));
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Inspect { dir, json } => inspect::run(&dir, json),
        Command::Convert { dir, out } => convert::run(&dir, &out),
        Command::Example { out, slices } => example::run(&out, slices),
        Command::Analyze {
            study,
            out,
            models,
            device,
            no_tta,
            no_kits_postprocess,
            no_grad_cam,
            force,
        } => analyze::run(
            &study,
            &out,
            &demo_models::models_dir(models.as_deref()),
            device == segment::Device::Cuda,
            crate::pipeline::AnalyzeOptions {
                mirroring: !no_tta,
                kits_postprocessing: !no_kits_postprocess,
                grad_cam: !no_grad_cam,
                ..Default::default()
            },
            force,
        ),
        Command::Serve { config, check } => {
            if check {
                crate::daemon::serve::check(&config)
            } else {
                crate::daemon::serve::run(&config)
            }
        }
        Command::Demo {
            out,
            seed,
            models,
            device,
            no_tta,
        } => demo::run(
            out.as_deref(),
            seed,
            &demo_models::models_dir(models.as_deref()),
            device == segment::Device::Cuda,
            !no_tta,
        ),
        Command::Segment {
            input,
            model,
            out,
            no_tta,
            device,
            series,
            phase,
            kits_postprocess,
            previous_stage,
            previous_seg,
            no_nnunet_postprocessing,
            save_probabilities,
        } => segment::run(&segment::SegmentArgs {
            input: &input,
            model: &model,
            out: &out,
            no_tta,
            device,
            series: series.as_deref(),
            phase: phase.as_deref(),
            kits_postprocess,
            previous_stage: previous_stage.as_deref(),
            previous_seg: previous_seg.as_deref(),
            nnunet_postprocessing: !no_nnunet_postprocessing,
            save_probabilities: save_probabilities.as_deref(),
        }),
        Command::Models {
            what:
                ModelsCommand::ImportNnunet {
                    model_dir,
                    configuration,
                    folds,
                    checkpoint,
                    out,
                    force,
                    allow_custom_trainer,
                    postprocessing,
                    no_postprocessing,
                },
        } => models::run_import(&models::ImportArgs {
            model_dir: &model_dir,
            configuration: &configuration,
            folds,
            checkpoint: &checkpoint,
            out: &out,
            force,
            allow_custom_trainer,
            postprocessing: match (postprocessing, no_postprocessing) {
                (_, true) => PostprocessingSource::Off,
                (Some(p), false) => PostprocessingSource::File(p),
                (None, false) => PostprocessingSource::Auto,
            },
        }),
        Command::Models {
            what:
                ModelsCommand::Verify {
                    bundle,
                    config,
                    trust,
                    unsigned,
                },
        } => {
            if unsigned {
                models::run_verify(&bundle)
            } else {
                model_store::run_verify(&bundle, config.as_deref(), &trust)
            }
        }
        Command::Models {
            what:
                ModelsCommand::List {
                    store,
                    trust,
                    check,
                },
        } => model_store::run_list(&store, &trust, check),
        Command::Models {
            what:
                ModelsCommand::Install {
                    bundle,
                    store,
                    trust,
                    activate,
                    cpu,
                },
        } => model_store::run_install(&bundle, &store, &trust, activate, cpu),
        Command::Models {
            what: ModelsCommand::Activate { id, store },
        } => model_store::run_activate(&id, &store),
        Command::Models {
            what: ModelsCommand::Rollback { store },
        } => model_store::run_rollback(&store),
        Command::Models {
            what: ModelsCommand::Remove { id, store },
        } => model_store::run_remove(&id, &store),
        Command::Models {
            what: ModelsCommand::Keygen { out, comment },
        } => model_store::run_keygen(&out, &comment),
        Command::Models {
            what:
                ModelsCommand::Sign {
                    bundle,
                    key,
                    name,
                    version,
                    training_summary,
                },
        } => model_store::run_sign(
            &bundle,
            &key,
            &crate::models::package::SignRequest {
                name,
                version,
                training: training_summary,
            },
        ),
        Command::Models {
            what:
                ModelsCommand::ImportClassifier {
                    weights,
                    arch,
                    no_input_conv,
                    crop_settings,
                    training,
                    out,
                },
        } => models::run_import_classifier(&models::ImportClassifierArgs {
            weights: &weights,
            arch: &arch,
            input_conv: !no_input_conv,
            crop_settings: crop_settings.as_deref(),
            training: training.as_deref(),
            out: &out,
        }),
        Command::Classify {
            model,
            case,
            phase,
            out,
            no_register,
            grad_cam,
            device,
        } => {
            let phases = match case {
                Some(dir) => crate::classify::dataset::read_case(&dir)?.phases,
                None => phase
                    .iter()
                    .map(|s| phases_input::parse_phase_arg(s))
                    .collect::<anyhow::Result<Vec<_>>>()?,
            };
            let backend = crate::engine::select_backend(device == segment::Device::Cuda);
            classify::run(
                &classify::ClassifyArgs {
                    model: &model,
                    phases,
                    out: &out,
                    register: !no_register,
                    grad_cam,
                },
                backend.as_ref(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ExportCrops {
            dataset,
            out,
            model,
            no_register,
            png,
            device,
        } => {
            let crop = match model {
                Some(m) => {
                    crate::classify::bundle::ClassifierBundle::open(&m)?
                        .manifest
                        .crop
                }
                None => crate::classify::settings::CropSettings::default(),
            };
            let backend = crate::engine::select_backend(device == segment::Device::Cuda);
            export_crops::run(
                &export_crops::ExportArgs {
                    dataset: &dataset,
                    out: &out,
                    crop,
                    register: !no_register,
                    png,
                },
                backend.as_ref(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Phantom {
            out,
            cases,
            seed,
            format,
            size,
            orientation_variants,
            all_phases,
            lesion_mix,
            shuffle_files,
            compression,
            frames,
        } => phantom::run(
            &out,
            &phantom::PhantomArgs {
                cases,
                seed,
                format,
                size,
                orientation_variants,
                all_phases,
                lesion_mix,
                dicom: crate::phantom::output::DicomOptions {
                    shuffle_files,
                    compression,
                    frames,
                },
            },
        ),
        Command::Register {
            reference_labels,
            moving_labels,
            moving_image,
            out,
            device,
            json,
        } => register::run(&register::RegisterArgs {
            reference_labels: &reference_labels,
            moving_labels: &moving_labels,
            moving_image: moving_image.as_deref(),
            out: &out,
            gpu: device == segment::Device::Cuda,
            json,
        }),
        Command::Eval {
            what: EvalCommand::Seg { pred, truth, json },
        } => eval::run_seg(&pred, &truth, json),
        Command::Eval {
            what:
                EvalCommand::Reg {
                    reference,
                    moving,
                    aligned,
                    json,
                },
        } => eval::run_reg(&reference, &moving, &aligned, json),
        Command::Eval {
            what:
                EvalCommand::Cls {
                    pred,
                    truth,
                    reader,
                    json,
                    plots,
                    resamples,
                    permutations,
                    seed,
                },
        } => eval::run_cls(&eval::ClsArgs {
            pred: &pred,
            truth: &truth,
            reader: reader.as_deref(),
            json,
            plots: plots.as_deref(),
            settings: crate::eval::cls_report::ClsSettings {
                resamples,
                permutations,
                seed,
            },
        }),
        Command::Bench {
            what:
                BenchCommand::Ingest {
                    slices,
                    repeats,
                    python,
                },
        } => bench::run_ingest(slices, repeats, python),
        Command::Bench {
            what:
                BenchCommand::Classifier {
                    arch,
                    batch,
                    repeats,
                    python,
                },
        } => bench_classifier::run(&bench_classifier::BenchClassifierArgs {
            arch,
            batch,
            repeats,
            python,
        }),
        Command::Bench {
            what: BenchCommand::Phantom { cases, full },
        } => bench_phantom::run(cases, full),
        Command::Bench {
            what:
                BenchCommand::Ops {
                    json,
                    threads,
                    quick,
                    repeats,
                    isa,
                    tiling,
                    only,
                },
        } => bench_ops::run(&bench_ops::OpsArgs {
            json,
            threads,
            quick,
            repeats,
            isa,
            tiling,
            only,
        }),
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks of every subcommand (unique names, valid defaults), which
    /// otherwise only fire when that subcommand is parsed.
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
