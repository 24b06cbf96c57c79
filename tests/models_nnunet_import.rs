//! nnU-Net v2 import end to end against tiny model folders written by the real nnunetv2 2.8.1
//! (tools/oracle/torch_checkpoint_golden.py → tests/data/models/nnunet): networks built by
//! `get_network_from_plans`, checkpoints saved like `nnUNetTrainer.save_checkpoint`. The plan
//! must equal what nnunetv2's PlansManager / ConfigurationManager / LabelManager make of the
//! same files, every tensor must equal torch's `.half()` bit for bit, and every bad input must
//! give a typed error naming the field — with nothing left behind on disk.

use std::path::{Path, PathBuf};

use nephrod::models::bundle::{write_bundle, Bundle, BundleError};
use nephrod::models::nnunet::{detect_folds, prepare_import, ImportOptions, NnunetError};
use nephrod::segment::plan::{
    NetworkClass, Nonlinearity, Normalization, OutputHeads, ReaderAxes, ResamplingSettings,
};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models/nnunet")
}

fn golden(variant: &str) -> Json {
    serde_json::from_str(&std::fs::read_to_string(data().join(format!("{variant}.json"))).unwrap())
        .unwrap()
}

fn usizes(v: &Json) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn triples(v: &Json) -> Vec<[usize; 3]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| usizes(x).try_into().unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn import(variant: &str, out: &Path) -> Bundle {
    let g = golden(variant);
    let opts = ImportOptions::new(g["configuration"].as_str().unwrap());
    let prep = prepare_import(&data().join(variant), &opts).unwrap();
    write_bundle(&prep, out, false, |_, _| {}).unwrap();
    Bundle::open(out).unwrap()
}

