#!/usr/bin/env python3
"""Trains nephrod's demo renal-mass classifier with PyTorch on `nephrod export-crops` output.

usage (tools/train/train_classifier.sh calls it; the venv is tools/nnunet_venv.sh's):
  .cache/nnunet-venv/bin/python tools/train/train_classifier.py --crops DIR --out DIR \
      [--epochs 12] [--seed 8] [--threads 2]

Model: torchvision ResNet-18 (weights=None: nothing is downloaded) with `fc` replaced by a 5-way
head (ccRCC, pRCC, chRCC, oncocytoma, AML: nephrod's CLASSES order) and a 1x1 3->3 convolution
with bias, `input_conv`, applied before `conv1` (seed 001). State-dict names are torchvision's
plus `input_conv.*`, which is what `nephrod models import-classifier --arch resnet18` reads.

Input: exactly the arrays nephrod feeds the network at inference (`crops/*.npy`, float32
3 x 224 x 224, windowed and normalised by nephrod), labels from `index.csv`. Nothing is
re-preprocessed here, so training and inference cannot drift apart.

Split: by case (never by image: the phase triples of one lesion stay together), a fixed
fraction chosen by a hash of the case name, so the split does not depend on file order.
Training: AdamW, cosine learning rate, cross-entropy with inverse-frequency class weights,
random flips / 90-degree rotations / small translations (a lesion may sit in either kidney and
the crop is square, so these keep the class), batch norm in training mode; the epoch with the
best validation balanced accuracy is kept. Deterministic for a given seed and thread count
(torch.use_deterministic_algorithms). Writes:
  weights.safetensors   float32 state dict (import-classifier rounds to f16)
  training.json         data, split, settings, per-epoch losses/accuracies, time, versions
"""
import argparse
import csv
import hashlib
import json
import math
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import load_file, save_file
from torchvision.models.resnet import BasicBlock, ResNet

CLASSES = ["ccrcc", "prcc", "chrcc", "oncocytoma", "aml"]
PINNED = {"torch": "2.15.0", "torchvision": "0.29.2"}


class RenalMassResNet18(ResNet):
    """torchvision ResNet-18 with the 1x1 input convolution and a 5-class head."""

    def __init__(self):
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=len(CLASSES))
        self.input_conv = nn.Conv2d(3, 3, kernel_size=1, bias=True)
        with torch.no_grad():  # start as the identity: the stacked phases pass through
            self.input_conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.input_conv.bias.zero_()

    def forward(self, x):
        return super().forward(self.input_conv(x))


def in_validation(case: str, fraction: float) -> bool:
    h = int.from_bytes(hashlib.sha256(case.encode()).digest()[:8], "little")
    return (h / 2**64) < fraction


def load(crops: Path):
    rows = list(csv.DictReader(open(crops / "index.csv", newline="")))
    if not rows:
        raise SystemExit(f"{crops}/index.csv lists no crops")
    xs = np.stack([np.load(crops / r["file"]).astype(np.float32) for r in rows])
    ys = np.array([int(r["class_index"]) for r in rows], dtype=np.int64)
    for r in rows:
        if CLASSES[int(r["class_index"])] != r["class_name"].lower():
            raise SystemExit(f"class order mismatch in {r['file']}")
    return rows, xs, ys


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        t = x[i]
        r = torch.randint(0, 8, (1,), generator=g).item()
        if r & 1:
            t = t.flip(-1)
        t = torch.rot90(t, r >> 1, dims=(-2, -1))
        dy, dx = torch.randint(-12, 13, (2,), generator=g).tolist()
        t = torch.roll(t, shifts=(dy, dx), dims=(-2, -1))
        out[i] = t
    return out


