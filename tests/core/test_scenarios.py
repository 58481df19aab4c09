"""The seed article's three scenarios, on real torchvision models with random init."""

from __future__ import annotations

import textwrap

import pytest
import torch
import torchvision

from spp_gui import Mapping, apply_mapping, build_model, load_source, suggest_mapping, trust_code
from spp_gui.core.errors import MappingError

SPP20 = "spp_gui:alexnet_spp?num_classes=20"


def test_head_new_class_count():
    mapping = suggest_mapping("torchvision:alexnet", "torchvision:alexnet?num_classes=20", strategy="head")
    assert len(mapping) == 14
    assert set(mapping.pairs()) == {k for k in torchvision.models.alexnet().state_dict()
                                    if not k.startswith("classifier.6")}
    assert {c.target for c in mapping.candidates} == {"classifier.6.weight", "classifier.6.bias"}
    assert all("new head" in c.reason for c in mapping.candidates)


def test_alexnet_to_alexnet_spp_by_order_is_the_seed_result():
    torch.manual_seed(1)
    alexnet = torchvision.models.alexnet().eval()
    mapping = suggest_mapping(alexnet, SPP20, strategy="order")
    expected = [k for k in alexnet.state_dict() if k not in ("classifier.1.weight", "classifier.6.weight",
                                                                "classifier.6.bias")]
    assert list(mapping.pairs()) == expected and len(expected) == 13
    target = build_model(SPP20, seed=3)
    report = apply_mapping(target, alexnet.state_dict(), mapping)
    assert len(report.loaded) == 13
    assert report.share == pytest.approx(0.2683, abs=5e-4)
    assert set(report.unused_source) == {"classifier.1.weight", "classifier.6.weight", "classifier.6.bias"}
    x = torch.randn(2, 3, 227, 227)
    with torch.no_grad():
        ours = target.features(x)
        theirs = alexnet.features[:-1](x)  # AlexNet's features minus its last max-pool
    assert torch.equal(ours, theirs)


NET_PY = """
import torch
import torchvision


class Net(torch.nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.backbone = torchvision.models.resnet50()
        self.backbone.fc = torch.nn.Identity()
        self.head = torch.nn.Linear(2048, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))
"""


def test_resnet50_under_a_new_prefix_via_rename_rule(tmp_path):
    (tmp_path / "net.py").write_text(textwrap.dedent(NET_PY))
    spec = f"{tmp_path / 'net.py'}:Net?num_classes=5"
    trust_code(tmp_path / "net.py")  # this script names its own model file
    mapping = suggest_mapping("torchvision:resnet50", spec, strategy="rename", rules=[r"^=backbone."])
    source = load_source("torchvision:resnet50")
    backbone_keys = [k for k in source.tensors if not k.startswith("fc.")]
    assert mapping.pairs() == {f"backbone.{k}": k for k in backbone_keys}
    assert all(e.origin == "rename" and "'^=backbone.'" in e.reason for e in mapping)
    target = build_model(spec)
    report = apply_mapping(target, source, mapping)
    assert report.unmapped == ["head.weight", "head.bias"]
    assert torch.equal(target.backbone.conv1.weight, source.read("conv1.weight"))


def test_dataparallel_checkpoint(tmp_path):
    model = torchvision.models.resnet18(num_classes=4)
    wrapped = torch.nn.DataParallel(model)
    torch.save({"state_dict": wrapped.state_dict()}, tmp_path / "dp.pth")
    mapping = suggest_mapping(tmp_path / "dp.pth", "torchvision:resnet18?num_classes=4", strategy="rename",
                              rules=[r"^module\.="])
    assert len(mapping) == len(model.state_dict())
    assert mapping.source_sha256 and len(mapping.source_sha256) == 64
    fresh = build_model("torchvision:resnet18?num_classes=4", seed=9)
    apply_mapping(fresh, tmp_path / "dp.pth", mapping)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)


def test_bad_rename_rule_is_a_clear_error():
    with pytest.raises(MappingError, match="bad regular expression"):
        suggest_mapping("torchvision:alexnet", "torchvision:alexnet", strategy="rename", rules=["(=x"])
    with pytest.raises(MappingError, match="REGEX=REPLACEMENT"):
        suggest_mapping("torchvision:alexnet", "torchvision:alexnet", strategy="rename", rules=["nothing"])


def test_unknown_strategy():
    with pytest.raises(MappingError, match="unknown strategy 'magic'"):
        suggest_mapping("torchvision:alexnet", "torchvision:alexnet", strategy="magic")


def test_mapping_pairs_match_the_api_contract():
    mapping = suggest_mapping("torchvision:alexnet", "torchvision:alexnet", strategy="exact")
    assert isinstance(mapping, Mapping)
    assert mapping.pairs() == {k: k for k in torchvision.models.alexnet().state_dict()}


def test_load_report_counts_only_what_a_transform_carries():
    mapping = suggest_mapping("torchvision:alexnet", SPP20, strategy="auto", adapt=True)
    assert mapping.entries["classifier.1.weight"].transform["op"] == "spp_grid"
    report = apply_mapping(build_model(SPP20), "torchvision:alexnet", mapping)
    assert len(report.loaded) == 14
    assert report.share == pytest.approx(0.794, abs=5e-4)  # not 99.9%: spp_grid fills one pyramid level


def test_shipped_sample_mapping_fits_its_models():
    from pathlib import Path

    from spp_gui import data_path
    from spp_gui.core.strategies import source_side, target_side

    path = data_path("mappings/alexnet_to_alexnet_spp.json")
    assert Path(path).is_file() and not Path(path).is_symlink()
    mapping = Mapping.load(path)
    assert mapping.source_spec == "torchvision:alexnet:IMAGENET1K_V1"
    src, tgt = source_side("torchvision:alexnet"), target_side(mapping.target_spec)
    status = mapping.status(src.table, tgt.table)
    assert status.count("invalid") == 0 and status.count("adapted") == 1 and len(mapping) == 14
    assert mapping.share(src.table, tgt.table) == pytest.approx(0.794, abs=5e-4)
