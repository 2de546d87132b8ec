#!/usr/bin/env bash
# Issue 12's GPU figure in one device call: the adaptation loops of bench_adaptation.py on CUDA.
#   1. phantom data of every loop (each folder drawn in its own processes, all at once; the same seeds and
#      folders as the CPU runs: pools 1000 + seed, test sets 2000).
#   2. $LOOPS in parallel, one process each ($THREADS CPU threads), sharing the GPU: 3 rounds x 5
#      click-corrected cases, uncertainty ranking, fine-tune through api.finetune on CUDA (bf16 autocast),
#      both test sets scored after each round. Rows are saved after each round (partial-loop-*.json).
#   3. at $BUDGET_S (or when all loops end) whatever is still running is stopped; $OUT gets summary.txt
#      (per round: verdict, the candidate's held-out figures, whether they rose, fine-tune and round
#      seconds; per loop: the user's model against the frozen one and the issue's targets),
#      adapt_results.tgz (the loops' JSON, registries and logs) and run.log.
#   4. one fine-tune alone on the machine ($ALONE workspaces, as each loop left it: api.finetune with the
#      defaults on a copy, all CPU threads), its wall and training seconds added to summary.txt.
# Session 20 (one H200, 16 cores) ran steps 1-3 with BUDGET_S=470 and step 4 as a second call.
# A LOOPS entry is SITE:SEED or SITE:SEED:SETTING (a finetune --set, e.g. folds=2); every loop also sets
# mine_negatives=true (the default; named so the files match the CPU runs').
#
# Usage (device call, command "bash benchmarks/gpu_adaptation.sh", carry [".whl"], timeout_s 600). The H200
# image lacks SimpleITK, pynrrd and slicerio: fetch their wheels into .whl first (see gpu_styles.sh).
# Dry run on a CPU (tiny sizes; proves the plumbing, its figures mean nothing):
#   DEVICE=cpu SHAPE=40,128,128 LOOPS="lowdose:0 nodes:0:folds=2" ITERATIONS=4 BUDGET_S=1500 \
#     OUT=/tmp/adapt-dry R=/tmp/adapt-dry-work nice -n 15 bash benchmarks/gpu_adaptation.sh
set -uo pipefail
OUT="${OUT:-/tmp/lnq-adapt-out}"
R="${R:-/tmp/lnq-adapt}"             # the bench's --out (data, cache, workspaces, loop JSON)
DEVICE="${DEVICE:-cuda}" THREADS="${THREADS:-2}" BUDGET_S="${BUDGET_S:-420}"
ALONE="${ALONE:-lowdose-s1 nodes-s2}"  # step 4's loop workspaces (SITE-sSEED, default settings)
SHAPE="${SHAPE:-}" ITERATIONS="${ITERATIONS:-}"  # empty: full-size phantoms, finetune's iterations
LOOPS="${LOOPS:-lowdose:0 lowdose:1 nodes:0 nodes:2 noncontrast:0 habitus:0 lowdose:1:folds=2 nodes:0:folds=2}"
PY="${PY:-python3}"
mkdir -p "$OUT" "$R/logs"
exec > >(tee "$OUT/run.log") 2>&1
T0=$(date +%s)
stamp() { echo "[$(($(date +%s) - T0)) s] $*"; }

if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
$PY -c "import SimpleITK, nrrd, torch, lnq_napari.api; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
nproc
EXTRA=()
[ -n "$SHAPE" ] && EXTRA+=(--shape "$SHAPE")
[ -n "$ITERATIONS" ] && EXTRA+=(--iterations "$ITERATIONS")

# 1. data: every folder at once, each in as many processes as it has cases (a plain `wait` would also wait
# for the tee above)
DATA=()
folders() {  # site kind n seed
  echo "default test 6 0"
  for loop in $LOOPS; do
    IFS=: read -r site seed _ <<<"$loop"
    echo "$site test 6 0"; echo "$site pool 15 $seed"
  done | sort -u
}
while read -r site kind n seed; do
  $PY -c "
import sys; sys.path.insert(0, 'benchmarks')
from pathlib import Path
from bench_adaptation import site_data
shape = tuple(int(v) for v in '$SHAPE'.split(',')) if '$SHAPE' else None
site_data(Path('$R'), '$site', '$kind', $n, $seed, shape, workers=$n)" >"$R/logs/data-$site-$kind-$seed.log" 2>&1 &
  DATA+=($!)
done < <(folders)
wait "${DATA[@]}"
stamp "data: $(find "$R/data" -name '*-ct.nrrd' | wc -l) cases ($(du -sh "$R/data" | cut -f1))"

