"""``spp-gui train``: run configs through the engine (here, or under torchrun), progress printed, runs compared.

The demo and prepare-voc subcommands print through :func:`say`; runs are driven by ``training.events.drive``."""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..training.config import ConfigError, RunConfig
from ..training.distributed import cluster_command, env_rank, launch_command, per_rank_batch
from ..training.engine import RunControl, RunResult, RunStatus, runs_folder, train
from ..training.event_stream import JsonLinesEmitter
from ..training.events import Epoch, Event, Failed, Started, Step, Stopped, describe, drive
from ..training.plot import render_curves
from .common import printable


class ProgressPrinter:
    """A one-line progress bar on a terminal; one line per epoch otherwise (logs stay readable)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.perf_counter()
        self.total = 1

    def __call__(self, event: Event) -> None:
        if isinstance(event, Started):
            self.t0, self.total = time.perf_counter(), max(1, event.steps_per_epoch * event.epochs)
        elif isinstance(event, Step) and self.tty:
            done = event.step / self.total
            elapsed = time.perf_counter() - self.t0
            eta = elapsed / done - elapsed if done > 0 else 0
            bar = "#" * int(30 * done)
            self.stream.write(f"\r[{bar:<30}] {done:5.1%} epoch {event.epoch} loss {event.losses[-1]:.4f} "
                              f"{event.images_per_s:6.0f} img/s ETA {eta:5.0f}s")
            self.stream.flush()
            return
        if self.tty and isinstance(event, Epoch):
            self.stream.write("\r" + " " * 100 + "\r")
        elif self.tty and isinstance(event, (Failed, Stopped)):
            self.stream.write("\n")
        text = describe(event)
        if text is not None:
            say(text, file=self.stream)


def say(*parts: object, file=None, **kw) -> None:
    """print, with control characters escaped line by line: folder names, class names and messages
    come from files and folders someone else made (an escape sequence in a name must not reach the
    terminal raw)."""
    text = " ".join(str(p) for p in parts)
    print("\n".join(printable(line) for line in text.split("\n")), file=file if file is not None else sys.stdout, **kw)


def launch(args: argparse.Namespace) -> int:
    """``--nproc N``: this same command under torchrun on this machine; its output streams through."""
    extra = [*(["--compare"] if args.compare else []), *(["--figure", args.figure] if args.figure else []),
             *(["--events-jsonl"] if args.events_jsonl else []),
             *(["--trust-code"] if getattr(args, "trust_code", False) else [])]
    command = launch_command(args.configs, args.nproc, extra)
    say(f"launching {args.nproc} processes: torchrun --standalone --nproc_per_node {args.nproc} -m spp_gui train "
          + " ".join(args.configs), file=sys.stderr)
    previous = signal.getsignal(signal.SIGTERM)
    with subprocess.Popen(command) as proc:  # stdout/stderr inherited: each line appears as it is printed
        signal.signal(signal.SIGTERM, lambda signum, frame: pass_on_sigterm_once(proc))
        try:
            return proc.wait()
        except KeyboardInterrupt:  # the children got the same Ctrl-C; let torchrun shut them down
            return proc.wait()
        finally:  # called in-process (a script, the tests), the caller's SIGTERM is its own again
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def pass_on_sigterm_once(proc: subprocess.Popen) -> None:
    """The launcher's SIGTERM: torchrun passes it on to its ranks, which stop after their step.

    Only the first is passed on. torchrun waits up to 30 s for its ranks after one SIGTERM, but
    another one arriving during that wait aborts its shutdown: it exits at once and the ranks,
    which die with it (``die_with_parent``), are killed before they end their step. A script
    or user that repeats the signal would lose rank 0's ``Stopped`` and its last metrics.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    proc.send_signal(signal.SIGTERM)


