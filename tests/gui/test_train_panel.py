"""The Train panel, driven like a person would, on a tiny real dataset and model."""

from __future__ import annotations

import csv

import pytest
from PIL import Image

pytest.importorskip("pytestqt")

SPEC = "spp_gui:alexnet_spp?num_classes=3&width=0.0625&dropout=0.0"  # the panel fixture's target

from spp_gui.core.apply import save_weights  # noqa: E402
from spp_gui.core.specs import build_model  # noqa: E402
from spp_gui.core.strategies import suggest_mapping  # noqa: E402


def test_dataset_is_validated_before_start(panel, tmp_path):
    assert panel.validate_dataset()
    assert panel.train_info.text() == "3 classes, 24 images: circle 8, square 8, star 8"
    panel.val_edit.setText(str(tmp_path / "missing"))
    panel.start_button.click()
    assert not panel.busy and "val folder not found" in panel.last_error


def test_two_runs_overlaid_then_exported(panel, qtbot, tmp_path):
    with qtbot.waitSignal(panel.run_finished, timeout=60000):
        panel.start_button.click()
    assert "done, best val acc" in panel.status_label.text()
    source = tmp_path / "source.safetensors"
    save_weights(build_model(SPEC.replace("num_classes=3", "num_classes=4"), seed=5), source)
    panel.set_session(SPEC, suggest_mapping(str(source), SPEC, strategy="head"), str(source))
    assert panel.mapping_label.text().startswith("mapped: 14 tensors")
    with qtbot.waitSignal(panel.run_finished, timeout=60000):
        panel.start_button.click()
    names = panel.run_names
    assert len(names) == 2 and names[0].startswith("scratch") and names[1].startswith("pretrained")
    assert [len(panel.run_epochs(n)) for n in names] == [2, 2]
    legend = [label.text for _, label in panel.plots.legend.items]  # one legend for the four plots
    assert legend == names
    curves = panel.plots.runs[names[1]]
    assert len(curves.items["val_acc"].xData) == 2 and len(curves.items["raw"].xData) == 6
    panel.export_csv(tmp_path / "all.csv")
    rows = list(csv.DictReader((tmp_path / "all.csv").read_text().splitlines()))
    assert [r["run"] for r in rows] == [names[0]] * 2 + [names[1]] * 2
    panel.export_png(tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as png:
        assert png.size[0] == 2 * panel.plots.width()


def test_pause_resume_stop(panel, qtbot):
    panel.epochs_spin.setValue(200)
    panel.start_button.click()
    qtbot.waitUntil(lambda: panel.run_bar.value() > 0, timeout=30000)
    panel.pause_button.click()
    assert panel.paused and panel.pause_button.text() == "Resume"
    panel.pause_button.click()
    assert not panel.paused
    with qtbot.waitSignal(panel.run_finished, timeout=30000):
        panel.stop_button.click()
    assert "stopped at epoch" in panel.status_label.text()
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()


def test_shutdown_while_paused_mid_run(panel, qtbot, capfd):
    panel.epochs_spin.setValue(200)
    panel.start_button.click()
    qtbot.waitUntil(lambda: panel.run_bar.value() > 0, timeout=30000)
    panel.pause_button.click()
    panel.shutdown()
    assert not panel.busy and not panel.paused
    assert "QThread: Destroyed" not in capfd.readouterr().err


def test_run_demo_button_streams_live_curves(panel, qtbot, tmp_path):
    panel.show()  # live curves are drawn while the plots are on screen
    qtbot.waitExposed(panel)
    panel.out_edit.setText(str(tmp_path / "demo_runs"))
    panel.demo_button.click()
    qtbot.waitUntil(lambda: "source-pretraining" in panel.run_names and panel.run_bar.value() > 0, timeout=60000)
    qtbot.waitUntil(lambda: panel.plots.runs["source-pretraining"].items["raw"].xData is not None, timeout=5000)
    with qtbot.waitSignal(panel.run_finished, timeout=30000):
        panel.stop_button.click()
    assert (tmp_path / "demo_runs").is_dir() and any((tmp_path / "demo_runs").glob("demo-*/data/target/train"))


OOM_NET = '''
import torch
from torch import nn


class Net(nn.Module):
    """Runs out of memory (a real torch.OutOfMemoryError) for training batches above 4 images."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))

    def forward(self, x):
        if self.training and x.shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.body(x)
'''


def test_out_of_memory_offers_a_retry_at_half_batch(panel, qtbot, tmp_path):
    (tmp_path / "oom_net.py").write_text(OOM_NET)
    panel.spec_edit.clear()
    qtbot.keyClicks(panel.spec_edit, f"{tmp_path}/oom_net.py:Net")  # typed by the user: theirs to run
    with qtbot.waitSignal(panel.run_finished, timeout=30000):
        panel.start_button.click()
    assert "batch size 8" in panel._dialog.text() and panel._dialog.isVisible()
    with qtbot.waitSignal(panel.run_finished, timeout=30000):
        panel._retry_button.click()
    assert panel.batch_spin.value() == 4 and "done, best val acc" in panel.status_label.text()


def test_an_unwritable_runs_folder_is_a_message(panel, tmp_path):
    source = tmp_path / "source.safetensors"
    save_weights(build_model(SPEC, seed=5), source)
    panel.set_session(SPEC, suggest_mapping(str(source), SPEC, strategy="exact"), str(source))
    (tmp_path / "a_file").write_text("not a folder")
    panel.out_edit.setText(str(tmp_path / "a_file" / "runs"))
    panel.start_button.click()  # the session's mapping cannot be written there
    assert not panel.busy and "cannot write in the runs folder" in panel.last_error


def test_a_job_config_resolves_a_relative_runs_folder_where_the_app_runs(panel, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    panel.out_edit.setText("relruns")
    path = panel.write_job_config(panel.config())
    assert path.parent == tmp_path / "relruns"
    assert 'out = "' + str(tmp_path / "relruns") + '"' in path.read_text()
