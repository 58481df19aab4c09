"""The Train panel as a page of its own: its layout at a small window's size, the session it reads,
the Paused state, the close question, the scratch-vs-mapped comparison, the class-count check,
the remembered form, run names, and runs hidden or loaded from disk. Real widgets, tiny real runs."""

from __future__ import annotations

import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QRect, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QMessageBox, QPushButton  # noqa: E402

from spp_gui.core.apply import save_weights  # noqa: E402
from spp_gui.core.specs import build_model  # noqa: E402
from spp_gui.core.strategies import suggest_mapping  # noqa: E402
from spp_gui.gui.train_checks import head_classes, run_name_problem, with_num_classes  # noqa: E402
from spp_gui.gui.train_panel import IN_APP, NO_MAPPING_TIP, OWN_PROCESS, TORCHRUN, TrainPanel  # noqa: E402

SPEC = "spp_gui:alexnet_spp?num_classes=3&width=0.0625&dropout=0.0"  # the panel fixture's target


@pytest.fixture
def mapping(tmp_path):
    """A mapping onto SPEC from a 4-class source checkpoint (every tensor but the head)."""
    source = tmp_path / "source.safetensors"
    save_weights(build_model(SPEC.replace("num_classes=3", "num_classes=4"), seed=5), source)
    return suggest_mapping(str(source), SPEC, strategy="head"), str(source)


def answer_stop_box(qtbot, panel, button: str) -> None:
    """Click ``button`` of the close question once ask_to_stop's modal box is up."""
    def click():
        boxes = [b for b in panel.findChildren(QMessageBox, "stopRunBox") if b.isVisible()]
        if not boxes:
            QTimer.singleShot(10, click)
            return
        boxes[0].findChild(QPushButton, button).click()

    QTimer.singleShot(0, click)


def start_long_run(panel, qtbot) -> None:
    panel.epochs_spin.setValue(200)
    panel.start_button.click()
    qtbot.waitUntil(lambda: panel.run_bar.value() > 0, timeout=30000)


# -- layout -------------------------------------------------------------------------------------
def test_run_buttons_are_in_view_on_a_small_page(panel, qtbot):
    """A 1024x640 window gives the page about 1000x520: the run buttons show without scrolling."""
    panel.resize(1000, 520)
    panel.show()
    qtbot.waitExposed(panel)
    for button in (panel.start_button, panel.pause_button, panel.stop_button, panel.demo_button,
                   panel.compare_button):
        rect = QRect(button.mapTo(panel, QPoint(0, 0)), button.size())
        assert panel.rect().contains(rect), button.text()
        assert button.visibleRegion().boundingRect().size() == button.size(), button.text()
    assert panel.minimumSizeHint().height() <= 520 and panel.minimumSizeHint().width() <= 1000
    plots = panel.plots
    assert plots.width() >= 500 and plots.height() >= 350  # the plots get the rest of the page
    for plot in plots.plots:  # and every plot fits in it, none cut off at an edge
        shown = plots.mapFromScene(plot.sceneBoundingRect()).boundingRect()
        assert plots.rect().adjusted(-1, -1, 1, 1).contains(shown)


# -- the session --------------------------------------------------------------------------------
def test_the_session_is_read_when_shown_and_at_start(panel, qtbot, mapping):
    session = SimpleNamespace(target_spec=SPEC.replace("dropout=0.0", "dropout=0.1"), mapping=None, source=None)
    panel.set_session_reader(lambda: session)
    assert panel.spec_edit.text() == session.target_spec  # follows the editor's target
    assert panel.mapping_label.text().startswith("from scratch")
    assert not panel.compare_button.isEnabled() and panel.compare_button.toolTip() == NO_MAPPING_TIP

    session.mapping, session.source = mapping  # the editor changed; nothing is pushed
    assert panel.mapping_label.text().startswith("from scratch")
    panel.refresh_session()  # the window shows the page
    assert panel.mapping_label.text().startswith("mapped: 14 tensors from")
    assert panel.compare_button.isEnabled()

    session.target_spec = SPEC
    panel.refresh_session()
    assert panel.spec_edit.text() == SPEC
    session.mapping = None  # the mapping goes away after the page was shown: Start reads it afresh
    with qtbot.waitSignal(panel.run_finished, timeout=60000):
        panel.start_button.click()
    assert panel.run_names[0].startswith("scratch") and "done" in panel.status_label.text()

    panel.spec_edit.clear()
    qtbot.keyClicks(panel.spec_edit, SPEC.replace("width=0.0625", "width=0.125"))  # the user's own
    session.target_spec = "spp_gui:alexnet_spp?num_classes=20"
    panel.refresh_session()
    assert panel.spec_edit.text() == SPEC.replace("width=0.0625", "width=0.125")
    panel.spec_edit.clear()  # an empty field follows the editor again
    panel.refresh_session()
    assert panel.spec_edit.text() == "spp_gui:alexnet_spp?num_classes=20"
    panel.set_session_reader(lambda: None)
    assert panel.mapping_label.text().startswith("from scratch")


