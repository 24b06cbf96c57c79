#!/usr/bin/env python3
"""Golden file for the registration's use of the engine resampler, made with PyTorch's own
spatial-transformer pair: F.affine_grid(theta_n, align_corners=True) + F.grid_sample
(bilinear = trilinear in 3-D, padding_mode="zeros", align_corners=True), and autograd's
gradient of sum(upstream * output) with respect to the normalised theta_n (3x4).

nephrod's resampler takes theta in voxel indices; tests/register_affine_grid.rs converts
theta_n (normalised coordinates, x = w fastest) to index form and the gradient back.

Pinned: torch 2.15.0 (tools/oracle/requirements-nnunet.txt, venv .cache/nnunet-venv).
Run:    .cache/nnunet-venv/bin/python tools/oracle/affine_grid_golden.py \
            --out tests/data/register/affine_grid.json
Deterministic (fixed seeds, float64).
"""
import argparse
import json

import torch
import torch.nn.functional as F


def case(name, seed, in_dhw, out_dhw, theta_n):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((1, 2) + tuple(in_dhw), generator=g, dtype=torch.float64)
    up = torch.rand((1, 2) + tuple(out_dhw), generator=g, dtype=torch.float64) - 0.5
    th = torch.tensor(theta_n, dtype=torch.float64).unsqueeze(0).requires_grad_(True)
    grid = F.affine_grid(th, [1, 2] + list(out_dhw), align_corners=True)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    (y * up).sum().backward()
    return {
        "name": name,
        "in_dhw": list(in_dhw),
        "out_dhw": list(out_dhw),
        "theta_n": theta_n,
        "x": x.flatten().tolist(),
        "upstream": up.flatten().tolist(),
        "y": y.detach().flatten().tolist(),
        "grad_theta_n": th.grad[0].tolist(),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    cases = [
        case("identity_same_grid", 1, (5, 6, 7), (5, 6, 7),
             [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]),
        case("rotation_scale_shift", 2, (6, 7, 8), (5, 9, 6),
             [[0.9613, -0.1737, 0.0412, 0.0731], [0.1819, 1.0437, -0.0533, -0.1177],
              [-0.0291, 0.0611, 0.9128, 0.0519]]),
        case("shear_partly_outside", 3, (4, 8, 9), (6, 6, 6),
             [[1.1371, 0.2293, -0.1619, 0.2213], [-0.3117, 0.8819, 0.1437, -0.2671],
              [0.0953, -0.2211, 1.2377, 0.1383]]),
    ]
    doc = {
        "tool": f"torch {torch.__version__}: F.affine_grid + F.grid_sample, align_corners=True",
        "layout": "x, upstream: (1, 2, D, H, W) row-major; theta_n maps normalised output "
                  "(x=w, y=h, z=d, 1) to normalised input",
        "cases": cases,
    }
    with open(a.out, "w") as f:
        json.dump(doc, f)


if __name__ == "__main__":
    main()
