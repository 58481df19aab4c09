"""What a live redraw of the Train panel's plots costs the GUI thread: steady ranges against pyqtgraph's own,
and earlier runs drawn from the settled layers' cache against their own items.

A run is replayed into a RunPlots widget the size the panel gives it, over two earlier runs read
back from disk: 30 epochs of 24 steps, a Step event every 8 steps. After each event the plots get
the data (``push``) and repaint; the GUI thread's CPU time for that (time.thread_time, the data
handed over plus the repaint it caused) is one redraw. Two set-ups in the same process, in
alternating rounds:
  * steady: the app's plots (ranges that move in steps, axes cached while their range stays, axis
    widths that only grow);
  * pyqtgraph: the same widget with pyqtgraph's defaults (auto-range refitted on every redraw,
    axes repainted from their QPicture, axis widths that shrink again) - how the panel drew before.
Goal: a redraw costs at most half of pyqtgraph's (the GUI thread holds the GIL while it draws, and
on 2 cores it takes its time from training).
Then the same replay over ``--earlier`` runs trained before it in the same session (8: a session of
comparisons; each with its per-iteration loss and lr curves), also alternating:
  * settled: the app's plots, earlier runs painted once into each plot's SettledLayer and replayed
    from its cache;
  * items: every earlier run drawn by its own pyqtgraph items, repainted with each redraw (as before
    the layers).
Goal: with 8 earlier runs a redraw costs at most 0.6x the items' (it stays near the cost with none).
Usage: QT_QPA_PLATFORM=offscreen python benchmarks/plot_draw.py [--rounds 5] [--epochs 30] [--earlier 8]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

from _report import bench_row

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication, QGraphicsItem  # noqa: E402

from spp_gui.gui.run_plots import RunPlots  # noqa: E402
from spp_gui.training.engine import Epoch, Started, Step  # noqa: E402

STEPS_PER_EPOCH, EVERY = 24, 8
SIZE = (754, 806)  # the plots' size in a 1200 x 900 Train panel


def pyqtgraph_defaults(plots: RunPlots) -> None:
    """Undo the app's range keeping and axis settings: pyqtgraph's auto-range refits on every redraw."""
    for steady in plots.ranges.values():
        steady.plot.getViewBox().sigStateChanged.disconnect(steady._on_state)
        steady.following = False  # fit() hands nothing to the view
        steady.plot.enableAutoRange()
    for plot in plots.plots:
        for name in ("bottom", "left"):
            plot.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.NoCache)
            plot.getAxis(name).setStyle(autoReduceTextSpace=True)


def settle(app: QApplication) -> None:
    """Deliver the repaints a push caused (several passes: a repaint may ask for another)."""
    for _ in range(3):
        app.processEvents()


def earlier_run(epochs: int, scale: float) -> list[dict[str, float]]:
    return [{"epoch": float(e), "train_loss": scale * 1.8 / e ** 0.5, "val_loss": scale * 1.9 / e ** 0.5,
             "train_acc": 0.9 - 0.7 / e ** 0.5, "val_acc": 0.85 - 0.7 / e ** 0.5, "lr": 1e-3} for e in range(1, epochs + 1)]


def run_events(name: str, epochs: int, scale: float = 1.0) -> list[Started | Step | Epoch]:
    """A run's events as the engine sends them: Started, a Step every EVERY steps, an Epoch per epoch."""
    total = epochs * STEPS_PER_EPOCH
    events: list[Started | Step | Epoch] = [Started(name, "", "cpu", ["a"], 8 * STEPS_PER_EPOCH, 8, STEPS_PER_EPOCH,
                                                    epochs, "scratch")]
    step = 0
    for epoch in range(1, epochs + 1):
        for _ in range(STEPS_PER_EPOCH // EVERY):
            losses = [scale * (2.0 / (1 + 0.01 * (step + i)) + 0.15 * math.sin(1.7 * (step + i)))
                      for i in range(1, EVERY + 1)]
            step += EVERY
            events.append(Step(name, epoch, step, total, losses, 1e-3 * 0.1 ** (epoch // 15), 500.0, step / total))
        events.append(Epoch(name, epoch, epochs, scale * 1.7 / epoch ** 0.4, 0.9 - 0.6 / epoch ** 0.4,
                            scale * 1.8 / epoch ** 0.4, 0.85 - 0.6 / epoch ** 0.4, 1e-3, 1.0, 500.0, 0, False))
    return events


def feed(plots: RunPlots, event: Started | Step | Epoch) -> None:
    if isinstance(event, Started):
        plots.start_run(event)
    elif isinstance(event, Step):
        plots.add_step(event)
    else:
        plots.add_epoch(event)


def replay(app: QApplication, steady: bool, epochs: int, earlier: int = 2, layers: bool = True,
           trained: bool = False) -> list[float]:
    """One run replayed into fresh plots over ``earlier`` runs (read back, or ``trained`` before it in
    the session); the GUI thread's CPU seconds of each redraw. Without ``layers`` the earlier runs
    never settle: their own items draw them."""
    plots = RunPlots(dark=False)
    plots.resize(*SIZE)
    plots.show()
    if not steady:
        pyqtgraph_defaults(plots)
    if not layers:
        plots._settle = lambda curves: None  # type: ignore[method-assign]
    for i in range(earlier):
        scale = 1.0 - 0.4 * i / max(1, earlier - 1)
        if trained:
            for event in run_events(f"earlier-{i}", epochs, scale):
                feed(plots, event)
        else:
            plots.add_finished_run(f"earlier-{i}", earlier_run(epochs, scale))
    plots.push(everything=True)
    settle(app)
    live = run_events("live", epochs)
    feed(plots, live[0])
    costs = []
    for event in live[1:]:
        feed(plots, event)
        cpu = time.thread_time()
        plots.push(everything=True)
        settle(app)
        costs.append(time.thread_time() - cpu)
    plots.close()
    plots.deleteLater()
    settle(app)
    return costs


def summary(ours_name: str, theirs_name: str, means: dict[bool, list[float]]) -> tuple[float, float, float]:
    """Print both sides' median redraw with their spread and the per-round ratio; return the three."""
    ours, theirs = statistics.median(means[True]), statistics.median(means[False])
    ratios = sorted(o / t for o, t in zip(means[True], means[False], strict=True))
    ratio = statistics.median(ratios)
    print(f"{ours_name} {1000 * ours:.2f} ms ({1000 * min(means[True]):.2f}-{1000 * max(means[True]):.2f}), "
          f"{theirs_name} {1000 * theirs:.2f} ms ({1000 * min(means[False]):.2f}-{1000 * max(means[False]):.2f}); "
          f"per-round ratio {ratio:.3f}x ({ratios[0]:.3f}-{ratios[-1]:.3f})")
    return ours, theirs, ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--earlier", type=int, default=8, help="earlier runs overlaid in the layers' comparison")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    replay(app, True, 3)  # warm: fonts, the first paint
    means: dict[bool, list[float]] = {True: [], False: []}  # per round: the mean redraw (what the CPU share adds up)
    for r in range(args.rounds):
        line = []
        for steady in (False, True):  # alternating, so a slower moment hits both
            costs = replay(app, steady, args.epochs)
            means[steady].append(statistics.fmean(costs))
            line.append(f"mean {1000 * means[steady][-1]:.2f} ms, median {1000 * statistics.median(costs):.2f} ms, "
                        f"max {1000 * max(costs):.1f} ms")
        print(f"round {r + 1}: steady ranges {line[1]}; pyqtgraph's auto-range {line[0]}", flush=True)
    ours, theirs, ratio = summary(f"{args.rounds} rounds of {args.epochs * (STEPS_PER_EPOCH // EVERY + 1)} redraws, "
                                  "mean redraw: steady", "pyqtgraph", means)
    bench_row("live plot redraw, GUI-thread CPU (mean)", f"{1000 * ours:.2f} ms",
              f"pyqtgraph auto-range {1000 * theirs:.2f} ms", ratio, "<= 0.5x", ratio <= 0.5)
    over: dict[bool, list[float]] = {True: [], False: []}
    for r in range(args.rounds):
        for layers in ((False, True) if r % 2 == 0 else (True, False)):
            over[layers].append(statistics.fmean(replay(app, True, args.epochs, args.earlier, layers, trained=True)))
        print(f"round {r + 1}, {args.earlier} earlier runs: settled layers mean {1000 * over[True][-1]:.2f} ms, "
              f"their own items {1000 * over[False][-1]:.2f} ms", flush=True)
    layered, items, ratio = summary(f"{args.earlier} earlier runs, mean redraw: settled layers", "own items", over)
    print(f"with 2 earlier runs (above): {1000 * ours:.2f} ms")
    bench_row(f"live plot redraw over {args.earlier} earlier runs (mean)", f"{1000 * layered:.2f} ms",
              f"own items {1000 * items:.2f} ms", ratio, "<= 0.6x", ratio <= 0.6)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
