#!/usr/bin/env bash
# Seconds per case and peak RSS: `nephrod segment` vs nnunetv2's nnUNetPredictor on the CPU, same
# model, CT and threads, alternating in one run (details: tools/bench/segment_vs_nnunet.py).
#   tools/bench/segment_vs_nnunet.sh [--net small|kits|tiny] [--shape Z Y X] [--rounds R] [--tta] ...
# PYTHON: a Python with nnunetv2 2.8.1 (default .cache/nnunet-venv/bin/python, made by
# tools/oracle/verify_nnunet_dataset.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-.cache/nnunet-venv/bin/python}
cargo build --release --locked -q
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$python" tools/bench/segment_vs_nnunet.py "$@"
