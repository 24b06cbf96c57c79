#!/usr/bin/env python3
"""Writes MODEL_CARD.md and SHA256SUMS into a demo bundle from what the training and the
evaluation recorded (never typed by hand: every number comes from training.json / the bundle
manifest / tools/train/evaluate_demo.py's summary.json and EVALUATION.md).

usage: python3 tools/train/model_card.py seg|cls BUNDLE_DIR EVAL_DIR

EVAL_DIR is evaluate_demo.py's --work folder (summary.json, EVALUATION.md). Python standard
library only. SHA256SUMS lists every file of the bundle but itself (`sha256sum -c SHA256SUMS`
inside the bundle checks it), MODEL_CARD.md included.
"""
import hashlib
import json
import re
import sys
from pathlib import Path

WARNING = (
    "> **Demonstration model, not for clinical use.** Trained only on nephrod's synthetic phantom\n"
    "> CT (`nephrod phantom`), never on patient data; its numbers below describe phantoms, not\n"
    "> patients. A hospital imports its own nnU-Net v2 model (see *Real models* below).\n"
)

REAL_MODELS = """## Real models

Train with nnU-Net v2 as usual (e.g. on KiTS23), then, with no Python on the appliance:

```
nephrod models import-nnunet nnUNet_results/Dataset220_KiTS2023/nnUNetTrainer__nnUNetPlans__3d_fullres \\
    --config 3d_fullres --out /var/lib/nephrod/models/kits23     # every fold_<k>, postprocessing.json if present
nephrod models verify /var/lib/nephrod/models/kits23
```

A classifier trained elsewhere (torchvision ResNet-18/34/50/101 with the 1x1 `input_conv`, five
classes in the order ccRCC, pRCC, chRCC, oncocytoma, AML, on `nephrod export-crops` inputs):
`nephrod models import-classifier --arch resnet50 --weights weights.safetensors --out DIR`.
"""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fmt(v, digits=3):
    return "n/a" if v is None else f"{v:.{digits}f}"


def bars_table(summary, keep):
    rows = ["| measure | measured | bar | |", "|---|---|---|---|"]
    for b in summary.get("bars", []):
        if keep(b["what"]):
            m = b["measured"]
            verdict = ("met" if b["met"] else "missed: not measurable (nothing to score)"
                       if m is None or m != m else f"missed by {b['bar'] - m:.3f}")
            rows.append(f"| {b['what']} | {fmt(b['measured'])} | >= {b['bar']:.2f} | {verdict} |")
    return "\n".join(rows)


def eval_header(summary):
    t = summary["test_set"]
    return (f"Measured with `python3 tools/train/evaluate_demo.py` on a fresh test set: "
            f"`nephrod phantom --format nifti --cases {t['studies']} --seed {t['seed']}` "
            f"({t['phase_images']} phase images; seed never used in training), nephrod's own "
            f"inference (TTA {'on' if summary.get('tta') else 'off'}) and `nephrod eval`. "
            "The full `nephrod eval` output is in [../EVALUATION.md](../EVALUATION.md).\n")


def train_command(run, warm):
    """The train_segmenter.sh invocation that reproduces one recorded run (its non-defaults)."""
    env = []
    if warm:
        env.append("INIT_FROM=models/kidney-seg-demo")
    if run["trainer"] != "nnUNetTrainer_nephrodCPU":
        env.append(f"TRAINER={run['trainer']}")
    if "num_epochs" in run:
        env.append(f"EPOCHS={run['num_epochs']}")
    patch = [int(p) for p in run["patch_size"]]
    if patch != [48, 64, 64]:
        env.append('PATCH="' + " ".join(map(str, patch)) + '"')
    feats = run["features_per_stage"]
    if feats[0] != 16:
        env.append(f"BASE_FEATURES={feats[0]}")
    if max(feats) != 256:
        env.append(f"MAX_FEATURES={max(feats)}")
    if "num_epochs" not in run:  # runs before the nephrodCPU trainer used nnUNet_n_proc_DA=1
        env.append("DA_PROCS=1")
    cmd = " ".join(env + ["bash tools/train/train_segmenter.sh"])
    return cmd + (" (resumed)" if run.get("resumed") else "")


