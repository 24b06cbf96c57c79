#!/usr/bin/env python3
"""Goldens for the nnU-Net model variants beyond tests/data/segment/e2e: a KiTS23-style region model
read with NibabelIOWithReorient, the 3d_lowres -> 3d_cascade_fullres cascade, a ResidualEncoderUNet,
and nnU-Net's segmentation resampling (resize_segmentation). Everything is nnunetv2 2.8.1 itself:
models are written with torch_checkpoint_golden.build_and_save (nnU-Net's own get_network_from_plans,
saved like nnUNetTrainer), predictions come from nnUNetPredictor.predict_from_files_sequential
(CPU, tile_step_size 0.5, Gaussian, save_probabilities=True).

Model folders (tests/data/models/nnunet/<name>/ + <name>.json, see torch_checkpoint_golden.py):
* regions_aniso   — labels {background 0, kidney [1,2,3], masses [2,3], tumor 2}, regions_class_order
  [1,3,2] (3 sigmoid heads), NibabelIOWithReorient, transpose [2,0,1], spacing [3.0, 0.8, 0.8]
  (separate z), PlainConvUNet, patch [8,16,16], 2 folds, mirror axes (0,1,2).
* cascade_lowres / cascade_fullres — one plans.json (3d_fullres, 3d_lowres with next_stage,
  3d_cascade_fullres = {inherits_from 3d_fullres, previous_stage 3d_lowres}), SimpleITKIO, transpose
  [2,0,1], labels background/kidney/tumor/cyst, 1 fold each, mirror axes (0,1,2); the fullres net has
  1 + 3 input channels. The final segmentation layer of both is rescaled/shifted (SEG_LAYER_TWEAK)
  before torch.save so that random weights give several labels; the checkpoint holds what was run.
* Every model's float weights are rounded to f16-representable values before saving (the checkpoint
  stays f32): nephrod's bundles hold f16, so both sides run identical weights and the end-to-end
  comparison isolates the pipeline. tests/segment_e2e.rs (the plain model, unrounded f32 weights)
  shows the effect of the f16 storage itself.
* resenc_ct       — ResidualEncoderUNet (resenc_plans() arch), one CT channel, labels, SimpleITKIO,
  spacing [1,1,1], 1 fold, mirror axes (0,1,2).

Goldens (tests/data/segment/variants/<variant>/, layout in README.md there):
ct.nii.gz (int16 HU), seg_<run>.nii.gz (nnU-Net's output file), prob_<run>.safetensors
("probabilities" float32 (C, K, J, I) on the seg file's voxel grid (I, J, K) as nibabel indexes it;
for the Nibabel reader the reorientation is undone here; decoding them is asserted to reproduce the
seg file), cascade/cascade_preprocessed.safetensors + .json (the exact sliding-window input of the
cascade stage, captured from the predictor and recomputed with DefaultPreprocessor.run_case),
resize_segmentation/resize_segmentation.safetensors + .json, and summary.json (label counts, shapes).

usage: .cache/nnunet-venv/bin/python tools/oracle/nnunet_variants_golden.py
Pinned: tools/oracle/requirements-nnunet.txt. Deterministic (seeded, one thread); re-running gives
byte-identical files.
"""
import contextlib
import copy
import json
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.preprocessing.resampling.default_resampling import (
    compute_new_shape, determine_do_sep_z_and_axis, resample_data_or_seg_to_shape)
from nnunetv2.utilities.label_handling.label_handling import convert_labelmap_to_one_hot
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from safetensors.numpy import save_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODELS = ROOT / "tests/data/models/nnunet"
OUT = ROOT / "tests/data/segment/variants"

sys.path.insert(0, str(HERE))
_argv, sys.argv = sys.argv, [sys.argv[0], "unused"]  # torch_checkpoint_golden reads argv[1] on import
try:
    import torch_checkpoint_golden as tcg
finally:
    sys.argv = _argv
    sys.path.pop(0)

