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
# The NEON kernels (the Jetson's ARM cores): the conv parity tests built for aarch64 and run under
# qemu-user, when this machine has the cross toolchain (rust target, gcc, qemu); else say so.
extra_passed=0
if rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu \
  && command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null; then
  CARGO_TARGET_DIR="$cache/target-aarch64" \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
  CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    cargo test --release --locked --target aarch64-unknown-linux-gnu --test engine_cpu_conv 2>&1 \
    | tee "$work/aarch64-test.log"
  extra_passed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) p += $i } END { print p + 0 }' "$work/aarch64-test.log")
else
  echo "SKIPPED: aarch64 NEON conv tests (needs rust target aarch64-unknown-linux-gnu, aarch64-linux-gnu-gcc, qemu-aarch64)"
fi
# nibabel reads nephrod's NIfTI output with the geometry nephrod reports (end to end).
cargo run --locked -q -- example --out "$work/example" --slices 12
cargo run --locked -q -- inspect --json "$work/example" > "$work/inspect.json"
cargo run --locked -q -- convert "$work/example" --out "$work/nifti" > /dev/null
"$cache/venv/bin/python" tools/oracle/check_nifti_nibabel.py "$work/inspect.json" "$work/nifti"
# The systemd unit: systemd-analyze verify (installs systemd if missing) and its exposure score.
bash tools/check_systemd.sh target/debug/nephrod
# One closing line over every cargo test binary, plus the nibabel and systemd checks above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p + 2 + extra, f }' extra="$extra_passed" "$work/cargo-test.log"
