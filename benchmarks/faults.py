"""Fault injection: damaged and malicious checkpoints, and kill -9 during saves.

Prints one table: cases tried, clean errors, crashes, hangs, data lost. Each file case runs in a
worker process under a timeout (a crash or hang kills only the worker, which is restarted); each
kill case forks a writer, SIGKILLs it at a random moment and checks that the previous file is
still whole.

Usage: python benchmarks/faults.py [--cases 100] [--kills 100] [--timeout 20]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _report import bench_row  # noqa: E402


def _worker(inbox: mp.Queue, outbox: mp.Queue) -> None:
    from spp_gui import load_source
    from spp_gui.core.errors import SppError

    while True:
        item = inbox.get()
        if item is None:
            return
        index, path = item
        try:
            src = load_source(path)
            for key in src.tensors:
                src.read(key)
            src.close()
            outbox.put((index, "loaded", ""))
        except SppError as exc:
            outbox.put((index, "clean", str(exc)[:120]))
        except Exception as exc:  # a traceback a user would see: counts as a crash
            outbox.put((index, "crash", f"{type(exc).__name__}: {exc}"[:200]))


class Runner:
    """One worker process; restarted after a crash or a hang."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.ctx = mp.get_context("spawn")
        self._start()

    def _start(self) -> None:
        self.inbox, self.outbox = self.ctx.Queue(), self.ctx.Queue()
        self.proc = self.ctx.Process(target=_worker, args=(self.inbox, self.outbox), daemon=True)
        self.proc.start()

    def run(self, index: int, path: Path) -> tuple[str, str]:
        self.inbox.put((index, str(path)))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                got = self.outbox.get(timeout=0.2)
                return got[1], got[2]
            except Exception:
                if not self.proc.is_alive():
                    self._start()
                    return "crash", f"worker died with exit code {self.proc.exitcode}"
        self.proc.kill()
        self.proc.join()
        self._start()
        return "hang", f"no answer within {self.timeout}s"

    def close(self) -> None:
        self.inbox.put(None)
        self.proc.join(timeout=10)


def file_cases(tmp: Path, count: int, rng: random.Random):
    from faultgen import base_files, bit_flips, crafted_safetensors, malicious, truncations, zip_damage

    files = base_files(tmp / "base")
    marker = tmp / "PWNED"
    groups = {
        "truncated .pth": truncations(files["pth"], count, rng),
        "truncated .safetensors": truncations(files["safetensors"], count, rng),
        "bit-flipped .pth": bit_flips(files["pth"], count, rng),
        "bit-flipped .safetensors": bit_flips(files["safetensors"], count, rng),
        "crafted safetensors headers": crafted_safetensors(),
        "zips without central directory": zip_damage(files["pth"]),
    }
    for group, cases in groups.items():
        for i, (name, blob) in enumerate(cases):
            suffix = ".safetensors" if "safetensors" in name else ".pth"
            path = tmp / f"{group.replace(' ', '_')}_{i}{suffix}"
            path.write_bytes(blob)
            yield group, name, path, None
    for name, path in malicious(tmp / "evil", marker):
        yield "malicious pickles", name, path, marker


def kill_cases(tmp: Path, kills: int, rng: random.Random):
    """Fork a writer that saves in a loop; SIGKILL it at a random moment; check the file."""
    import torch

    from spp_gui import Mapping
    from spp_gui.core.apply import save_weights
    from spp_gui.core.mapping import Entry
    from spp_gui.core.sources import load_source

    big = {f"t{i}": torch.full((512, 512), float(i)) for i in range(24)}  # 24 MB per save
    mapping = Mapping("a.pth", "spp_gui:alexnet_spp")
    for i in range(3000):
        mapping.set(Entry(f"target.{i}.weight", f"source.{i}.weight", None, "auto:suffix", 0.9, "x" * 40))

    def check_weights(path: Path) -> bool:
        src = load_source(path)
        return sorted(src.tensors) == sorted(big) and all(float(src.read(k)[0, 0]) == float(k[1:]) for k in big)

    jobs = {
        "kill -9 during weight export (.safetensors)": (tmp / "w.safetensors", lambda p: save_weights(big, p), check_weights),
        "kill -9 during checkpoint save (.pth)": (tmp / "ckpt.pth", lambda p: save_weights(big, p), check_weights),
        "kill -9 during mapping save": (tmp / "m.json", lambda p: mapping.save(p),
                                        lambda p: Mapping.load(p) == mapping),
    }
    for name, (path, write, check) in jobs.items():
        write(path)
        # time one save to spread the kills over its whole duration
        t0 = time.perf_counter()
        write(path)
        duration = time.perf_counter() - t0
        for _ in range(kills):
            pid = os.fork()
            if pid == 0:  # the writer: save again and again until killed
                try:
                    while True:
                        write(path)
                finally:
                    os._exit(0)
            time.sleep(rng.uniform(0, duration * 1.5))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            try:
                ok = check(path)
            except Exception as exc:
                ok = False
                print(f"  {name}: {type(exc).__name__}: {exc}")
            yield name, ok
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):  # temp files of killed writers
            leftover.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100, help="random cases per file fault kind")
    parser.add_argument("--kills", type=int, default=100, help="kills per save kind")
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    table: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runner = Runner(args.timeout)
        for group, name, path, marker in file_cases(tmp, args.cases, rng):
            row = table.setdefault(group, {"tried": 0, "clean": 0, "loaded": 0, "crash": 0, "hang": 0, "lost": 0})
            outcome, detail = runner.run(row["tried"], path)
            row["tried"] += 1
            row[outcome] += 1
            if marker is not None and marker.exists():
                row["lost"] += 1  # code ran: the worst outcome
                marker.unlink()
                print(f"  EXECUTED: {name}")
            if outcome in ("crash", "hang"):
                print(f"  {outcome}: {name}: {detail}")
        runner.close()
        for name, ok in kill_cases(tmp, args.kills, rng):
            row = table.setdefault(name, {"tried": 0, "clean": 0, "loaded": 0, "crash": 0, "hang": 0, "lost": 0})
            row["tried"] += 1
            row["clean" if ok else "lost"] += 1

    print(f"{'case':<46} {'tried':>6} {'clean':>6} {'loaded':>7} {'crash':>6} {'hang':>5} {'lost':>5}")
    for name, r in table.items():
        print(f"{name:<46} {r['tried']:>6} {r['clean']:>6} {r['loaded']:>7} {r['crash']:>6} {r['hang']:>5} {r['lost']:>5}")
    total = {k: sum(r[k] for r in table.values()) for k in ("tried", "clean", "loaded", "crash", "hang", "lost")}
    print(f"{'total':<46} {total['tried']:>6} {total['clean']:>6} {total['loaded']:>7} {total['crash']:>6} "
          f"{total['hang']:>5} {total['lost']:>5}")
    bench_row("fault cases: clean errors or intact files", f"{total['clean']}/{total['tried']}", "-", None,
              "crash 0, hang 0, lost 0", total["crash"] == total["hang"] == total["lost"] == 0)
    print("clean: a clear SppError (for kills: the previous or the new file, whole). loaded: the file opened; for "
          ".pth the damage fell where nothing is read (zip padding) and every tensor passed its CRC; .safetensors "
          "has no checksums, so a flip inside tensor data loads and only the sha256 a mapping records catches it "
          "(apply warns). lost: code executed or a half-written file")


if __name__ == "__main__":
    main()
