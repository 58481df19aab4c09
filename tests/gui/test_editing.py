"""Mapping by drag and drop, keyboard, module onto module, undo/redo, link clicks."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt, QTimer
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QDialog

from spp_gui.gui.editing import PairingPreview
from spp_gui.gui.link_canvas import visible_rows

EMPTY = ["torchvision:alexnet", "spp_gui:alexnet_spp?num_classes=20", "--strategy", "none"]


def row_point(panel, path: str) -> QPoint:
    index = panel.model.index_of_path(path)
    panel.view.scrollTo(index)
    return panel.view.visualRect(index).center()


def drop_on(view, mime, pos: QPoint) -> bool:
    """Deliver a drag enter/move/drop to a view at a pixel, as the platform would after a drag."""
    point = QPointF(pos)
    actions = Qt.DropAction.CopyAction | Qt.DropAction.LinkAction
    buttons, mods = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(pos, actions, mime, buttons, mods)
    QApplication.sendEvent(view.viewport(), enter)
    move = QDragMoveEvent(pos, actions, mime, buttons, mods)
    QApplication.sendEvent(view.viewport(), move)
    if not move.isAccepted():
        return False
    drop = QDropEvent(point, actions, mime, buttons, mods)
    QApplication.sendEvent(view.viewport(), drop)
    return drop.isAccepted()


def test_drop_of_source_mime_on_a_target_row_maps_it(open_window):
    window = open_window()
    window.expand_all()
    key = "features.3.bias"
    window.edits.unmap([key])
    mime = window.source_model.mimeData([window.source_model.index_of_path("features.3.bias")])
    assert window.target_model.dropMimeData(mime, Qt.DropAction.CopyAction, -1, -1,
                                            window.target_model.index_of_path(key))
    assert window.doc.mapping.get(key).source == "features.3.bias"
    assert window.doc.mapping.get(key).origin == "manual"


def test_mouse_drag_from_source_row_onto_target_row(open_window, qtbot):
    window = open_window(EMPTY)  # empty mapping
    window.expand_all()
    assert len(window.doc.mapping) == 0
    sview, tview = window.source_panel.view, window.target_panel.view
    start = row_point(window.source_panel, "features.6.weight")
    QTest.mousePress(sview.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for dx in (8, 30):  # past the start-drag distance: the view asks the model for mime data
        QApplication.sendEvent(sview.viewport(), QMouseEvent(
            QEvent.Type.MouseMove, QPointF(start + QPoint(dx, 2)), QPointF(sview.viewport().mapToGlobal(start)),
            Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
    QTest.mouseRelease(sview.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    assert window._selected_paths(window.source_panel) == ["features.6.weight"]
    # The offscreen platform has no drag-and-drop loop, so deliver the drop as the platform would.
    mime = window.source_model.mimeData(sview.selectionModel().selectedRows(0))
    assert drop_on(tview, mime, row_point(window.target_panel, "features.6.weight"))
    assert window.doc.mapping.pairs() == {"features.6.weight": "features.6.weight"}
    assert window.doc.target_status("features.6.weight") == "exact"
    # a drop that no transform can fit is refused, with the reason in the status bar
    mime = window.source_model.mimeData([window.source_model.index_of_path("features.0.bias")])
    drop_on(tview, mime, row_point(window.target_panel, "features.3.weight"))
    assert "features.3.weight" not in window.doc.mapping
    assert "features.0.bias (64) onto features.3.weight (192, 64, 5, 5)" in window.statusBar().currentMessage()


def answer_next_choice(choose: str | None = None) -> list[list[str]]:
    """Answer the next modal item dialog (the real QInputDialog) once the event loop runs: its list of
    items goes into the returned list, then ``choose`` (default: the first) is accepted."""
    offered: list[list[str]] = []

    def answer():
        dialog = QApplication.activeModalWidget()
        offered.append(dialog.comboBoxItems())
        if choose is not None:
            dialog.setTextValue(choose)
        dialog.accept()

    QTimer.singleShot(0, answer)
    return offered


def test_shapes_that_differ_offer_the_transforms_that_fit(open_window, qtbot):
    window = open_window(EMPTY)
    offered = answer_next_choice()
    assert window.edits.map_paths(["classifier.1.weight"], "classifier.1.weight")
    assert offered and offered[0][0].startswith("spp_grid")
    entry = window.doc.mapping.get("classifier.1.weight")
    assert entry.transform["op"] == "spp_grid"
    assert window.doc.target_status("classifier.1.weight") == "adapted"


def select(panel, path: str) -> None:
    index = panel.model.index_of_path(path)
    panel.view.setCurrentIndex(index)


def test_keyboard_map_delete_and_undo_redo_round_trip(open_window, qtbot):
    window = open_window()
    window.expand_all()
    before = window.doc.mapping.copy()
    select(window.source_panel, "classifier.4.weight")
    select(window.target_panel, "classifier.4.weight")
    window.edits.unmap(["classifier.4.weight"])
    assert "classifier.4.weight" not in window.doc.mapping
    assert window.modified and window.isWindowModified()
    window.target_panel.view.setFocus()
    QTest.keyClick(window.target_panel.view, Qt.Key.Key_M)
    assert window.doc.mapping.get("classifier.4.weight").source == "classifier.4.weight"
    QTest.keyClick(window.target_panel.view, Qt.Key.Key_Delete)
    assert "classifier.4.weight" not in window.doc.mapping
    assert window.stack.count() == 3
    while window.stack.canUndo():
        window.stack.undo()
    assert window.doc.mapping.entries == before.entries
    assert not window.modified
    while window.stack.canRedo():
        window.stack.redo()
    assert "classifier.4.weight" not in window.doc.mapping
    assert len(window.doc.mapping) == len(before) - 1


def test_selecting_a_key_highlights_shape_compatible_keys_in_the_other_tree(open_window):
    window = open_window()
    window.expand_all()
    select(window.source_panel, "features.8.weight")
    assert window.target_model.highlight_shape == (256, 384, 3, 3)
    bold = window.target_model.index_of_path("features.8.weight").data(Qt.ItemDataRole.FontRole)
    assert bold is not None and bold.bold()
    assert window.target_model.index_of_path("features.6.weight").data(Qt.ItemDataRole.FontRole) is None


def test_module_onto_module_maps_children_and_previews_when_ambiguous(open_window, qtbot):
    window = open_window(EMPTY)
    assert window.edits.map_paths(["features.0"], "features.0")  # same relative names: no preview
    assert window.doc.mapping.pairs() == {"features.0.weight": "features.0.weight", "features.0.bias": "features.0.bias"}
    window.stack.undo()
    seen = []

    def accept_preview():
        dialog = QApplication.activeModalWidget()
        seen.append(type(dialog))
        dialog.accept()

    QTimer.singleShot(0, accept_preview)
    assert window.edits.map_paths(["classifier"], "classifier")  # 1.weight and 6.* do not fit: preview
    assert seen == [PairingPreview]
    assert window.doc.mapping.get("classifier.4.weight").source == "classifier.4.weight"
    assert "classifier.1.weight" not in window.doc.mapping
    assert window.stack.count() == 1 and window.stack.undoText().startswith("Map module")
    QTimer.singleShot(0, lambda: QApplication.activeModalWidget().done(QDialog.DialogCode.Rejected))
    window.stack.undo()
    assert not window.edits.map_paths(["classifier"], "classifier")
    assert len(window.doc.mapping) == 0


def test_accepting_suggestions_is_one_undo_step(open_window, wait_idle):
    window = open_window(EMPTY)
    window.suggest.strategy.setCurrentText("order")
    window.suggest.request_run()
    wait_idle(window)
    assert window.suggest.table_model.rowCount() == 16
    window.suggest.accept_all.click()
    assert len(window.doc.mapping) == 13 and window.stack.count() == 1
    window.stack.undo()
    assert len(window.doc.mapping) == 0


def test_clicking_a_link_selects_its_entry(open_window, qtbot):
    window = open_window()
    window.expand_all()
    qtbot.waitExposed(window)
    window.canvas.repaint()
    s_rows, t_rows = visible_rows(window.source_panel.view), visible_rows(window.target_panel.view)
    s_node = window.doc.source.tree.leaf("features.3.weight")
    t_node = window.doc.target.tree.leaf("features.3.weight")
    ys = s_rows[s_node] + window.canvas._offset(window.source_panel.view)
    yt = t_rows[t_node] + window.canvas._offset(window.target_panel.view)
    point = QPoint(window.canvas.width() // 2, (ys + yt) // 2)
    with qtbot.waitSignal(window.canvas.linkClicked) as blocker:
        QTest.mouseClick(window.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, point)
    assert blocker.args == ["features.3.weight", "features.3.weight"]
    assert window.inspector.target == "features.3.weight"
    assert window._selected_paths(window.target_panel) == ["features.3.weight"]
    assert "features.3.weight" in window.inspector.labels["Source"].text()
