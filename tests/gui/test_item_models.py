"""The item models: QAbstractItemModelTester, filtering once over the key list, mime data."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtTest import QAbstractItemModelTester

from spp_gui.core.mapping import Entry, Mapping
from spp_gui.core.strategies import source_side, suggest, target_side
from spp_gui.core.tree import ParamTree
from spp_gui.gui.document import Loaded, MappingDocument
from spp_gui.gui.suggest_panel import SuggestionsModel
from spp_gui.gui.tree_model import MIME_KEYS, PATH_ROLE, STATUS_ROLE, ParamTreeModel

FATAL = QAbstractItemModelTester.FailureReportingMode.Fatal


@pytest.fixture
def doc(qtbot):
    src, tgt = source_side("torchvision:resnet18"), target_side("torchvision:resnet18?num_classes=7")
    doc = MappingDocument()
    doc.set_sides(Loaded(src, ParamTree(src.table, src.classes), "torchvision:resnet18"),
                  Loaded(tgt, ParamTree(tgt.table, tgt.classes), "torchvision:resnet18?num_classes=7"),
                  Mapping.from_pairs({"conv1.weight": "conv1.weight", "fc.bias": "fc.bias"}))
    return doc


@pytest.mark.parametrize("side", ["source", "target"])
def test_tree_model_passes_the_tester_through_filters_and_edits(doc, side):
    model = ParamTreeModel(doc, side)
    QAbstractItemModelTester(model, FATAL)
    model.set_tree((doc.source if side == "source" else doc.target).tree)
    assert model.set_filter("layer1.0.") == 12
    assert model.set_filter(r"^layer\d\.0\.conv1\.weight$", regex=True) == 4
    doc.replace({"layer1.0.conv1.weight": Entry("layer1.0.conv1.weight", "layer1.0.conv1.weight")})
    model.set_filter("")
    assert model.rowCount() == len(doc.target.tree.root.children)


def test_filtered_tree_keeps_modules_of_matches_only(doc):
    model = ParamTreeModel(doc, "target")
    model.set_tree(doc.target.tree)
    model.set_filter("bn2.running_var")
    top = [model.index(r, 0).data(PATH_ROLE) for r in range(model.rowCount())]
    assert top == ["layer1", "layer2", "layer3", "layer4"]
    block = model.index(0, 0, model.index(0, 0))
    leaf = model.index(0, 0, model.index(0, 0, block))
    assert leaf.data(PATH_ROLE) == "layer1.0.bn2.running_var"
    assert model.parent(leaf) == model.index(0, 0, block)


def test_statuses_and_columns(doc):
    model = ParamTreeModel(doc, "target")
    model.set_tree(doc.target.tree)
    conv = model.index_of_path("conv1.weight")
    assert conv.siblingAtColumn(1).data() == "(64, 3, 7, 7)"
    assert conv.siblingAtColumn(2).data() == "float32"
    assert conv.siblingAtColumn(3).data() == "9,408"
    assert model.index_of_path("conv1").siblingAtColumn(4).data() == "Conv2d"
    assert conv.data(STATUS_ROLE) == "exact"
    assert model.index_of_path("fc.bias").data(STATUS_ROLE) == "invalid"  # 1000 vs 7 classes
    assert "shapes" in model.index_of_path("fc.bias").data(Qt.ItemDataRole.ToolTipRole)
    assert model.index_of_path("fc.weight").data(STATUS_ROLE) == "unmapped"
    assert model.index_of_path("conv1.weight").data(Qt.ItemDataRole.DecorationRole) is not None
    source = ParamTreeModel(doc, "source")
    source.set_tree(doc.source.tree)
    assert source.index_of_path("layer1.0.bn1.bias").data(STATUS_ROLE) == "unused"


def test_source_mime_data_drops_on_target_rows_only(doc):
    source, target = ParamTreeModel(doc, "source"), ParamTreeModel(doc, "target")
    source.set_tree(doc.source.tree)
    target.set_tree(doc.target.tree)
    dropped = []
    target.on_drop_keys = lambda paths, onto: dropped.append((paths, onto)) or True
    mime = source.mimeData([source.index_of_path("layer1.0.conv1.weight")])
    assert mime.hasFormat(MIME_KEYS)
    assert not source.canDropMimeData(mime, Qt.DropAction.CopyAction, -1, -1, source.index_of_path("conv1"))
    assert not target.canDropMimeData(mime, Qt.DropAction.CopyAction, -1, -1, QModelIndex())
    onto = target.index_of_path("layer1.0.conv2.weight")
    assert target.dropMimeData(mime, Qt.DropAction.CopyAction, -1, -1, onto)
    assert dropped == [(["layer1.0.conv1.weight"], "layer1.0.conv2.weight")]


def test_suggestions_model_passes_the_tester(qtbot):
    from spp_gui.gui.session import MappingSession

    model = SuggestionsModel(MappingSession())
    QAbstractItemModelTester(model, FATAL)
    result = suggest("torchvision:alexnet", "spp_gui:alexnet_spp?num_classes=20", "order")
    model.set_items(result.items)
    assert model.rowCount() == len(result.items)
    assert model.index(0, 0).data() == "will apply"  # not in the mapping until Apply
    assert model.index(model.rowCount() - 1, 0).data().startswith("candidate")
    model.set_threshold(0.0)  # everything with a source at or above 0 would apply
    assert model.index(model.rowCount() - 1, 0).data() in ("will apply", "candidate: no source")


def test_module_counts_come_from_contiguous_leaf_slices(doc):
    """Keys of a module need not be contiguous in the file: the pre-order numbering regroups them."""
    import torch

    from spp_gui.core.tensors import table_of

    tree = ParamTree(table_of({k: torch.empty(2, device="meta") for k in ("a.x", "b.y", "a.z", "b.c.w", "a.q.r")}))
    assert [n.path for n in tree.leaf_nodes] == ["a.x", "a.z", "a.q.r", "b.y", "b.c.w"]
    for node in tree.nodes:
        below = sorted(n.path for n in node.leaves())
        assert sorted(n.path for n in tree.leaf_nodes[node.first_leaf:node.first_leaf + node.count]) == below
        assert tree.nodes[node.uid] is node

    model = ParamTreeModel(doc, "target")
    model.set_tree(doc.target.tree)
    layer1 = doc.target.tree.node("layer1")
    assert model.aggregate(layer1) == {"unmapped": layer1.count}
    doc.replace({"layer1.0.conv1.weight": Entry("layer1.0.conv1.weight", "layer1.0.conv1.weight")})
    assert model.aggregate(layer1) == {"unmapped": layer1.count - 1, "exact": 1}
    from collections import Counter

    leaves = doc.target.tree.leaf_nodes
    assert model.aggregate(doc.target.tree.root) == Counter(doc.target_status(n.path) for n in leaves)
    assert model.aggregate(doc.target.tree.root) == {"unmapped": len(leaves) - 3, "exact": 2, "invalid": 1}


def test_same_shape_highlight_is_capped_nearest_first(qtbot):
    """A MoE pair: one expert shape is shared by 2 x 6 x 16 target keys; the 50 most alike are bold."""
    import torch

    from spp_gui.core.strategies import Side
    from spp_gui.core.tensors import table_of
    from spp_gui.gui.tree_model import HIGHLIGHT_MAX

    def moe(prefix: str, names: tuple[str, str, str]) -> Side:
        state = {}
        for i in range(6):
            for j in range(16):
                for n, shape in zip(names, ((32, 64), (32, 64), (64, 32)), strict=True):
                    state[f"{prefix}layers.{i}.experts.{j}.{n}.weight"] = torch.empty(*shape, device="meta")
        return Side(table_of(state))

    src, tgt = moe("model.", ("w1", "w3", "w2")), moe("transformer.", ("gate_proj", "up_proj", "down_proj"))
    doc = MappingDocument()
    doc.set_sides(Loaded(src, ParamTree(src.table), "s"), Loaded(tgt, ParamTree(tgt.table), "t"), Mapping())
    model = ParamTreeModel(doc, "target")
    model.set_tree(doc.target.tree)

    def bold() -> list[str]:
        return [n.path for n in doc.target.tree.leaf_nodes
                if model.index_of(n).data(Qt.ItemDataRole.FontRole) is not None]

    with qtbot.waitSignal(model.highlightChanged) as changed:
        total = model.set_highlight((32, 64), near="model.layers.3.experts.7.w1.weight")
    assert total == model.highlight_count == 2 * 6 * 16
    assert changed.args == [HIGHLIGHT_MAX, total]
    assert model.highlight_shown == HIGHLIGHT_MAX
    shown = bold()
    assert len(shown) == HIGHLIGHT_MAX
    assert {"transformer.layers.3.experts.7.gate_proj.weight", "transformer.layers.3.experts.7.up_proj.weight",
            "transformer.layers.3.experts.0.gate_proj.weight", "transformer.layers.0.experts.7.up_proj.weight"} <= set(shown)
    assert "transformer.layers.5.experts.15.up_proj.weight" not in shown  # other layer, other expert, far away
    far = model.index_of_path("transformer.layers.5.experts.15.up_proj.weight")
    assert "shape-compatible" in far.data(Qt.ItemDataRole.ToolTipRole)  # still said, just not bold
    assert model.highlighted(doc.target.tree.leaf("transformer.layers.3.experts.7.gate_proj.weight"))

    model.set_highlight((32, 64))  # no key to compare with: the first ones in key order
    assert bold() == [n.path for n in doc.target.tree.leaf_nodes if n.tensor.shape == (32, 64)][:HIGHLIGHT_MAX]
    model.set_highlight((64, 32), near="no.such.key")
    assert len(bold()) == HIGHLIGHT_MAX
    model.set_highlight(None)
    assert bold() == [] and model.highlight_count == 0


def test_same_shape_highlight_below_the_cap_marks_every_key(doc):
    model = ParamTreeModel(doc, "target")
    model.set_tree(doc.target.tree)
    shape = doc.target.tree.leaf("layer1.0.conv1.weight").tensor.shape
    expected = [n.path for n in doc.target.tree.leaf_nodes if n.tensor.shape == shape]
    assert model.set_highlight(shape, near="layer1.0.conv1.weight") == len(expected)
    bold = [n.path for n in doc.target.tree.leaf_nodes if model.highlighted(n)]
    assert bold == expected


def test_nearest_keys_ranks_names_from_the_end_then_position():
    import numpy as np

    from spp_gui.gui.tree_model import nearest_keys

    paths = ["a.layers.0.x.weight", "a.layers.1.x.weight", "a.layers.1.y.weight", "b.layers.1.x.bias"]
    positions = np.array([0.0, 0.3, 0.6, 0.9])
    assert list(nearest_keys(paths, positions, "m.layers.1.x.weight", 0.5, 2)) == [1, 2]  # 4 alike, then 3 and near
    assert list(nearest_keys(paths, positions, "m.layers.1.x.weight", 0.9, 2)) == [1, 3]  # 3 alike each: nearer wins
    assert list(nearest_keys(paths, positions, None, 0.7, 4)) == [2, 3, 1, 0]
    assert list(nearest_keys(paths, positions, None, None, 3)) == [0, 1, 2]
