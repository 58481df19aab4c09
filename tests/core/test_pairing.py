"""Manual-mapping helpers (core/pairing.py) on real torchvision trees: no Qt needed."""

from __future__ import annotations

import torchvision

from spp_gui.core.pairing import channels_before, fitting_transforms, pair_modules, refusal
from spp_gui.core.specs import build_model
from spp_gui.core.tensors import table_of
from spp_gui.core.tree import ParamTree


def _tree(model):
    table = table_of(model.state_dict())
    return table, ParamTree(table)


def test_a_block_dropped_on_a_like_block_pairs_by_relative_name():
    _, src = _tree(torchvision.models.resnet18())
    _, tgt = _tree(torchvision.models.resnet34())
    pairing = pair_modules(src.node("layer1.0"), tgt.node("layer1.2"))
    assert ("layer1.0.conv1.weight", "layer1.2.conv1.weight") in pairing.pairs
    assert len(pairing.pairs) == len(list(tgt.node("layer1.2").leaves()))
    assert not pairing.ambiguous


def test_blocks_with_other_names_pair_by_order_and_shape_and_say_so():
    _, src = _tree(torchvision.models.resnet18())
    _, tgt = _tree(torchvision.models.resnet18())
    # layer2.0 has a downsample branch that layer2.1 lacks: the extra target tensors stay unmatched
    pairing = pair_modules(src.node("layer2.1"), tgt.node("layer2.0"))
    assert pairing.ambiguous
    assert "layer2.0.downsample.0.weight" in pairing.unmatched_targets
    assert ("layer2.1.conv2.weight", "layer2.0.conv2.weight") in pairing.pairs


def test_the_spp_stage_gets_spp_grid_first_and_only_fitting_transforms():
    src_table, _ = _tree(torchvision.models.alexnet())
    tgt = build_model("spp_gui:alexnet_spp", device="meta").state_dict()
    src_shape = tuple(src_table["classifier.1.weight"].shape)
    tgt_shape = tuple(tgt["classifier.1.weight"].shape)
    assert (src_shape, tgt_shape) == ((4096, 9216), (4096, 12800))
    channels = channels_before(src_table, "classifier.1.weight")
    assert channels == 256  # the last conv of features
    offered = fitting_transforms(src_shape, tgt_shape, channels)
    assert offered and offered[0]["op"] == "spp_grid"
    assert all(t["op"] != "transpose" for t in offered)  # transpose cannot make these shapes fit


def test_a_refusal_names_both_keys_and_shapes():
    text = refusal("fc.weight", (10, 512), "head.weight", (7, 3))
    assert "fc.weight" in text and "head.weight" in text and "no transform" in text
