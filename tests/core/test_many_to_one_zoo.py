"""HF ViT's separate q/k/v projections into timm's fused attn.qkv, checked by function.

The zoo pair "HF ViT -> timm vit" could not be written before mapping v2 (one source per entry):
here each ``blocks.N.attn.qkv`` entry joins ``query/key/value`` (``q_proj/k_proj/v_proj``) with
``concat``, the rest maps one to one by the zoo suite's hand-written truth, and the filled timm
model must compute what the HF model computes on one input.
"""

from __future__ import annotations

import re

import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("transformers")

from zoosuite import HF_TIMM_VIT, apply_rules, randomise  # noqa: E402

from spp_gui.core.apply import apply_mapping, apply_to_file, write_safetensors  # noqa: E402
from spp_gui.core.export import export_mapping  # noqa: E402
from spp_gui.core.mapping import ADAPTED, Entry, Mapping  # noqa: E402
from spp_gui.core.sources import load_source  # noqa: E402
from spp_gui.core.specs import build_model  # noqa: E402
from spp_gui.core.tensors import table_of  # noqa: E402
from spp_gui.core.verify import AGREE, DISAGREE, verify_mapping  # noqa: E402

HF = ("hf:ViTForImageClassification?hidden_size=32&num_hidden_layers=2&num_attention_heads=2&intermediate_size=64"
      "&image_size=32&patch_size=8&num_labels=10&layer_norm_eps=1e-06")
TIMM = "timm:vit_tiny_patch16_224?img_size=32&patch_size=8&embed_dim=32&depth=2&num_heads=2&mlp_ratio=2&num_classes=10"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _models():
    hf = build_model(HF, device="cpu", seed=0).eval()
    randomise(hf)  # every value distinct: a swapped q and k would show
    timm_model = build_model(TIMM, device="cpu", seed=1).eval()
    return hf, timm_model


def _qkv_names(hf_keys: list[str]) -> tuple[str, str]:
    """The HF names of one block's query projection: transformers 5 'q_proj', 4.x 'attention.attention.query'."""
    if any(".q_proj." in k for k in hf_keys):
        return "vit.layers.{}.attention.{}_proj.{}", "qkv"
    return "vit.encoder.layer.{}.attention.attention.{}.{}", ("query", "key", "value")


