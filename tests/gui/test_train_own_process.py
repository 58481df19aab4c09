"""Start runs the engine in a process of its own (the default): live curves from its JSON lines,
Pause, Resume and Stop through its stdin, a killed process reported with the curves kept, model code
asked about before the process starts, and closing mid-run stopping it after its step."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from procs import alive, command_line  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from spp_gui.gui.train_panel import OWN_PROCESS  # noqa: E402
from spp_gui.training.metrics import read_epochs  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to check the process")

NET = '''
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))

    def forward(self, x):
        return self.body(x)
'''


def losses(panel) -> int:
    return len(panel.plots.runs[panel.run_names[0]].losses) if panel.run_names else 0


def start_long_run(panel, qtbot, steps: int = 2) -> int:
    panel.epochs_spin.setValue(500)
    panel.start_button.click()
    qtbot.waitUntil(lambda: losses(panel) >= steps, timeout=90000)
    return panel._process.pid


def test_start_trains_in_a_process_of_its_own(panel, qtbot, tmp_path):
    assert panel.launch_box.currentText() == OWN_PROCESS  # the default
    with qtbot.waitSignal(panel.run_finished, timeout=120000):
        panel.start_button.click()
        assert panel.status_label.text().startswith("starting its own process")
        pid = panel._process.pid
        assert pid != os.getpid()
        qtbot.waitUntil(lambda: "--control-stdin" in command_line(pid), timeout=10000)  # once it has exec'd
    assert "done, best val acc" in panel.status_label.text() and panel.last_error == ""
    (name,) = panel.run_names
    assert [row["epoch"] for row in panel.run_epochs(name)] == [1, 2]
    assert len(panel.plots.runs[name].losses) == 6  # 24 images / batch 8 x 2 epochs
    folder = tmp_path / "runs" / name
    assert panel.run_epochs(name)[-1]["val_acc"] == pytest.approx(read_epochs(folder)[-1]["val_acc"])
    assert (tmp_path / "runs" / f"{name}.toml").is_file()  # the config the process ran
    assert not panel.busy and not alive(pid)


def test_pause_resume_and_stop_reach_the_process(panel, qtbot):
    pid = start_long_run(panel, qtbot)
    assert panel.pause_button.isEnabled()
    panel.pause_button.click()
    assert panel.paused and panel.pause_button.text() == "Resume" and "Paused" in panel.status_label.text()
    qtbot.wait(1500)  # a step under way when Pause was pressed may still arrive
    held = losses(panel)
    qtbot.wait(2000)
    assert losses(panel) == held, "a paused process went on training"
    panel.pause_button.click()
    assert not panel.paused
    qtbot.waitUntil(lambda: losses(panel) > held, timeout=30000)
    with qtbot.waitSignal(panel.run_finished, timeout=60000):
        panel.stop_button.click()
    assert "stopped at epoch" in panel.status_label.text() and panel.last_error == ""
    qtbot.waitUntil(lambda: not alive(pid), timeout=10000)
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()


def test_stop_while_paused_ends_the_run(panel, qtbot):
    pid = start_long_run(panel, qtbot)
    panel.pause_button.click()
    with qtbot.waitSignal(panel.run_finished, timeout=60000):
        panel.stop_button.click()
    assert "stopped at epoch" in panel.status_label.text() and not panel.paused
    qtbot.waitUntil(lambda: not alive(pid), timeout=10000)


def test_a_killed_process_is_reported_and_its_curves_stay(panel, qtbot):
    pid = start_long_run(panel, qtbot, steps=3)
    qtbot.waitUntil(lambda: panel._last_checkpoint is not None, timeout=60000)  # an epoch's checkpoint is in
    with qtbot.waitSignal(panel.run_finished, timeout=60000):
        os.kill(pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    assert "The training process was killed by SIGKILL" in panel.last_error
    assert "out-of-memory killer" in panel.last_error
    assert panel.status_label.text().startswith("The training process was killed by SIGKILL")
    kept = Path(panel.last_error.rsplit(": ", 1)[1])  # what it saved before it died is named, and there
    assert "last checkpoint is kept (epoch " in panel.last_error and kept.name == "last.safetensors" and kept.is_file()
    assert panel._dialog.isVisible() and panel._dialog.windowTitle() == "The training process failed"
    assert losses(panel) >= 3  # what it reported before it died is still drawn
    assert not panel.busy and panel.start_button.isEnabled()


def test_a_bad_spec_reports_the_processes_own_error(panel, qtbot):
    panel.spec_edit.setText("spp_gui:alexnet_spp?num_classes=3&width=0.0625&no_such_option=1")
    with qtbot.waitSignal(panel.run_finished, timeout=120000):
        panel.start_button.click()
    assert "exited with code 2" in panel.last_error and "no_such_option" in panel.last_error


def test_model_code_the_user_did_not_allow_is_asked_about_before_the_process_starts(panel, qtbot, tmp_path):
    code = tmp_path / "net.py"
    code.write_text(NET)
    panel.set_session(f"{code}:Net", None, None)  # from a session or a mapping someone sent: not typed here
    panel.start_button.click()
    [box] = [b for b in panel.findChildren(QMessageBox, "codeTrustBox") if b.isVisible()]
    assert str(code) in box.text() and not panel.busy and panel._process is None
    [run] = [b for b in box.buttons() if b.objectName() == "runCodeButton"]
    with qtbot.waitSignal(panel.run_finished, timeout=120000):
        run.click()  # trusts these bytes, then starts again
        pid = panel._process.pid
        qtbot.waitUntil(lambda: "--trust-code-file" in command_line(pid), timeout=10000)
        line = command_line(pid)
        assert line[line.index("--trust-code-file") + 1].startswith(f"{code}=")
    assert "done, best val acc" in panel.status_label.text()


def test_closing_the_panel_mid_run_stops_the_process_after_its_step(panel, qtbot):
    pid = start_long_run(panel, qtbot)
    panel.shutdown()
    assert not panel.busy and not panel.paused
    assert "stopped at epoch" in panel.status_label.text()
    qtbot.waitUntil(lambda: not alive(pid), timeout=10000)


def test_run_demo_in_its_own_process_ends_with_the_seeds_table_in_one_line(panel, qtbot, tmp_path):
    panel.out_edit.setText(str(tmp_path / "demo_runs"))
    with qtbot.waitSignal(panel.run_finished, timeout=300000):
        panel.demo_button.click()
        pid = panel._process.pid
        qtbot.waitUntil(lambda: "demo" in command_line(pid), timeout=10000)
    assert panel.last_error == ""
    assert panel.run_names == ["source-pretraining", "scratch", "order", "spp_grid"]
    status = panel.status_label.text()
    assert status.startswith("demo: scratch best val acc ")
    [folder] = (tmp_path / "demo_runs").glob("demo-*")
    parts = dict(part.split(" ", 1) for part in status.removeprefix("demo: ").split(" | "))
    assert list(parts) == ["scratch", "order", "spp_grid"]
    assert parts["order"].startswith("(26.9% loaded)") and parts["spp_grid"].startswith("(79.4% loaded)")
    for name, text in parts.items():  # each run's best and final val acc, as its own folder has them
        rows = read_epochs(folder / "runs" / name)
        best = max(rows, key=lambda row: row["val_acc"])
        assert f"best val acc {best['val_acc']:.3f} (epoch {int(best['epoch'])}), final {rows[-1]['val_acc']:.3f}" in text
    assert (folder / "compare.png").is_file()
