"""auto on two ~47,000-key MoE state dicts (meta tensors), renamed between two naming conventions.

Goal: under 1 s and under 1 GB on a 2-core machine (issue 11). Wall and CPU time are both printed: on a
shared machine other processes' load stretches the wall time, not the CPU time. Prints auto's time and peak memory beside
baselines measured in the same run: the exact strategy (names only, the floor) and a naive
all-pairs scorer (name tokens + shape for every source/target pair) timed on a subset and
extrapolated quadratically to the full size.

    .venv/bin/python benchmarks/auto_scale.py [--layers 60 --experts 256]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "core"))
from evalsuite import moe_tables, score, with_query_bias  # noqa: E402

from spp_gui.core.strategies import Side, suggest  # noqa: E402
from spp_gui.core.tensors import table_of  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import bench_row  # noqa: E402


def peak_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def meta_state(table) -> dict[str, torch.Tensor]:
    return {k: torch.empty(v.shape, dtype=torch.bfloat16, device="meta") for k, v in table.items()}


CPU: dict[str, float] = {}
#: every round's CPU time and the part of it spent in the cyclic garbage collector, per timed name
ROUNDS: dict[str, list[tuple[float, float]]] = {}
_GC = {"start": 0.0, "spent": 0.0}


def _gc_clock(phase: str, info: dict) -> None:
    if phase == "start":
        _GC["start"] = time.process_time()
    else:
        _GC["spent"] += time.process_time() - _GC["start"]


def timed(fn, repeat: int = 3, name: str = "") -> tuple[float, object]:
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        gc.collect()
        _GC["spent"] = 0.0
        gc.callbacks.append(_gc_clock)
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        cpu = time.process_time() - c0
        gc.callbacks.remove(_gc_clock)
        best_cpu = min(best_cpu, cpu)
        if name:
            ROUNDS.setdefault(name, []).append((cpu, _GC["spent"]))
    if name:
        CPU[name] = best_cpu
    return best, out


def spread(name: str) -> str:
    """Median CPU time of the rounds, their range, and the collector's share (a full collection of a heap
    holding torch is ~0.2 s on its own: the objects a run leaves behind set one off)."""
    cpu = sorted(c for c, _ in ROUNDS[name])
    gcs = sorted(g for _, g in ROUNDS[name])
    return (f"CPU median {statistics.median(cpu):.3f} s over {len(cpu)} rounds ({cpu[0]:.3f}-{cpu[-1]:.3f}), "
            f"of which the garbage collector {statistics.median(gcs):.3f} s")


def traced_peak(fn) -> float:
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def naive_all_pairs(source: Side, target: Side) -> dict[str, str]:
    """What bucketing avoids: score every pair by name-token overlap where shapes agree."""
    toks = {k: set(k.split(".")) for k in source.table}
    out = {}
    for t, info in target.table.items():
        tt = set(t.split("."))
        best, best_score = None, -1.0
        for s, sinfo in source.table.items():
            if sinfo.shape != info.shape:
                continue
            sc = len(tt & toks[s]) / len(tt | toks[s])
            if sc > best_score:
                best, best_score = s, sc
        if best is not None:
            out[t] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=60)
    parser.add_argument("--experts", type=int, default=256)
    parser.add_argument("--subset", type=int, default=1500, help="keys per side for the all-pairs baseline")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of auto (best and median reported)")
    args = parser.parse_args()

    src_t, tgt_t, truth = moe_tables(args.layers, args.experts, d=4096, ffn=1536, vocab=151936, kv=512)
    src_state, tgt_state = meta_state(src_t), meta_state(tgt_t)  # what a user hands over
    n = len(tgt_state)
    print(f"source {len(src_state):,} keys, target {n:,} keys (meta tensors, "
          f"{sum(v.numel() for v in tgt_state.values()) / 1e9:.1f} B parameters)")

    def run_auto():
        return suggest(Side(table_of(src_state)), Side(table_of(tgt_state)), "auto").to_mapping()

    def run_exact():
        return suggest(Side(table_of(src_state)), Side(table_of(tgt_state)), "exact").to_mapping()

    rss_before = peak_rss()
    t_auto, mapping = timed(run_auto, repeat=args.rounds, name="auto")
    rss_auto = peak_rss()
    t_exact, _ = timed(run_exact)
    p, r, wrong = score(mapping.pairs(), truth)
    mem_auto = traced_peak(run_auto)
    mem_exact = traced_peak(run_exact)

    # the same with layers that no longer match whole (a bias on every query): the bucket path
    tgt_bias = meta_state(with_query_bias(tgt_t))
    t_bias, m_bias = timed(lambda: suggest(Side(table_of(src_state)), Side(table_of(tgt_bias)), "auto").to_mapping(),
                           name="bias")
    pb, rb, wb = score(m_bias.pairs(), truth)

    keys = list(tgt_t)[: args.subset]
    sub_t = Side({k: tgt_t[k] for k in keys})
    sub_s = Side({truth[k]: src_t[truth[k]] for k in keys})
    t_naive_sub, _ = timed(lambda: naive_all_pairs(sub_s, sub_t), repeat=1)
    t_naive = t_naive_sub * (n / len(keys)) ** 2

    print(f"auto : {t_auto:7.3f} s wall, {CPU['auto']:.3f} s CPU  (goal < 1 s)   peak traced {mem_auto:7.1f} MiB   precision {p:.4f} recall {r:.4f}"
          f" ({wrong} wrong)")
    print(f"auto : {spread('auto')}")
    print(f"auto, target queries with a bias: {t_bias:.3f} s wall, {CPU['bias']:.3f} s CPU, precision {pb:.4f} recall {rb:.4f} ({wb} wrong)")
    print(f"exact: {t_exact:7.3f} s                 peak traced {mem_exact:7.1f} MiB   (names only; "
          f"finds {len(run_exact())} of {len(truth)})")
    print(f"naive all-pairs: {t_naive_sub:.2f} s on {len(keys)} x {len(keys)} keys -> ~{t_naive:,.0f} s extrapolated "
          f"to {n:,} x {n:,}")
    print(f"ratios: auto/exact {t_auto / t_exact:.1f}x, auto/naive {t_auto / t_naive:.5f}x")
    bench_row(f"auto time, {n:,}-key MoE pair", f"{t_auto:.3f} s", f"{t_naive:,.0f} s (all-pairs, extrapolated)",
              t_auto / t_naive, "< 1 s", t_auto < 1.0)
    bench_row("auto peak memory (traced)", f"{mem_auto:.0f} MiB", f"{mem_exact:.0f} MiB (exact)", mem_auto / mem_exact,
              "< 1 GB", mem_auto < 1024)
    print(f"memory: process peak RSS {rss_before:.0f} MiB before auto (torch, torchvision, the two meta state "
          f"dicts), {rss_auto:.0f} MiB after: auto adds {rss_auto - rss_before:.0f} MiB (goal < 1024)")


if __name__ == "__main__":
    main()