# -- pause ----------------------------------------------------------------------------------------
def test_pause_shows_paused_until_resumed(panel, qtbot):
    start_long_run(panel, qtbot)
    assert panel.eta_label.text().startswith("ETA ")
    panel.pause_button.click()
    assert panel.paused and panel.pause_button.text() == "Resume"
    assert panel.status_label.text().startswith("Paused") and panel.eta_label.text() == "ETA paused"
    # a step under way when Pause was pressed still reports; the page stays Paused
    qtbot.waitUntil(lambda: not panel._timer.isActive(), timeout=10000)
    assert panel.status_label.text().startswith("Paused: ") and "epoch" in panel.status_label.text()
    assert panel.eta_label.text() == "ETA paused"
    steps = panel.run_bar.value()
    panel.pause_button.click()
    assert not panel.paused and panel.pause_button.text() == "Pause"
    assert not panel.status_label.text().startswith("Paused") and panel.eta_label.text() != "ETA paused"
    qtbot.waitUntil(lambda: panel.run_bar.value() > steps and "ETA paused" not in panel.eta_label.text(),
                    timeout=30000)
    with qtbot.waitSignal(panel.run_finished, timeout=30000):
        panel.stop_button.click()
    assert panel.eta_label.text() == "" and not panel.status_label.text().startswith("Paused")


# -- closing the window mid-run -------------------------------------------------------------------
def test_ask_to_stop_three_ways(panel, qtbot):
    assert panel.ask_to_stop() == "stop"  # nothing runs: no question
    assert not panel.findChildren(QMessageBox, "stopRunBox")
    start_long_run(panel, qtbot)
    answer_stop_box(qtbot, panel, "stopRunKeep")
    assert panel.ask_to_stop() == "keep" and panel.busy
    answer_stop_box(qtbot, panel, "stopRunCancel")
    assert panel.ask_to_stop() == "cancel" and panel.busy
    answer_stop_box(qtbot, panel, "stopRunStop")
    assert panel.ask_to_stop() == "stop"
    panel.shutdown()  # what the window's closeEvent does next
    assert not panel.busy and panel.start_button.isEnabled()


# -- compare ------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", [OWN_PROCESS, IN_APP])
def test_compare_scratch_vs_mapped(panel, qtbot, mapping, where):
    panel.launch_box.setCurrentText(where)
    assert not panel.compare_button.isEnabled()  # the fixture's session has no mapping
    panel.set_session(SPEC, *mapping)
    assert panel.compare_button.isEnabled()
    panel.lr_spin.setValue(0.05)  # the comparison sets its own learning rates
    with qtbot.waitSignal(panel.run_finished, timeout=120000):
        panel.compare_button.click()
        assert not panel.compare_button.isEnabled() and not panel.start_button.isEnabled()
    assert panel.last_error == ""
    scratch, pretrained = panel.run_names
    assert scratch.startswith("scratch-") and pretrained.startswith("pretrained-")
    assert scratch[len("scratch"):] == pretrained[len("pretrained"):]  # one comparison, one time stamp
    assert [len(panel.run_epochs(n)) for n in (scratch, pretrained)] == [2, 2]
    assert set(panel.plots.runs[scratch].lrs) == {1e-3} and set(panel.plots.runs[pretrained].lrs) == {1e-4}
    runs = Path(panel.out_edit.text())
    configs = {name: tomllib.loads((runs / name / "config.toml").read_text()) for name in (scratch, pretrained)}
    assert configs[scratch]["model"]["mapping"] == "" and configs[pretrained]["model"]["mapping"].endswith("mapping.json")
    for key in ("epochs", "seed", "batch_size"):
        assert configs[scratch]["run"][key] == configs[pretrained]["run"][key]
    assert panel.status_label.text().startswith("compare: scratch best val acc")
    assert [label.text for _, label in panel.plots.legend.items] == [scratch, pretrained]


def test_compare_needs_a_mapping(panel):
    panel.start_compare()  # called without the button (disabled): says what is missing
    assert not panel.busy and panel.last_error == NO_MAPPING_TIP


# -- the class count --------------------------------------------------------------------------------
def test_a_class_count_that_differs_from_the_head_is_shown_with_its_fix(panel, qtbot):
    panel.set_session(SPEC.replace("num_classes=3", "num_classes=20"), None, None)
    assert panel.validate_dataset()
    fix = "the data has 3 classes; the target has 20: set num_classes=3 in the spec"
    assert panel.class_problem == fix and panel.class_label.isVisibleTo(panel)
    assert fix in panel.class_label.text()
    panel.class_label.linkActivated.emit("fix")  # the label's "do it" link
    assert "num_classes=3" in panel.spec_edit.text() and panel.class_problem == ""
    assert not panel.class_label.isVisibleTo(panel)
    # no num_classes in the spec: the built (meta) model's last Linear says 1000
    panel.spec_edit.setText("spp_gui:alexnet_spp?width=0.0625")
    panel.spec_edit.editingFinished.emit()
    assert panel.class_problem == "the data has 3 classes; the target has 1000: set num_classes=3 in the spec"
    with qtbot.waitSignal(panel.run_finished, timeout=60000):
        panel.class_label.linkActivated.emit("fix")
        panel.start_button.click()
    assert "done, best val acc" in panel.status_label.text()


