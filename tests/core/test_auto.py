"""The auto strategy against the evaluation suite (truth by construction) and its promises."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from evalsuite import build_cases, moe_tables, run_strategy, score

from spp_gui.cli import main
from spp_gui.core.mapping import Mapping
from spp_gui.core.strategies import Side, suggest, suggest_mapping
from spp_gui.models.spp import AlexNet_SPP

BASELINES = ("exact", "order", "suffix")


@pytest.fixture(scope="module")
def cases():
    return build_cases()


def test_auto_is_precise_and_recalls_over_the_suite(cases):
    right = wrong = truth = 0
    for c in cases:
        pairs = run_strategy("auto", c)
        ok = sum(1 for t, s in pairs.items() if c.truth.get(t) == s)
        right, wrong, truth = right + ok, wrong + len(pairs) - ok, truth + len(c.truth)
    assert right / (right + wrong) >= 0.995
    assert right / truth >= 0.98


def test_auto_is_at_least_as_good_as_every_baseline_on_every_case(cases):
    for c in cases:
        p, r, _ = score(run_strategy("auto", c), c.truth)
        for name in BASELINES:
            bp, br, _ = score(run_strategy(name, c), c.truth)
            assert p >= bp and r >= br, (c.name, name, (p, r), (bp, br))


def test_unrelated_architectures_give_no_accepted_pairs(cases):
    for c in cases:
        if c.name.startswith("unrelated"):
            assert run_strategy("auto", c) == {}, c.name


def test_confidences_are_probabilities_and_reasons_are_short(cases):
    for c in cases:
        for s in suggest(c.source, c.target, "auto").items:
            assert 0.0 <= s.confidence <= 1.0
            assert s.reason and len(s.reason) < 220
            assert all(0.0 <= conf <= 1.0 and why for _, conf, why in s.alternatives)
            if s.accepted:
                assert s.confidence >= 0.6


def _table(model):
    from spp_gui.core.tensors import table_of

    return table_of(model.state_dict())


def _by_target(c):
    return {s.target: s for s in suggest(c.source, c.target, "auto").items}


def test_qkv_go_by_name_where_names_speak(cases):
    c = next(c for c in cases if "q_proj" in c.name)
    got = _by_target(c)
    s = got["layers.2.self_attn.q_proj.weight"]
    assert s.source == "encoder.layer.2.attention.self.query.weight"
    assert "query~q_proj" in s.reason
    # the equal-shaped siblings are offered as ranked alternatives, below the choice
    assert s.alternatives and all(conf < s.confidence for _, conf, _ in s.alternatives)


def test_reasons_name_the_evidence(cases):
    dp = _by_target(next(c for c in cases if "DataParallel" in c.name))
    assert dp["layer1.0.conv1.weight"].reason.startswith("suffix 'layer1.0.conv1.weight'")
    vgg = _by_target(next(c for c in cases if c.name == "vgg16 -> vgg16_bn"))
    assert vgg["features.37.weight"].source == "features.26.weight"
    assert "aligned #4 of 5" in vgg["features.37.weight"].reason
    exact = _by_target(next(c for c in cases if "20 classes" in c.name))
    assert exact["layer1.0.conv1.weight"].confidence == 1.0


def test_moe_conventions_pair_experts_and_gate_up_down_by_name():
    src, tgt, truth = moe_tables(layers=2, experts=4)
    mapping = suggest_mapping(Side(src), Side(tgt), "auto")
    assert mapping.pairs() == truth
    reason = mapping.get("transformer.h.1.moe.experts.3.up_proj.weight").reason
    assert "w3~up_proj" in reason


def test_shape_changes_are_proposed_as_candidates_never_applied_silently():
    with torch.device("meta"):
        src, tgt = torchvision.models.alexnet(), AlexNet_SPP(num_classes=20)
    mapping = suggest_mapping(src.state_dict(), tgt.state_dict(), "auto")
    assert "classifier.1.weight" not in mapping
    cand = {e.target: e for e in mapping.candidates}
    assert cand["classifier.1.weight"].transform == {"op": "spp_grid", "levels": [1, 4, 9, 36], "bins": 36}
    assert "spp_grid" in cand["classifier.1.weight"].reason
    # with adapt, the recognised transform is accepted; a new class count never is
    adapted = suggest_mapping(src.state_dict(), tgt.state_dict(), "auto", adapt=True)
    assert adapted.get("classifier.1.weight").transform["op"] == "spp_grid"
    assert "classifier.6.weight" not in adapted
    head = {e.target: e for e in adapted.candidates}["classifier.6.weight"]
    assert head.transform == {"op": "slice"} and "select_rows" in head.reason


def test_other_input_channels_propose_in_channels():
    with torch.device("meta"):
        src = torchvision.models.resnet18()
        tgt = torchvision.models.resnet18()
        tgt.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    mapping = suggest_mapping(src.state_dict(), tgt, "auto", adapt=True)
    assert mapping.get("conv1.weight").transform == {"op": "in_channels"}
    status = mapping.status(_table(src), _table(tgt))
    assert status.count("adapted") == 1 and status.count("exact") == len(tgt.state_dict()) - 1


def test_cli_map_auto_adapt_writes_the_transform(tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["map", "torchvision:alexnet", "spp_gui:alexnet_spp?num_classes=20", "-o", str(out),
                 "--strategy", "auto", "--adapt"]) == 0
    data = json.loads(out.read_text())
    entries = {e["target"]: e for e in data["entries"]}
    assert entries["classifier.1.weight"]["transform"]["op"] == "spp_grid"
    assert entries["classifier.1.weight"]["origin"] == "auto"
    Mapping.load(out)  # it reads back
    assert "adapted" in capsys.readouterr().out


def test_a_new_head_elsewhere_is_offered_not_accepted(cases):
    c = next(c for c in cases if "new head first" in c.name)
    head = _by_target(c)["head.weight"]
    assert head.source == "fc.weight" and not head.accepted
    assert head.transform == {"op": "slice"} and "1000 -> 10" in head.reason
