#!/usr/bin/env python3
"""Speed reference: the KiTS Surface Dice computed by google-deepmind/surface-distance.

usage: .cache/nnunet-venv/bin/python tools/oracle/eval_speed_reference.py [--write DIR]
                                     [--repeat N] [--kits23 DIR]

Builds a synthetic CT-sized pair in memory (numpy (z, y, x) = (500, 512, 512), SimpleITK
spacing (x, y, z) = (0.8, 0.8, 1.0) mm, uint8 labels 0 background / 1 kidney / 2 tumour / 3 cyst):
two kidney ellipsoids (about 110 x 70 x 56 mm), a large exophytic tumour and a small tumour on
the left kidney, a cyst on the right one. The prediction is the same anatomy with shifted
centres, slightly different radii and a low-frequency angular wobble of the surfaces, so that it
differs from the truth by about 0-3 mm everywhere. Deterministic (no random numbers).

For each KiTS HEC (kidney_and_masses {1,2,3}, masses {2,3}, tumor {2}) it times, with
time.perf_counter, compute_surface_distances(gt, pred, spacing_zyx) +
compute_surface_dice_at_tolerance(dist, tolerance) -- the exact calls kits23's
compute_metrics_for_label makes -- and prints the seconds per HEC, their sum, and the Surface Dice
values (so an implementation timed on the same pair can also check its numbers). The boolean HEC
masks are built before the clock starts (their construction is printed separately). With
--repeat N the minimum over N runs is reported.

--write DIR   also writes the pair as DIR/speed_truth.nii.gz and DIR/speed_pred.nii.gz (uint8,
              SimpleITK, compressed) so nephrod can time the same pair. Do not write into the
              repository; the files are several MB and are regenerated on demand.
--kits23 DIR  with --write: additionally times kits23's own compute_metrics_for_case on the
              written files (NIfTI reading + Dice + Surface Dice for the 3 HECs), DIR as in
              eval_golden.py (neheller/kits23 commit c1088353084c17b8882a11db71429e7c022b7785).

Pinned: tools/oracle/requirements-nnunet.txt + tools/oracle/requirements-eval.txt
(surface-distance 0.1) in .cache/nnunet-venv.
"""
import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", category=DeprecationWarning)  # scipy.ndimage.filters/morphology

SHAPE = (500, 512, 512)  # numpy (z, y, x)
SPACING_XYZ = (0.8, 0.8, 1.0)
# the spacing as a NIfTI header stores it (float32) and SimpleITK/kits23 read it back, so the
# in-memory numbers equal those computed from the written files
SPACING_ZYX = tuple(float(np.float32(v)) for v in SPACING_XYZ[::-1])
TOL = {"kidney_and_masses": 1.0330772532390826, "masses": 1.1328796488598762,
       "tumor": 1.1498198361434828}
HECS = {"kidney_and_masses": (1, 2, 3), "masses": (2, 3), "tumor": (2,)}


