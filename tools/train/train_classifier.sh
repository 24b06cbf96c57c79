#!/usr/bin/env bash
# Trains the demo renal-mass classifier (torchvision ResNet-18 + 1x1 input conv, 5 classes) with
# PyTorch on the CPU, from the classifier's exact inputs, and imports it.
#
#   bash tools/train/train_classifier.sh           # -> models/renal-mass-classifier-demo/
#
# 1. venv: tools/nnunet_venv.sh (torch 2.15.0, torchvision 0.29.2).
# 2. `nephrod phantom --format nifti --lesion-mix balanced --all-phases --cases $CASES --seed $SEED`:
#    2-3 lesions per study, the five subtypes equally likely, all four phases (3 images per lesion).
# 3. `nephrod export-crops` on it: registration, lesion crops, windowing and normalisation exactly
#    as `nephrod classify` does at inference (truth label maps give the lesions).
# 4. tools/train/train_classifier.py (fixed seed, deterministic) -> weights.safetensors (f32).
# 5. `nephrod models import-classifier --arch resnet18` -> f16 bundle $OUT with training.json.
#
# Environment (all optional): CASES=100 SEED=2001 EPOCHS=12 TRAIN_SEED=8 THREADS=2
#   REUSE_CROPS=1 (keep $WORK/crops from an earlier run with the same CASES and SEED)
#   INIT_FROM=models/renal-mass-classifier-demo (continue from that bundle's weights)
#   WORK=.cache/train/classifier OUT=models/renal-mass-classifier-demo
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
cases=${CASES:-100}
seed=${SEED:-2001}
epochs=${EPOCHS:-12}
train_seed=${TRAIN_SEED:-8}
threads=${THREADS:-2}
work=${WORK:-$root/.cache/train/classifier}
out=${OUT:-$root/models/renal-mass-classifier-demo}
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

step "venv"
py=$(bash tools/nnunet_venv.sh | tail -n 1)
step "building nephrod (release)"
cargo build --release --quiet
nephrod=$root/target/release/nephrod

if [ "${REUSE_CROPS:-0}" = 1 ] && [ -f "$work/crops.done" ] \
  && [ "$(head -n 1 "$work/crops.done")" = "cases=$cases seed=$seed" ]; then
  step "reusing $work/crops (REUSE_CROPS=1)"
  t0=$(( $(date +%s) - $(tail -n 1 "$work/crops.done") ))
else
  rm -rf "$work"
  mkdir -p "$work"
  step "phantom: $cases studies, seed $seed, balanced lesion mix"
  "$nephrod" phantom --out "$work/data" --cases "$cases" --seed "$seed" --format nifti \
    --lesion-mix balanced --all-phases >"$work/phantom.log"
  step "nephrod export-crops"
  "$nephrod" export-crops "$work/data" --out "$work/crops" | tail -n 5
  printf 'cases=%s seed=%s\n%s\n' "$cases" "$seed" $(( $(date +%s) - t0 )) >"$work/crops.done"
fi
t_crops=$(date +%s)
step "train (PyTorch, $threads threads)"
init=()
[ -n "${INIT_FROM:-}" ] && init=(--init "$INIT_FROM/weights.safetensors")
OMP_NUM_THREADS=$threads "$py" tools/train/train_classifier.py --crops "$work/crops" \
  --out "$work/torch" --epochs "$epochs" --seed "$train_seed" --threads "$threads" "${init[@]}"
t_train=$(date +%s)

"$py" - "$work/torch/training.json" "$cases" "$seed" $((t_crops - t0)) $((t_train - t_crops)) <<'PY'
import json, sys, os, platform
p, cases, seed, prep_s, train_s = sys.argv[1:6]
r = json.load(open(p))
r["dataset"] = {"generator": "nephrod phantom --format nifti --lesion-mix balanced --all-phases",
                "studies": int(cases), "seed": int(seed),
                "crops": "nephrod export-crops (truth label maps)"}
r["seconds"] = {"phantom_and_export_crops": int(prep_s), "training": int(train_s)}
r["machine"] = f"{os.cpu_count()} CPU cores, {platform.machine()}"
r["commands"] = (f"CASES={cases} SEED={seed} EPOCHS={r['settings']['epochs']} "
                 f"TRAIN_SEED={r['settings']['seed']} THREADS={r['settings']['threads']} "
                 "bash tools/train/train_classifier.sh")
json.dump(r, open(p, "w"), indent=2)
PY
step "nephrod models import-classifier"
rm -rf "$out"
"$nephrod" models import-classifier --weights "$work/torch/weights.safetensors" --arch resnet18 \
  --training "$work/torch/training.json" --out "$out"
"$nephrod" models verify "$out"
step "done: $out"
