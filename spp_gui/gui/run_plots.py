"""The Train panel's four live plots, several runs overlaid.

Events only append to per-run lists (``add_*``); the panel's timer calls :meth:`RunPlots.push`,
which hands changed lists to plot items created once per run (only the runs and plots whose data
changed, all of them in one go, so loss and accuracy always show the same epoch), no sooner than a
budget of the GUI thread's CPU time allows (``DRAW_SHARE``), measured on the draws themselves. The
plots' ranges move in steps (:mod:`.plot_range`), so most redraws leave the axes as they were.
While the plots are off screen (``on_screen``: another tab in front, the window minimised) the panel
pushes nothing; ``shown`` tells it when to draw what arrived meanwhile, in one push.

Runs that are over (another run has started, or read back from their folders) are drawn by one
:class:`SettledLayer` per plot, which Qt keeps as a pixmap: a redraw for the live run replays that
pixmap instead of repainting every earlier run's curves, so it costs the same with one run overlaid
or twenty.

One legend for all four plots sits below them (never over a curve); a run can be hidden from
every plot at once, by the panel's run list or a click on its legend entry.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import cast

import pyqtgraph as pg
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QGraphicsItem

from ..core.atomic import atomic_write, atomic_write_text
from ..training.engine import Epoch, Started, Step
from ..training.metrics import epochs_to_csv
from .plot_range import SteadyRange

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
DARK_COLOURS = ["#5aa9ff", "#ff6b6b", "#5fd35f", "#ffa94d", "#c49cff", "#d9a88c"]
LIGHT_THEME = {"background": "w", "foreground": "#333333", "grid": 0.2}
DARK_THEME = {"background": "#1e1f22", "foreground": "#d4d4d4", "grid": 0.3}
SMOOTHING = 0.9  # exponential moving average of the per-iteration loss
PLOT_ORDER = ("iter", "loss", "acc", "lr")
# A push repaints the plots it changed: Python and Qt code on the GUI thread, which holds the GIL all
# the while (PySide keeps it through Qt's own painting) and takes a core from training. So drawing gets
# a budget: after a draw that took c seconds of the GUI thread's CPU (its setData calls and the repaint
# they caused, a zoom's repaints too), the next one waits c / DRAW_SHARE, between PLOT_MIN_GAP_S and
# PLOT_MAX_GAP_S. Measured on 2 cores (benchmarks/gui_responsiveness.py, 24-epoch runs of the small
# model): a push and its repaint of all four plots cost 7-9 ms with steady ranges, so at 0.5% the curves
# move every 1.5-2 s and the GUI thread's whole CPU time while training is 10-17 ms per s of training
# (18-31 at 1% with a 1 s cap, measured alternately in one process): CPU the 2-core training team
# would otherwise have had.
DRAW_SHARE = 0.005
PLOT_MIN_GAP_S = 0.1
PLOT_MAX_GAP_S = 2.0
EXPORT_SCALE = 2  # PNGs at twice the on-screen size: sharp in documents and on high-DPI screens


def palette_is_dark(palette: QPalette | None = None) -> bool:
    """The app's palette is a dark one (its window colour is darker than mid-grey)."""
    if palette is None:
        app = cast(QApplication | None, QApplication.instance())  # a QApplication: the plots are widgets
        palette = app.palette() if app is not None else QPalette()
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


