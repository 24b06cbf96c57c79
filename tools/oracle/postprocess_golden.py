#!/usr/bin/env python3
"""Goldens for tests/segment_postprocess.rs.

* components: skimage.measure.label(mask, connectivity=3) (26-connectivity) on random masks —
  the component id of every voxel and the sizes, numbered in raster order of first voxels.
* kits_rules: seed 004's post-processing (Golts et al. 2021, §3.5) written here from the paper
  text with scipy.ndimage, independently of nephrod's Rust: (a) tumour/cyst components
  (26-connected) whose 3×3×3-dilated mask contains no kidney voxel → background; (b) kidney
  components strictly smaller than the third largest → the most frequent label in their
  3×3×3 dilation ring (ties → smallest label). Label maps with touching lesions, one-voxel
  lesions, diagonal-only contacts, kidney fragments, ties.

Stored as one safetensors file (label maps and ids as float32 integers) plus cases.json.
usage: .cache/nnunet-venv/bin/python tools/oracle/postprocess_golden.py tests/data/segment/postprocess
Pinned: tools/oracle/requirements-nnunet.txt (scipy 1.17.1, scikit-image 0.26). Seeded.
"""
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage
from safetensors.numpy import save_file
from skimage.measure import label as sk_label

FULL = np.ones((3, 3, 3), bool)


def kits_rules(seg):
    seg = seg.copy()
    masses = (seg == 2) | (seg == 3)
    comp, n = ndimage.label(masses, structure=FULL)
    for k in range(1, n + 1):
        c = comp == k
        ring = ndimage.binary_dilation(c, structure=FULL) & ~c
        if not (seg[ring] == 1).any():
            seg[c] = 0
    kid = seg == 1
    comp, n = ndimage.label(kid, structure=FULL)
    sizes = np.bincount(comp.ravel())[1:]
    if n >= 3:
        third = np.sort(sizes)[::-1][2]
        for k in range(1, n + 1):
            if sizes[k - 1] >= third:
                continue
            c = comp == k
            ring = ndimage.binary_dilation(c, structure=FULL) & ~c
            counts = np.bincount(seg[ring], minlength=256)
            seg[c] = int(np.argmax(counts))  # first maximum = smallest label on ties
    return seg


def ellipsoid(shape, centre, radii):
    z, y, x = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2 <= 1


def kits_case(rng, shape):
    seg = np.zeros(shape, np.uint8)
    seg[ellipsoid(shape, (shape[0] / 2, shape[1] / 2, shape[2] * 0.25), (shape[0] / 3, 5, 4))] = 1
    seg[ellipsoid(shape, (shape[0] / 2, shape[1] / 2, shape[2] * 0.75), (shape[0] / 3, 5, 4))] = 1
    # a tumour touching the left kidney, a cyst inside the right one
    seg[ellipsoid(shape, (shape[0] / 2, shape[1] / 2 + 4, shape[2] * 0.25), (2, 2, 2))] = 2
    seg[ellipsoid(shape, (shape[0] / 2 + 1, shape[1] / 2, shape[2] * 0.75), (1.5, 1.5, 1.5))] = 3
    for _ in range(int(rng.integers(3, 7))):  # random specks of every label
        p = tuple(int(rng.integers(0, s)) for s in shape)
        r = rng.uniform(0.5, 2.0)
        seg[ellipsoid(shape, p, (r, r, r))] = int(rng.integers(1, 4))
    # diagonal-only contact between a lone tumour voxel and a kidney voxel
    seg[1, 1, 1] = 1
    seg[2, 2, 2] = 2
    # a kidney fragment surrounded by tumour (ring majority 2)
    seg[shape[0] - 4:shape[0] - 1, 1:4, shape[2] - 4:shape[2] - 1] = 2
    seg[shape[0] - 3, 2, shape[2] - 3] = 1
    return seg


def main(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(404)
    tensors, meta = {}, []
    for i in range(4):
        shape = (int(rng.integers(6, 12)), int(rng.integers(7, 13)), int(rng.integers(5, 14)))
        mask = rng.random(shape) < rng.uniform(0.15, 0.35)
        ids = sk_label(mask, connectivity=3).astype(np.int32)
        tensors[f"mask{i}"] = mask.astype(np.uint8)
        tensors[f"ids{i}"] = ids
        meta.append({"kind": "components", "index": i, "shape": list(shape), "count": int(ids.max())})
    for i in range(6):
        shape = (int(rng.integers(12, 20)), int(rng.integers(16, 24)), int(rng.integers(20, 30)))
        seg = kits_case(rng, shape)
        tensors[f"seg{i}"] = seg
        tensors[f"post{i}"] = kits_rules(seg)
        meta.append({"kind": "kits_rules", "index": i, "shape": list(shape),
                     "changed": int((seg != tensors[f"post{i}"]).sum())})
    # float32 (exact for these small integers): nephrod's safetensors reader takes F16/BF16/F32
    save_file({k: v.astype(np.float32) for k, v in tensors.items()}, str(out / "cases.safetensors"))
    (out / "cases.json").write_text(json.dumps({"generator": "tools/oracle/postprocess_golden.py",
                                                "cases": meta}, indent=1) + "\n")
    print(meta)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