def blob(seg, value, centre_mm, radii_mm, wobble=0.0, phase=0.0, only_bg=False):
    """paint an ellipsoid (centre / radii in mm, z y x) whose radius is modulated by
    1 + wobble * sin(3 theta + phase) * cos(2 phi); evaluated only inside its bounding box."""
    c = np.asarray(centre_mm, float)
    r = np.asarray(radii_mm, float) * (1.0 + abs(wobble))
    sp = np.asarray(SPACING_ZYX, float)
    lo = np.maximum(np.floor((c - r) / sp).astype(int) - 1, 0)
    hi = np.minimum(np.ceil((c + r) / sp).astype(int) + 2, SHAPE)
    z, y, x = np.meshgrid(*[np.arange(lo[k], hi[k]) * sp[k] - c[k] for k in range(3)], indexing="ij")
    rz, ry, rx = radii_mm
    d = np.sqrt((z / rz) ** 2 + (y / ry) ** 2 + (x / rx) ** 2)
    if wobble:
        theta = np.arctan2(y, x)
        phi = np.arctan2(z, np.sqrt(x * x + y * y))
        d = d / (1.0 + wobble * np.sin(3 * theta + phase) * np.cos(2 * phi))
    m = d <= 1.0
    sub = seg[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    if only_bg:
        m &= sub == 0
    sub[m] = value


def make_pair():
    truth = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    # (z, y, x) in mm. Kidneys (label 1) first, then cyst (3), then tumour (2): KiTS order.
    kl, kr = (250.0, 226.0, 112.0), (262.0, 230.0, 298.0)
    blob(truth, 1, kl, (55.0, 35.0, 28.0), wobble=0.02, phase=0.3)
    blob(truth, 1, kr, (52.0, 33.0, 27.0), wobble=0.02, phase=1.1)
    blob(truth, 3, (290.0, 240.0, 322.0), (11.0, 10.0, 10.0))
    blob(truth, 2, (228.0, 200.0, 88.0), (21.0, 20.0, 19.0), wobble=0.05, phase=2.0)
    blob(truth, 2, (280.0, 250.0, 130.0), (4.0, 3.5, 3.5))

    blob(pred, 1, (251.0, 226.8, 112.8), (55.8, 34.5, 28.4), wobble=0.03, phase=0.5)
    blob(pred, 1, (261.0, 229.2, 297.2), (51.5, 33.4, 26.8), wobble=0.025, phase=1.0)
    blob(pred, 3, (290.0, 240.8, 321.2), (12.0, 10.5, 9.6))
    blob(pred, 2, (229.0, 200.8, 88.8), (22.5, 20.4, 19.6), wobble=0.06, phase=2.3)
    blob(pred, 2, (281.0, 250.8, 130.0), (3.4, 3.2, 3.2))
    return truth, pred


def write_pair(truth, pred, out):
    import SimpleITK as sitk
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, a in (("speed_truth", truth), ("speed_pred", pred)):
        img = sitk.GetImageFromArray(a)
        img.SetSpacing(SPACING_XYZ)
        p = out / f"{name}.nii.gz"
        sitk.WriteImage(img, str(p), useCompression=True)
        paths[name] = p
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", metavar="DIR")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--kits23", metavar="DIR")
    a = ap.parse_args()
    from surface_distance import compute_surface_dice_at_tolerance, compute_surface_distances

    t0 = time.perf_counter()
    truth, pred = make_pair()
    print(f"pair built in {time.perf_counter() - t0:.2f} s; shape zyx {SHAPE}, spacing zyx "
          f"{SPACING_ZYX}; voxels truth/pred per label: "
          f"{[int(np.count_nonzero(truth == l)) for l in (1, 2, 3)]} / "
          f"{[int(np.count_nonzero(pred == l)) for l in (1, 2, 3)]}")
    if a.write:
        paths = write_pair(truth, pred, Path(a.write))
        print("wrote", ", ".join(str(p) for p in paths.values()))

    t0 = time.perf_counter()
    masks = {h: (np.isin(truth, l), np.isin(pred, l)) for h, l in HECS.items()}
    print(f"HEC masks (np.isin, 3 HECs x 2): {time.perf_counter() - t0:.2f} s")
    best = {}
    values = {}
    for _ in range(max(1, a.repeat)):
        for h, (g, p) in masks.items():
            t0 = time.perf_counter()
            d = compute_surface_distances(g, p, SPACING_ZYX)
            sd = compute_surface_dice_at_tolerance(d, TOL[h])
            dt = time.perf_counter() - t0
            best[h] = min(best.get(h, np.inf), dt)
            values[h] = (float(sd), len(d["distances_gt_to_pred"]), len(d["distances_pred_to_gt"]))
    for h in HECS:
        sd, ng, npd = values[h]
        print(f"{h:18s} surface_dice={sd!r:22s} surfels gt/pred {ng}/{npd}  {best[h]:.2f} s")
    print(f"surface dice, 3 HECs, total: {sum(best.values()):.2f} s "
          f"(min over {max(1, a.repeat)} run(s); surface-distance 0.1, 1 thread)")

    if a.kits23:
        if not a.write:
            sys.exit("--kits23 needs --write")
        sys.path.insert(0, str(Path(a.kits23).resolve()))
        import kits23.evaluation.metrics as km
        t0 = time.perf_counter()
        m = km.compute_metrics_for_case(str(paths["speed_pred"]), str(paths["speed_truth"]))
        print(f"kits23 compute_metrics_for_case (read 2 NIfTI + Dice + SD, 3 HECs): "
              f"{time.perf_counter() - t0:.2f} s; dice {m[:, 0].tolist()} sd {m[:, 1].tolist()}")


if __name__ == "__main__":
    main()
