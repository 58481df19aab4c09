"""Fault injection through the real CLI: every class of issue 13's findings, and kill -9 during saves.

Each case runs ``spp-gui`` (``spp_gui.cli.main``) in a process of its own, in a process group of its
own, under a timeout. The processes fork from a server that has torch imported, so a case costs tens of
milliseconds; ``--fresh`` starts ``python -m spp_gui`` for every case instead (about 3 s each). Each
outcome is judged by what a user would see and find afterwards:

  clean      the right result (weights compared with what torch.load or safetensors read from the same
             file, file modes, the old file on a failed write), or the promised refusal: exit 2 and one
             line "spp-gui: error: ..." (a training run that cannot go on: exit 1 with its reason)
  traceback  a Python traceback, or an error that is not one line
  hang       no exit within the timeout (a blocking read of a FIFO, an endless one of /dev/zero)
  crash      killed by a signal, an unexpected exit status, or memory past the case's budget
  wrong      a wrong result: weights that differ, success reported on nothing, an input the promise
             says to refuse accepted, a valid file refused, a lost file, a stale temporary file
  security   code from a file ran (a marker file appeared), a file was written outside the folders
             chosen or a device replaced, or raw terminal escapes reached the output

Goal: 0 in every column but clean. Usage:
python benchmarks/faults.py [--cases 25] [--kills 20] [--timeout 30] [--fresh] [--only WORD] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(HERE))
from _report import bench_row  # noqa: E402

COLUMNS = ("clean", "traceback", "hang", "crash", "wrong", "security")
PRELOAD = ["torch", "torchvision", "safetensors.torch", "PIL.Image", "spp_gui.cli", "spp_gui.cli.dispatch",
           "spp_gui.cli.map", "spp_gui.cli.apply", "spp_gui.cli.export", "spp_gui.cli.verify", "spp_gui.cli.train",
           "spp_gui.training.engine"]
ESCAPES = ("\x1b", "\x07", "\x9b")  # ESC, BEL, CSI: what a terminal acts on


# -- running one case ---------------------------------------------------------------------------------


@dataclass
class Limits:
    """What the case's process sets up before the CLI runs."""

    umask: int | None = None
    nofile: int | None = None  # RLIMIT_NOFILE: open files
    fsize: int | None = None  # RLIMIT_FSIZE, with SIGXFSZ ignored: writes past it fail (EFBIG), like a full disk


def _apply_limits(limits: Limits) -> None:
    if limits.umask is not None:
        os.umask(limits.umask)
    if limits.nofile is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    if limits.fsize is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.fsize, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def _child(argv: list[str], cwd: str, out: str, err: str, rss: str, limits: Limits) -> None:
    """The case's process: the CLI exactly as ``python -m spp_gui`` runs it, its output in files."""
    os.setpgrp()  # its loader workers too can be signalled, and killed after a hang
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    with contextlib.suppress(Exception):
        sys.stdout.reconfigure(line_buffering=True)  # events can be read while it runs
    os.chdir(cwd)
    _apply_limits(limits)
    code = 1
    try:
        from spp_gui.cli import main

        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what the interpreter would print for an uncaught exception
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(Exception):
            Path(rss).write_text(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
        os._exit(code if isinstance(code, int) else 1)


@dataclass
class Result:
    rc: int | None  # None: killed after the timeout; negative: killed by that signal
    out: str
    err: str
    seconds: float
    rss_mb: float


def _resident_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


class Runner:
    """Starts each case in a fresh process (forked from a preloaded server, or ``python -m spp_gui``)."""

    def __init__(self, work: Path, fresh: bool) -> None:
        self.work, self.fresh = work, fresh
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(PRELOAD)
        self.count = 0

    def run(self, argv: list[str], cwd: Path, limits: Limits, timeout: float, max_rss_mb: float,
            during: Callable[[Callable[[], str], int], None] | None = None) -> Result:
        """Run one case; kill it (and its process group) after ``timeout`` s or past ``max_rss_mb`` of memory,
        which /dev/zero read to the end would otherwise take from the whole machine."""
        self.count += 1
        out, err, rss = (self.work / f"{self.count}.{k}" for k in ("out", "err", "rss"))
        t0 = time.perf_counter()
        reaped: dict[str, float] = {}
        if self.fresh:
            proc = self._start_fresh(argv, cwd, limits, out, err)

            def alive(block: bool = False) -> bool:  # wait4, not poll(): it also says how much memory it took
                got, status, usage = os.wait4(proc.pid, 0 if block else os.WNOHANG)
                if got == 0:
                    return True
                proc.returncode = os.waitstatus_to_exitcode(status)
                reaped["rss_mb"] = usage.ru_maxrss / 1024
                return False
            pid = proc.pid
        else:
            proc = self.ctx.Process(target=_child, args=(argv, str(cwd), str(out), str(err), str(rss), limits),
                                    daemon=False)
            proc.start()
            pid, alive = proc.pid, proc.is_alive

        def read_out() -> str:
            return out.read_text(errors="replace") if out.exists() else ""

        timed_out, peak_mb = False, 0.0
        while alive():
            if time.perf_counter() - t0 > timeout:
                timed_out = True
                break
            peak_mb = max(peak_mb, _resident_mb(pid))
            if peak_mb > max_rss_mb:
                break
            if during is not None:
                during(read_out, pid)
            time.sleep(0.02)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # after a hang, and any worker a finished case left behind
        if self.fresh:
            if proc.returncode is None:
                alive(block=True)
            rc = proc.returncode
        else:
            proc.join()
            rc = proc.exitcode
        seconds = time.perf_counter() - t0
        rss_mb = max(peak_mb, float(rss.read_text()) / 1024 if rss.exists() else reaped.get("rss_mb", 0.0))
        text = [p.read_text(errors="replace") if p.exists() else "" for p in (out, err)]
        for p in (out, err, rss):
            p.unlink(missing_ok=True)
        return Result(None if timed_out else rc, text[0], text[1], seconds, rss_mb)

    def _start_fresh(self, argv, cwd, limits, out, err):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        with open(out, "wb") as fo, open(err, "wb") as fe:
            return subprocess.Popen([sys.executable, "-m", "spp_gui", *argv], cwd=cwd, env=env, stdout=fo, stderr=fe,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    preexec_fn=lambda: _apply_limits(limits))  # noqa: PLW1509 - limits must apply before exec


# -- cases and how they are judged ----------------------------------------------------------------------


@dataclass
class Case:
    group: str
    name: str
    argv: list
    expect: str = "refuse"  # refuse: exit 2, one line | ok: exit 0 | fail: a run that stops, exit 1 | any
    check: Callable[[Result], str | None] | None = None  # "wrong: ..." or "security: ..." or None
    limits: Limits = field(default_factory=Limits)
    timeout: float | None = None
    during: Callable | None = None
    max_rss_mb: float = 3000.0


def _one_line_error(err: str) -> bool:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("spp-gui: error:")]
    return len(errors) == 1 and lines[-1] == errors[0]


