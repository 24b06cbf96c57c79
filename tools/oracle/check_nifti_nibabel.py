#!/usr/bin/env python3
"""nibabel (pinned) reads the NIfTI files `nephrod convert` wrote with the geometry
`nephrod inspect --json` reported: affine == diag(-1, -1, 1, 1) · A_lps, for sform and qform.

Usage: check_nifti_nibabel.py INSPECT_JSON NIFTI_DIR   (exit 1 on any mismatch)
"""
import glob
import json
import os
import sys

import nibabel as nib
import numpy as np


def main(inspect_json, nifti_dir):
    report = json.load(open(inspect_json))
    files = sorted(glob.glob(os.path.join(nifti_dir, "*.nii.gz")))
    series = [s for st in report["studies"] for s in st["series"] if s["status"] == "ok"]
    if len(files) != len(series) or not files:
        sys.exit(f"{len(files)} NIfTI files for {len(series)} series")
    checked = 0
    for s in series:
        number = s["series_number"] or 0
        match = [f for f in files if f"_s{number}_p{s['part']}_" in os.path.basename(f)]
        if len(match) != 1:
            sys.exit(f"no unique file for series {number}: {match}")
        img = nib.load(match[0])
        d = np.array(s["direction"]).reshape(3, 3)
        lps = np.eye(4)
        lps[:3, :3] = d @ np.diag(s["spacing_mm"])
        lps[:3, 3] = s["origin_lps_mm"]
        want = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
        for name, aff in [("affine", img.affine), ("sform", img.get_sform()), ("qform", img.get_qform())]:
            if not np.allclose(aff, want, atol=1e-4):
                sys.exit(f"{match[0]}: nibabel {name}\n{aff}\n!= expected\n{want}")
        if list(img.shape) != s["dims"]:
            sys.exit(f"{match[0]}: shape {img.shape} != dims {s['dims']}")
        checked += 1
    print(f"nibabel {nib.__version__}: {checked} NIfTI files have the reported LPS geometry")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
