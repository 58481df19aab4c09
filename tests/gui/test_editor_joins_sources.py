"""Several sources into one target in the editor: HF ViT's q/k/v projections into timm's fused qkv.

On the real window (offscreen): several keys dropped at once join them, Ctrl+drop adds one, the
links are drawn from each source, every source counts as used, the inspector lists the sources
and removes and reorders them, and every step is one undo.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

pytest.importorskip("timm")
pytest.importorskip("transformers")

from test_editing import answer_next_choice, drop_on, row_point  # noqa: E402
from test_session import _click  # noqa: E402

from spp_gui.gui.link_canvas import visible_rows  # noqa: E402

HF = "hf:ViTModel?hidden_size=32&num_hidden_layers=1&num_attention_heads=2&intermediate_size=64&image_size=32&patch_size=8"
TIMM = "timm:vit_tiny_patch16_224?img_size=32&patch_size=8&embed_dim=32&depth=1&num_heads=2&mlp_ratio=2&num_classes=10"
PAIR = [HF, TIMM, "--strategy", "none"]
QKV = [f"layers.0.attention.{n}_proj.weight" for n in "qkv"]
TARGET = "blocks.0.attn.qkv.weight"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _mime(window, keys):
    return window.source_model.mimeData([window.source_model.index_of_path(k) for k in keys])


def test_several_keys_dropped_on_one_target_join_and_draw_a_link_each(open_window, qtbot):
    window = open_window(PAIR)
    window.expand_all()
    qtbot.waitExposed(window)
    assert drop_on(window.target_panel.view, _mime(window, QKV), row_point(window.target_panel, TARGET))
    entry = window.doc.mapping.get(TARGET)
    assert entry.sources == tuple(QKV) and entry.transform == {"op": "concat", "dim": 0}
    assert window.doc.target_status(TARGET) == "adapted"
    assert [window.doc.source_status(k) for k in QKV] == ["adapted"] * 3  # each source is used
    assert "unused" not in {window.source_model.status_of(window.doc.source.tree.leaf(k)) for k in QKV}
    assert window.doc.mapping.version == 2 and window.stack.count() == 1

    # one link from each source row into the target row, and a hovered one says which it is
    window.canvas.repaint()
    t_node = window.doc.target.tree.leaf(TARGET)
    assert {s.path for s, _status, _n in window.canvas._by_target[t_node]} == set(QKV)
    drawn = {s.path for _path, t, s in window.canvas._hits if t is t_node}  # those whose rows are on screen
    assert QKV[0] in drawn and QKV[1] in drawn
    s_node = window.doc.source.tree.leaf(QKV[1])
    assert "source 2 of 3, joined by concat along dim 0" in window.canvas.link_tip(t_node, s_node)
    s_rows, t_rows = visible_rows(window.source_panel.view), visible_rows(window.target_panel.view)
    ys = s_rows[s_node] + window.canvas._offset(window.source_panel.view)
    yt = t_rows[t_node] + window.canvas._offset(window.target_panel.view)
    with qtbot.waitSignal(window.canvas.linkClicked) as blocker:
        QTest.mouseClick(window.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         QPoint(window.canvas.width() // 2, (ys + yt) // 2))
    assert blocker.args == [TARGET, QKV[1]]
    assert "3 sources: " in window.inspector.labels["Source"].text()

    window.stack.undo()
    assert TARGET not in window.doc.mapping and window.doc.source_status(QKV[0]) == "unused"

    # sources that cannot be joined are refused with the shapes
    drop_on(window.target_panel.view, _mime(window, [QKV[0], "layers.0.mlp.fc2.weight"]),
            row_point(window.target_panel, TARGET))
    assert TARGET not in window.doc.mapping
    assert "Cannot join layers.0.attention.q_proj.weight (32, 32) + layers.0.mlp.fc2.weight (32, 64) into " \
        "blocks.0.attn.qkv.weight (96, 32)" in window.statusBar().currentMessage()


def test_ctrl_drop_adds_a_source_one_at_a_time(open_window, qtbot):
    window = open_window(PAIR)
    window.expand_all()
    bias = "blocks.0.attn.qkv.bias"
    view = window.target_panel.view
    # held through the drops, as a user holds it (a Ctrl press reports Ctrl as held once it is down)
    QTest.keyPress(view, Qt.Key.Key_Control, Qt.KeyboardModifier.ControlModifier)
    try:
        for n in "qkv":
            drop_on(view, _mime(window, [f"layers.0.attention.{n}_proj.bias"]), row_point(window.target_panel, bias))
            if n == "q":  # the first alone does not fit yet: mapped, shown invalid, and the bar says what to do
                assert window.doc.target_status(bias) == "invalid"
                assert "Ctrl+drop the other sources" in window.statusBar().currentMessage()
    finally:
        QTest.keyRelease(view, Qt.Key.Key_Control)
    entry = window.doc.mapping.get(bias)
    assert entry.sources == tuple(f"layers.0.attention.{n}_proj.bias" for n in "qkv")
    assert window.doc.target_status(bias) == "adapted" and window.stack.count() == 3
    window.stack.undo()
    assert window.doc.mapping.get(bias).sources == tuple(f"layers.0.attention.{n}_proj.bias" for n in "qk")
    assert window.doc.target_status(bias) == "invalid"
    assert "add up to 32 + 32 = 64 along dim 0; the target has 96" in window.doc.status.problems[bias]
    # without Ctrl a drop on a mapped target replaces its entry, as before (shapes differ: the transforms offered)
    offered = answer_next_choice()
    drop_on(view, _mime(window, ["layers.0.attention.v_proj.bias"]), row_point(window.target_panel, bias))
    assert offered and window.doc.mapping.get(bias).sources == ("layers.0.attention.v_proj.bias",)
    assert window.doc.mapping.version == 1


def test_inspector_lists_removes_and_reorders_sources_undoably(open_window, qtbot):
    window = open_window(PAIR)
    window.expand_all()
    window.edits.map_paths(QKV, TARGET)
    window.select_link(TARGET, QKV[0])
    inspector = window.inspector
    assert inspector.target == TARGET
    rows = [inspector.sources.item(i).data(Qt.ItemDataRole.UserRole) for i in range(inspector.sources.count())]
    assert rows == QKV
    assert inspector.fits.currentData() == {"op": "concat", "dim": 0}

    inspector.sources.setCurrentRow(2)
    inspector.source_up.click()
    assert window.doc.mapping.get(TARGET).sources == (QKV[0], QKV[2], QKV[1])
    assert inspector.sources.currentRow() == 1  # the moved key stays selected
    assert not inspector.source_up.isEnabled() or inspector.sources.currentRow() > 0
    window.stack.undo()
    assert window.doc.mapping.get(TARGET).sources == tuple(QKV)

    inspector.sources.setCurrentRow(1)
    inspector.source_remove.click()
    assert window.doc.mapping.get(TARGET).sources == (QKV[0], QKV[2])
    assert window.doc.target_status(TARGET) == "invalid"
    inspector.sources.setCurrentRow(1)
    inspector.source_remove.click()  # one left: a plain entry again (its shapes differ: invalid)
    assert window.doc.mapping.get(TARGET).sources == (QKV[0],) and window.doc.mapping.get(TARGET).transform is None
    assert not inspector.source_remove.isEnabled()  # the last source goes with "Remove entry"
    window.stack.undo()
    window.stack.undo()
    assert window.doc.mapping.get(TARGET).sources == tuple(QKV)

    # "Add source..." offers the keys that could join (the target's shape, smaller in one dim)
    inspector.sources.setCurrentRow(2)
    inspector.source_remove.click()
    offered = inspector.joinable_sources()
    assert QKV[2] in offered and QKV[0] not in offered and "layers.0.mlp.fc2.weight" not in offered
    seen = answer_next_choice(QKV[2])  # the real dialog: its list, then the key chosen
    inspector.source_add.click()
    assert seen and QKV[2] in seen[0]
    assert window.doc.mapping.get(TARGET).sources == tuple(QKV)
    assert window.doc.target_status(TARGET) == "adapted"


def test_auto_joins_in_a_session_undo_save_reopen_and_a_new_target_keeps_them(open_window, qtbot, wait_idle, tmp_path):
    """The chain a user makes: Suggest (auto) joins q, k, v; Apply; undo and redo; save; reopen; then
    another target (a 4-class head): the joined entries are kept, and that step undoes too."""
    from spp_gui.core.mapping import Mapping

    window = open_window(PAIR)
    window.suggest.strategy.setCurrentText("auto")
    window.suggest.request_run()
    wait_idle(window)
    rows = [s for s in window.suggest.table_model.items if s.target == TARGET]
    assert len(rows) == 1 and rows[0].sources == tuple(QKV) and rows[0].accepted
    assert window.suggest.table_model.data(window.suggest.table_model.index(
        window.suggest.table_model.items.index(rows[0]), 2)).startswith(" + ".join(QKV))
    window.inspector.show_target(TARGET)
    assert window.inspector.options.item(0).text().startswith(" + ".join(QKV))  # every source, in order
    window.suggest.accept_all.click()
    assert window.doc.mapping.get(TARGET).sources == tuple(QKV) and window.stack.count() == 1
    assert "target tensors mapped" in window.summary.text() and not window.session.problems()
    window.stack.undo()
    assert window.doc.mapping.get(TARGET) is None
    window.stack.redo()
    assert window.doc.mapping.get(TARGET).sources == tuple(QKV)
    out = tmp_path / "joined.json"
    assert window.files.save_mapping(str(out))
    assert Mapping.load(out).version == 2
    again = open_window(["--mapping", str(out)])
    wait_idle(again)
    assert again.doc.mapping == window.doc.mapping and again.doc.target_status(TARGET) == "adapted"

    before = again.doc.mapping.copy()
    again.files.open_session(None, TIMM.replace("num_classes=10", "num_classes=4"))
    _click(qtbot, again, "replaceSideBox", "keepButton")
    wait_idle(again)
    kept = again.doc.mapping
    assert kept.get(TARGET).sources == tuple(QKV) and not again.session.problems()
    assert list(kept) == list(before) and kept.target_spec.endswith("num_classes=4")  # (ViTModel has no head)
    again.stack.undo()
    assert again.doc.mapping == before and again.doc.target.spec == TIMM
