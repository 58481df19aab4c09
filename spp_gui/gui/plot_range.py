"""A live plot's view range that moves in steps, so that most redraws leave its axes as they were.

pyqtgraph's auto-range fits the view to the data on every ``setData``: while a run trains, every
redraw then shifts both axes, which regenerates their tick labels and grid (Python, on the GUI
thread, holding the GIL the training thread needs); measured on 2 cores, that is about three
quarters of a redraw's cost. Here the x range spans the whole run as soon as it starts (its
planned steps or epochs: the plot also shows how far the run has come), and the y range is the
data's bounds rounded outwards to a 1-2-5 grid of about eight steps, so it changes only when
the data crosses a grid line or the grid itself changes.

A pan or zoom with the mouse takes the plot over, as in pyqtgraph; its "A" button (or the
menu's auto-range) gives it back to the data.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import QObject, Slot

GRID_STEPS = 8  # the y range is about this many grid steps of 1, 2 or 5 x 10^k
PADDING = 0.03  # of the range, each side: points on the range's edge stay visible
LOG_FLAT_SPAN = 1.0  # a constant value on a log axis: look for steps as if it spanned a decade


def nice_step(span: float) -> float:
    """The smallest 1, 2 or 5 x 10^k at least ``span`` (``span`` > 0)."""
    power = 10.0 ** math.floor(math.log10(span))
    for mantissa in (1.0, 2.0, 5.0, 10.0):
        if mantissa * power >= span * (1 - 1e-9):
            return mantissa * power
    return 10.0 * power


def stepped_bounds(low: float, high: float, flat_span: float | None = None) -> tuple[float, float]:
    """``low``..``high`` rounded outwards to whole steps of a 1-2-5 grid of about GRID_STEPS steps.

    The result changes only when a bound crosses a grid line or the span needs another step size,
    so it stays put while data creeps within a step. A constant value gets one step either side.
    """
    span = high - low
    if span <= 0:
        span = flat_span if flat_span is not None else (abs(high) or 1.0)
    step = nice_step(span / GRID_STEPS)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    if last <= first:
        first, last = first - 1, last + 1
    return first * step, last * step


class SteadyRange(QObject):
    """Keeps one plot's view range: set by :meth:`fit` from the data's extent while it follows the data."""

    def __init__(self, plot: pg.PlotItem, x_low: float) -> None:
        super().__init__(plot)
        self.plot = plot
        self.x_low = x_low
        self.following = True  # False once the user pans or zooms, until the "A" button
        self._wanted: tuple[float, float, float, float] | None = None  # the range fit last asked for
        self._shown: tuple[float, float, float, float] | None = None  # the range last handed to the view
        vb = plot.getViewBox()
        vb.disableAutoRange()
        plot.hideButtons()  # its "A" button would read "auto-range is off": it is on, done here
        vb.sigRangeChangedManually.connect(self._on_manual)
        vb.sigStateChanged.connect(self._on_state)

    @property
    def log_y(self) -> bool:
        return bool(self.plot.getViewBox().state["logMode"][1])

    def fit(self, x_high: float, y_low: float, y_high: float) -> bool:
        """Show ``x_low``..``x_high`` and the stepped bounds of ``y_low``..``y_high`` (data units);
        True if the view's range changed. Non-finite bounds (no data yet) leave y as it is."""
        if self.log_y:
            if not (y_low > 0 and y_high > 0):
                y_low = y_high = math.nan
            else:
                y_low, y_high = math.log10(y_low), math.log10(y_high)
        x0, x1 = self.x_low, max(x_high, self.x_low)
        if x1 <= x0:
            x0, x1 = x0 - 0.5, x1 + 0.5
        if math.isfinite(y_low) and math.isfinite(y_high):
            y0, y1 = stepped_bounds(y_low, y_high, LOG_FLAT_SPAN if self.log_y else None)
        elif self._wanted is not None:
            y0, y1 = self._wanted[2:]
        else:
            y0, y1 = self.plot.getViewBox().viewRange()[1]
        self._wanted = (x0, x1, y0, y1)
        return self._apply()

    def _apply(self) -> bool:
        if not self.following or self._wanted is None or self._wanted == self._shown:
            return False
        x0, x1, y0, y1 = self._shown = self._wanted
        self.plot.getViewBox().setRange(xRange=(x0, x1), yRange=(y0, y1), padding=PADDING)
        return True

    @Slot(object)
    def _on_manual(self, _mask: object) -> None:
        """A pan or zoom with the mouse: the range is the user's now; the "A" button appears."""
        self.following = False
        self.plot.showButtons()

    @Slot(object)
    def _on_state(self, _vb: object) -> None:
        """pyqtgraph's auto-range was switched on (the "A" button, the menu): follow the data again,
        in steps, instead of pyqtgraph's per-redraw fit."""
        vb = self.plot.getViewBox()
        if not any(vb.autoRangeEnabled()):
            return
        vb.disableAutoRange()  # emits this signal again; auto-range is off by then
        self.following = True
        self.plot.hideButtons()
        self._shown = None
        self._apply()
