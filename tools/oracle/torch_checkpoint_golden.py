#!/usr/bin/env python3
"""Goldens for the PyTorch checkpoint reader and the nnU-Net v2 importer (src/models).

usage: .cache/nnunet-venv/bin/python tools/oracle/torch_checkpoint_golden.py tests/data/models
Pinned: torch 2.15 (CPU), nnunetv2 2.8.1, dynamic-network-architectures 0.4.4, numpy 2.4.6 from
tools/oracle/requirements-nnunet.txt (the venv made by tools/oracle/verify_nnunet_dataset.sh).
Deterministic: fixed seeds, one thread; re-running reproduces every zip checkpoint byte for byte
(checked); only torch/legacy.pth (old format, storage keys from object ids) differs per run.

Writes
* torch/basic_p2.pth, torch/basic_p4.pth — one dict saved with pickle protocol 2 (torch's default)
  and 4: f32/f16/bf16/f64/i64 tensors, an alias of one tensor, a transposed (non-contiguous) view,
  an offset view, an expanded (stride 0) view, a 0-d and an empty tensor, an OrderedDict nested in
  a dict, torch.device, numpy scalars, None, tuples, ints (incl. > 64 bit), str, bytes, set,
  frozenset, complex, a list referenced twice; torch/basic.json describes every value and tensor
  (dtype, shape, strides, offset, storage key, values as f32 and rounded to f16).
* torch/evil.pth — a checkpoint whose pickle calls os.system (the reader must refuse it);
  torch/legacy.pth — the pre-1.6 non-zip format (refused with a typed error).
* nnunet/<variant>/ — tiny trained-model folders (plans.json, dataset.json,
  fold_<k>/checkpoint_final.pth) written like nnUNetTrainer.save_checkpoint, with networks built by
  nnunetv2's own get_network_from_plans (deep supervision on, as in training) so the state_dict
  keys are the real ones; nnunet/<variant>.json records what nnunetv2's PlansManager /
  ConfigurationManager / LabelManager make of them and, per fold, every unique tensor's shape and
  the SHA-256 of its f16 bytes (torch `.half()`).
  Variants: plain (v2.3+ plans, PlainConvUNet, labels, 2 folds), resenc (ResidualEncoderUNet with a
  stride-1 stage, 2 channels CT + z-score, regions), oldfmt (v2.0–2.2 plans, cascade stage with
  inherits_from, checkpoint without inference_allowed_mirroring_axes), custom_trainer (plain with
  trainer_name nnUNetTrainerMyFancyNet).
"""
import collections
import copy
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
OUT = Path(sys.argv[1])


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ------------------------------------------------------------------ generic checkpoint golden
def describe(v, storages):
    """The JSON shape the Rust test builds from the parsed value tree."""
    if v is None:
        return {"t": "none"}
    if isinstance(v, bool):
        return {"t": "bool", "v": v}
    if isinstance(v, (np.floating,)):
        return {"t": "float", "v": float(v)}
    if isinstance(v, (np.integer,)):
        return {"t": "int", "v": str(int(v))}
    if isinstance(v, int):
        return {"t": "int", "v": str(v)}
    if isinstance(v, float):
        return {"t": "float", "v": v}
    if isinstance(v, complex):
        return {"t": "complex", "v": [v.real, v.imag]}
    if isinstance(v, str):
        return {"t": "str", "v": v}
    if isinstance(v, bytes):
        return {"t": "bytes", "v": v.hex()}
    if isinstance(v, torch.device):
        return {"t": "device", "v": str(v)}
    if isinstance(v, tuple):
        return {"t": "tuple", "v": [describe(x, storages) for x in v]}
    if isinstance(v, list):
        return {"t": "list", "v": [describe(x, storages) for x in v]}
    if isinstance(v, (set, frozenset)):
        return {"t": "set", "v": sorted(describe(x, storages)["v"] for x in v)}
    if isinstance(v, dict):
        return {"t": "dict", "v": [[describe(k, storages), describe(x, storages)] for k, x in v.items()]}
    if isinstance(v, torch.Tensor):
        ptr = v.untyped_storage().data_ptr()
        storages.setdefault(ptr, len(storages))
        d = {
            "t": "tensor",
            "dtype": str(v.dtype).replace("torch.", ""),
            "shape": list(v.shape),
            "stride": list(v.stride()),
            "offset": v.storage_offset(),
            "storage": storages[ptr],
        }
        if v.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            d["f32"] = [float(x) for x in v.float().flatten().tolist()]
            d["f16"] = [float(x) for x in v.half().float().flatten().tolist()]
        return d
    raise TypeError(type(v))


