#!/usr/bin/env bash
# Creates or updates .cache/nnunet-venv: nnunetv2 2.8.1 + torch/torchvision, pinned by
# tools/oracle/requirements-nnunet.txt. Used by the oracles (tools/oracle/) and the demo-model
# training (tools/train/); never by CI.
#
#   bash tools/nnunet_venv.sh          # prints the venv's python path on the last line
#
# The CPU-only torch wheel of the same version is used when the PyTorch CPU index answers,
# otherwise the pinned PyPI wheel (CUDA build, ~6.3 GB, runs fine on the CPU). Re-installs only
# when the requirements file or the torch source changes.
#   TORCH_SOURCE=auto|cpu|pypi   (default auto)     TORCH_CPU_INDEX=URL
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
req=$root/tools/oracle/requirements-nnunet.txt
venv=$root/.cache/nnunet-venv
py=$venv/bin/python
torch_source=${TORCH_SOURCE:-auto}
cpu_index=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

if [ ! -x "$py" ]; then
  echo "nnunet_venv: creating $venv" >&2
  python3 -m venv "$venv"
fi
if [ "$torch_source" = auto ]; then
  if "$py" - "$cpu_index/torch/" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=10).read(1)
PY
  then torch_source=cpu; else torch_source=pypi; fi
fi
stamp=$venv/.nephrod-requirements.sha256
want="$(sha256sum "$req" | cut -d' ' -f1) torch=$torch_source"
if [ -f "$stamp" ] && [ "$(cut -d' ' -f2 "$stamp")" != "torch=$torch_source" ]; then
  echo "nnunet_venv: torch source changed: recreating $venv" >&2
  rm -rf "$venv" && python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "nnunet_venv: installing $req (torch from: $torch_source)" >&2
  pipi() { "$py" -m pip install --quiet --disable-pip-version-check "$@"; }
  if [ "$torch_source" = cpu ]; then
    torch_pins=$(grep -E '^(torch|torchvision)==' "$req")
    # shellcheck disable=SC2086
    pipi --index-url "$cpu_index" $torch_pins
    filtered=$(mktemp)
    grep -v -E '^(nvidia-|cuda-|triton==)' "$req" >"$filtered"
    pipi -r "$filtered"
    rm -f "$filtered"
  else
    pipi -r "$req"
  fi
  echo "$want" >"$stamp"
fi
echo "$py"
