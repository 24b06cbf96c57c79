#!/usr/bin/env python3
"""Golden safetensors file for tests/engine_weights.rs, written by the reference library.

usage: .cache/nnunet-venv/bin/python tools/oracle/weights_golden.py tests/data/weights
Pinned: safetensors 0.8.0 and numpy from tools/oracle/requirements-nnunet.txt (the venv made by
tools/oracle/verify_nnunet_dataset.sh). Writes golden.safetensors (F16, BF16-free numpy path,
F32 tensors of odd shapes, with metadata) and golden.json with the expected values as float64
(the f16 values after rounding, as numpy computes them) and the file's SHA-256.
"""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import safetensors
from safetensors.numpy import save_file

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(20261123)
tensors = {
    "encoder.stages.0.conv.weight": rng.normal(0, 0.2, (4, 1, 3, 3, 3)).astype(np.float16),
    "encoder.stages.0.conv.bias": rng.normal(0, 0.1, (4,)).astype(np.float16),
    "norm.weight": rng.uniform(0.5, 1.5, (4,)).astype(np.float32),
    "odd.shape": np.array([[65504.0, -0.0], [6.1e-5, 1e-8], [3.140625, -2.5]], dtype=np.float16),
}
path = out / "golden.safetensors"
save_file(tensors, str(path), metadata={"format": "pt", "producer": "weights_golden.py"})
expected = {
    "safetensors_version": safetensors.__version__,
    "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    "metadata": {"format": "pt", "producer": "weights_golden.py"},
    "tensors": {
        name: {
            "dtype": {np.dtype("float16"): "F16", np.dtype("float32"): "F32"}[a.dtype],
            "shape": list(a.shape),
            "values": [float(v) for v in a.astype(np.float64).ravel()],
        }
        for name, a in tensors.items()
    },
}
(out / "golden.json").write_text(json.dumps(expected, indent=1) + "\n")
print(f"wrote {path} ({path.stat().st_size} bytes) and golden.json")