fn check_variant(variant: &str) {
    let g = golden(variant);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bundle");
    let b = import(variant, &out);
    let m = &b.manifest;
    let p = &m.plan;

    // ---- plan vs nnunetv2's own managers
    assert_eq!(p.dataset_name, g["dataset_name"].as_str().unwrap());
    assert_eq!(p.configuration, g["configuration"].as_str().unwrap());
    let reader = match g["image_reader_writer"].as_str().unwrap() {
        "SimpleITKIO" => ReaderAxes::SimpleItk,
        "NibabelIO" => ReaderAxes::Nibabel,
        "NibabelIOWithReorient" => ReaderAxes::NibabelWithReorient,
        other => panic!("{other}"),
    };
    assert_eq!(p.reader, reader);
    assert_eq!(
        p.transpose_forward.to_vec(),
        usizes(&g["transpose_forward"])
    );
    assert_eq!(
        p.transpose_backward.to_vec(),
        usizes(&g["transpose_backward"])
    );
    assert_eq!(
        p.sliding_window.patch_size.to_vec(),
        usizes(&g["patch_size"])
    );
    let spacing: Vec<f64> = g["spacing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(p.preprocessing.spacing_mm.to_vec(), spacing);
    let schemes = g["normalization_schemes"].as_array().unwrap();
    assert_eq!(p.preprocessing.normalization.len(), schemes.len());
    for (c, (n, s)) in p
        .preprocessing
        .normalization
        .iter()
        .zip(schemes)
        .enumerate()
    {
        let props = &g["foreground_intensity_properties_per_channel"][c.to_string()];
        match (n, s.as_str().unwrap()) {
            (
                Normalization::Ct {
                    mean,
                    std,
                    percentile_00_5,
                    percentile_99_5,
                },
                "CTNormalization",
            ) => {
                assert_eq!(*mean, props["mean"].as_f64().unwrap());
                assert_eq!(*std, props["std"].as_f64().unwrap());
                assert_eq!(*percentile_00_5, props["percentile_00_5"].as_f64().unwrap());
                assert_eq!(*percentile_99_5, props["percentile_99_5"].as_f64().unwrap());
            }
            (Normalization::ZScore { use_mask }, "ZScoreNormalization") => {
                assert_eq!(*use_mask, g["use_mask_for_norm"][c].as_bool().unwrap());
            }
            other => panic!("{other:?}"),
        }
    }
    let rs = |k: &str| {
        let kw = &g["resampling_kwargs"][k];
        ResamplingSettings {
            order: kw["order"].as_u64().unwrap() as u8,
            order_z: kw["order_z"].as_u64().unwrap() as u8,
            force_separate_z: kw["force_separate_z"].as_bool(),
        }
    };
    assert_eq!(p.preprocessing.resample_data, rs("resampling_fn_data"));
    assert_eq!(p.preprocessing.resample_seg, rs("resampling_fn_seg"));
    assert_eq!(
        p.preprocessing.resample_probabilities,
        rs("resampling_fn_probabilities")
    );

    let a = &p.architecture;
    let kw = &g["arch_kwargs"];
    let class = g["network_class_name"].as_str().unwrap();
    assert_eq!(
        a.class,
        if class.ends_with(".PlainConvUNet") {
            NetworkClass::PlainConvUNet
        } else {
            assert!(class.ends_with(".ResidualEncoderUNet"), "{class}");
            NetworkClass::ResidualEncoderUNet
        }
    );
    assert_eq!(
        a.input_channels,
        g["num_input_channels"].as_u64().unwrap() as usize
    );
    assert_eq!(
        a.output_channels,
        g["num_segmentation_heads"].as_u64().unwrap() as usize
    );
    assert_eq!(a.features_per_stage, usizes(&kw["features_per_stage"]));
    assert_eq!(a.kernel_sizes, triples(&kw["kernel_sizes"]));
    assert_eq!(a.strides, triples(&kw["strides"]));
    let per_stage = if a.class == NetworkClass::PlainConvUNet {
        &kw["n_conv_per_stage"]
    } else {
        &kw["n_blocks_per_stage"]
    };
    assert_eq!(a.n_conv_per_stage, usizes(per_stage));
    assert_eq!(
        a.n_conv_per_stage_decoder,
        usizes(&kw["n_conv_per_stage_decoder"])
    );
    assert_eq!(a.conv_bias, kw["conv_bias"].as_bool().unwrap());
    assert_eq!(a.norm_eps, kw["norm_op_kwargs"]["eps"].as_f64().unwrap());
    assert_eq!(
        a.nonlinearity,
        Nonlinearity::LeakyRelu {
            negative_slope: 0.01
        }
    );

    match &p.outputs {
        OutputHeads::Regions {
            members,
            class_order,
            ..
        } => {
            assert!(g["has_regions"].as_bool().unwrap());
            let want: Vec<Vec<u16>> = g["foreground_regions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| usizes(r).into_iter().map(|x| x as u16).collect())
                .collect();
            assert_eq!(members, &want);
            let order: Vec<u16> = usizes(&g["regions_class_order"])
                .into_iter()
                .map(|x| x as u16)
                .collect();
            assert_eq!(class_order, &order);
        }
        OutputHeads::Labels { names } => {
            assert!(!g["has_regions"].as_bool().unwrap());
            assert_eq!(names.len(), g["all_labels"].as_array().unwrap().len());
        }
    }
    assert_eq!(p.previous_stage.as_deref(), g["previous_stage"].as_str());
    let mirror = if g["mirror_axes"].is_null() {
        vec![]
    } else {
        usizes(&g["mirror_axes"])
    };
    assert_eq!(p.sliding_window.mirror_axes, mirror);
    assert_eq!(m.source.trainer_name, g["trainer_name"].as_str().unwrap());

    // ---- sources
    assert_eq!(
        m.source.plans_json.sha256,
        g["plans_sha256"].as_str().unwrap()
    );
    assert_eq!(
        m.source.dataset_json.sha256,
        g["dataset_sha256"].as_str().unwrap()
    );
    let folds = g["folds"].as_object().unwrap();
    assert_eq!(p.folds, folds.keys().cloned().collect::<Vec<_>>());

    // ---- weights: names, shapes and f16 bits equal torch's .half()
    for ((fold, gf), (wf, src)) in folds
        .iter()
        .zip(b.weights.iter().zip(&m.source.checkpoints))
    {
        assert_eq!(src.sha256, gf["checkpoint_sha256"].as_str().unwrap());
        assert_eq!(m.parameters, gf["parameters"].as_u64().unwrap());
        let tensors = gf["tensors"].as_object().unwrap();
        assert_eq!(wf.tensors().len(), tensors.len(), "fold {fold}");
        for (name, t) in tensors {
            let (info, bytes) = wf.raw(name).unwrap();
            assert_eq!(info.shape, usizes(&t["shape"]), "{name}");
            assert_eq!(
                hex(bytes),
                t["f16_sha256"].as_str().unwrap(),
                "fold {fold} tensor {name}: f16 bits differ from torch .half()"
            );
        }
    }
}

#[test]
fn plain_conv_unet_v23_plans_two_folds() {
    check_variant("plain");
}

#[test]
fn residual_encoder_unet_regions_two_channels() {
    check_variant("resenc");
}

#[test]
fn old_format_plans_cascade_stage_without_mirroring_axes() {
    check_variant("oldfmt");
}

/// Copies a golden model folder into a temporary directory (to alter it).
fn copy_model(variant: &str, to: &Path) -> PathBuf {
    let dst = to.join(variant);
    for e in walkdir::WalkDir::new(data().join(variant)) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(data().join(variant)).unwrap();
        let target = dst.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
    dst
}

fn edit_plans(dir: &Path, f: impl FnOnce(&mut Json)) {
    let p = dir.join("plans.json");
    let mut j: Json = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut j);
    std::fs::write(&p, serde_json::to_string_pretty(&j).unwrap()).unwrap();
}

#[test]
fn folds_are_detected_and_fold_all_only_when_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_model("plain", tmp.path());
    std::fs::create_dir(dir.join("fold_all")).unwrap();
    std::fs::copy(
        dir.join("fold_0/checkpoint_final.pth"),
        dir.join("fold_all/checkpoint_final.pth"),
    )
    .unwrap();
    std::fs::create_dir(dir.join("fold_10")).unwrap(); // no checkpoint
    std::fs::create_dir(dir.join("fold_x")).unwrap();
    assert_eq!(
        detect_folds(&dir, "checkpoint_final.pth").unwrap(),
        ["0", "1"]
    );
    assert!(matches!(
        detect_folds(&dir, "checkpoint_best.pth"),
        Err(NnunetError::NoFolds { .. })
    ));
    let mut opts = ImportOptions::new("3d_fullres");
    opts.folds = Some(vec!["all".into()]);
    let prep = prepare_import(&dir, &opts).unwrap();
    assert_eq!(prep.plan.folds, ["all"]);
    opts.folds = Some(vec!["3".into()]);
    let e = prepare_import(&dir, &opts).unwrap_err();
    assert_eq!(e.kind(), "missing_checkpoint", "{e}");
}

