#!/usr/bin/env python3
"""Seconds per case and peak memory: `nephrod segment` vs nnunetv2 2.8.1's nnUNetPredictor on the
CPU, same random-weight model, same CT, same thread count, alternating in one run.

usage: .cache/nnunet-venv/bin/python tools/bench/segment_vs_nnunet.py [--net small|kits|tiny]
         [--shape Z Y X] [--spacing Z Y X] [--threads N] [--rounds R] [--tta] [--folds K]
         [--nephrod-only] [--json FILE]
(tools/bench/segment_vs_nnunet.sh builds nephrod in release mode and calls this.)

* The model folder is written by nnunetv2's own get_network_from_plans through
  tools/oracle/torch_checkpoint_golden.py::build_and_save (random weights, seeded), imported with
  `nephrod models import-nnunet`.
* nephrod: wall time of the whole `nephrod segment` process (open bundle, read NIfTI, preprocess,
  sliding window, export, write). nnU-Net: wall time of a fresh Python process that imports
  nnunetv2, initialises the predictor from the model folder and runs predict_from_files_sequential
  on the case (its own load/preprocess/predict/export are printed separately); the ratio uses
  nnU-Net's predict-only time (initialisation and imports excluded, which favours nnU-Net).
* Peak RSS of each process from /usr/bin/time (%M, KiB).
* Threads: RAYON_NUM_THREADS for nephrod; torch.set_num_threads and nnUNet_def_n_proc for nnU-Net.
* The label maps of both are compared (agreement printed), so the two did the same work.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
NETS = {
    # name: (features, strides, patch, conv per stage)
    "tiny": ([4, 8, 16], [[1, 1, 1], [2, 2, 2], [2, 2, 2]], [128, 128, 128], 2),
    "small": ([16, 32, 64, 128, 256], [[1, 1, 1]] + [[2, 2, 2]] * 4, [64, 128, 128], 2),
    "kits": ([32, 64, 128, 256, 320, 320], [[1, 1, 1]] + [[2, 2, 2]] * 5, [128, 128, 128], 2),
}


def load_builder():
    saved = sys.argv
    sys.argv = [saved[0], tempfile.gettempdir()]
    sys.path.insert(0, str(ROOT / "tools/oracle"))
    import torch_checkpoint_golden as g  # noqa: E402
    sys.argv = saved
    return g


def make_model(folder, net, spacing, folds):
    g = load_builder()
    feats, strides, patch, nconv = NETS[net]
    n = len(feats)
    p = g.plans_common("Dataset950_Bench", "SimpleITKIO", [0, 1, 2], [0, 1, 2], 1)
    p["configurations"] = {"3d_fullres": {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2, "patch_size": patch, "median_image_size_in_voxels": [200.0, 400.0, 400.0],
        "spacing": list(spacing), "normalization_schemes": ["CTNormalization"],
        "use_mask_for_norm": [False], **g.RESAMPLING,
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": n, "features_per_stage": feats,
                "conv_op": "torch.nn.modules.conv.Conv3d",
                "kernel_sizes": [[3, 3, 3]] * n, "strides": strides,
                "n_conv_per_stage": [nconv] * n, "n_conv_per_stage_decoder": [nconv] * (n - 1),
                "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                "dropout_op": None, "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
        "batch_dice": True,
    }}
    ds = {"channel_names": {"0": "CT"},
          "labels": {"background": 0, "kidney": 1, "tumor": 2, "cyst": 3},
          "numTraining": 10, "file_ending": ".nii.gz"}
    g.build_and_save(Path(folder), p, ds, "3d_fullres", list(range(folds)), "nnUNetTrainer",
                     (0, 1, 2), 7, step=False)


def make_ct(path, shape, spacing):
    import SimpleITK as sitk
    rng = np.random.default_rng(3)
    z, y, x = shape
    yy, xx = np.meshgrid(np.arange(y), np.arange(x), indexing="ij")
    body = ((yy - y / 2) / (y / 2.3)) ** 2 + ((xx - x / 2) / (x / 2.2)) ** 2 < 1
    img = np.full(shape, -1000, np.int16)
    for k in range(z):
        sl = np.where(body, 40 + rng.normal(0, 25, (y, x)), -1000.0)
        img[k] = sl.astype(np.int16)
    zz = np.arange(z)[:, None, None]
    blob = ((zz - z / 2) / (z / 5)) ** 2 + ((yy - y * 0.4) / (y / 10)) ** 2 \
        + ((xx - x * 0.35) / (x / 10)) ** 2 < 1
    img[blob] = 160
    im = sitk.GetImageFromArray(img)
    im.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    sitk.WriteImage(im, str(path))


NNUNET_RUN = r"""
import sys, time, os, json
t0 = time.perf_counter()
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
threads = int(sys.argv[4])
torch.set_num_threads(threads)
t1 = time.perf_counter()
p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=sys.argv[5] == "1",
                    perform_everything_on_device=False, device=torch.device("cpu"),
                    verbose=False, verbose_preprocessing=False, allow_tqdm=False)
