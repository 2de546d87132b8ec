#!/usr/bin/env bash
# One GPU session (~9 min on one H100): gpu_check.sh, then the bundled model and the naive baseline trained
# side by side on 60 phantom cases (partial labels), then both scored on 20 held-out cases.
# Usage: bash benchmarks/gpu_session.sh [TRAIN_MINUTES]; $OUT (or /tmp/lnq-gpu) gets models.tgz (the two
# model folders) and results.tgz (logs and accuracy JSON).
set -uo pipefail
MIN="${1:-4}"
OUT="${OUT:-/tmp/lnq-gpu}"
W=/tmp/lnq-v3
L="$W/logs"
DEVICE="${DEVICE:-cuda}" NTRAIN="${NTRAIN:-60}" NTEST="${NTEST:-20}"  # smaller for a dry run on a CPU
mkdir -p "$OUT" "$L"
T0=$(date +%s)
stamp() { echo "[$(($(date +%s) - T0)) s] $*"; }

( nice -n 19 python -c "
from lnq_napari.phantom import write_dataset
write_dataset('$W/train', $NTRAIN, seed=11, workers=14)
write_dataset('$W/test', $NTEST, seed=22, workers=14)" >"$L/phantom.log" 2>&1 ) &
DATA=$!
OUT="$W/gpu-check" timeout 150 bash benchmarks/gpu_check.sh 200 >"$L/gpu_check.log" 2>&1
stamp "gpu_check rc=$?"; grep -E "GPU:|phantom:|training:|predict|total" "$L/gpu_check.log"
wait "$DATA" || { stamp "phantom failed"; tail "$L/phantom.log"; exit 1; }
stamp "data ready: $(ls "$W"/train/*-ct.nrrd | wc -l) train, $(ls "$W"/test/*-ct.nrrd | wc -l) test"

N=$(python benchmarks/train_bundled.py --probe "$MIN" --share 2 --device "$DEVICE")
stamp "iterations $N"
for kind in ours naive; do
  flag=""; [ "$kind" = naive ] && flag="--naive"
  python benchmarks/train_bundled.py --data "$W/train" --out "$W/$kind" --device "$DEVICE" --iterations "$N" \
    --stop-after "$(python -c "print($MIN * 1.1 + 1)")" --workers 7 $flag >"$L/train_$kind.log" 2>&1 &
done
wait
stamp "trained"; tail -n 2 "$L"/train_*.log
tar czf "$OUT/models.tgz" -C "$W" --exclude train_state ours naive && stamp "models saved"

timeout 120 python benchmarks/bench_accuracy.py --data "$W/test" --model "ours=$W/ours" --device "$DEVICE" \
  --thresholds 0.4,0.5,0.6 --min-mm3 300 --max-hu 100,none --region-mm none,20 --workers 10 \
  --cache "$W/cache" --json "$L/acc_ours.json" >"$OUT/acc_ours.log" 2>&1 &
timeout 120 python benchmarks/bench_accuracy.py --data "$W/test" --model "naive=$W/naive" --device "$DEVICE" \
  --workers 4 --cache "$W/cache" --json "$L/acc_naive.json" >"$OUT/acc_naive.log" 2>&1 &
wait
stamp "evaluated"
grep -h "Dice median" "$OUT"/acc_*.log
tar czf "$OUT/results.tgz" -C "$W" logs