def seg_card(bundle: Path, summary) -> str:
    m = json.loads((bundle / "manifest.json").read_text())
    tr = json.loads((bundle / "training.json").read_text())
    plan = m["plan"]
    arch = plan["architecture"]
    runs, r = [], tr
    while r:
        runs.append(r)
        r = r.get("warm_started_from")
    runs.reverse()
    lines = [f"# kidney-seg-demo — nnU-Net v2 3d_fullres, phantom-trained\n", WARNING,
             "## What it is\n",
             f"- nnU-Net v2 `{arch['class']}` ({m['parameters']:,} parameters), 1 input channel (CT, "
             f"nnU-Net CT normalisation), labels {plan['outputs']['Labels']['names']}, fold "
             f"{', '.join(plan['folds'])}, no post-processing; weights f16 (`fold_0.safetensors`).",
             f"- Spacing (z, y, x) {[round(s, 3) for s in plan['preprocessing']['spacing_mm']]} mm, "
             f"patch {plan['sliding_window']['patch_size']}, features per stage "
             f"{arch['features_per_stage']}, strides {arch['strides']}.",
             "- Plans: nnU-Net's own `nnUNetv2_plan_experiment`, resized for a 2-core CPU by "
             "`tools/train/demo_plans.py` (patch, features, batch; topology from nnU-Net's "
             "`get_pool_and_conv_props`).\n",
             "## Data\n",
             f"`{tr['dataset']['generator']} --cases {tr['dataset']['cases']} --seed "
             f"{tr['dataset']['seed']}`: {tr['dataset']['training_images']} training images (each "
             "contrast phase of a study is one image). nnU-Net's fold 0 split (80/20 by image).\n",
             "## Training (nnU-Net v2's own trainer, loss, augmentation and schedule, on the CPU)\n",
             "| run | command | epochs | trainer | seconds (train + validation) | machine |",
             "|---|---|---|---|---|---|"]
    for i, run in enumerate(runs):
        cmd = ("bash tools/train/train_segmenter.sh" if i == 0 else
               f"INIT_FROM=models/kidney-seg-demo TRAINER={run['trainer']} bash tools/train/train_segmenter.sh")
        by_name = re.search(r"_(\d+)epochs?$", run["trainer"])
        n = len(run.get("epochs", [])) or (by_name.group(1) if by_name else "?")
        lines.append(f"| {i + 1} | `{cmd}` | {n} | {run['trainer']} | "
                     f"{run['seconds']['train_and_validate']} | {run['machine']}, "
                     f"{run['torch_threads']} torch threads |")
    lines += ["",
              "Run 2 onwards start from the previous run's shipped weights (nnU-Net "
              "`-pretrained_weights`; the 1x1 segmentation heads are re-initialised by nnU-Net) "
              "with a fresh learning-rate schedule. nnU-Net training on the CPU is not "
              "bit-reproducible (unseeded augmentation); re-running gives a comparable, not an "
              f"identical model. Versions: {tr['versions']}.\n"]
    if tr.get("epochs"):
        lines += ["Last run, per epoch (nnU-Net's log; pseudo Dice per label kidney, tumour, cyst "
                  "on nnU-Net's validation patches):\n",
                  "| epoch | train loss | val loss | pseudo Dice | seconds |", "|---|---|---|---|---|"]
        for e in tr["epochs"]:
            lines.append(f"| {e['epoch']} | {e.get('train_loss', '')} | {e.get('val_loss', '')} | "
                         f"{e.get('pseudo_dice', '')} | {e.get('seconds', '')} |")
        lines.append("")
    val = bundle / "nnunet_validation_summary.json"
    if val.exists():
        v = json.loads(val.read_text())
        names = plan["outputs"]["Labels"]["names"]
        dice = ", ".join(f"{names[int(k)]} {fmt(d['Dice'])}" for k, d in sorted(v["mean"].items()))
        lines.append(f"nnU-Net's own fold-0 validation (full images, `nnunet_validation_summary.json`): "
                     f"Dice {dice}.\n")
    lines += ["## Measured\n", eval_header(summary),
              bars_table(summary, lambda w: "Dice" in w or "recall" in w), "",
              f"Segmentation time: {fmt(summary.get('segmentation_seconds_per_image'), 1)} s per "
              "phase image (release build, 2 cores).\n", REAL_MODELS]
    return "\n".join(lines)