def stop_on_sigterm(control: RunControl) -> None:
    """SIGTERM (the GUI's Stop, torchrun shutting its ranks down, a cluster's scheduler) ends the run
    after its current step, like Stop in the GUI: checkpoints and metrics so far are kept.

    Sent to the whole process group, it also kills the DataLoader's workers. PyTorch's SIGCHLD
    handler would then raise wherever this process happens to be (printing an event, say); once
    a stop is requested it is replaced by one that does nothing (not SIG_DFL: a SIGCHLD already
    pending would then raise "ignored due to race condition"), and the engine takes the lost
    workers, met where it reads the next batch, as the stop.
    """
    def handler(signum, frame) -> None:
        control.stop()
        if hasattr(signal, "SIGCHLD"):
            signal.signal(signal.SIGCHLD, _ignore_signal)

    signal.signal(signal.SIGTERM, handler)


#: what ``--control-stdin`` reads, one word per line
CONTROL_WORDS = ("pause", "resume", "stop")


def follow_stdin(control: RunControl, stream=None) -> threading.Thread:
    """``--control-stdin``: ``pause``, ``resume`` and ``stop`` lines on stdin drive the run, as the
    GUI's buttons drive a run in its own thread (the Train panel's "own process" runs).

    End of input is taken as stop: the app that started this process has gone (closed or
    crashed), so the run ends after its current step and keeps its checkpoints, rather than
    going on with no one to report to. Other lines are ignored.
    """
    stream = stream if stream is not None else sys.stdin

    def read() -> None:
        for line in stream:
            word = line.strip().lower()
            if word == "pause":
                control.pause()
            elif word == "resume":
                control.resume()
            elif word == "stop":
                control.stop()
        control.stop()

    thread = threading.Thread(target=read, name="spp-gui control", daemon=True)
    thread.start()
    return thread


def event_printer(events_jsonl: bool) -> Callable[[Event], None]:
    """Progress on stderr (or stdout); with ``events_jsonl`` each event also as a JSON line on stdout."""
    listeners: list[Callable[[Event], None]] = [*([JsonLinesEmitter(sys.stdout)] if events_jsonl else []),
                                                ProgressPrinter()]

    def printer(event: Event) -> None:
        for listener in listeners:
            listener(event)
    return printer


def _ignore_event(event: Event) -> None:
    """The listener of a torchrun rank other than 0: it prints nothing."""


def _ignore_signal(signum, frame) -> None:
    """A Python-level handler that does nothing (see ``stop_on_sigterm``)."""


def summary_line(name: str, result: RunResult) -> str:
    """The line a run ends with; a run stopped or failed before its first epoch ended has no accuracy."""
    if not result.epochs:
        return f"{name}: {result.status}, no epoch was evaluated, {result.run_dir}"
    return (f"{name}: {result.status}, best val acc {result.best_val_acc:.3f} (epoch {result.best_epoch}), "
            f"final val acc {result.final_val_acc:.3f}, {result.run_dir}")


def die_with_parent() -> None:
    """Under torchrun on Linux: end this rank when its launcher dies, even by SIGKILL.

    torchrun starts each rank in a session of its own, so killing the launcher would otherwise
    leave the ranks running (holding GPUs) with no one to report to.
    """
    if not sys.platform.startswith("linux"):
        return
    launcher = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL) != 0:  # PR_SET_PDEATHSIG
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != launcher:  # the launcher was already gone before prctl took effect
        os._exit(1)


