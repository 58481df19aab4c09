#!/usr/bin/env bash
# The GPU checks, for a machine with CUDA; under 5 minutes; prints one table at the end.
#
#   1. train_speed at the seed's configuration (AlexNet_SPP(20), 227 px, batch 128, VOC-sized JPEGs) on
#      CUDA: the engine (bf16 autocast + channels_last, its defaults there) against the seed's loop
#      (fp32, as the article wrote it), JPEG against in-memory tensors;
#   2. with 2 or more GPUs, a 2-rank NCCL run (spp-gui train --nproc 2) that must finish;
#   3. torch.cuda.set_sync_debug_mode("warn") over 50 training steps: the engine's loop must not
#      make the host wait for the GPU between its log points (one .tolist() at step 50 is the
#      log point itself); each sync found is listed with the line that made it.
#
# Without CUDA it says so and exits 0. Usage: bash benchmarks/gpu_check.sh  (PYTHON=... to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check"
    exit 0
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
WORKERS=$("$PY" -c "import os; print(max(1, min(8, (os.cpu_count() or 2) - 2)))")
start=$(date +%s)
status=0

echo "== 1/3 train_speed, seed configuration, CUDA ($GPUS GPU(s), $WORKERS loader workers)" >&2
(cd benchmarks && timeout 170 "../$PY" train_speed.py --rounds 3 --steps 12 --workers "$WORKERS") \
    >"$OUT/speed.log" 2>&1 || { echo "train_speed failed or timed out (exit $?)" >&2; status=1; }
grep -v '^BENCH' "$OUT/speed.log" | tail -n 12 >&2

echo "== 2/3 NCCL, 2 ranks" >&2
if [ "$GPUS" -ge 2 ]; then
    "$PY" - "$OUT" <<'PYEOF' >"$OUT/nccl.log" 2>&1
import sys
from pathlib import Path
from spp_gui.training.config import RunConfig
from spp_gui.training.demo_data import TARGET_CLASSES, write_split
root = Path(sys.argv[1])
write_split(root / "nccl" / "train", TARGET_CLASSES, 64, 96, seed=0, cluttered=True)
write_split(root / "nccl" / "val", TARGET_CLASSES, 16, 96, seed=1, cluttered=True)
cfg = RunConfig()
cfg.model.spec = f"spp_gui:alexnet_spp?num_classes={len(TARGET_CLASSES)}"
cfg.data.train, cfg.data.val, cfg.data.image_size = str(root / "nccl/train"), str(root / "nccl/val"), 96
cfg.run.epochs, cfg.run.batch_size, cfg.run.out, cfg.run.name = 2, 64, str(root / "nccl/runs"), "nccl"
cfg.save(root / "nccl.toml")
PYEOF
    t0=$SECONDS
    if timeout 90 "$PY" -m spp_gui train "$OUT/nccl.toml" --nproc 2 >>"$OUT/nccl.log" 2>&1 \
            && grep -q "nccl: finished" "$OUT/nccl.log"; then
        printf 'BENCH\t2-rank NCCL run (2 epochs), spp-gui train --nproc 2\tfinished in %s s\t-\t-\tfinishes\tyes\n' \
            "$(( SECONDS - t0 ))" >>"$OUT/rows"
    else
        printf 'BENCH\t2-rank NCCL run (2 epochs), spp-gui train --nproc 2\tfailed\t-\t-\tfinishes\tNO\n' >>"$OUT/rows"
        tail -n 20 "$OUT/nccl.log" >&2
        status=1
    fi
else
    printf 'BENCH\t2-rank NCCL run\tskipped: %s GPU\t-\t-\tfinishes\t-\n' "$GPUS" >>"$OUT/rows"
fi

echo "== 3/3 host syncs over 50 steps (torch.cuda.set_sync_debug_mode('warn'))" >&2
timeout 90 "$PY" - "$OUT" <<'PYEOF' >>"$OUT/rows" 2>"$OUT/sync.log" || status=1
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

from spp_gui.training.config import RunConfig
from spp_gui.training.demo_data import TARGET_CLASSES, write_split
from spp_gui.training.engine import Started, Step, train

STEPS, BATCH = 50, 32
root = Path(sys.argv[1]) / "sync"
per_class = -(-STEPS * BATCH // len(TARGET_CLASSES))
write_split(root / "train", TARGET_CLASSES, per_class, 96, seed=0, cluttered=True)
write_split(root / "val", TARGET_CLASSES, 4, 96, seed=1, cluttered=True)
cfg = RunConfig()
cfg.model.spec = f"spp_gui:alexnet_spp?num_classes={len(TARGET_CLASSES)}"
cfg.data.train, cfg.data.val, cfg.data.image_size = str(root / "train"), str(root / "val"), 96
cfg.data.cache = "no"  # every step from the loader, as a large dataset would run
cfg.run.epochs, cfg.run.batch_size, cfg.run.log_every, cfg.run.out = 1, BATCH, STEPS, str(root / "runs")
found: Counter[str] = Counter()
gen = train(cfg)
event = next(gen)
while not isinstance(event, Started):
    event = next(gen)
torch.cuda.synchronize()
torch.cuda.set_sync_debug_mode("warn")
t0 = time.perf_counter()


def record(message, category, filename, lineno, file=None, line=None):
    """Count a sync warning by the spp_gui line that made it (the innermost one on the stack)."""
    ours = [f for f in traceback.extract_stack()[:-1] if "/spp_gui/" in f.filename]
    where = f"{ours[-1].filename.split('/spp_gui/')[-1]}:{ours[-1].lineno} {ours[-1].line}" if ours else f"{filename}:{lineno}"
    found[where] += 1


with warnings.catch_warnings():
    warnings.simplefilter("always")
    warnings.showwarning = record
    event = next(gen)  # runs the 50 steps; yields the Step event at the log point
torch.cuda.set_sync_debug_mode("default")
steps_s = time.perf_counter() - t0
assert isinstance(event, Step) and event.step == STEPS, event
gen.close()
log_point = sum(n for k, n in found.items() if ".tolist()" in k)
others = {k: n for k, n in found.items() if ".tolist()" not in k}
for k, n in found.items():
    print(f"  sync x{n}: {k}", file=sys.stderr)
print("\t".join(["BENCH", f"host syncs in {STEPS} steps ({steps_s:.1f} s) besides the log point's {log_point}",
                 str(sum(others.values())), "-", "-", "0", "yes" if not others else "NO"]))
PYEOF
cat "$OUT/sync.log" >&2

grep '^BENCH' "$OUT/speed.log" >>"$OUT/rows" 2>/dev/null
"$PY" - "$OUT/rows" "$(( $(date +%s) - start ))" <<'PYEOF'
import sys
import torch
rows = [line.rstrip("\n").split("\t")[1:] for line in open(sys.argv[1]) if line.startswith("BENCH")]
header = ["check", "value", "baseline", "ratio", "goal", "met"]
rows = [(r + [""] * 6)[:6] for r in rows]
widths = [max(len(x[i]) for x in [header, *rows]) for i in range(6)]
print(f"gpu_check on {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, torch {torch.__version__}, "
      f"{sys.argv[2]} s")
print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
print("-|-".join("-" * w for w in widths))
for r in rows:
    print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))
PYEOF
exit $status
