#!/usr/bin/env bash
# One-GPU check of the DRUwAS harness at BraTS size; about 10 minutes on one recent GPU.
#
#   bash nnunetv2_druwas/benchmarks/gpu_check.sh [OUT_DIR]
#
# Steps (each under its own time limit; a failed step is reported and the next one still runs):
#   complexity_b2, complexity_b4  python -m nnunetv2_druwas.benchmarks.complexity --device cuda at
#                  128^3, batch 2 and 4, under nnU-Net's autocast: step time and max memory of every
#                  DRUwAS variant (with and without DRUWAS checkpointing) against nnU-Net's networks;
#                  batch 2 also times nnU-Net's predictor on a 240 x 240 x 155 case, with mirroring
#   synth, convert, preprocess     5 synthetic 240 x 240 x 155 cases -> convert-brats -> nnU-Net's plan
#   train          nnUNetv2_train -device cuda, nnUNetTrainerDRUwAS, 2 epochs of 50 iterations
#   train_compile  the same trainer with nnUNet_compile=1 and DRUWAS_CHECKPOINTING=1, 1 epoch of 20
#   predict        nnUNetv2_predict -device cuda of one full-size case with the trained fold
# Everything goes to OUT_DIR (default gpu_check_<date>): one log per step, summary.tsv (status,
# seconds, the GPU's peak memory.used from nvidia-smi during the step), gpu_check.log (all output).
# The terminal shows each step's outcome (and the end of its log if it failed), the training logs'
# epoch lines, the complexity tables and the summary.
# The exit status is 0 only if every step succeeded.
#
# Knobs (environment): DEVICE (cuda), CASES (5), SHAPE ("240 240 155"), EPOCHS (2), ITERS (50),
# COMPILE_ITERS (20), NP (8 worker processes), SKIP (step names to leave out). A dry run on a CPU:
#   DEVICE=cpu SHAPE="48 48 40" EPOCHS=1 ITERS=2 COMPILE_ITERS=1 NP=2 SKIP="complexity_b2 complexity_b4" \
#     bash nnunetv2_druwas/benchmarks/gpu_check.sh /tmp/gpu_check_dry
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${1:-gpu_check_$(date +%Y%m%d_%H%M%S)}
DEVICE=${DEVICE:-cuda}
CASES=${CASES:-5}
SHAPE=${SHAPE:-240 240 155}
EPOCHS=${EPOCHS:-2}
ITERS=${ITERS:-50}
COMPILE_ITERS=${COMPILE_ITERS:-20}
NP=${NP:-8}
SKIP=${SKIP:-}
DATASET_ID=500
TRAINER=nnUNetTrainerDRUwAS

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -e "$OUT/summary.tsv" ]; then
    echo "error: $OUT already holds a gpu_check run (summary.tsv); give another OUT_DIR" >&2
    exit 2
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export nnUNet_extTrainer="$REPO/trainers"
export nnUNet_raw="$OUT/nnunet/raw" nnUNet_preprocessed="$OUT/nnunet/preprocessed"
export nnUNet_results="$OUT/nnunet/results"
export nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-$NP} nnUNet_def_n_proc=${nnUNet_def_n_proc:-$NP}
mkdir -p "$nnUNet_raw" "$nnUNet_preprocessed" "$nnUNet_results"
LOG="$OUT/gpu_check.log"
SUMMARY="$OUT/summary.tsv"
printf 'step\tstatus\tseconds\tgpu_peak_memory_used_mib\tlog\n' > "$SUMMARY"
FAILED=0

say() { echo "$*" | tee -a "$LOG"; }

# step NAME LIMIT_S [VAR=value ...] COMMAND [ARG ...]: run COMMAND under `timeout` with its output in
# NAME.log, record the outcome in summary.tsv, never stop the script.
step() {
    local name=$1 limit=$2
    shift 2
    if [[ " $SKIP " == *" $name "* ]]; then
        say "=== $name: skipped (SKIP)"
        printf '%s\tskipped\t0\t\t\n' "$name" >> "$SUMMARY"
        return 0
    fi
    local log="$OUT/$name.log" memory="$OUT/$name.nvidia_smi.csv" sampler="" rc=0 start=$SECONDS
    say "=== $name (limit ${limit}s): $*"
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$memory" 2>/dev/null &
        sampler=$!
    fi
    timeout --kill-after=30 "$limit" env "$@" > "$log" 2>&1 || rc=$?
    if [ -n "$sampler" ]; then
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
    fi
    local seconds=$((SECONDS - start)) status=ok peak=""
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status="TIMEOUT after ${limit}s"; elif [ "$rc" -ne 0 ]; then status="FAILED (exit $rc)"; fi
    [ "$status" = ok ] || FAILED=$((FAILED + 1))
    if [ -s "$memory" ]; then peak=$(awk -F, 'NR == 1 || $1 + 0 > max { max = $1 + 0 } END { print max }' "$memory"); fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$seconds" "$peak" "$log" >> "$SUMMARY"
    if [ "$status" = ok ]; then tail -n 30 "$log" >> "$LOG"; else tail -n 30 "$log" | tee -a "$LOG"; fi
    say "--- $name: $status, ${seconds}s${peak:+, GPU memory.used peak ${peak} MiB}"
}

