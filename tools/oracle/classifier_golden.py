#!/usr/bin/env python3
"""Goldens for tests/classify_resnet.rs: the renal-mass classifier of src/classify/resnet.rs
(torchvision ResNet-18/34/50/101, an optional 1x1 "input_conv" 3->3 with bias applied before
`conv1`, `fc` replaced by a 5-way head) computed by the REAL torchvision, with Grad-CAM on the
output of `layer4` computed independently through forward/backward hooks.

usage:
  /work/main/.cache/nnunet-venv/bin/python tools/oracle/classifier_golden.py --out tests/data/classify/
  /work/main/.cache/nnunet-venv/bin/python tools/oracle/classifier_golden.py --bench   # timings only
Pinned: torch 2.15.0, torchvision 0.29.2, numpy 2.4.6 (CPU execution; no network needed, no
pretrained weights are downloaded). Deterministic: no RNG is used; every parameter, BatchNorm buffer
and input image comes from the counter-based formula below; torch runs single-threaded in float32
with deterministic algorithms; re-running rewrites a byte-identical JSON.

Deterministic tensors (implemented identically in tests/common/det_weights.rs):
  key(name)  = FNV-1a 64 of the UTF-8 bytes of the tensor name
               (offset 0xcbf29ce484222325, prime 0x100000001b3)
  z_i        = key(name) + (i + 1) * 0x9E3779B97F4A7C15            (mod 2^64, i = flat C-order index)
  z_i        = splitmix64 finaliser: z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
               z *= 0x94D049BB133111EB; z ^= z >> 31                (all mod 2^64)
  u_i        = (z_i >> 11) * 2^-53                                  (float64, in [0, 1))
  value_i    = float32(lo + (hi - lo) * u_i)                         (float64 arithmetic, one rounding)
Ranges [lo, hi] by tensor name:
  4-D conv weights (conv*, downsample.0, input_conv)  +-sqrt(3 / fan_in), fan_in = I*kH*kW
                                                       (input_conv: +-sqrt(3 / 3))
  fc.weight                                            +-sqrt(3 / fan_in)
  fc.bias, input_conv.bias                             +-0.1
  BatchNorm weight (gamma)                             [0.5, 1.5], except
  Bottleneck's last BN (names "*.bn3.weight")          [0.25, 0.75]  (damps the residual branch,
                                                       in the spirit of zero_init_residual, so
                                                       ResNet-101's activations stay O(1))
  BatchNorm bias (beta), running_mean                  [-0.1, 0.1]
  BatchNorm running_var                                [0.5, 1.5]
  num_batches_tracked                                  0 (not generated)
  input images "images/NxCxHxW"                        [-2, 2]
The "f16" weight variant rounds every value to float16 (round to nearest even) and torch runs with
those values widened back to float32.

Golden JSON (resnet_golden.json): for every case, the float32 logits of torchvision (and float64
logits of the same network for reference), and per Grad-CAM request: the class, layer4's spatial
size, `cam` = ReLU(sum_k alpha_k A_k) with alpha_k = spatial mean of d logit[class] / d A_k (at
feature resolution, not normalised), and the heatmap = F.interpolate(cam, (H, W), mode="bilinear",
align_corners=False) min-max normalised to [0, 1] (zeros when max == min), stored on a subsample
grid (rows/cols listed) plus its sum and sum of squares. Also torchvision's state-dict names and
shapes per depth (num_batches_tracked excluded) so the Rust side can compare its expected_tensors.
"""
import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.resnet import ResNet, BasicBlock, Bottleneck

PINNED = {"torch": "2.15.0", "torchvision": "0.29.2", "numpy": "2.4.6"}

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1

LAYERS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
}
NUM_CLASSES = 5


def fnv1a64(name: str) -> int:
    h = FNV_OFFSET
    for b in name.encode("utf-8"):
        h ^= b
        h = (h * FNV_PRIME) & MASK64
    return h


def det_uniform(name: str, n: int) -> np.ndarray:
    """u_i in [0, 1) as float64, i = 0..n-1."""
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(fnv1a64(name)) + i * np.uint64(GOLDEN_GAMMA)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def det_values(name: str, shape, lo: float, hi: float) -> np.ndarray:
    n = int(np.prod(shape)) if len(shape) else 1
    u = det_uniform(name, n)
    return (lo + (hi - lo) * u).astype(np.float32).reshape(shape)


