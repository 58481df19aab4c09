"""Listing and applying big checkpoints: spp_gui's lazy and streaming paths vs the plain torch ones, in one run.

Prints, for generated checkpoints of about --gb gigabytes (a few big tensors, and --many small ones):
  * time to list keys/shapes: spp_gui (header / meta-device pickle) vs a plain ``torch.load``
    (goal <= 0.05x), for .pth and .safetensors;
  * ``apply`` (mapping -> .safetensors weights), each run a fresh process, for .pth and .safetensors
    sources: time vs the naive ``torch.load`` + ``load_state_dict`` + ``torch.save`` (goal <= 0.3x)
    and vs a warm ``cat`` of the source (the physical limit of reading it; goal <= 4x), peak RSS vs
    naive (goal <= 0.6x); as info, apply with the source's sha256 not cached (hashed in the same
    pass), and the machine's write floor (copy_file_range of the whole source + fsync);
  * the same with the page cache dropped before every run, where ``/proc/sys/vm/drop_caches`` can
    be written (root), and for the many-tensor file (per-tensor overhead);
  * the bytes ``map`` + ``apply`` hash together (goal: the file once).
Baseline and candidate runs are interleaved round by round; figures are medians, with (min-max).

Usage: python benchmarks/io_bench.py [--gb 2] [--rounds 3] [--many 10000] [--dir /tmp] [--no-cold]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _report import bench_row

NET = """
import torch


class Stack(torch.nn.Module):
    def __init__(self, layers=32, width=4096):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(layers))
"""

CHILD = r"""
import json, os, sys, time
import torch


def hwm_mb():
    # VmHWM: this process's own peak RSS (ru_maxrss would include the parent's RSS at fork time)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

from safetensors.torch import load_file
from spp_gui import load_source, trust_code
from spp_gui.core import sources
path, mode, spec, out = sys.argv[1:5]
if os.environ.get("IO_BENCH_TRUST"):
    trust_code(os.environ["IO_BENCH_TRUST"])  # the benchmark's own model file
hashed = [0]
feed = sources._HashFeed.feed
def counting(self, view, offset):
    hashed[0] += len(view)
    feed(self, view, offset)
sources._HashFeed.feed = counting
base_rss = hwm_mb()
t0 = time.perf_counter()
if mode == "list-spp":
    src = load_source(path)
    result = len(src.tensors)
elif mode == "list-torch":
    if path.endswith(".pth"):
        state = torch.load(path, weights_only=True)
    else:  # no torch.load for safetensors: load_file, then touch the data as torch.load would have
        state = {k: v.clone() for k, v in load_file(path).items()}
    result = len(state)
elif mode == "list-mmap":
    result = len(load_file(path))
elif mode == "map-spp":
    from spp_gui import suggest_mapping
    target = open(out).read()
    suggest_mapping(path, target, strategy="exact").save(spec)
    result = 0
elif mode == "apply-spp":
    from spp_gui import Mapping
    from spp_gui.core.apply import apply_to_file
    report = apply_to_file(Mapping.load(spec), out, source=path)
    result = len(report.loaded)
elif mode == "apply-torch":
    from spp_gui import build_model
    model = build_model(json.load(open(spec))["target"]["spec"], device="cpu", seed=0)
    model.load_state_dict(torch.load(path, weights_only=True) if path.endswith(".pth") else load_file(path))
    torch.save(model.state_dict(), out)
    result = len(model.state_dict())
elif mode == "floor":  # the machine's write floor: the whole file copied in the kernel, then made durable
    size = os.path.getsize(path)
    src_fd, out_fd = os.open(path, os.O_RDONLY), os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    done = 0
    while done < size:
        done += os.copy_file_range(src_fd, out_fd, min(1 << 30, size - done), done, done)
    os.fsync(out_fd)
    result = 0
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "rss_mb": hwm_mb(), "base_rss_mb": base_rss, "n": result,
                  "hashed": hashed[0]}))