def evaluate(model, x, y, batch):
    model.eval()
    probs = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            probs.append(F.softmax(model(x[s : s + batch]), dim=1))
    p = torch.cat(probs) if probs else torch.zeros(0, len(CLASSES))
    pred = p.argmax(1)
    acc = (pred == y).float().mean().item() if len(y) else float("nan")
    per_class = []
    for c in range(len(CLASSES)):
        m = y == c
        per_class.append((pred[m] == c).float().mean().item() if m.any() else float("nan"))
    present = [a for a in per_class if not math.isnan(a)]
    bal = sum(present) / len(present) if present else float("nan")
    return acc, bal, per_class


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crops", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", type=Path, default=None,
                    help="start from these weights (a bundle's weights.safetensors) instead of random")
    a = ap.parse_args()

    for k, v in PINNED.items():
        have = {"torch": torch.__version__, "torchvision": torchvision.__version__}[k]
        if not have.startswith(v):
            print(f"warning: {k} {have} is not the pinned {v}")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.use_deterministic_algorithms(True)

    t0 = time.time()
    rows, xs, ys = load(a.crops)
    val = np.array([in_validation(r["case"], a.val_fraction) for r in rows])
    xtr, ytr = torch.from_numpy(xs[~val]), torch.from_numpy(ys[~val])
    xva, yva = torch.from_numpy(xs[val]), torch.from_numpy(ys[val])
    counts = np.bincount(ytr.numpy(), minlength=len(CLASSES))
    print(f"{len(rows)} crops: train {len(ytr)} {counts.tolist()}, validation {len(yva)} "
          f"{np.bincount(yva.numpy(), minlength=len(CLASSES)).tolist()}", flush=True)
    weights = torch.tensor(
        [len(ytr) / (len(CLASSES) * c) if c else 0.0 for c in counts], dtype=torch.float32
    )

    model = RenalMassResNet18()
    init = None
    if a.init is not None:
        state = {k: v.float() for k, v in load_file(str(a.init)).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise SystemExit(f"--init {a.init}: missing {missing}, unexpected {unexpected}")
        init = {"weights": str(a.init),
                "sha256": hashlib.sha256(a.init.read_bytes()).hexdigest()}
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    steps_per_epoch = math.ceil(len(ytr) / a.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(a.seed)
    history, best, best_state, best_epoch = [], -math.inf, None, 0
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(ytr), generator=g)
        total, n = 0.0, 0
        for s in range(0, len(ytr), a.batch):
            idx = perm[s : s + a.batch]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            xb = augment(xtr[idx], g)
            loss = F.cross_entropy(model(xb), ytr[idx], weight=weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            n += len(idx)
        acc, bal, per_class = evaluate(model, xva, yva, 64)
        history.append({"epoch": epoch, "train_loss": total / max(n, 1), "val_accuracy": acc,
                        "val_balanced_accuracy": bal, "val_per_class_recall": per_class,
                        "seconds": round(time.time() - t0, 1)})
        print(f"epoch {epoch}: loss {total / max(n, 1):.4f} val acc {acc:.3f} "
              f"balanced {bal:.3f} ({time.time() - t0:.0f} s)", flush=True)
        score = bal if not math.isnan(bal) else -total
        if score > best:
            best = score
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_epoch = epoch

    state = {k: v.float().contiguous() for k, v in best_state.items() if not k.endswith("num_batches_tracked")}
    a.out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(a.out / "weights.safetensors"))
    export = json.loads((a.crops / "export.json").read_text())
    record = {
        "framework": f"torch {torch.__version__}, torchvision {torchvision.__version__}",
        "python": platform.python_version(),
        "architecture": "resnet18 + input_conv (1x1, 3->3, bias) + fc 5",
        "classes": CLASSES,
        "data": {"crops_export": {k: export.get(k) for k in ("schema", "nephrod_version", "cases",
                                                               "lesions_exported", "images",
                                                               "per_class_lesions", "crop")},
                 "train_images": int(len(ytr)), "validation_images": int(len(yva)),
                 "train_per_class": counts.tolist(),
                 "validation_per_class": np.bincount(yva.numpy(), minlength=len(CLASSES)).tolist(),
                 "split": f"by case, sha256(case)[:8] < {a.val_fraction} -> validation"},
        "settings": {"epochs": a.epochs, "batch": a.batch, "lr": a.lr,
                     "weight_decay": a.weight_decay, "optimizer": "AdamW, cosine schedule",
                     "loss": "cross-entropy, inverse-frequency class weights",
                     "augmentation": "flips, 90-degree rotations, translations <= 12 px",
                     "seed": a.seed, "threads": a.threads, "pretrained": False},
        "initialised_from": init,
        "best_epoch": best_epoch,
        "validation_at_best": history[best_epoch],
        "history": history,
        "training_seconds": round(time.time() - t0, 1),
    }
    (a.out / "training.json").write_text(json.dumps(record, indent=2))
    print(f"best epoch {best_epoch}: {history[best_epoch]}; wrote {a.out}/weights.safetensors")


if __name__ == "__main__":
    main()