LABELS = {"background": 0, "kidney": 1, "tumor": 2, "cyst": 3}
# (weight scale, bias offsets) applied to the full-resolution segmentation layer before saving
SEG_LAYER_TWEAK = {
    "regions_aniso": (1.0, [0.88, -0.12, 0.14]),
    "cascade_lowres": (1.0, [0.0, 0.44, 0.59, 0.14]),
    "cascade_fullres": (1.0, [0.0, 0.77, -1.8, -0.76]),
    "resenc_ct": (1.0, [0.0, -0.42, -1.11, -0.16]),
}


# ------------------------------------------------------------------ plans
def plain_arch(kernel_sizes, strides):
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 3, "features_per_stage": [2, 4, 8], "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": kernel_sizes, "strides": strides,
            "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def config(identifier, spacing, patch, arch, median):
    return {"data_identifier": identifier, "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": patch, "median_image_size_in_voxels": median, "spacing": spacing,
            "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False], **tcg.RESAMPLING,
            "architecture": arch, "batch_dice": True}


def regions_plans():
    p = tcg.plans_common("Dataset904_TinyKiTS", "NibabelIOWithReorient", [2, 0, 1], [1, 2, 0], 1)
    p["configurations"] = {"3d_fullres": config(
        "nnUNetPlans_3d_fullres", [3.0, 0.8, 0.8], [8, 16, 16],
        plain_arch([[1, 3, 3], [3, 3, 3], [3, 3, 3]], [[1, 1, 1], [1, 2, 2], [2, 2, 2]]), [104.0, 400.0, 400.0])}
    # KiTS23's dataset.json (dataset_conversion/Dataset220_KiTS2023.py), key order as there
    ds = {"channel_names": {"0": "CT"},
          "labels": {"background": 0, "kidney": [1, 2, 3], "masses": [2, 3], "tumor": 2},
          "regions_class_order": [1, 3, 2], "numTraining": 489, "file_ending": ".nii.gz"}
    return p, ds


def cascade_plans():
    p = tcg.plans_common("Dataset905_TinyCascade", "SimpleITKIO", [2, 0, 1], [1, 2, 0], 1)
    arch = plain_arch([[3, 3, 3], [3, 3, 3], [3, 3, 3]], [[1, 1, 1], [2, 2, 2], [2, 2, 2]])
    full = config("nnUNetPlans_3d_fullres", [2.0, 1.0, 1.0], [16, 16, 16], arch, [60.0, 240.0, 240.0])
    low = copy.deepcopy(full)
    low.update({"data_identifier": "nnUNetPlans_3d_lowres", "spacing": [4.0, 2.0, 2.0], "patch_size": [8, 8, 8],
                "median_image_size_in_voxels": [30.0, 120.0, 120.0], "next_stage": "3d_cascade_fullres"})
    p["configurations"] = {
        "3d_fullres": full,
        "3d_lowres": low,
        "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
    }
    ds = {"channel_names": {"0": "CT"}, "labels": dict(LABELS), "numTraining": 10, "file_ending": ".nii.gz"}
    return p, ds


def resenc_ct_plans():
    rp, _ = tcg.resenc_plans()
    p = tcg.plans_common("Dataset906_TinyResEncCT", "SimpleITKIO", [0, 1, 2], [0, 1, 2], 1)
    p["plans_name"] = "nnUNetResEncUNetMPlans"
    p["configurations"] = {"3d_fullres": config(
        "nnUNetResEncUNetMPlans_3d_fullres", [1.0, 1.0, 1.0], [16, 16, 16],
        copy.deepcopy(rp["configurations"]["3d_fullres"]["architecture"]), [200.0, 200.0, 200.0])}
    ds = {"channel_names": {"0": "CT"}, "labels": dict(LABELS), "numTraining": 10, "file_ending": ".nii.gz"}
    return p, ds


