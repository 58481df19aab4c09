"""Listing and applying big checkpoints: spp_gui's lazy paths vs the plain torch ones, in one run.

Prints, for a generated checkpoint of about --gb gigabytes:
  * time to list keys/shapes: spp_gui (header / meta-device pickle) vs a plain ``torch.load``
    (goal <= 0.05x), for .pth and .safetensors;
  * peak RSS of ``apply`` (mapping -> weights file) vs ``torch.load`` + ``load_state_dict`` +
    ``torch.save`` (goal <= 0.6x), each in a fresh process.

Usage: python benchmarks/io_bench.py [--gb 2] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
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
import json, sys, time
import torch


def hwm_mb():
    # VmHWM: this process's own peak RSS (ru_maxrss would include the parent's RSS at fork time)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

from safetensors.torch import load_file
from spp_gui import load_source
path, mode, spec, out = sys.argv[1:5]
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
elif mode == "apply-spp":
    from spp_gui import Mapping
    from spp_gui.core.apply import apply_to_file
    report = apply_to_file(Mapping.load(spec), out)
    result = len(report.loaded)
elif mode == "apply-torch":
    from spp_gui import build_model
    model = build_model(json.load(open(spec))["target"]["spec"], device="cpu", seed=0)
    model.load_state_dict(torch.load(path, weights_only=True))
    torch.save(model.state_dict(), out)
    result = len(model.state_dict())
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "rss_mb": hwm_mb(),
                  "base_rss_mb": base_rss, "n": result}))
"""


def child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    import torch
    from safetensors.torch import save_file

    from spp_gui import suggest_mapping

    width = 4096
    layers = max(1, round(args.gb * 1024**3 / (width * width * 4)))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        (tmp / "net.py").write_text(textwrap.dedent(NET))
        spec = f"{tmp / 'net.py'}:Stack?layers={layers}&width={width}"
        t0 = time.perf_counter()
        state = {}
        for i in range(layers):
            state[f"layers.{i}.weight"] = torch.randn(width, width)
            state[f"layers.{i}.bias"] = torch.randn(width)
        torch.save(state, tmp / "big.pth")
        save_file(state, tmp / "big.safetensors")
        del state
        size = (tmp / "big.pth").stat().st_size / 1024**3
        print(f"generated {size:.2f} GB checkpoints ({2 * layers} tensors) in {time.perf_counter() - t0:.1f}s")

        rows = []
        for ext in (".pth", ".safetensors"):
            path = str(tmp / f"big{ext}")
            ours = min(child(path, "list-spp", "", "")["seconds"] for _ in range(3))
            base = min(child(path, "list-torch", "", "")["seconds"] for _ in range(2))
            rows.append((f"list keys {ext}", f"{ours * 1000:.1f} ms", f"{base * 1000:.1f} ms", ours / base, "<= 0.05x"))
            if ext == ".safetensors":
                lazy = min(child(path, "list-mmap", "", "")["seconds"] for _ in range(2))
                rows.append(("  vs load_file (mmap)", f"{ours * 1000:.1f} ms", f"{lazy * 1000:.1f} ms", ours / lazy, "(info)"))

        mapping = tmp / "m.json"
        suggest_mapping(str(tmp / "big.pth"), spec, strategy="exact").save(mapping)
        ours = child(str(tmp / "big.pth"), "apply-spp", str(mapping), str(tmp / "out.safetensors"))
        base = child(str(tmp / "big.pth"), "apply-torch", str(mapping), str(tmp / "out_base.pth"))
        rows.append(("apply peak RSS", f"{ours['rss_mb']:.0f} MB", f"{base['rss_mb']:.0f} MB",
                     ours["rss_mb"] / base["rss_mb"], "<= 0.6x"))
        rows.append(("apply time", f"{ours['seconds']:.1f} s", f"{base['seconds']:.1f} s",
                     ours["seconds"] / base["seconds"], "(info)"))

    print(f"{'figure':<24} {'spp_gui':>12} {'baseline':>12} {'ratio':>8}  goal")
    for name, a, b, ratio, goal in rows:
        print(f"{name:<24} {a:>12} {b:>12} {ratio:>7.3f}x  {goal}")
        limit = float(goal.split()[1].rstrip("x")) if goal.startswith("<=") else None
        bench_row(f"{name.strip()} ({size:.1f} GB)", a, b, ratio, goal, None if limit is None else ratio <= limit)
    print(f"(RSS includes the interpreter with torch imported: {ours['base_rss_mb']:.0f} MB in both processes)")
    print("baselines: torch.load(weights_only=True) for listing .pth; safetensors load_file and reading every tensor "
          "for .safetensors; torch.load + load_state_dict + torch.save for apply")


if __name__ == "__main__":
    main()
