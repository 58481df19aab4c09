"""auto checked by function: swapped equal-shaped siblings fixed, wrong pairs demoted, the rest kept."""

from __future__ import annotations

import pytest
import torch

from spp_gui.core.auto_verify import verify_auto, verify_suggestions, why_not_runnable
from spp_gui.core.errors import Cancelled
from spp_gui.core.specs import build_model
from spp_gui.core.strategies import Side, source_side, suggest, target_side
from spp_gui.core.tensors import table_of

SPEC = "torchvision:resnet18?num_classes=10"
SHAPE = (1, 3, 64, 64)


def _auto(source, target):
    return {s.target: s for s in suggest(source, target, "auto").items}


def _point(got, tmod, smod):
    for leaf in ("weight",):
        got[f"{tmod}.{leaf}"].source = f"{smod}.{leaf}"


def test_a_swapped_pair_of_equal_convs_is_swapped_back_and_a_wrong_one_demoted():
    source, target = source_side(SPEC), target_side(SPEC)
    got = _auto(source, target)
    assert all(s.accepted and s.source == s.target for s in got.values())
    _point(got, "layer1.0.conv1", "layer1.0.conv2")  # the mix-up names and shapes cannot see
    _point(got, "layer1.0.conv2", "layer1.0.conv1")
    _point(got, "layer2.0.conv2", "layer2.1.conv2")  # from another block: no sibling swap fixes it
    out = verify_auto(list(got.values()), source, target, SHAPE)
    assert not out.skipped and out.changed
    assert out.swapped == [("layer1.0.conv1", "layer1.0.conv2")]
    assert out.demoted == ["layer2.0.conv2"]
    assert got["layer1.0.conv1.weight"].source == "layer1.0.conv1.weight" and got["layer1.0.conv1.weight"].accepted
    assert "verify: swapped" in got["layer1.0.conv2.weight"].reason
    wrong = got["layer2.0.conv2.weight"]
    assert not wrong.accepted and wrong.confidence <= 0.3 and "verify: same input as source 'layer2.0.conv2'" in wrong.reason
    untouched = got["layer3.1.conv1.weight"]
    assert untouched.accepted and "verify" not in untouched.reason
    assert "1 swapped pair fixed" in out.summary() and "1 demoted" in out.summary()
    assert out.report is not None and out.report.module_status()["layer1.0.conv1"] == "agree"


def test_right_suggestions_come_back_unchanged():
    source, target = source_side(SPEC), target_side(SPEC)
    items = suggest(source, target, "auto").items
    before = [(s.target, s.source, s.accepted, s.reason) for s in items]
    out = verify_auto(items, source, target, SHAPE)
    assert not out.changed and out.report.ok and "nothing changed" in out.summary()
    assert [(s.target, s.source, s.accepted, s.reason) for s in items] == before


def test_models_given_directly_and_cancel_between_runs():
    torch.manual_seed(0)
    src_model, tgt_model = build_model(SPEC, seed=1), build_model(SPEC, seed=2)
    source, target = Side(table_of(src_model.state_dict())), Side(table_of(tgt_model.state_dict()))
    got = _auto(source, target)
    _point(got, "layer4.1.conv1", "layer4.1.conv2")
    _point(got, "layer4.1.conv2", "layer4.1.conv1")
    with pytest.raises(Cancelled):
        verify_suggestions(list(got.values()), src_model, tgt_model, SHAPE, cancelled=lambda: True)
    seen = []
    out = verify_suggestions(list(got.values()), src_model, tgt_model, SHAPE, progress=seen.append)
    assert out.swapped == [("layer4.1.conv1", "layer4.1.conv2")]
    assert any("trying source" in s for s in seen)


def test_sides_that_cannot_run_are_said_and_left_alone(tmp_path):
    model = build_model(SPEC, seed=0)
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    with source_side(path) as source:  # the side holds the checkpoint it opened: closed at the end
        target = target_side(SPEC)
        assert "checkpoint without a model spec" in why_not_runnable(source, target)
        assert why_not_runnable(source, target, SPEC) is None
        items = suggest(source, target, "auto").items
        out = verify_auto(items, source, target, SHAPE)
        assert out.skipped and "not run" in out.summary() and not out.changed
        checked = verify_auto(items, source, target, SHAPE, source_model_spec=SPEC)  # a checkpoint plus its spec
        assert not checked.skipped and checked.report.ok
        wrong_input = verify_auto(items, source, target, (1, 5, 64, 64), source_model_spec=SPEC)
        assert wrong_input.skipped and "input" in wrong_input.skipped


def test_cli_map_verify_reports_what_it_checked(tmp_path, capsys):
    import json

    from spp_gui.cli import main

    out = tmp_path / "m.json"
    args = ["map", SPEC, SPEC, "--strategy", "auto", "--verify", "--input-shape", "1,3,64,64", "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("verify: "))
    assert "modules agree" in line and "nothing changed" in line
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verify"] == line
    # a checkpoint alone cannot run: said, and the mapping is still written from auto's suggestions
    ckpt = tmp_path / "r18.pth"
    torch.save(build_model(SPEC, seed=1).state_dict(), ckpt)
    out.unlink()
    assert main(["map", str(ckpt), SPEC, "--strategy", "auto", "--verify", "-q", "-o", str(out)]) == 0
    assert "warning: verify: not run" in capsys.readouterr().err and out.exists()
    assert main(["map", str(ckpt), SPEC, "--strategy", "auto", "--verify", "--source-model", SPEC,
                 "--input-shape", "1,3,64,64", "-o", str(out)]) == 0
    assert "modules agree" in capsys.readouterr().out
    assert main(["map", SPEC, SPEC, "--verify", "-o", str(out)]) == 2  # exact has nothing to verify
    assert "add --strategy auto" in capsys.readouterr().err
