#!/usr/bin/env python3
"""Goldens for tests/segment_nnunet_postprocessing.rs: nnunetv2 2.8.1's own
`remove_all_but_largest_component_from_segmentation` applied with the rule lists that
`determine_postprocessing` writes, and the postprocessing.json files in its exact format
(`save_json` of `postprocessing_fns` / `postprocessing_kwargs` after `recursive_fix_for_json_export`).

Rule lists (label dataset 0 background, 1 kidney, 2 tumor, 3 cyst; and the KiTS23 regions):
* labels.json: union of the foreground labels [1, 2, 3], then label 2 alone, then label 3;
* regions.json: union [1, 2, 3], then the regions (1, 2, 3), (2, 3) as tuples (pkl form), then 2.
Label maps: random blobs with several components per label, ties in component size, diagonal
(26-)contacts, an empty map and a map without one of the labels.

Files: labels.json, regions.json (postprocessing.json format), cases.safetensors (every input and
output label map as float32 integers, C order), cases.json (shape and rule file per case).
usage: .cache/nnunet-venv/bin/python tools/oracle/nnunet_postprocessing_golden.py tests/data/segment/nnunet_postprocessing
Pinned: tools/oracle/requirements-nnunet.txt. Seeded.
"""
import json
import sys
from pathlib import Path

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import save_json
from nnunetv2.postprocessing.remove_connected_components import \
    remove_all_but_largest_component_from_segmentation as keep_largest
from nnunetv2.utilities.json_export import recursive_fix_for_json_export
from safetensors.numpy import save_file

RULES = {
    "labels": [[1, 2, 3], 2, 3],
    "regions": [[1, 2, 3], (1, 2, 3), (2, 3), 2],
}


def blobs(rng, shape, n, labels):
    seg = np.zeros(shape, np.uint8)
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    for _ in range(n):
        c = [rng.uniform(0, s) for s in shape]
        r = rng.uniform(1.0, 3.5)
        m = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < r * r
        seg[m] = rng.choice(labels)
    return seg


def cases(rng):
    out = []
    for i in range(6):
        shape = (int(rng.integers(8, 16)), int(rng.integers(10, 20)), int(rng.integers(10, 20)))
        out.append(blobs(rng, shape, int(rng.integers(4, 14)), [1, 2, 3]))
    # ties: two equal cubes of label 2, a diagonal contact of label 3 voxels
    t = np.zeros((6, 8, 8), np.uint8)
    t[0:2, 0:2, 0:2] = 2
    t[3:5, 5:7, 5:7] = 2
    t[1, 4, 4] = 3
    t[2, 5, 5] = 3
    t[5, 0, 7] = 3
    t[4:6, 0:3, 0:3] = 1
    out.append(t)
    out.append(np.zeros((4, 5, 6), np.uint8))
    out.append(blobs(rng, (10, 12, 12), 6, [1, 3]))
    return out


def main(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2024)
    for name, kwargs in RULES.items():
        doc = {"postprocessing_fns": [keep_largest.__name__] * len(kwargs),
               "postprocessing_kwargs": [{"labels_or_regions": k} for k in kwargs]}
        recursive_fix_for_json_export(doc)
        save_json(doc, str(out / f"{name}.json"))
    tensors, meta = {}, []
    for i, seg in enumerate(cases(rng)):
        for name, kwargs in RULES.items():
            res = seg.copy()
            for k in kwargs:
                res = keep_largest(res, k)
            key = f"case{i}_{name}"
            tensors[f"{key}_input"] = seg.astype(np.float32)
            tensors[f"{key}_output"] = res.astype(np.float32)
            meta.append({"key": key, "rules": f"{name}.json", "shape": list(seg.shape),
                         "changed_voxels": int((res != seg).sum())})
    save_file(tensors, str(out / "cases.safetensors"))
    (out / "cases.json").write_text(json.dumps(
        {"generator": "tools/oracle/nnunet_postprocessing_golden.py", "cases": meta}, indent=1))
    print("changed voxels per case:", [m["changed_voxels"] for m in meta])


if __name__ == "__main__":
    main(sys.argv[1])