p.initialize_from_trained_model_folder(sys.argv[1], use_folds=tuple(range(int(sys.argv[6]))),
                                       checkpoint_name="checkpoint_final.pth")
t2 = time.perf_counter()
p.predict_from_files_sequential([[sys.argv[2]]], [sys.argv[3]], save_probabilities=False,
                                overwrite=True)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "init_s": t2 - t1, "predict_s": t3 - t2}))
"""


def timed(cmd, env):
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf.name] + cmd, env=env,
                           capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
        rss_kib = int(Path(tf.name).read_text().strip().splitlines()[-1])
    return wall, rss_kib / 1024.0, r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", choices=NETS, default="small")
    ap.add_argument("--shape", type=int, nargs=3, default=[96, 192, 192], metavar=("Z", "Y", "X"))
    ap.add_argument("--spacing", type=float, nargs=3, default=[1.25, 0.7, 0.7])
    ap.add_argument("--model-spacing", type=float, nargs=3, default=[1.5, 0.8, 0.8])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--folds", type=int, default=1)
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--nephrod-only", action="store_true")
    ap.add_argument("--nephrod", default=str(ROOT / "target/release/nephrod"))
    ap.add_argument("--json")
    a = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), nnUNet_def_n_proc=str(a.threads),
               OMP_NUM_THREADS=str(a.threads), nnUNet_results="/nonexistent",
               nnUNet_raw="/nonexistent", nnUNet_preprocessed="/nonexistent")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, bundle, ct = tmp / "model", tmp / "bundle", tmp / "ct.nii.gz"
        make_model(model, a.net, a.model_spacing, a.folds)
        make_ct(ct, tuple(a.shape), a.spacing)
        subprocess.run([a.nephrod, "models", "import-nnunet", str(model), "--config", "3d_fullres",
                        "--out", str(bundle)], check=True, capture_output=True)
        print(f"net {a.net}, CT {a.shape} voxels at {a.spacing} mm -> model spacing "
              f"{a.model_spacing} mm, {a.folds} fold(s), TTA {'on' if a.tta else 'off'}, "
              f"{a.threads} thread(s), {a.rounds} round(s)", flush=True)
        rows = {"nephrod_s": [], "nephrod_rss_mib": [], "nnunet_predict_s": [],
                "nnunet_process_s": [], "nnunet_rss_mib": [], "nnunet_init_s": []}
        for r in range(a.rounds):
            out_n = tmp / "nephrod.nii.gz"
            cmd = [a.nephrod, "segment", str(ct), "--model", str(bundle), "--out", str(out_n)]
            if not a.tta:
                cmd.append("--no-tta")
            wall, rss, _ = timed(cmd, env)
            rows["nephrod_s"].append(wall)
            rows["nephrod_rss_mib"].append(rss)
            print(f"round {r}: nephrod {wall:.2f} s, peak RSS {rss:.0f} MiB", flush=True)
            if a.nephrod_only:
                continue
            out_p = tmp / "nnunet_case"
            wall, rss, stdout = timed([sys.executable, "-c", NNUNET_RUN, str(model), str(ct),
                                       str(out_p), str(a.threads), "1" if a.tta else "0",
                                       str(a.folds)], env)
            t = json.loads(stdout.strip().splitlines()[-1])
            rows["nnunet_predict_s"].append(t["predict_s"])
            rows["nnunet_init_s"].append(t["init_s"])
            rows["nnunet_process_s"].append(wall)
            rows["nnunet_rss_mib"].append(rss)
            print(f"round {r}: nnU-Net predict {t['predict_s']:.2f} s (process {wall:.2f} s, "
                  f"init {t['init_s']:.2f} s), peak RSS {rss:.0f} MiB", flush=True)
        med = {k: statistics.median(v) for k, v in rows.items() if v}
        result = {"net": a.net, "shape": a.shape, "spacing": a.spacing,
                  "model_spacing": a.model_spacing, "threads": a.threads, "tta": a.tta,
                  "folds": a.folds, "median": med}
        if not a.nephrod_only:
            import SimpleITK as sitk
            s1 = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "nephrod.nii.gz")))
            s2 = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp / "nnunet_case.nii.gz")))
            agree = float((s1 == s2).mean())
            result["label_agreement"] = agree
            result["ratio_nnunet_predict_over_nephrod"] = med["nnunet_predict_s"] / med["nephrod_s"]
            print(f"median: nephrod {med['nephrod_s']:.2f} s, nnU-Net predict "
                  f"{med['nnunet_predict_s']:.2f} s -> ratio (nnU-Net / nephrod) "
                  f"{result['ratio_nnunet_predict_over_nephrod']:.2f} (> 1: nephrod faster); "
                  f"peak RSS nephrod {med['nephrod_rss_mib']:.0f} MiB, nnU-Net "
                  f"{med['nnunet_rss_mib']:.0f} MiB; label agreement {agree * 100:.3f} %")
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
