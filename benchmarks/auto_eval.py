"""Precision and recall of ``auto`` per case of the evaluation suite, beside the exact / order / suffix baselines.

Truth is by construction (tests/core/evalsuite.py). Goals over the suite: precision >= 0.995,
recall >= 0.98, and auto at least as good as the best baseline on every case.

    .venv/bin/python benchmarks/auto_eval.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "core"))
from evalsuite import build_cases, run_strategy, score  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import bench_row  # noqa: E402

STRATEGIES = ("auto", "exact", "order", "suffix")


def main() -> int:
    t0 = time.perf_counter()
    cases = build_cases()
    print(f"{len(cases)} cases built in {time.perf_counter() - t0:.2f} s (meta device)\n")
    head = f"{'case':<58} {'truth':>5}  " + "  ".join(f"{s:>13}" for s in STRATEGIES) + "   ok"
    print(head)
    print(f"{'':<58} {'':>5}  " + "  ".join(f"{'P     R':>13}" for _ in STRATEGIES))
    totals = {s: [0, 0, 0] for s in STRATEGIES}  # right, accepted, truth
    all_ok = True
    for c in cases:
        cells, results = [], {}
        for s in STRATEGIES:
            pairs = run_strategy(s, c)
            p, r, wrong = score(pairs, c.truth)
            results[s] = (p, r)
            totals[s][0] += len(pairs) - wrong
            totals[s][1] += len(pairs)
            totals[s][2] += len(c.truth)
            cells.append(f"{p:5.3f} {r:5.3f}{'!' if wrong else ' '}")
        p, r = results["auto"]
        ok = all(p >= results[b][0] and r >= results[b][1] for b in STRATEGIES[1:])
        all_ok &= ok
        print(f"{c.name[:58]:<58} {len(c.truth):>5}  " + "  ".join(f"{x:>13}" for x in cells) + f"   {'yes' if ok else 'NO'}")
    print()
    for s, (right, accepted, truth) in totals.items():
        p = right / accepted if accepted else 1.0
        print(f"overall {s:<7} precision {p:.4f}  recall {right / truth:.4f}  ({accepted - right} wrong of {accepted})")
    right, accepted, truth = totals["auto"]
    goals = right / max(accepted, 1) >= 0.995 and right / truth >= 0.98 and all_ok
    best = max((t for n, t in totals.items() if n != "auto"), key=lambda t: t[0] / t[2])
    bench_row(f"auto precision ({len(cases)} cases)", f"{right / max(accepted, 1):.4f}",
              f"{best[0] / max(best[1], 1):.4f}", None, ">= 0.995", right / max(accepted, 1) >= 0.995)
    bench_row(f"auto recall ({len(cases)} cases)", f"{right / truth:.4f}", f"{best[0] / best[2]:.4f}",
              (right / truth) / max(best[0] / best[2], 1e-9), ">= 0.98, >= best baseline per case",
              right / truth >= 0.98 and all_ok)
    print(f"\ngoals (P >= 0.995, R >= 0.98, auto >= every baseline on every case): {'met' if goals else 'NOT met'}")
    print("('!' marks a strategy that accepted wrong pairs on that case)")
    return 0 if goals else 1


if __name__ == "__main__":
    raise SystemExit(main())