def judge(case: Case, r: Result, markers: list[Path]) -> tuple[str, str]:
    """The worst thing a user would meet: security, hang, crash, traceback, wrong, else clean."""
    last = (r.err.strip().splitlines() or [""])[-1][:160]
    ran = [m for m in markers if m.exists()]
    for m in ran:
        m.unlink()
    if ran:
        return "security", f"code ran: {ran[0].name} appeared"
    said = case.check(r) if case.check is not None and r.rc is not None else None
    if said and said.startswith("security"):
        return "security", said
    if any(e in r.out + r.err for e in ESCAPES):
        return "security", "raw terminal escape in the output"
    if r.rss_mb > case.max_rss_mb:
        return "crash", f"{r.rss_mb:,.0f} MB of memory (budget {case.max_rss_mb:,.0f})"
    if r.rc is None:
        return "hang", f"no exit in {r.seconds:.0f} s"
    if r.rc < 0 or r.rc not in (0, 1, 2):
        return "crash", f"exit status {r.rc}"
    if "Traceback (most recent call last)" in r.err:
        return "traceback", next((line for line in reversed(r.err.splitlines()) if line.strip()), "")[:160]
    if r.rc == 2 and not _one_line_error(r.err):
        return "traceback", f"exit 2 without one error line: {last}"
    if case.expect == "refuse" and r.rc != 2:
        return "wrong", f"exit {r.rc}, not refused: {last}"
    if case.expect == "ok" and r.rc != 0:
        return "wrong", f"refused a valid input: {last}"
    if case.expect == "fail" and r.rc == 0:
        return "wrong", "reported success"
    if said:
        return "wrong", said
    return "clean", last


# -- comparing weights -----------------------------------------------------------------------------------


def _bytes_equal(a, b) -> bool:
    import torch

    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    if a.numel() == 0:
        return True
    return torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))


def read_reference(path: Path) -> dict | None:
    """What the reference readers (torch.load, safetensors) read from ``path``; None if they refuse it."""
    import torch
    from safetensors.torch import load_file

    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        state = torch.load(path, weights_only=True, map_location="cpu")
        return state if isinstance(state, dict) else None
    except Exception:  # noqa: BLE001 - refused by the reference reader
        return None


def weights_check(out: Path, expected: Callable[[], dict | None]) -> Callable[[Result], str | None]:
    """After exit 0, ``out`` must hold exactly ``expected()`` (tensors compared byte for byte)."""
    def check(r: Result) -> str | None:
        if r.rc != 0:
            return None
        want = expected()
        got = read_reference(out)
        if got is None:
            return f"wrong: exit 0 but {out.name} is not readable"
        if want is None:
            return "wrong: exit 0 on a file the reference reader refuses, and it differs from the original"
        bad = [k for k in want if k not in got or not _bytes_equal(got[k], want[k])]
        return f"wrong: {len(bad)} of {len(want)} tensors differ from the file's, e.g. {bad[0]!r}" if bad else None
    return check


def _state_of(net, cls):
    import runpy

    return runpy.run_path(str(net))[cls]().state_dict()


# -- the classes of issue 13 ---------------------------------------------------------------------------


@dataclass
class Ctx:
    tmp: Path
    rng: random.Random
    cases: int
    net: Path
    evil: Path
    marker: Path
    base: dict
    state: dict
    base_map: Path
    data: Path
    out_count: int = 0

    def out(self, suffix: str = ".safetensors") -> Path:
        self.out_count += 1
        folder = self.tmp / "out"
        folder.mkdir(exist_ok=True)
        return folder / f"w{self.out_count}{suffix}"

    def apply(self, group: str, name: str, source: Path, expect: str, mapping: Path | None = None,
              target: str = "Base", expected: Callable[[], dict | None] | None = None, **kw) -> Case:
        """``apply`` of a mapping onto a model of net.py, from ``source``; weights checked on exit 0."""
        out = self.out()
        want = expected or (lambda: read_reference(source) or self.state)
        return Case(group, name, ["apply", mapping or self.base_map, "--source", source, "--target",
                                  f"{self.net}:{target}", "-o", out], expect, weights_check(out, want), **kw)


