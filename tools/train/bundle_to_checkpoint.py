#!/usr/bin/env python3
"""Turns one fold of a nephrod segmentation bundle back into an nnU-Net v2 checkpoint file that
`nnUNetv2_train ... -pretrained_weights FILE` accepts, so demo training can continue from the
shipped weights instead of starting over (tools/train/train_segmenter.sh, INIT_FROM=...).

usage: python bundle_to_checkpoint.py BUNDLE_DIR FOLD OUT.pth

The bundle stores nnU-Net's own state-dict names in f16 (`nephrod models import-nnunet`); they
are widened to f32 here. nnU-Net's `load_pretrained_weights` checks that every key and shape
matches the new network (same plans) and re-initialises nothing but what it documents (the
segmentation heads, `.seg_layers.`), so a warm start needs the same plans as the bundle's.
"""
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def aliases(state: dict) -> dict:
    """The duplicate names torch's state_dict() gives shared modules, which the bundle stores once:
    each ConvDropoutNormReLU's `all_modules` Sequential (0 = conv, 1 = norm) and the decoder's
    reference to the encoder (`decoder.encoder.*`)."""
    extra = {}
    for key, value in state.items():
        for own, idx in ((".conv.", ".all_modules.0."), (".norm.", ".all_modules.1.")):
            if own in key:
                extra[key.replace(own, idx)] = value
    for key, value in list(state.items()) + list(extra.items()):
        if key.startswith("encoder."):
            extra["decoder." + key] = value
    return extra


def main() -> None:
    bundle, fold, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    manifest = json.loads((bundle / "manifest.json").read_text())
    entry = next(f for f in manifest["folds"] if str(f["fold"]) == str(fold))
    tensors = load_file(str(bundle / entry["weights_file"]))
    state = {k: v.to(torch.float32) for k, v in sorted(tensors.items())}
    state.update(aliases(state))
    torch.save({"network_weights": state, "source_bundle": str(bundle), "fold": fold}, out)
    print(f"{out}: {len(state)} tensors from {bundle}/{entry['weights_file']}")


if __name__ == "__main__":
    main()
