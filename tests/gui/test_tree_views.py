"""The tree panels with real widgets on real trees: Expand all (at once, or as rows come on screen on a
big tree), Esc and the filter restoring what was expanded, reveal, and the same-shape count."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

from spp_gui.core.mapping import Mapping
from spp_gui.core.strategies import Side, source_side, target_side
from spp_gui.core.tensors import table_of
from spp_gui.core.tree import ParamTree
from spp_gui.gui import tree_panel
from spp_gui.gui.document import Loaded, MappingDocument
from spp_gui.gui.link_groups import shown_rows
from spp_gui.gui.tree_model import ParamTreeModel
from spp_gui.gui.tree_panel import TreePanel


def moe_table(layers: int, experts: int, names: tuple[str, ...], prefix: str, mlp: str):
    """The benchmark's MoE layout, smaller: meta tensors, so only names and shapes exist."""
    state = {f"{prefix}embed.weight": torch.empty(320, 64, device="meta")}
    for i in range(layers):
        base = f"{prefix}layers.{i}."
        for part in ("q", "k", "v", "o"):
            state[f"{base}attn.{part}.weight"] = torch.empty(64, 64, device="meta")
        state[f"{base}norm.weight"] = torch.empty(64, device="meta")
        state[f"{base}{mlp}.router.weight"] = torch.empty(experts, 64, device="meta")
        for j in range(experts):
            for n, shape in zip(names, ((32, 64), (32, 64), (64, 32)), strict=True):
                state[f"{base}{mlp}.experts.{j}.{n}.weight"] = torch.empty(*shape, device="meta")
    return table_of(state)


def make_doc(source: Side, target: Side, pairs: dict[str, str]) -> MappingDocument:
    doc = MappingDocument()
    doc.set_sides(Loaded(source, ParamTree(source.table, source.classes), "s"),
                  Loaded(target, ParamTree(target.table, target.classes), "t"), Mapping.from_pairs(pairs))
    return doc


def make_panel(qtbot, doc: MappingDocument, side: str = "target") -> TreePanel:
    model = ParamTreeModel(doc, side)
    model.set_tree((doc.target if side == "target" else doc.source).tree)
    panel = TreePanel(model, side)
    qtbot.addWidget(panel)
    panel.resize(600, 420)
    panel.show()
    panel.reset()
    return panel


@pytest.fixture
def moe_doc(qtbot):
    """12 layers x 64 experts: 2,317 keys, 5,573 rows once expanded (past FULL_EXPAND_ROWS)."""
    source = Side(moe_table(12, 64, ("w1", "w3", "w2"), "model.", "mlp"))
    target = Side(moe_table(12, 64, ("gate_proj", "up_proj", "down_proj"), "transformer.", "moe"))
    return make_doc(source, target, dict(zip(target.table, source.table, strict=True)))


@pytest.fixture
def resnet_doc(qtbot):
    src, tgt = source_side("torchvision:resnet18"), target_side("torchvision:resnet18?num_classes=7")
    return make_doc(src, tgt, {"conv1.weight": "conv1.weight"})


def on_screen(panel: TreePanel) -> list:
    """The nodes of the rows inside the viewport, top to bottom."""
    view, out = panel.view, []
    index = view.indexAt(QPoint(1, 1))
    while index.isValid() and view.visualRect(index).top() < view.viewport().height():
        out.append(panel.model.node(index))
        index = view.indexBelow(index)
    return out


def collapsed_on_screen(panel: TreePanel) -> list[str]:
    view, model = panel.view, panel.model
    return [n.path for n in on_screen(panel) if n.tensor is None and not view.isExpanded(model.index_of(n))]


def test_expand_all_on_a_small_tree_expands_every_module(qtbot, resnet_doc):
    panel = make_panel(qtbot, resnet_doc)
    panel.expand_all()
    assert panel.expanding_all
    assert len(shown_rows(panel.view)) == panel.model.shown_count()  # every row laid out
    panel.filter.setText("layer1")
    panel.apply_filter()  # Expand all holds through a filter
    assert len(shown_rows(panel.view)) == panel.model.shown_count()
    panel.collapse_all()
    assert not panel.expanding_all
    assert [n.path for n in shown_rows(panel.view)] == ["layer1"]


