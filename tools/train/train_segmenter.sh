#!/usr/bin/env bash
# Trains the demo segmentation model with nnU-Net v2 itself, on the CPU, and imports it.
#
#   bash tools/train/train_segmenter.sh            # -> models/kidney-seg-demo/
#
# 1. venv: tools/nnunet_venv.sh (nnunetv2 2.8.1, torch 2.15.0; tools/oracle/requirements-nnunet.txt).
# 2. `nephrod phantom --format nnunet --cases $CASES --seed $SEED` (each phase one training
#    image) as $nnUNet_raw/Dataset501_NephrodPhantom.
# 3. nnUNetv2_extract_fingerprint + nnUNetv2_plan_experiment (nnU-Net's own plans), then
#    tools/train/demo_plans.py sizes 3d_fullres for a 2-core CPU (patch, features, batch; topology
#    from nnU-Net's get_pool_and_conv_props) as plans "nephrodDemoPlans"; nnUNetv2_preprocess.
# 4. nnUNetv2_train 501 3d_fullres $FOLD -p nephrodDemoPlans -tr $TRAINER -device cpu
#    (nnU-Net's trainer, loss, augmentation, schedule and final validation, unchanged).
# 5. nephrod models import-nnunet -> $OUT, plus train_segmenter.json (commands, times, versions).
#
# Warm start: INIT_FROM=models/kidney-seg-demo continues from that bundle's weights (same plans;
#   tools/train/bundle_to_checkpoint.py -> nnUNetv2_train -pretrained_weights; nnU-Net re-initialises
#   the segmentation heads). training.json then keeps the bundle's earlier record under
#   "warm_started_from", so the whole chain of runs stays written down.
# Trainer: nnUNetTrainer_nephrodCPU (tools/train/nephrod_trainers.py, copied into the venv's
#   nnU-Net): nnU-Net's trainer with 50 iterations per epoch, EPOCHS epochs, a checkpoint every 5
#   epochs and the final validation without mirroring. Any nnU-Net trainer works via TRAINER=.
# Environment (all optional): CASES=60 SEED=1001 FOLD=0 TRAINER=nnUNetTrainer_nephrodCPU EPOCHS=80
#   INIT_FROM= PATCH="48 64 64" BASE_FEATURES=16 MAX_FEATURES=256 BATCH=2 THREADS=2 (torch threads)
#   DA_PROCS=0 (nnUNet_n_proc_DA) WORK=.cache/train/segmenter OUT=models/kidney-seg-demo
# Re-running reuses nothing: the work folder is recreated; except RESUME=1, which keeps the work
#   folder and continues training from its latest checkpoint (nnUNetv2_train --c), e.g. after an
#   interruption or, with a smaller EPOCHS, to end a run early.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
cases=${CASES:-60}
seed=${SEED:-1001}
fold=${FOLD:-0}
trainer=${TRAINER:-nnUNetTrainer_nephrodCPU}
epochs=${EPOCHS:-80}
resume=${RESUME:-0}
patch=${PATCH:-48 64 64}
base=${BASE_FEATURES:-16}
maxf=${MAX_FEATURES:-256}
batch=${BATCH:-2}
threads=${THREADS:-2}
work=${WORK:-$root/.cache/train/segmenter}
out=${OUT:-$root/models/kidney-seg-demo}
dataset=Dataset501_NephrodPhantom
t0=$(date +%s)
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

step "venv"
py=$(bash tools/nnunet_venv.sh | tail -n 1)
venv_bin=$(dirname "$py")
trainer_dir=$("$py" -c 'import nnunetv2, os; print(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"))')
cp tools/train/nephrod_trainers.py "$trainer_dir/nephrod_trainers.py"

step "building nephrod (release)"
cargo build --release --quiet
nephrod=$root/target/release/nephrod

export nnUNet_raw=$work/nnUNet_raw nnUNet_preprocessed=$work/nnUNet_preprocessed
export nnUNet_results=$work/nnUNet_results nnUNet_compile=f nnUNet_def_n_proc=$threads
export OMP_NUM_THREADS=$threads  # nnUNet_n_proc_DA only for training: 0 breaks the planner
export NEPHROD_NNUNET_EPOCHS=$epochs
if [ "$resume" = 1 ]; then
  step "resuming in $work"
  t_data=$(jq -r .t_data "$work/times.json"); t_prep=$(jq -r .t_prep "$work/times.json")
  t0=$(jq -r .t0 "$work/times.json")
else
  rm -rf "$work"
  mkdir -p "$work"
  mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"

  step "phantom training set: $cases cases, seed $seed"
  "$nephrod" phantom --out "$nnUNet_raw/$dataset" --cases "$cases" --seed "$seed" --format nnunet \
    >"$work/phantom.log"
  t_data=$(date +%s)

  step "nnU-Net fingerprint + plans"
  "$venv_bin/nnUNetv2_extract_fingerprint" -d 501 -np "$threads" --verify_dataset_integrity \
    >"$work/fingerprint.log" 2>&1
  "$venv_bin/nnUNetv2_plan_experiment" -d 501 >"$work/plan.log" 2>&1
  # shellcheck disable=SC2086
  "$py" tools/train/demo_plans.py "$nnUNet_preprocessed/$dataset" --patch $patch \
    --base-features "$base" --max-features "$maxf" --batch "$batch" | tee "$work/demo_plans.log"
  step "nnUNetv2_preprocess"
  "$venv_bin/nnUNetv2_preprocess" -d 501 -plans_name nephrodDemoPlans -c 3d_fullres -np "$threads" \
    >"$work/preprocess.log" 2>&1
  t_prep=$(date +%s)
  echo "{\"t0\": $t0, \"t_data\": $t_data, \"t_prep\": $t_prep}" >"$work/times.json"
