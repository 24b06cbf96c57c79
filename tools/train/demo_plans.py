#!/usr/bin/env python3
"""Derives nephrod's CPU-sized demo plans from the plans nnU-Net itself made for a dataset.

usage: python tools/train/demo_plans.py PREPROCESSED_DATASET_DIR \
           [--patch Z Y X] [--base-features 8] [--max-features 128] [--batch 2]

Reads `nnUNetPlans.json` (written by `nnUNetv2_plan_experiment`) and writes
`nephrodDemoPlans.json` next to it: the same plans (spacing, normalisation, resampling,
transpose, labels: everything nnU-Net decided from the dataset fingerprint), except for the
3d_fullres configuration's size, which nnU-Net sizes for an 8 GB GPU:
  * patch size: the given one (default 32 x 96 x 96 voxels, <= 96^3 as the issue asks),
    adjusted by nnU-Net's own `get_pool_and_conv_props` (so the network topology -- stages,
    pooling strides, kernel sizes -- is exactly what nnU-Net's planner derives for that patch
    and spacing);
  * features per stage: base * 2^stage capped at max (nnU-Net: 32 * 2^stage capped at 320);
  * batch size.
Everything else is untouched; the data identifier becomes nephrodDemoPlans_3d_fullres.
Train with `nnUNetv2_preprocess -plans_name nephrodDemoPlans` and `nnUNetv2_train -p
nephrodDemoPlans` (tools/train/train_segmenter.sh does both).
"""
import argparse
import copy
import json
from pathlib import Path

from nnunetv2.experiment_planning.experiment_planners.network_topology import (
    get_pool_and_conv_props,
)

PLANS_NAME = "nephrodDemoPlans"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset_dir", type=Path)
    ap.add_argument("--patch", type=int, nargs=3, default=[32, 96, 96])
    ap.add_argument("--base-features", type=int, default=8)
    ap.add_argument("--max-features", type=int, default=128)
    ap.add_argument("--batch", type=int, default=2)
    a = ap.parse_args()

    plans = json.loads((a.dataset_dir / "nnUNetPlans.json").read_text())
    demo = copy.deepcopy(plans)
    demo["plans_name"] = PLANS_NAME
    c = demo["configurations"]["3d_fullres"]
    spacing = c["spacing"]
    # nnU-Net's planner: min feature map edge 4, no cap on pooling per axis (ExperimentPlanner).
    _, pool, conv, patch, _ = get_pool_and_conv_props(spacing, a.patch, 4, 999999)
    n_stages = len(pool)
    arch = c["architecture"]["arch_kwargs"]
    arch["n_stages"] = n_stages
    arch["features_per_stage"] = [min(a.base_features * 2**i, a.max_features) for i in range(n_stages)]
    arch["kernel_sizes"] = [list(k) for k in conv]
    arch["strides"] = [list(s) for s in pool]
    arch["n_conv_per_stage"] = [2] * n_stages
    arch["n_conv_per_stage_decoder"] = [2] * (n_stages - 1)
    c["patch_size"] = [int(p) for p in patch]
    c["batch_size"] = a.batch
    c["data_identifier"] = f"{PLANS_NAME}_3d_fullres"
    # Only 3d_fullres is trained; drop configurations that point at it (lowres / cascade) and 2d.
    demo["configurations"] = {"3d_fullres": c}
    out = a.dataset_dir / f"{PLANS_NAME}.json"
    out.write_text(json.dumps(demo, indent=4))
    print(f"wrote {out}: spacing {spacing}, patch {c['patch_size']}, stages {n_stages}, "
          f"features {arch['features_per_stage']}, strides {arch['strides']}, batch {a.batch}")


if __name__ == "__main__":
    main()
