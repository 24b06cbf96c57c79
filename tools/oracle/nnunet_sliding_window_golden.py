#!/usr/bin/env python3
"""Goldens for tests/segment_sliding_window.rs from nnunetv2 2.8.1's own code:

* gaussian.json — sha256 of the float16 bytes (C order) of
  `compute_gaussian(patch, sigma_scale=1/8, value_scaling_factor=10)` for several patch sizes,
  plus its min, max and the number of voxels that underflowed to the minimum.
* steps.json — `compute_steps_for_sliding_window(image, patch, step)` for many triples.
* <case>.safetensors — `nnUNetPredictor.predict_sliding_window_return_logits` run with a
  deterministic stand-in network whose output nephrod can compute exactly:
  `y[h] = x[0] * a[h] + P[h]` (float32 multiply then add; P a fixed patch-shaped tensor, so
  mirroring changes the result), with mirroring over the case's axes or none; tensors "input"
  (C, X, Y, Z) f32, "a" (H,) f32, "P" (H, *patch) f32 and the f16 "logits" (H, X, Y, Z).
  Case parameters are in cases.json.

usage: .cache/nnunet-venv/bin/python tools/oracle/nnunet_sliding_window_golden.py tests/data/segment/sliding_window
Pinned: tools/oracle/requirements-nnunet.txt. Deterministic (seeded, one thread, CPU).
"""
import hashlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
from safetensors.torch import save_file

torch.set_num_threads(1)


class Fake(torch.nn.Module):
    def __init__(self, a, p):
        super().__init__()
        self.a = a
        self.p = p

    def forward(self, x):
        x0 = x[:, 0:1]
        return x0 * self.a.view(1, -1, 1, 1, 1) + self.p[None]


CASES = [
    # name, channels, heads, image (X, Y, Z), patch, mirror axes or None
    ("tiles_tta", 2, 3, (13, 10, 15), (8, 10, 6), (0, 1, 2)),
    ("tiles_no_tta", 2, 3, (13, 10, 15), (8, 10, 6), None),
    ("padded_axes12", 1, 2, (5, 12, 9), (8, 6, 6), (1, 2)),
    ("large_logits", 1, 4, (20, 9, 11), (8, 8, 8), (0, 2)),
    ("overflow", 1, 2, (9, 8, 8), (8, 8, 8), None),
]


def main(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gauss = []
    for patch in [(16, 16, 16), (48, 80, 80), (20, 24, 28), (128, 128, 128), (5, 7, 9), (64, 160, 160)]:
        g = compute_gaussian(patch, sigma_scale=1. / 8, value_scaling_factor=10, device=torch.device('cpu'))
        a = g.numpy().astype('<f2')
        gauss.append({"patch": list(patch), "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
                      "min": float(a.min()), "max": float(a.max()),
                      "at_min": int((a == a.min()).sum()), "centre": float(a[tuple(p // 2 for p in patch)])})
    (out / "gaussian.json").write_text(json.dumps({"generator": "tools/oracle/nnunet_sliding_window_golden.py",
                                                   "cases": gauss}, indent=1) + "\n")
    rng = np.random.default_rng(7)
    steps = []
    for _ in range(300):
        patch = int(rng.integers(1, 200))
        image = patch + int(rng.integers(0, 600))
        step = float(rng.choice([0.5, 0.25, 0.33, 0.75, 1.0, 0.1]))
        s = compute_steps_for_sliding_window((image,), (patch,), step)[0]
        steps.append({"image": image, "patch": patch, "step": step, "starts": [int(v) for v in s]})
    # exact half-way rounding cases
    for image, patch in [(21, 8), (13, 8), (37, 16), (11, 2), (128, 128), (129, 128), (600, 128)]:
        s = compute_steps_for_sliding_window((image,), (patch,), 0.5)[0]
        steps.append({"image": image, "patch": patch, "step": 0.5, "starts": [int(v) for v in s]})
    (out / "steps.json").write_text(json.dumps({"generator": "tools/oracle/nnunet_sliding_window_golden.py",
                                                "cases": steps}) + "\n")
    meta = []
    for i, (name, ch, heads, image, patch, mirror) in enumerate(CASES):
        g = torch.Generator().manual_seed(100 + i)
        x = torch.randn((ch, *image), generator=g) * 3
        a = torch.randn((heads,), generator=g)
        p = torch.randn((heads, *patch), generator=g) * 4
        if name == "large_logits":
            p = p * 150  # f16 spacing of 1–16 near these values: rounding is visible
        if name == "overflow":
            p = p * 3000  # accumulators overflow f16: nnU-Net refuses
        pred = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror is not None,
                               perform_everything_on_device=False, device=torch.device('cpu'),
                               verbose=False, verbose_preprocessing=False, allow_tqdm=False)
        pred.network = Fake(a, p)
        pred.configuration_manager = SimpleNamespace(patch_size=list(patch))
        pred.label_manager = SimpleNamespace(num_segmentation_heads=heads)
        pred.allowed_mirroring_axes = mirror
        try:
            with torch.no_grad():
                logits = pred.predict_sliding_window_return_logits(x)
        except RuntimeError as e:
            assert "inf" in str(e)
            save_file({"input": x.contiguous(), "a": a.contiguous(), "P": p.contiguous()},
                      str(out / f"{name}.safetensors"))
            meta.append({"name": name, "heads": heads, "patch": list(patch), "mirror_axes": [],
                         "expect_infinite": True})
            continue
        assert logits.dtype == torch.float16
        save_file({"input": x.contiguous(), "a": a.contiguous(), "P": p.contiguous(),
                   "logits": logits.contiguous()}, str(out / f"{name}.safetensors"))
        meta.append({"name": name, "heads": heads, "patch": list(patch),
                     "mirror_axes": list(mirror) if mirror is not None else [], "expect_infinite": False})
    (out / "cases.json").write_text(json.dumps({"generator": "tools/oracle/nnunet_sliding_window_golden.py",
                                                "torch": torch.__version__, "cases": meta}, indent=1) + "\n")
    print("ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