def value_range(name: str, shape):
    """[lo, hi] of a state-dict tensor; None for tensors that are not generated."""
    if name.endswith("num_batches_tracked"):
        return None
    if name == "input_conv.weight":
        s = math.sqrt(3.0 / 3.0)
        return (-s, s)
    if name in ("input_conv.bias", "fc.bias"):
        return (-0.1, 0.1)
    if name == "fc.weight":
        s = math.sqrt(3.0 / shape[1])
        return (-s, s)
    if len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        s = math.sqrt(3.0 / fan_in)
        return (-s, s)
    if name.endswith(".bn3.weight"):
        return (0.25, 0.75)
    if name.endswith(".weight"):
        return (0.5, 1.5)
    if name.endswith(".bias") or name.endswith(".running_mean"):
        return (-0.1, 0.1)
    if name.endswith(".running_var"):
        return (0.5, 1.5)
    raise ValueError(f"no range for {name} {shape}")


class Classifier(ResNet):
    """torchvision ResNet with the seed paper's 1x1 input convolution (3->3, bias) before it."""

    def __init__(self, depth: str, input_conv: bool):
        block, layers = LAYERS[depth]
        super().__init__(block, layers, num_classes=NUM_CLASSES)
        self.input_conv = nn.Conv2d(3, 3, kernel_size=1, bias=True) if input_conv else None

    def forward(self, x):
        if self.input_conv is not None:
            x = self.input_conv(x)
        return super().forward(x)


def build(depth: str, input_conv: bool, f16: bool, dtype=torch.float32) -> nn.Module:
    model = Classifier(depth, input_conv)
    sd = model.state_dict()
    new = {}
    for name, t in sd.items():
        r = value_range(name, tuple(t.shape))
        if r is None:
            new[name] = torch.zeros_like(t)
            continue
        v = det_values(name, tuple(t.shape), *r)
        if f16:
            v = v.astype(np.float16).astype(np.float32)
        new[name] = torch.from_numpy(v)
    model.load_state_dict(new, strict=True)
    return model.to(dtype).eval()


def image(n, h, w) -> np.ndarray:
    name = f"images/{n}x3x{h}x{w}"
    return det_values(name, (n, 3, h, w), -2.0, 2.0)


def grad_cam(model: nn.Module, x: torch.Tensor, cls: int):
    """Grad-CAM through hooks on model.layer4 (independent of the analytic shortcut)."""
    store = {}

    def fwd(_m, _inp, out):
        store["A"] = out.detach()

    def bwd(_m, _gin, gout):
        store["G"] = gout[0].detach()

    h1 = model.layer4.register_forward_hook(fwd)
    h2 = model.layer4.register_full_backward_hook(bwd)
    try:
        model.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_(True)
        logits = model(xg)
        logits[0, cls].backward()
    finally:
        h1.remove()
        h2.remove()
    a = store["A"][0]  # C x h x w
    g = store["G"][0]
    alpha = g.mean(dim=(1, 2))  # C
    cam = F.relu((alpha[:, None, None] * a).sum(0))  # h x w
    return logits.detach()[0], cam


def trunk(model: Classifier, x: torch.Tensor) -> torch.Tensor:
    """The output of layer4, computed module by module (no hooks)."""
    if model.input_conv is not None:
        x = model.input_conv(x)
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


