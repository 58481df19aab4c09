"""The editor's Verify action: a real mapping agrees, a swapped pair is flagged, stale colours go away."""

from __future__ import annotations

import torch
from PySide6.QtTest import QAbstractItemModelTester
from PySide6.QtWidgets import QMessageBox

from spp_gui.core.verify import AGREE, DISAGREE, NOT_COMPARED
from spp_gui.gui.verify_view import VerifyTableModel

SPP20 = "spp_gui:alexnet_spp?num_classes=20"
CONVS = ("features.0", "features.3", "features.6", "features.8", "features.10")


def verify(window, qtbot, shape=(1, 3, 96, 96)):
    """Trigger the menu action on a small batch and wait for its report."""
    window.verify.input_shape = shape
    assert window.verify_action.isEnabled()
    with qtbot.waitSignal(window.verify.reported, timeout=60000) as blocker:
        window.verify_action.trigger()
    qtbot.waitUntil(lambda: not window.pool.busy and not window.progress.busy, timeout=10000)
    return blocker.args[0]


def test_a_correct_alexnet_to_spp_session_agrees_and_colours_the_links(open_window, qtbot):
    window = open_window()  # torchvision:alexnet -> AlexNet_SPP(20), strategy order
    report = verify(window, qtbot)
    assert report.ok
    canvas = window.canvas
    for conv in CONVS:
        assert canvas.verify_status[conv] == AGREE
        assert canvas.key_status(f"{conv}.weight") == AGREE
        assert canvas.key_status(f"{conv}.bias") == AGREE
    assert canvas.key_status("classifier.1.bias") == NOT_COMPARED  # its weight keeps the target's init
    assert "links coloured by verify" in canvas.toolTip().lower()
    assert window.statusBar().currentMessage().startswith("Verify: 5 agree, 0 disagree")
    assert window.verify.bar.isVisible()
    dialog = window.verify.dialog
    assert dialog.isVisible() and not dialog.isModal()
    assert "No compared layer disagrees" in dialog.summary.text()
    canvas.grab()  # paints in verify colours without error
    assert canvas._by_target  # links were grouped under the verify statuses


def test_a_swapped_pair_of_equal_convs_is_flagged_and_reported(open_window, qtbot):
    window = open_window(["torchvision:resnet18", "torchvision:resnet18", "--strategy", "exact"])
    a, b = "layer1.0.conv1.weight", "layer1.0.conv2.weight"
    assert window.edits.map_paths([b], a) and window.edits.map_paths([a], b)  # two undoable edits
    report = verify(window, qtbot, (1, 3, 64, 64))
    assert not report.ok
    assert window.canvas.key_status(a) == DISAGREE
    assert window.canvas.key_status("conv1.weight") == AGREE  # before the swap all agrees
    assert "disagree" in window.statusBar().currentMessage()
    assert ", 0 disagree" not in window.statusBar().currentMessage()
    dialog = window.verify.dialog
    first = dialog.model.rows[0]  # disagreeing layers are listed first
    assert (first.status, first.target_module, first.source_module) == (DISAGREE, "layer1.0.conv1", "layer1.0.conv2")
    assert first.cosine < 0.99 and first.rel_error > 1e-3
    row = [dialog.model.index(0, c).data() for c in range(dialog.model.columnCount())]
    assert row[:3] == [DISAGREE, "layer1.0.conv1", "layer1.0.conv2"] and row[3] and row[4]
    assert "layer1.0.conv1" in dialog.summary.text()
    tip = window.canvas.link_tip(window.doc.target.tree.node(a), window.doc.source.tree.node(b))
    assert "disagree (cosine" in tip and "layer1.0.conv2" in tip  # what hovering the red link says
    dialog.table.clicked.emit(dialog.model.index(0, 1))  # a row selects the layer in both trees
    assert window.target_model.node(window.target_panel.view.currentIndex()).path == "layer1.0.conv1"
    assert window.source_model.node(window.source_panel.view.currentIndex()).path == "layer1.0.conv2"


def test_a_plain_checkpoint_source_is_explained_not_run(open_window, qtbot, tmp_path):
    path = tmp_path / "features.pth"
    torch.save({"features.0.weight": torch.randn(64, 3, 11, 11), "features.0.bias": torch.randn(64)}, path)
    window = open_window([str(path), SPP20, "--strategy", "order"])
    assert window.doc.mapping.entries and window.verify_action.isEnabled()
    with qtbot.waitSignal(window.verify.failed, timeout=5000) as blocker:
        window.verify_action.trigger()
    assert "model spec or torchvision model" in blocker.args[0] and "features.pth" in blocker.args[0]
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 1 and "--source-model" in boxes[0].text()
    boxes[0].accept()
    assert window.verify.job is None and not window.pool.busy
    assert window.canvas.verify_status is None


