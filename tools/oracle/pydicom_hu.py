#!/usr/bin/env python3
"""Golden HU values from pydicom for every file of a DICOM corpus.

Usage: pydicom_hu.py CORPUS_DIR OUT_DIR

For each regular file under CORPUS_DIR (sorted), pydicom (pinned in requirements-pydicom.txt)
reads it with force=True and, when it has greyscale pixel data it can decode, computes
`apply_modality_lut(ds.pixel_array, ds)` as float64. OUT_DIR/manifest.json lists every file:

  {"pydicom": "3.0.2", "files": [{"path": <relative>, "sha256": ..., "status": "ok" |
   "no_pixels" | "not_greyscale" | "unreadable" | "decode_error", "message": ...,
   "transfer_syntax": ..., "frames": F, "rows": R, "cols": C, "values": "<n>.f64"}]}

and OUT_DIR/<n>.f64 holds the HU of file n as little-endian float64, frame-major then
row-major. The Rust test tests/dicom_corpus_parity.rs compares nephrod's decode to these.
"""
import hashlib
import json
import os
import sys
import warnings

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut

warnings.simplefilter("ignore")


def functional_group_rescale(ds, arr):
    """Enhanced (multi-frame) objects: pydicom's apply_modality_lut reads only top-level
    Rescale attributes, so the per-frame Pixel Value Transformation (per-frame item first,
    then the shared item; PS3.3 C.7.6.16.2.9) is applied here frame by frame."""
    frames = arr.reshape(-1, int(ds.Rows), int(ds.Columns)).astype(np.float64)
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    out = np.empty_like(frames)
    per_frame = ds.PerFrameFunctionalGroupsSequence
    for f in range(frames.shape[0]):
        item = per_frame[f] if f < len(per_frame) else None
        pvt = None
        for group in (item, shared):
            if group is not None and "PixelValueTransformationSequence" in group:
                pvt = group.PixelValueTransformationSequence[0]
                break
        slope = float(getattr(pvt, "RescaleSlope", 1.0)) if pvt is not None else 1.0
        intercept = float(getattr(pvt, "RescaleIntercept", 0.0)) if pvt is not None else 0.0
        out[f] = frames[f] * slope + intercept
    return out


def main(corpus: str, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    paths = []
    for root, _, files in os.walk(corpus):
        for f in files:
            if f.startswith("."):
                continue
            paths.append(os.path.join(root, f))
    paths.sort()
    entries = []
    for n, path in enumerate(paths):
        rel = os.path.relpath(path, corpus)
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        e = {"path": rel, "sha256": digest}
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception as exc:  # noqa: BLE001 - the oracle records every failure
            e.update(status="unreadable", message=str(exc)[:200])
            entries.append(e)
            continue
        meta = getattr(ds, "file_meta", None)
        e["transfer_syntax"] = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        if "PixelData" not in ds:
            e.update(status="no_pixels")
            entries.append(e)
            continue
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        pi = str(ds.get("PhotometricInterpretation", ""))
        if spp != 1 or not pi.startswith("MONOCHROME"):
            e.update(status="not_greyscale", message=f"{pi} spp={spp}")
            entries.append(e)
            continue
        try:
            arr = ds.pixel_array
            if "PerFrameFunctionalGroupsSequence" in ds:
                hu = functional_group_rescale(ds, arr)
                e["rescale"] = "functional_groups"
            else:
                hu = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001
            e.update(status="decode_error", message=str(exc)[:200])
            entries.append(e)
            continue
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = hu.size // (rows * cols)
        name = f"{n}.f64"
        hu.reshape(frames, rows, cols).astype("<f8").tofile(os.path.join(out, name))
        e.update(status="ok", frames=frames, rows=rows, cols=cols, values=name)
        entries.append(e)
    with open(os.path.join(out, "manifest.json"), "w") as fh:
        json.dump({"pydicom": pydicom.__version__, "files": entries}, fh, indent=1)
    counts = {}
    for e in entries:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    print(f"pydicom {pydicom.__version__}: {len(entries)} files {counts}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
