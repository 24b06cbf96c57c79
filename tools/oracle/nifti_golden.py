#!/usr/bin/env python3
"""Golden NIfTI files written by nibabel (pinned), with the affine nibabel reads back.

Usage: nifti_golden.py OUT_DIR   (committed output: tests/data/nifti/)

* oblique_sform.nii.gz — float32, oblique rotation, sform and qform both set (code 1).
* flipped_qform.nii    — int16, qform only (sform_code 0) with qfac = -1 (a flipped axis),
                         scl_slope 2, scl_inter -1024.
* plain_pixdim.nii     — uint8, no sform or qform (method 1: pixdim scaling only).
golden.json holds, per file, nibabel's `img.affine` (RAS) and `get_fdata()` flattened in
(i, j, k) order with i fastest.
"""
import json
import os
import sys

import nibabel as nib
import numpy as np


def rot(ax, ay, az):
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def main(out):
    os.makedirs(out, exist_ok=True)
    golden = {}
    shape = (5, 4, 3)
    n = int(np.prod(shape))

    a = np.eye(4)
    a[:3, :3] = rot(0.3, -0.2, 0.5) @ np.diag([0.8, 0.9, 2.5])
    a[:3, 3] = [12.5, -40.25, 7.0]
    data = (np.arange(n, dtype=np.float32).reshape(shape, order="F") * 1.5 - 20).astype(np.float32)
    img = nib.Nifti1Image(data, a)
    img.set_qform(a, code=1)
    img.set_sform(a, code=1)
    nib.save(img, os.path.join(out, "oblique_sform.nii.gz"))

    b = np.eye(4)
    b[:3, :3] = rot(0.0, 0.0, 0.25) @ np.diag([1.2, 1.1, -3.0])  # det < 0: qfac = -1
    b[:3, 3] = [-100.0, 20.0, 55.5]
    raw = (np.arange(n, dtype=np.int16).reshape(shape, order="F") * 7 - 30).astype(np.int16)
    img = nib.Nifti1Image(raw, None)
    img.set_qform(b, code=1)
    img.set_sform(None, code=0)
    img.header.set_slope_inter(2.0, -1024.0)
    nib.save(img, os.path.join(out, "flipped_qform.nii"))

    c = (np.arange(n, dtype=np.uint8).reshape(shape, order="F") % 4).astype(np.uint8)
    img = nib.Nifti1Image(c, None)
    img.header.set_zooms((0.5, 0.75, 4.0))
    img.set_qform(None, code=0)
    img.set_sform(None, code=0)
    nib.save(img, os.path.join(out, "plain_pixdim.nii"))

    for name in ["oblique_sform.nii.gz", "flipped_qform.nii", "plain_pixdim.nii"]:
        im = nib.load(os.path.join(out, name))
        golden[name] = {
            "affine_ras": im.affine.tolist(),
            "values": im.get_fdata().flatten(order="F").tolist(),
            "dims": list(im.shape),
            "sform_code": int(im.header["sform_code"]),
            "qform_code": int(im.header["qform_code"]),
        }
    golden["_nibabel"] = nib.__version__
    with open(os.path.join(out, "golden.json"), "w") as fh:
        json.dump(golden, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
