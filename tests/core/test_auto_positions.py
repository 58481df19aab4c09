"""auto and position tables that start at row 2 (OPT's and BART's learned positions, RoBERTa's)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("transformers")

from zoosuite import ZooPair, _hf, _tokens, function_check, gpt2, opt, zoo_pairs  # noqa: E402

from spp_gui.core.strategies import suggest  # noqa: E402
from spp_gui.core.transforms import apply_transform  # noqa: E402

POS_OPT = "model.decoder.embed_positions.weight"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _auto(pair):
    source, target = pair.sides()
    return {s.target: s for s in suggest(source, target, "auto").items}


def test_gpt2_to_opt_places_positions_two_rows_down_and_computes_gpt2s_function():
    pair = next(p for p in zoo_pairs() if p.name == "HF GPT-2 -> HF OPT")
    got = _auto(pair)
    pos = got[POS_OPT]
    assert pos.accepted and pos.source == "transformer.wpe.weight"
    assert pos.transform == {"op": "select_rows", "rows": [None, None, *range(16)]}
    assert "OPT" in pos.reason and "row i+2" in pos.reason
    src, tgt = pair.build()
    placed = apply_transform(pos.transform, src.state_dict()["transformer.wpe.weight"], tgt.state_dict()[POS_OPT])
    assert torch.equal(placed[2:], src.state_dict()["transformer.wpe.weight"])
    assert torch.equal(placed[:2], tgt.state_dict()[POS_OPT][:2])  # rows 0-1 keep the target's init
    entries = {t: (s.source, s.transform) for t, s in got.items() if s.accepted}
    assert entries.keys() == pair.truth().keys()
    ok, err = function_check(pair, entries)
    assert ok, err
    without = {t: e for t, e in entries.items() if t != POS_OPT}  # the offset is what made the difference
    assert not function_check(pair, without)[0]


def test_opt_to_gpt2_takes_the_positions_from_row_2_on():
    pair = ZooPair("HF OPT -> HF GPT-2", opt, gpt2, [], _tokens)
    got = _auto(pair)
    pos = got["transformer.wpe.weight"]
    assert pos.accepted and pos.source == POS_OPT
    assert pos.transform == {"op": "select_rows", "rows": list(range(2, 18))}
    src, tgt = pair.build()
    placed = apply_transform(pos.transform, src.state_dict()[POS_OPT], tgt.state_dict()["transformer.wpe.weight"])
    assert torch.equal(placed, src.state_dict()[POS_OPT][2:])


def test_a_longer_table_without_the_convention_is_only_proposed():
    """GPT-2 with 18 positions: its two new rows are positions at the end, not an offset; nothing says which."""
    longer = _hf("GPT2LMHeadModel", "GPT2Config", n_embd=32, n_layer=2, n_head=2, vocab_size=50, n_positions=18,
                 activation_function="gelu_new")
    got = _auto(ZooPair("HF GPT-2 -> HF GPT-2 (18 positions)", gpt2, longer, [], _tokens))
    pos = got["transformer.wpe.weight"]
    assert not pos.accepted and pos.confidence < 0.6 and "pad" in pos.reason
    assert sum(s.accepted for s in got.values()) == len(got) - 1