fi

pretrained=()
init_record=None
if [ -n "${INIT_FROM:-}" ] && [ "$resume" != 1 ]; then
  step "warm start from $INIT_FROM (fold $fold)"
  "$py" tools/train/bundle_to_checkpoint.py "$INIT_FROM" "$fold" "$work/init_checkpoint.pth"
  pretrained=(-pretrained_weights "$work/init_checkpoint.pth")
  cp "$INIT_FROM/training.json" "$work/init_training.json"
  init_record="json.load(open('$work/init_training.json'))"
fi
continue_flag=()
[ "$resume" = 1 ] && continue_flag=(--c)
[ -f "$work/init_training.json" ] && init_record="json.load(open('$work/init_training.json'))"
step "nnUNetv2_train 501 3d_fullres $fold -p nephrodDemoPlans -tr $trainer -device cpu ${pretrained[*]}"
nnUNet_n_proc_DA=${DA_PROCS:-0} \
  "$venv_bin/nnUNetv2_train" 501 3d_fullres "$fold" -p nephrodDemoPlans -tr "$trainer" -device cpu \
  "${pretrained[@]}" "${continue_flag[@]}" >>"$work/train.log" 2>&1 || { tail -n 40 "$work/train.log" >&2; exit 1; }
t_train=$(date +%s)
model_dir=$nnUNet_results/$dataset/${trainer}__nephrodDemoPlans__3d_fullres
grep -E "Epoch [0-9]+$|train_loss|val_loss|Pseudo dice|Epoch time" "$work/train.log" | tail -n 12 || true

step "nephrod models import-nnunet"
rm -rf "$out"
"$nephrod" models import-nnunet "$model_dir" --config 3d_fullres --folds "$fold" --no-postprocessing \
  --allow-custom-trainer --out "$out"
"$nephrod" models verify "$out"
cp "$model_dir/fold_$fold/validation/summary.json" "$out/nnunet_validation_summary.json" 2>/dev/null || true

"$py" - "$out" "$work" "$model_dir" "$fold" <<PY
import json, sys, importlib.metadata as md, platform, os, re
out, work, model_dir, fold = sys.argv[1:5]

def epoch_log(path):
    """Per-epoch train/val loss and pseudo Dice as nnU-Net's trainer logged them."""
    epochs, cur = [], None
    for line in open(path, errors="replace"):
        text = line.split(": ", 1)[-1].strip()
        if text.startswith("Epoch ") and text[6:].isdigit():
            cur = {"epoch": int(text[6:])}
            epochs.append(cur)
        elif cur is not None and text.startswith(("train_loss", "val_loss")):
            key, val = text.split(None, 1)
            cur[key] = round(float(val), 4)
        elif cur is not None and text.startswith("Pseudo dice"):
            # "[0.87, 0.0]" or, with numpy 2, "[np.float32(0.87), np.float32(0.0)]"
            cur["pseudo_dice"] = [round(float(v), 4) for v in re.findall(r"\d+\.\d+(?:e-?\d+)?", text)]
        elif cur is not None and text.startswith("Epoch time"):
            cur["seconds"] = round(float(text.split()[2]), 1)
    # A resumed run (RESUME=1) appends to the log and repeats the interrupted epoch: keep the last.
    last = {e["epoch"]: e for e in epochs}
    return [last[k] for k in sorted(last)]
plans = json.load(open(f"{model_dir}/plans.json"))
c = plans["configurations"]["3d_fullres"]
rec = {
  "what": "nnU-Net v2 3d_fullres demo model trained on nephrod phantoms (CPU)",
  "dataset": {"generator": "nephrod phantom --format nnunet", "cases": $cases, "seed": $seed,
              "training_images": len(os.listdir(f"{work}/nnUNet_raw/$dataset/imagesTr"))},
  "trainer": "$trainer", "num_epochs": $epochs, "resumed": $resume == 1, "fold": int(fold), "plans": "nephrodDemoPlans",
  "spacing_zyx_mm": c["spacing"], "patch_size": c["patch_size"], "batch_size": c["batch_size"],
  "features_per_stage": c["architecture"]["arch_kwargs"]["features_per_stage"],
  "seconds": {"phantom": $t_data - $t0, "plan_and_preprocess": $t_prep - $t_data,
              "train_and_validate": $t_train - $t_prep},
  "torch_threads": $threads, "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}",
  "versions": {k: md.version(k) for k in ("nnunetv2", "torch", "numpy")},
  "warm_started_from": $init_record,
  "epochs": epoch_log(f"{work}/train.log"),
}
json.dump(rec, open(f"{out}/training.json", "w"), indent=2)
print(json.dumps(rec, indent=2))
PY
step "done: $out"