class EpochAxis(pg.AxisItem):
    """Ticks on whole epochs only: an epoch axis never reads 1.5."""

    def __init__(self, orientation: str = "bottom", **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self.enableAutoSIPrefix(False)

    def tickValues(self, minVal: float, maxVal: float, size: float):  # noqa: N802, N803 - pyqtgraph's names
        levels = [(spacing, [v for v in values if float(v).is_integer()])
                  for spacing, values in super().tickValues(minVal, maxVal, size) if spacing >= 1]
        if not any(values for _, values in levels):  # zoomed in to within an epoch
            low, high = sorted((minVal, maxVal))
            levels = [(1.0, [float(v) for v in range(math.ceil(low), math.floor(high) + 1)])]
        return levels

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        return [str(int(round(v))) for v in values]


class LrAxis(pg.AxisItem):
    """A log axis labelled with plain numbers (1e-3, 3e-4), also when the lr spans less than a decade."""

    STEPS = ((1,), (1, 2, 5), (1, 2, 3, 5, 7), tuple(range(1, 10)))

    def tickValues(self, minVal: float, maxVal: float, size: float):  # noqa: N802, N803 - pyqtgraph's names
        if not self.logMode:
            return super().tickValues(minVal, maxVal, size)
        low, high = sorted((minVal, maxVal))
        most = max(2, int(size / 25))  # a label needs about 25 px
        for mantissas in self.STEPS:  # decades first, then 1-2-5 ..., until two ticks show
            values = [d + math.log10(m) for d in range(math.floor(low), math.ceil(high) + 1) for m in mantissas]
            values = [v for v in values if low <= v <= high]
            if len(values) >= 2:  # a finer step is only reached with fewer than two ticks: a few at most
                thin = math.ceil(len(values) / most) if mantissas == self.STEPS[0] else 1
                return [(1.0, values[::thin])]
        # less than one step of 1..9 (a nearly constant lr): evenly spaced plain values
        a, b = 10 ** low, 10 ** high
        spacing, _ = self.tickSpacing(a, b, size)[-1]
        first = math.ceil(a / spacing)
        values = [math.log10(i * spacing) for i in range(first, int(b / spacing) + 1) if i > 0]
        return [(1.0, values or [(low + high) / 2])]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        if not self.logMode:
            return super().tickStrings(values, scale, spacing)
        return [lr_label(10 ** v) for v in values]


def lr_label(value: float) -> str:
    """1e-3, 2.5e-4, 0.01: the way a learning rate is written in a config."""
    if value >= 0.01:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


@dataclass
class RunCurves:
    """One run's data and the plot items showing it (created once, then only setData)."""

    name: str
    colour: str
    items: dict[str, pg.PlotDataItem] = field(default_factory=dict)
    sample: pg.PlotDataItem | None = None  # what the shared legend shows for the run (in no plot)
    visible: bool = True
    settled: bool = False  # drawn by the plots' SettledLayers, its own items hidden
    epochs: list[dict[str, float]] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smooth: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    planned_epochs: int = 0  # from the run's Started event (or the epochs read back): the x ranges' extent
    planned_steps: int = 0
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)  # plot -> its finite y values' extent

    def reset(self) -> None:
        for values in (self.epochs, self.steps, self.losses, self.smooth, self.lrs):
            values.clear()
        self.bounds.clear()

    def widen(self, plot: str, *values: float) -> None:
        """Take finite ``values`` into ``plot``'s y extent (kept as data arrives: no scan per redraw)."""
        finite = [v for v in values if math.isfinite(v)]
        if finite:
            low, high = self.bounds.get(plot, (math.inf, -math.inf))
            self.bounds[plot] = (min(low, *finite), max(high, *finite))


