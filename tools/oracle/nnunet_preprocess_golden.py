#!/usr/bin/env python3
"""Goldens for tests/segment_preprocess.rs: nnunetv2 2.8.1's DefaultPreprocessor.run_case_npy
on CT-like arrays, with the plans of tests/data/models/nnunet/plain (transpose_forward [2,0,1],
CTNormalization, spacing [3, 0.78125, 0.78125], order-3 resampling, separate z by the rule).

Per case <name>.safetensors: "input" (1, X, Y, Z) float32 in reader order and nnU-Net's
"output" (C, X', Y', Z') float32; cases.json: the reader spacing and nnU-Net's properties
(shape_before_cropping, bbox_used_for_cropping, shape_after_cropping_and_before_resampling).

usage: .cache/nnunet-venv/bin/python tools/oracle/nnunet_preprocess_golden.py tests/data/segment/preprocess
Pinned: tools/oracle/requirements-nnunet.txt. Deterministic (seeded).
"""
import json
import sys
from pathlib import Path

import numpy as np
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from safetensors.numpy import save_file

MODEL = Path(__file__).resolve().parents[2] / "tests/data/models/nnunet/plain"

CASES = [
    # name, reader shape (z, y, x), reader spacing (z, y, x) as nnU-Net lists it
    ("thick_slices", (9, 20, 18), (5.0, 0.9, 0.9)),
    ("zero_border", (14, 16, 21), (2.5, 0.7, 0.8)),
    ("fine", (24, 12, 12), (1.0, 1.0, 1.0)),
]


def main(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans = json.loads((MODEL / "plans.json").read_text())
    ds = json.loads((MODEL / "dataset.json").read_text())
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    rng = np.random.default_rng(5)
    meta = []
    for name, shape, spacing in CASES:
        x = rng.normal(40, 400, shape) + 30 * np.arange(shape[2])[None, None, :]
        x[:, :1, :] = -1024.0
        if name == "zero_border":
            x[:2] = 0.0
            x[:, :, -3:] = 0.0
        x = x.astype(np.float32)[None]
        pre = DefaultPreprocessor(verbose=False)
        props = {"spacing": list(spacing)}
        data, seg, props = pre.run_case_npy(x.copy(), None, props, pm, cm, ds)
        assert data.dtype == np.float32
        save_file({"input": np.ascontiguousarray(x), "output": np.ascontiguousarray(data)},
                  str(out / f"{name}.safetensors"))
        meta.append({"name": name, "spacing": list(spacing),
                     "shape_before_cropping": [int(v) for v in props["shape_before_cropping"]],
                     "bbox": [[int(a), int(b)] for a, b in props["bbox_used_for_cropping"]],
                     "shape_after_cropping": [int(v) for v in props["shape_after_cropping_and_before_resampling"]],
                     "output_shape": list(data.shape)})
        print(name, x.shape, "->", data.shape, props["bbox_used_for_cropping"])
    (out / "cases.json").write_text(json.dumps({"generator": "tools/oracle/nnunet_preprocess_golden.py",
                                                "cases": meta}, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