def test_head_classes_and_the_spec_fix():
    assert head_classes("torchvision:resnet18") == 1000
    assert head_classes("spp_gui:alexnet_spp?num_classes=7") == 7
    assert head_classes("/no/such/net.py:Net") is None  # never built here: that would run the file
    assert head_classes("torchvision:no_such_model") is None
    assert with_num_classes("spp_gui:alexnet_spp?num_classes=20&width=0.5", 3) == \
        "spp_gui:alexnet_spp?num_classes=3&width=0.5"
    assert with_num_classes("torchvision:resnet18", 3) == "torchvision:resnet18?num_classes=3"


# -- the remembered form ----------------------------------------------------------------------------
def test_the_form_is_remembered_across_sessions(panel, qtbot, panel_data, tmp_path):
    panel.lr_spin.setValue(0.0025)
    panel.optimizer_box.setCurrentText("sgd")
    panel.freeze_check.setChecked(True)
    panel.launch_box.setCurrentText(TORCHRUN)
    panel.workers_spin.setValue(2)
    qtbot.waitUntil(lambda: not panel._remember_timer.isActive(), timeout=5000)  # written once edits pause
    again = TrainPanel()
    qtbot.addWidget(again)
    assert again.train_edit.text() == str(panel_data / "train") and again.val_edit.text() == str(panel_data / "val")
    assert again.out_edit.text() == str(tmp_path / "runs")
    assert again.lr_spin.value() == 0.0025 and again.optimizer_box.currentText() == "sgd"
    assert again.freeze_check.isChecked() and again.external and again.workers_spin.value() == 2
    assert (again.epochs_spin.value(), again.batch_spin.value(), again.size_spin.value()) == (2, 8, 32)
    assert again.name_edit.text() == ""  # a run name is per run


def test_a_bad_stored_value_leaves_the_default(qtbot):
    from spp_gui.gui import settings

    store = settings.settings()
    store.setValue("train/epochs", "many")
    store.setValue("train/optimizer", "no-such-optimizer")
    store.setValue("train/launch", "this window")  # what an earlier version called the app's thread
    store.sync()
    panel = TrainPanel()
    qtbot.addWidget(panel)
    assert panel.epochs_spin.value() == 50 and panel.optimizer_box.currentText() == "adam"
    assert panel.launch_box.currentText() == OWN_PROCESS


# -- run names, hiding runs, loading runs ---------------------------------------------------------------
def test_run_names_are_one_folder_name_and_unique(panel, qtbot, tmp_path):
    panel.name_edit.setText("../elsewhere")
    panel.start_button.click()
    assert not panel.busy and "one folder name" in panel.last_error
    assert not (tmp_path / "elsewhere").exists()
    panel.name_edit.setText("mine")
    for _ in range(2):
        with qtbot.waitSignal(panel.run_finished, timeout=60000):
            panel.start_button.click()
    assert panel.run_names == ["mine", "mine-2"]
    assert (tmp_path / "runs" / "mine" / "metrics.csv").is_file()
    assert (tmp_path / "runs" / "mine-2" / "metrics.csv").is_file()
    assert run_name_problem("") == "" and run_name_problem("lr1e-3 v2") == ""
    assert run_name_problem("a\\b") and run_name_problem("..") and run_name_problem(" pad")


def test_runs_hide_and_load_from_the_runs_folder(panel, qtbot, tmp_path):
    for _ in range(2):
        with qtbot.waitSignal(panel.run_finished, timeout=60000):
            panel.start_button.click()
    first, second = panel.run_names
    model = panel.run_model
    assert [model.item(i).text() for i in range(model.rowCount())] == [first, second]
    model.item(0).setCheckState(Qt.CheckState.Unchecked)  # a click on its check box
    curves = panel.plots.runs[first]
    assert curves.settled  # the second run started: the first is drawn by the plots' layers
    assert not curves.visible and not panel.plots.is_drawn(first) and panel.plots.is_drawn(second)
    assert panel.plots.visible_runs == [second]
    panel.set_run_visible(first, True)  # and back, from code: the list follows
    assert model.item(0).checkState() == Qt.CheckState.Checked and panel.plots.is_drawn(first)

    epochs = {n: panel.run_epochs(n) for n in (first, second)}
    panel.clear_runs()
    assert model.rowCount() == 0
    assert panel.load_runs(tmp_path / "runs") == [first, second]
    for name in (first, second):
        loaded = panel.run_epochs(name)
        assert [r["epoch"] for r in loaded] == [1, 2]
        assert loaded[-1]["val_acc"] == pytest.approx(epochs[name][-1]["val_acc"])
        assert len(panel.plots.runs[name].items["val_loss"].xData) == 2
    assert panel.load_runs(tmp_path / "runs") == []  # already shown
    panel.clear_runs()
    assert panel.load_runs(tmp_path / "runs" / second) == [second]  # one run's folder
    assert panel.load_runs(tmp_path) == [] and "holds no run folders" in panel.last_error
