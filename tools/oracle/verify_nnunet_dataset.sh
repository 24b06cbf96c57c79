#!/usr/bin/env bash
# Oracle (never run by CI): checks that `nephrod phantom --format nnunet` writes a dataset that
# nnU-Net v2 accepts, and prints what nnU-Net plans for it.
#
#   bash tools/oracle/verify_nnunet_dataset.sh
#
# 1. Creates/updates the venv .cache/nnunet-venv from tools/oracle/requirements-nnunet.txt
#    (nnunetv2==2.8.1 + torch; separate from .cache/venv, which CI uses). The CPU-only torch wheel
#    is used when the PyTorch CPU index answers, otherwise the pinned PyPI wheel (CUDA build,
#    ~6.3 GB, runs fine on the CPU). Re-installs only when the requirements file changes.
# 2. Builds nephrod from the current work tree (cargo build --release --offline) and writes a
#    phantom dataset as $nnUNet_raw/Dataset501_NephrodPhantom in a temporary folder.
# 3. Runs nnUNetv2_plan_and_preprocess -d 501 -c 3d_fullres --verify_dataset_integrity; fails on
#    any nnU-Net error and also on its "mismatch" warnings (affine/origin/direction between image
#    and label), which nnU-Net itself only prints.
# 4. Prints a summary of nnUNetPlans.json (3d_fullres) and dataset_fingerprint.json.
#
# Environment (all optional):
#   CASES=6 SEED=1            phantom cases (each phase becomes one nnU-Net training case) and seed
#   PHANTOM_ARGS=""           extra arguments for `nephrod phantom` (e.g. "--all-phases")
#   DATASET_DIR=DIR           verify a copy of an existing nnU-Net raw dataset folder instead of
#                             generating one (skips the nephrod build; CASES/SEED unused)
#   NNUNET_WORK=DIR           keep nnUNet_raw/_preprocessed/_results under DIR (default: a temp
#                             folder, deleted on exit)
#   TORCH_SOURCE=auto|cpu|pypi  where torch comes from (default auto: CPU index if reachable)
#   TORCH_CPU_INDEX=URL       the PyTorch CPU wheel index
#   NPROC=2                   nnUNet_def_n_proc and -npfp (fingerprint/verification processes)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
venv=$root/.cache/nnunet-venv
py=$venv/bin/python
cases=${CASES:-6}
seed=${SEED:-1}
nproc=${NPROC:-2}
dataset_id=501
dataset_name=Dataset${dataset_id}_NephrodPhantom
t0=$(date +%s)

die() { echo "verify_nnunet_dataset: FAIL: $*" >&2; exit 1; }
step() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

# ---------------------------------------------------------------- 1. venv
step "venv (tools/nnunet_venv.sh)"
py=$(bash "$root/tools/nnunet_venv.sh" | tail -n 1)
"$py" - <<'PY'
import importlib.metadata as md, torch
print(f"   nnunetv2 {md.version('nnunetv2')}, torch {torch.__version__} "
      f"(CUDA build: {torch.version.cuda or 'none'}, CUDA available: {torch.cuda.is_available()}), "
      f"numpy {md.version('numpy')}, SimpleITK {md.version('SimpleITK')}, nibabel {md.version('nibabel')}")
PY

# ---------------------------------------------------------------- 2. phantom dataset
if [ -n "${NNUNET_WORK:-}" ]; then
  work=$NNUNET_WORK
  rm -rf "$work/nnUNet_raw/$dataset_name" "$work/nnUNet_preprocessed/$dataset_name"
  mkdir -p "$work"
