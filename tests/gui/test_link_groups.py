"""The link canvas's grouping (binary search over pre-order leaf slices) against a plain per-key walk."""

from __future__ import annotations

from collections import Counter

import pytest
from PySide6.QtWidgets import QTreeView

from spp_gui.core.mapping import Entry, Mapping
from spp_gui.core.strategies import source_side, target_side
from spp_gui.core.tree import ParamTree
from spp_gui.gui.document import Loaded, MappingDocument
from spp_gui.gui.link_groups import MappedLeaves, anchor_rows, link_groups
from spp_gui.gui.tree_model import ParamTreeModel


@pytest.fixture
def session(qtbot):
    src, tgt = source_side("torchvision:resnet18"), target_side("torchvision:resnet18?num_classes=7")
    doc = MappingDocument()
    pairs = {k: k for k in list(tgt.table)[::2]}  # every other key, plus one source used twice and a missing one
    pairs["layer4.1.bn2.bias"] = "layer1.0.bn1.bias"
    pairs["layer4.1.bn2.weight"] = "no.such.key"
    doc.set_sides(Loaded(src, ParamTree(src.table, src.classes), "torchvision:resnet18"),
                  Loaded(tgt, ParamTree(tgt.table, tgt.classes), "t"), Mapping.from_pairs(pairs))
    views = {}
    for side in ("source", "target"):
        model = ParamTreeModel(doc, side)
        model.set_tree((doc.source if side == "source" else doc.target).tree)
        view = QTreeView()
        view.setModel(model)
        qtbot.addWidget(view)
        views[side] = view
    return doc, views["source"], views["target"]


def reference(doc, source_view, target_view) -> dict:
    """Each mapped key walked on its own: its row is the first collapsed module (or itself) from the top."""
    def row(view, key):
        model = view.model()
        try:
            node = model.tree.leaf(key)
        except KeyError:
            return None
        if not model.visible(node):
            return None
        chain = []
        while node.parent is not None:
            chain.append(node)
            node = node.parent
        for n in reversed(chain):
            if n.tensor is not None or not view.isExpanded(model.index_of(n)):
                return n
        return None

    groups: dict = {}
    for target, entry in doc.mapping.entries.items():
        t, s = row(target_view, target), row(source_view, entry.source)
        if t is not None and s is not None:
            groups.setdefault((t, s), Counter())[doc.target_status(target)] += 1
    return groups


def grouped(doc, source_view, target_view) -> dict:
    mapped = MappedLeaves(doc.source.tree, doc.target.tree, doc.mapping.entries, doc.status)
    return link_groups(anchor_rows(target_view), anchor_rows(source_view), mapped,
                       target_view.model().leaf_shown, source_view.model().leaf_shown)


def test_grouping_matches_a_per_key_walk(session):
    doc, sv, tv = session
    assert grouped(doc, sv, tv) == reference(doc, sv, tv)  # all collapsed: top-level modules
    assert sum(sum(c.values()) for c in grouped(doc, sv, tv).values()) == len(doc.mapping) - 1  # less the missing key
    for view, paths in ((tv, ["layer1", "layer1.0", "layer4", "layer4.1", "layer4.1.bn2", "fc"]),
                        (sv, ["layer1", "layer1.0", "layer1.0.bn1", "layer3"])):
        for path in paths:
            view.expand(view.model().index_of_path(path))
            assert grouped(doc, sv, tv) == reference(doc, sv, tv), path
    tv.model().set_filter("bn")
    for path in ("layer1", "layer1.0", "layer4", "layer4.1", "layer4.1.bn2"):
        tv.expand(tv.model().index_of_path(path))
    assert grouped(doc, sv, tv) == reference(doc, sv, tv)
    sv.model().set_filter(r"layer1\.0\.", regex=True)
    sv.expand(sv.model().index_of_path("layer1"))
    assert grouped(doc, sv, tv) == reference(doc, sv, tv)
    bn2 = tv.model().tree.leaf("layer4.1.bn2.bias")
    assert (bn2, sv.model().tree.node("layer1.0")) in grouped(doc, sv, tv)  # the source used twice
    doc.replace({"fc.weight": Entry("fc.weight", "fc.weight")})  # invalid: 7 classes vs 1000
    tv.model().set_filter("")
    assert grouped(doc, sv, tv) == reference(doc, sv, tv)
    assert any("invalid" in counts for counts in grouped(doc, sv, tv).values())