def heatmap(cam: torch.Tensor, h: int, w: int) -> torch.Tensor:
    up = F.interpolate(cam[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    lo, hi = up.min(), up.max()
    if hi == lo:
        return torch.zeros_like(up)
    return (up - lo) / (hi - lo)


def sub_indices(n: int, step: int = 11):
    return sorted(set(range(0, n, step)) | {n - 1})


def f32list(t):
    """float32 values as the shortest decimals that round-trip through float32."""
    return [float(str(v)) for v in np.asarray(t, dtype=np.float32).reshape(-1)]


def dumps(obj) -> str:
    """Indented JSON with every list of numbers on one line (diff-friendly and small)."""
    text = json.dumps(obj, indent=1)
    return re.sub(r"\[[-+0-9.eE,\s]*\]", lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", "),
                  text)


CASES = [
    # name, depth, input_conv, weights dtype, (n, h, w), [(image, class rule)]
    # Class rules: "top" = the image's argmax logit (the usual Grad-CAM target); "runner_up" =
    # among the other classes, the one whose cam has the largest peak (so the map is not all
    # zero after the ReLU), or "top" when every other class's cam is all zero. The chosen class
    # is recorded in the JSON.
    ("resnet18_ic", "resnet18", True, "f32", (2, 224, 224), [(0, "top"), (1, "runner_up")]),
    ("resnet18_noic", "resnet18", False, "f32", (2, 224, 224), [(0, "top")]),
    ("resnet34_ic", "resnet34", True, "f32", (2, 224, 224), [(0, "top"), (1, "runner_up")]),
    ("resnet50_ic", "resnet50", True, "f32", (2, 224, 224), [(0, "top"), (1, "runner_up")]),
    ("resnet101_ic", "resnet101", True, "f32", (2, 224, 224), [(0, "top"), (1, "runner_up")]),
    ("resnet101_ic_160x192", "resnet101", True, "f32", (1, 160, 192), [(0, "top")]),
    ("resnet50_ic_f16", "resnet50", True, "f16", (2, 224, 224), [(0, "top"), (1, "runner_up")]),
]


def choose_class(model, x, img: int, rule: str, logits) -> int:
    top = int(torch.argmax(logits[img]))
    if rule == "top":
        return top
    peaks = []
    for c in range(NUM_CLASSES):
        if c != top:
            _, cam = grad_cam(model, x[img : img + 1], c)
            peaks.append((float(cam.max()), -c))
    peak, neg_c = max(peaks)
    return -neg_c if peak > 0 else top


def make_golden(out_dir: Path):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cases = []
    for name, depth, ic, wdt, (n, h, w), cams in CASES:
        print(name, file=sys.stderr)
        model = build(depth, ic, wdt == "f16")
        x = torch.from_numpy(image(n, h, w))
        with torch.no_grad():
            logits = model(x)
            model64 = build(depth, ic, wdt == "f16", torch.float64)
            logits64 = model64(x.double())
            del model64
        gcs = []
        for img, rule in cams:
            cls = choose_class(model, x, img, rule, logits)
            lg, cam = grad_cam(model, x[img : img + 1], cls)
            assert float(cam.max()) > 0, f"{name}: all-zero cam for class {cls}"
            assert torch.equal(lg, logits[img]) or torch.allclose(lg, logits[img], atol=1e-5)
            # Analytic cross-check: alpha_k = fc.weight[cls, k] / (h*w).
            with torch.no_grad():
                feats = trunk(model, x[img : img + 1])[0]
                alpha = model.fc.weight[cls] / (feats.shape[1] * feats.shape[2])
                cam2 = F.relu((alpha[:, None, None] * feats).sum(0))
            assert torch.allclose(cam, cam2, atol=1e-5 * float(cam.max()) + 1e-7), name
            hm = heatmap(cam, h, w)
            rows, cols = sub_indices(h), sub_indices(w)
            hm64 = hm.double()
            gcs.append({
                "image": img,
                "class": cls,
                "logits": f32list(lg),
                "feature_hw": [int(cam.shape[0]), int(cam.shape[1])],
                "cam": f32list(cam),
                "heatmap_rows": rows,
                "heatmap_cols": cols,
                "heatmap_sub": f32list(hm[rows][:, cols]),
                "heatmap_sum": float(hm64.sum()),
                "heatmap_sum_sq": float((hm64 * hm64).sum()),
            })
        cases.append({
            "name": name,
            "depth": depth,
            "num_classes": NUM_CLASSES,
            "input_conv": ic,
            "weights_dtype": wdt,
            "n": n, "h": h, "w": w,
            "image_tensor": f"images/{n}x3x{h}x{w}",
            "logits": [f32list(r) for r in logits],
            "logits_f64": [[float(v) for v in r] for r in logits64],
            "grad_cam": gcs,
        })
    state_dicts = {}
    for depth in LAYERS:
        sd = Classifier(depth, True).state_dict()
        state_dicts[depth] = [[k, list(v.shape)] for k, v in sd.items()
                              if not k.endswith("num_batches_tracked")]
    golden = {
        "generator": "tools/oracle/classifier_golden.py",
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "numpy": np.__version__},
        "pinned": PINNED,
        "formula": __doc__.split("Deterministic tensors")[1].split("Golden JSON")[0].strip(),
        "cases": cases,
        "state_dicts": state_dicts,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "resnet_golden.json"
    path.write_text(dumps(golden) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)


def bench(threads: int):
    torch.set_num_threads(threads)
    model = build("resnet101", True, False)
    x = torch.from_numpy(image(1, 224, 224))
    with torch.no_grad():
        for _ in range(2):
            model(x)
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    times.sort()
    print(f"torch {torch.__version__} threads={threads} resnet101 1x3x224x224 forward: "
          f"median {times[len(times) // 2] * 1e3:.1f} ms, min {times[0] * 1e3:.1f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, help="directory for resnet_golden.json")
    ap.add_argument("--bench", action="store_true", help="time ResNet-101 forward instead")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.bench:
        bench(args.threads)
    elif args.out:
        make_golden(args.out)
    else:
        ap.error("--out or --bench")


if __name__ == "__main__":
    main()
