"""timm: and hf: specs (the zoo extra): built on meta and for real with random init, never downloaded."""

from __future__ import annotations

import json
import sys

import pytest
import torch

pytest.importorskip("timm")
pytest.importorskip("transformers")

from spp_gui.core.errors import SpecError  # noqa: E402
from spp_gui.core.sources import load_source  # noqa: E402
from spp_gui.core.specs import build_model, looks_like_model_spec, parse_spec  # noqa: E402
from spp_gui.core.strategies import target_side  # noqa: E402

VIT_HF = "hf:ViTForImageClassification?hidden_size=32&num_hidden_layers=2&num_attention_heads=2&intermediate_size=64&image_size=32&patch_size=8&num_labels=10"
BERT_HF = "hf:BertModel?hidden_size=32&num_hidden_layers=1&num_attention_heads=2&intermediate_size=64&vocab_size=50"
VIT_TIMM = "timm:vit_tiny_patch16_224?num_classes=10&depth=2&img_size=32&patch_size=8"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_specs_parse_in_the_one_grammar():
    t = parse_spec("timm:vit_base_patch16_224?num_classes=10")
    assert (t.kind, t.name, t.kwargs) == ("timm", "vit_base_patch16_224", {"num_classes": 10})
    h = parse_spec("hf:ViTForImageClassification?hidden_size=192&num_hidden_layers=2")
    assert (h.kind, h.name, h.path, h.kwargs) == ("hf", "ViTForImageClassification", None,
                                                  {"hidden_size": 192, "num_hidden_layers": 2})
    f = parse_spec("hf:path/to/folder")
    assert (f.kind, f.path) == ("hf", "path/to/folder")
    assert all(looks_like_model_spec(s) for s in ("timm:resnet18", "hf:BertModel", "hf:./folder"))
    with pytest.raises(SpecError, match="only torchvision specs take a weights name"):
        parse_spec("timm:resnet18:imagenet")


@pytest.mark.parametrize("spec", [VIT_TIMM, VIT_HF, BERT_HF])
def test_zoo_specs_build_on_meta_and_seeded_for_real(spec):
    meta = build_model(spec, device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())
    a, b = build_model(spec, seed=3).state_dict(), build_model(spec, seed=3).state_dict()
    assert list(a) == list(meta.state_dict())
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = build_model(spec, seed=4).state_dict()
    assert any(not torch.equal(a[k], other[k]) for k in a if a[k].is_floating_point())
    assert target_side(spec).spec == spec


def test_timm_options_reach_create_model_and_never_pretrained():
    model = build_model("timm:resnet18?num_classes=7", device="meta")
    assert model.fc.out_features == 7
    with pytest.raises(SpecError, match="pretrained is not an option here"):
        build_model("timm:resnet18?pretrained=true", device="meta")
    with pytest.raises(SpecError, match="did you mean resnet18"):
        build_model("timm:resnet181", device="meta")


def test_hf_class_builds_its_config_from_the_options():
    model = build_model(VIT_HF, device="meta")
    assert type(model).__name__ == "ViTForImageClassification"
    assert model.config.hidden_size == 32 and model.classifier.out_features == 10
    with pytest.raises(SpecError, match="did you mean BertModel"):
        build_model("hf:BertModle", device="meta")
    with pytest.raises(SpecError, match="no model class 'BertConfig'"):
        build_model("hf:BertConfig", device="meta")
    with pytest.raises(SpecError, match="num_labels=0 is not valid"):
        build_model("hf:BertModel?num_labels=0", device="meta")


def test_hf_folder_builds_config_architectures_on_meta(tmp_path):
    build_model(BERT_HF, device="meta").config.save_pretrained(tmp_path)
    model = build_model(f"hf:{tmp_path}", device="meta")
    assert type(model).__name__ == "BertModel" and model.config.hidden_size == 32
    assert all(p.device.type == "meta" for p in model.parameters())
    deeper = build_model(f"hf:{tmp_path}?num_hidden_layers=2", device="meta")
    assert len(deeper.state_dict()) > len(model.state_dict())
    # as a source: the architecture's random init, seeded
    src = load_source(f"hf:{tmp_path}")
    assert src.kind == "model" and set(src.tensors) == set(model.state_dict())


def test_hf_folder_config_is_data_never_code(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["EvilModel"],
                                                      "auto_map": {"AutoModel": "evil.EvilModel"}}))
    (tmp_path / "evil.py").write_text("raise SystemExit('ran')\n")
    with pytest.raises(SpecError, match="no model class 'EvilModel'"):
        build_model(f"hf:{tmp_path}", device="meta")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "evil_custom", "architectures": ["BertModel"]}))
    with pytest.raises(SpecError, match="knows no model_type 'evil_custom'"):
        build_model(f"hf:{tmp_path}", device="meta")
    (tmp_path / "config.json").write_text("[" * 100_000)
    with pytest.raises(SpecError, match="not valid JSON"):
        build_model(f"hf:{tmp_path}", device="meta")
    (tmp_path / "config.json").write_bytes(b" " * (2 << 20))
    with pytest.raises(SpecError, match="a config is at most"):
        build_model(f"hf:{tmp_path}", device="meta")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(SpecError, match="names no architectures"):
        build_model(f"hf:{tmp_path}", device="meta")
    with pytest.raises(SpecError, match="no config.json"):
        build_model(f"hf:{tmp_path / 'missing'}", device="meta")


@pytest.mark.parametrize(("spec", "library"), [("timm:resnet18", "timm"), ("hf:BertModel", "transformers")])
def test_a_missing_extra_says_what_to_install(monkeypatch, spec, library):
    monkeypatch.setitem(sys.modules, library, None)  # import fails as if not installed
    with pytest.raises(SpecError, match=r"needs .*not installed: pip install 'spp-gui\[zoo\]'"):
        build_model(spec, device="meta")


def test_timm_to_hf_end_to_end_through_the_public_api(tmp_path):
    """A timm spec as the source (seeded random init), an hf spec as the target: auto's mapping (fused qkv
    as chunks) saved, read back and applied makes the HF model compute the timm model's logits."""
    from spp_gui import apply_mapping, suggest_mapping
    from spp_gui.core.mapping import Mapping

    src_spec = "timm:vit_tiny_patch16_224?img_size=32&patch_size=8&embed_dim=32&depth=2&num_heads=2&mlp_ratio=2&num_classes=10"
    tgt_spec = VIT_HF + "&layer_norm_eps=1e-06"
    mapping = suggest_mapping(src_spec, tgt_spec, strategy="auto")
    assert not mapping.candidates and {e.transform["op"] for e in mapping if e.transform} == {"chunk"}
    mapping.save(tmp_path / "m.json")
    target = build_model(tgt_spec)
    apply_mapping(target, src_spec, Mapping.load(tmp_path / "m.json"))
    source = build_model(src_spec, seed=0)  # the seed a model spec source is read with
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(source(x), target(pixel_values=x).logits, atol=1e-5)