class SettledLayer(pg.GraphicsObject):
    """All settled runs' curves in one plot, painted as one item that Qt caches as a pixmap.

    Every curve overlaid in a plot used to be repainted whenever the live run's curve moved (its
    repaint region covers theirs): about 2 ms per earlier run and redraw here, all of it on the GUI
    thread with the GIL held. The layer paints its members' own pyqtgraph items (hidden themselves,
    so the scene does not paint them too) into a cache that is replayed while the view stays; a new
    member, a run shown or hidden, or a change of the view's range renders it again.
    """

    def __init__(self, view: pg.ViewBox) -> None:
        super().__init__()
        self.view = view
        self.members: list[tuple[pg.PlotDataItem, RunCurves]] = []
        self.paints = 0  # times the members were painted (not replayed from the cache): for tests, benchmarks
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.setZValue(-1)  # under the live run's curves, as earlier runs are under later ones
        view.addItem(self, ignoreBounds=True)  # the ViewBox's own: PlotItem.clear() leaves it in place
        view.sigRangeChanged.connect(self.refresh)

    def add(self, item: pg.PlotDataItem, curves: RunCurves) -> None:
        self.members.append((item, curves))
        self.refresh()

    def discard(self, curves: RunCurves) -> None:
        self.members = [(item, c) for item, c in self.members if c is not curves]
        self.refresh()

    def clear(self) -> None:
        self.members.clear()
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        """Paint again (and re-render the cache): members, their visibility or the view changed."""
        self.prepareGeometryChange()
        self.update()

    def boundingRect(self):  # noqa: N802 - Qt's name
        return self.view.viewRect() if self.members else pg.QtCore.QRectF()

    def paint(self, painter, option, widget=None) -> None:
        self.paints += 1
        for item, curves in self.members:
            if not curves.visible:
                continue
            for part in (item.curve, item.scatter):  # pyqtgraph's order: the line, then its symbols
                if part.isVisibleTo(item):
                    painter.save()  # the scatter resets the painter's transform
                    part.paint(painter, option, widget)
                    painter.restore()


