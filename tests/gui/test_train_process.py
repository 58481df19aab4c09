"""The Train panel running a job as torchrun processes: live curves from rank 0's JSON lines,
stop by SIGTERM (SIGKILL after a grace period), a crashed rank reported with its last lines."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from procs import alive, children  # noqa: E402
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QMessageBox, QPushButton  # noqa: E402

from spp_gui.gui.process_run import ProcessRun  # noqa: E402
from spp_gui.gui.train_panel import TORCHRUN  # noqa: E402
from spp_gui.training.metrics import read_epochs  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the ranks")


@pytest.fixture
def panel(panel):
    """The shared tiny-run panel, launching through torchrun with 2 processes."""
    panel.launch_box.setCurrentText(TORCHRUN)
    panel.nproc_spin.setValue(2)
    return panel


def rank_pids(qtbot, panel) -> list[int]:
    qtbot.waitUntil(lambda: panel._process is not None and len(children(panel._process.pid)) == 2, timeout=60000)
    return children(panel._process.pid)


def test_two_processes_stream_into_the_curves(panel, qtbot, tmp_path):
    with qtbot.waitSignal(panel.run_finished, timeout=180000):
        panel.start_button.click()
        assert panel.busy and not panel.pause_button.isEnabled()  # a process cannot be paused from here
    assert panel.last_error == ""
    assert "done, best val acc" in panel.status_label.text()
    (name,) = panel.run_names
    epochs = panel.run_epochs(name)
    assert [row["epoch"] for row in epochs] == [1, 2]  # each epoch once, from rank 0 only
    assert len(panel.plots.runs[name].losses) == 6  # 24 images / global batch 8 x 2 epochs
    folder = tmp_path / "runs" / name
    assert [row["epoch"] for row in read_epochs(folder)] == [1, 2]
    assert epochs[-1]["val_acc"] == pytest.approx(read_epochs(folder)[-1]["val_acc"])
    assert (tmp_path / "runs" / f"{name}.toml").is_file()  # the config the job ran
    assert not panel.busy


def test_stop_ends_every_rank_after_its_step(panel, qtbot):
    panel.epochs_spin.setValue(500)
    panel.start_button.click()
    ranks = rank_pids(qtbot, panel)
    qtbot.waitUntil(lambda: bool(panel.run_names) and len(panel.plots.runs[panel.run_names[0]].losses) >= 3,
                    timeout=90000)
    with qtbot.waitSignal(panel.run_finished, timeout=60000):
        panel.stop_button.click()
    assert "stopped at epoch" in panel.status_label.text()  # the engine's own Stopped event
    assert panel.last_error == ""
    qtbot.waitUntil(lambda: not any(alive(p) for p in ranks), timeout=10000)


def test_a_crashed_rank_is_named_with_its_last_lines(panel, qtbot):
    panel.epochs_spin.setValue(500)
    panel.start_button.click()
    ranks = rank_pids(qtbot, panel)
    qtbot.waitUntil(lambda: bool(panel.run_names), timeout=90000)
    rank1 = next(p for p in ranks if "LOCAL_RANK=1" in Path(f"/proc/{p}/environ").read_bytes().decode(errors="replace"))
    with qtbot.waitSignal(panel.run_finished, timeout=60000):
        os.kill(rank1, signal.SIGKILL)
    # rank 0 may die too (its peer is gone) and torchrun may see either first: both are named
    assert "rank 1 was killed by SIGKILL" in panel.last_error
    assert "rank 1 printed nothing before it ended" in panel.last_error  # ranks > 0 print only errors
    logs = Path(panel.out_edit.text()) / "torchrun-logs"
    assert f"full output is under {logs}" in panel.last_error
    assert len(list(logs.glob("*/attempt_0/*/stderr.log"))) == 2  # kept with the runs, one per rank
    assert panel._dialog.isVisible() and "rank 1 was killed by SIGKILL" in panel._dialog.text()
    qtbot.waitUntil(lambda: not any(alive(p) for p in ranks), timeout=40000)  # torchrun stopped rank 0 too
    assert not panel.busy and panel.start_button.isEnabled()


def test_a_bad_config_reports_the_ranks_error(panel, qtbot, tmp_path):
    panel.batch_spin.setValue(7)
    panel.start_button.click()  # caught before any process starts
    assert not panel.busy and "does not split evenly across 2 processes" in panel.last_error
    panel.batch_spin.setValue(8)
    panel.spec_edit.setText("spp_gui:alexnet_spp?num_classes=3&width=0.0625&no_such_option=1")
    with qtbot.waitSignal(panel.run_finished, timeout=120000):
        panel.start_button.click()
    assert "exited with code 2" in panel.last_error and "no_such_option" in panel.last_error


def test_sigkill_after_the_grace_period(qtbot, tmp_path):
    """A process that ignores SIGTERM is killed once the grace period is over, and says so."""
    script = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "print('[default0]:ready', flush=True)\ntime.sleep(120)\n")
    run = ProcessRun([sys.executable, "-c", script], grace_s=0.5)
    lines = []
    run.start()
    qtbot.waitUntil(lambda: run.reader.tails.get(0) is not None, timeout=30000)
    lines.extend(run.reader.tails[0])
    with qtbot.waitSignal(run.ended, timeout=20000) as ended:
        run.stop()
    code, message = ended.args
    assert lines == ["ready"] and run.killed and code == -signal.SIGKILL
    assert message.startswith("stopped: the job did not end within 0.5 s of SIGTERM, so it was killed")


def test_a_command_that_cannot_start(qtbot, tmp_path):
    run = ProcessRun([str(tmp_path / "no-such-program")])
    with qtbot.waitSignal(run.ended, timeout=10000) as ended:
        run.start()
    assert ended.args[0] == -1 and "could not start" in ended.args[1]


def test_closing_the_panel_mid_run_stops_the_processes(panel, qtbot, tmp_path):
    panel.epochs_spin.setValue(500)
    panel.start_button.click()
    ranks = rank_pids(qtbot, panel)
    qtbot.waitUntil(lambda: bool(panel.run_names) and len(panel.plots.runs[panel.run_names[0]].losses) >= 2,
                    timeout=90000)
    launcher = panel._process.pid
    panel.close()  # waits for the job to end: nothing is left running and the last checkpoint is kept
    assert not panel.busy and not alive(launcher)
    assert not any(alive(p) for p in ranks)
    assert "stopped at epoch" in panel.status_label.text()
    assert (tmp_path / "runs" / panel.run_names[0] / "metrics.jsonl").is_file()


def test_closing_the_window_asks_about_the_job(panel, qtbot):
    """ask_to_stop names what Stop does to the processes; Keep leaves them running, Stop lets the window close."""
    panel.epochs_spin.setValue(500)
    panel.start_button.click()
    ranks = rank_pids(qtbot, panel)
    texts = []

    def answer(button: str) -> None:
        def click():
            boxes = [b for b in panel.findChildren(QMessageBox, "stopRunBox") if b.isVisible()]
            if not boxes:
                QTimer.singleShot(10, click)
                return
            texts.append(boxes[0].text())
            boxes[0].findChild(QPushButton, button).click()
        QTimer.singleShot(0, click)

    answer("stopRunKeep")
    assert panel.ask_to_stop() == "keep" and panel.busy and all(alive(p) for p in ranks)
    assert "torchrun processes" in texts[0] and "SIGTERM" in texts[0]
    answer("stopRunStop")
    assert panel.ask_to_stop() == "stop"
    panel.shutdown()  # the window's closeEvent, after "stop"
    assert not panel.busy and not any(alive(p) for p in ranks)