def _mapping(hf, timm_model) -> Mapping:
    hf_keys, timm_keys = list(hf.state_dict()), list(timm_model.state_dict())
    mapping = Mapping(HF, TIMM)
    for target, (source, transform) in apply_rules(HF_TIMM_VIT, hf_keys, timm_keys).items():
        mapping.set(Entry.combined(target, source if isinstance(source, tuple) else [source], transform))
    pattern, names = _qkv_names(hf_keys)
    for target in timm_keys:
        m = re.fullmatch(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", target)
        if m:
            mapping.set(Entry.combined(target, [pattern.format(m[1], n, m[2]) for n in names],
                                       {"op": "concat", "dim": 0}))
    return mapping


def _logits(model, x):
    out = model(x)
    return out.logits if hasattr(out, "logits") else out


def test_hf_q_k_v_fill_timm_qkv_and_both_compute_the_same():
    hf, timm_model = _models()
    mapping = _mapping(hf, timm_model)
    status = mapping.status(table_of(hf.state_dict()), table_of(timm_model.state_dict()))
    assert status.unused_sources == [] and not status.problems
    assert [status.target[f"blocks.{i}.attn.qkv.weight"] for i in range(2)] == [ADAPTED, ADAPTED]
    assert mapping.version == 2
    report = apply_mapping(timm_model, hf, mapping)
    assert report.unmapped == [] and report.share == 1.0 and len(report.combined) == 4
    torch.manual_seed(2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want, got = _logits(hf, x), _logits(timm_model, x)
    assert float((want - got).abs().max() / want.abs().max()) < 1e-5
    # the truth is not vacuous: the same mapping with k and v swapped computes something else
    wrong = mapping.copy()
    for entry in wrong:
        if entry.many:
            q, k, v = entry.sources
            entry.sources = [q, v, k]
    broken = build_model(TIMM, device="cpu", seed=1).eval()
    apply_mapping(broken, hf, wrong)
    with torch.no_grad():
        assert float((want - _logits(broken, x)).abs().max() / want.abs().max()) > 1e-2


def test_the_mapping_file_applies_streamed_and_verifies(tmp_path):
    hf, timm_model = _models()
    mapping = _mapping(hf, timm_model)
    src_path = tmp_path / "hf_vit.safetensors"
    write_safetensors({k: v.contiguous() for k, v in hf.state_dict().items()}, src_path)
    mapping.source_spec = str(src_path)
    path = tmp_path / "hf_to_timm.json"
    mapping.save(path)
    loaded = Mapping.load(path)
    out = tmp_path / "timm_vit.safetensors"
    report = apply_to_file(loaded, out)
    assert report.share == 1.0
    filled = build_model(TIMM, device="cpu", seed=5).eval()
    with load_source(str(out)) as written:
        filled.load_state_dict({k: written.read(k) for k in filled.state_dict()})
    torch.manual_seed(2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want, got = _logits(hf, x), _logits(filled, x)
    assert float((want - got).abs().max() / want.abs().max()) < 1e-5

    # verify (layer by layer, the models run): every one-to-one layer agrees; the joined qkv is
    # adapted by a combining op, which verify does not compare
    checked = verify_mapping(loaded, source=str(src_path), source_model_spec=HF, input_shape=(2, 3, 32, 32))
    # (timm keeps cls_token and pos_embed on the model itself: module '' pairs with HF's embeddings
    # module and their outputs differ in kind, as they do for any HF -> timm ViT mapping)
    assert [c for c in checked.by_status(DISAGREE) if c.target_module] == []
    assert len(checked.by_status(AGREE)) >= 10
    adapted = {c.target_module for c in checked.layers if c.note == "adapted by a transform"}
    assert adapted == {"blocks.0.attn.qkv", "blocks.1.attn.qkv"}

    # export: the python form joins them with torch.cat and gives what apply gives
    snippet = export_mapping(loaded, "python")
    namespace: dict = {}
    exec(compile(snippet.text, "<snippet>", "exec"), namespace)  # noqa: S102 - the snippet this test made
    remapped = namespace["remap"](dict(hf.state_dict()), dict(timm_model.state_dict()))
    with load_source(str(out)) as written:
        assert torch.equal(remapped["blocks.1.attn.qkv.weight"], written.read("blocks.1.attn.qkv.weight"))


def test_verify_strips_a_wrapper_prefix_from_every_source(tmp_path):
    """A checkpoint saved from a wrapper (``module.``): each of a joined entry's sources loses the prefix."""
    hf, timm_model = _models()
    mapping = _mapping(hf, timm_model)
    src_path = tmp_path / "wrapped.safetensors"
    write_safetensors({f"module.{k}": v.contiguous() for k, v in hf.state_dict().items()}, src_path)
    wrapped = Mapping(str(src_path), TIMM)
    for entry in mapping:
        wrapped.set(Entry.combined(entry.target, [f"module.{s}" for s in entry.sources], entry.transform))
    checked = verify_mapping(wrapped, source=str(src_path), source_model_spec=HF, input_shape=(2, 3, 32, 32))
    assert [c for c in checked.by_status(DISAGREE) if c.target_module] == []
    adapted = {c.target_module for c in checked.layers if c.note == "adapted by a transform"}
    assert adapted == {"blocks.0.attn.qkv", "blocks.1.attn.qkv"}


def test_auto_joins_hf_q_k_v_into_timm_qkv_and_the_models_agree():
    from spp_gui.core.strategies import suggest

    hf, timm_model = _models()
    mapping = suggest(hf, timm_model, "auto").to_mapping(HF, TIMM)
    joined = sorted(e.target for e in mapping if e.many)
    assert joined == [f"blocks.{i}.attn.qkv.{p}" for i in range(2) for p in ("bias", "weight")]
    pattern, names = _qkv_names(list(hf.state_dict()))
    assert mapping.get("blocks.0.attn.qkv.weight").sources == tuple(pattern.format(0, n, "weight") for n in names)
    assert len(mapping) == len(timm_model.state_dict()) and not mapping.candidates
    apply_mapping(timm_model, hf, mapping)
    torch.manual_seed(2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want, got = _logits(hf, x), _logits(timm_model, x)
    assert float((want - got).abs().max() / want.abs().max()) < 1e-5
