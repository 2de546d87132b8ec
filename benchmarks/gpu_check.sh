#!/usr/bin/env bash
# GPU smoke check (< 8 min on one GPU): phantom data -> 300 training iterations on CUDA (bf16/fp16
# autocast) -> predict a median-sized case (512x512x114, 0.83x0.83x3 mm) with the trained model and the
# bundled one. Prints training it/s and prediction s/case. Usage: bash benchmarks/gpu_check.sh [ITERATIONS]
set -euo pipefail
ITER="${1:-300}"
WORK="${OUT:-/tmp}/lnq-gpu-check"
rm -rf "$WORK" && mkdir -p "$WORK"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print('GPU:', torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv || true

t0=$(date +%s)
lnq-napari phantom "$WORK/train" --cases 6 --seed 1
echo "phantom: $(( $(date +%s) - t0 )) s"

lnq-napari train --data "$WORK/train" --out "$WORK/model" --iterations "$ITER" --device cuda
python - "$WORK/model" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(f"{sys.argv[1]}/train_log.csv")))
first, last = rows[0], rows[-1]
its = (int(last["iteration"]) - int(first["iteration"])) / max(float(last["seconds"]) - float(first["seconds"]), 1e-9)
print(f"training: {last['iteration']} iterations, {its:.2f} it/s (after the first log line), final loss {last['loss']}")
PY

python - "$WORK/model" <<'PY'
import statistics, sys, time
import torch
from lnq_napari.inference import Predictor
from lnq_napari.phantom import make_case
ct = make_case(11, shape=(114, 512, 512), spacing=(0.83, 0.83, 3.0)).ct
for name in (sys.argv[1], None):
    p = Predictor(name, device="cuda")
    p.predict(ct)  # warm-up (cuDNN autotune, allocator)
    times = []
    for _ in range(3):
        torch.cuda.synchronize(); t = time.perf_counter()
        pred = p.predict(ct)
        torch.cuda.synchronize(); times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"predict {name or 'bundled'}: median {statistics.median(times):.2f} s/case "
          f"({', '.join(f'{t:.2f}' for t in times)}), GPU peak {peak:.2f} GiB, mask voxels {int(pred.mask.array.sum())}")
PY
echo "total: $(( $(date +%s) - t0 )) s"
