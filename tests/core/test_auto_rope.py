"""HF <-> Meta Llama: the rope_permute transform and auto proposing it from the naming."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("transformers")

from zoosuite import LLAMA, ZooPair, _tokens, function_check, hf_llama, meta_llama, zoo_pairs  # noqa: E402

from spp_gui.core.strategies import Side, source_side, suggest  # noqa: E402
from spp_gui.core.tensors import table_of  # noqa: E402
from spp_gui.core.transforms import apply_transform, check_params, check_transform  # noqa: E402

DIM, H, KV = LLAMA["dim"], LLAMA["n_heads"], LLAMA["n_kv_heads"]
HD = DIM // H


def permute(w, n_heads, dim1=DIM, dim2=DIM):
    """convert_llama_weights_to_hf.py's own: Meta's rows -> HF's."""
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def unpermute(w, n_heads, dim1=DIM, dim2=DIM):
    """Its inverse, written from the definition (HF's rows -> Meta's)."""
    return w.view(n_heads, 2, dim1 // n_heads // 2, dim2).transpose(1, 2).reshape(dim1, dim2)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_rope_permute_is_the_conversion_scripts_permute_and_its_inverse():
    wq, wk = torch.randn(DIM, DIM), torch.randn(KV * HD, DIM)
    to_hf = {"op": "rope_permute", "heads": H, "to": "hf"}
    assert torch.equal(apply_transform(to_hf, wq, wq), permute(wq, H))
    assert torch.equal(apply_transform({"op": "rope_permute", "heads": H, "to": "meta"}, permute(wq, H), wq), wq)
    k_hf = apply_transform({"op": "rope_permute", "heads": KV, "to": "hf"}, wk, wk)
    assert torch.equal(k_hf, permute(wk, KV, KV * HD, DIM))
    bias = torch.arange(8.0)  # a q bias: the same rows, one column
    assert apply_transform({"op": "rope_permute", "heads": 2, "to": "hf"}, bias, bias).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert "do not split into 3 heads" in check_transform({"op": "rope_permute", "heads": 3, "to": "hf"}, (32, 32), (32, 32))
    assert "must agree" in check_transform(to_hf, (32, 32), (16, 32))
    assert "'heads'" in check_params({"op": "rope_permute", "heads": 0, "to": "hf"})
    assert "'to'" in check_params({"op": "rope_permute", "heads": 2, "to": "llama"})
    assert check_params({"op": "rope_permute", "heads": 2, "to": "hf", "dims": [1, 0]}) is not None


def test_the_meta_module_computes_hfs_function_from_the_conversions_inverse():
    """The test's Meta llama follows Meta's model.py: HF's weights un-permuted by the conversion's convention
    (not by the op under test) give it HF's logits."""
    torch.manual_seed(0)
    hf = hf_llama().eval()
    meta = meta_llama().eval()
    sd = hf.state_dict()
    names = dict(next(p for p in zoo_pairs() if p.name == "Meta llama -> HF Llama").truth())
    state = {}
    for hf_key, (meta_key, _) in names.items():
        w = sd[hf_key]
        if meta_key.endswith("wq.weight"):
            w = unpermute(w, H)
        elif meta_key.endswith("wk.weight"):
            w = unpermute(w, KV, KV * HD, DIM)
        state[meta_key] = w
    meta.load_state_dict(state)
    x = torch.randint(0, LLAMA["vocab"], (2, 12))
    with torch.no_grad():
        a, b = hf(x).logits, meta(x)
    assert (a - b).abs().max() < 1e-4 * a.abs().max()


@pytest.mark.parametrize("name", ["HF Llama -> Meta llama", "Meta llama -> HF Llama"])
def test_auto_gives_wq_wk_their_permutation_and_the_function_matches(name):
    pair = next(p for p in zoo_pairs() if p.name == name)
    source, target = pair.sides()
    got = {s.target: s for s in suggest(source, target, "auto").items}
    truth = pair.truth()
    accepted = {t: (s.source, s.transform) for t, s in got.items() if s.accepted}
    assert accepted == truth
    to = "meta" if name.startswith("HF") else "hf"
    q = next(s for t, s in got.items() if t.endswith(("wq.weight", "q_proj.weight")))
    k = next(s for t, s in got.items() if t.endswith(("wk.weight", "k_proj.weight")))
    assert q.transform == {"op": "rope_permute", "heads": H, "to": to}
    assert k.transform == {"op": "rope_permute", "heads": KV, "to": to}
    assert "convert_llama_weights_to_hf.py" in q.reason and "head size from the config of hf:LlamaForCausalLM" in q.reason
    ok, err = function_check(pair, accepted)
    assert ok, err
    plain = {t: (s, None) for t, (s, _) in accepted.items()}  # without the permutation it computes something else
    assert not function_check(pair, plain)[0]


def test_without_a_head_size_the_permutation_is_only_proposed_and_head_dim_settles_it():
    pair = next(p for p in zoo_pairs() if p.name == "HF Llama -> Meta llama")
    src, tgt = pair.build()
    source, target = Side(table_of(src.state_dict())), Side(table_of(tgt.state_dict()))  # no specs
    got = {s.target: s for s in suggest(source, target, "auto").items}
    q = got["layers.0.attention.wq.weight"]
    assert not q.accepted and "rope_permute needs the head size (give head_dim)" in q.reason  # 32 rows: no guess
    assert got["layers.0.attention.wv.weight"].accepted  # v and the rest need no permutation
    given = {s.target: s for s in suggest(source, target, "auto", head_dim=HD).items}
    q = given["layers.0.attention.wq.weight"]
    assert q.accepted and q.transform == {"op": "rope_permute", "heads": H, "to": "meta"}
    assert "head_dim option" in q.reason


def test_a_meta_checkpoints_params_json_gives_the_head_size(tmp_path):
    torch.manual_seed(3)
    meta = meta_llama()
    folder = tmp_path / "llama-toy"
    folder.mkdir()
    torch.save(meta.state_dict(), folder / "consolidated.00.pth")
    (folder / "params.json").write_text(json.dumps({"dim": DIM, "n_layers": 2, "n_heads": H, "n_kv_heads": KV,
                                                    "vocab_size": LLAMA["vocab"], "norm_eps": 1e-5}))
    target = ZooPair("x", meta_llama, hf_llama, [], _tokens).build()[1]
    got = {s.target: s for s in suggest(source_side(folder / "consolidated.00.pth"),
                                        Side(table_of(target.state_dict())), "auto").items}
    k = got["model.layers.1.self_attn.k_proj.weight"]
    assert k.accepted and k.transform == {"op": "rope_permute", "heads": KV, "to": "hf"}
    assert "params.json" in k.reason


def test_a_llama_to_llama_pair_gets_no_permutation():
    pair = ZooPair("HF Llama -> HF Llama", hf_llama, hf_llama, [(r".*", r"\g<0>", None)], _tokens)
    got = suggest(*pair.sides(), "auto").items
    assert all(s.transform is None and s.accepted for s in got)


@pytest.mark.parametrize("to", ["hf", "meta"])
def test_python_export_permutes_like_apply(to):
    """`export --as python` carries rope_permute: a training script without spp_gui gets the same rows."""
    from spp_gui.core.apply import apply_mapping
    from spp_gui.core.export import export_mapping
    from spp_gui.core.mapping import Entry, Mapping

    torch.manual_seed(0)
    source = {"wq": torch.randn(4 * 8, 32), "wk": torch.randn(2 * 8, 32), "bq": torch.randn(4 * 8)}
    target = {"q_proj.weight": torch.zeros(32, 32), "k_proj.weight": torch.zeros(16, 32), "q_proj.bias": torch.zeros(32)}
    mapping = Mapping()
    for t, s, heads in (("q_proj.weight", "wq", 4), ("k_proj.weight", "wk", 2), ("q_proj.bias", "bq", 4)):
        mapping.set(Entry(t, s, {"op": "rope_permute", "heads": heads, "to": to}))
    namespace: dict = {}
    exec(compile(export_mapping(mapping, "python").text, "<export>", "exec"), namespace)  # noqa: S102 - the point
    got = namespace["remap"](source, {k: v.clone() for k, v in target.items()})
    apply_mapping(target, source, mapping)
    for key, value in target.items():
        assert torch.equal(got[key], value), key
    assert not torch.equal(target["q_proj.weight"], source["wq"])  # rows did move
