#!/usr/bin/env python3
"""Reference timing for `nephrod bench classifier`: the same torchvision ResNet (1x1 input conv,
5 classes) with the weights nephrod wrote (safetensors, torchvision names), the same input,
torch CPU fp32 with the same thread count. Prints one JSON line: median/min ms per forward and
the logits of the first image (nephrod compares them as a sanity check).
Uses torch/torchvision from .cache/nnunet-venv (tools/oracle/requirements-nnunet.txt)."""
import argparse
import json
import time

import numpy as np
import torch
import torchvision
from safetensors.numpy import load_file


class Net(torchvision.models.ResNet):
    pass


def build(arch, input_conv):
    m = getattr(torchvision.models, arch)(weights=None, num_classes=5)
    if input_conv:
        m.input_conv = torch.nn.Conv2d(3, 3, 1)
        fwd = m.forward
        m.forward = lambda x: fwd(m.input_conv(x))
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--input", required=True, help="raw little-endian f32, N x 3 x H x W")
    ap.add_argument("--arch", default="resnet101")
    ap.add_argument("--shape", type=int, nargs=4, required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sd = {k: torch.from_numpy(v.astype(np.float32)) for k, v in load_file(a.weights).items()}
    m = build(a.arch, "input_conv.weight" in sd)
    missing, unexpected = m.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    assert not missing and not unexpected, (missing, unexpected)
    m.eval()
    x = torch.from_numpy(np.fromfile(a.input, dtype="<f4").reshape(a.shape))
    times = []
    with torch.no_grad():
        y = m(x)
        for _ in range(a.repeats):
            t = time.perf_counter()
            y = m(x)
            times.append((time.perf_counter() - t) * 1000)
    print(json.dumps({"torch": torch.__version__, "median_ms": float(np.median(times)),
                      "min_ms": min(times), "logits0": y[0].tolist()}))


if __name__ == "__main__":
    main()
