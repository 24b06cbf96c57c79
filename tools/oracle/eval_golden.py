#!/usr/bin/env python3
"""Goldens for nephrod's evaluation module (segmentation and classification metrics).

usage: .cache/nnunet-venv/bin/python tools/oracle/eval_golden.py --kits23 DIR tests/data/eval

DIR is a directory that contains the `kits23/` package of neheller/kits23 at commit
c1088353084c17b8882a11db71429e7c022b7785 (2026-05-13; the metric files themselves last changed in
2b09050, 2023-04-11). Only kits23/__init__.py, _version.py, configuration/ and evaluation/ are
needed, e.g. `git --git-dir=<mirror> archive <commit> kits23/__init__.py kits23/_version.py
kits23/configuration kits23/evaluation | tar -x -C DIR`. The script checks the git blob ids of
metrics.py, labels.py, dice.py and generate_bool_masks_for_hec.py against that commit and refuses
other code. Nothing is stubbed: kits23's metrics.py imports SimpleITK, batchgenerators (0.25.5 is
in the venv) and surface_distance, all real.

Pinned: tools/oracle/requirements-nnunet.txt (numpy 2.4.6, scipy 1.17.1, scikit-image 0.26.0,
scikit-learn 1.9.1, simpleitk 2.5.7) plus tools/oracle/requirements-eval.txt (surface-distance 0.1
= google-deepmind/surface-distance commit ee651c80, absl-py 2.5.1), all in .cache/nnunet-venv.

Writes, under OUT (deterministic: every random draw is numpy default_rng with a fixed seed):
  seg/truth/<case>.nii.gz, seg/pred/<case>.nii.gz   uint8 label maps (SimpleITK)
  seg/seg_golden.json   per case: KiTS HEC Dice / Surface Dice from kits23's own
                        compute_metrics_for_case (reads the NIfTI files itself), per-label blocks
                        via kits23's compute_metrics_for_label, HD95 / ASSD / ASD via
                        surface-distance, volumes, 26-connected lesion detection; means.
  cls/preds.csv, cls/truth.csv, cls/reader.csv   synthetic 5-class renal-mass classification
  cls/cls_golden.json   scikit-learn accuracy, top-2, confusion, per-class sens/spec/PPV/F1,
                        OvR ROC AUC + macro, fast DeLong SE/CI (Sun & Xu 2014), benign-vs-malignant
                        AUC, percentile-bootstrap CIs for seeds 0..29, model-vs-reader permutation
                        p-values for seeds 0..29.
tests/data/eval/README.md documents every field.
"""
import argparse
import hashlib
import importlib.metadata
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, stats
from skimage.measure import label as sk_label

warnings.filterwarnings("ignore", category=DeprecationWarning)  # scipy.ndimage.filters/morphology

KITS23_COMMIT = "c1088353084c17b8882a11db71429e7c022b7785"
KITS23_BLOBS = {  # git blob ids at KITS23_COMMIT
    "kits23/evaluation/metrics.py": "51b324b3a5eca750a886341e0698bb6f396eba8e",
    "kits23/configuration/labels.py": "768a483edc1d7b60e274325afc1e778ea917a6fd",
    "kits23/evaluation/dice.py": "d056786e9074c00f50d9a618c08727ba224d917a",
    "kits23/evaluation/generate_bool_masks_for_hec.py": "082000cea0d75b0ac811f122e630f21f0813c8e3",
}
SD_COMMIT = "ee651c80e11ab5fcc3d1b0c1c6e7bbc6fb4c987c"  # google-deepmind/surface-distance
GENERATOR = "tools/oracle/eval_golden.py"

# nephrod name -> kits23 HEC name
HEC_KEYS = {"kidney_and_masses": "kidney_and_mass", "masses": "mass", "tumor": "tumor"}
CLASSES = ["ccRCC", "pRCC", "chRCC", "oncocytoma", "AML"]
BENIGN = (3, 4)


