"""The Train panel's four live plots, several runs overlaid.

Events only append to per-run lists (``add_*``); the panel's timer calls :meth:`RunPlots.push`,
which hands changed lists to plot items created once per run, one plot per call, so a repaint
never re-lays-out all four plots at once while training shares the cores.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import pyqtgraph as pg
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt

from ..core.atomic import atomic_write, atomic_write_text
from ..training.engine import Epoch, Step
from ..training.metrics import epochs_to_csv

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
SMOOTHING = 0.9  # exponential moving average of the per-iteration loss
PLOT_ORDER = ("iter", "loss", "acc", "lr")
# A plot push re-lays-out and repaints a plot (Python code, sharing the GIL and the cores with
# training): at most one every PLOT_MIN_GAP_S keeps the GUI's share of the machine small.
PLOT_MIN_GAP_S = 0.1


@dataclass
class RunCurves:
    """One run's data and the plot items showing it (created once, then only setData)."""

    name: str
    colour: str
    items: dict[str, pg.PlotDataItem] = field(default_factory=dict)
    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smooth: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)

    def reset(self) -> None:
        for values in (self.epochs, self.steps, self.losses, self.smooth, self.lrs):
            values.clear()


class RunPlots(pg.GraphicsLayoutWidget):
    """Loss and accuracy per epoch, loss per iteration, learning rate; one colour per run."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackground("w")
        self.runs: dict[str, RunCurves] = {}
        self.dirty: set[str] = set()  # plots whose data changed since they were last pushed
        self._next_plot = 0
        self._last_push = 0.0
        self.loss_plot = self._plot(0, 0, "loss per epoch (dashed: train)", "epoch")
        self.acc_plot = self._plot(0, 1, "accuracy per epoch (dashed: train)", "epoch")
        self.iter_plot = self._plot(1, 0, "loss per iteration (thin: raw)", "iteration")
        self.lr_plot = self._plot(1, 1, "learning rate (log scale)", "iteration")
        self.lr_plot.setLogMode(y=True)  # schedules step by factors of 10; a constant lr is a visible line

    def _plot(self, row: int, col: int, title: str, xlabel: str) -> pg.PlotItem:
        plot = self.addPlot(row=row, col=col, title=title)
        plot.setLabel("bottom", xlabel)
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setClipToView(True)
        plot.setDownsampling(auto=True, mode="peak")
        plot.addLegend(offset=(-10, 10))
        return plot

    # -- data ---------------------------------------------------------------------------------
    def curves(self, name: str) -> RunCurves:
        curves = self.runs.get(name)
        if curves is None:
            colour = COLOURS[len(self.runs) % len(COLOURS)]
            curves = RunCurves(name, colour)
            solid, dashed = pg.mkPen(colour, width=2), pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine)
            faint = pg.mkPen(pg.mkColor(colour).lighter(160), width=1)
            dots = {"symbol": "o", "symbolSize": 5, "symbolBrush": colour}
            curves.items = {
                "train_loss": self.loss_plot.plot([], [], pen=dashed),
                "val_loss": self.loss_plot.plot([], [], pen=solid, name=name, **dots),
                "train_acc": self.acc_plot.plot([], [], pen=dashed),
                "val_acc": self.acc_plot.plot([], [], pen=solid, name=name, **dots),
                "raw": self.iter_plot.plot([], [], pen=faint),
                "smooth": self.iter_plot.plot([], [], pen=solid, name=name),
                "lr": self.lr_plot.plot([], [], pen=solid, name=name),
            }
            self.runs[name] = curves
        return curves

    def add_step(self, event: Step) -> None:
        curves = self.curves(event.run)
        first = event.step - len(event.losses) + 1
        for i, loss in enumerate(event.losses):
            curves.steps.append(first + i)
            curves.losses.append(loss)
            prev = curves.smooth[-1] if curves.smooth else loss
            curves.smooth.append(SMOOTHING * prev + (1 - SMOOTHING) * loss)
            curves.lrs.append(event.lr)
        self.dirty.add("iter")

    def add_epoch(self, event: Epoch) -> None:
        self.curves(event.run).epochs.append(event.row())
        self.dirty.update(("loss", "acc", "lr"))

    # -- drawing ------------------------------------------------------------------------------
    def push(self, everything: bool = False) -> None:
        """Hand changed data to one plot (to every changed plot when asked), at most every PLOT_MIN_GAP_S."""
        now = time.perf_counter()
        if not everything and now - self._last_push < PLOT_MIN_GAP_S:
            return
        for _ in range(len(PLOT_ORDER)):
            key = PLOT_ORDER[self._next_plot]
            self._next_plot = (self._next_plot + 1) % len(PLOT_ORDER)
            if key in self.dirty:
                self.dirty.discard(key)
                for curves in self.runs.values():
                    self._push(curves, key)
                self._last_push = now
                if not everything:
                    break

    @staticmethod
    def _push(curves: RunCurves, plot: str) -> None:
        xs = [r["epoch"] for r in curves.epochs]
        if plot in ("loss", "acc"):
            for key in (f"train_{plot}", f"val_{plot}"):
                curves.items[key].setData(xs, [r[key] for r in curves.epochs], skipFiniteCheck=True)
        elif plot == "lr":
            curves.items["lr"].setData(curves.steps, curves.lrs, skipFiniteCheck=True)
        else:
            curves.items["raw"].setData(curves.steps, curves.losses, skipFiniteCheck=True)
            curves.items["smooth"].setData(curves.steps, curves.smooth, skipFiniteCheck=True)

    def clear_runs(self) -> None:
        for plot in (self.loss_plot, self.acc_plot, self.iter_plot, self.lr_plot):
            plot.clear()
            if plot.legend is not None:
                plot.legend.clear()
        self.runs.clear()
        self.dirty.clear()

    # -- export -------------------------------------------------------------------------------
    def export_csv(self, path: str | os.PathLike) -> None:
        """Every run's epoch rows in one CSV, with a ``run`` column (written atomically)."""
        parts = [epochs_to_csv(c.epochs, run=c.name) for c in self.runs.values()]
        header = parts[0].splitlines()[0] if parts else "run"
        body = [line for part in parts for line in part.splitlines()[1:]]
        atomic_write_text(path, "\n".join([header, *body]) + "\n")

    def export_png(self, path: str | os.PathLike) -> None:
        """The four plots as they are on screen, as one PNG (written atomically)."""
        from pyqtgraph.exporters import ImageExporter

        self.push(everything=True)
        image = ImageExporter(self.scene()).export(toBytes=True)
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buffer, "PNG")
        buffer.close()
        with atomic_write(path, "wb") as fh:
            fh.write(bytes(data.data()))
