"""The Train panel's plots: one legend outside the curves, whole-epoch ticks, plain log-lr labels,
a dark palette under a dark app palette, and PNGs at twice the size on screen."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PIL import Image  # noqa: E402
from PySide6.QtGui import QColor, QImage, QPalette  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from spp_gui.gui.run_plots import EpochAxis, LrAxis, RunPlots, lr_label, palette_is_dark  # noqa: E402
from spp_gui.training.engine import Epoch, Started, Step  # noqa: E402


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


def start(plots: RunPlots, run: str, epochs: int = 3, steps_per_epoch: int = 10) -> None:
    plots.start_run(Started(run, "", "cpu", ["a", "b"], 40, 10, steps_per_epoch, epochs, ""))


def channel_differences(a: QImage, b: QImage) -> np.ndarray:
    """Per pixel, the largest difference of one colour channel between two same-sized images."""
    assert a.size() == b.size()
    pixels = [np.frombuffer(im.convertToFormat(QImage.Format.Format_RGB32).constBits(), np.uint8).astype(int)
              .reshape(a.height(), a.width(), 4) for im in (a, b)]
    return np.abs(pixels[0] - pixels[1]).max(axis=2)


def difference(a: QImage, b: QImage) -> int:
    """The largest difference of one colour channel between two same-sized images (0: identical)."""
    return int(channel_differences(a, b).max())


def settled_and_live_images(plots: RunPlots, qtbot) -> tuple[QImage, QImage]:
    """The plots as drawn with the settled runs in their layers, then with every run's own items."""
    plots.resize(700, 460)
    qtbot.wait(50)
    settled = plots.grab().toImage()
    runs = [plots.runs[name] for name in plots.settled_runs]
    for curves in runs:
        plots._unsettle(curves)
    qtbot.wait(50)
    live = plots.grab().toImage()
    for curves in runs:
        plots._settle(curves)
    return settled, live


def test_runs_that_are_over_settle_into_one_cached_layer_that_draws_them_as_they_were(plots, qtbot):
    for name, lr in (("scratch", 1e-3), ("pretrained", 1e-4), ("grid", 3e-4)):
        start(plots, name)
        fill(plots, name, lr)
    assert plots.settled_runs == ["scratch", "pretrained"]  # the live run stays pyqtgraph's own
    for name in plots.settled_runs:
        assert not any(item.isVisible() for item in plots.runs[name].items.values())
    assert {len(layer.members) for layer in plots.layers.values()} == {2, 4}  # 1 or 2 items per run and plot
    settled, live = settled_and_live_images(plots, qtbot)
    # the same pixels: a symbol over a grid line may blend 1 level apart through the cache's pixmap
    assert difference(settled, live) <= 2
    # redraws for the live run replay the layers' cache: their members are not painted again
    qtbot.wait(50)
    before = {id(layer): layer.paints for layer in plots.layers.values()}
    assert all(before.values())  # they were painted once
    plots.add_step(Step("grid", 3, 30, 30, [1.0], 3e-4, 100.0, 1.0))  # within the ranges: they stay
    draws = plots.draws
    plots.push(everything=True)
    qtbot.waitUntil(lambda: plots.draws > draws)
    qtbot.wait(50)
    assert {id(layer): layer.paints for layer in plots.layers.values()} == before
    for plot in plots.plots:  # a zoom: the layers draw the settled runs again at the new scale
        plot.vb.scaleBy((0.8, 0.8))
    qtbot.wait(50)
    assert all(layer.paints > before[id(layer)] for layer in plots.layers.values())
    settled, live = settled_and_live_images(plots, qtbot)
    differs = channel_differences(settled, live) > 2
    # the same curves; only a dashed line cut at the view's edge may start its dashes a pixel apart
    lower = plots.mapFromScene(plots.iter_plot.vb.sceneBoundingRect()).boundingRect().top()
    assert not differs[lower:].any() and differs.mean() < 0.001


def test_a_settled_run_hides_shows_and_comes_back_to_life(plots, qtbot):
    start(plots, "a")
    fill(plots, "a", 1e-3)
    start(plots, "b")
    fill(plots, "b", 1e-4)
    qtbot.wait(50)
    with_a = plots.grab().toImage()
    plots.set_visible("a", False)
    qtbot.wait(50)
    without_a = plots.grab().toImage()
    assert difference(without_a, with_a) > 100  # a's curves are gone
    settled, live = settled_and_live_images(plots, qtbot)
    assert difference(settled, live) <= 2 and difference(settled, without_a) <= 2  # hidden in the layer too
    plots.set_visible("a", True)
    qtbot.wait(50)
    assert difference(plots.grab().toImage(), with_a) <= 2
    # new data for a run that was over: it is drawn by its own items again
    plots.add_epoch(Epoch("a", 4, 4, 0.2, 0.9, 0.3, 0.8, 1e-3, 1.0, 100.0, 0, False))
    assert "a" not in plots.settled_runs and plots.runs["a"].items["val_acc"].isVisible()
    assert all(curves.name != "a" for layer in plots.layers.values() for _, curves in layer.members)
    plots.clear_runs()
    assert not any(layer.members for layer in plots.layers.values()) and not plots.settled_runs


def test_runs_read_back_settle_once_drawn(plots, tmp_path):
    rows = [{"epoch": float(e), "train_loss": 1.0 / e, "val_loss": 1.1 / e, "train_acc": 0.3 * e,
             "val_acc": 0.25 * e, "lr": 1e-3} for e in (1, 2, 3)]
    plots.add_finished_run("old-run", rows)
    assert plots.settled_runs == []  # its data goes to its items first
    plots.push(everything=True)
    assert plots.settled_runs == ["old-run"]
    assert list(plots.runs["old-run"].items["val_acc"].xData) == [1.0, 2.0, 3.0]
    path = tmp_path / "plots.png"
    plots.export_png(path)  # drawn by the items themselves for the export, then settled again
    assert path.stat().st_size > 0 and plots.settled_runs == ["old-run"]
