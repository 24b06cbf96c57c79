#!/usr/bin/env python3
"""Goldens for tests/segment_unet.rs: nnU-Net's networks (PlainConvUNet, ResidualEncoderUNet
of dynamic-network-architectures, built by nnunetv2 2.8.1's own get_network_from_plans) with
random weights, one input and torch's output.

usage: .cache/nnunet-venv/bin/python tools/oracle/nnunet_network_golden.py tests/data/segment/network
Pinned: tools/oracle/requirements-nnunet.txt (torch 2.15 CPU, nnunetv2 2.8.1, safetensors 0.8.0).
Deterministic: torch.manual_seed per case, one thread, eval mode, float32.

Per case <name>: <name>.json (the architecture in nephrod's UNetArchitecture field names, plus
shapes), <name>.weights.safetensors (the state dict without the alias keys `all_modules` and
`decoder.encoder.`, f32; InstanceNorm gamma/beta and all biases re-drawn at random so that
none is the default 1/0), <name>.io.safetensors ("input" (1, C, D, H, W) and torch's "output").
"""
import json
import sys
from pathlib import Path

import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from safetensors.torch import save_file

torch.set_num_threads(1)

COMMON = {
    "conv_op": "torch.nn.modules.conv.Conv3d", "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None, "dropout_op_kwargs": None,
    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
}
REQ = ["conv_op", "norm_op", "dropout_op", "nonlin"]
PLAIN = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
RESENC = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"

CASES = [
    # name, class, in, out, features, kernels, strides, convs/blocks per stage, decoder convs, input DHW
    ("plain_aniso", PLAIN, 2, 4, [5, 8, 12, 16],
     [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
     [2, 2, 2, 2], [2, 2, 1], [12, 24, 16]),
    ("plain_k5", PLAIN, 1, 3, [4, 7, 9],
     [[3, 5, 3], [3, 3, 3], [3, 3, 3]], [[1, 1, 1], [2, 2, 2], [2, 1, 2]],
     [1, 2, 3], [1, 2], [8, 6, 12]),
    ("resenc", RESENC, 2, 3, [3, 6, 10, 10],
     [[3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]], [[1, 1, 1], [2, 2, 2], [1, 2, 2], [2, 2, 2]],
     [1, 2, 2, 1], [1, 1, 1], [8, 16, 8]),
]


def main(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, cls, cin, cout, feats, ks, st, nconv, ndec, dhw) in enumerate(CASES):
        torch.manual_seed(1000 + i)
        kw = dict(COMMON, n_stages=len(feats), features_per_stage=feats, kernel_sizes=ks, strides=st,
                  n_conv_per_stage_decoder=ndec)
        kw["n_blocks_per_stage" if cls == RESENC else "n_conv_per_stage"] = nconv
        net = get_network_from_plans(cls, kw, REQ, cin, cout, allow_init=True, deep_supervision=False)
        net.eval()
        sd = net.state_dict()
        weights = {}
        g = torch.Generator().manual_seed(2000 + i)
        for k, v in sd.items():
            if "all_modules" in k or k.startswith("decoder.encoder."):
                continue
            v = v.detach().clone().float()
            if k.endswith(".bias") or ".norm." in k:
                v = (torch.rand(v.shape, generator=g) - 0.5) + (1.0 if (".norm." in k and k.endswith("weight")) else 0.0)
            weights[k] = v.contiguous()
        missing, unexpected = net.load_state_dict(weights, strict=False)
        assert not unexpected, unexpected
        # aliases are the same tensors, so loading the unique keys sets them all
        x = torch.randn((1, cin, *dhw), generator=g) * 2.0
        with torch.no_grad():
            y = net(x)
        save_file(weights, str(out / f"{name}.weights.safetensors"))
        save_file({"input": x.contiguous(), "output": y.contiguous()}, str(out / f"{name}.io.safetensors"))
        arch = {
            "class": "PlainConvUNet" if cls == PLAIN else "ResidualEncoderUNet",
            "input_channels": cin, "output_channels": cout, "features_per_stage": feats,
            "kernel_sizes": ks, "strides": st, "n_conv_per_stage": nconv, "n_conv_per_stage_decoder": ndec,
            "conv_bias": True, "norm_eps": 1e-5, "nonlinearity": {"LeakyRelu": {"negative_slope": 0.01}},
        }
        doc = {"generator": "tools/oracle/nnunet_network_golden.py", "torch": torch.__version__,
               "architecture": arch, "input_shape": list(x.shape), "output_shape": list(y.shape),
               "output_max_abs": float(y.abs().max())}
        (out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(name, tuple(y.shape), "max|y|", float(y.abs().max()))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
