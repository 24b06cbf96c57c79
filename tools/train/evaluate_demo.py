#!/usr/bin/env python3
"""Measures the demo models end to end with nephrod itself on a fresh phantom test set.

usage: python3 tools/train/evaluate_demo.py [--cases 40] [--seed 9001] [--seg models/kidney-seg-demo]
           [--cls models/renal-mass-classifier-demo] [--work .cache/train/eval] [--no-tta]
           [--out models/EVALUATION.md]

Python standard library only (it drives the nephrod binary; every number comes from nephrod):
 1. `nephrod phantom --format nifti --cases N --seed S` (clinic-like lesion mix; the seed must
    differ from every training seed: 1001 segmenter, 2001 classifier).
 2. `nephrod segment` every phase image of every study with the segmentation bundle.
 3. `nephrod eval seg` on all phase images (prediction vs phantom truth): KiTS HEC Dice
    (kidney = kidney+tumour+cyst, masses, tumour), per-label Dice (cyst), detection. Lesion
    recall for lesions >= 10 mm (equivalent-sphere diameter, nephrod's detection rule) is
    counted here from the per-lesion list `nephrod eval seg --json` prints.
 4. `nephrod classify` every study with its predicted label maps (registration included, as
    the appliance does). Each classified lesion is matched to the truth lesion whose centre is
    nearest its centre (reference-phase LPS, within 15 mm); the five-class probabilities go to
    preds.csv, the truth subtype to truth.csv, and `nephrod eval cls` computes accuracy, macro
    AUC (one-vs-rest) with confidence intervals. Truth tumours not classified (missed by the
    segmentation or matched to nothing) are listed and counted separately.
 5. Writes the summary (markdown) with the bars of issue 8 and the exact commands.
"""
import argparse
import csv
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["ccrcc", "prcc", "chrcc", "oncocytoma", "aml"]
MATCH_MM = 15.0


def run(cmd, log=None):
    t = time.time()
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if log is not None:
        log.write(f"$ {' '.join(map(str, cmd))}\n{p.stdout}{p.stderr}\n")
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stderr[-3000:]}")
    return p.stdout, time.time() - t