@contextlib.contextmanager
def seg_layer_tweak(name):
    """Rescale/shift the full-resolution seg layer in the checkpoint dict right before torch.save (in place,
    so build_and_save's <name>.json hashes the tweaked tensors too)."""
    real = torch.save
    tweak = SEG_LAYER_TWEAK.get(name)

    def save(obj, f, *a, **k):
        if tweak is not None and isinstance(obj, dict) and "network_weights" in obj:
            sd = obj["network_weights"]
            last = max(int(k.split(".")[2]) for k in sd if k.startswith("decoder.seg_layers."))
            with torch.no_grad():
                sd[f"decoder.seg_layers.{last}.weight"].mul_(tweak[0])
                sd[f"decoder.seg_layers.{last}.bias"].add_(torch.tensor(tweak[1]))
        if isinstance(obj, dict) and "network_weights" in obj:
            # f16-representable weights: nephrod's bundles store f16, so both sides then run the
            # very same numbers and the comparison measures the pipeline, not the weight format.
            with torch.no_grad():
                for v in obj["network_weights"].values():
                    if v.is_floating_point():
                        v.copy_(v.half().float())
        return real(obj, f, *a, **k)

    torch.save = save
    try:
        yield
    finally:
        torch.save = real


def build(name, plans, ds, configuration, folds, seed):
    with seg_layer_tweak(name):
        tcg.build_and_save(MODELS / name, plans, ds, configuration, folds, "nnUNetTrainer", (0, 1, 2), seed)
    return MODELS / name


# ------------------------------------------------------------------ inputs
def phantom(rng, shape, zero_rows=2):
    """int16 HU (a0, a1, a2): air outside an elliptic body in the (a1, a2) planes, soft tissue 40 ± 25,
    a bright blob (~160), a fat blob (~-100), a bone rod (~700) and zero rows a1 < zero_rows."""
    a, b, c = shape
    i0, i1, i2 = np.meshgrid(np.arange(a), np.arange(b), np.arange(c), indexing="ij")
    body = ((i1 - b / 2) / (b / 2.3)) ** 2 + ((i2 - c / 2) / (c / 2.2)) ** 2 < 1
    img = np.where(body, 40 + rng.normal(0, 25, shape), -1000.0)
    blob = ((i0 - a / 2) / (a / 3.2)) ** 2 + ((i1 - 0.42 * b) / (b / 6.5)) ** 2 + ((i2 - 0.33 * c) / (c / 6)) ** 2 < 1
    img[blob] = 160 + rng.normal(0, 20, blob.sum())
    fat = ((i0 - a / 3) / (a / 4)) ** 2 + ((i1 - 0.62 * b) / (b / 7)) ** 2 + ((i2 - 0.65 * c) / (c / 6)) ** 2 < 1
    img[fat] = -100 + rng.normal(0, 15, fat.sum())
    bone = ((i1 - 0.7 * b) / (b / 12)) ** 2 + ((i2 - 0.4 * c) / (c / 12)) ** 2 < 1
    img[bone] = 700 + rng.normal(0, 50, bone.sum())
    img[:, :zero_rows, :] = 0
    return np.rint(img).astype(np.int16)


def write_sitk(arr_zyx, spacing_xyz, origin, path):
    im = sitk.GetImageFromArray(arr_zyx)
    im.SetSpacing(spacing_xyz)
    im.SetOrigin(origin)
    sitk.WriteImage(im, str(path))


def voxels_nib(path):
    """The file's voxel grid (I, J, K) as nibabel indexes it."""
    return np.asarray(nib.load(str(path)).dataobj)