def basic_checkpoint():
    g = torch.Generator().manual_seed(5)
    base = torch.randn(4, 5, generator=g)
    sd = collections.OrderedDict()
    sd["f32"] = base
    sd["alias"] = base
    sd["transposed"] = base.t()
    sd["offset_view"] = base[1:3, 2:]
    sd["f16"] = torch.randn(3, 2, 2, generator=g).half()
    sd["bf16"] = torch.randn(7, generator=g).bfloat16()
    # f64 values whose f64->f16 rounding differs from f64->f32->f16 (torch goes through f32).
    sd["f64"] = torch.tensor([1.0 + 2.0**-11 + 2.0**-40, -(1.0 + 2.0**-11 + 2.0**-40), 0.1, 1e-9, 65504.0],
                             dtype=torch.float64)
    sd["expanded"] = torch.randn(3, 1, generator=g).expand(3, 4)
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["long"] = torch.arange(5)
    shared = [1, 2]
    return {
        "weights": sd,
        "device": torch.device("cpu"),
        "cuda": torch.device("cuda", 1),
        "np_f8": np.float64(0.1),
        "np_f4": np.float32(1.25),
        "np_i8": np.int64(-7),
        "none": None,
        "tuple": (1, (2, "x"), []),
        "big": 2**70 + 3,
        "neg_big": -(2**65),
        "neg": -5,
        "i32": 2**31 + 5,
        "flag": True,
        "off": False,
        "tiny": 1e-300,
        "text": "ünïcode ✓",
        "raw": b"\x00\x01\xff",
        "set": {3, 1, 2},
        "frozen": frozenset({"a"}),
        "complex": complex(1.5, -2.0),
        "shared": [shared, shared],
        7: "int key",
    }


def write_basic():
    d = OUT / "torch"
    d.mkdir(parents=True, exist_ok=True)
    ck = basic_checkpoint()
    torch.save(ck, d / "basic_p2.pth")
    torch.save(ck, d / "basic_p4.pth", pickle_protocol=4)
    storages = {}
    desc = describe(ck, storages)
    (d / "basic.json").write_text(json.dumps({"torch_version": torch.__version__, "value": desc}, indent=1))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    torch.save({"network_weights": collections.OrderedDict(), "x": Evil()}, d / "evil.pth")
    torch.save({"a": torch.ones(2)}, d / "legacy.pth", _use_new_zipfile_serialization=False)


# ------------------------------------------------------------------ nnU-Net model folders
def ct_props(mean, std):
    return {"max": 3071.0, "mean": mean, "median": mean + 3.0, "min": -1024.0,
            "percentile_00_5": -958.0, "percentile_99_5": 1290.0 + mean / 10, "std": std}


RESAMPLING = {
    "resampling_fn_data": "resample_data_or_seg_to_shape",
    "resampling_fn_seg": "resample_data_or_seg_to_shape",
    "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
    "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
    "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
    "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
}


def plans_common(name, reader, transpose_forward, transpose_backward, channels):
    return {
        "dataset_name": name,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [3.0, 0.78125, 0.78125],
        "original_median_shape_after_transp": [104, 512, 512],
        "image_reader_writer": reader,
        "transpose_forward": transpose_forward,
        "transpose_backward": transpose_backward,
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(c): ct_props(80.0 + 20 * c, 60.0 + c) for c in range(channels)},
    }


def plain_plans():
    p = plans_common("Dataset901_Tiny", "SimpleITKIO", [2, 0, 1], [1, 2, 0], 1)
    p["configurations"] = {
        "3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": [16, 16, 16], "median_image_size_in_voxels": [104.0, 400.0, 400.0],
            "spacing": [3.0, 0.78125, 0.78125], "normalization_schemes": ["CTNormalization"],
            "use_mask_for_norm": [False], **RESAMPLING,
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {
                    "n_stages": 3, "features_per_stage": [2, 4, 8],
                    "conv_op": "torch.nn.modules.conv.Conv3d",
                    "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
                    "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
                    "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2],
                    "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                    "dropout_op": None, "dropout_op_kwargs": None,
                    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
                },
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
            },
            "batch_dice": True,
        },
        "3d_lowres_unused": {"inherits_from": "3d_fullres", "spacing": [3.0, 1.5, 1.5]},
    }
    ds = {"channel_names": {"0": "CT"},
          "labels": {"background": 0, "kidney": 1, "tumor": 2, "cyst": 3},
          "numTraining": 10, "file_ending": ".nii.gz"}
    return p, ds