def run_toml(ctx: Ctx, folder: Path, **extra: str) -> Path:
    """A run config written as text, the way someone would send one (values are TOML)."""
    sections = {"model": {"spec": json.dumps("spp_gui:alexnet_spp?num_classes=3&width=0.0625&dropout=0.0")},
                "data": {"train": json.dumps(str(ctx.data / "train")), "val": json.dumps(str(ctx.data / "val")),
                         "image_size": "32"},
                "run": {"out": json.dumps(str(folder / "runs")), "name": '"tiny"', "epochs": "2",
                        "batch_size": "8", "log_every": "1"}}
    for dotted, value in extra.items():
        section, _, key = dotted.partition("__")
        sections.setdefault(section, {})[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.toml"
    path.write_text("".join(f"[{n}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
                            for n, keys in sections.items()), encoding="utf-8")
    return path


def g_code(ctx: Ctx, group: str) -> Iterator[Case]:
    from faultgen import code_mapping

    spec = f"{ctx.evil}:Net"
    for side in ("target", "source"):
        # the other side a model that builds: apply and verify get as far as the code
        mapping = code_mapping(ctx.tmp / "code", spec, side, f"{side}.json", "torchvision:alexnet")
        yield Case(group, f"export, evil.py as {side}", ["export", mapping], "any")
        yield Case(group, f"apply, evil.py as {side}", ["apply", mapping, "-o", ctx.out()])
        yield Case(group, f"verify, evil.py as {side}", ["verify", mapping])
    this = importlib.util.find_spec("this").origin  # the standard library's own file: prints on import
    mapping = code_mapping(ctx.tmp / "code", f"{this}:X", "target", "stdlib.json", "torchvision:alexnet")
    zen = "Beautiful is better than ugly"
    yield Case(group, "apply, a stdlib file as target", ["apply", mapping, "-o", ctx.out()],
               check=lambda r: "security: the stdlib file ran" if zen in r.out + r.err else None)
    yield Case(group, "train, model.spec = evil.py:Net",
               ["train", run_toml(ctx, ctx.tmp / "code" / "cfg1", model__spec=json.dumps(spec))], "any",
               check=lambda r: None if r.rc else "wrong: the run went ahead")
    yield Case(group, "train, model.mapping naming evil.py",
               ["train", run_toml(ctx, ctx.tmp / "code" / "cfg2",
                                  model__mapping=json.dumps(str(ctx.tmp / "code" / "target.json")))], "any",
               check=lambda r: None if r.rc else "wrong: the run went ahead")


def g_rezip(ctx: Ctx, group: str) -> Iterator[Case]:
    import torch
    from faultgen import rezipped

    from spp_gui import suggest_mapping

    for name, path, readable in rezipped(ctx.base["pth"], ctx.tmp / "rezip"):
        if name.startswith("views"):
            state = torch.load(path, weights_only=True)
            net = ctx.tmp / "rezip" / "views_net.py"
            net.write_text("import torch\nimport torch.nn as nn\n\n\nclass Views(nn.Module):\n    def __init__(self):\n"
                           "        super().__init__()\n" + "".join(
                               f"        self.register_buffer({k!r}, torch.zeros({tuple(v.shape)}, dtype={v.dtype}))\n"
                               for k, v in state.items()))
            from spp_gui.core.trust import trust_file

            trust_file(net)
            mapping = ctx.tmp / "rezip" / "views.json"
            suggest_mapping(path, f"{net}:Views").save(mapping)
            out = ctx.out()
            yield Case(group, name, ["apply", mapping, "--source", path, "--target", f"{net}:Views", "-o", out],
                       "ok", weights_check(out, lambda p=path: read_reference(p)))
            continue
        yield ctx.apply(group, name, path, "ok" if readable else "refuse",
                        expected=(lambda p=path: read_reference(p)) if readable else None)


def g_paths(ctx: Ctx, group: str) -> Iterator[Case]:
    root = ctx.tmp / "paths" / "a" / "b"
    for i, name in enumerate(("../../escaped", str(ctx.tmp / "paths" / "absolute"), "x/y", "..")):
        folder = root / f"cfg{i}"
        config = run_toml(ctx, folder, run__name=json.dumps(name))
        landed = Path(os.path.normpath(folder / "runs" / name))  # where a run would land, were the name joined

        def check(r, landed=landed, runs=folder / "runs"):
            made = (landed / "config.toml").exists() or (landed.exists() and landed != runs.parent)
            if made and not str(landed).startswith(str(runs) + os.sep):
                return f"security: a run folder was made at {landed}"
            return None
        yield Case(group, f"run.name = {name!r}", ["train", config], check=check)
    from PIL import Image

    for kind in ("absolute", "relative"):
        base = ctx.tmp / "voc" / kind
        outside = base / "outside"
        outside.mkdir(parents=True)
        Image.new("RGB", (120, 80), (90, 60, 30)).save(outside / "victim.jpg")
        (outside / "victim.xml").write_text(
            "<annotation><object><name>dog</name><difficult>0</difficult><bndbox><xmin>10</xmin><ymin>10</ymin>"
            "<xmax>90</xmax><ymax>70</ymax></bndbox></object></annotation>")
        voc = base / "VOCdevkit" / "VOC2007"
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (voc / sub).mkdir(parents=True)
        shutil.copy(outside / "victim.jpg", voc / "JPEGImages" / "000001.jpg")
        shutil.copy(outside / "victim.xml", voc / "Annotations" / "000001.xml")
        line = str(outside / "victim") if kind == "absolute" else "../../../outside/victim"
        (voc / "ImageSets" / "Main" / "train.txt").write_text(f"000001\n{line}\n")
        (voc / "ImageSets" / "Main" / "val.txt").write_text("000001\n")
        out = base / "out"

        def check(r, outside=outside):
            names = sorted(p.name for p in outside.iterdir())
            return None if names == ["victim.jpg", "victim.xml"] else f"security: {outside} now holds {names}"
        yield Case(group, f"prepare-voc, an {kind} list line", ["prepare-voc", voc, out], check=check)


def g_bounds(ctx: Ctx, group: str) -> Iterator[Case]:
    for key, value in (("data__workers", "1000000"), ("run__batch_size", "1000000000"),
                       ("data__image_size", "1000000"), ("run__log_every", "1000000000000"),
                       ("run__epochs", "1000000000")):
        config = run_toml(ctx, ctx.tmp / "bounds" / key, **{key: value})
        yield Case(group, f"{key.replace('__', '.')} = {value}", ["train", config], timeout=30, max_rss_mb=1500)


def g_export(ctx: Ctx, group: str) -> Iterator[Case]:
    from spp_gui.core.export import FORMATS
    from spp_gui.core.mapping import Entry, Mapping

    marker = ctx.tmp / "EXPORTED_CODE_RAN"
    evil = f"\nimport pathlib; pathlib.Path({str(marker)!r}).write_text('x')"
    mapping = Mapping("x.pth", "torchvision:alexnet", "ab" * 32)
    mapping.set(Entry("t" + evil, "s" + evil))
    mapping.set(Entry("cr\rkey", "src\rkey"))
    mapping.set(Entry("u\u2028v\x00w", "fc'\\" + evil + "#"))
    path = ctx.tmp / "export" / "keys.json"
    path.parent.mkdir(parents=True)
    mapping.save(path)
    for fmt in FORMATS:
        def check(r, fmt=fmt):
            if r.rc != 0:
                return None
            try:
                exec(compile(r.out, f"<{fmt} snippet>", "exec"), {})  # noqa: S102 - the point: does it run code?
            except Exception as exc:  # noqa: BLE001
                return f"wrong: the {fmt} snippet does not run: {type(exc).__name__}: {exc}"
            if marker.exists():
                marker.unlink()
                return f"security: the {fmt} snippet ran code from a key"
            return None
        yield Case(group, f"keys with code, as {fmt}", ["export", path, "--as", fmt], "ok", check)
    doc = json.loads(path.read_text())
    doc["source"]["spec"] = "x.pth" + evil
    (path.parent / "spec.json").write_text(json.dumps(doc))
    yield Case(group, "a spec with a newline and code", ["export", path.parent / "spec.json"])


def _garbage_split(root: Path, classes: tuple[str, ...], per_class: int, bad: int) -> None:
    from spp_gui.training.demo_data import write_split

    write_split(root, classes, per_class, 32, seed=0, cluttered=False)
    for cls in classes:
        for image in sorted((root / cls).iterdir())[:bad]:
            image.write_bytes(b"not an image" * 4)


def g_training_data(ctx: Ctx, group: str) -> Iterator[Case]:
    classes = ("circle", "square", "star")
    for label, bad in (("every image unreadable", 8), ("3 of 8 images unreadable", 3)):
        data = ctx.tmp / "unreadable" / str(bad)
        _garbage_split(data / "train", classes, 8, bad)
        _garbage_split(data / "val", classes, 4, min(bad, 4))
        config = run_toml(ctx, data, data__train=json.dumps(str(data / "train")), data__val=json.dumps(str(data / "val")),
                          data__cache='"no"')
        yield Case(group, label, ["train", config], "fail", timeout=60)
    data = ctx.tmp / "vanish"
    shutil.copytree(ctx.data, data)
    config = run_toml(ctx, data, data__train=json.dumps(str(data / "train")), data__val=json.dumps(str(data / "val")),
                      data__cache='"no"', run__epochs="40")

    def delete_after_first_epoch(read_out, pid, folder=data / "train" / "star"):
        if folder.exists() and '"event":"Epoch"' in read_out():
            shutil.rmtree(folder)
    yield Case(group, "a class folder deleted mid-run", ["train", config, "--events-jsonl"], "fail", timeout=90,
               during=delete_after_first_epoch)


def g_special_files(ctx: Ctx, group: str) -> Iterator[Case]:
    from safetensors.torch import save_file

    folder = ctx.tmp / "special"
    folder.mkdir()
    os.mkfifo(folder / "mapping.json")
    os.mkfifo(folder / "ckpt.pth")
    os.mkfifo(folder / "run.toml")
    shard = folder / "sharded"
    shard.mkdir()
    save_file({"a": __import__("torch").ones(2)}, shard / "one.safetensors")
    os.mkfifo(shard / "two.safetensors")
    (shard / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "one.safetensors", "b": "two.safetensors"}}))
    lone = folder / "lone"
    lone.mkdir()
    os.mkfifo(lone / "model.safetensors")
    cases = [("apply, a FIFO as mapping", ["apply", folder / "mapping.json", "-o", ctx.out()]),
             ("inspect, a FIFO as checkpoint", ["inspect", folder / "ckpt.pth"]),
             ("inspect, a FIFO as a shard", ["inspect", shard]),
             ("inspect, a folder whose checkpoint is a FIFO", ["inspect", lone]),
             ("train, a FIFO as run config", ["train", folder / "run.toml"]),
             ("apply, /dev/zero as mapping", ["apply", "/dev/zero", "-o", ctx.out()]),
             ("export, /dev/zero as mapping", ["export", "/dev/zero"]),
             ("train, /dev/zero as run config", ["train", "/dev/zero"]),
             ("inspect, /dev/zero as checkpoint", ["inspect", "/dev/zero"]),
             ("inspect, /dev/urandom as checkpoint", ["inspect", "/dev/urandom"]),
             ("apply, /dev/zero as source", ["apply", ctx.base_map, "--source", "/dev/zero", "--target",
                                             f"{ctx.net}:Base", "-o", ctx.out()])]
    for name, argv in cases:
        yield Case(group, name, argv, timeout=15, max_rss_mb=1500)