#[test]
fn configuration_must_match_the_checkpoint() {
    // plans.json has 3d_lowres_unused (inherits from 3d_fullres) but the checkpoint says 3d_fullres.
    let e = prepare_import(
        &data().join("plain"),
        &ImportOptions::new("3d_lowres_unused"),
    )
    .unwrap_err();
    assert!(
        matches!(&e, NnunetError::CheckpointContent { field, .. } if field == "init_args.configuration"),
        "{e}"
    );
    let e = prepare_import(&data().join("plain"), &ImportOptions::new("2d")).unwrap_err();
    assert_eq!(e.kind(), "checkpoint_content", "{e}");
}

type PlansEdit = Box<dyn Fn(&mut Json)>;

#[test]
fn unsupported_plans_name_the_field() {
    let kw = "/configurations/3d_fullres/architecture/arch_kwargs";
    let cases: Vec<(&str, PlansEdit, &str)> = vec![
        (
            "dropout",
            Box::new(move |j| {
                *j.pointer_mut(&format!("{kw}/dropout_op")).unwrap() = "torch.nn.Dropout3d".into()
            }),
            "arch_kwargs.dropout_op",
        ),
        (
            "2d",
            Box::new(|j| {
                *j.pointer_mut("/configurations/3d_fullres/patch_size")
                    .unwrap() = serde_json::json!([16, 16])
            }),
            "configurations.3d_fullres.patch_size",
        ),
        (
            "custom network",
            Box::new(|j| {
                *j.pointer_mut("/configurations/3d_fullres/architecture/network_class_name")
                    .unwrap() = "my_nets.FancyUNet".into()
            }),
            "architecture.network_class_name",
        ),
        (
            "batch norm",
            Box::new(move |j| {
                *j.pointer_mut(&format!("{kw}/norm_op")).unwrap() = "torch.nn.BatchNorm3d".into()
            }),
            "arch_kwargs.norm_op",
        ),
        (
            "normalisation",
            Box::new(|j| {
                *j.pointer_mut("/configurations/3d_fullres/normalization_schemes/0")
                    .unwrap() = "RescaleTo01Normalization".into()
            }),
            "normalization_schemes[0]",
        ),
        (
            "reader",
            Box::new(|j| *j.pointer_mut("/image_reader_writer").unwrap() = "Tiff3DIO".into()),
            "image_reader_writer",
        ),
        (
            "resampling",
            Box::new(|j| {
                *j.pointer_mut("/configurations/3d_fullres/resampling_fn_data")
                    .unwrap() = "resample_torch_fornnunet".into()
            }),
            "resampling_fn_data",
        ),
    ];
    for (what, edit, field_part) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = copy_model("plain", tmp.path());
        edit_plans(&dir, edit);
        let e = prepare_import(&dir, &ImportOptions::new("3d_fullres")).unwrap_err();
        match &e {
            NnunetError::Unsupported { field, .. } => {
                assert!(field.contains(field_part), "{what}: {e}")
            }
            other => panic!("{what}: {other}"),
        }
    }
}

