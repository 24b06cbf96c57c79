#!/usr/bin/env bash
# nephrod's CPU conv3d / conv_transpose3d vs PyTorch CPU fp32 on the same shapes and thread
# count in one run; prints the ratio per shape (torch ms / nephrod ms, > 1: nephrod faster).
#   tools/bench/ops_vs_torch.sh [--threads N] [--rounds R] [other `nephrod bench ops` flags]
# Each row is timed alternately by nephrod and PyTorch R times (default 3) and the medians are
# compared, so that both see the same load on a shared machine.
# PYTHON: a Python with torch (default .cache/nnunet-venv/bin/python). OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE are unset for this command only.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-.cache/nnunet-venv/bin/python}
threads=$(nproc)
rounds=3
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
cargo build --release --locked -q
bin=./target/release/nephrod
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
"$bin" bench ops --json --threads "$threads" "${args[@]}" > "$rows"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$python" tools/bench/torch_conv3d.py \
  --threads "$threads" --nephrod "$bin" --rounds "$rounds" --nephrod-args="${args[*]}" "$rows"