def cls_card(bundle: Path, summary) -> str:
    m = json.loads((bundle / "manifest.json").read_text())
    tr = m.get("training") or json.loads((bundle / "training.json").read_text())
    ds, st = tr.get("dataset", {}), tr.get("settings", {})
    lines = ["# renal-mass-classifier-demo — ResNet-18, five subtypes, phantom-trained\n", WARNING,
             "## What it is\n",
             "- torchvision ResNet-18 (weights=None, trained from scratch) with a 1x1 3->3 input "
             "convolution (seed 001) and a 5-way head: ccRCC, pRCC, chRCC, oncocytoma, AML; "
             "benign = oncocytoma + AML. Weights f16 (`weights.safetensors`).",
             "- Input: per lesion, the largest-area axial slice of each of three aligned phases, "
             "cropped, resized to 224 x 224, windowed and normalised as the manifest's `crop` "
             "object says; four phases give three triples whose probabilities are averaged.\n",
             "## Data\n",
             f"`{ds.get('generator', '?')} --cases {ds.get('studies', '?')} --seed {ds.get('seed', '?')}`; "
             f"crops from `nephrod export-crops` (the inference preprocessing; truth label maps give "
             f"the lesions). {tr.get('data', {}).get('train_images')} training / "
             f"{tr.get('data', {}).get('validation_images')} validation images (per class "
             f"{tr.get('data', {}).get('train_per_class')} / {tr.get('data', {}).get('validation_per_class')}), "
             f"split {tr.get('data', {}).get('split')}.\n",
             "## Training (PyTorch, CPU)\n",
             f"`CASES={ds.get('studies')} SEED={ds.get('seed')} EPOCHS={st.get('epochs')} "
             f"TRAIN_SEED={st.get('seed')} THREADS={st.get('threads')} bash tools/train/train_classifier.sh`; "
             f"{tr.get('framework', '')}; "
             f"seconds {json.dumps(tr.get('seconds', {}))}; {tr.get('machine', '')}; settings "
             f"{json.dumps(tr.get('settings', {}))}. Deterministic for a given seed and thread count.\n"]
    best = tr.get("best_epoch")
    if tr.get("history"):
        lines += ["Held-out crops (truth lesions, validation cases), per epoch:\n",
                  "| epoch | train loss | val accuracy | val balanced accuracy | seconds |",
                  "|---|---|---|---|---|"]
        for h in tr["history"]:
            lines.append(f"| {h.get('epoch')} | {fmt(h.get('train_loss'))} | "
                         f"{fmt(h.get('val_accuracy'))} | {fmt(h.get('val_balanced_accuracy'))} | "
                         f"{h.get('seconds')} |")
        lines.append(f"\nKept: epoch {best} (best validation balanced accuracy).\n")
    cls = summary.get("classification", {})
    lines += ["## Measured\n", eval_header(summary),
              "Lesions are the ones the demo segmentation model found (as on the appliance), "
              "matched to truth tumours by centre within 15 mm.\n",
              bars_table(summary, lambda w: "subtype" in w), "",
              f"Classified tumours: {summary.get('classified_lesions')}; truth tumours not "
              f"classified (missed by segmentation): {len(summary.get('truth_tumours_not_classified', []))}; "
              f"benign vs malignant AUC {fmt((cls.get('benign_vs_malignant') or {}).get('value'))}.\n",
              REAL_MODELS]
    return "\n".join(lines)


def main():
    kind, bundle, eval_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    summary = json.loads((eval_dir / "summary.json").read_text())
    text = seg_card(bundle, summary) if kind == "seg" else cls_card(bundle, summary)
    (bundle / "MODEL_CARD.md").write_text(text)
    files = sorted(p for p in bundle.iterdir() if p.is_file() and p.name != "SHA256SUMS")
    (bundle / "SHA256SUMS").write_text("".join(f"{sha256(p)}  {p.name}\n" for p in files))
    print(f"{bundle}/MODEL_CARD.md, {bundle}/SHA256SUMS ({len(files)} files)")


if __name__ == "__main__":
    main()