def g_layouts(ctx: Ctx, group: str) -> Iterator[Case]:
    from faultgen import hf_cache_snapshot, inflating_pickle, many_shards, pickle_bombs

    from spp_gui import suggest_mapping

    snapshot = hf_cache_snapshot(ctx.tmp / "hub", ctx.state)
    for where in (snapshot, snapshot / "model.safetensors.index.json"):
        yield ctx.apply(group, f"hub cache snapshot ({where.name})", where, "ok", expected=lambda: ctx.state)
    expected = many_shards(ctx.tmp / "shards", 1100)
    mapping = ctx.tmp / "shards.json"
    suggest_mapping(ctx.tmp / "shards", f"{ctx.net}:Many").save(mapping)
    yield ctx.apply(group, "1,100 shards, 256 open files allowed", ctx.tmp / "shards", "ok", mapping, "Many",
                    lambda: expected, limits=Limits(nofile=256))
    from spp_gui.core.mapping import Entry, Mapping

    w_map = Mapping("w.pth", f"{ctx.net}:W")
    w_map.set(Entry("w", "w"))
    w_map.save(ctx.tmp / "bombs.json")
    for name, path in pickle_bombs(ctx.tmp / "bombs"):
        if "tensor" in name:  # tensor data is read when it is used: apply reads it
            yield ctx.apply(group, name, path, "refuse", ctx.tmp / "bombs.json", "W", max_rss_mb=1000, timeout=30)
        else:  # the pickle is read when the file is opened
            yield Case(group, name, ["inspect", path], max_rss_mb=1000, timeout=30)
    # issue 13's own case: 1 MB that inflates to 1 GB peaked at 2.6 GB during inspect
    bomb = inflating_pickle(ctx.tmp / "bombs", 10**9)
    yield Case(group, f"a {bomb.stat().st_size / 1e6:.1f} MB .pth whose data.pkl inflates to 1 GB",
               ["inspect", bomb], max_rss_mb=1500, timeout=90)


