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


# ---------------------------------------------------------------------------------------------
# across libraries (issue 11): real pairs at toy size, truth checked by function (tests/core/zoosuite.py)


def _zoo(name):
    pytest.importorskip("timm")
    pytest.importorskip("transformers")
    from zoosuite import zoo_pairs

    return next(p for p in zoo_pairs() if p.name == name)


def _auto(pair):
    source, target = pair.sides()
    return {s.target: s for s in suggest(source, target, "auto").items}


def _accepted_match_function(pair, got):
    from zoosuite import function_check

    entries = {t: (s.source, s.transform) for t, s in got.items() if s.accepted}
    assert entries.keys() == pair.truth().keys()
    assert function_check(pair, entries)[0]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_chunk_takes_one_part_of_a_fused_tensor():
    from spp_gui.core.transforms import apply_transform, check_params, check_transform

    w = torch.arange(24.0).reshape(6, 4)
    assert torch.equal(apply_transform({"op": "chunk", "dim": 0, "chunks": 3, "index": 1}, w, torch.empty(2, 4)), w[2:4])
    conv1d = torch.arange(24.0).reshape(2, 12)  # GPT-2's c_attn: (in, 3 * out)
    part = apply_transform({"op": "chunk", "dim": 1, "chunks": 3, "index": 2, "transpose": True}, conv1d,
                           torch.empty(4, 2))
    assert torch.equal(part, conv1d[:, 8:].t())
    assert "does not split into 3" in check_transform({"op": "chunk", "dim": 0, "chunks": 3, "index": 0}, (7, 2), (2, 2))
    assert "0 <= index < chunks" in check_params({"op": "chunk", "dim": 0, "chunks": 3, "index": 3})


def test_a_modules_own_in_proj_matches_a_childs_qkv():
    """Capability 1: nn.MultiheadAttention's in_proj_weight/out_proj vs timm's attn.qkv/attn.proj."""
    pair = _zoo("torchvision vit -> timm vit")
    got = _auto(pair)
    qkv = got["blocks.1.attn.qkv.weight"]
    assert qkv.accepted and qkv.source == "encoder.layers.encoder_layer_1.self_attention.in_proj_weight"
    assert qkv.transform is None
    assert got["blocks.1.attn.proj.bias"].source == "encoder.layers.encoder_layer_1.self_attention.out_proj.bias"
    _accepted_match_function(pair, got)


def test_loose_parameters_and_unique_parts_inside_matched_parents():
    """Capabilities 2 and 5: class token, position embedding, stem, final norm and head, left over after the
    blocks matched, are the only ones of their shapes on each side."""
    got = _auto(_zoo("torchvision vit -> HF ViT"))
    cls = got["vit.embeddings.cls_token"]
    assert cls.accepted and cls.source == "class_token" and "class_token~cls_token" in cls.reason
    pos = got["vit.embeddings.position_embeddings"]
    assert pos.accepted and pos.source == "encoder.pos_embedding" and "matched there" in pos.reason
    stem = got["vit.embeddings.patch_embeddings.projection.weight"]
    assert stem.accepted and stem.source == "conv_proj.weight"
    assert got["vit.layernorm.weight"].source == "encoder.ln.weight"


def test_a_fused_qkv_is_split_into_q_k_v_by_chunks():
    """Capability 6 (one-to-many): HF's q/k/v are the row blocks of timm's qkv."""
    pair = _zoo("timm vit -> HF ViT")
    got = _auto(pair)
    for i, part in enumerate("qkv"):
        s = got[f"vit.layers.1.attention.{part}_proj.weight"]
        assert s.accepted and s.source == "blocks.1.attn.qkv.weight"
        assert s.transform == {"op": "chunk", "dim": 0, "chunks": 3, "index": i}
        assert "fused 'blocks.1.attn.qkv'" in s.reason
    _accepted_match_function(pair, got)


def test_conv1d_convention_holds_model_wide_square_matrices_too():
    """Capability 7: GPT-2's Conv1D (in, out) -> GPTBigCode's Linear (out, in): the square c_proj is
    transposed as well (copied as it is, it fits and computes something else)."""
    pair = _zoo("HF GPT-2 -> HF GPTBigCode (1 head)")
    got = _auto(pair)
    square = got["transformer.h.0.attn.c_proj.weight"]
    assert square.accepted and square.transform == {"op": "transpose", "dims": [1, 0]}
    assert "transposed" in square.reason
    assert got["transformer.wte.weight"].transform is None  # embeddings are no block matrices
    _accepted_match_function(pair, got)


def test_layer_scale_reshape_inside_a_matched_block():
    """Capability 3: ConvNeXt's layer_scale (C, 1, 1) in torchvision is timm's gamma (C,)."""
    pair = _zoo("torchvision convnext -> timm convnext")
    got = _auto(pair)
    gamma = got["stages.2.blocks.0.gamma"]
    assert gamma.accepted and gamma.source == "features.5.0.layer_scale" and gamma.transform == {"op": "reshape"}
    assert "reshape" in gamma.reason
    _accepted_match_function(pair, got)


def test_shortcut_pairs_with_shortcut_whatever_the_definition_order():
    """Capability 4: torchvision's RegNet defines the shortcut (proj) first, timm's (downsample) last; their
    1x1 convs have the main branch's shapes."""
    pair = _zoo("torchvision regnet_y_400mf -> timm regnety_004")
    got = _auto(pair)
    short = got["s1.b1.downsample.conv.weight"]
    assert short.accepted and short.source == "trunk_output.block1.block1-0.proj.0.weight"
    assert "shortcut" in short.reason
    assert got["s1.b1.conv1.conv.weight"].source == "trunk_output.block1.block1-0.f.a.0.weight"


def test_no_evidence_across_stage_numbers_or_other_kinds_of_block():
    """Capability 8: resnet50 -> resnet18 shares its stem only; layer4.0.downsample <- layer2.0.downsample
    (a suffix across stages) and same-named parts of Bottleneck vs BasicBlock are not accepted."""
    pair = _zoo("timm resnet50 -> torchvision resnet18 (stem only)")
    got = _auto(pair)
    accepted = {t for t, s in got.items() if s.accepted}
    assert accepted == set(pair.truth())
    down = got.get("layer4.0.downsample.0.weight")
    assert down is None or not down.accepted
    bn = got.get("layer1.0.bn1.weight")
    assert bn is None or (not bn.accepted and "another kind of block" in bn.reason)


@pytest.mark.parametrize("name", ["unrelated torchvision resnet18 -> HF BERT", "unrelated HF GPT-2 -> timm convnext"])
def test_unrelated_zoo_pairs_accept_nothing(name):
    assert not any(s.accepted for s in _auto(_zoo(name)).values())


def test_reasons_do_not_depend_on_the_processs_string_hashing():
    """The same pair gives byte-identical suggestions in every process (a mapping file diffs cleanly)."""
    import subprocess
    import sys

    script = ("import torchvision, timm; from spp_gui.core.strategies import suggest; "
              "s = suggest(timm.create_model('resnet50', pretrained=False), torchvision.models.resnet18(), 'auto'); "
              "print([(x.target, x.source, x.reason) for x in s.items])")
    outs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(outs) == 1 and "another kind of block" in outs.pop()