else
  work=$(mktemp -d -t nephrod-nnunet.XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
export nnUNet_raw=$work/nnUNet_raw
export nnUNet_preprocessed=$work/nnUNet_preprocessed
export nnUNet_results=$work/nnUNet_results
export nnUNet_def_n_proc=$nproc
export nnUNet_compile=f
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
raw=$nnUNet_raw/$dataset_name

if [ -n "${DATASET_DIR:-}" ]; then
  step "copying $DATASET_DIR -> $raw"
  [ -f "$DATASET_DIR/dataset.json" ] || die "$DATASET_DIR has no dataset.json"
  cp -r "$DATASET_DIR" "$raw"
else
  step "building nephrod"
  cargo build --release --offline --quiet
  nephrod=$root/target/release/nephrod
  echo "   $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' + uncommitted changes in src/')"
  step "nephrod phantom --cases $cases --seed $seed --format nnunet ${PHANTOM_ARGS:-} -> $raw"
  # shellcheck disable=SC2086
  "$nephrod" phantom --out "$raw" --cases "$cases" --seed "$seed" --format nnunet ${PHANTOM_ARGS:-} \
    >"$work/phantom.log" 2>&1 || { cat "$work/phantom.log" >&2; die "nephrod phantom failed"; }
fi
n_images=$(find "$raw/imagesTr" -name '*_0000.nii.gz' | wc -l)
n_labels=$(find "$raw/labelsTr" -name '*.nii.gz' | wc -l)
echo "   $n_images images, $n_labels labels"

# ---------------------------------------------------------------- 3. nnU-Net
step "nnUNetv2_plan_and_preprocess -d $dataset_id -c 3d_fullres --verify_dataset_integrity -np 1 -npfp $nproc"
log=$work/plan_and_preprocess.log
set +e
"$venv/bin/nnUNetv2_plan_and_preprocess" -d "$dataset_id" -c 3d_fullres --verify_dataset_integrity \
  -np 1 -npfp "$nproc" --no_pbar >"$log" 2>&1
rc=$?
set -e
if [ $rc -ne 0 ]; then
  echo "---- nnU-Net errors/warnings" >&2
  grep -A8 -E '^(Error|Warning): ' "$log" >&2 || true
  echo "---- last 25 lines of the nnU-Net log" >&2
  tail -n 25 "$log" >&2
  die "nnUNetv2_plan_and_preprocess exited $rc (dataset integrity or planning failed; see above)"
fi
if grep -q -E '^(Error|Warning): ' "$log"; then
  echo "---- nnU-Net errors/warnings" >&2
  grep -A8 -E '^(Error|Warning): ' "$log" >&2
  die "nnU-Net reported errors or image/label geometry mismatches (see above)"
fi
grep -q 'verify_dataset_integrity Done' "$log" || die "nnU-Net did not report a finished integrity check"
echo "   verify_dataset_integrity: OK (no errors, no mismatch warnings)"

pp=$nnUNet_preprocessed/$dataset_name
for f in nnUNetPlans.json dataset_fingerprint.json dataset.json; do
  [ -f "$pp/$f" ] || die "missing $pp/$f"
done
n_pp=$(find "$pp/nnUNetPlans_3d_fullres" -name '*.pkl' 2>/dev/null | wc -l)
[ "$n_pp" -eq "$n_images" ] || die "preprocessed $n_pp cases, expected $n_images"

# ---------------------------------------------------------------- 4. summary
step "summary"
"$py" - "$raw" "$pp" <<'PY'
import json, sys
from pathlib import Path
raw, pp = Path(sys.argv[1]), Path(sys.argv[2])
ds = json.loads((raw / "dataset.json").read_text())
plans = json.loads((pp / "nnUNetPlans.json").read_text())
fp = json.loads((pp / "dataset_fingerprint.json").read_text())
c = plans["configurations"]["3d_fullres"]
arch = c["architecture"]["arch_kwargs"]
fmt = lambda v: "[" + ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in v) + "]"
print(f"training cases           : {ds['numTraining']} (dataset.json), "
      f"{len(list((raw / 'imagesTr').glob('*_0000.nii.gz')))} in imagesTr")
print(f"labels                   : {ds['labels']}")
print(f"3d_fullres spacing (zyx) : {fmt(c['spacing'])} mm")
print(f"3d_fullres patch size    : {fmt(c['patch_size'])}")
print(f"3d_fullres median shape  : {fmt(c['median_image_size_in_voxels'])}")
print(f"3d_fullres batch size    : {c['batch_size']}, stages {arch['n_stages']}, "
      f"features {arch['features_per_stage']}")
print(f"normalisation            : {c['normalization_schemes']}, use_mask_for_norm {c['use_mask_for_norm']}")
print(f"transpose fwd/bwd        : {plans['transpose_forward']} / {plans['transpose_backward']}")
print(f"original median spacing  : {fmt(plans['original_median_spacing_after_transp'])} mm, "
      f"median shape {fmt(plans['original_median_shape_after_transp'])}")
fg = fp["foreground_intensity_properties_per_channel"]["0"]
print("foreground intensity (channel 0 CT, HU):")
for k in ("mean", "std", "percentile_00_5", "percentile_99_5", "median", "min", "max"):
    print(f"  {k:16s}: {fg[k]:.4f}")
PY
step "PASS: nnU-Net v2 accepts the nephrod phantom dataset"