def g_mappings(ctx: Ctx, group: str) -> Iterator[Case]:
    from faultgen import malformed_mappings

    for name, path in malformed_mappings(ctx.tmp / "mappings"):
        yield Case(group, name, ["apply", path, "--source", ctx.base["pth"], "--target", f"{ctx.net}:Base",
                                 "-o", ctx.out()])


def g_headers(ctx: Ctx, group: str) -> Iterator[Case]:
    from faultgen import hostile_indexes, strict_safetensors

    folder = ctx.tmp / "headers"
    folder.mkdir()
    for i, (name, blob) in enumerate(strict_safetensors()):
        (folder / f"h{i}.safetensors").write_bytes(blob)
        yield Case(group, name, ["inspect", folder / f"h{i}.safetensors"])
    for name, path in hostile_indexes(folder):
        yield Case(group, name, ["inspect", path])


def g_specs(ctx: Ctx, group: str) -> Iterator[Case]:
    from faultgen import code_mapping

    long_source = code_mapping(ctx.tmp / "specs", "d/" + "x" * 300 + ".pth", "source", "long.json")
    for name, argv in (
        ("spp_gui num_classes=-5", ["inspect", "spp_gui:alexnet_spp?num_classes=-5"]),
        ("torchvision num_classes=-5", ["inspect", "torchvision:resnet18?num_classes=-5"]),
        ("num_classes=1e400", ["inspect", "spp_gui:alexnet_spp?num_classes=1e400"]),
        ("torchvision groups=0", ["inspect", "torchvision:resnet18?groups=0"]),
        ("a 300-character file name", ["inspect", "x" * 300 + ".pth"]),
        ("a 300-character spec option", ["inspect", "spp_gui:alexnet_spp?" + "a" * 300 + "=1"]),
        ("a 5,000-character path", ["inspect", "d/" * 2500 + "x.pth"]),
        ("-o with a 300-character name", ["map", ctx.base["pth"], f"{ctx.net}:Base", "-o", "y" * 300 + ".json"]),
        ("a mapping's 300-character source", ["apply", long_source, "--target", f"{ctx.net}:Base", "-o", ctx.out()]),
    ):
        yield Case(group, name, argv)


def g_configs(ctx: Ctx, group: str) -> Iterator[Case]:
    folder = ctx.tmp / "configs"
    (folder / "taken").parent.mkdir(parents=True)
    (folder / "taken").write_text("a file, not a folder\n")
    for name, extra in (("optim.weight_decay = nan", {"optim__weight_decay": "nan"}),
                        ("optim.lr = -0.001", {"optim__lr": "-0.001"}),
                        ("model.spec num_classes=-5", {"model__spec": '"spp_gui:alexnet_spp?num_classes=-5"'}),
                        ("run.out a file", {"run__out": json.dumps(str(folder / "taken"))}),
                        ("an unknown key", {"run__epochz": "3"}),
                        ("an array nested 5,000 deep", {"run__x": "[" * 5000 + "]" * 5000})):
        yield Case(group, name, ["train", run_toml(ctx, folder / name.split()[0].replace(".", "_") / str(len(extra)),
                                                   **extra)])
    broken = folder / "broken.toml"
    broken.write_text("[run\nname = 'x'\n")
    yield Case(group, "TOML that does not parse", ["train", broken])


def g_outputs(ctx: Ctx, group: str) -> Iterator[Case]:
    folder = ctx.tmp / "outputs"
    folder.mkdir()
    (folder / "dir.json").mkdir()
    (folder / "dir.safetensors").mkdir()
    os.mkfifo(folder / "fifo.safetensors")
    file = folder / "afile"
    file.write_text("x")
    apply = ["apply", ctx.base_map, "--source", ctx.base["pth"], "--target", f"{ctx.net}:Base", "-o"]
    mapit = ["map", ctx.base["pth"], f"{ctx.net}:Base", "-o"]

    def device_kept(r):
        return None if Path("/dev/full").is_char_device() else "security: /dev/full was replaced by a file"
    for name, argv in (("map -o a folder", mapit + [folder / "dir.json"]),
                       ("apply -o a folder", apply + [folder / "dir.safetensors"]),
                       ("apply -o under a file", apply + [file / "w.safetensors"]),
                       ("apply -o a FIFO", apply + [folder / "fifo.safetensors"]),
                       ("map -o /dev/full", mapit + ["/dev/full"]),
                       ("apply -o /dev/full", apply + ["/dev/full"]),
                       ("apply -o in /sys/kernel", apply + ["/sys/kernel/spp-gui.safetensors"])):
        if "/sys/" in name and not Path("/sys/kernel").is_dir():
            continue
        yield Case(group, name, argv, check=device_kept, timeout=15)
    if os.geteuid() != 0:
        readonly = folder / "readonly"
        readonly.mkdir(mode=0o555)
        yield Case(group, "apply -o in a read-only folder", apply + [readonly / "w.safetensors"])
    for suffix, argv in ((".json", mapit), (".safetensors", apply), (".pth", apply)):
        out = folder / f"full{suffix}"
        old = b"the previous file\n"
        out.write_bytes(old)

        def intact(r, out=out, old=old):
            left = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
            if out.read_bytes() != old:
                return f"wrong: {out.name} was changed by a failed write"
            return f"wrong: temporary files left: {left}" if left else None
        yield Case(group, f"a full disk writing {suffix}", argv + [out], check=intact, limits=Limits(fsize=1024))