# ------------------------------------------------------------------ prediction
def predict(model, folds, ct, mirror, prev_seg=None):
    """predict_from_files_sequential on one case in a fresh temp dir (the caller removes it); returns
    (temp dir, nnU-Net's seg file, the npz probabilities, the array that went into the sliding window)."""
    pred = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror,
                           perform_everything_on_device=False, device=torch.device("cpu"),
                           verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    pred.initialize_from_trained_model_folder(str(model), use_folds=folds, checkpoint_name="checkpoint_final.pth")
    captured = []
    real = pred.predict_logits_from_preprocessed_data

    def spy(data):
        captured.append(data.clone())
        return real(data)

    pred.predict_logits_from_preprocessed_data = spy
    tmp = Path(tempfile.mkdtemp())
    (tmp / "out").mkdir()
    shutil.copy(ct, tmp / "case_0000.nii.gz")  # caseid = name minus _0000 + file_ending
    prev_dir = None
    if prev_seg is not None:
        prev_dir = tmp / "prev"
        prev_dir.mkdir()
        shutil.copy(prev_seg, prev_dir / "case.nii.gz")
    pred.predict_from_files_sequential([[str(tmp / "case_0000.nii.gz")]], [str(tmp / "out" / "case")],
                                       save_probabilities=True, overwrite=True,
                                       folder_with_segs_from_prev_stage=None if prev_dir is None else str(prev_dir))
    probs = np.load(tmp / "out" / "case.npz")["probabilities"]
    assert probs.dtype == np.float32, probs.dtype
    assert len(captured) == 1
    return tmp, tmp / "out" / "case.nii.gz", probs, captured[0].numpy()


def decode(probs_ckji, regions_class_order):
    if regions_class_order is None:
        return probs_ckji.argmax(0)
    seg = np.zeros(probs_ckji.shape[1:], np.uint16)
    for i, c in enumerate(regions_class_order):
        seg[probs_ckji[i] > 0.5] = c
    return seg


def store_run(vdir, run, seg_file, probs, reader, ct_file, rco, summary):
    """Copy nnU-Net's seg, map its probabilities onto the seg file's voxel grid as (C, K, J, I), prove it."""
    shutil.copy(seg_file, vdir / f"seg_{run}.nii.gz")
    seg_ijk = voxels_nib(vdir / f"seg_{run}.nii.gz")
    if reader == "SimpleITKIO":
        p = probs  # (C, z, y, x) = (C, K, J, I) already
    else:
        # npz is in the reader's array order: (C, z, y, x) of the RAS-reoriented image. Undo it like write_seg.
        orig = nib.load(str(ct_file)).affine
        from_canonical = ornt_transform(axcodes2ornt("RAS"), io_orientation(orig))
        p_ras = probs.transpose(0, 3, 2, 1)  # (C, I', J', K') reoriented voxel grid
        p_ijk = np.stack([apply_orientation(c, from_canonical) for c in p_ras])
        p = p_ijk.transpose(0, 3, 2, 1)
    p = np.ascontiguousarray(p, dtype=np.float32)
    assert p.shape[1:] == seg_ijk.shape[::-1], (p.shape, seg_ijk.shape)
    dec = decode(p, rco)
    assert np.array_equal(dec, seg_ijk.transpose(2, 1, 0)), f"{run}: decoded probabilities != seg file"
    save_file({"probabilities": p}, str(vdir / f"prob_{run}.safetensors"))
    labels, counts = np.unique(seg_ijk, return_counts=True)
    summary[run] = {"seg_dtype": str(seg_ijk.dtype), "shape_ijk": list(seg_ijk.shape),
                    "prob_shape": list(p.shape),
                    "label_counts": {str(int(l)): int(c) for l, c in zip(labels, counts)}}
    print(vdir.name, run, summary[run]["label_counts"])
    return seg_ijk


def labels_ok(counts, n, minimum):
    good = [l for l, c in counts.items() if c >= minimum]
    return len(good) >= n