# 2. the loops, side by side on the GPU
PIDS=()
for loop in $LOOPS; do
  IFS=: read -r site seed setting <<<"$loop"
  sets=(--set mine_negatives=true)
  [ -n "$setting" ] && sets+=(--set "$setting")
  OMP_NUM_THREADS=$THREADS $PY benchmarks/bench_adaptation.py --mode loop --sites "$site" --seeds "$seed" \
    --strategies uncertainty --threads "$THREADS" --device "$DEVICE" "${sets[@]}" "${EXTRA[@]}" --out "$R" \
    >"$R/logs/loop-$site-$seed${setting:+-$setting}.log" 2>&1 &
  PIDS+=($!)
done
stamp "${#PIDS[@]} loops started"
alive() { for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done; return 1; }
while [ $(($(date +%s) - T0)) -lt "$BUDGET_S" ] && alive; do
  sleep 5
  [ $(( ($(date +%s) - T0) % 60 )) -lt 5 ] && stamp "$(ls "$R"/partial-loop-*.json "$R"/loop-*.json 2>/dev/null | wc -l) loops with rows; $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)"
done
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null && stamp "stopped loop pid $pid at the budget"; done
stamp "loops ended"

# 3. summary and results
$PY - "$R" >"$OUT/summary.txt" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from _adapt_targets import judge_rounds, meets_targets
from bench_adaptation import settings_label

out = Path(sys.argv[1])
for path in sorted(out.glob("loop-*.json")) + sorted(out.glob("partial-loop-*.json")):
    run = json.loads(path.read_text())
    frozen = json.loads((out / f"frozen-{run['site']}.json").read_text())
    rows = judge_rounds(run["rows"])
    done = "" if path.name.startswith("loop-") else f" (cut off after round {rows[-1]['round']})"
    print(f"{run['site']} pool {run['seed']} {settings_label(run['settings'].get('set'))}{done}, "
          f"{run['seconds']:.0f} s: frozen Dice {frozen['dice_median']:.3f} recall {frozen['recall']:.3f} "
          f"FP {frozen['fp_per_case']:.2f}, default {frozen['default_dice_median']:.3f}")
    for r in rows[1:]:
        print(f"  round {r['round']}: {'activated' if r['activated'] else 'refused'}, candidate Dice "
              f"{r['cand_dice_median']:.3f} recall {r['cand_recall']:.3f} FP {r['cand_fp_per_case']:.2f} "
              f"(rose {r['rose']}, rule right {r['right']}); fine-tune {r['finetune_s']:.0f} s "
              f"(training {r['train_s']:.0f} s), round {r['round_s']:.0f} s")
    last = rows[-1]
    print(f"  user's model: Dice {last['dice_median']:.3f} recall {last['recall']:.3f} "
          f"FP {last['fp_per_case']:.2f}, default {last['default_dice_median']:.3f} "
          f"({100 * (last['default_dice_median'] - frozen['default_dice_median']):+.1f}); targets "
          f"{'met' if meets_targets(last, frozen) else 'not met'}; rule right in "
          f"{sum(r['right'] for r in rows[1:])} of {len(rows) - 1}")
PY

# 4. one fine-tune alone
for ws in $ALONE; do
  $PY - "$R/work/$ws-uncertainty-clicks-mine_negatives=true" "$DEVICE" "$ITERATIONS" >>"$OUT/summary.txt" 2>>"$R/logs/alone.log" <<'PY'
import os, shutil, sys, time
import torch
from lnq_napari import api
from lnq_napari.workspace import Workspace
source, device, iterations = sys.argv[1:]
torch.set_num_threads(os.cpu_count() or 1)
copy = source + ".alone"
shutil.rmtree(copy, ignore_errors=True)
shutil.copytree(source, copy)
t = time.time()
result = api.finetune(copy, device=device, iterations=int(iterations) if iterations else None)
print(f"alone: {os.path.basename(source)}, {len(Workspace.open(copy).corrected_cases())} corrected cases: "
      f"fine-tune {time.time() - t:.1f} s wall, training {result.train_seconds} s, "
      f"{'activated' if result.activated else 'refused'}")
PY
done
cat "$OUT/summary.txt"
(cd "$R" && find . -maxdepth 1 -name '*.json' >/tmp/adapt-files && find work -name registry.json >>/tmp/adapt-files \
  && echo logs >>/tmp/adapt-files && tar czf "$OUT/adapt_results.tgz" -T /tmp/adapt-files)
stamp "done"