def g_sigterm(ctx: Ctx, group: str) -> Iterator[Case]:
    from spp_gui.training.demo_data import write_split

    data = ctx.tmp / "long_data"
    write_split(data / "train", ("circle", "square", "star"), 40, 32, seed=0, cluttered=False)
    write_split(data / "val", ("circle", "square", "star"), 8, 32, seed=1, cluttered=False)
    for workers, epoch in ((2, 2), (0, 1)):
        config = run_toml(ctx, ctx.tmp / "sigterm" / str(workers), data__train=json.dumps(str(data / "train")),
                          data__val=json.dumps(str(data / "val")), data__workers=str(workers), data__cache='"no"',
                          run__epochs="1000")
        sent = []

        def stop(read_out, pid, epoch=epoch, sent=sent):
            if sent:
                return
            events = [json.loads(line) for line in read_out().splitlines() if line.startswith('{"event":')]
            if sum(1 for e in events if e.get("event") == "Step" and e.get("epoch") == epoch) >= 3:
                os.killpg(pid, signal.SIGTERM)
                sent.append(time.time())

        def check(r, sent=sent):
            if not sent:
                return "wrong: the run ended before the signal"
            if "cancelled" not in r.err or "acc nan" in r.err or "exited unexpectedly" in r.err:
                return f"wrong: not a clean stop: {r.err.strip().splitlines()[-1:]}"
            return None
        yield Case(group, f"workers={workers}, stopped in epoch {epoch}", ["train", config, "--events-jsonl"],
                   "fail", check, timeout=150, during=stop)


def g_modes(ctx: Ctx, group: str) -> Iterator[Case]:
    folder = ctx.tmp / "modes"
    folder.mkdir()
    mapit = ["map", ctx.base["pth"], f"{ctx.net}:Base", "-o"]
    apply = ["apply", ctx.base_map, "--source", ctx.base["pth"], "--target", f"{ctx.net}:Base", "-o"]

    def mode_is(path, want):
        def check(r):
            got = stat.S_IMODE(os.stat(path).st_mode) if path.exists() else None
            return None if got == want else f"wrong: {path.name} has mode {oct(got) if got is not None else None}, " \
                                             f"not {oct(want)}"
        return check
    for umask, argv, name in ((0o077, mapit, "m077.json"), (0o002, mapit, "m002.json"),
                              (0o077, apply, "w077.safetensors"), (0o022, apply, "w022.pth")):
        path = folder / name
        yield Case(group, f"umask {umask:03o}, new {Path(name).suffix}", argv + [path], "ok",
                   mode_is(path, 0o666 & ~umask), limits=Limits(umask=umask))
    kept = folder / "kept.json"
    kept.write_text("{}")
    kept.chmod(0o640)
    yield Case(group, "a replaced file keeps mode 640", mapit + [kept], "ok", mode_is(kept, 0o640))
    real = folder / "real.json"
    real.write_text("{}")
    link = folder / "link.json"
    link.symlink_to(real.name)

    def through(r):
        if not link.is_symlink():
            return "wrong: the symlink was replaced by a file"
        return None if "spp-gui-mapping" in real.read_text() else "wrong: the file the link names was not written"
    yield Case(group, "-o a symlink is written through", mapit + [link], "ok", through)


def g_escapes(ctx: Ctx, group: str) -> Iterator[Case]:
    import torch
    from faultgen import CLEAR, OSC_TITLE, escape_names_state

    from spp_gui.core.mapping import Entry, Mapping

    folder = ctx.tmp / "escapes"
    folder.mkdir()
    ckpt = folder / "sent.pth"
    torch.save(escape_names_state(), ckpt)
    mapping = Mapping(str(ckpt), f"{ctx.net}:Dst")
    for key in ("fc.weight", "fc.bias", "head.weight", "head.bias"):
        mapping.set(Entry(key, (OSC_TITLE if key.startswith("fc") else CLEAR) + key))
    mapping.save(folder / "m.json")
    m, dst, src = folder / "m.json", f"{ctx.net}:Dst", f"{ctx.net}:Src"
    yield Case(group, "inspect", ["inspect", ckpt], "ok")
    yield Case(group, "map", ["map", ckpt, dst, "--rename", r"^.*?(fc|head)\.=\1.", "-o", folder / "m2.json"], "ok")
    yield Case(group, "apply", ["apply", m, "--target", dst, "-o", ctx.out()], "ok")
    yield Case(group, "verify", ["verify", m, "--source-model", src, "--target", dst, "--input-shape", "2,4"], "ok")
    yield Case(group, "export", ["export", m], "ok")
    yield Case(group, "an error naming a missing key",
               ["apply", m, "--source", ctx.base["pth"], "--target", dst, "-o", ctx.out()])
    yield Case(group, "an error naming the file", ["inspect", folder / f"missing{CLEAR}.pth"])
    data = folder / "data"
    shutil.copytree(ctx.data, data)
    (data / "train" / "star").rename(data / "train" / f"{CLEAR}star")
    (data / "val" / "star").rename(data / "val" / f"{CLEAR}star")
    (data / "train" / f"{CLEAR}star" / "0000.png").write_bytes(b"not an image")
    config = run_toml(ctx, folder, data__train=json.dumps(str(data / "train")), data__val=json.dumps(str(data / "val")),
                      data__cache='"no"', run__name=json.dumps("esc"))
    yield Case(group, "train, a class folder and an unreadable image", ["train", config], "any", timeout=60)
    sent = folder / f"sent{OSC_TITLE}"
    _garbage_split(sent / "train", ("circle", "square", "star"), 4, 4)
    _garbage_split(sent / "val", ("circle", "square", "star"), 2, 2)
    config = run_toml(ctx, folder / "cfg_sent", data__train=json.dumps(str(sent / "train")),
                      data__val=json.dumps(str(sent / "val")), data__cache='"no"')
    yield Case(group, "train, a data folder named with escapes, nothing readable", ["train", config], "fail",
               timeout=60)


