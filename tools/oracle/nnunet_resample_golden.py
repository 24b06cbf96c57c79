#!/usr/bin/env python3
"""Goldens for tests/segment_resample.rs from nnunetv2 2.8.1's own resampling
(`compute_new_shape`, `determine_do_sep_z_and_axis`, `resample_data_or_seg_to_shape`, which
call scikit-image 0.26 `resize` and scipy 1.17.1 `map_coordinates`).

Per case: <name>.safetensors with "input" (C, X, Y, Z) and "output" (C, X', Y', Z') in the dtype
nnU-Net uses there (float32 for image data with order 3; float16 logits with order 1 as at
export), and cases.json with shapes, spacings, order, the new shape and the separate axis.

usage: .cache/nnunet-venv/bin/python tools/oracle/nnunet_resample_golden.py tests/data/segment/resample
Pinned: tools/oracle/requirements-nnunet.txt. Deterministic (seeded).
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from nnunetv2.preprocessing.resampling.default_resampling import (
    compute_new_shape, determine_do_sep_z_and_axis, resample_data_or_seg_to_shape)
from safetensors.numpy import save_file

CASES = [
    # name, shape (C, X, Y, Z), current spacing, new spacing, order, dtype
    ("iso_down", (1, 23, 19, 17), (0.8, 0.8, 0.8), (1.5, 1.5, 1.5), 3, np.float32),
    ("iso_up_2ch", (2, 7, 9, 8), (2.0, 1.7, 1.9), (1.0, 1.0, 1.0), 3, np.float32),
    ("sep_current", (1, 9, 22, 20), (5.0, 0.8, 0.8), (3.0, 1.2, 1.2), 3, np.float32),
    ("sep_new", (1, 30, 14, 16), (1.0, 1.0, 1.0), (4.0, 1.1, 0.9), 3, np.float32),
    ("sep_inplane_only", (1, 6, 21, 19), (4.0, 0.7, 0.7), (4.0, 1.0, 1.0), 3, np.float32),
    ("sep_z_only", (1, 8, 12, 11), (4.5, 1.0, 1.0), (3.0, 1.0, 1.0), 3, np.float32),
    ("axis_unchanged", (1, 15, 10, 13), (1.0, 1.0, 1.0), (1.0, 1.3, 0.7), 3, np.float32),
    ("two_lowres_axes", (1, 10, 12, 30), (4.0, 4.0, 1.0), (2.0, 2.0, 1.0), 3, np.float32),
    ("export_logits_sep", (3, 8, 20, 18), (3.0, 1.2, 1.2), (5.0, 0.8, 0.8), 1, np.float16),
    ("export_logits_iso", (2, 12, 11, 13), (1.5, 1.5, 1.5), (1.1, 1.2, 1.0), 1, np.float16),
    ("unchanged", (1, 9, 9, 9), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), 3, np.float32),
]


def main(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(31)
    meta = []
    for name, shape, cur, new, order, dtype in CASES:
        # CT-like: smooth structure plus noise, and a flat region at -1000
        x = rng.normal(0, 300, shape) + 40 * np.arange(shape[1])[None, :, None, None]
        x[:, :, :2, :] = -1000.0
        if dtype == np.float16:
            x = rng.normal(0, 4, shape)
        x = x.astype(dtype)
        new_shape = [int(v) for v in compute_new_shape(shape[1:], cur, new)]
        do_sep, axis = determine_do_sep_z_and_axis(None, cur, new)
        y = resample_data_or_seg_to_shape(x, new_shape, cur, new, is_seg=False, order=order, order_z=0,
                                          force_separate_z=None)
        assert y.dtype == dtype, (y.dtype, dtype)
        save_file({"input": np.ascontiguousarray(x), "output": np.ascontiguousarray(y)},
                  str(out / f"{name}.safetensors"))
        meta.append({"name": name, "shape": list(shape), "current_spacing": list(cur), "new_spacing": list(new),
                     "order": order, "new_shape": new_shape,
                     "separate_axis": int(axis) if do_sep else None, "dtype": np.dtype(dtype).name})
        print(name, shape, "->", new_shape, "sep", axis if do_sep else None)
    (out / "cases.json").write_text(json.dumps({"generator": "tools/oracle/nnunet_resample_golden.py",
                                                "cases": meta}, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