say "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), repository $REPO, output $OUT"
say "device=$DEVICE cases=$CASES shape=$SHAPE epochs=$EPOCHS iterations=$ITERS compile_iterations=$COMPILE_ITERS"
step environment 60 python -c "
import torch, nnunetv2, platform
from importlib.metadata import version
print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'nnunetv2', version('nnunetv2'))
print('cuda available:', torch.cuda.is_available(),
      *(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
"
if command -v nvidia-smi > /dev/null; then nvidia-smi | tee -a "$LOG" > "$OUT/nvidia_smi.txt" || true; fi

step complexity_b2 300 python -m nnunetv2_druwas.benchmarks.complexity --device "$DEVICE" --batch 2 \
    --out "$OUT/complexity_b2" --inference-models full nnunet_default nnunet_resenc_m --mirroring
step complexity_b4 240 python -m nnunetv2_druwas.benchmarks.complexity --device "$DEVICE" --batch 4 \
    --out "$OUT/complexity_b4" --inference-models

# shellcheck disable=SC2086  # SHAPE is three numbers
step synth 180 python -m nnunetv2_druwas synth "$OUT/synth" --cases "$CASES" --shape $SHAPE -np "$NP"
step convert 180 python -m nnunetv2_druwas convert-brats "$OUT/synth" --year 2020 -d "$DATASET_ID" -np "$NP"
step preprocess 300 nnUNetv2_plan_and_preprocess -d "$DATASET_ID" -c 3d_fullres -np "$NP" -npfp "$NP"
step train 420 nnUNet_compile=0 DRUWAS_EPOCHS="$EPOCHS" DRUWAS_ITERS="$ITERS" \
    nnUNetv2_train "$DATASET_ID" 3d_fullres 0 -tr "$TRAINER" -device "$DEVICE"
step train_compile 420 nnUNet_results="$OUT/nnunet/results_compile" nnUNet_compile=1 DRUWAS_CHECKPOINTING=1 \
    DRUWAS_EPOCHS=1 DRUWAS_ITERS="$COMPILE_ITERS" \
    nnUNetv2_train "$DATASET_ID" 3d_fullres 0 -tr "$TRAINER" -device "$DEVICE"

mkdir -p "$OUT/predict_in"
first_case=$(find "$nnUNet_raw" -path '*/imagesTr/*_0000.nii.gz' 2>/dev/null | sort | head -n 1 || true)
if [ -n "$first_case" ]; then cp "${first_case%_0000.nii.gz}"_000[0-3].nii.gz "$OUT/predict_in/" || true; fi
step predict 180 nnUNetv2_predict -i "$OUT/predict_in" -o "$OUT/predict_out" -d "$DATASET_ID" -c 3d_fullres \
    -tr "$TRAINER" -f 0 -device "$DEVICE"

# what the training logs say: epoch times and the pseudo Dice
for log in "$nnUNet_results"/*/*/fold_0/training_log_*.txt "$OUT/nnunet/results_compile"/*/*/fold_0/training_log_*.txt; do
    [ -e "$log" ] || continue
    say "--- $log"
    grep -E "Epoch time|Pseudo dice|batch size|checkpointing|torch.compile|Epoch [0-9]+ *$" "$log" | tee -a "$LOG" || true
done
for table in "$OUT"/complexity_b*/complexity.md; do
    if [ -e "$table" ]; then say "--- $table"; tee -a "$LOG" < "$table"; fi
done
say "=== summary ($SUMMARY)"
{ column -t -s $'\t' "$SUMMARY" 2>/dev/null || cat "$SUMMARY"; } | tee -a "$LOG"
say "gpu_check finished: $FAILED step(s) failed"
[ "$FAILED" -eq 0 ]
