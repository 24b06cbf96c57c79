#!/usr/bin/env python3
"""Golden cases for tests/engine_reference.rs: the naive engine ops of src/engine/reference.rs,
computed by PyTorch in float64.

usage: .cache/nnunet-venv/bin/python tools/oracle/engine_golden.py tests/data/engine
Pinned: torch 2.15.0 (CPU execution; the +cu132 PyPI wheel or the +cpu wheel) and numpy 2.4.6 from
tools/oracle/requirements-nnunet.txt, in the venv made by tools/oracle/verify_nnunet_dataset.sh.
Deterministic: fixed seeds, single-threaded torch, float64 everywhere; re-running rewrites
byte-identical files (the manifest records the torch version that produced them).

Every input (activations, weights, biases, gamma/beta, upstream gradients) is drawn in float64,
rounded to float32 and widened back, so the Rust reference (f32 tensors, f64 accumulation) sees
exactly the numbers torch saw; torch then computes in float64. Expected outputs are float64.
Files (one JSON per op family, all values flat lists in (N, C, D, H, W) order, W fastest):

* conv3d.json           — torch.nn.functional.conv3d; weight (O, I, kD, kH, kW); with/without bias.
* conv_transpose3d.json — F.conv_transpose3d; weight (I, O, kD, kH, kW); kernel = stride 2x2x2 and
                          general cases with padding.
* instance_norm.json    — F.instance_norm (affine gamma/beta, eps = float32(1e-5) widened, i.e.
                          the eps the f32 API passes) then identity / F.leaky_relu(0.01) / F.relu.
* pointwise.json        — softmax over channels, sigmoid, argmax over channels (with ties: torch
                          returns the first maximal index).
* resample.json         — F.grid_sample(align_corners=True, padding_mode="zeros", modes
                          "bilinear" (= trilinear for 5-D) and "nearest") on a grid built in torch
                          from theta: p = theta · (w, h, d, 1) is an input voxel index (pw, ph, pd),
                          normalised as 2·p/(size−1) − 1. `nearest` cases away from rounding ties
                          are checked to stay >= 1e-6 from a .5 fraction; the `ties` case uses sizes
                          with size−1 a power of two, where normalisation round-trips exactly, to
                          pin down torch's tie rule.
* resample_grad.json    — d/dtheta of sum(upstream · grid_sample(x, grid(theta))) by autograd;
                          generic cases keep every sample point >= 1e-6 from a cell border (so the
                          float round trip of the normalisation cannot change the cell); the
                          `border` case puts points exactly on integer indices with exact
                          normalisation, to pin down which one-sided derivative torch takes.
* accumulate_f16.json   — nnU-Net's sliding-window aggregation with float16 accumulators, run by
                          torch exactly as nnunetv2's predict_sliding_window_return_logits does it
                          (`acc[sl] += p * g16` with p float32 and g16 float16, `w[sl] += g16`,
                          then `acc / w` in half), over overlapping tiles in a fixed order. Values
                          are float16 (inputs p are float32); the Rust side must match bit for bit.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
DT = torch.float64


def f32(a):
    """float64 array whose values are exactly representable as float32."""
    return np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)


def rand(rng, shape, lo=-2.0, hi=2.0):
    return f32(rng.uniform(lo, hi, shape))


def flat(a):
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return [float(v) for v in a.astype(np.float64).ravel()]


def tensor_entry(a):
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return {"shape": list(a.shape), "data": flat(a)}


def t(a):
    return torch.tensor(a, dtype=DT)


# --------------------------------------------------------------------------------- conv3d
def conv3d_cases(rng):
    # (name, x shape, out channels, kernel (kD, kH, kW), stride, padding, bias)
    specs = [
        ("k313_s121_p102_bias", (1, 3, 5, 7, 6), 4, (3, 1, 3), (1, 2, 1), (1, 0, 2), True),
        ("k222_s222_p000_n2", (2, 3, 5, 7, 6), 2, (2, 2, 2), (2, 2, 2), (0, 0, 0), False),
        ("k531_s112_p210_bias", (1, 2, 6, 5, 7), 3, (5, 3, 1), (1, 1, 2), (2, 1, 0), True),
        ("k333_s111_p111_bias", (1, 2, 4, 5, 6), 3, (3, 3, 3), (1, 1, 1), (1, 1, 1), True),
        ("k333_s212_p110", (1, 2, 7, 4, 5), 2, (3, 3, 3), (2, 1, 2), (1, 1, 0), False),
        ("k111_head_bias", (1, 4, 3, 5, 2), 3, (1, 1, 1), (1, 1, 1), (0, 0, 0), True),
        ("k245_s221_p022", (1, 1, 5, 6, 7), 2, (2, 4, 5), (2, 2, 1), (0, 2, 2), True),
    ]
    cases = []
    for name, xs, o, k, s, p, has_bias in specs:
        x = rand(rng, xs)
        w = rand(rng, (o, xs[1]) + k, -0.5, 0.5)
        b = rand(rng, (o,), -1.0, 1.0) if has_bias else None
        y = F.conv3d(t(x), t(w), None if b is None else t(b), stride=s, padding=p)
        cases.append({
            "name": name,
            "x": tensor_entry(x),
            "weight": tensor_entry(w),
            "bias": None if b is None else flat(b),
            "stride": list(s),
            "padding": list(p),
            "expected": tensor_entry(y),
        })
    return cases


def conv_transpose3d_cases(rng):
    # (name, x shape, out channels, kernel, stride, padding, bias)
    specs = [
        ("k222_s222_bias", (1, 3, 3, 4, 5), 2, (2, 2, 2), (2, 2, 2), (0, 0, 0), True),
        ("k222_s222_n2", (2, 2, 2, 3, 3), 3, (2, 2, 2), (2, 2, 2), (0, 0, 0), False),
        ("k122_s122_aniso", (1, 3, 2, 3, 4), 2, (1, 2, 2), (1, 2, 2), (0, 0, 0), True),
        ("k324_s212_p101_bias", (2, 2, 3, 4, 3), 3, (3, 2, 4), (2, 1, 2), (1, 0, 1), True),
        ("k331_s121_p210", (1, 2, 4, 3, 5), 2, (3, 3, 1), (1, 2, 1), (2, 1, 0), False),
        ("k513_s211_p201_bias", (1, 1, 3, 5, 4), 2, (5, 1, 3), (2, 1, 1), (2, 0, 1), True),
    ]
    cases = []
    for name, xs, o, k, s, p, has_bias in specs:
        x = rand(rng, xs)
        w = rand(rng, (xs[1], o) + k, -0.5, 0.5)
        b = rand(rng, (o,), -1.0, 1.0) if has_bias else None
        y = F.conv_transpose3d(t(x), t(w), None if b is None else t(b), stride=s, padding=p)
        cases.append({
            "name": name,
            "x": tensor_entry(x),
            "weight": tensor_entry(w),
            "bias": None if b is None else flat(b),
            "stride": list(s),
            "padding": list(p),
            "expected": tensor_entry(y),
        })
    return cases


# ------------------------------------------------------------------------- instance norm
def instance_norm_cases(rng):
    eps = float(np.float32(1e-5))
    cases = []
    for name, xs in [("n1_c3", (1, 3, 5, 7, 6)), ("n2_c2_const", (2, 2, 3, 4, 5))]:
        # Channels with different offsets and scales, like real activations.
        c = xs[1]
        x = rng.normal(0.0, 1.0, xs) * rng.uniform(0.05, 5.0, (1, c, 1, 1, 1)) \
            + rng.uniform(-3.0, 3.0, (1, c, 1, 1, 1))
        if name.endswith("const"):
            x[1, 0] = 0.75  # a constant channel: variance 0, output = act(beta)
        x = f32(x)
        gamma = rand(rng, (c,), 0.5, 1.5)
        beta = rand(rng, (c,), -0.5, 0.5)
        y = F.instance_norm(t(x), weight=t(gamma), bias=t(beta), eps=eps)
        for act, z in [("identity", y), ("leaky_relu_0.01", F.leaky_relu(y, 0.01)),
                       ("relu", F.relu(y))]:
            cases.append({
                "name": f"{name}_{act}",
                "x": tensor_entry(x),
                "gamma": flat(gamma),
                "beta": flat(beta),
                "eps": eps,
                "activation": act,
                "expected": tensor_entry(z),
            })
    return cases


# ------------------------------------------------------------ softmax / sigmoid / argmax
def pointwise_cases(rng):
    cases = []
    x = rand(rng, (2, 4, 3, 5, 6), -6.0, 6.0)
    cases.append({"name": "softmax_n2_c4", "op": "softmax", "x": tensor_entry(x),
                  "expected": tensor_entry(torch.softmax(t(x), dim=1))})
    x = rand(rng, (1, 3, 5, 7, 6), -40.0, 40.0)
    cases.append({"name": "softmax_wide_range", "op": "softmax", "x": tensor_entry(x),
                  "expected": tensor_entry(torch.softmax(t(x), dim=1))})
    x = rand(rng, (1, 3, 5, 7, 6), -12.0, 12.0)
    cases.append({"name": "sigmoid", "op": "sigmoid", "x": tensor_entry(x),
                  "expected": tensor_entry(torch.sigmoid(t(x)))})
    x = rand(rng, (2, 5, 3, 4, 6), -3.0, 3.0)
    cases.append({"name": "argmax_no_ties", "op": "argmax", "x": tensor_entry(x),
                  "expected": flat(torch.argmax(t(x), dim=1))})
    # Integer values in a small range: many ties, including all-equal voxels.
    x = rng.integers(0, 3, (1, 4, 3, 5, 6)).astype(np.float64)
    x[0, :, 0, 0, :] = 1.0
    cases.append({"name": "argmax_ties", "op": "argmax", "x": tensor_entry(x),
                  "expected": flat(torch.argmax(t(x), dim=1))})
    return cases


# ------------------------------------------------------------------------- resampling
def rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = (np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az),
                              np.sin(az))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def theta_about_centre(lin, in_whd, out_whd, shift):
    """theta (3x4, index space, (w, h, d) order) mapping the output centre to the input centre
    through `lin`, then shifted by `shift` voxels."""
    ci = (np.array(in_whd, dtype=np.float64) - 1) / 2
    co = (np.array(out_whd, dtype=np.float64) - 1) / 2
    th = np.zeros((3, 4))
    th[:, :3] = lin
    th[:, 3] = ci - lin @ co + np.asarray(shift, dtype=np.float64)
    return th


def grid_from_theta(theta, x_shape, out_dhw):
    """Sampling grid (N, Do, Ho, Wo, 3) of normalised (x, y, z) = (w, h, d), built from theta."""
    n, _, d, h, w = x_shape
    od, oh, ow = out_dhw
    zz, yy, xx = torch.meshgrid(torch.arange(od, dtype=DT), torch.arange(oh, dtype=DT),
                                torch.arange(ow, dtype=DT), indexing="ij")
    q = torch.stack([xx, yy, zz, torch.ones_like(xx)], dim=-1)  # (Do, Ho, Wo, 4) = (w, h, d, 1)
    p = q @ theta.T  # (Do, Ho, Wo, 3) input index (pw, ph, pd)
    size = torch.tensor([w - 1, h - 1, d - 1], dtype=DT)
    g = 2.0 * p / size - 1.0
    return g.unsqueeze(0).expand(n, od, oh, ow, 3), p


def index_points(theta, out_dhw):
    od, oh, ow = out_dhw
    zz, yy, xx = np.meshgrid(np.arange(od), np.arange(oh), np.arange(ow), indexing="ij")
    q = np.stack([xx, yy, zz, np.ones_like(xx)], axis=-1).reshape(-1, 4).astype(np.float64)
    return q @ np.asarray(theta).T  # (M, 3)


def check_away_from(p, offset, what, margin=1e-6):
    """Every coordinate stays >= margin from integer + offset (0: cell border, .5: tie)."""
    frac = np.abs((p - offset) - np.round(p - offset))
    assert frac.min() >= margin, f"{what}: a sample point lies within {frac.min()} of a border"


def outside_fraction(p, x_shape):
    _, _, d, h, w = x_shape
    hi = np.array([w - 1, h - 1, d - 1], dtype=np.float64)
    return float(np.mean(np.any((p < 0) | (p > hi), axis=1)))


# A general linear part (shear, anisotropic scale) with no "round" entries, so no sample point
# lands on a rounding tie or cell border by accident.
SHEAR = np.array([[0.8137, 0.3529, -0.2071], [-0.2533, 1.4142, 0.3061], [0.1493, -0.3989, 0.9127]])


def resample_specs():
    # (name, x shape, out (D, H, W), theta, modes)
    s = []
    xs = (1, 2, 5, 7, 6)
    out = (4, 6, 8)
    lin = rotation(0.3, -0.2, 0.5) @ np.diag([1.15, 0.9, 1.3])
    s.append(("rot_scale_shift", xs, out,
              theta_about_centre(lin, (6, 7, 5), (8, 6, 4), (0.37, -0.61, 0.23)),
              ["bilinear", "nearest"]))
    xs = (2, 1, 6, 5, 7)
    out = (5, 3, 4)
    lin = SHEAR
    s.append(("shear_n2_outside", xs, out,
              theta_about_centre(lin, (7, 5, 6), (4, 3, 5), (1.713, -2.287, 0.917)),
              ["bilinear", "nearest"]))
    xs = (1, 2, 5, 7, 6)
    out = (7, 6, 5)
    # Zoom out (scale 2.1): most of the output lies outside the input, with fade zones.
    lin = rotation(-0.45, 0.1, 1.2) * 2.1
    s.append(("zoom_out_rotated", xs, out,
              theta_about_centre(lin, (6, 7, 5), (5, 6, 7), (0.13, 0.29, -0.41)),
              ["bilinear", "nearest"]))
    # Axis permutation with flip (w <- d, h <- -w, d <- h): a pure index remap.
    xs = (1, 2, 5, 7, 6)
    th = np.array([[0.0, 0.0, 1.0, 0.3], [-1.0, 0.0, 0.0, 5.6], [0.0, 1.0, 0.0, -0.2]])
    s.append(("permute_flip", xs, (6, 4, 7), th, ["bilinear", "nearest"]))
    # Ties: sizes with size-1 in {2, 4, 8} make 2p/(size-1)-1 and its inverse exact, so p lands on
    # exact .5 fractions inside torch: shows torch's tie rule (nearbyint: half to even).
    xs = (1, 1, 3, 5, 9)
    th = np.array([[1.0, 0.0, 0.0, -0.5], [0.0, 1.0, 0.0, 0.5], [0.0, 0.0, 0.5, 0.0]])
    s.append(("ties_half_to_even", xs, (4, 5, 10), th, ["nearest", "bilinear"]))
    return s


def resample_cases():
    cases = []
    for i, (name, xs, out, th, modes) in enumerate(resample_specs()):
        rng = np.random.default_rng(7001 + i)
        x = rand(rng, xs)
        p = index_points(th, out)
        for mode in modes:
            if mode == "nearest" and not name.startswith("ties"):
                check_away_from(p, 0.5, name)
            grid, _ = grid_from_theta(t(th), xs, out)
            y = F.grid_sample(t(x), grid, mode=mode, padding_mode="zeros", align_corners=True)
            cases.append({
                "name": f"{name}_{'trilinear' if mode == 'bilinear' else mode}",
                "interp": "trilinear" if mode == "bilinear" else "nearest",
                "x": tensor_entry(x),
                "theta": [list(map(float, r)) for r in th],
                "out_dhw": list(out),
                "outside_fraction": outside_fraction(p, xs),
                "expected": tensor_entry(y),
            })
    return cases


def resample_grad_cases():
    cases = []
    specs = [
        ("rot_scale_shift", (1, 2, 5, 7, 6), (4, 6, 5),
         theta_about_centre(rotation(0.3, -0.2, 0.5) @ np.diag([1.1, 0.95, 1.2]), (6, 7, 5),
                            (5, 6, 4), (0.37, -0.61, 0.23))),
        ("shear_n2_outside", (2, 1, 6, 5, 7), (5, 3, 4),
         theta_about_centre(SHEAR, (7, 5, 6), (4, 3, 5), (1.713, -2.287, 0.917))),
        ("zoom_out_rotated", (1, 2, 5, 7, 6), (6, 5, 7),
         theta_about_centre(rotation(-0.45, 0.1, 1.2) * 1.9, (6, 7, 5), (7, 5, 6),
                            (0.13, 0.29, -0.41))),
        # Exact integer sample points (sizes with size-1 a power of two, integer translation and
        # 0/±1 linear part): every point on a cell border, including the last index (w = 8) and
        # the index -1 just outside (h and d).
        ("border_integer_points", (1, 2, 3, 5, 9), (4, 4, 6),
         np.array([[1.0, 0.0, 0.0, 3.0], [0.0, 1.0, 0.0, -1.0], [0.0, 0.0, -1.0, 2.0]])),
    ]
    for i, (name, xs, out, th) in enumerate(specs):
        rng = np.random.default_rng(9001 + i)
        x = rand(rng, xs)
        upstream = rand(rng, (xs[0], xs[1]) + out, -1.0, 1.0)
        p = index_points(th, out)
        if not name.startswith("border"):
            check_away_from(p, 0.0, name)
        theta = t(th).requires_grad_(True)
        grid, _ = grid_from_theta(theta, xs, out)
        y = F.grid_sample(t(x), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        loss = (t(upstream) * y).sum()
        (g,) = torch.autograd.grad(loss, theta)
        cases.append({
            "name": name,
            "x": tensor_entry(x),
            "theta": [list(map(float, r)) for r in th],
            "upstream": tensor_entry(upstream),
            "outside_fraction": outside_fraction(p, xs),
            "loss": float(loss.detach()),
            "expected": [list(map(float, r)) for r in g.numpy()],
        })
    return cases


# ------------------------------------------------------------------------ fp16 aggregation
def accumulate_f16_cases(rng):
    cases = []
    # (name, channels, volume (D, H, W), patch (pd, ph, pw), tile offsets in visiting order)
    specs = [
        ("overlap", 3, (9, 10, 11), (5, 6, 7), [(0, 0, 0), (0, 0, 4), (0, 4, 0), (0, 4, 4),
                                                (4, 0, 0), (4, 0, 4), (4, 4, 0), (4, 4, 4)]),
        ("dense", 2, (6, 6, 6), (4, 4, 4), [(a, b, c) for a in (0, 1, 2) for b in (0, 1, 2)
                                            for c in (0, 2)]),
    ]
    for name, ch, vol, patch, offsets in specs:
        # a Gaussian-like map: large in the centre, tiny (subnormal in f16) at the corners
        axes = [np.linspace(-1.0, 1.0, n) for n in patch]
        r2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
        g = 10.0 * np.exp(-r2 * 6.0)
        g16 = torch.from_numpy(g.astype(np.float32)).to(torch.float16)
        g16[g16 == 0] = g16[g16 != 0].min()
        acc = torch.zeros((ch, *vol), dtype=torch.float16)
        w = torch.zeros(vol, dtype=torch.float16)
        patches = []
        for off in offsets:
            # logits of either sign, some large enough that fp16 rounding shows
            p = torch.from_numpy(rng.uniform(-30.0, 30.0, (ch, *patch)).astype(np.float32))
            patches.append(flat(p.double()))
            sl = tuple(slice(o, o + n) for o, n in zip(off, patch))
            acc[(slice(None), *sl)] += p * g16
            w[sl] += g16
        out = acc / w
        cases.append({
            "name": name,
            "channels": ch,
            "volume": list(vol),
            "patch": list(patch),
            "offsets": [list(o) for o in offsets],
            "patches": patches,
            "gaussian": flat(g16.double()),
            "acc": flat(acc.double()),
            "weight_sum": flat(w.double()),
            "normalized": flat(out.double()),
        })
    return cases


def main(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261201)
    files = {
        "conv3d.json": conv3d_cases(rng),
        "conv_transpose3d.json": conv_transpose3d_cases(rng),
        "instance_norm.json": instance_norm_cases(rng),
        "pointwise.json": pointwise_cases(rng),
        "resample.json": resample_cases(),
        "resample_grad.json": resample_grad_cases(),
        "accumulate_f16.json": accumulate_f16_cases(rng),
    }
    total = 0
    for fname, cases in files.items():
        doc = {
            "generator": "tools/oracle/engine_golden.py",
            "torch_version": torch.__version__,
            "dtype": "float64 (inputs are float32 values)",
            "cases": cases,
        }
        path = out / fname
        path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
        total += path.stat().st_size
        print(f"wrote {path}: {len(cases)} cases, {path.stat().st_size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
