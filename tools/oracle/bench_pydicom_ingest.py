#!/usr/bin/env python3
"""Reference for `nephrod bench ingest`: pydicom reads every file of a folder, sorts the slices
along the normal and applies the modality LUT (HU as float32), like nephrod's ingest.
Prints one JSON line: {"seconds": best-of-N wall time, "slices": n}.

Usage: bench_pydicom_ingest.py DIR [REPEATS]
"""
import json
import os
import sys
import time

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut


def ingest(d):
    slices = []
    for root, _, files in os.walk(d):
        for f in files:
            ds = pydicom.dcmread(os.path.join(root, f))
            o = np.array(ds.ImageOrientationPatient, dtype=float)
            n = np.cross(o[:3], o[3:])
            z = float(np.dot(n, np.array(ds.ImagePositionPatient, dtype=float)))
            slices.append((z, apply_modality_lut(ds.pixel_array, ds).astype(np.float32)))
    slices.sort(key=lambda s: s[0])
    return np.stack([s[1] for s in slices]), len(slices)


def main(d, repeats):
    best = None
    n = 0
    for _ in range(repeats):
        t = time.perf_counter()
        _, n = ingest(d)
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    print(json.dumps({"seconds": best, "slices": n}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
