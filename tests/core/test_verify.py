from __future__ import annotations

import pytest

from spp_gui import Mapping, suggest_mapping
from spp_gui.cli import main
from spp_gui.core.errors import MappingError
from spp_gui.core.verify import AGREE, DISAGREE, NOT_COMPARED, verify_mapping

SPP20 = "spp_gui:alexnet_spp?num_classes=20"


def test_correct_alexnet_to_spp_mapping_agrees_on_every_conv():
    mapping = suggest_mapping("torchvision:alexnet", SPP20, strategy="order")
    report = verify_mapping(mapping, input_shape=(1, 3, 128, 128))
    assert report.ok
    convs = {c.target_module: c for c in report.layers if c.target_module.startswith("features")}
    assert set(convs) == {"features.0", "features.3", "features.6", "features.8", "features.10"}
    assert all(c.status == AGREE and c.cosine > 0.999999 for c in convs.values())
    assert report.module_status()["classifier.1"] == NOT_COMPARED  # its weight keeps the target's init


def test_swapped_equal_shaped_convs_are_flagged():
    mapping = suggest_mapping("torchvision:resnet18", "torchvision:resnet18", strategy="exact")
    a, b = "layer1.0.conv1.weight", "layer1.0.conv2.weight"
    mapping.entries[a].source, mapping.entries[b].source = b, a
    report = verify_mapping(mapping, input_shape=(1, 3, 64, 64))
    assert not report.ok
    bad = report.by_status(DISAGREE)
    assert bad[0].target_module == "layer1.0.conv1" and bad[0].cosine < 0.99
    assert report.module_status()["conv1"] == AGREE  # everything before the swap still agrees


def test_checkpoint_source_needs_an_architecture(tmp_path, small_state):
    import torch

    torch.save(small_state, tmp_path / "s.pth")
    mapping = suggest_mapping(tmp_path / "s.pth", "torchvision:squeezenet1_0", strategy="exact")
    with pytest.raises(MappingError, match="--source-model"):
        verify_mapping(mapping, input_shape=(1, 3, 64, 64))


def test_verify_cli_exit_codes(tmp_path, capsys):
    mapping = suggest_mapping("torchvision:resnet18", "torchvision:resnet18", strategy="exact")
    mapping.save(tmp_path / "good.json")
    assert main(["verify", str(tmp_path / "good.json"), "--input-shape", "1,3,64,64"]) == 0
    assert "0 disagree" in capsys.readouterr().out
    a, b = "layer2.1.conv1.weight", "layer2.1.conv2.weight"
    mapping.entries[a].source, mapping.entries[b].source = b, a
    mapping.save(tmp_path / "bad.json")
    assert main(["verify", str(tmp_path / "bad.json"), "--input-shape", "1,3,64,64"]) == 1
    assert "disagree      layer2.1.conv1" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "bad.json"), "--input-shape", "1,x"]) == 2


def test_mapping_round_trip_keeps_verifiability(tmp_path):
    mapping = suggest_mapping("torchvision:alexnet", SPP20, strategy="order")
    mapping.save(tmp_path / "m.json")
    assert verify_mapping(Mapping.load(tmp_path / "m.json"), input_shape=(1, 3, 96, 96)).ok