def resenc_plans():
    p = plans_common("Dataset902_TinyRes", "NibabelIOWithReorient", [0, 1, 2], [0, 1, 2], 2)
    p["plans_name"] = "nnUNetResEncUNetMPlans"
    p["configurations"] = {
        "3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": [16, 16, 16], "median_image_size_in_voxels": [300.0, 300.0, 300.0],
            "spacing": [0.8, 0.8, 0.8], "normalization_schemes": ["CTNormalization", "ZScoreNormalization"],
            "use_mask_for_norm": [False, True], **RESAMPLING,
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
                "arch_kwargs": {
                    "n_stages": 3, "features_per_stage": [2, 4, 8],
                    "conv_op": "torch.nn.modules.conv.Conv3d",
                    "kernel_sizes": [[3, 3, 3], [3, 3, 3], [3, 3, 3]],
                    "strides": [[1, 1, 1], [2, 2, 2], [1, 1, 1]],
                    "n_blocks_per_stage": [1, 2, 2], "n_conv_per_stage_decoder": [1, 1],
                    "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                    "dropout_op": None, "dropout_op_kwargs": None,
                    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
                },
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
            },
            "batch_dice": False,
        },
    }
    # KiTS23-style regions, deliberately not in sorted key order.
    ds = {"channel_names": {"0": "CT", "1": "T2"},
          "labels": {"background": 0, "kidney": [1, 2, 3], "masses": [2, 3], "tumor": 2},
          "regions_class_order": [1, 3, 2],
          "numTraining": 10, "file_ending": ".nii.gz"}
    return p, ds


def old_plans():
    p = plans_common("Dataset903_TinyOld", "SimpleITKIO", [0, 1, 2], [0, 1, 2], 1)
    base = {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2, "patch_size": [16, 16, 16], "median_image_size_in_voxels": [100.0, 100.0, 100.0],
        "spacing": [1.0, 1.0, 1.0], "normalization_schemes": ["CTNormalization"],
        "use_mask_for_norm": [False], "UNet_class_name": "PlainConvUNet", "UNet_base_num_features": 4,
        "n_conv_per_stage_encoder": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2],
        "num_pool_per_axis": [2, 2, 2], "pool_op_kernel_sizes": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        "conv_kernel_sizes": [[3, 3, 3], [3, 3, 3], [3, 3, 3]], "unet_max_num_features": 6,
        **RESAMPLING, "batch_dice": True,
    }
    low = copy.deepcopy(base)
    low.update({"data_identifier": "nnUNetPlans_3d_lowres", "spacing": [2.0, 2.0, 2.0],
                "next_stage": "3d_cascade_fullres"})
    p["configurations"] = {
        "3d_fullres": base,
        "3d_lowres": low,
        "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
    }
    ds = {"channel_names": {"0": "CT"},
          "labels": {"background": 0, "kidney": 1, "tumor": 2, "cyst": 3},
          "numTraining": 10, "file_ending": ".nii.gz"}
    return p, ds


