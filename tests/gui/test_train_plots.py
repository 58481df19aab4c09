"""The Train panel's plots: one legend outside the curves, whole-epoch ticks, plain log-lr labels,
a dark palette under a dark app palette, and PNGs at twice the size on screen."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("pytestqt")

from PIL import Image  # noqa: E402
from PySide6.QtGui import QColor, QPalette  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from spp_gui.gui.run_plots import EpochAxis, LrAxis, RunPlots, lr_label, palette_is_dark  # noqa: E402
from spp_gui.training.engine import Epoch, Step  # noqa: E402


def fill(plots: RunPlots, run: str, lr: float, epochs: int = 3, steps_per_epoch: int = 10) -> None:
    """A run's events as the engine sends them: steps, then an epoch row, per epoch."""
    total = epochs * steps_per_epoch
    for epoch in range(1, epochs + 1):
        for i in range(1, steps_per_epoch + 1):
            step = (epoch - 1) * steps_per_epoch + i
            plots.add_step(Step(run, epoch, step, total, [2.0 / step ** 0.3], lr, 100.0, i / steps_per_epoch))
        plots.add_epoch(Epoch(run, epoch, epochs, 1.0 / epoch, 0.3 * epoch, 1.1 / epoch, 0.25 * epoch, lr,
                              1.0, 100.0, 0, False))
    plots.push(everything=True)


def drawn_ticks(axis) -> list[str]:
    levels = axis.tickValues(*axis.range, axis.height() if axis.orientation == "left" else axis.width())
    return [s for spacing, values in levels for s in axis.tickStrings(values, 1.0, spacing)]


def test_the_legend_is_outside_every_plot(plots, qtbot):
    fill(plots, "scratch-101010", 1e-3)
    fill(plots, "pretrained-101011", 1e-4)
    qtbot.waitUntil(lambda: plots.legend.sceneBoundingRect().height() > 0)
    assert [label.text for _, label in plots.legend.items] == ["scratch-101010", "pretrained-101011"]
    legend = plots.legend.sceneBoundingRect()
    for plot in plots.plots:
        assert plot.legend is None  # no legend inside a plot
        assert not plot.vb.sceneBoundingRect().intersects(legend)
    assert plots.rect().contains(plots.mapFromScene(legend).boundingRect())


def test_a_click_on_a_legend_entry_hides_the_run_everywhere(plots):
    fill(plots, "a", 1e-3)
    sample, _ = plots.legend.items[0]
    sample.item.setVisible(False)  # what ItemSample.mouseClickEvent does
    plots.legend.sigSampleClicked.emit(sample.item)
    assert not plots.runs["a"].visible and not plots.runs["a"].items["lr"].isVisible()


def test_epoch_axes_tick_whole_epochs(plots, qtbot):
    fill(plots, "a", 1e-3, epochs=3)
    for plot in (plots.loss_plot, plots.acc_plot):
        axis = plot.getAxis("bottom")
        assert isinstance(axis, EpochAxis)
        qtbot.waitUntil(lambda axis=axis: axis.range[1] > 2.5)
        assert drawn_ticks(axis) == ["1", "2", "3"]
    axis = EpochAxis()
    for low, high in ((0.6, 1.4), (0.0, 57.0), (1.0, 2.0)):  # zoomed in, many epochs, exactly two
        values = [v for _, vs in axis.tickValues(low, high, 400) for v in vs]
        assert values and all(float(v).is_integer() for v in values)


def test_the_lr_axis_reads_like_a_config(plots, qtbot):
    fill(plots, "a", 1e-3)
    axis = plots.lr_plot.getAxis("left")
    assert isinstance(axis, LrAxis) and axis.logMode
    qtbot.waitUntil(lambda: axis.range[0] < -3 < axis.range[1])
    assert "1e-3" in drawn_ticks(axis)  # a constant lr still has labels, and plain ones
    assert [lr_label(v) for v in (1e-3, 2.5e-4, 1e-5, 0.01, 0.3)] == ["1e-3", "2.5e-4", "1e-5", "0.01", "0.3"]
    lr = LrAxis("left")
    lr.setLogMode(False, True)
    wide = [s for _, vs in lr.tickValues(-6.2, -1.8, 300) for s in lr.tickStrings(vs, 1.0, 1.0)]
    assert wide == ["1e-6", "1e-5", "1e-4", "1e-3", "0.01"]
    narrow = [s for _, vs in lr.tickValues(math.log10(9e-4), math.log10(1.1e-3), 150)
              for s in lr.tickStrings(vs, 1.0, 1.0)]
    assert narrow == ["9e-4", "1e-3"]
    flat = lr.tickValues(math.log10(1.001e-3), math.log10(1.009e-3), 150)[0][1]
    assert len(flat) >= 2 and all(1.001e-3 <= 10 ** v <= 1.009e-3 for v in flat)


def test_a_dark_app_palette_gives_dark_plots(qtbot):
    app = QApplication.instance()
    before = app.palette()
    dark = QPalette(before)
    dark.setColor(QPalette.ColorRole.Window, QColor("#2b2b2b"))
    dark.setColor(QPalette.ColorRole.WindowText, QColor("#e0e0e0"))
    try:
        app.setPalette(dark)
        assert palette_is_dark()
        plots = RunPlots()
        qtbot.addWidget(plots)
        fill(plots, "a", 1e-3)
    finally:
        app.setPalette(before)
    assert plots.dark and plots.backgroundBrush().color().lightness() < 64
    assert plots.loss_plot.getAxis("left").textPen().color().lightness() > 160
    assert QColor(plots.runs["a"].colour).lightness() > 128  # curves bright enough on the dark ground
    light = RunPlots()
    qtbot.addWidget(light)
    assert not light.dark and light.backgroundBrush().color().lightness() > 240


def test_png_export_is_twice_the_size_on_screen(plots, tmp_path):
    fill(plots, "a", 1e-3)
    plots.export_png(tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as png:
        size = png.size
    assert size[0] == 2 * plots.width() and abs(size[1] - 2 * plots.height()) <= 2