def git_blob_id(path):
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fnum(x):
    """float for JSON; None for nan/inf/None."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


# ----------------------------------------------------------------------------------------------
# Segmentation cases
# ----------------------------------------------------------------------------------------------
SHAPE = (32, 48, 40)  # numpy (z, y, x)
ANISO = (0.78, 0.78, 3.0)  # SimpleITK (x, y, z) spacing
ANISO_XY = (0.7, 0.9, 2.5)  # in-plane x != y: catches swapped axis order
ISO = (1.0, 1.0, 1.0)


def ellipsoid(shape, sp_zyx, centre_idx, radii_mm):
    """bool mask of voxels whose centre lies in the ellipsoid (centre in voxel indices)."""
    z, y, x = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    r = np.broadcast_to(np.asarray(radii_mm, float), (3,))
    d = (((z - centre_idx[0]) * sp_zyx[0] / r[0]) ** 2 + ((y - centre_idx[1]) * sp_zyx[1] / r[1]) ** 2
         + ((x - centre_idx[2]) * sp_zyx[2] / r[2]) ** 2)
    return d <= 1.0


def compose(shape, kidney=None, cyst=None, tumour=None):
    """KiTS aggregation order (1, 3, 2): kidney, then cyst, then tumour overwrite."""
    seg = np.zeros(shape, np.uint8)
    for m, v in ((kidney, 1), (cyst, 3), (tumour, 2)):
        if m is not None:
            seg[m] = v
    return seg


def vox(shape, idxs):
    m = np.zeros(shape, bool)
    for i in idxs:
        m[tuple(i)] = True
    return m


def shift(a, dz, dy, dx):
    """shift without wrap-around (zeros enter)."""
    out = np.zeros_like(a)
    src = [slice(max(0, -d), a.shape[k] - max(0, d)) for k, d in enumerate((dz, dy, dx))]
    dst = [slice(max(0, d), a.shape[k] - max(0, -d)) for k, d in enumerate((dz, dy, dx))]
    out[tuple(dst)] = a[tuple(src)]
    return out


def inplane(r):
    """structuring element that only acts in-plane (y, x)."""
    s = np.zeros((1, 2 * r + 1, 2 * r + 1), bool)
    s[0] = True
    return s


def make_seg_cases():
    rng = np.random.default_rng(20240601)
    S = SHAPE
    cases = []

    def sp(xyz):
        return tuple(float(v) for v in xyz[::-1])

    def std_kidney(spz, c=(16, 24, 20), r=(30.0, 13.0, 10.0)):
        return ellipsoid(S, spz, c, r)

    # c00 perfect prediction: kidney + tumour + cyst
    s = sp(ANISO)
    k = std_kidney(s)
    t = ellipsoid(S, s, (18, 26, 28), (6.0, 5.0, 5.0))
    c = ellipsoid(S, s, (10, 20, 16), (4.0, 3.0, 3.0))
    truth = compose(S, k, c, t)
    cases.append(("c00_perfect", ANISO, truth, truth.copy(),
                  "prediction identical to truth (kidney, tumour bulging out, cyst)"))

    # c01 both empty
    cases.append(("c01_both_empty", ANISO, np.zeros(S, np.uint8), np.zeros(S, np.uint8),
                  "truth and prediction all background"))

    # c02 prediction empty, truth non-empty
    truth = compose(S, k, None, t)
    cases.append(("c02_pred_empty", ANISO, truth, np.zeros(S, np.uint8),
                  "prediction all background, truth kidney + tumour"))

    # c03 truth empty, prediction non-empty
    pk = ellipsoid(S, s, (14, 22, 18), (20.0, 10.0, 8.0))
    pt = ellipsoid(S, s, (14, 22, 24), (4.0, 4.0, 4.0))
    cases.append(("c03_truth_empty", ANISO, np.zeros(S, np.uint8), compose(S, pk, None, pt),
                  "truth all background, prediction kidney + tumour"))

    # c04 tumour-only prediction
    truth = compose(S, k, c, t)
    pred = compose(S, None, None, ndimage.binary_dilation(t, inplane(1)))
    cases.append(("c04_tumour_only_pred", ANISO, truth, pred,
                  "prediction holds only label 2 (truth tumour dilated in-plane by 1); no kidney, no cyst"))

    # c05 touching lesions
    t1 = np.zeros(S, bool)
    t1[14:18, 18:24, 22:28] = True  # tumour
    c1 = np.zeros(S, bool)
    c1[14:18, 18:24, 28:32] = True  # cyst, face-touching the tumour (x 28)
    t2 = np.zeros(S, bool)
    t2[8:10, 30:33, 12:15] = True
    t3 = np.zeros(S, bool)
    t3[10:12, 33:36, 15:18] = True  # touches t2 only at a corner (z 9|10, y 32|33, x 14|15)
    kk = std_kidney(s, r=(33.0, 16.0, 13.0))
    truth = compose(S, kk, c1, t1 | t2 | t3)
    pt1 = shift(t1, 0, 1, 0)
    pc1 = shift(c1, 0, 1, 0)
    pc1[14:18, 19:25, 28:29] = False
    pt1[14:18, 19:25, 28:29] = True  # boundary voxel column predicted tumour instead of cyst
    pred = compose(S, ndimage.binary_erosion(kk, inplane(1)), pc1, pt1 | t3)
    cases.append(("c05_touching_lesions", ANISO, truth, pred,
                  "tumour face-touching a cyst (one masses component); two tumours touching only "
                  "diagonally (one 26-component); prediction: kidney eroded, tumour+cyst shifted 1 voxel in y "
                  "with one boundary column relabelled, of the diagonal pair only the second tumour"))

    # c06 one-voxel lesions
    big = ellipsoid(S, s, (16, 24, 14), (5.0, 4.0, 4.0))
    ones_t = [(6, 16, 20), (20, 30, 22), (25, 24, 18)]
    ones_c = [(12, 28, 26)]
    kk = std_kidney(s, r=(36.0, 16.0, 13.0))
    truth = compose(S, kk, vox(S, ones_c), big | vox(S, ones_t))
    # predicted: big tumour, one-voxel tumour exactly on (6,16,20); (20,31,23) diagonal neighbour
    # of truth (20,30,22) -> no overlap (FP + FN); cyst detected as tumour; one-voxel FP cyst
    pred = compose(S, kk, vox(S, [(28, 20, 10)]),
                   big | vox(S, [(6, 16, 20), (20, 31, 23), (12, 28, 26)]))
    cases.append(("c06_one_voxel_lesions", ANISO, truth, pred,
                  "one-voxel tumours/cyst: one exact hit, one diagonally adjacent miss (FP+FN), "
                  "cyst predicted as tumour, one missed, one one-voxel FP cyst"))

    # c07 lesions at the array border
    kk = ellipsoid(S, s, (4, 24, 36), (24.0, 12.0, 9.0))  # cut by z = 0 and x = 39
    tb = np.zeros(S, bool)
    tb[0:3, 40:48, 32:40] = True  # touches z=0, y=47, x=39 faces
    tc = np.zeros(S, bool)
    tc[31, 0, 0] = True  # one voxel at the far corner
    cb = np.zeros(S, bool)
    cb[28:32, 0:4, 36:40] = True
    truth = compose(S, kk, cb, tb | tc)
    pred = compose(S, shift(kk, 0, 1, 1), shift(cb, 1, 0, 0), shift(tb, -1, 1, 1) | tc)
    cases.append(("c07_border", ANISO, truth, pred,
                  "kidney cut by the z=0 and x=39 planes, lesions touching faces and corners of "
                  "the array; prediction shifted towards the border (clipped)"))

    # c08 small shift, in-plane anisotropic spacing
    s8 = sp(ANISO_XY)
    k8 = ellipsoid(S, s8, (16, 24, 20), (28.0, 14.0, 10.0))
    t8 = ellipsoid(S, s8, (19, 28, 26), (6.0, 5.0, 5.0))
    c8 = ellipsoid(S, s8, (11, 18, 16), (5.0, 3.0, 3.0))
    truth = compose(S, k8, c8, t8)
    pred = shift(truth, 0, 1, 1)
    cases.append(("c08_shift_aniso_xy", ANISO_XY, truth, pred,
                  "prediction = truth shifted +1 voxel in y and x; spacing x 0.7, y 0.9, z 2.5"))

    # c09 erosion / dilation
    truth = compose(S, k, c, t)
    pred = compose(S, ndimage.binary_erosion(k, inplane(1)), None,
                   ndimage.binary_dilation(t, np.ones((3, 3, 3), bool)))
    cases.append(("c09_erode_dilate", ANISO, truth, pred,
                  "kidney eroded in-plane by 1, tumour dilated by a 3x3x3 cube, cyst missed"))

    # c10 isotropic, random boundary noise
    si = sp(ISO)
    ki = ellipsoid(S, si, (16, 24, 20), (12.0, 15.0, 11.0))
    for _ in range(6):  # bumps
        cz, cy, cx = rng.integers(6, 26), rng.integers(10, 38), rng.integers(10, 30)
        ki |= ellipsoid(S, si, (cz, cy, cx), (3.0, 3.0, 3.0)) & ndimage.binary_dilation(ki, iterations=3)
    ti = ellipsoid(S, si, (12, 30, 26), (5.0, 5.0, 4.0))
    ci = ellipsoid(S, si, (22, 18, 14), (3.0, 3.0, 3.0))
    truth = compose(S, ki, ci, ti)
    pred = truth.copy()
    fg = truth > 0
    band = ndimage.binary_dilation(fg) & ~ndimage.binary_erosion(fg)
    flip = band & (rng.random(S) < 0.3)
    pred[flip & fg] = 0
    pred[flip & ~fg] = 1
    tb2 = ndimage.binary_dilation(ti) & ~ndimage.binary_erosion(ti)
    tflip = tb2 & (rng.random(S) < 0.3)
    pred[tflip & ti] = 1
    pred[tflip & ~ti & (pred > 0)] = 2
    pred[ellipsoid(S, si, (16, 24, 31), (4.0, 4.0, 4.0))] = 0  # dent beyond the tolerance
    pred[ellipsoid(S, si, (9, 24, 20), (3.0, 3.0, 3.0)) & (pred == 0)] = 1  # extra bump
    cases.append(("c10_isotropic_noise", ISO, truth, pred,
                  "isotropic 1 mm; bumpy kidney; 30 % of boundary-band voxels flipped (seeded), a dent "
                  "carved into the kidney and a bump added"))

    # c11 masses predicted but none in truth
    truth = compose(S, k)
    pred = compose(S, k, vox(S, [(20, 20, 18), (20, 20, 19)]),
                   ellipsoid(S, s, (14, 26, 24), (4.0, 3.0, 3.0)))
    cases.append(("c11_masses_pred_only", ANISO, truth, pred,
                  "truth kidney only; prediction adds a tumour and a 2-voxel cyst (masses/tumour "
                  "HECs: truth empty, prediction not)"))

    # c12 cyst predicted as tumour
    truth = compose(S, k, ellipsoid(S, s, (18, 26, 28), (6.0, 5.0, 5.0)))
    pred = compose(S, k, None, ellipsoid(S, s, (18, 26, 28), (6.0, 5.0, 5.0)))
    cases.append(("c12_cyst_as_tumour", ANISO, truth, pred,
                  "truth cyst predicted as tumour: masses perfect, tumour HEC truth empty"))

    # c13 many lesions of mixed sizes, in-plane anisotropic
    k13 = ellipsoid(S, s8, (16, 24, 20), (36.0, 19.0, 12.0))
    lt = [ellipsoid(S, s8, (8, 16, 14), (5.0, 4.0, 4.0)),  # big, detected (shifted)
          ellipsoid(S, s8, (22, 30, 24), (6.0, 5.0, 5.0)),  # big, missed
          vox(S, [(14, 34, 18), (14, 34, 19)]),  # small, detected
          vox(S, [(26, 16, 22)]),  # small, missed
          vox(S, [(4, 28, 20), (5, 28, 20), (4, 29, 20), (5, 29, 20)])]  # small, detected by big pred
    lc = [ellipsoid(S, s8, (16, 14, 26), (3.0, 2.5, 2.5))]  # cyst, detected as tumour
    truth = compose(S, k13, lc[0], lt[0] | lt[1] | lt[2] | lt[3] | lt[4])
    pt = [shift(lt[0], 1, 0, 0),
          vox(S, [(14, 34, 19), (14, 35, 19)]),
          ellipsoid(S, s8, (5, 29, 21), (5.0, 4.0, 4.0)),  # big pred over a small truth
          vox(S, [(10, 40, 20)]),  # small FP
          ellipsoid(S, s8, (26, 36, 14), (4.0, 3.5, 3.5)),  # big FP
          shift(lc[0], 0, 0, 1)]
    pm = np.zeros(S, bool)
    for m in pt:
        pm |= m
    pred = compose(S, k13, None, pm)
    cases.append(("c13_many_lesions", ANISO_XY, truth, pred,
                  "several lesions < 5 mm and >= 5 mm: TP, FN, FP in both strata; a large "
                  "prediction over a small truth lesion"))
    return cases


def write_nifti(arr, spacing_xyz, path):
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(tuple(float(v) for v in spacing_xyz))
    sitk.WriteImage(img, str(path), useCompression=True)


def distance_block(gt, pred, spacing_zyx, sd_lib):
    """HD95 / ASSD / ASD from surface-distance. Empty rules: both empty -> 0; one empty -> None."""
    ge, pe = not gt.any(), not pred.any()
    if ge and pe:
        return {"hd95_mm": 0.0, "assd_mm": 0.0, "asd_gt_to_pred_mm": 0.0, "asd_pred_to_gt_mm": 0.0}
    if ge or pe:
        return {"hd95_mm": None, "assd_mm": None, "asd_gt_to_pred_mm": None, "asd_pred_to_gt_mm": None}
    d = sd_lib.compute_surface_distances(gt, pred, spacing_zyx)
    hd95 = sd_lib.compute_robust_hausdorff(d, 95)
    a_gp, a_pg = sd_lib.compute_average_surface_distance(d)
    num = np.sum(d["distances_gt_to_pred"] * d["surfel_areas_gt"]) + np.sum(
        d["distances_pred_to_gt"] * d["surfel_areas_pred"])
    den = np.sum(d["surfel_areas_gt"]) + np.sum(d["surfel_areas_pred"])
    return {"hd95_mm": fnum(hd95), "assd_mm": fnum(num / den), "asd_gt_to_pred_mm": fnum(a_gp),
            "asd_pred_to_gt_mm": fnum(a_pg)}


def volume_block(gt, pred, voxel_ml):
    vt = int(np.count_nonzero(gt)) * voxel_ml
    vp = int(np.count_nonzero(pred)) * voxel_ml
    return {"voxels_truth": int(np.count_nonzero(gt)), "voxels_pred": int(np.count_nonzero(pred)),
            "volume_truth_ml": vt, "volume_pred_ml": vp, "volume_error_ml": vp - vt}


def ratio(a, b):
    return None if b == 0 else a / b


def f1(p, r):
    if p is None or r is None:
        return None
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def det_summary(truth_les, pred_les):
    """truth_les / pred_les: lists of dicts with 'diameter_mm' and 'detected' / 'tp'."""
    out = {}
    strata = {"all": lambda d: True, "lt5mm": lambda d: d < 5.0, "ge5mm": lambda d: d >= 5.0}
    for name, keep in strata.items():
        tl = [l for l in truth_les if keep(l["diameter_mm"])]
        pl = [l for l in pred_les if keep(l["diameter_mm"])]
        det = sum(l["detected"] for l in tl)
        tp = sum(l["tp"] for l in pl)
        r = ratio(det, len(tl))
        p = ratio(tp, len(pl))
        out[name] = {"truth_lesions": len(tl), "detected": det, "fn": len(tl) - det,
                     "pred_lesions": len(pl), "tp_pred": tp, "fp": len(pl) - tp,
                     "recall": r, "precision": p, "f1": f1(p, r)}
    return out


def detection(gt_seg, pred_seg, spacing_zyx):
    voxel_mm3 = float(np.prod(spacing_zyx))
    gm = (gt_seg == 2) | (gt_seg == 3)
    pm = (pred_seg == 2) | (pred_seg == 3)
    gl, ng = sk_label(gm, connectivity=3, return_num=True)
    pl, npr = sk_label(pm, connectivity=3, return_num=True)

    def lesions(lab, n, other):
        out = []
        for i in range(1, n + 1):
            m = lab == i
            v = int(m.sum())
            first = [int(a[0]) for a in np.nonzero(m)]  # raster-order first voxel (z, y, x)
            out.append({"first_voxel_zyx": first, "voxels": v, "volume_mm3": v * voxel_mm3,
                        "diameter_mm": (6.0 * v * voxel_mm3 / np.pi) ** (1.0 / 3.0),
                        "hit": bool(other[m].any())})
        return out

    tl = lesions(gl, ng, pm)
    pl_ = lesions(pl, npr, gm)
    for l in tl:
        l["detected"] = l.pop("hit")
    for l in pl_:
        l["tp"] = l.pop("hit")
    summ = det_summary(tl, pl_)
    return {**summ, "truth_lesion_list": tl, "pred_lesion_list": pl_}


def seg_goldens(out, km, kl, sd_lib):
    seg_dir = out / "seg"
    (seg_dir / "truth").mkdir(parents=True, exist_ok=True)
    (seg_dir / "pred").mkdir(parents=True, exist_ok=True)
    tol = {k: kl.HEC_SD_TOLERANCES_MM[v] for k, v in HEC_KEYS.items()}
    label_tol = {1: tol["kidney_and_masses"], 2: tol["tumor"], 3: tol["tumor"]}
    results = []
    all_t, all_p = [], []
    for name, sp_xyz, truth, pred, desc in make_seg_cases():
        tp_, pp_ = seg_dir / "truth" / f"{name}.nii.gz", seg_dir / "pred" / f"{name}.nii.gz"
        write_nifti(truth, sp_xyz, tp_)
        write_nifti(pred, sp_xyz, pp_)
        # read back exactly as kits23 does (spacing reversed to numpy order; float32 from header)
        ti, pi = sitk.ReadImage(str(tp_)), sitk.ReadImage(str(pp_))
        spacing = tuple(list(ti.GetSpacing())[::-1])
        g, p = sitk.GetArrayFromImage(ti), sitk.GetArrayFromImage(pi)
        assert g.dtype == np.uint8 and (g == truth).all() and (p == pred).all()
        voxel_ml = float(np.prod(spacing)) / 1000.0
        kits = km.compute_metrics_for_case(str(pp_), str(tp_))  # (3 HECs, [Dice, SD])
        hec = {}
        for i, (key, kname) in enumerate(HEC_KEYS.items()):
            assert km.HEC_NAME_LIST[i] == kname
            labels = kl.KITS_HEC_LABEL_MAPPING[kname]
            dc2, sd2 = km.compute_metrics_for_label(p, g, labels, spacing, sd_tolerance_mm=tol[key])
            assert (dc2, sd2) == (kits[i, 0], kits[i, 1])
            gm, pm = np.isin(g, labels), np.isin(p, labels)
            hec[key] = {"labels": list(labels), "tolerance_mm": tol[key], "dice": float(kits[i, 0]),
                        "surface_dice": float(kits[i, 1]), **distance_block(gm, pm, spacing, sd_lib),
                        **volume_block(gm, pm, voxel_ml)}
        lab = {}
        for l in (1, 2, 3):
            dc, sd = km.compute_metrics_for_label(p, g, l, spacing, sd_tolerance_mm=label_tol[l])
            gm, pm = g == l, p == l
            lab[str(l)] = {"tolerance_mm": label_tol[l], "dice": float(dc), "surface_dice": float(sd),
                           **distance_block(gm, pm, spacing, sd_lib), **volume_block(gm, pm, voxel_ml)}
        det = detection(g, p, spacing)
        all_t += det["truth_lesion_list"]
        all_p += det["pred_lesion_list"]
        results.append({"case": name, "description": desc, "shape_zyx": list(g.shape),
                        "spacing_xyz_sitk": list(ti.GetSpacing()), "spacing_zyx": list(spacing),
                        "voxel_volume_ml": voxel_ml, "hec": hec, "labels": lab, "detection": det})
        print(f"{name}: " + " ".join(f"{k}={v['dice']:.4f}/{v['surface_dice']:.4f}" for k, v in hec.items()))
    mean = {}
    for key in HEC_KEYS:
        dices = [r["hec"][key]["dice"] for r in results]
        sds = [r["hec"][key]["surface_dice"] for r in results]
        hds = [r["hec"][key]["hd95_mm"] for r in results if r["hec"][key]["hd95_mm"] is not None]
        mean[key] = {"dice": float(np.mean(dices)), "surface_dice": float(np.mean(sds)),
                     "hd95_mm": float(np.mean(hds)), "n_cases": len(results), "n_cases_hd95": len(hds)}
    golden = {
        "generator": GENERATOR,
        "kits23_commit": KITS23_COMMIT,
        "kits23_blob_ids": KITS23_BLOBS,
        "surface_distance": {"pypi": "surface-distance==0.1", "github_commit": SD_COMMIT},
        "tolerances_mm": tol,
        "label_tolerances_mm": {str(k): v for k, v in label_tol.items()},
        "hec_labels": {k: list(kl.KITS_HEC_LABEL_MAPPING[v]) for k, v in HEC_KEYS.items()},
        "mean": mean,
        "detection_overall": det_summary(all_t, all_p),
        "cases": results,
    }
    (seg_dir / "seg_golden.json").write_text(json.dumps(golden, indent=1) + "\n")


# ----------------------------------------------------------------------------------------------
# Classification
# ----------------------------------------------------------------------------------------------
def midrank(x):
    """1-based mid-ranks (ties get the mean rank)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = len(x)
    t = np.zeros(n, float)
    i = 0
    while i < n:
        j = i
        while j < n and xs[j] == xs[i]:
            j += 1
        t[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(n, float)
    out[order] = t
    return out


def fast_delong(pos, neg):
    """Fast DeLong (Sun & Xu 2014, IEEE SPL 21(11):1389-1393, doi:10.1109/LSP.2014.2337313).

    Returns (auc, variance) with the DeLong et al. 1988 variance S10/m + S01/n (sample
    variances with ddof=1), which is what pROC's ci_auc_delong / var(method='delong') uses.
    """
    m, n = len(pos), len(neg)
    tx, ty = midrank(pos), midrank(neg)
    tz = midrank(np.concatenate([pos, neg]))
    auc = tz[:m].sum() / (m * n) - (m + 1.0) / (2.0 * n)
    v10 = (tz[:m] - tx) / n  # placement of each positive among negatives
    v01 = 1.0 - (tz[m:] - ty) / m  # placement of each negative among positives
    var = np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n
    return auc, var


def naive_delong(pos, neg):
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(1), psi.mean(0)
    return psi.mean(), np.var(v10, ddof=1) / len(pos) + np.var(v01, ddof=1) / len(neg)


Z975 = float(stats.norm.ppf(0.975))


def delong_block(y_bin, score):
    pos, neg = score[y_bin], score[~y_bin]
    auc, var = fast_delong(pos, neg)
    auc_n, var_n = naive_delong(pos, neg)
    assert abs(auc - auc_n) < 1e-12 and abs(var - var_n) < 1e-12
    se = float(np.sqrt(var))
    lo, hi = auc - Z975 * se, auc + Z975 * se
    return {"auc": float(auc), "se": se, "variance": float(var),
            "ci95": [float(max(lo, 0.0)), float(min(hi, 1.0))], "n_pos": int(len(pos)),
            "n_neg": int(len(neg))}


def make_cls_data():
    rng = np.random.default_rng(1)
    counts = [36, 16, 12, 12, 4]  # AML rare: bootstrap resamples without AML occur (skips)
    n = sum(counts)
    y = np.repeat(np.arange(5), counts)
    rng.shuffle(y)
    cases = [f"mass_{i:03d}" for i in range(n)]
    signal = np.array([1.9, 1.5, 1.0, 0.9, 1.7])
    logits = rng.normal(0.0, 1.0, (n, 5)) + np.log(np.array(counts) / n)
    logits[np.arange(n), y] += signal[y]
    confuse = {2: 3, 3: 2, 1: 0}  # chRCC <-> oncocytoma, pRCC -> ccRCC
    for i in range(n):
        if y[i] in confuse:
            logits[i, confuse[y[i]]] += 0.7
    p = np.exp(1.3 * logits)
    p /= p.sum(1, keepdims=True)
    hund = np.round(p * 100).astype(int)
    for i in range(n):  # make each row sum to exactly 1.00
        hund[i, np.argmax(hund[i])] += 100 - hund[i].sum()
    # hand-made ties (row sums 100): argmax tie, top-2 boundary tie, first-place tie
    special = {0: [40, 40, 10, 5, 5], 1: [30, 20, 20, 15, 15], 2: [10, 35, 10, 35, 10],
               3: [20, 20, 20, 20, 20], 4: [5, 10, 25, 35, 25]}
    want = {0: 1, 1: 1, 2: 3, 3: 4, 4: 2}  # truth class that makes the tie matter
    used = set()
    for k, row in special.items():
        i = next(j for j in range(n) if y[j] == want[k] and j not in used)
        used.add(i)
        hund[i] = row
    assert (hund >= 0).all() and (hund.sum(1) == 100).all()
    # reader: ~75 % correct, errors towards plausible confusions
    reader = y.copy()
    wrong = rng.random(n) < 0.3
    conf = np.array([[0, 4, 2, 2, 1], [5, 0, 2, 1, 1], [1, 2, 0, 5, 1], [1, 1, 5, 0, 1],
                     [3, 1, 1, 1, 0]], float)
    for i in np.nonzero(wrong)[0]:
        w = conf[y[i]] / conf[y[i]].sum()
        reader[i] = rng.choice(5, p=w)
    order_p = rng.permutation(n)
    order_r = rng.permutation(n)
    return cases, y, hund, reader, order_p, order_r


def write_cls_csvs(cls_dir, cases, y, hund, reader, order_p, order_r):
    cls_dir.mkdir(parents=True, exist_ok=True)
    with open(cls_dir / "preds.csv", "w") as f:
        f.write("case," + ",".join(CLASSES) + "\n")
        for i in order_p:
            f.write(cases[i] + "," + ",".join(f"{v / 100:.2f}" for v in hund[i]) + "\n")
    with open(cls_dir / "truth.csv", "w") as f:
        f.write("case,label\n")
        for i in range(len(cases)):
            f.write(f"{cases[i]},{CLASSES[y[i]]}\n")
    with open(cls_dir / "reader.csv", "w") as f:
        f.write("case,label\n")
        for i in order_r:
            f.write(f"{cases[i]},{CLASSES[reader[i]]}\n")


def read_cls_csvs(cls_dir):
    """parse the CSVs back (the goldens are computed from the parsed values)."""
    def rows(name):
        lines = (cls_dir / name).read_text().strip().split("\n")
        return lines[0].split(","), [l.split(",") for l in lines[1:]]
    h, tr = rows("truth.csv")
    assert h == ["case", "label"]
    cases = [r[0] for r in tr]
    y = np.array([CLASSES.index(r[1]) for r in tr])
    h, pr = rows("preds.csv")
    assert h == ["case"] + CLASSES
    pmap = {r[0]: [float(v) for v in r[1:]] for r in pr}
    P = np.array([pmap[c] for c in cases])
    h, rr = rows("reader.csv")
    rmap = {r[0]: CLASSES.index(r[1]) for r in rr}
    reader = np.array([rmap[c] for c in cases])
    return cases, y, P, reader


def auc_rows(Y, S):
    """Mann-Whitney AUC for each row of (B, n) boolean labels Y and scores S; nan if undefined."""
    R = stats.rankdata(S, axis=1)  # average ranks for ties
    n1 = Y.sum(1)
    n0 = Y.shape[1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        a = ((R * Y).sum(1) - n1 * (n1 + 1) / 2.0) / (n1 * n0)
    a[(n1 == 0) | (n0 == 0)] = np.nan
    return a


def bootstrap(y, P, seed, B=1000):
    rng = np.random.default_rng(seed)
    n = len(y)
    idx = rng.integers(0, n, size=(B, n))
    yb = y[idx]
    per = {}
    aucs = []
    for c in range(5):
        a = auc_rows(yb == c, P[idx, c])
        aucs.append(a)
        ok = np.isfinite(a)
        per[CLASSES[c]] = {"ci95": [float(v) for v in np.percentile(a[ok], [2.5, 97.5])],
                           "n_used": int(ok.sum()), "n_skipped": int((~ok).sum())}
    A = np.array(aucs)
    okm = np.isfinite(A).all(0)
    macro = A[:, okm].mean(0)
    per["macro"] = {"ci95": [float(v) for v in np.percentile(macro, [2.5, 97.5])],
                    "n_used": int(okm.sum()), "n_skipped": int((~okm).sum())}
    ben = np.isin(yb, BENIGN)
    a = auc_rows(ben, P[idx, 3] + P[idx, 4])
    ok = np.isfinite(a)
    per["benign_vs_malignant"] = {"ci95": [float(v) for v in np.percentile(a[ok], [2.5, 97.5])],
                                  "n_used": int(ok.sum()), "n_skipped": int((~ok).sum())}
    # spot-check the vectorised AUC against scikit-learn
    from sklearn.metrics import roc_auc_score
    for b in range(0, B, 97):
        for c in range(5):
            yy = yb[b] == c
            if 0 < yy.sum() < n:
                assert abs(roc_auc_score(yy, P[idx[b], c]) - aucs[c][b]) < 1e-12
    return per


def perm_p(d, signs):
    """d: per-case int differences (model_hit - reader_hit); signs: (N, n) +-1."""
    obs = int(d.sum())
    perm = signs @ d
    cnt = int((np.abs(perm) >= abs(obs)).sum())
    return obs, (1 + cnt) / (1 + signs.shape[0])


def exact_perm_p(d):
    """limit of the Monte-Carlo p for infinitely many permutations: P(|sum s_i d_i| >= |obs|)."""
    k = int(np.count_nonzero(d))
    obs = abs(int(d.sum()))
    j = np.arange(k + 1)
    s = 2 * j - k
    return float(stats.binom.pmf(j, k, 0.5)[np.abs(s) >= obs].sum())


def cls_goldens(out):
    from sklearn.metrics import (accuracy_score, confusion_matrix, precision_recall_fscore_support,
                                 roc_auc_score, top_k_accuracy_score)
    cls_dir = out / "cls"
    write_cls_csvs(cls_dir, *make_cls_data())
    cases, y, P, reader = read_cls_csvs(cls_dir)
    n = len(y)
    labels = list(range(5))
    assert np.allclose(P.sum(1), 1.0)
    yhat = np.argmax(P, axis=1)  # ties -> first class
    cm = confusion_matrix(y, yhat, labels=labels)
    prec, rec, f1s, sup = precision_recall_fscore_support(y, yhat, labels=labels, zero_division=0)
    per_class = {}
    for c in range(5):
        tp = cm[c, c]
        fp = cm[:, c].sum() - tp
        fn = cm[c, :].sum() - tp
        tn = n - tp - fp - fn
        yb = y == c
        auc = roc_auc_score(yb, P[:, c])
        dl = delong_block(yb, P[:, c])
        assert abs(dl["auc"] - auc) < 1e-12
        per_class[CLASSES[c]] = {
            "support": int(sup[c]), "tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn),
            "sensitivity": float(rec[c]), "specificity": float(tn / (tn + fp)), "ppv": float(prec[c]),
            "f1": float(f1s[c]), "roc_auc": float(auc), "delong": dl}
    macro = roc_auc_score(y, P, multi_class="ovr", average="macro", labels=labels)
    assert abs(macro - np.mean([v["roc_auc"] for v in per_class.values()])) < 1e-12
    ben = np.isin(y, BENIGN)
    pb = P[:, 3] + P[:, 4]
    bm_auc = roc_auc_score(ben, pb)
    bm = {"roc_auc": float(bm_auc), "delong": delong_block(ben, pb),
          "n_benign": int(ben.sum()), "n_malignant": int((~ben).sum())}
    assert abs(bm["delong"]["auc"] - bm_auc) < 1e-12
    # tie diagnostics
    top2_first_index = np.mean([y[i] in np.argsort(-P[i], kind="stable")[:2] for i in range(n)])

    boot = {str(s): bootstrap(y, P, s) for s in range(30)}
    summ = {}
    for key in CLASSES + ["macro", "benign_vs_malignant"]:
        lo = np.array([boot[str(s)][key]["ci95"][0] for s in range(30)])
        hi = np.array([boot[str(s)][key]["ci95"][1] for s in range(30)])
        summ[key] = {"lower_min": float(lo.min()), "lower_max": float(lo.max()),
                     "lower_mean": float(lo.mean()), "upper_min": float(hi.min()),
                     "upper_max": float(hi.max()), "upper_mean": float(hi.mean())}

    rh = (reader == y)
    perm = {"n_permutations": 10000, "observed": {}, "p_exact_limit": {}, "seeds": {}}
    diffs = {}
    for c in range(5):
        pos = y == c
        # sensitivity: cases of class c, hit = decision == c ; specificity: other cases, hit = decision != c
        d_sens = np.where(pos, (yhat == c).astype(int) - (reader == c).astype(int), 0)
        d_spec = np.where(~pos, (yhat != c).astype(int) - (reader != c).astype(int), 0)
        diffs[CLASSES[c]] = (d_sens, d_spec, int(pos.sum()), int((~pos).sum()))
        sens_m, sens_r = float(np.mean(yhat[pos] == c)), float(np.mean(reader[pos] == c))
        spec_m, spec_r = float(np.mean(yhat[~pos] != c)), float(np.mean(reader[~pos] != c))
        perm["observed"][CLASSES[c]] = {
            "sensitivity_model": sens_m, "sensitivity_reader": sens_r,
            "delta_sensitivity": int(d_sens.sum()) / int(pos.sum()),
            "specificity_model": spec_m, "specificity_reader": spec_r,
            "delta_specificity": int(d_spec.sum()) / int((~pos).sum()),
            "discordant_sensitivity": int(np.count_nonzero(d_sens)),
            "discordant_specificity": int(np.count_nonzero(d_spec))}
        perm["p_exact_limit"][CLASSES[c]] = {"sensitivity": exact_perm_p(d_sens),
                                             "specificity": exact_perm_p(d_spec)}
    for s in range(30):
        rng = np.random.default_rng(s)
        swap = rng.random((10000, n)) < 0.5
        signs = np.where(swap, -1, 1).astype(np.int64)
        res = {}
        for cname, (ds, dp, npos, nneg) in diffs.items():
            _, p_s = perm_p(ds, signs)
            _, p_p = perm_p(dp, signs)
            res[cname] = {"sensitivity": p_s, "specificity": p_p}
        perm["seeds"][str(s)] = res
    perm["spread"] = {c: {m: [min(perm["seeds"][str(s)][c][m] for s in range(30)),
                              max(perm["seeds"][str(s)][c][m] for s in range(30))]
                          for m in ("sensitivity", "specificity")} for c in CLASSES}

    golden = {
        "generator": GENERATOR,
        "sklearn_version": importlib.metadata.version("scikit-learn"),
        "numpy_version": np.__version__,
        "classes": CLASSES,
        "n_cases": n,
        "accuracy": float(accuracy_score(y, yhat)),
        "top2_accuracy": float(top_k_accuracy_score(y, P, k=2, labels=labels)),
        "top2_accuracy_if_ties_to_first_class": float(top2_first_index),
        "reader_accuracy": float(np.mean(rh)),
        "confusion_matrix": cm.tolist(),
        "reader_confusion_matrix": confusion_matrix(y, reader, labels=labels).tolist(),
        "per_class": per_class,
        "macro_roc_auc": float(macro),
        "benign_vs_malignant": bm,
        "delong_z": Z975,
        "model_decisions": {cases[i]: CLASSES[yhat[i]] for i in range(n)},
        "bootstrap": {"resamples": 1000, "stratified": False,
                      "rng": "np.random.default_rng(seed).integers(0, n, size=(1000, n)); rows index "
                             "cases in truth.csv order",
                      "seeds": boot, "spread_over_seeds": summ},
        "permutation": perm,
    }
    (cls_dir / "cls_golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    print(f"cls: acc={golden['accuracy']:.4f} top2={golden['top2_accuracy']:.4f} "
          f"macroAUC={macro:.4f} reader_acc={golden['reader_accuracy']:.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kits23", required=True, help="directory containing the kits23/ package")
    ap.add_argument("out", help="output directory, e.g. tests/data/eval")
    a = ap.parse_args()
    kdir = Path(a.kits23).resolve()
    for rel, blob in KITS23_BLOBS.items():
        got = git_blob_id(kdir / rel)
        if got != blob:
            sys.exit(f"{rel}: git blob {got} != {blob} (kits23 commit {KITS23_COMMIT})")
    sys.path.insert(0, str(kdir))
    import kits23.configuration.labels as kl
    import kits23.evaluation.metrics as km
    import surface_distance as sd_lib
    assert Path(km.__file__).resolve().is_relative_to(kdir)
    assert importlib.metadata.version("surface-distance") == "0.1"
    out = Path(a.out)
    seg_goldens(out, km, kl, sd_lib)
    cls_goldens(out)


if __name__ == "__main__":
    main()