def build_and_save(folder, plans, ds, configuration, folds, trainer_name, mirror_axes, seed, step=True):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.training.logging.nnunet_logger import MetaLogger

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=4))
    (folder / "dataset.json").write_text(json.dumps(ds, indent=4))

    pm = PlansManager(copy.deepcopy(plans))
    cm = pm.get_configuration(configuration)
    lm = pm.get_label_manager(ds)
    n_in = determine_num_input_channels(pm, cm, ds)
    n_out = lm.num_segmentation_heads
    expected = {
        "configuration": configuration,
        "dataset_name": pm.dataset_name,
        "image_reader_writer": plans["image_reader_writer"],
        "transpose_forward": pm.transpose_forward,
        "transpose_backward": pm.transpose_backward,
        "patch_size": cm.patch_size,
        "spacing": cm.spacing,
        "normalization_schemes": cm.normalization_schemes,
        "use_mask_for_norm": cm.use_mask_for_norm,
        "foreground_intensity_properties_per_channel": plans["foreground_intensity_properties_per_channel"],
        "resampling_kwargs": {k: cm.configuration[k + "_kwargs"] for k in
                              ("resampling_fn_data", "resampling_fn_seg", "resampling_fn_probabilities")},
        "network_class_name": cm.network_arch_class_name,
        "arch_kwargs": cm.network_arch_init_kwargs,
        "num_input_channels": n_in,
        "num_segmentation_heads": n_out,
        "has_regions": lm.has_regions,
        "foreground_labels": [int(x) for x in lm.foreground_labels],
        "foreground_regions": [[int(x) for x in r] if isinstance(r, (list, tuple)) else [int(r)]
                               for r in lm.foreground_regions]
        if lm.has_regions else None,
        "regions_class_order": [int(x) for x in lm.regions_class_order] if lm.regions_class_order else None,
        "all_labels": [int(x) for x in lm.all_labels],
        "previous_stage": cm.previous_stage_name,
        "trainer_name": trainer_name,
        "mirror_axes": list(mirror_axes) if mirror_axes is not None else None,
        "folds": {},
    }
    for i, fold in enumerate(folds):
        torch.manual_seed(seed + i)
        net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, n_in, n_out,
                                     allow_init=True, deep_supervision=True)
        # Norm weights/biases are initialised to 1/0; perturb them so the test sees real values.
        with torch.no_grad():
            for name, p in net.named_parameters():
                if ".norm." in name or "all_modules.1" in name:
                    p.add_(torch.randn_like(p) * 0.1)
        opt = torch.optim.SGD(net.parameters(), 0.01, weight_decay=3e-5, momentum=0.99, nesterov=True)
        if i == 0 and step:
            # one step so that the optimizer state holds momentum buffers like a real checkpoint
            x = torch.randn(1, n_in, *cm.patch_size)
            out = net(x)
            sum(o.float().mean() for o in out).backward()
            opt.step()
            opt.zero_grad()
        logger = MetaLogger(str(folder), False)
        for ep in range(2):
            logger.log("mean_fg_dice", np.float64(0.5 + ep / 10), ep)
            logger.log("dice_per_class_or_region", [np.float64(0.3), np.float64(0.6)], ep)
            logger.log("train_losses", np.float32(-0.5), ep)
            logger.log("val_losses", np.float32(-0.4), ep)
            logger.log("lrs", 0.01, ep)
            logger.log("epoch_start_timestamps", 1.7e9 + ep, ep)
            logger.log("epoch_end_timestamps", 1.7e9 + ep + 0.5, ep)
        ck = {
            "network_weights": net.state_dict(),
            "optimizer_state": opt.state_dict(),
            "grad_scaler_state": None,
            "logging": logger.get_checkpoint(),
            "_best_ema": 0.5,
            "current_epoch": 1000,
            "init_args": {"plans": plans, "configuration": configuration, "fold": fold,
                          "dataset_json": ds, "device": torch.device("cpu")},
            "trainer_name": trainer_name,
        }
        if mirror_axes is not None:
            ck["inference_allowed_mirroring_axes"] = mirror_axes
        fdir = folder / f"fold_{fold}"
        fdir.mkdir()
        path = fdir / "checkpoint_final.pth"
        torch.save(ck, path)
        sd = net.state_dict()
        unique = {k: v for k, v in sd.items() if "all_modules" not in k and not k.startswith("decoder.encoder.")}
        ptrs = [v.untyped_storage().data_ptr() for v in unique.values()]
        assert len(set(ptrs)) == len(ptrs), "alias left after filtering"
        expected["folds"][str(fold)] = {
            "checkpoint_sha256": sha(path.read_bytes()),
            "n_state_dict_entries": len(sd),
            "parameters": sum(v.numel() for v in unique.values()),
            "tensors": {k: {"shape": list(v.shape), "f16_sha256": sha(v.half().contiguous().numpy().tobytes()),
                            "first_f16": float(v.flatten()[0].half()) if v.numel() else None}
                        for k, v in unique.items()},
        }
    expected["plans_sha256"] = sha((folder / "plans.json").read_bytes())
    expected["dataset_sha256"] = sha((folder / "dataset.json").read_bytes())
    (folder.parent / f"{folder.name}.json").write_text(json.dumps(expected, indent=1))


def write_nnunet():
    d = OUT / "nnunet"
    d.mkdir(parents=True, exist_ok=True)
    p, ds = plain_plans()
    build_and_save(d / "plain", p, ds, "3d_fullres", [0, 1], "nnUNetTrainer", (0, 1, 2), 100)
    p, ds = resenc_plans()
    build_and_save(d / "resenc", p, ds, "3d_fullres", [0], "nnUNetTrainer_onlyMirror01", (0, 1), 200)
    p, ds = old_plans()
    build_and_save(d / "oldfmt", p, ds, "3d_cascade_fullres", [0], "nnUNetTrainer_250epochs", None, 300)
    # a trainer nnU-Net does not ship (could have changed the network): refused unless allowed
    p, ds = plain_plans()
    build_and_save(d / "custom_trainer", p, ds, "3d_fullres", [0], "nnUNetTrainerMyFancyNet", (0, 1, 2), 400,
                   step=False)


if __name__ == "__main__":
    write_basic()
    write_nnunet()
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total} bytes)")
