"""What keeps GUI-attached training close to headless speed: the worker never waits on the GUI
thread, events that arrive together are drawn together, and drawing keeps to its CPU budget.
(The speed itself is measured by benchmarks/gui_responsiveness.py, never asserted here.)"""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from spp_gui.gui import run_plots  # noqa: E402
from spp_gui.training.engine import Epoch, Finished, Step  # noqa: E402

EPOCHS = 6  # x 3 steps (24 images, batch 8), one Step event per step


def test_a_run_goes_to_its_end_while_the_gui_thread_is_blocked_then_is_drawn_at_once(panel, qtbot):
    cfg = panel.config()
    cfg.run.epochs, cfg.run.log_every = EPOCHS, 1
    done = threading.Event()
    events = []
    panel.start_run(cfg)
    worker = panel._worker
    # direct connections: these run in the worker's thread, without the GUI thread's event loop
    worker.yielded.connect(events.append, Qt.ConnectionType.DirectConnection)
    worker.finished.connect(done.set, Qt.ConnectionType.DirectConnection)
    draws = panel.plots.draws
    # the GUI thread processes no event at all meanwhile: a worker that waited on it would never end
    assert done.wait(120), "the worker did not finish while the GUI thread was busy"
    assert isinstance(events[-1], Finished)
    assert panel.status_label.text() == "starting..." and panel.busy  # nothing delivered yet
    with qtbot.waitSignal(panel.run_finished, timeout=30000):
        pass  # the queued events, then the end, once the GUI thread runs its loop again
    steps = [e for e in events if isinstance(e, Step)]
    assert len(steps) == EPOCHS * 3
    curves = panel.plots.runs[cfg.run.name]
    assert list(curves.items["raw"].xData) == list(range(1, EPOCHS * 3 + 1))
    assert len(curves.items["val_acc"].xData) == EPOCHS
    assert "done, best val acc" in panel.status_label.text()
    # dozens of events that arrived together: handed to the plots together, not one draw per event
    assert panel.plots.draws - draws <= 2


def test_a_live_run_is_drawn_while_it_trains(panel, qtbot):
    panel.show()
    qtbot.waitExposed(panel)
    panel.epochs_spin.setValue(200)
    panel.start_button.click()
    qtbot.waitUntil(lambda: panel.plots.draws > 0 and panel.run_bar.value() > 0, timeout=30000)
    name = panel.run_names[-1]
    qtbot.waitUntil(lambda: panel.plots.runs[name].items["raw"].xData is not None, timeout=10000)
    assert panel.busy  # drawn mid-run, not only at the end
    with qtbot.waitSignal(panel.run_finished, timeout=30000):
        panel.stop_button.click()


def test_plots_off_screen_get_nothing_until_shown_then_everything_in_one_push(panel, qtbot):
    cfg = panel.config()
    cfg.run.epochs, cfg.run.log_every = 200, 1
    panel.start_run(cfg)  # the panel was never shown: its plots are off screen
    qtbot.waitUntil(lambda: panel.run_bar.value() > 0 and bool(panel.plots.dirty), timeout=30000)
    qtbot.waitUntil(lambda: len(panel.plots.runs[cfg.run.name].steps) >= 6, timeout=30000)
    assert panel.plots.draws == 0 and panel.plots.runs[cfg.run.name].items["raw"].xData is None
    assert panel.status_label.text().startswith(f"{cfg.run.name}: epoch")  # the progress text still moves
    panel.show()  # what arrived meanwhile is drawn as soon as the plots are on screen
    qtbot.waitUntil(lambda: panel.plots.draws > 0, timeout=5000)
    assert len(panel.plots.runs[cfg.run.name].items["raw"].xData) >= 6
    with qtbot.waitSignal(panel.run_finished, timeout=30000):
        panel.stop_button.click()


def add_steps(plots, first: int, n: int) -> None:
    for step in range(first, first + n):
        plots.add_step(Step("run", 1, step, 1000, [1.0 / step], 0.01, 100.0, step / 1000))


def test_drawing_waits_for_its_budget(plots, qtbot):
    add_steps(plots, 1, 20)
    assert plots.push(everything=True)
    qtbot.waitUntil(lambda: plots.draw_cpu_s > 0, timeout=5000)  # the repaint it caused is counted
    add_steps(plots, 21, 5)
    spent = plots.draw_cpu_s
    assert plots.push(everything=True)  # everything (the end of a run, an export): drawn regardless of the budget
    gap = min(max(spent / run_plots.DRAW_SHARE, run_plots.PLOT_MIN_GAP_S), run_plots.PLOT_MAX_GAP_S)
    assert gap - 0.05 <= plots.due_in() <= gap  # the next gap follows the measured cost of the last draw
    add_steps(plots, 26, 5)
    assert not plots.push()  # within the gap: the data waits ...
    assert "iter" in plots.dirty and len(plots.runs["run"].items["raw"].xData) == 25
    qtbot.wait(int(1000 * plots.due_in()) + 20)
    assert plots.push()  # ... and is drawn once the gap is over
    assert len(plots.runs["run"].items["raw"].xData) == 30 and not plots.dirty


def test_only_the_run_that_changed_is_handed_to_the_plots(plots):
    add_steps(plots, 1, 10)
    assert plots.push(everything=True)
    earlier = plots.runs["run"].items["raw"]
    drawn = earlier.xData
    for step in range(1, 6):
        plots.add_step(Step("next", 1, step, 1000, [1.0 / step], 0.01, 100.0, step / 1000))
    assert plots.push(everything=True)
    assert earlier.xData is drawn  # the earlier run's curve kept its arrays: no setData for it
    assert len(plots.runs["next"].items["raw"].xData) == 5


def test_one_push_draws_every_changed_plot_so_loss_and_accuracy_show_the_same_epoch(plots):
    add_steps(plots, 1, 10)
    plots.add_epoch(Epoch("run", 1, 5, 1.2, 0.4, 1.3, 0.35, 0.01, 1.0, 100.0, 0, False))
    assert plots.dirty == {"iter", "loss", "acc", "lr"}
    assert plots.push()  # the budget allows a draw: all four plots get their data in it
    items = plots.runs["run"].items
    assert len(items["raw"].xData) == 10 and len(items["lr"].xData) == 10
    assert list(items["val_loss"].xData) == list(items["val_acc"].xData) == [1]
    assert not plots.dirty and not plots.push(everything=True)  # nothing changed since: nothing to draw