def cmd_train(args: argparse.Namespace) -> int:
    status = _train_configs(args)
    if env_rank()[1] > 1:
        # Under torchrun, the interpreter's teardown sometimes aborts in torch's distributed
        # threads ("terminate called without an active exception", about one run in twenty here)
        # after the run has ended and every file is written; leave without it, so the exit status
        # torchrun sees is the run's own.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _train_configs(args: argparse.Namespace) -> int:
    if getattr(args, "control_stdin", False) and (args.nproc is not None or env_rank()[1] > 1):
        raise ConfigError("--control-stdin drives one process; a torchrun job stops on SIGTERM (it cannot pause)")
    configs = [RunConfig.load(p) for p in args.configs]  # all read first: a typo fails before hours of training
    if args.print_torchrun or args.nproc is not None:
        world = max(1, args.nproc or 1) * (max(1, args.nnodes) if args.print_torchrun else 1)
        for path, cfg in zip(args.configs, configs, strict=True):
            try:  # caught here once, rather than by every rank after startup
                per_rank_batch(cfg.run.batch_size, world)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
    if args.print_torchrun:
        say(cluster_command(args.configs, args.nproc or 1, args.nnodes, args.rdzv_endpoint))
        return 0
    for cfg in configs:  # every run's folder checked before the first run starts
        runs_folder(cfg)
    if args.nproc is not None:
        return launch(args)
    rank, world, _ = env_rank()
    main = rank == 0
    if "TORCHELASTIC_RUN_ID" in os.environ:
        die_with_parent()
    control = RunControl()
    previous = signal.getsignal(signal.SIGTERM)
    stop_on_sigterm(control)
    if getattr(args, "control_stdin", False):
        follow_stdin(control)
    try:
        return _run_all(args, configs, control, world, main)
    finally:  # as in ``launch``: a SIGTERM after the runs is the caller's, not a stale stop request
        if world == 1:  # a torchrun rank leaves right after (cmd_train), and a late SIGTERM still stops it
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _run_all(args: argparse.Namespace, configs: list[RunConfig], control: RunControl, world: int,
             main: bool) -> int:
    results: dict[str, RunResult] = {}
    # under torchrun only rank 0 prints; with --events-jsonl it also writes each event to stdout
    printer = event_printer(args.events_jsonl) if main else _ignore_event
    status = 0
    for path, cfg in zip(args.configs, configs, strict=True):
        if control.stop_requested:
            break
        result = drive(train(cfg, control), printer)
        # a retry on one rank alone would leave the others waiting, so not under torchrun
        while result.status == RunStatus.FAILED and result.retry_batch_size and args.retry_half and world == 1:
            say(f"retrying {path} at batch size {result.retry_batch_size}", file=sys.stderr)
            cfg.run.batch_size = result.retry_batch_size
            result = drive(train(cfg, control), printer)
        if result.status == RunStatus.FAILED and result.retry_batch_size and not args.retry_half and main:
            say(f"(rerun with --retry-half to retry at batch size {result.retry_batch_size})", file=sys.stderr)
        if result.status != RunStatus.FINISHED:
            status = 1
        results[cfg.run.name or Path(result.run_dir).name] = result
    if not main:
        return status
    out = sys.stderr if args.events_jsonl else sys.stdout  # stdout carries only events then
    for name, result in results.items():
        say(summary_line(name, result), file=out)
    if args.compare:
        figure = Path(args.figure) if args.figure else Path(next(iter(results.values())).run_dir).parent / "compare.png"
        render_curves({name: r.epochs for name, r in results.items()}, figure)
        say(f"comparison figure: {figure}", file=out)
    return status


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a TOML run config (several: --compare them)")
    p.add_argument("configs", nargs="+", metavar="RUN.toml")
    p.add_argument("--compare", action="store_true", help="draw all runs in one figure, like the seed's")
    p.add_argument("--figure", help="where --compare writes its PNG (default: beside the run folders)")
    p.add_argument("--retry-half", action="store_true", help="on out-of-memory, retry at half the batch size")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="run on N processes of this machine under torchrun (one per GPU; gloo on CPU); "
                        "run.batch_size is the global batch, split across them")
    p.add_argument("--print-torchrun", action="store_true",
                   help="print the torchrun line to run on each node of a cluster, and exit")
    p.add_argument("--events-jsonl", action="store_true",
                   help="print every training event as one JSON line on stdout (progress text goes to stderr); "
                        "what the GUI reads from a torchrun job")
    p.add_argument("--control-stdin", action="store_true",
                   help="read pause, resume and stop lines on stdin; end of input stops the run after its step "
                        "(how the GUI drives a run in its own process)")
    p.add_argument("--nnodes", type=int, default=1, help="with --print-torchrun: number of machines (default 1)")
    p.add_argument("--rdzv-endpoint", default="HOST:29500", metavar="HOST:PORT",
                   help="with --print-torchrun: address of the first machine (default HOST:29500)")
    p.set_defaults(func=cmd_train)