# ------------------------------------------------------------------ variants
def regions_variant(rng):
    vdir = OUT / "regions_aniso"
    vdir.mkdir(parents=True, exist_ok=True)
    p, ds = regions_plans()
    model = build("regions_aniso", p, ds, "3d_fullres", [0, 1], 500)
    # file voxel grid (I, J, K) = (x, y, z) 36 x 40 x 14, LPS-like storage (x and y flipped), origin != 0
    vol = phantom(rng, (14, 40, 36)).transpose(2, 1, 0)  # (z, y, x) -> (I, J, K)
    zooms = (0.8, 0.75, 2.0)
    aff = np.diag([-zooms[0], -zooms[1], zooms[2], 1.0])
    aff[:3, 3] = [41.5, 27.0, -63.0]
    img = nib.Nifti1Image(vol, aff)
    img.header.set_xyzt_units("mm")
    ct = vdir / "ct.nii.gz"
    nib.save(img, str(ct))
    summary = {"input": {"shape_ijk": list(vol.shape), "zooms": list(zooms), "affine": aff.tolist(),
                         "axcodes": "".join(nib.aff2axcodes(aff))}}
    for run, mirror in (("tta", True), ("notta", False)):
        tmp, seg, probs, _ = predict(model, (0, 1), ct, mirror)
        store_run(vdir, run, seg, probs, "NibabelIOWithReorient", ct, [1, 3, 2], summary)
        summary[run]["properties"] = _props(tmp)
        shutil.rmtree(tmp)
    return summary


def _props(tmp):
    with open(tmp / "out" / "case.pkl", "rb") as f:
        pr = pickle.load(f)
    return {"spacing": [float(v) for v in pr["spacing"]],
            "shape_before_cropping": [int(v) for v in pr["shape_before_cropping"]],
            "bbox_used_for_cropping": [[int(a), int(b)] for a, b in pr["bbox_used_for_cropping"]],
            "shape_after_cropping_and_before_resampling":
                [int(v) for v in pr["shape_after_cropping_and_before_resampling"]]}


