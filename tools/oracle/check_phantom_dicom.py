#!/usr/bin/env python3
"""pydicom oracle for `nephrod phantom`: every DICOM file written must read with pydicom, and
each series must equal, voxel for voxel and in geometry, the NIfTI image nephrod wrote for the
same case and phase.

usage: check_phantom_dicom.py DICOM_RUN_DIR NIFTI_RUN_DIR
  DICOM_RUN_DIR  output of `nephrod phantom --format dicom` (case_*/truth.json, case_*/dicom/...)
  NIFTI_RUN_DIR  output of `nephrod phantom --format nifti` with the same seed/options

Prints one JSON summary line on stdout; exit status 0 only when every file was read and every
series matched. Pinned versions: tools/oracle/requirements-pydicom.txt.
"""
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom


def frames_of(ds):
    """[(position LPS, orientation (6,), pixel rows×cols in HU)] for every frame of a file."""
    px = ds.pixel_array
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if n == 1 and px.ndim == 2:
        px = px[None]
    out = []
    if "PerFrameFunctionalGroupsSequence" in ds:
        shared = ds.SharedFunctionalGroupsSequence[0]
        for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
            def pick(name):
                if name in item:
                    return getattr(item, name)[0]
                return getattr(shared, name)[0]
            pos = np.array(pick("PlanePositionSequence").ImagePositionPatient, float)
            ori = np.array(pick("PlaneOrientationSequence").ImageOrientationPatient, float)
            pm = pick("PixelMeasuresSequence")
            tr = pick("PixelValueTransformationSequence")
            hu = px[f].astype(np.float64) * float(tr.RescaleSlope) + float(tr.RescaleIntercept)
            out.append((pos, ori, [float(v) for v in pm.PixelSpacing], hu))
    else:
        pos = np.array(ds.ImagePositionPatient, float)
        ori = np.array(ds.ImageOrientationPatient, float)
        hu = px[0].astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        out.append((pos, ori, [float(v) for v in ds.PixelSpacing], hu))
    return out


def main():
    dicom_run, nifti_run = Path(sys.argv[1]), Path(sys.argv[2])
    summary = {"files": 0, "unreadable": [], "series": 0, "mismatches": [],
               "transfer_syntaxes": {}, "sop_classes": {}}
    for truth_path in sorted(dicom_run.glob("case_*/truth.json")):
        case_dir = truth_path.parent
        truth = json.loads(truth_path.read_text())
        nifti_truth = json.loads((nifti_run / case_dir.name / "truth.json").read_text())
        nifti_by_uid = {p["series_uid"]: p for p in nifti_truth["phases"]}
        for phase in truth["phases"]:
            series_dir = case_dir / phase["image_path"]
            frames = []
            for f in sorted(series_dir.iterdir()):
                summary["files"] += 1
                try:
                    ds = pydicom.dcmread(f)
                    ts = str(ds.file_meta.TransferSyntaxUID)
                    summary["transfer_syntaxes"][ts] = summary["transfer_syntaxes"].get(ts, 0) + 1
                    sc = str(ds.SOPClassUID)
                    summary["sop_classes"][sc] = summary["sop_classes"].get(sc, 0) + 1
                    if str(ds.SeriesInstanceUID) != phase["series_uid"]:
                        raise ValueError("series UID differs from truth")
                    frames.extend(frames_of(ds))
                except Exception as e:  # noqa: BLE001 - report every failure
                    summary["unreadable"].append(f"{f}: {e}")
            summary["series"] += 1
            ref = nifti_by_uid.get(phase["series_uid"])
            name = f"{case_dir.name}/{phase['phase']}"
            if ref is None:
                summary["mismatches"].append(f"{name}: no NIfTI phase with this series UID")
                continue
            img = nib.load(str(nifti_run / case_dir.name / ref["image_path"]))
            vol = np.asarray(img.dataobj, dtype=np.float64)
            affine = img.affine.copy()
            affine[:2] *= -1  # RAS -> LPS rows
            ori = frames[0][1] if frames else None
            normal = np.cross(ori[:3], ori[3:]) if ori is not None else None
            frames.sort(key=lambda fr: float(np.dot(fr[0], normal)))
            if len(frames) != vol.shape[2]:
                summary["mismatches"].append(f"{name}: {len(frames)} frames vs {vol.shape[2]} slices")
                continue
            worst_mm = 0.0
            bad = 0
            for k, (pos, o, spacing, hu) in enumerate(frames):
                expect_pos = affine[:3, :3] @ np.array([0.0, 0.0, k]) + affine[:3, 3]
                worst_mm = max(worst_mm, float(np.abs(expect_pos - pos).max()))
                col_dir = affine[:3, 0] / np.linalg.norm(affine[:3, 0])
                row_dir = affine[:3, 1] / np.linalg.norm(affine[:3, 1])
                worst_mm = max(worst_mm, float(np.abs(o[:3] - col_dir).max()) * 100,
                               float(np.abs(o[3:] - row_dir).max()) * 100)
                if hu.shape != (vol.shape[1], vol.shape[0]) or not np.array_equal(hu.T, vol[:, :, k]):
                    bad += 1
            if worst_mm > 1e-3:
                summary["mismatches"].append(f"{name}: geometry differs by {worst_mm:.2e}")
            if bad:
                summary["mismatches"].append(f"{name}: {bad} frames differ in HU")
    ok = summary["files"] > 0 and not summary["unreadable"] and not summary["mismatches"]
    summary["ok"] = ok
    print(json.dumps(summary))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