def g_casts(ctx: Ctx, group: str) -> Iterator[Case]:
    import tomllib

    import torch

    from spp_gui import suggest_mapping
    from spp_gui.core.mapping import Entry, Mapping

    folder = ctx.tmp / "casts"
    folder.mkdir()
    torch.manual_seed(0)
    torch.save({"fc.weight": torch.randn(2, 4), "fc.bias": torch.randn(2), "steps": torch.tensor(3.7)},
               folder / "float_steps.pth")
    mapping = folder / "m.json"
    suggest_mapping(folder / "float_steps.pth", f"{ctx.net}:Counted").save(mapping)
    out = ctx.out()
    yield Case(group, "a float source for an int64 buffer", ["apply", mapping, "--target", f"{ctx.net}:Counted",
                                                             "-o", out],
               check=lambda r: f"wrong: {out.name} was written" if out.exists() else None)
    torch.save({"conv.weight": torch.zeros(4, 0, 3, 3), "conv.bias": torch.zeros(4)}, folder / "no_channels.pth")
    conv = Mapping(str(folder / "no_channels.pth"), f"{ctx.net}:Conv")
    conv.set(Entry("conv.weight", "conv.weight", {"op": "in_channels"}))
    conv.save(folder / "conv.json")
    out = ctx.out()
    yield Case(group, "in_channels from a source with 0 channels", ["apply", folder / "conv.json", "--target",
                                                                     f"{ctx.net}:Conv", "-o", out])
    data = folder / "da\x01ta\u2028x"
    shutil.copytree(ctx.data, data)
    config = run_toml(ctx, folder, data__train=json.dumps(str(data / "train")), data__val=json.dumps(str(data / "val")),
                      run__name='"cfg"', run__epochs="1")

    def round_trip(r):
        written = folder / "runs" / "cfg" / "config.toml"
        if not written.exists():
            return "wrong: no config.toml"
        try:
            got = tomllib.loads(written.read_text(encoding="utf-8"))["data"]["train"]
        except Exception as exc:  # noqa: BLE001
            return f"wrong: config.toml does not parse: {exc}"
        return None if got == str(data / "train") else f"wrong: config.toml says {got!r}"
    yield Case(group, "config.toml with control characters in a path", ["train", config], "ok", round_trip, timeout=60)


def g_fuzz(ctx: Ctx, group: str) -> Iterator[Case]:
    from faultgen import bit_flips, crafted_safetensors, malicious, truncations, zip_damage

    kinds = {
        "truncated .pth": truncations(ctx.base["pth"], ctx.cases, ctx.rng),
        "truncated .safetensors": truncations(ctx.base["safetensors"], ctx.cases, ctx.rng),
        "bit-flipped .pth": bit_flips(ctx.base["pth"], ctx.cases, ctx.rng),
        "bit-flipped .safetensors": bit_flips(ctx.base["safetensors"], ctx.cases, ctx.rng),
        "crafted headers, zip damage": [*crafted_safetensors(), *zip_damage(ctx.base["pth"])],
    }
    folder = ctx.tmp / "fuzz"
    folder.mkdir()
    for k, (kind, cases) in enumerate(kinds.items()):
        for i, (name, blob) in enumerate(cases):
            path = folder / f"{k}_{i}{'.safetensors' if 'safetensors' in name else '.pth'}"
            path.write_bytes(blob)
            # a damaged file is refused, or (the damage where nothing is read) read exactly as the reference reads it
            yield ctx.apply(f"{group}: {kind}", name, path, "refuse" if kind.startswith("crafted") else "any")
    for name, path in malicious(ctx.tmp / "evil_pickles", ctx.marker):
        yield Case(f"{group}: malicious pickles", name, ["inspect", path])


GROUPS = {  # class: the cases of that class (made only when the class runs)
    "1 code in mapping/config specs": g_code,
    "2 re-zipped .pth, storage > record": g_rezip,
    "3 writes outside the folders": g_paths,
    "4 data.workers and sizes unbounded": g_bounds,
    "5 export snippet injection": g_export,
    "6 training on unreadable data": g_training_data,
    "7 FIFOs and device files": g_special_files,
    "8 hub cache, 1,100 shards, bombs": g_layouts,
    "9 malformed mapping files": g_mappings,
    "9 safetensors headers, indexes": g_headers,
    "9 specs, long names, num_classes": g_specs,
    "9 run configs": g_configs,
    "9 unwritable -o, full disk": g_outputs,
    "9 SIGTERM to a run with workers": g_sigterm,
    "10 umask, modes, symlinks": g_modes,
    "10 terminal escapes in names": g_escapes,
    "10 lossy casts, config.toml": g_casts,
    "fuzz": g_fuzz,
}


# -- kill -9 during saves (in this process's children: the writer is the library, not the CLI) --------