def cascade_variant(rng):
    vdir = OUT / "cascade"
    vdir.mkdir(parents=True, exist_ok=True)
    p, ds = cascade_plans()
    low = build("cascade_lowres", p, ds, "3d_lowres", [0], 600)
    full = build("cascade_fullres", p, ds, "3d_cascade_fullres", [0], 700)
    vol = phantom(rng, (36, 40, 14))  # sitk array (z, y, x); x is the thick axis (2.4 mm)
    vol[:, 2:9, :3] = 0  # zero block touching the x = 0 edge: not a hole -> -1 in the cropped prev seg
    ct = vdir / "ct.nii.gz"
    write_sitk(vol, (2.4, 0.75, 0.8), (-17.0, 22.5, 140.0), ct)
    summary = {"input": {"sitk_size_xyz": [14, 40, 36], "spacing_xyz": [2.4, 0.75, 0.8]}}

    tmp, seg, probs, _ = predict(low, (0,), ct, True)
    store_run(vdir, "lowres", seg, probs, "SimpleITKIO", ct, None, summary)
    summary["lowres"]["properties"] = _props(tmp)
    shutil.rmtree(tmp)
    lowres = vdir / "seg_lowres.nii.gz"

    tmp, seg, probs, x_run = predict(full, (0,), ct, True, prev_seg=lowres)
    store_run(vdir, "cascade", seg, probs, "SimpleITKIO", ct, None, summary)
    summary["cascade"]["properties"] = _props(tmp)
    shutil.rmtree(tmp)

    # the exact sliding-window input, recomputed the way predict_from_files_sequential does it
    pm = PlansManager(json.loads((full / "plans.json").read_text()))
    cm = pm.get_configuration("3d_cascade_fullres")
    lm = pm.get_label_manager(ds)
    data, pseg, props = DefaultPreprocessor(verbose=False).run_case([str(ct)], str(lowres), pm, cm, ds)
    onehot = convert_labelmap_to_one_hot(pseg[0], lm.foreground_labels, data.dtype)
    data = np.vstack((data, onehot))
    assert data.dtype == np.float32 and np.array_equal(data, x_run), "preprocessing differs from the predictor's"
    save_file({"data": np.ascontiguousarray(data), "seg": np.ascontiguousarray(pseg)},
              str(vdir / "cascade_preprocessed.safetensors"))
    sl, sc = np.unique(pseg, return_counts=True)
    orig_sp = [props["spacing"][i] for i in pm.transpose_forward]
    sep, axis = determine_do_sep_z_and_axis(None, orig_sp, cm.spacing)
    meta = {"spacing": [float(v) for v in props["spacing"]],
            "shape_before_cropping": [int(v) for v in props["shape_before_cropping"]],
            "bbox_used_for_cropping": [[int(a), int(b)] for a, b in props["bbox_used_for_cropping"]],
            "shape_after_cropping_and_before_resampling":
                [int(v) for v in props["shape_after_cropping_and_before_resampling"]],
            "data_shape": list(data.shape), "seg_dtype": str(pseg.dtype),
            "foreground_labels": [int(v) for v in lm.foreground_labels],
            "target_spacing": list(cm.spacing), "separate_z_axis": int(axis) if sep else None,
            "resampled_prev_seg_label_counts": {str(int(l)): int(c) for l, c in zip(sl, sc)}}
    (vdir / "cascade_preprocessed.json").write_text(json.dumps(meta, indent=1) + "\n")
    summary["cascade_preprocessed"] = meta

    # the cascade output must depend on the previous stage: an all-zero previous segmentation changes it
    zero = sitk.ReadImage(str(lowres))
    zimg = sitk.GetImageFromArray(np.zeros_like(sitk.GetArrayFromImage(zero)))
    zimg.CopyInformation(zero)
    ztmp = Path(tempfile.mkdtemp())
    sitk.WriteImage(zimg, str(ztmp / "zero.nii.gz"))
    tmp, seg0, probs0, _ = predict(full, (0,), ct, True, prev_seg=ztmp / "zero.nii.gz")
    s0 = sitk.GetArrayFromImage(sitk.ReadImage(str(seg0)))
    s1 = sitk.GetArrayFromImage(sitk.ReadImage(str(vdir / "seg_cascade.nii.gz")))
    changed = int((s0 != s1).sum())
    assert not np.array_equal(probs0, probs) and changed > 0, "cascade output ignores the previous stage"
    summary["cascade"]["voxels_changed_with_zero_prev_seg"] = changed
    shutil.rmtree(tmp)
    shutil.rmtree(ztmp)
    return summary


def resenc_variant(rng):
    vdir = OUT / "resenc_ct"
    vdir.mkdir(parents=True, exist_ok=True)
    p, ds = resenc_ct_plans()
    model = build("resenc_ct", p, ds, "3d_fullres", [0], 800)
    vol = phantom(rng, (14, 40, 36))
    ct = vdir / "ct.nii.gz"
    write_sitk(vol, (0.9, 0.85, 1.2), (12.0, -40.25, 77.0), ct)
    summary = {"input": {"sitk_size_xyz": [36, 40, 14], "spacing_xyz": [0.9, 0.85, 1.2]}}
    tmp, seg, probs, _ = predict(model, (0,), ct, True)
    store_run(vdir, "tta", seg, probs, "SimpleITKIO", ct, None, summary)
    summary["tta"]["properties"] = _props(tmp)
    shutil.rmtree(tmp)
    return summary


# ------------------------------------------------------------------ resize_segmentation
RESIZE_CASES = [
    # name, shape (1, X, Y, Z), current spacing, new spacing
    ("up_iso", (1, 10, 12, 11), (1.5, 1.5, 1.5), (1.0, 1.0, 1.0)),
    ("down_iso", (1, 20, 18, 17), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0)),  # factor 2 on X, Y: exact 0.5 ties
    ("aniso_sep_z", (1, 16, 14, 10), (0.8, 0.8, 3.0), (1.0, 1.0, 2.0)),  # lowres axis 2 (largest spacing)
    ("unchanged", (1, 12, 12, 12), (1.0, 1.0, 1.0), (1.02, 0.98, 1.0)),  # shape rounds to the same
]