"""


def child(*args: str, env: dict | None = None) -> dict:
    env = dict(env or os.environ)
    if TRUST:
        env["IO_BENCH_TRUST"] = TRUST[0]
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=False,
                          env=env)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


TRUST: list[str] = []


def cat_seconds(path: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def drop_caches() -> bool:
    """Write back and drop the page cache (root only); False where the machine does not allow it."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def spread(values: list[float], unit: str, scale: float = 1.0, digits: int = 2) -> str:
    values = [v * scale for v in values]
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f} {unit}"
    return f"{med:.{digits}f} {unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def make_checkpoints(tmp: Path, name: str, layers: int, width: int) -> str:
    import torch
    from safetensors.torch import save_file

    state = {}
    for i in range(layers):
        state[f"layers.{i}.weight"] = torch.randn(width, width)
        state[f"layers.{i}.bias"] = torch.randn(width)
    torch.save(state, tmp / f"{name}.pth")
    save_file(state, tmp / f"{name}.safetensors")
    return f"{tmp / 'net.py'}:Stack?layers={layers}&width={width}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per apply figure")
    parser.add_argument("--many", type=int, default=10_000, help="tensors in the many-tensor checkpoint (0: skip)")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--no-cold", action="store_true", help="skip the dropped-page-cache figures")
    args = parser.parse_args()

    from spp_gui import trust_code

    width = 4096
    layers = max(1, round(args.gb * 1024**3 / (width * width * 4)))
    rows = []

    def row(name, ours, base, ratio, goal):
        rows.append((name, ours, base, ratio, goal))

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        (tmp / "net.py").write_text(textwrap.dedent(NET))
        trust_code(tmp / "net.py")
        TRUST.append(str(tmp / "net.py"))
        t0 = time.perf_counter()
        sets = {"big": make_checkpoints(tmp, "big", layers, width)}
        if args.many:  # the same bytes in --many tensors: Linear(w, w) x many/2, w chosen for the size
            many_width = max(1, round((args.gb * 1024**3 / 4 / (args.many // 2)) ** 0.5))
            sets["many"] = make_checkpoints(tmp, "many", args.many // 2, many_width)
        size = (tmp / "big.pth").stat().st_size / 1024**3
        print(f"generated {size:.2f} GB checkpoints ({2 * layers} tensors"
              + (f"; and {args.many} tensors" if args.many else "") + f") in {time.perf_counter() - t0:.1f}s")

        for ext in (".pth", ".safetensors"):
            path = str(tmp / f"big{ext}")
            ours = min(child(path, "list-spp", "", "")["seconds"] for _ in range(3))
            base = min(child(path, "list-torch", "", "")["seconds"] for _ in range(2))
            row(f"list keys {ext}", f"{ours * 1000:.1f} ms", f"{base * 1000:.1f} ms", ours / base, "<= 0.05x")
            if ext == ".safetensors":
                lazy = min(child(path, "list-mmap", "", "")["seconds"] for _ in range(2))
                row("  vs load_file (mmap)", f"{ours * 1000:.1f} ms", f"{lazy * 1000:.1f} ms", ours / lazy, "(info)")

        cold_ok = not args.no_cold and drop_caches()
        if not args.no_cold and not cold_ok:
            print("cannot drop the page cache here (needs root and a writable /proc/sys/vm/drop_caches): "
                  "no cold-cache figures")
        out = tmp / "out.safetensors"

        def fresh_cache(name: str) -> dict:
            folder = tmp / name
            if folder.exists():
                for f in folder.iterdir():
                    f.unlink()
            return dict(os.environ, SPP_GUI_CACHE_DIR=str(folder))

        for set_name, spec in sets.items():
            (tmp / "spec.txt").write_text(spec)
            for ext in (".pth", ".safetensors"):
                src = str(tmp / f"{set_name}{ext}")
                mapping = str(tmp / f"m_{set_name}{ext}.json")
                cached = fresh_cache("cache")
                mapped = child(src, "map-spp", mapping, str(tmp / "spec.txt"), env=cached)
                runs: dict[str, list[dict]] = {k: [] for k in ("naive", "ours", "unhashed", "cat", "floor")}
                cold: dict[str, list[dict]] = {k: [] for k in ("naive", "ours", "cat")}
                hashed_by_apply = 0
                for _ in range(args.rounds):  # interleaved: every figure once per round
                    for key, mode, env in (("naive", "apply-torch", None), ("ours", "apply-spp", cached),
                                           ("unhashed", "apply-spp", None), ("floor", "floor", None)):
                        out.unlink(missing_ok=True)
                        env = fresh_cache("nocache") if key == "unhashed" else env
                        cat_seconds(Path(src))  # warm
                        runs[key].append(child(src, mode, mapping, str(out), env=env))
                    hashed_by_apply = max(hashed_by_apply, runs["ours"][-1]["hashed"])
                    runs["cat"].append({"seconds": cat_seconds(Path(src))})
                    if cold_ok:
                        for key, mode in (("naive", "apply-torch"), ("ours", "apply-spp")):
                            out.unlink(missing_ok=True)
                            drop_caches()
                            cold[key].append(child(src, mode, mapping, str(out), env=cached))
                        drop_caches()
                        cold["cat"].append({"seconds": cat_seconds(Path(src))})
                out.unlink(missing_ok=True)

                def secs(series):
                    return [r["seconds"] for r in series]

                tag = f"{ext} source" + (f", {args.many:,} tensors" if set_name == "many" else "")
                med = {k: statistics.median(secs(v)) for k, v in runs.items()}
                row(f"apply time ({tag})", spread(secs(runs["ours"]), "s"), "naive " + spread(secs(runs["naive"]), "s"),
                    med["ours"] / med["naive"], "<= 0.3x")
                row(f"  vs warm cat ({tag})", spread(secs(runs["ours"]), "s"), "cat " + spread(secs(runs["cat"]), "s", digits=3),
                    med["ours"] / med["cat"], "<= 4x")
                row(f"  vs write floor ({tag})", spread(secs(runs["ours"]), "s"),
                    "cfr+fsync " + spread(secs(runs["floor"]), "s"), med["ours"] / med["floor"], "(info)")
                row(f"  sha256 not cached ({tag})", spread(secs(runs["unhashed"]), "s"),
                    "naive " + spread(secs(runs["naive"]), "s"), med["unhashed"] / med["naive"], "(info)")
                rss = [r["rss_mb"] for r in runs["ours"]]
                base_rss = [r["rss_mb"] for r in runs["naive"]]
                row(f"apply peak RSS ({tag})", spread(rss, "MB", digits=0), spread(base_rss, "MB", digits=0),
                    statistics.median(rss) / statistics.median(base_rss), "<= 0.6x")
                file_bytes = Path(src).stat().st_size
                both = mapped["hashed"] + hashed_by_apply
                row(f"map+apply bytes hashed ({tag})", f"{both / 1e9:.2f} GB", f"file {file_bytes / 1e9:.2f} GB",
                    both / file_bytes, "<= 1.0x")
                if cold_ok:
                    cmed = {k: statistics.median(secs(v)) for k, v in cold.items()}
                    row(f"cold apply time ({tag})", spread(secs(cold["ours"]), "s"),
                        "naive " + spread(secs(cold["naive"]), "s"), cmed["ours"] / cmed["naive"], "(info)")
                    row(f"  vs cold cat ({tag})", spread(secs(cold["ours"]), "s"),
                        "cat " + spread(secs(cold["cat"]), "s"), cmed["ours"] / cmed["cat"], "(info)")

    print(f"{'figure':<44} {'spp_gui':>22} {'baseline':>28} {'ratio':>8}  goal")
    for name, a, b, ratio, goal in rows:
        print(f"{name:<44} {a:>22} {b:>28} {ratio:>7.3f}x  {goal}")
        limit = float(goal.split()[1].rstrip("x")) if goal.startswith("<=") else None
        bench_row(f"{name.strip()} ({size:.1f} GB)", a, b, ratio, goal, None if limit is None else ratio <= limit)
    print(f"medians of {args.rounds} interleaved rounds, (min-max); each apply a fresh process that wrote a new "
          "file (fsync included), the previous output removed first")
    print("baselines: torch.load(weights_only=True) for listing .pth; safetensors load_file and reading every tensor "
          "for .safetensors; torch.load (or load_file) + load_state_dict + torch.save for apply; cat of the source "
          "for reading it; copy_file_range of the whole source + fsync for writing it")


if __name__ == "__main__":
    main()
