"""Precision and recall of ``auto`` per case, beside the exact / order / zip-by-shape / suffix baselines.

Two parts:

- the constructed suite (tests/core/evalsuite.py): truth by construction. Goals: precision >= 0.995,
  recall >= 0.98, auto at least as good as the best baseline on every case.
- the zoo (tests/core/zoosuite.py, needs the zoo extra): cross-library pairs from torchvision, timm and
  HF transformers with a hand-written truth that is itself checked by function (the target loaded by
  it computes the source's outputs). An accepted entry is right when it gives the target exactly the
  tensor the truth gives it (a missing transpose is wrong). 'fn' says whether the target loaded by the
  strategy's accepted entries computes the source's outputs. Goals: precision 1.000, recall >= 0.99,
  fn on every pair whose truth is expressible, nothing accepted on unrelated pairs.

    .venv/bin/python benchmarks/auto_eval.py [--suite | --zoo]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "core"))
from evalsuite import build_cases, run_strategy, score  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import bench_row  # noqa: E402

STRATEGIES = ("auto", "exact", "order", "zip_shape", "suffix")


def accepted_entries(name: str, source, target) -> dict:
    """target key -> (source key, transform) a strategy accepts; baselines carry no transforms."""
    from evalsuite import Case

    if name in ("suffix", "zip_shape"):
        return {t: (s, None) for t, s in run_strategy(name, Case(name, source, target, {})).items()}
    from spp_gui.core.strategies import suggest

    mapping = suggest(source, target, name).to_mapping()
    return {e.target: (e.sources if e.many else e.source, e.transform) for e in mapping}


def zoo() -> bool:
    """The zoo table; True when its goals are met."""
    from zoosuite import entry_right, function_check, zoo_pairs

    try:
        pairs = zoo_pairs()
    except ImportError as exc:  # the zoo extra is missing
        print(f"zoo: skipped ({exc}); pip install 'spp-gui[zoo]'")
        return True
    print("zoo: cross-library pairs, truth checked by function (P R, * perfect, f function match, ! wrong pairs)")
    head = f"{'pair':<50} {'truth':>5} {'fn':>3}  " + "  ".join(f"{s:>15}" for s in STRATEGIES)
    print(head)
    totals = {s: [0, 0, 0] for s in STRATEGIES}
    perfect = dict.fromkeys(STRATEGIES, 0)
    fn_ok = dict.fromkeys(STRATEGIES, 0)
    expressible = related = 0
    unrelated_accepted = 0
    short = []
    for pair in pairs:
        src, tgt = pair.build()
        truth = pair.truth()
        source, target = pair.sides()
        truth_fn = "n/a" if pair.inexpressible or pair.unrelated else ("yes" if function_check(pair, truth)[0] else "NO")
        if truth_fn == "NO":
            raise SystemExit(f"zoo pair {pair.name!r}: its truth does not compute the source's function")
        expressible += truth_fn == "yes"
        related += not pair.unrelated
        cells = []
        for name in STRATEGIES:
            got = accepted_entries(name, source, target)
            right = sum(entry_right(src, tgt, t, e, truth) for t, e in got.items())
            wrong = len(got) - right
            totals[name][0] += right
            totals[name][1] += len(got)
            totals[name][2] += len(truth)
            p = right / len(got) if got else 1.0
            r = right / len(truth) if truth else 1.0
            is_perfect = wrong == 0 and right == len(truth)
            perfect[name] += is_perfect and not pair.unrelated
            fn = truth_fn == "yes" and function_check(pair, got)[0]
            fn_ok[name] += fn
            if pair.unrelated and name == "auto":
                unrelated_accepted += len(got)
            if name == "auto" and not is_perfect:
                missed = [t for t in truth if t not in got or not entry_right(src, tgt, t, got[t], truth)]
                bad = [t for t in got if not entry_right(src, tgt, t, got[t], truth)]
                short.append((pair.name, missed, bad, got))
            mark = "!" if wrong else "*" if is_perfect else " "
            cells.append(f"{p:5.3f} {r:5.3f}{mark}{'f' if fn else ' '}")
        print(f"{pair.name[:50]:<50} {len(truth):>5} {truth_fn:>3}  " + "  ".join(f"{c:>15}" for c in cells))
    print()
    for name, (right, accepted, truth) in totals.items():
        p = right / accepted if accepted else 1.0
        print(f"zoo {name:<9} precision {p:.4f}  recall {right / max(truth, 1):.4f}  perfect {perfect[name]}/{related}  "
              f"function {fn_ok[name]}/{expressible}  ({accepted - right} wrong of {accepted})")
    for name, missed, bad, got in short:
        print(f"  auto short on {name}: {len(missed)} missed, {len(bad)} wrong")
        for t in (bad + [m for m in missed if m not in bad])[:6]:
            names = " + ".join(got[t][0]) if t in got and isinstance(got[t][0], tuple) else got.get(t, ("",))[0]
            print(f"    {t} <- {names + (' ' + str(got[t][1]) if got[t][1] else '') if t in got else '(none)'}")
    right, accepted, truth = totals["auto"]
    p, r = right / max(accepted, 1), right / max(truth, 1)
    best = max((t for n, t in totals.items() if n != "auto"), key=lambda t: t[0] / max(t[2], 1))
    bench_row(f"auto zoo precision ({related} pairs)", f"{p:.4f}", f"{best[0] / max(best[1], 1):.4f}", None,
              "1.000", p == 1.0)
    bench_row(f"auto zoo recall ({related} pairs)", f"{r:.4f}", f"{best[0] / max(best[2], 1):.4f}",
              r / max(best[0] / max(best[2], 1), 1e-9), ">= 0.99", r >= 0.99)
    bench_row("auto zoo function match", f"{fn_ok['auto']}/{expressible}", f"{max(fn_ok[n] for n in STRATEGIES[1:])}",
              None, "all expressible", fn_ok["auto"] == expressible)
    ok = p == 1.0 and r >= 0.99 and fn_ok["auto"] == expressible and unrelated_accepted == 0
    print(f"\nzoo goals (P 1.000, R >= 0.99, fn on every expressible pair, 0 on unrelated): {'met' if ok else 'NOT met'}")
    return ok


def main() -> int:
    args = sys.argv[1:]
    if "--zoo" in args:
        return 0 if zoo() else 1
    goals = suite()
    if "--suite" not in args:
        print()
        goals = zoo() and goals
    return 0 if goals else 1


def suite() -> bool:
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
    return goals


if __name__ == "__main__":
    raise SystemExit(main())