def fmt(v):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def verdict(b):
    if b["met"]:
        return "met"
    m = b["measured"]
    if m is None or math.isnan(m):
        return "missed: not measurable (nothing to score)"
    return f"missed by {b['bar'] - m:.3f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--seed", type=int, default=9001)
    ap.add_argument("--seg", type=Path, default=ROOT / "models/kidney-seg-demo")
    ap.add_argument("--cls", type=Path, default=ROOT / "models/renal-mass-classifier-demo")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache/train/eval")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-tta", action="store_true")
    ap.add_argument("--nephrod", type=Path, default=ROOT / "target/release/nephrod")
    a = ap.parse_args()
    if a.seed in (1001, 2001):
        sys.exit("the test seed must not be a training seed")
    nephrod = a.nephrod
    work = a.work
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / "commands.log", "w")
    t0 = time.time()

    data = work / "test"
    if not (data / f"case_{a.cases - 1:04d}" / "truth.json").exists():
        run([nephrod, "phantom", "--out", data, "--cases", a.cases, "--seed", a.seed,
             "--format", "nifti"], log)
    cases = sorted(p for p in data.iterdir() if (p / "truth.json").exists())[: a.cases]

    # 2. segmentation of every phase
    pred_flat, truth_flat = work / "pred_flat", work / "truth_flat"
    for d in (pred_flat, truth_flat):
        d.mkdir(exist_ok=True)
    # seconds per segmented image, kept across re-runs that reuse the predictions
    timing_file = work / "seg_seconds.json"
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    study_phases = {}
    for c in cases:
        truth = json.loads((c / "truth.json").read_text())
        phases = []
        for p in truth["phases"]:
            name = p["phase"]
            img = c / p["image_path"]
            lab = c / p["label_path"]
            out = work / "pred" / c.name / f"{name}.nii.gz"
            out.parent.mkdir(parents=True, exist_ok=True)
            if not out.exists():
                cmd = [nephrod, "segment", img, "--model", a.seg, "--out", out]
                if a.no_tta:
                    cmd.append("--no-tta")
                _, s = run(cmd, log)
                timing[f"{c.name}/{name}"] = s
                timing_file.write_text(json.dumps(timing))
            flat = f"{c.name}_{name}.nii.gz"
            for src, d in ((out, pred_flat), (lab, truth_flat)):
                link = d / flat
                if not link.exists():
                    link.symlink_to(src.resolve())
            phases.append((name, img, out))
        study_phases[c.name] = (truth, phases)
        print(f"segmented {c.name} ({time.time() - t0:.0f} s)", flush=True)

    # 3. segmentation metrics
    seg_json, _ = run([nephrod, "eval", "seg", "--pred", pred_flat, "--truth", truth_flat, "--json"], log)
    seg = json.loads(seg_json)
    (work / "eval_seg.json").write_text(seg_json)
    ge10 = [l for case in seg["cases"] for l in case["detection"]["truth"] if l["diameter_mm"] >= 10.0]
    recall10 = sum(l["matched"] for l in ge10) / len(ge10) if ge10 else float("nan")

    # 4. classification with predicted labels
    preds, truths, unmatched, missed = [], [], [], []
    for name, (truth, phases) in study_phases.items():
        out = work / "cls" / name
        cmd = [nephrod, "classify", "--model", a.cls, "--out", out]
        for ph, img, lab in phases:
            cmd += ["--phase", f"{ph}={img},{lab}"]
        if out.exists():
            import shutil
            shutil.rmtree(out)
        run(cmd, log)
        doc = json.loads((out / "classification.json").read_text())
        tumours = [l for l in truth["lesions"] if l["class"] in CLASSES]
        used = set()
        for les in doc["lesions"]:
            probs = les.get("probabilities_by_class")
            probs = None if probs is None else {k.lower(): v for k, v in probs.items()}
            if probs is None:
                continue
            c = les["lesion"]["centre_lps_mm"]
            best, bd = None, MATCH_MM
            for t in truth["lesions"]:
                d = math.dist(c, t["centre_lps_mm"])
                if d <= bd:
                    best, bd = t, d
            if best is None or best["class"] not in CLASSES:
                unmatched.append({"case": name, "lesion": les["lesion"]["id"],
                                  "truth": None if best is None else best["class"]})
                continue
            key = f"{name}_t{best['id']}"
            if key in used:
                unmatched.append({"case": name, "lesion": les["lesion"]["id"], "truth": "duplicate"})
                continue
            used.add(key)
            preds.append([key] + [probs[k] for k in CLASSES])
            truths.append([key, best["class"]])
        for t in tumours:
            if f"{name}_t{t['id']}" not in used:
                missed.append({"case": name, "truth_id": t["id"], "class": t["class"],
                               "max_axial_diameter_mm": t.get("max_axial_diameter_mm")})
    with open(work / "preds.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case"] + CLASSES)
        w.writerows(preds)
    with open(work / "truth.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "label"])
        w.writerows(truths)
    if preds:
        cls_json, _ = run([nephrod, "eval", "cls", "--pred", work / "preds.csv", "--truth",
                           work / "truth.csv", "--json"], log)
        (work / "eval_cls.json").write_text(cls_json)
        cls_table, _ = run([nephrod, "eval", "cls", "--pred", work / "preds.csv", "--truth",
                            work / "truth.csv"], log)
        cls = json.loads(cls_json)
    else:  # nothing to score: the segmentation found no tumour that matched a truth tumour
        cls_table, cls = "no classified tumour matched a truth tumour: nothing to score", {}
    seg_table, _ = run([nephrod, "eval", "seg", "--pred", pred_flat, "--truth", truth_flat], log)

    summary = {
        "test_set": {"generator": "nephrod phantom --format nifti", "studies": len(cases),
                     "seed": a.seed, "phase_images": sum(len(v[1]) for v in study_phases.values())},
        "segmentation_seconds_per_image": sum(timing.values()) / len(timing) if timing else None,
        "tta": not a.no_tta,
        "kidney_dice_hec": seg["mean"].get("kidney_and_masses", {}).get("dice"),
        "tumour_dice": seg["mean"].get("tumor", {}).get("dice"),
        "cyst_dice": seg["mean_labels"].get("cyst", {}).get("dice"),
        "lesion_recall_ge10mm": recall10, "lesions_ge10mm": len(ge10),
        "classified_lesions": len(preds), "truth_tumours_not_classified": missed,
        "classified_but_unmatched": unmatched,
        "classification": cls,
        "seconds_total": round(time.time() - t0, 1),
    }
    macro = (cls.get("auc") or {}).get("macro") or {}
    bars = [  # issue 8: (what, measured, bar)
        ("kidney Dice (kidney + masses, HEC)", summary["kidney_dice_hec"], 0.95),
        ("tumour Dice", summary["tumour_dice"], 0.85),
        ("cyst Dice", summary["cyst_dice"], 0.80),
        ("lesion recall, lesions >= 10 mm", recall10, 0.90),
        ("subtype accuracy (classified tumours)", cls.get("accuracy"), 0.85),
        ("subtype macro AUC, one vs rest", macro.get("value"), 0.95),
    ]
    summary["bars"] = [{"what": w, "measured": m, "bar": b,
                        "met": m is not None and not math.isnan(m) and m >= b} for w, m, b in bars]
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    md = [f"# nephrod demo models: evaluation on a fresh phantom test set\n",
          f"Test set: `nephrod phantom --format nifti --cases {len(cases)} --seed {a.seed}` "
          f"({summary['test_set']['phase_images']} phase images); TTA {'on' if not a.no_tta else 'off'}; "
          f"segmentation {summary['segmentation_seconds_per_image'] or 0:.1f} s per image.\n",
          "Command: `python3 tools/train/evaluate_demo.py " + " ".join(sys.argv[1:]) + "`\n",
          "## Against the bars of issue 8\n",
          "| measure | measured | bar | |", "|---|---|---|---|",
          *[f"| {b['what']} | {fmt(b['measured'])} | >= {b['bar']:.2f} | "
            f"{verdict(b)} |"
            for b in summary["bars"]], "",
          "Dice follows KiTS: a case where truth and prediction are both empty scores 1 (the "
          "tumour and cyst means include such cases).\n",
          "## nephrod eval seg\n", "```", seg_table.strip(), "```\n",
          f"Lesion recall for lesions >= 10 mm: {recall10:.3f} ({sum(l['matched'] for l in ge10)}/{len(ge10)})\n",
          "## nephrod eval cls (lesions found by the segmentation, matched to truth)\n",
          "```", cls_table.strip(), "```\n",
          f"Truth tumours not classified: {len(missed)}; classified components matching no truth tumour: {len(unmatched)}\n"]
    text = "\n".join(md)
    (work / "EVALUATION.md").write_text(text)
    if a.out:
        a.out.write_text(text)
    print(text)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("classification",
          "truth_tumours_not_classified", "classified_but_unmatched")}, indent=2))


if __name__ == "__main__":
    main()