#[test]
fn circular_inheritance_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_model("plain", tmp.path());
    edit_plans(&dir, |j| {
        j["configurations"]["3d_fullres"]["inherits_from"] = "3d_lowres_unused".into();
    });
    let e = prepare_import(&dir, &ImportOptions::new("3d_fullres")).unwrap_err();
    assert!(e.to_string().contains("circular"), "{e}");
}

#[test]
fn state_dict_mismatch_lists_names_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_model("plain", tmp.path());
    edit_plans(&dir, |j| {
        let kw = &mut j["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"];
        kw["features_per_stage"] = serde_json::json!([2, 4, 16]);
        kw["n_conv_per_stage"] = serde_json::json!([2, 2, 3]);
    });
    let prep = prepare_import(&dir, &ImportOptions::new("3d_fullres")).unwrap();
    let outdir = tmp.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out = outdir.join("bundle");
    let e = write_bundle(&prep, &out, false, |_, _| {}).unwrap_err();
    match &e {
        BundleError::Import(NnunetError::StateDict {
            missing,
            unexpected,
            misshaped,
            ..
        }) => {
            assert!(missing.contains(&"encoder.stages.2.0.convs.2.conv.weight".to_string()));
            assert!(unexpected.is_empty(), "{unexpected:?}");
            assert!(misshaped.iter().any(|(n, want, got)| n
                == "encoder.stages.2.0.convs.0.conv.weight"
                && want[0] == 16
                && got[0] == 8));
        }
        other => panic!("{other}"),
    }
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(&outdir).unwrap().count(),
        0,
        "temporary files left"
    );
}

#[test]
fn existing_bundle_needs_force() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("b");
    import("plain", &out);
    let prep = prepare_import(&data().join("resenc"), &ImportOptions::new("3d_fullres")).unwrap();
    let e = write_bundle(&prep, &out, false, |_, _| {}).unwrap_err();
    assert_eq!(e.kind(), "exists");
    write_bundle(&prep, &out, true, |_, _| {}).unwrap();
    let b = Bundle::open(&out).unwrap();
    assert_eq!(b.manifest.plan.dataset_name, "Dataset902_TinyRes");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn tampered_bundles_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("b");
    import("plain", &out);
    // one flipped weight byte → SHA-256 mismatch
    let w = out.join("fold_1.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x10;
    std::fs::write(&w, &bytes).unwrap();
    let e = Bundle::open(&out).unwrap_err();
    assert!(e.to_string().contains("SHA-256"), "{e}");
    bytes[n - 3] ^= 0x10;
    std::fs::write(&w, &bytes).unwrap();
    Bundle::open(&out).unwrap();

    let mpath = out.join("manifest.json");
    let original = std::fs::read_to_string(&mpath).unwrap();
    let edit = |f: &dyn Fn(&mut Json)| {
        let mut j: Json = serde_json::from_str(&original).unwrap();
        f(&mut j);
        std::fs::write(&mpath, serde_json::to_string(&j).unwrap()).unwrap();
        Bundle::open(&out).unwrap_err()
    };
    assert_eq!(edit(&|j| j["schema_version"] = 99.into()).kind(), "schema");
    assert_eq!(
        edit(&|j| j["folds"][0]["weights_file"] = "../fold_0.safetensors".into()).kind(),
        "manifest"
    );
    assert_eq!(
        edit(&|j| j["plan"]["architecture"]["features_per_stage"][2] = 9.into()).kind(),
        "manifest"
    );
    assert_eq!(
        edit(&|j| j["folds"][0]["weights"]["sha256"] = "00".repeat(32).into()).kind(),
        "manifest"
    );
    // inconsistent per-stage lists and absurd sizes: refused before any indexing
    let e = edit(&|j| j["plan"]["architecture"]["strides"] = serde_json::json!([[1, 1, 1]]));
    assert!(e.to_string().contains("strides has 1 entries"), "{e}");
    let e = edit(&|j| j["plan"]["architecture"]["n_conv_per_stage"][0] = 1_000_000_000u64.into());
    assert!(e.to_string().contains("out of range"), "{e}");
}

#[test]
fn unknown_trainers_are_refused_unless_allowed() {
    let dir = data().join("custom_trainer");
    let e = prepare_import(&dir, &ImportOptions::new("3d_fullres")).unwrap_err();
    assert!(
        matches!(&e, NnunetError::UnsupportedTrainer { trainer, .. } if trainer == "nnUNetTrainerMyFancyNet"),
        "{e}"
    );
    let mut opts = ImportOptions::new("3d_fullres");
    opts.allow_custom_trainer = true;
    let prep = prepare_import(&dir, &opts).unwrap();
    assert_eq!(prep.trainer_name, "nnUNetTrainerMyFancyNet");
    // the state-dict check still runs: the network here is the plain one, so it passes
    prep.load_fold(0).unwrap();
}
