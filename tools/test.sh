#!/usr/bin/env bash
# The test command (README): prepares the pinned pydicom oracle and the public DICOM corpus in
# .cache/ (a Python venv, downloaded once), then runs fmt, clippy and every cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=$PWD/.cache
if [ ! -x "$cache/venv/bin/python" ]; then
  python3 -m venv "$cache/venv"
fi
"$cache/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tools/oracle/requirements-pydicom.txt
PATH="$cache/venv/bin:$PATH" bash tools/oracle/fetch_corpus.sh "$cache/corpus"
"$cache/venv/bin/python" tools/oracle/pydicom_hu.py "$cache/corpus/files" "$cache/oracle"
export NEPHROD_CORPUS="$cache/corpus/files" NEPHROD_ORACLE="$cache/oracle" NEPHROD_PYTHON="$cache/venv/bin/python"
# CUDA kernels without a GPU: pinned NVRTC + ptxas wheels (tests/kernels_compile.rs).
"$cache/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tools/cuda/requirements-cuda.txt
export NEPHROD_CUDA_CHECK="$PWD/tools/cuda/check_kernels.py"
NEPHROD_NVRTC_LIBRARY=$("$cache/venv/bin/python" -c 'import nvidia.cuda_nvrtc as m; print(list(m.__path__)[0] + "/lib/libnvrtc.so.12")')
export NEPHROD_NVRTC_LIBRARY
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo test --locked --all-targets 2>&1 | tee "$work/cargo-test.log"
# nibabel reads nephrod's NIfTI output with the geometry nephrod reports (end to end).
cargo run --locked -q -- example --out "$work/example" --slices 12
cargo run --locked -q -- inspect --json "$work/example" > "$work/inspect.json"
cargo run --locked -q -- convert "$work/example" --out "$work/nifti" > /dev/null
"$cache/venv/bin/python" tools/oracle/check_nifti_nibabel.py "$work/inspect.json" "$work/nifti"
# One closing line over every cargo test binary, plus the nibabel check above (1 more test).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p + 1, f }' "$work/cargo-test.log"
