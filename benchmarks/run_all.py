"""``make bench``: run every benchmark and print one table of figure, baseline, ratio and goal.

Each script prints its own detailed output (kept in bench-out/<script>.log) and one ``BENCH`` line
per figure (see _report.py). Usage: python benchmarks/run_all.py [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# script, full arguments, quick arguments
SCRIPTS = [
    ("io_bench.py", ["--gb", "2"], ["--gb", "0.5"]),
    ("auto_eval.py", [], []),
    ("auto_scale.py", [], []),
    ("gui_speed.py", [], []),
    ("train_speed.py", [], ["--small"]),
    ("plot_draw.py", [], ["--rounds", "2", "--epochs", "10"]),
    ("gui_responsiveness.py", [], []),
    ("faults.py", [], ["--cases", "30", "--kills", "20"]),
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024**2:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a fast look")
    parser.add_argument("--only", nargs="*", help="script names to run")
    args = parser.parse_args()
    out_dir = HERE.parent / "bench-out"
    out_dir.mkdir(exist_ok=True)
    rows, failures = [], []
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    for script, full, quick in SCRIPTS:
        if args.only and script.removesuffix(".py") not in [o.removesuffix(".py") for o in args.only]:
            continue
        if not (HERE / script).exists():
            failures.append(f"{script}: missing")
            continue
        t0 = time.perf_counter()
        print(f"running {script} ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, str(HERE / script), *(quick if args.quick else full)],
                              capture_output=True, text=True, env=env, cwd=HERE.parent)
        (out_dir / f"{script.removesuffix('.py')}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            failures.append(f"{script}: exit {proc.returncode} (see bench-out/{script.removesuffix('.py')}.log)")
        for line in proc.stdout.splitlines():
            if line.startswith("BENCH\t"):
                rows.append([script.removesuffix(".py"), *line.split("\t")[1:]])
        print(f"  {script}: {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    print(f"machine: {machine()}")
    header = ["script", "figure", "spp_gui", "baseline", "ratio", "goal", "met"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
