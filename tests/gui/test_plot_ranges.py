"""The live plots' ranges: x spans the planned run from its start, y moves in whole grid steps (so
most redraws leave the axes as drawn), a wheel zoom takes a plot over until its "A" button, and
hiding a run fits the ranges to the runs still shown."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("pytestqt")

import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from spp_gui.gui.plot_range import nice_step, stepped_bounds  # noqa: E402
from spp_gui.training.engine import Epoch, Started, Step  # noqa: E402


def started(run: str, epochs: int, steps_per_epoch: int) -> Started:
    return Started(run, "", "cpu", ["a", "b"], 8 * steps_per_epoch, 8, steps_per_epoch, epochs, "scratch")


def step(run: str, n: int, loss: float, total: int = 200, lr: float = 1e-3) -> Step:
    return Step(run, 1, n, total, [loss], lr, 100.0, n / total)


def epoch(run: str, n: int, loss: float, acc: float) -> Epoch:
    return Epoch(run, n, 10, loss, acc, loss * 1.1, acc * 0.9, 1e-3, 1.0, 100.0, 0, False)


def x_range(plot) -> list[float]:
    return plot.getViewBox().viewRange()[0]


def y_range(plot) -> list[float]:
    return plot.getViewBox().viewRange()[1]


def test_nice_steps_and_stepped_bounds():
    assert [nice_step(s) for s in (0.07, 0.1, 0.11, 0.3, 3.0, 7.0, 1e-4)] == pytest.approx(
        [0.1, 0.1, 0.2, 0.5, 5.0, 10.0, 1e-4])
    low, high = stepped_bounds(0.43, 1.79)  # a loss falling from ln 6: steps of 0.2
    assert (low, high) == pytest.approx((0.4, 1.8))
    assert stepped_bounds(0.41, 1.79) == stepped_bounds(0.43, 1.77)  # creeping within a step: the same range
    assert stepped_bounds(0.39, 1.79)[0] == pytest.approx(0.2)  # crossing a grid line: one step further
    flat = stepped_bounds(1.0, 1.0)  # a constant value gets a step on either side
    assert flat[0] < 1.0 < flat[1]
    assert stepped_bounds(-3.0, -3.0, flat_span=1.0) == pytest.approx((-3.2, -2.8))  # a constant log lr
    assert stepped_bounds(-2.5, 0.5) == pytest.approx((-2.5, 0.5))  # negative values round outwards too


def test_the_x_axes_span_the_planned_run_from_its_first_event(plots, qtbot):
    plots.start_run(started("a", epochs=10, steps_per_epoch=20))
    plots.add_step(step("a", 1, 1.8))
    plots.push(everything=True)
    iteration = x_range(plots.iter_plot)
    assert iteration[0] <= 0 and 200 <= iteration[1] < 210  # all 200 steps, with a little padding
    assert 10 <= x_range(plots.loss_plot)[1] < 10.5 and x_range(plots.loss_plot)[0] <= 1
    for n in range(2, 120):
        plots.add_step(step("a", n, 1.8 - n / 200))
    plots.push(everything=True)
    assert x_range(plots.iter_plot) == iteration  # the run moves along a fixed axis


def test_a_creeping_loss_moves_the_range_in_a_few_steps_only(plots, qtbot):
    plots.start_run(started("a", epochs=1, steps_per_epoch=200))
    own = pg.PlotWidget()  # pyqtgraph's own auto-range on the same data, for comparison
    qtbot.addWidget(own)
    curve = own.plot([], [])
    moves, own_moves = [], []
    plots.iter_plot.getViewBox().sigRangeChanged.connect(lambda *_: moves.append(1))
    own.getPlotItem().getViewBox().sigRangeChanged.connect(lambda *_: own_moves.append(1))
    losses = [1.8 - 0.3 * n / 200 + 0.02 * math.sin(n) for n in range(1, 201)]  # 1.8 -> 1.5, noisy
    for n, loss in enumerate(losses, start=1):
        plots.add_step(step("a", n, loss))
        plots.push(everything=True)
        curve.setData(list(range(1, n + 1)), losses[:n])
        own.getPlotItem().getViewBox().updateAutoRange()  # what its next paint would do
    low, high = y_range(plots.iter_plot)
    assert low <= min(losses) and high >= max(losses)  # every point is inside
    assert high - low < 1.5 * (max(losses) - min(losses))  # and the data fills most of it
    assert len(own_moves) > 150  # pyqtgraph moves the axes on nearly every redraw (x grows, y on a new low)
    assert 1 <= len(moves) <= 20  # here y moves as the span grows, then when the loss crosses a grid line


def test_a_wheel_zoom_keeps_the_users_range_until_the_a_button(plots, qtbot):
    plots.start_run(started("a", epochs=1, steps_per_epoch=100))
    for n in range(1, 51):
        plots.add_step(step("a", n, 2.0 - n / 100))
    plots.push(everything=True)
    vb = plots.iter_plot.getViewBox()
    fitted = vb.viewRange()
    centre = plots.mapFromScene(vb.sceneBoundingRect().center())
    wheel = QWheelEvent(QPointF(centre), QPointF(plots.mapToGlobal(centre)), QPoint(0, 0), QPoint(0, 240),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(plots.viewport(), wheel)  # the mouse wheel over the plot: zoom in
    zoomed = vb.viewRange()
    assert zoomed[0][1] - zoomed[0][0] < fitted[0][1] - fitted[0][0]
    assert not plots.ranges["iter"].following
    for n in range(51, 101):
        plots.add_step(step("a", n, 0.5 - n / 1000))  # new data far below: the user's range stays
    plots.push(everything=True)
    assert vb.viewRange() == zoomed
    plots.iter_plot.autoBtnClicked()  # the "A" button pyqtgraph shows on the plot
    assert plots.ranges["iter"].following and not any(vb.autoRangeEnabled())  # followed in steps, not per redraw
    low, high = y_range(plots.iter_plot)
    assert low <= 0.4 and high >= 1.99 and x_range(plots.iter_plot)[1] >= 100


def test_hiding_a_run_fits_the_ranges_to_the_runs_still_shown(plots):
    plots.start_run(started("small", epochs=10, steps_per_epoch=5))
    plots.start_run(started("large", epochs=20, steps_per_epoch=5))
    for n in range(1, 4):
        plots.add_epoch(epoch("small", n, 0.5 / n, 0.5 + 0.1 * n))
        plots.add_epoch(epoch("large", n, 5.0 / n, 0.2 + 0.1 * n))
    plots.push(everything=True)
    assert y_range(plots.loss_plot)[1] >= 5.5 and x_range(plots.loss_plot)[1] >= 20
    plots.set_visible("large", False)
    assert y_range(plots.loss_plot)[1] < 1.0 and x_range(plots.loss_plot)[1] < 11
    plots.set_visible("large", True)
    assert y_range(plots.loss_plot)[1] >= 5.5


def test_runs_read_back_from_disk_get_ranges_too(plots):
    rows = [{"epoch": float(e), "train_loss": 2.0 / e, "val_loss": 2.2 / e, "train_acc": 0.1 * e,
             "val_acc": 0.09 * e, "lr": 1e-3} for e in range(1, 8)]
    plots.add_finished_run("old", rows)
    plots.push(everything=True)
    assert 7 <= x_range(plots.loss_plot)[1] < 7.5
    low, high = y_range(plots.loss_plot)
    assert low <= 2.0 / 7 and high >= 2.2