def test_editing_the_mapping_clears_the_colours(open_window, qtbot):
    window = open_window()
    verify(window, qtbot)
    assert window.canvas.verify_status is not None
    window.edits.unmap(["features.10.bias"])
    assert window.canvas.verify_status is None
    assert window.canvas.key_status("features.0.weight") == "exact"
    assert not window.verify.bar.isVisible()
    assert "changed after this check" in window.verify.dialog.summary.text()
    verify(window, qtbot)
    window.stack.undo()  # undo is an edit too
    assert window.canvas.verify_status is None


def test_no_session_or_empty_mapping_disables_the_action(open_window):
    window = open_window(["torchvision:alexnet", SPP20, "--strategy", "none"])
    assert not window.doc.mapping.entries
    assert not window.verify_action.isEnabled()
    assert "mapping is empty" in window.verify_action.toolTip()


def test_a_bad_input_shape_is_reported_in_the_dialog(open_window, qtbot):
    window = open_window()
    window.verify.input_shape = (1, 5, 64, 64)  # AlexNet takes 3 channels
    with qtbot.waitSignal(window.verify.failed, timeout=60000) as blocker:
        window.verify_action.trigger()
    qtbot.waitUntil(lambda: not window.pool.busy, timeout=10000)
    assert "input (1, 5, 64, 64)" in blocker.args[0]
    dialog = window.verify.dialog
    assert dialog.isVisible() and "Verify failed" in dialog.summary.text()
    assert dialog.shape.text() == "1,5,64,64"
    dialog.shape.setText("1,3,a")
    with qtbot.waitSignal(window.verify.failed, timeout=5000):
        dialog.shape.returnPressed.emit()
    dialog.shape.setText("1,3,80,80")
    with qtbot.waitSignal(window.verify.reported, timeout=60000):
        dialog.shape.returnPressed.emit()
    qtbot.waitUntil(lambda: not window.pool.busy, timeout=10000)
    assert window.verify.report.input_shape == (1, 3, 80, 80)


def test_the_report_table_model_is_well_behaved(qtbot):
    from spp_gui.core.verify import LayerCheck, VerifyReport

    model = VerifyTableModel()
    QAbstractItemModelTester(model, QAbstractItemModelTester.FailureReportingMode.Fatal)
    model.set_report(VerifyReport([LayerCheck("b", "a", AGREE, 1.0, 0.0),
                                   LayerCheck("c", "d", DISAGREE, 0.1, 2.0, "same input, different output")],
                                  (1, 3, 8, 8)))
    assert [model.index(r, 1).data() for r in range(2)] == ["c", "b"]
    model.set_report(None)
    assert model.rowCount() == 0


def test_a_result_that_arrives_after_an_edit_is_dropped(open_window, qtbot):
    window = open_window()
    window.verify.input_shape = (1, 3, 64, 64)
    job = window.verify.run()
    # the result can only arrive through the event loop, so this edit comes first whatever the timing
    window.edits.unmap(["features.10.bias"])
    with qtbot.waitSignal(job.ended, timeout=60000):
        pass
    assert window.canvas.verify_status is None and window.verify.report is None
    assert "dropped" in window.statusBar().currentMessage()


def test_cancel_leaves_the_links_as_they_were(open_window, qtbot):
    window = open_window()
    window.verify.input_shape = (1, 3, 64, 64)
    job = window.verify.run()
    assert window.progress.busy and window.progress.label.text().startswith("Verifying")
    window.progress.cancel_button.click()
    with qtbot.waitSignal(job.ended, timeout=60000):
        pass
    qtbot.waitUntil(lambda: not window.pool.busy, timeout=10000)
    assert window.canvas.verify_status is None and window.verify.job is None
    assert window.statusBar().currentMessage() == "Verify cancelled"


def test_all_zero_outputs_are_not_informative_in_the_editor(open_window, qtbot, tmp_path):
    """A zero-initialised branch gives zeros on both sides: shown as 'not informative', never as a verdict."""
    from spp_gui.core.verify import NOT_INFORMATIVE

    net = tmp_path / "zeros.py"
    net.write_text("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
                   "        super().__init__()\n        self.branch = nn.Linear(4, 4)\n"
                   "        nn.init.zeros_(self.branch.weight)\n        nn.init.zeros_(self.branch.bias)\n\n"
                   "    def forward(self, x):\n        return self.branch(x)\n")
    spec = f"{net}:Net"
    window = open_window([spec, spec, "--strategy", "exact"])
    window.verify.input_shape = (2, 4)
    job = window.verify.run()
    with qtbot.waitSignal(window.verify.reported, timeout=60000):
        pass
    assert job is not None
    statuses = {c.status for c in window.verify.report.layers}
    assert NOT_INFORMATIVE in statuses
    assert "not informative" in window.statusBar().currentMessage()
    assert window.verify.dialog.model.rowCount() >= 1