def kill_cases(tmp: Path, kills: int, rng: random.Random) -> Iterator[tuple[str, str, str]]:
    """Fork a writer that saves in a loop; SIGKILL it at a random moment; the file must be whole, and the
    temporary files of the killed writers must be gone after the next write."""
    import torch

    from spp_gui import Mapping
    from spp_gui.core.apply import save_weights
    from spp_gui.core.mapping import Entry
    from spp_gui.core.sources import load_source

    big = {f"t{i}": torch.full((512, 512), float(i)) for i in range(12)}  # 12 MB per save
    mapping = Mapping("a.pth", "spp_gui:alexnet_spp")
    for i in range(3000):
        mapping.set(Entry(f"target.{i}.weight", f"source.{i}.weight", None, "auto:suffix", 0.9, "x" * 40))

    def check_weights(path: Path) -> bool:
        with load_source(path) as src:
            return sorted(src.tensors) == sorted(big) and all(float(src.read(k)[0, 0]) == float(k[1:]) for k in big)

    group = "10 kill -9 during saves"
    jobs = {
        "weights (.safetensors)": (tmp / "w.safetensors", lambda p: save_weights(big, p), check_weights),
        "checkpoint (.pth)": (tmp / "ckpt.pth", lambda p: save_weights(big, p), check_weights),
        "mapping (.json)": (tmp / "m.json", lambda p: mapping.save(p), lambda p: Mapping.load(p) == mapping),
    }
    for name, (path, write, check) in jobs.items():
        write(path)
        t0 = time.perf_counter()  # one save's time spreads the kills over its whole duration
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
            except Exception as exc:  # noqa: BLE001 - a lost file, whatever the reader says
                ok = False
                print(f"  wrong: {group}: {name}: {type(exc).__name__}: {exc}")
            yield group, "clean" if ok else "wrong", f"killed during a save of the {name}"
        write(path)
        left = list(path.parent.glob(f".{path.name}.*.tmp"))
        yield group, "wrong" if left else "clean", f"{name}: {len(left)} temporary files left after the next write"


# -- the table --------------------------------------------------------------------------------------------


def setup(tmp: Path, cases: int, rng: random.Random) -> Ctx:
    import torch
    from faultgen import base_files, evil_module, tiny_net

    from spp_gui import suggest_mapping
    from spp_gui.core.trust import trust_file
    from spp_gui.training.demo_data import write_split

    files = base_files(tmp / "base")
    net = tiny_net(tmp / "net")
    trust_file(net)  # here, in the benchmark: the cases name it on their command lines
    marker = tmp / "CODE_RAN"
    evil = evil_module(tmp / "evil", marker)
    base_map = tmp / "base_map.json"
    suggest_mapping(files["pth"], f"{net}:Base").save(base_map)
    data = tmp / "data"
    write_split(data / "train", ("circle", "square", "star"), 8, 32, seed=0, cluttered=False)
    write_split(data / "val", ("circle", "square", "star"), 4, 32, seed=1, cluttered=False)
    state = torch.load(files["pth"], weights_only=True)
    return Ctx(tmp, rng, cases, net, evil, marker, files, state, base_map, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=25, help="random cases per fuzzed file kind")
    parser.add_argument("--kills", type=int, default=20, help="kills per save kind")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a case may run (some set less)")
    parser.add_argument("--fresh", action="store_true", help="start python -m spp_gui for every case (slow)")
    parser.add_argument("--only", help="run only the classes whose name contains this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="print every case, not only the bad ones")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    table: dict[str, dict[str, int]] = {}

    def count(group: str, outcome: str, name: str, detail: str) -> None:
        row = table.setdefault(group, dict.fromkeys(("tried", *COLUMNS), 0))
        row["tried"] += 1
        row[outcome] += 1
        if outcome != "clean" or args.verbose:
            print(f"  {outcome}: {group}: {name}: {detail}", flush=True)

    t0 = time.perf_counter()
    os.environ.setdefault("SPP_GUI_NO_DOWNLOAD", "1")
    with tempfile.TemporaryDirectory(prefix="spp-faults-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["TORCH_HOME"] = str(tmp / "torch_home")  # nothing from a real cache, nothing written to it
        ctx = setup(tmp, args.cases, rng)
        (tmp / "logs").mkdir()
        (tmp / "cwd").mkdir()
        runner = Runner(tmp / "logs", args.fresh)
        for name, make in GROUPS.items():
            if args.only and args.only not in name:
                continue
            for case in make(ctx, name):
                argv = [str(a) for a in case.argv]
                result = runner.run(argv, tmp / "cwd", case.limits, case.timeout or args.timeout, case.max_rss_mb,
                                    case.during)
                outcome, detail = judge(case, result, [ctx.marker])
                count(case.group, outcome, case.name, f"{detail} ({result.seconds:.1f} s)")
        if not args.only or args.only in "10 kill -9 during saves":
            (tmp / "kills").mkdir()
            for group, outcome, name in kill_cases(tmp / "kills", args.kills, rng):
                count(group, outcome, name, "")
    width = max(len(g) for g in table) + 2
    print(f"\n{'class':<{width}}{'tried':>6}" + "".join(f"{c:>10}" for c in COLUMNS))
    for group, row in table.items():
        print(f"{group:<{width}}{row['tried']:>6}" + "".join(f"{row[c]:>10}" for c in COLUMNS))
    total = {k: sum(r[k] for r in table.values()) for k in ("tried", *COLUMNS)}
    print(f"{'total':<{width}}{total['tried']:>6}" + "".join(f"{total[c]:>10}" for c in COLUMNS))
    print(f"({time.perf_counter() - t0:.0f} s; {'python -m spp_gui' if args.fresh else 'forked'} per case)")
    bad = sum(total[c] for c in COLUMNS if c != "clean")
    bench_row("fault cases through the CLI: clean", f"{total['clean']}/{total['tried']}", "-", None,
              "traceback, hang, crash, wrong, security all 0", bad == 0)


if __name__ == "__main__":
    main()
