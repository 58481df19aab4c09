from __future__ import annotations

import pytest

from spp_gui import Mapping, suggest_mapping
from spp_gui.cli import main
from spp_gui.core.errors import MappingError
from spp_gui.core.verify import (
    AGREE,
    DISAGREE,
    NOT_COMPARED,
    NOT_INFORMATIVE,
    verify_mapping,
    verify_models,
    wrapper_prefix,
)

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
    assert "disagree         layer2.1.conv1" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "bad.json"), "--input-shape", "1,x"]) == 2


def test_mapping_round_trip_keeps_verifiability(tmp_path):
    mapping = suggest_mapping("torchvision:alexnet", SPP20, strategy="order")
    mapping.save(tmp_path / "m.json")
    assert verify_mapping(Mapping.load(tmp_path / "m.json"), input_shape=(1, 3, 96, 96)).ok


def test_all_zero_outputs_on_both_sides_are_not_informative(tmp_path, capsys):
    """Zero-initialised residual branches (timm's default, torchvision's zero_init_residual) agree on
    nothing but zeros: no verdict either way, and no failing exit status."""
    spec = "torchvision:resnet18?zero_init_residual=True"
    mapping = suggest_mapping(spec, spec, strategy="exact")
    report = verify_mapping(mapping, input_shape=(1, 3, 32, 32))
    zeros = report.by_status(NOT_INFORMATIVE)
    assert {c.target_module for c in zeros} == {f"layer{i}.{j}.bn2" for i in range(1, 5) for j in range(2)}
    assert all("all zeros" in c.note and c.cosine is None for c in zeros)
    assert report.ok and not report.by_status(DISAGREE)
    assert report.counts()[NOT_INFORMATIVE] == 8
    mapping.save(tmp_path / "m.json")
    assert main(["verify", str(tmp_path / "m.json"), "--input-shape", "1,3,32,32"]) == 0
    out = capsys.readouterr().out
    assert "not informative  layer1.0.bn2" in out
    assert ", 0 disagree, 8 not informative (all-zero outputs), " in out


def test_zeros_on_one_side_only_still_disagree():
    import copy

    import torch
    import torchvision

    source = torchvision.models.resnet18(zero_init_residual=True)
    target = copy.deepcopy(source)
    with torch.no_grad():
        target.layer1[0].bn2.weight.fill_(1.0)  # as if this weight came from somewhere else
    mapping = suggest_mapping(source, target, strategy="exact")
    report = verify_models(source, target, mapping, input_shape=(1, 3, 32, 32))
    assert report.module_status()["layer1.0.bn2"] == DISAGREE


RESNET = "torchvision:resnet18"


def _data_parallel_checkpoint(path):
    import torch
    import torchvision

    torch.manual_seed(0)
    torch.save(torch.nn.DataParallel(torchvision.models.resnet18()).state_dict(), path)
    return path


@pytest.mark.parametrize("how", [["--rename", r"^module\.="], ["--strategy", "auto"]])
def test_a_module_prefixed_checkpoint_verifies_as_map_maps_it(tmp_path, capsys, how):
    ckpt = _data_parallel_checkpoint(tmp_path / "dp.pth")
    assert main(["map", str(ckpt), RESNET, "-o", str(tmp_path / "m.json"), "-q", *how]) == 0
    assert capsys.readouterr().out.startswith("122 of 122 target tensors mapped")
    mapping = Mapping.load(tmp_path / "m.json")
    report = verify_mapping(mapping, source_model_spec=RESNET, input_shape=(1, 3, 32, 32))
    assert report.ok and len(report.by_status(AGREE)) == len(report.layers)
    assert report.module_status()["layer1.0.conv1"] == AGREE
    assert {c.source_module for c in report.layers} >= {"module.conv1", "module.layer1.0.conv1"}  # the file's names
    assert main(["verify", str(tmp_path / "m.json"), "--source-model", RESNET, "--input-shape", "1,3,32,32"]) == 0
    assert "<- module.layer1.0.conv1" in capsys.readouterr().out


def test_a_prefixed_checkpoint_with_swapped_layers_still_fails(tmp_path):
    ckpt = _data_parallel_checkpoint(tmp_path / "dp.pth")
    mapping = suggest_mapping(ckpt, RESNET, strategy="rename", rules=[r"^module\.="])
    a, b = "layer1.0.conv1.weight", "layer1.0.conv2.weight"
    mapping.entries[a].source, mapping.entries[b].source = mapping.entries[b].source, mapping.entries[a].source
    report = verify_mapping(mapping, source_model_spec=RESNET, input_shape=(1, 3, 32, 32))
    assert not report.ok and report.by_status(DISAGREE)[0].source_module == "module.layer1.0.conv2"


def test_wrapper_prefix():
    keys = ["conv.weight", "fc.bias"]
    assert wrapper_prefix(keys, {"conv.weight": 0, "fc.bias": 0}) == ""
    assert wrapper_prefix(keys, {"module.conv.weight": 0, "module.fc.bias": 0, "n_averaged": 0}) == "module."
    assert wrapper_prefix(keys, {"module.model.conv.weight": 0, "module.model.fc.bias": 0}) == "module.model."
    assert wrapper_prefix(keys, {"module.conv.weight": 0}) is None  # fc.bias is missing either way
    assert wrapper_prefix(keys, {"backbone.conv.weight": 0, "backbone.fc.bias": 0}) is None  # not a wrapper's
    assert wrapper_prefix(["model.conv.weight"], {"model.model.conv.weight": 0}) is None  # the architecture's own
