"""The editor as one session: the reproductions of issue 10, chained the way a user chains actions."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from spp_gui.cli import main as cli
from spp_gui.core.mapping import Entry, Mapping

#: a model small enough to train in seconds (as tests/training/conftest.py has it); each test module
#: holds its own: "from conftest import" finds whichever conftest pytest imported last
TINY_SPEC = "spp_gui:alexnet_spp?num_classes=3&width=0.0625&dropout=0.0"

PAIR = ["torchvision:alexnet", "spp_gui:alexnet_spp?num_classes=20"]


def _box(window, name: str) -> QMessageBox | None:
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible() and b.objectName() == name]
    return boxes[0] if boxes else None


def _click(qtbot, window, box_name: str, button_name: str) -> None:
    qtbot.waitUntil(lambda: _box(window, box_name) is not None, timeout=30000)
    box = _box(window, box_name)
    [button] = [b for b in box.buttons() if b.objectName() == button_name]
    button.click()


def test_restoring_another_pair_drops_the_old_pairs_suggestions(open_window, qtbot, tmp_path, wait_idle, capsys):
    """Reproduction 1: restore resnet18 -> resnet34 after the default session, then Apply and Save."""
    window = open_window([*PAIR, "--strategy", "auto"])
    assert window.session.suggestions is not None and window.suggest.table_model.items
    restored = Mapping()
    restored.set(Entry("conv1.weight", "conv1.weight"))
    window.files.open_session("torchvision:resnet18", "torchvision:resnet34", recovered=restored)
    wait_idle(window)
    assert window.session.target.spec == "torchvision:resnet34"
    assert window.session.suggestions is None and window.suggest.table_model.items == []
    assert window.modified, "a restored session is unsaved work"
    before = window.session.mapping.copy()
    window.suggest.accept_all.click()  # Apply: nothing of AlexNet's can reach this pair
    assert window.session.mapping == before and "No suggestions" in window.statusBar().currentMessage()
    window.session.stack.undo()  # undoing the restore: an untitled, empty state, never the restored file's
    assert window.session.path is None and len(window.session.mapping) == 0
    window.session.stack.redo()
    out = tmp_path / "restored.json"
    assert window.files.save_mapping(str(out))
    assert not window.session.problems() and not window.modified
    assert cli(["apply", str(out), "-o", str(tmp_path / "w.safetensors")]) == 0, capsys.readouterr().err


def test_a_new_source_asks_what_becomes_of_the_mapping(open_window, qtbot, wait_idle):
    """Reproduction 2: another source while a mapping exists: asked, nothing left invalid, undoable."""
    window = open_window()  # AlexNet -> AlexNet_SPP with `order`: 13 entries
    old_source, old_mapping = window.session.source, window.session.mapping.copy()
    assert len(old_mapping) == 13
    window.files.open_session("torchvision:resnet18", None)
    _click(qtbot, window, "replaceSideBox", "keepButton")
    wait_idle(window)
    assert window.session.source.spec == "torchvision:resnet18"
    assert not window.session.problems(), "no entry is left that no view shows"
    assert len(window.session.mapping) == 0 and window.session.suggestions is None
    snap = window.session.snapshot()
    assert snap.mapping is None, "training is not told about entries of another source"
    window.session.stack.undo()  # the new source was one step: undo brings the old one back, mapping and all
    assert window.session.source is old_source and window.session.mapping == old_mapping
    assert window.source_model.tree is old_source.tree


def test_cancel_keeps_the_session_and_resuggest_maps_the_new_pair(open_window, qtbot, wait_idle):
    window = open_window()
    before = (window.session.source, window.session.mapping.copy())
    window.files.open_session("torchvision:alexnet?num_classes=10", None)
    qtbot.waitUntil(lambda: _box(window, "replaceSideBox") is not None, timeout=30000)
    _box(window, "replaceSideBox").reject()
    wait_idle(window)
    assert (window.session.source, window.session.mapping) == before
    window.files.open_session("torchvision:alexnet?num_classes=10", None)
    _click(qtbot, window, "replaceSideBox", "resuggestButton")
    qtbot.waitUntil(lambda: window.session.suggestions is not None and not window.suggester.busy, timeout=60000)
    assert window.session.source.spec == "torchvision:alexnet?num_classes=10"
    assert len(window.session.mapping) >= 10 and not window.session.problems()
    assert window.modified and window.session.stack.canUndo(), "suggest again is undoable work, never 'saved'"
    while window.session.stack.canUndo():
        window.session.stack.undo()
    assert (window.session.source, window.session.mapping) == before


def test_suggest_then_apply_is_honest(open_window, qtbot, wait_idle):
    """Reproduction 3: suggestions are not 'accepted' until Apply; the threshold reaches transforms."""
    window = open_window([*PAIR, "--strategy", "none"])
    window.suggest.strategy.setCurrentText("auto")
    window.suggest.request_run()
    qtbot.waitUntil(lambda: window.session.suggestions is not None and not window.suggester.busy, timeout=60000)
    model = window.suggest.table_model
    states = [model.data(model.index(r, 0)) for r in range(model.rowCount())]
    assert "accepted" not in " ".join(states) and "will apply" in states
    assert len(window.session.mapping) == 0, "nothing is mapped before Apply"
    assert "until you press Apply" in window.statusBar().currentMessage()
    window.suggest.threshold.setValue(0.6)
    assert any(s.target == "classifier.1.weight" for s in window.suggest.will_apply())
    window.suggest.accept_all.click()
    entry = window.session.mapping.get("classifier.1.weight")
    assert entry is not None and entry.transform["op"] == "spp_grid"
    states = [model.data(model.index(r, 0)) for r in range(model.rowCount())]
    assert states.count("in mapping") == len(window.session.mapping)
    window.session.stack.undo()
    assert len(window.session.mapping) == 0


def test_problems_view_lists_and_removes_entries_that_cannot_apply(open_window, qtbot, tmp_path, wait_idle):
    bad = Mapping(*PAIR)
    bad.set(Entry("features.0.weight", "features.0.weight"))
    bad.set(Entry("classifier.6.weight", "no.such.key"))
    path = tmp_path / "bad.json"
    bad.save(path)
    window = open_window(["--mapping", str(path)])
    assert window.problems.count() == 1 and window.problems_dock.isVisible()
    assert "no.such.key" in window.problems.model.rows[0][1]
    assert window.files.export(str(tmp_path / "x.safetensors")) is None  # refused, naming them
    box = [b for b in window.findChildren(QMessageBox) if b.isVisible()][0]
    assert "classifier.6.weight" in box.text()
    box.accept()
    window.problems.remove_all_button.click()
    assert window.problems.count() == 0 and len(window.session.mapping) == 1


def test_focus_starts_on_the_target_tree_and_delete_acts_on_the_focused_tree(open_window, qtbot):
    """Reproduction 6."""
    window = open_window()
    window.activateWindow()
    qtbot.waitUntil(lambda: window.target_panel.view.hasFocus(), timeout=5000)
    mapped = len(window.session.mapping)
    source_view = window.source_panel.view
    source_view.setFocus()
    window.source_panel.reveal("features.0.weight")
    qtbot.keyClick(source_view, Qt.Key.Key_Delete)
    assert window.session.mapping.get("features.0.weight") is None, "Delete in the source tree unmaps its key"
    assert len(window.session.mapping) == mapped - 1
    window.target_panel.view.setFocus()
    window.target_panel.reveal("features.3.bias")
    qtbot.keyClick(window.target_panel.view, Qt.Key.Key_Delete)
    assert window.session.mapping.get("features.3.bias") is None and len(window.session.mapping) == mapped - 2


def test_inspector_shows_the_entrys_transform_and_only_what_fits(open_window, qtbot):
    """Reproduction 8."""
    window = open_window([*PAIR, "--strategy", "none"])
    window.edits.push({"classifier.1.weight": Entry("classifier.1.weight", "classifier.1.weight",
                                                    {"op": "spp_grid", "levels": [1, 4, 9, 36], "bins": 36})})
    window.target_panel.reveal("classifier.1.weight", current=True)
    choice = window.inspector.fits
    assert "spp_grid" in choice.currentText()
    assert all("plain copy" not in choice.itemText(i) for i in range(choice.count())), "shapes differ"
    assert window._selected_paths(window.source_panel) == ["classifier.1.weight"], "the partner is selected"


def test_only_the_window_and_app_know_the_main_window():
    """Controllers get the session and services, never the window (issue 10's structural root)."""
    import ast
    from pathlib import Path

    import spp_gui.gui as gui

    offenders = []
    for path in Path(gui.__file__).parent.glob("*.py"):
        if path.name in ("window.py", "app.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith("window"):
                offenders.append(path.name)
            if isinstance(node, ast.Name) and node.id == "MainWindow":
                offenders.append(path.name)
    assert not offenders, f"these modules reach into MainWindow: {sorted(set(offenders))}"


def _answer_stop_box(window, button: str, seen: list[str]) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QPushButton

    def click():
        boxes = [b for b in window.findChildren(QMessageBox, "stopRunBox") if b.isVisible()]
        if not boxes:
            QTimer.singleShot(10, click)
            return
        seen.append(boxes[0].text())
        boxes[0].findChild(QPushButton, button).click()

    QTimer.singleShot(0, click)


def test_closing_during_a_run_asks_and_keep_or_cancel_keeps_it(open_window, qtbot, panel_data, tmp_path):
    """Reproduction 4: Close (or Ctrl+Q) during an in-window run asks: stop and close, keep running, cancel."""
    window = open_window([TINY_SPEC, TINY_SPEC, "--strategy", "none"])  # trains from scratch
    panel = window.train_panel
    panel.train_edit.setText(str(panel_data / "train"))
    panel.val_edit.setText(str(panel_data / "val"))
    panel.out_edit.setText(str(tmp_path / "runs"))
    panel.size_spin.setValue(32)
    panel.batch_spin.setValue(8)
    panel.epochs_spin.setValue(500)  # long enough to be running while the questions are answered
    panel.start()
    qtbot.waitUntil(lambda: panel.busy and panel._latest_step is not None, timeout=60000)
    seen: list[str] = []
    _answer_stop_box(window, "stopRunKeep", seen)
    window.close()
    assert window.isVisible() and panel.busy and window.pages.currentWidget() is panel
    _answer_stop_box(window, "stopRunCancel", seen)
    [quit_action] = [a for a in window.actions() if a.text() == "&Quit"]
    quit_action.trigger()  # File > Quit (Ctrl+Q) asks the same
    assert window.isVisible() and panel.busy and len(seen) == 2
    _answer_stop_box(window, "stopRunStop", seen)
    window.close()
    assert not window.isVisible() and not panel.busy and len(seen) == 3


def test_the_training_page_shows_its_controls_at_1024x640(open_window, qtbot):
    """Reproduction 5: Training is a page of its own; Start, Pause and Stop are on screen at 1024x640."""
    window = open_window()
    window.resize(1024, 640)
    window.pages.setCurrentWidget(window.train_panel)
    qtbot.waitUntil(lambda: window.train_panel.isVisible(), timeout=5000)
    panel = window.train_panel
    assert panel.height() > 400, "a page, not a 250 px dock"
    for button in (panel.start_button, panel.pause_button, panel.stop_button):
        top_left = button.mapTo(window, button.rect().topLeft())
        bottom_right = button.mapTo(window, button.rect().bottomRight())
        assert button.isVisible() and window.rect().contains(top_left) and window.rect().contains(bottom_right)
    assert not window.suggest_dock.isVisible(), "the editor's docks stay on the editor page"
