#!/usr/bin/env python3
"""Goldens for tests/segment_reader.rs: the arrays nnU-Net v2's reader classes hand to a model.

usage: .cache/nnunet-venv/bin/python tools/oracle/nnunet_reader_golden.py tests/data/segment/reader
Pinned (tools/oracle/requirements-nnunet.txt): nnunetv2 2.8.1, nibabel, SimpleITK, numpy.
Deterministic: fixed geometries, voxel value = its flat index in the file (i fastest), so an
output array names the file voxel each element came from.

For every case: <case>.nii.gz (int16, RAS affine = diag(-1,-1,1)·A_lps of the LPS geometry in
the JSON) and, in cases.json, per reader class (SimpleITKIO, NibabelIO, NibabelIOWithReorient)
the array nnU-Net's `read_images` returns (channel 0, flattened C order, as file voxel indices),
its shape and `spacing`; for NibabelIOWithReorient also where `write_seg` puts each element of
a segmentation array back (the file voxel index it lands on), read back with nibabel.
"""
import json
import sys
import tempfile
from pathlib import Path

import nibabel
import numpy as np
from nnunetv2.imageio.nibabel_reader_writer import NibabelIO, NibabelIOWithReorient
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO


def rot(axis, deg):
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    m = np.eye(3)
    a, b = [(1, 2), (0, 2), (0, 1)][axis]
    m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


CASES = [
    # name, dims (ni, nj, nk), spacing, LPS direction (columns = i, j, k axes), origin
    ("lps_axial", (5, 4, 3), (0.8, 0.7, 2.5), np.eye(3), (10.0, -20.0, 30.0)),
    ("ras_stored", (5, 4, 3), (0.8, 0.7, 2.5), np.diag([-1.0, -1.0, 1.0]), (0.0, 0.0, 0.0)),
    ("sagittal", (4, 5, 3), (1.0, 1.2, 3.0),
     np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), (5.0, 6.0, 7.0)),
    ("coronal_flipped", (3, 5, 4), (0.9, 2.0, 1.1),
     np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]]), (-3.0, 4.0, 100.0)),
    ("oblique", (5, 3, 4), (0.75, 0.75, 1.5), rot(2, 20.0) @ rot(0, -10.0) @ np.diag([1.0, 1.0, -1.0]),
     (1.0, 2.0, 3.0)),
]


def lps_affine(spacing, direction, origin):
    a = np.eye(4)
    a[:3, :3] = direction @ np.diag(spacing)
    a[:3, 3] = origin
    return a


def main(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, dims, spacing, direction, origin in CASES:
        ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps_affine(spacing, direction, origin)
        n = int(np.prod(dims))
        # nibabel arrays are indexed [i, j, k]; value = i + ni*(j + nj*k)
        vals = np.arange(n, dtype=np.int16).reshape(dims[::-1]).transpose(2, 1, 0)
        img = nibabel.Nifti1Image(np.ascontiguousarray(vals), ras)
        img.set_qform(ras, code=1)
        img.set_sform(ras, code=1)
        path = out / f"{name}.nii.gz"
        nibabel.save(img, str(path))
        entry = {"name": name, "dims": list(dims), "spacing": list(spacing),
                 "direction_lps": direction.tolist(), "origin_lps": list(origin), "readers": {}}
        for cls in (SimpleITKIO, NibabelIO, NibabelIOWithReorient):
            data, props = cls().read_images((str(path),))
            arr = data[0]
            assert np.all(arr == np.round(arr))
            entry["readers"][cls.__name__] = {
                "shape": list(arr.shape),
                "spacing": [float(s) for s in props["spacing"]],
                "voxel": [int(v) for v in arr.ravel()],
            }
            if cls is NibabelIOWithReorient:
                seg = np.arange(arr.size, dtype=np.int32).reshape(arr.shape) % 250
                # use distinct values: write index // 250 and index % 250 as two segs
                lands = np.zeros(arr.size, dtype=np.int64)
                with tempfile.TemporaryDirectory() as tmp:
                    for part, mod in ((seg, 1), ((np.arange(arr.size).reshape(arr.shape) // 250), 250)):
                        f = str(Path(tmp) / "seg.nii.gz")
                        cls().write_seg(part.astype(np.int32), f, props)
                        back = np.asarray(nibabel.load(f).dataobj).astype(np.int64)  # [i, j, k]
                        assert back.shape == tuple(dims)
                        lands += back.transpose(2, 1, 0).ravel() * mod  # file order, i fastest
                # lands[file voxel] = reader-array element index that was written there
                entry["readers"][cls.__name__]["write_seg_element_at_file_voxel"] = [int(v) for v in lands]
        cases.append(entry)
    doc = {"generator": "tools/oracle/nnunet_reader_golden.py",
           "nibabel": nibabel.__version__, "cases": cases}
    (out / "cases.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