def test_expand_all_on_a_big_tree_expands_what_comes_on_screen(qtbot, moe_doc):
    panel = make_panel(qtbot, moe_doc)
    assert panel.model.shown_count() > tree_panel.FULL_EXPAND_ROWS
    panel.expand_all()
    assert panel.expanding_all
    assert collapsed_on_screen(panel) == []
    laid_out = len(shown_rows(panel.view))
    assert laid_out < panel.model.shown_count() // 10  # a few pages, not the whole tree

    bar = panel.view.verticalScrollBar()
    bar.setValue(bar.maximum())  # the scroll lands on collapsed modules; the pass after it opens them
    qtbot.waitUntil(lambda: collapsed_on_screen(panel) == [])
    assert len(shown_rows(panel.view)) > laid_out

    bar.setValue(bar.maximum() // 2)
    qtbot.waitUntil(lambda: collapsed_on_screen(panel) == [])
    module = next(n for n in on_screen(panel) if n.tensor is None)
    panel.view.collapse(panel.model.index_of(module))  # the user's collapse is kept while scrolling
    bar.setValue(bar.value() + 1)
    panel.expand_visible()
    assert not panel.view.isExpanded(panel.model.index_of(module))

    panel.collapse_all()
    bar.setValue(0)
    assert panel.expand_visible() == 0  # the mode is off
    assert [n.path for n in shown_rows(panel.view)] == ["transformer"]


def test_expand_all_on_a_big_filtered_tree_expands_as_shown(qtbot, moe_doc):
    panel = make_panel(qtbot, moe_doc)
    panel.expand_all()
    panel.filter.setText("experts")  # most keys match: too many rows to expand at once
    panel.apply_filter()
    assert panel.model.shown_count() > tree_panel.FULL_EXPAND_ROWS
    assert collapsed_on_screen(panel) == []
    assert on_screen(panel)[-1].path.startswith("transformer.layers.0.moe.experts.")


def test_esc_clears_the_filter_and_restores_the_expansion(qtbot, resnet_doc):
    host = QWidget()
    qtbot.addWidget(host)
    cancel = QAction("Cancel running job", host)
    cancel.setShortcut("Esc")
    cancel.setShortcutContext(Qt.ShortcutContext.ApplicationShortcut)
    host.addAction(cancel)
    cancelled = []
    cancel.triggered.connect(lambda: cancelled.append(True))
    model = ParamTreeModel(resnet_doc, "target")
    model.set_tree(resnet_doc.target.tree)
    panel = TreePanel(model, "target")
    QVBoxLayout(host).addWidget(panel)
    host.resize(600, 420)
    host.show()
    panel.reset()
    view = panel.view
    panel.collapse_all()  # a new small tree opens its first level
    for path in ("layer1", "layer1.0", "layer3"):
        view.expand(model.index_of_path(path))

    host.activateWindow()  # shortcuts work in the active window only
    qtbot.waitUntil(lambda: QApplication.activeWindow() is host)
    panel.filter.setFocus()
    qtbot.keyClick(panel.filter, Qt.Key.Key_Escape)  # an empty box lets the window's Esc through
    assert cancelled == [True]
    qtbot.keyClicks(panel.filter, "bn2")
    qtbot.keyClick(panel.filter, Qt.Key.Key_Return)
    assert model.filtered
    view.expand(model.index_of_path("layer2"))  # expanded while filtered: not part of what comes back

    qtbot.keyClick(panel.filter, Qt.Key.Key_Escape)
    assert panel.filter.text() == ""
    assert not model.filtered
    assert cancelled == [True]  # the box took the key, not the window's Esc shortcut
    expanded = {n.path for n in shown_rows(view) if n.tensor is None and view.isExpanded(model.index_of(n))}
    assert expanded == {"layer1", "layer1.0", "layer3"}

    qtbot.keyClick(panel.filter, Qt.Key.Key_Escape)  # nothing left to clear: the shortcut gets it
    assert cancelled == [True, True]


def test_clearing_a_filter_restores_expand_all_mode(qtbot, moe_doc):
    panel = make_panel(qtbot, moe_doc)
    panel.expand_all()
    bar = panel.view.verticalScrollBar()
    bar.setValue(bar.maximum() // 2)
    panel.expand_visible()
    top = on_screen(panel)[0]
    panel.filter.setText("router")
    panel.apply_filter()
    panel.collapse_all()  # Collapse all inside the filter does not reach what comes back
    panel.clear_filter()
    assert panel.expanding_all
    assert on_screen(panel)[0] is top
    assert collapsed_on_screen(panel) == []


def test_reveal_expands_scrolls_and_selects(qtbot, moe_doc):
    panel = make_panel(qtbot, moe_doc)
    view, model = panel.view, panel.model
    path = "transformer.layers.9.moe.experts.50.up_proj.weight"
    current = view.currentIndex()
    assert panel.reveal(path)
    index = model.index_of_path(path)
    assert view.visualRect(index).intersects(view.viewport().rect())
    assert [model.node(i).path for i in view.selectionModel().selectedRows(0)] == [path]
    assert view.currentIndex() == current  # answering the other tree: the current row stays
    assert panel.reveal("transformer.layers.2.attn", current=True)
    assert view.currentIndex() == model.index_of_path("transformer.layers.2.attn")
    assert view.isExpanded(model.index_of_path("transformer.layers.9.moe.experts.50"))

    assert not panel.reveal("no.such.key")
    panel.filter.setText("attn")
    panel.apply_filter()
    assert not panel.reveal(path)  # hidden by the filter
    assert panel.reveal("transformer.layers.11.attn.q.weight")


def test_same_shape_label_counts_and_caps(qtbot, moe_doc):
    panel = make_panel(qtbot, moe_doc)
    with qtbot.waitSignal(panel.model.highlightChanged) as blocker:
        total = panel.model.set_highlight((32, 64), near="model.layers.3.mlp.experts.7.w1.weight")
    assert total == 12 * 64 * 2
    assert blocker.args == [50, total]
    assert panel.same_shape.isVisibleTo(panel)
    assert panel.same_shape.text() == f"same shape: 50 of {total:,} shown"
    panel.model.set_highlight(None)
    assert not panel.same_shape.isVisibleTo(panel)


def test_busy_cursor_while_a_tree_expands_at_once(qtbot, monkeypatch):
    """6 x 32 experts: 1,416 rows, past BUSY_ROWS and within FULL_EXPAND_ROWS: expanded at once."""
    source = Side(moe_table(6, 32, ("w1", "w3", "w2"), "model.", "mlp"))
    panel = make_panel(qtbot, make_doc(source, source, {}))
    assert tree_panel.BUSY_ROWS < panel.model.shown_count() <= tree_panel.FULL_EXPAND_ROWS
    cursors = []
    expand_all = panel.view.expandAll

    def watched() -> None:
        cursor = QApplication.overrideCursor()
        cursors.append(cursor.shape() if cursor is not None else None)
        expand_all()

    monkeypatch.setattr(panel.view, "expandAll", watched)
    with qtbot.waitSignal(panel.view.expansionReset):  # the link canvas listens: no per-row signals
        panel.expand_all()
    assert cursors == [Qt.CursorShape.WaitCursor]
    assert QApplication.overrideCursor() is None
    assert len(shown_rows(panel.view)) == panel.model.shown_count()
    with qtbot.waitSignal(panel.view.expansionReset):
        panel.collapse_all()


def test_regex_toggle_on_an_empty_filter_keeps_the_expansion(qtbot, resnet_doc):
    panel = make_panel(qtbot, resnet_doc)
    layer1 = panel.model.index_of_path("layer1.0")
    panel.view.expand(layer1)
    panel.regex.setChecked(True)
    assert panel.view.isExpanded(layer1)
    assert panel.matches.text() == f"{len(resnet_doc.target.tree):,} keys"
