"""GUI fixtures: a window on a small real session, and a guard that fails tests leaving threads running."""

from __future__ import annotations

import gc

import pytest
from PySide6.QtCore import QThread

from spp_gui.gui import workers

SOURCE = "torchvision:alexnet"
TARGET = "spp_gui:alexnet_spp?num_classes=20"


@pytest.fixture
def plots(qtbot):
    """The Train panel's plots alone, shown at a size like the panel gives them."""
    from spp_gui.gui.run_plots import RunPlots

    widget = RunPlots()
    qtbot.addWidget(widget)
    widget.resize(700, 460)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


@pytest.fixture(autouse=True, scope="module")
def automatic_collection_after_the_module():
    """Worker pools move garbage collection to a GUI-thread timer; the Qt-free tests that run after
    these (no event loop to drive that timer) get the interpreter's automatic collection back."""
    yield
    gc.collect()
    gc.enable()


@pytest.fixture(autouse=True)
def no_leftover_threads(monkeypatch):
    """Every worker thread a test starts must have finished when it ends (close/stop, then wait)."""
    started: list[QThread] = []
    original = workers.WorkerPool.start

    def start(self, worker):
        thread = original(self, worker)
        started.append(thread)
        return thread

    monkeypatch.setattr(workers.WorkerPool, "start", start)
    yield
    running = []
    for thread in started:
        try:
            if thread.isRunning() and not thread.wait(10000):
                running.append(thread)
        except RuntimeError:  # already finished and deleted
            pass
    assert not running, f"{len(running)} worker thread(s) still running after the test"


def _wait_idle(qtbot, window, timeout: int = 30000) -> None:
    qtbot.waitUntil(lambda: not window.progress.busy and not window.pool.busy and not window.files.busy,
                    timeout=timeout)


@pytest.fixture
def wait_idle(qtbot):
    """Wait until every load/suggest/export job of a window has ended."""
    return lambda window, timeout=30000: _wait_idle(qtbot, window, timeout)


@pytest.fixture
def open_window(qtbot):
    """Open a window on given args, wait for its session, close it (discarding changes) after the test."""
    from spp_gui.gui.app import open_window as _open

    windows = []

    def opener(argv: list[str] | None = None, wait: bool = True):
        window = _open([SOURCE, TARGET, "--strategy", "order"] if argv is None else argv)
        window.resize(1100, 700)
        window.show()
        windows.append(window)
        if wait:
            _wait_idle(qtbot, window)
        return window

    yield opener
    for window in windows:  # closed here, not by qtbot, so no save prompt blocks the teardown
        window.session.stack.setClean()
        if window.train_panel.busy:
            window.train_panel.shutdown()
        window.close()
        window.pool.stop_all()
        window.deleteLater()


TINY_SPEC = "spp_gui:alexnet_spp?num_classes=3&width=0.0625&dropout=0.0"


@pytest.fixture(scope="module")
def panel_data(tmp_path_factory):
    """train/ and val/ with three drawn shape classes, 32x32 pixels."""
    from spp_gui.training.demo_data import write_split

    root = tmp_path_factory.mktemp("panel_data")
    write_split(root / "train", ("circle", "square", "star"), 8, 32, seed=0, cluttered=False)
    write_split(root / "val", ("circle", "square", "star"), 4, 32, seed=1, cluttered=False)
    return root


@pytest.fixture
def panel(qtbot, panel_data, tmp_path):
    """A Train panel set up for a tiny real run (2 epochs, batch 8); stopped after the test."""
    from spp_gui.gui.train_panel import TrainPanel

    widget = TrainPanel()
    qtbot.addWidget(widget, before_close_func=lambda w: w.shutdown())
    widget.set_session(TINY_SPEC, None, None)
    widget.train_edit.setText(str(panel_data / "train"))
    widget.val_edit.setText(str(panel_data / "val"))
    widget.out_edit.setText(str(tmp_path / "runs"))
    widget.size_spin.setValue(32)
    widget.batch_spin.setValue(8)
    widget.epochs_spin.setValue(2)
    return widget
