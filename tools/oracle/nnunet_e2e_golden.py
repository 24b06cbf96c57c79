#!/usr/bin/env python3
"""End-to-end golden for tests/segment_e2e.rs: nnunetv2 2.8.1's nnUNetPredictor
(`predict_from_files_sequential`, CPU, step 0.5, Gaussian, 2 folds) on a CT-like image with the
random-weight model of tests/data/models/nnunet/plain (PlainConvUNet, transpose [2, 0, 1],
SimpleITKIO, labels background/kidney/tumor/cyst), with and without mirroring.

Files: ct.nii.gz (int16 HU, written by SimpleITK, spacing 0.7 × 0.8 × 2.5 mm, oblique-free but
with a non-zero origin), seg_tta.nii.gz and seg_notta.nii.gz as nnU-Net writes them, and
prob_<variant>.safetensors: nnU-Net's softmax probabilities (C, z, y, x) float32 in the image's
array order (from --save_probabilities), to tell near-ties from real disagreements.

usage: .cache/nnunet-venv/bin/python tools/oracle/nnunet_e2e_golden.py tests/data/segment/e2e
Pinned: tools/oracle/requirements-nnunet.txt. Deterministic (seeded, one thread).
"""
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from safetensors.numpy import save_file

MODEL = Path(__file__).resolve().parents[2] / "tests/data/models/nnunet/plain"


def main(out_dir):
    torch.set_num_threads(1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    z, y, x = 14, 40, 36
    zz, yy, xx = np.meshgrid(np.arange(z), np.arange(y), np.arange(x), indexing="ij")
    body = ((yy - y / 2) / (y / 2.3)) ** 2 + ((xx - x / 2) / (x / 2.2)) ** 2 < 1
    img = np.where(body, 40 + rng.normal(0, 25, (z, y, x)), -1000.0)
    blob = ((zz - 7) / 4) ** 2 + ((yy - 18) / 6) ** 2 + ((xx - 12) / 5) ** 2 < 1
    img[blob] = 160 + rng.normal(0, 20, blob.sum())
    img[:, :2, :] = 0  # a zero border the crop removes
    im = sitk.GetImageFromArray(img.astype(np.int16))
    im.SetSpacing((0.7, 0.8, 2.5))
    im.SetOrigin((-12.0, 30.5, 101.0))
    ct = out / "ct.nii.gz"
    sitk.WriteImage(im, str(ct))
    for name, mirror in (("tta", True), ("notta", False)):
        pred = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror,
                               perform_everything_on_device=False, device=torch.device("cpu"),
                               verbose=False, verbose_preprocessing=False, allow_tqdm=False)
        pred.initialize_from_trained_model_folder(str(MODEL), use_folds=(0, 1),
                                                  checkpoint_name="checkpoint_final.pth")
        with tempfile.TemporaryDirectory() as tmp:
            pred.predict_from_files_sequential([[str(ct)]], [str(Path(tmp) / "case")],
                                               save_probabilities=True, overwrite=True)
            shutil.copy(Path(tmp) / "case.nii.gz", out / f"seg_{name}.nii.gz")
            probs = np.load(Path(tmp) / "case.npz")["probabilities"]  # (C, z, y, x) float32
            save_file({"probabilities": np.ascontiguousarray(probs.astype(np.float32))},
                      str(out / f"prob_{name}.safetensors"))
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"seg_{name}.nii.gz")))
        print(name, "labels", np.unique(seg, return_counts=True))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