class RunPlots(pg.GraphicsLayoutWidget):
    """Loss and accuracy per epoch, loss per iteration, learning rate; one colour per run."""

    runs_changed = Signal()  # a run was added, or all were cleared
    visibility_changed = Signal(str, bool)  # a run was shown or hidden
    shown = Signal()  # the plots came (back) on screen: a tab brought to the front, a window shown

    def __init__(self, parent=None, dark: bool | None = None) -> None:
        super().__init__(parent)
        self.dark = palette_is_dark() if dark is None else dark
        self.theme = DARK_THEME if self.dark else LIGHT_THEME
        self.colours = DARK_COLOURS if self.dark else COLOURS
        self.setBackground(self.theme["background"])
        self.runs: dict[str, RunCurves] = {}
        self.dirty: set[str] = set()  # plots whose data changed since they were last pushed
        self._stale: dict[str, set[str]] = {key: set() for key in PLOT_ORDER}  # and the runs that changed in each
        self._next_push = 0.0  # perf_counter time before which a push waits (unless asked for everything)
        self._settle_after_push: set[str] = set()  # runs read back: they settle once their data is pushed
        self.draw_cpu_s = 0.0  # GUI-thread CPU spent drawing since the last push (pushing, then painting)
        self.draws = 0  # pushes that handed data to a plot (for tests and benchmarks)
        self.loss_plot = self._plot(0, 0, "loss (dashed: train)", "epoch", EpochAxis())
        self.acc_plot = self._plot(0, 1, "accuracy (dashed: train)", "epoch", EpochAxis())
        self.iter_plot = self._plot(1, 0, "loss per iteration (thin: raw)", "iteration")
        self.lr_plot = self._plot(1, 1, "learning rate (log)", "iteration", left=LrAxis("left"))
        self.lr_plot.setLogMode(y=True)  # schedules step by factors of 10; a constant lr is a visible line
        self.layers = {plot.vb: SettledLayer(plot.vb) for plot in self.plots}
        self.ranges = {key: SteadyRange(plot, 1.0 if key in ("loss", "acc") else 0.0)
                       for key, plot in zip(PLOT_ORDER, (self.iter_plot, self.loss_plot, self.acc_plot, self.lr_plot),
                                            strict=True)}
        self.legend = pg.LegendItem(colCount=4, labelTextColor=self.theme["foreground"], frame=False)
        self.legend.setFlag(self.legend.GraphicsItemFlag.ItemIgnoresTransformations, False)  # scales in exports
        self.addItem(self.legend, row=2, col=0, colspan=2)
        layout = self.ci.layout
        for row, stretch in ((0, 10), (1, 10), (2, 0)):  # the legend row takes only what it needs
            layout.setRowStretchFactor(row, stretch)
        self.legend.sigSampleClicked.connect(self._on_sample_clicked)

    @property
    def plots(self) -> tuple[pg.PlotItem, ...]:
        return self.loss_plot, self.acc_plot, self.iter_plot, self.lr_plot

    def _plot(self, row: int, col: int, title: str, xlabel: str, bottom: pg.AxisItem | None = None,
              left: pg.AxisItem | None = None) -> pg.PlotItem:
        axes = {k: v for k, v in (("bottom", bottom), ("left", left)) if v is not None}
        plot = self.addPlot(row=row, col=col, axisItems=axes)
        foreground = self.theme["foreground"]
        plot.setTitle(title, color=foreground, size="10pt")
        plot.setLabel("bottom", xlabel, color=foreground)
        for name in ("bottom", "left"):
            plot.getAxis(name).setPen(foreground)
            plot.getAxis(name).setTextPen(foreground)
        plot.showGrid(x=True, y=True, alpha=self.theme["grid"])
        for name in ("bottom", "left"):
            axis = plot.getAxis(name)
            axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)  # replayed while its range stays
            axis.setStyle(autoReduceTextSpace=False)  # labels that get shorter do not re-lay-out all four plots
        plot.setClipToView(True)
        plot.setDownsampling(auto=True, mode="peak")
        return plot

    # -- data ---------------------------------------------------------------------------------
    def curves(self, name: str) -> RunCurves:
        curves = self.runs.get(name)
        if curves is None:
            colour = self.colours[len(self.runs) % len(self.colours)]
            curves = RunCurves(name, colour)
            solid, dashed = pg.mkPen(colour, width=2), pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine)
            faint = pg.mkPen(pg.mkColor(colour).darker(170) if self.dark else pg.mkColor(colour).lighter(160),
                             width=1)
            dots = {"symbol": "o", "symbolSize": 5, "symbolBrush": colour, "symbolPen": colour}
            curves.items = {
                "train_loss": self.loss_plot.plot([], [], pen=dashed),
                "val_loss": self.loss_plot.plot([], [], pen=solid, **dots),
                "train_acc": self.acc_plot.plot([], [], pen=dashed),
                "val_acc": self.acc_plot.plot([], [], pen=solid, **dots),
                "raw": self.iter_plot.plot([], [], pen=faint),
                "smooth": self.iter_plot.plot([], [], pen=solid),
                "lr": self.lr_plot.plot([], [], pen=solid),
            }
            curves.sample = pg.PlotDataItem([0], [0], pen=solid, **dots)  # one point: the legend draws its symbol
            self.legend.addItem(curves.sample, name)
            self.runs[name] = curves
            self.runs_changed.emit()
        return curves

    def start_run(self, event: Started) -> RunCurves:
        """A run begins: its curves are emptied, and the x axes span its planned epochs and steps. The
        runs before it are over: they settle (drawn from the layers' cache from now on)."""
        curves = self.curves(event.run)
        for other in self.runs.values():
            if other is not curves:
                self._settle(other)
        curves.reset()
        curves.planned_epochs, curves.planned_steps = event.epochs, event.epochs * event.steps_per_epoch
        self._mark(event.run, PLOT_ORDER)
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
        curves.widen("iter", *event.losses)  # the smoothed curve stays within the raw one's extent
        if event.lr > 0:
            curves.widen("lr", event.lr)
        self._mark(event.run, ("iter",))

    def add_epoch(self, event: Epoch) -> None:
        curves = self.curves(event.run)
        curves.epochs.append(event.row())
        curves.widen("loss", event.train_loss, event.val_loss)
        curves.widen("acc", event.train_acc, event.val_acc)
        self._mark(event.run, ("loss", "acc", "lr"))

    def add_finished_run(self, name: str, epochs: list[dict[str, float]]) -> RunCurves:
        """A run read back from its folder: its epoch curves (its per-iteration losses are not in the CSV)."""
        curves = self.curves(name)
        curves.reset()
        curves.epochs.extend(epochs)
        curves.planned_epochs = max((int(row["epoch"]) for row in epochs), default=0)
        for row in epochs:
            curves.widen("loss", row.get("train_loss", math.nan), row.get("val_loss", math.nan))
            curves.widen("acc", row.get("train_acc", math.nan), row.get("val_acc", math.nan))
        self._mark(name, ("loss", "acc"))
        self._settle_after_push.add(name)  # drawn once by pyqtgraph, then settled with its data in place
        return curves

    def _mark(self, run: str, keys: tuple[str, ...]) -> None:
        curves = self.runs.get(run)
        if curves is not None and curves.settled:  # new data for a run that was over: it is live again
            self._unsettle(curves)
        self.dirty.update(keys)
        for key in keys:
            self._stale[key].add(run)

    def _settle(self, curves: RunCurves) -> None:
        """A run that is over: its items hide and the plots' layers draw them (see SettledLayer)."""
        if curves.settled:
            return
        for key in PLOT_ORDER:  # its last data goes in first: the layer paints what the items hold
            if curves.name in self._stale[key]:
                self._push(curves, key)
                self._stale[key].discard(curves.name)
        curves.settled = True
        for item in curves.items.values():
            item.setVisible(False)
            self.layers[item.getViewBox()].add(item, curves)

    def _unsettle(self, curves: RunCurves) -> None:
        if not curves.settled:
            return
        curves.settled = False
        for layer in self.layers.values():
            layer.discard(curves)
        for item in curves.items.values():
            item.setVisible(curves.visible)

    @property
    def settled_runs(self) -> list[str]:
        return [name for name, c in self.runs.items() if c.settled]

    def is_drawn(self, name: str) -> bool:
        """The run's curves are in the plots: shown, and painted by its own items or by the layers."""
        curves = self.runs[name]
        return curves.visible and (curves.settled or any(item.isVisible() for item in curves.items.values()))

    # -- showing and hiding --------------------------------------------------------------------
    def set_visible(self, name: str, visible: bool) -> None:
        """Show or hide one run in every plot (its legend entry stays, greyed, to click it back)."""
        curves = self.runs[name]
        if curves.visible == visible:
            return
        curves.visible = visible
        if curves.settled:
            for layer in self.layers.values():
                layer.refresh()
        else:
            for item in curves.items.values():
                item.setVisible(visible)
        if curves.sample is not None and curves.sample.isVisible() != visible:
            curves.sample.setVisible(visible)
        self.legend.update()
        for key in PLOT_ORDER:  # the ranges fit the runs still shown
            self._fit(key)
        self.visibility_changed.emit(name, visible)

    @property
    def visible_runs(self) -> list[str]:
        return [name for name, c in self.runs.items() if c.visible]

    @Slot(object)
    def _on_sample_clicked(self, item) -> None:
        """A click on a legend entry toggled its sample's visibility: the run follows."""
        for name, curves in self.runs.items():
            sample = curves.sample
            if sample is not None and sample is item:
                self.set_visible(name, sample.isVisible())
                return

    # -- drawing ------------------------------------------------------------------------------
    def push(self, everything: bool = False) -> bool:
        """Hand changed data to the plots once the drawing budget allows (at once when ``everything``: the
        end of a run, an export); True if a plot got new data."""
        now = time.perf_counter()
        if not self.dirty or (not everything and now < self._next_push):
            return False
        cpu = time.thread_time()
        for key in PLOT_ORDER:
            if key in self.dirty:
                for run in self._stale[key]:  # only runs whose data changed: earlier runs stay as drawn
                    if run in self.runs:
                        self._push(self.runs[run], key)
                self._stale[key].clear()
                self._fit(key)
        self.dirty.clear()
        for name in self._settle_after_push & self.runs.keys():
            self._settle(self.runs[name])
        self._settle_after_push.clear()
        # the previous draw's cost is complete now (its repaint has happened): it sets the next gap
        spent, self.draw_cpu_s = self.draw_cpu_s, time.thread_time() - cpu
        self._next_push = now + min(max(spent / DRAW_SHARE, PLOT_MIN_GAP_S), PLOT_MAX_GAP_S)
        self.draws += 1
        return True

    def due_in(self) -> float:
        """Seconds until the budget allows the next push (0 when it does now)."""
        return max(0.0, self._next_push - time.perf_counter())

    @property
    def on_screen(self) -> bool:
        """Shown in a window that is not minimised: only then is new data worth handing to the plots."""
        return self.isVisible() and not self.window().isMinimized()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.shown.emit()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        cpu = time.thread_time()
        super().paintEvent(event)
        self.draw_cpu_s += time.thread_time() - cpu

    def _fit(self, plot: str) -> bool:
        """The plot's range from its shown runs' extent (see :class:`SteadyRange`); True if it moved."""
        shown = [c for c in self.runs.values() if c.visible]
        epoch_plot = plot in ("loss", "acc")
        x_high = max((max(c.planned_epochs, int(c.epochs[-1]["epoch"]) if c.epochs else 0) if epoch_plot
                      else max(c.planned_steps, c.steps[-1] if c.steps else 0) for c in shown), default=0)
        extents = [c.bounds[plot] for c in shown if plot in c.bounds]
        low = min((e[0] for e in extents), default=math.nan)
        high = max((e[1] for e in extents), default=math.nan)
        return self.ranges[plot].fit(float(x_high), low, high)

    @staticmethod
    def _push(curves: RunCurves, plot: str) -> None:
        xs = [r["epoch"] for r in curves.epochs]
        if plot in ("loss", "acc"):
            for key in (f"train_{plot}", f"val_{plot}"):
                curves.items[key].setData(xs, [r.get(key, math.nan) for r in curves.epochs], skipFiniteCheck=True)
        elif plot == "lr":
            curves.items["lr"].setData(curves.steps, curves.lrs, skipFiniteCheck=True)
        else:
            curves.items["raw"].setData(curves.steps, curves.losses, skipFiniteCheck=True)
            curves.items["smooth"].setData(curves.steps, curves.smooth, skipFiniteCheck=True)

    def clear_runs(self) -> None:
        for layer in self.layers.values():
            layer.clear()
        self._settle_after_push.clear()
        for plot in self.plots:
            plot.clear()
        self.legend.clear()
        self.runs.clear()
        self.dirty.clear()
        for runs in self._stale.values():
            runs.clear()
        self.runs_changed.emit()

    # -- export -------------------------------------------------------------------------------
    def export_csv(self, path: str | os.PathLike) -> None:
        """Every run's epoch rows in one CSV, with a ``run`` column (written atomically)."""
        parts = [epochs_to_csv(c.epochs, run=c.name) for c in self.runs.values()]
        header = parts[0].splitlines()[0] if parts else "run"
        body = [line for part in parts for line in part.splitlines()[1:]]
        atomic_write_text(path, "\n".join([header, *body]) + "\n")

    def export_png(self, path: str | os.PathLike, scale: int = EXPORT_SCALE) -> None:
        """The four plots and their legend as on screen, ``scale`` times the size, as one PNG (atomic)."""
        from pyqtgraph.exporters import ImageExporter

        self.push(everything=True)
        settled = [c for c in self.runs.values() if c.settled]
        for curves in settled:  # drawn by their own items at the export's scale, not from a screen cache
            self._unsettle(curves)
        try:
            exporter = ImageExporter(self.scene())
            exporter.parameters()["width"] = self.width() * scale  # the height follows (same aspect)
            image = exporter.export(toBytes=True)
        finally:
            for curves in settled:
                self._settle(curves)
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buffer, "PNG")
        buffer.close()
        with atomic_write(path, "wb") as fh:
            fh.write(bytes(data.data()))