def label_field(rng, shape):
    """Blocky labels 0..3 with a sphere of 3 and a -1 corner (outside the nonzero mask)."""
    _, x, y, z = shape
    coarse = rng.integers(0, 4, (4, 4, 4))
    ix = (np.arange(x) * 4 // x)[:, None, None]
    iy = (np.arange(y) * 4 // y)[None, :, None]
    iz = (np.arange(z) * 4 // z)[None, None, :]
    seg = coarse[ix, iy, iz].astype(np.int16)
    gx, gy, gz = np.meshgrid(np.arange(x), np.arange(y), np.arange(z), indexing="ij")
    seg[((gx - x / 2) / (x / 4)) ** 2 + ((gy - y / 2) / (y / 4)) ** 2 + ((gz - z / 2) / (z / 4)) ** 2 < 1] = 3
    seg[: x // 4, : y // 3, :] = -1
    assert set(np.unique(seg)) == {-1, 0, 1, 2, 3}
    return seg[None]


def resize_segmentation_golden(rng):
    vdir = OUT / "resize_segmentation"
    vdir.mkdir(parents=True, exist_ok=True)
    tensors, cases = {}, []
    for name, shape, cur, new in RESIZE_CASES:
        seg = label_field(rng, shape)
        new_shape = [int(v) for v in compute_new_shape(shape[1:], cur, new)]
        sep, axis = determine_do_sep_z_and_axis(None, cur, new)
        out = resample_data_or_seg_to_shape(seg, new_shape, cur, new, is_seg=True, order=1, order_z=0,
                                            force_separate_z=None)
        # the cascade feeds float32 (read_seg); same labels either way
        out_f = resample_data_or_seg_to_shape(seg.astype(np.float32), new_shape, cur, new, is_seg=True, order=1,
                                              order_z=0, force_separate_z=None)
        assert out.dtype == np.int16 and np.array_equal(out, out_f.astype(np.int16))
        tensors[f"{name}_input"] = np.ascontiguousarray(seg)
        tensors[f"{name}_output"] = np.ascontiguousarray(out)
        lo, co = np.unique(out, return_counts=True)
        cases.append({"name": name, "input_shape": list(shape), "current_spacing": list(cur), "new_spacing": list(new),
                      "new_shape": new_shape, "separate_z": bool(sep), "separate_axis": int(axis) if sep else None,
                      "shape_unchanged": list(shape[1:]) == new_shape,
                      "output_label_counts": {str(int(l)): int(c) for l, c in zip(lo, co)}})
        print("resize_segmentation", name, shape, "->", new_shape, "sep", axis if sep else None)
    save_file(tensors, str(vdir / "resize_segmentation.safetensors"))
    (vdir / "resize_segmentation.json").write_text(json.dumps({
        "generator": "tools/oracle/nnunet_variants_golden.py",
        "call": "resample_data_or_seg_to_shape(seg, new_shape, current_spacing, new_spacing, is_seg=True, "
                "order=1, order_z=0, force_separate_z=None)",
        "dtype": "int16", "cases": cases}, indent=1) + "\n")


def main():
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    summary = {"generator": "tools/oracle/nnunet_variants_golden.py"}
    summary["regions_aniso"] = regions_variant(np.random.default_rng(21))
    summary["cascade"] = cascade_variant(np.random.default_rng(22))
    summary["resenc_ct"] = resenc_variant(np.random.default_rng(23))
    resize_segmentation_golden(np.random.default_rng(24))
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for v in ("regions_aniso", "cascade", "resenc_ct"):
        for run, s in summary[v].items():
            if isinstance(s, dict) and "label_counts" in s:
                need = 3 if run == "lowres" else 2
                assert labels_ok(s["label_counts"], need, 100), (v, run, s["label_counts"])


if __name__ == "__main__":
    if len(sys.argv) != 1:
        sys.exit(__doc__)
    main()
