"""What ``apply`` writes and reports: safetensors metadata, tied target tensors, output dtypes and casts.

Real models throughout: a tiny GPT-2 (transformers, random init) for tied weights and provenance, a
torchvision MobileNetV3 (BatchNorm, so integer buffers too) for dtypes, files written under tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import textwrap

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file, save_model

from spp_gui import build_model, trust_code
from spp_gui.core import apply as apply_module
from spp_gui.core.apply import (
    DTYPES,
    TIED,
    apply_to_file,
    mapping_sha256,
    save_weights,
    tie_groups,
    write_safetensors,
)
from spp_gui.core.errors import MappingError
from spp_gui.core.mapping import Entry, Mapping
from spp_gui.core.sources import load_source
from spp_gui.core.steps import run_steps

GPT2 = "hf:GPT2LMHeadModel?n_layer=2&n_embd=64&n_head=2&vocab_size=100&n_positions=32"
MOBILENET = "torchvision:mobilenet_v3_small?num_classes=5"
PROVENANCE = ("spp_gui.version", "spp_gui.source", "spp_gui.source_sha256", "spp_gui.mapping_sha256", "spp_gui.target")


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def metadata_of(path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def transformers_457_accepts(path) -> bool:
    """transformers 4.57 ``modeling_utils.load_state_dict`` (and ``_load_pretrained_model``): a safetensors
    file whose metadata exists but has no format in pt/tf/flax/mlx is refused ("does not contain the valid
    metadata"). transformers 5 dropped the check, so it is restated here, on the file's real metadata."""
    metadata = metadata_of(path)
    return metadata is None or metadata.get("format") in ["pt", "tf", "flax", "mlx"]


def exact_mapping(source, target_spec: str, keys, sha: str | None = None) -> Mapping:
    return Mapping(source_spec=str(source), target_spec=target_spec, source_sha256=sha,
                   entries={k: Entry(k, k) for k in keys})


@pytest.fixture(scope="module")
def gpt2_source(tmp_path_factory):
    """A GPT-2 LM saved as safetensors by safetensors' own ``save_model`` (it keeps one name of the tied pair)."""
    folder = tmp_path_factory.mktemp("gpt2")
    model = build_model(GPT2, seed=11).eval()
    save_model(model, str(folder / "src.safetensors"))
    return folder / "src.safetensors", model


def gpt2_logits(model, ids=None) -> torch.Tensor:
    ids = torch.tensor([[1, 5, 7, 42, 99, 3]]) if ids is None else ids
    with torch.no_grad():
        return model(ids).logits


# ---------------------------------------------------------------------------------------------
# metadata


def test_streamed_safetensors_says_format_pt_and_all_its_provenance(tmp_path):
    model = build_model(MOBILENET, seed=2)
    source = tmp_path / "src.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, source)
    mapping = exact_mapping(source, MOBILENET, model.state_dict(), sha=sha256_of(source))
    mapping.save(tmp_path / "m.json")
    out = tmp_path / "out.safetensors"
    report = apply_to_file(Mapping.load(tmp_path / "m.json"), out)
    assert report.warnings == []
    meta = metadata_of(out)
    assert meta["format"] == "pt" and transformers_457_accepts(out)
    assert all(meta.get(k) for k in PROVENANCE), meta
    assert meta["spp_gui.source_sha256"] == sha256_of(source)  # hashed in the copy pass, then written back
    assert meta["spp_gui.target"] == MOBILENET
    assert meta["spp_gui.source"] == str(source)
    # the digest names the mapping, wherever its file and source lie
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    Mapping.load(tmp_path / "m.json").save(moved / "copy.json")
    assert meta["spp_gui.mapping_sha256"] == mapping_sha256(Mapping.load(moved / "copy.json")) == mapping_sha256(mapping)
    changed = Mapping.load(tmp_path / "m.json")
    changed.remove("classifier.3.bias")
    assert mapping_sha256(changed) != meta["spp_gui.mapping_sha256"]
    # the placeholder was filled in place: the file is still a valid one, every tensor as in the source
    got = load_file(out)
    assert all(torch.equal(got[k], v) for k, v in model.state_dict().items())


def test_a_source_digest_is_written_only_where_the_apply_checks_one(tmp_path):
    model = build_model(MOBILENET, seed=2)
    source = tmp_path / "src.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, source)
    unhashed = exact_mapping(source, MOBILENET, model.state_dict())
    apply_to_file(unhashed, tmp_path / "a.safetensors")
    assert "spp_gui.source_sha256" not in metadata_of(tmp_path / "a.safetensors")  # the mapping records none
    with load_source(source) as src:
        digest = src.sha256()  # hashing remembers it (the cache): the next apply reads no byte to know it
    checked = exact_mapping(source, MOBILENET, model.state_dict(), sha=digest)
    apply_to_file(checked, tmp_path / "b.safetensors")
    assert metadata_of(tmp_path / "b.safetensors")["spp_gui.source_sha256"] == digest == sha256_of(source)
    stale = exact_mapping(source, MOBILENET, model.state_dict(), sha="0" * 64)
    report = apply_to_file(stale, tmp_path / "c.safetensors")
    assert "differs from the file the mapping was made from" in report.warnings[0]
    assert metadata_of(tmp_path / "c.safetensors")["spp_gui.source_sha256"] == digest  # the file's, not the claim


def test_in_memory_output_has_the_same_provenance(tmp_path, gpt2_source):
    source, _ = gpt2_source
    mapping = exact_mapping(source, GPT2, load_file(source), sha=sha256_of(source))
    out = tmp_path / "out.safetensors"
    apply_to_file(mapping, out)  # tied: the in-memory way
    meta = metadata_of(out)
    assert transformers_457_accepts(out)
    assert all(meta.get(k) for k in PROVENANCE), meta
    assert meta["spp_gui.source_sha256"] == sha256_of(source)


def test_every_safetensors_spp_gui_writes_says_format_pt(tmp_path):
    state = {"a": torch.ones(3), "b": torch.arange(4)}
    write_safetensors(state, tmp_path / "w.safetensors")
    save_weights(state, tmp_path / "s.safetensors", metadata={"epoch": "3", "format": "flax"})
    assert metadata_of(tmp_path / "w.safetensors")["format"] == "pt"
    meta = metadata_of(tmp_path / "s.safetensors")
    assert meta["format"] == "pt" and meta["epoch"] == "3" and meta["spp_gui.version"]
    assert all(transformers_457_accepts(tmp_path / n) for n in ("w.safetensors", "s.safetensors"))


def test_pth_output_is_a_plain_state_dict(tmp_path):
    model = build_model(MOBILENET, seed=2)
    source = tmp_path / "src.pth"
    torch.save(model.state_dict(), source)
    apply_to_file(exact_mapping(source, MOBILENET, model.state_dict()), tmp_path / "out.pth")
    state = torch.load(tmp_path / "out.pth", weights_only=True)
    fresh = build_model(MOBILENET, seed=0)
    fresh.load_state_dict(state, strict=True)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------
# tied target tensors


def test_gpt2_tie_is_found_on_meta_and_cpu():
    for device in ("meta", "cpu"):
        state = build_model(GPT2, device=device).state_dict(keep_vars=True)
        assert tie_groups(state) == [["transformer.wte.weight", "lm_head.weight"]]


@pytest.mark.parametrize("saved_by", ["save_model", "save_pretrained"])
def test_gpt2_tied_head_is_reported_filled_and_loads_in_transformers(tmp_path, gpt2_source, saved_by):
    """save_model keeps lm_head.weight, save_pretrained transformer.wte.weight: either name alone fills both."""
    from transformers import GPT2LMHeadModel

    _, model = gpt2_source
    if saved_by == "save_model":
        source = gpt2_source[0]
    else:
        model.save_pretrained(tmp_path / "hf")
        source = tmp_path / "hf" / "model.safetensors"
    keys = list(load_file(source))
    mapped = "lm_head.weight" if "lm_head.weight" in keys else "transformer.wte.weight"
    other = "transformer.wte.weight" if mapped == "lm_head.weight" else "lm_head.weight"
    assert other not in keys
    folder = tmp_path / "out"
    folder.mkdir()
    report = apply_to_file(exact_mapping(source, GPT2, keys), folder / "model.safetensors")

    assert report.status[other] == TIED and report.tied == {other: mapped}
    assert report.sources[other] == mapped
    assert report.share == 1.0 and report.unmapped == []
    assert report.to_dict()["keys"][other]["tied_to"] == mapped
    assert f"{other}: tied to {mapped}" in report.tied_lines()
    assert "1 tied" in report.summary() and "100.0%" in report.summary()
    # safetensors holds no shared tensors: the file keeps the name HF does not re-tie, as save_pretrained
    assert report.dropped == ["lm_head.weight"]
    written = load_file(folder / "model.safetensors")
    assert "lm_head.weight" not in written and set(written) == set(model.state_dict()) - {"lm_head.weight"}
    assert metadata_of(folder / "model.safetensors")["spp_gui.tied"] == '{"lm_head.weight":"transformer.wte.weight"}'

    model.config.save_pretrained(folder)
    loaded = GPT2LMHeadModel.from_pretrained(folder).eval()
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()
    assert torch.equal(gpt2_logits(loaded), gpt2_logits(model))

    fresh = build_model(GPT2, seed=0).eval()
    result = fresh.load_state_dict(written, strict=False)
    assert result.missing_keys == ["lm_head.weight"] and result.unexpected_keys == []
    assert torch.equal(gpt2_logits(fresh), gpt2_logits(model))


def test_gpt2_pth_output_keeps_both_names_on_one_storage(tmp_path, gpt2_source):
    source, model = gpt2_source
    report = apply_to_file(exact_mapping(source, GPT2, load_file(source)), tmp_path / "out.pth")
    assert report.dropped == [] and report.status["transformer.wte.weight"] == TIED
    state = torch.load(tmp_path / "out.pth", weights_only=True)
    assert set(state) == set(model.state_dict())
    assert state["lm_head.weight"].data_ptr() == state["transformer.wte.weight"].data_ptr()
    fresh = build_model(GPT2, seed=0).eval()
    fresh.load_state_dict(state, strict=True)
    assert fresh.lm_head.weight.data_ptr() == fresh.transformer.wte.weight.data_ptr()
    assert torch.equal(gpt2_logits(fresh), gpt2_logits(model))


def test_tied_names_mapped_from_different_sources_is_an_error(tmp_path, gpt2_source):
    source, model = gpt2_source
    state = load_file(source)
    state["other.embedding"] = torch.randn(100, 64)
    save_file(state, tmp_path / "two.safetensors")
    mapping = exact_mapping(tmp_path / "two.safetensors", GPT2, load_file(source))
    mapping.set(Entry("transformer.wte.weight", "other.embedding"))
    with pytest.raises(MappingError, match=r"one tensor in the target \(tied weights\).*map only one"):
        apply_to_file(mapping, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    mapping.set(Entry("transformer.wte.weight", "lm_head.weight"))  # both from the same tensor: fine
    report = apply_to_file(mapping, tmp_path / "out.safetensors")
    assert report.share == 1.0 and report.tied == {"lm_head.weight": "transformer.wte.weight"}


def test_unmapped_tied_pair_counts_once(tmp_path, gpt2_source):
    source, model = gpt2_source
    keys = [k for k in load_file(source) if k != "lm_head.weight"]
    report = apply_to_file(exact_mapping(source, GPT2, keys), tmp_path / "out.safetensors")
    assert report.status["lm_head.weight"] == report.status["transformer.wte.weight"] == "unmapped"
    unique = sum(p.numel() for p in model.parameters())  # parameters() lists the tied one once
    assert report.total_numel == unique
    assert report.loaded_numel == unique - model.transformer.wte.weight.numel()


TIED_NET = """
import torch
from torch import nn


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight
"""


def test_plain_torch_tie_keeps_every_name_for_a_strict_load(tmp_path):
    path = tmp_path / "tied.py"
    path.write_text(textwrap.dedent(TIED_NET))
    trust_code(path)
    spec = f"{path}:Tied"
    save_file({"embed.weight": torch.randn(10, 4)}, tmp_path / "src.safetensors")
    mapping = exact_mapping(tmp_path / "src.safetensors", spec, ["embed.weight"])
    report = apply_to_file(mapping, tmp_path / "out.safetensors")
    assert report.dropped == [] and report.status["head.weight"] == TIED and report.share == 1.0
    written = load_file(tmp_path / "out.safetensors")
    fresh = build_model(spec)
    fresh.load_state_dict(written, strict=True)
    assert torch.equal(fresh.head.weight, load_file(tmp_path / "src.safetensors")["embed.weight"])


# ---------------------------------------------------------------------------------------------
# output dtypes and the casts the report names


def mobilenet_source(tmp_path, dtype: torch.dtype, suffix: str):
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
             for k, v in build_model(MOBILENET, seed=4).state_dict().items()}
    path = tmp_path / f"src_{str(dtype)[6:]}{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    return path, state


def read_back(path) -> dict[str, torch.Tensor]:
    return load_file(path) if path.suffix == ".safetensors" else torch.load(path, weights_only=True)


@pytest.mark.parametrize("out_suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("option", [None, *DTYPES])
@pytest.mark.parametrize("source_dtype", [torch.bfloat16, torch.float16])
def test_dtype_option_on_a_low_precision_source(tmp_path, source_dtype, option, out_suffix):
    source, state = mobilenet_source(tmp_path, source_dtype, ".safetensors")
    target = build_model(MOBILENET, device="meta").state_dict()
    unmapped = {"classifier.3.weight", "classifier.3.bias"}
    mapping = exact_mapping(source, MOBILENET, [k for k in state if k not in unmapped])
    out = tmp_path / f"out{out_suffix}"
    report = apply_to_file(mapping, out, dtype=option)
    got = read_back(out)
    assert list(got) == list(target)
    casts, init_casts = {}, {}
    for key, meta in target.items():
        if not meta.is_floating_point():
            want = meta.dtype
        elif option is None:
            want = meta.dtype
        elif option == "keep":
            want = source_dtype if key not in unmapped else meta.dtype
        else:
            want = getattr(torch, option)
        assert got[key].dtype == want, (key, got[key].dtype, want)
        if key in unmapped:
            if want != meta.dtype:
                pair = f"{str(meta.dtype)[6:]} -> {str(want)[6:]}"
                init_casts[pair] = init_casts.get(pair, 0) + 1
            continue
        assert torch.equal(got[key], state[key].to(want)), key  # the source's values, cast once
        if state[key].dtype != want:
            pair = f"{str(state[key].dtype)[6:]} -> {str(want)[6:]}"
            casts[pair] = casts.get(pair, 0) + 1
    assert report.casts == casts and report.init_casts == init_casts
    assert report.to_dict()["casts"] == casts and report.dtype == option
    for pair, n in casts.items():
        assert f"cast {n} tensors {pair}" in report.summary()
    if not casts and not init_casts:
        assert "cast" not in report.summary()
    if out_suffix == ".safetensors":
        assert metadata_of(out).get("spp_gui.dtype") == option


def test_default_names_the_casts_it_always_made(tmp_path):
    source, state = mobilenet_source(tmp_path, torch.bfloat16, ".pth")
    report = apply_to_file(exact_mapping(source, MOBILENET, state), tmp_path / "out.safetensors")
    floats = sum(1 for v in state.values() if v.is_floating_point())
    assert report.casts == {"bfloat16 -> float32": floats}
    assert f"cast {floats} tensors bfloat16 -> float32" in report.summary()


def test_keep_copies_a_bf16_source_verbatim(tmp_path, monkeypatch):
    """No cast needed: every tensor goes file to file, none is made in memory, the target never built."""
    source, state = mobilenet_source(tmp_path, torch.bfloat16, ".safetensors")
    made, built = [], []
    real_made, real_build = apply_module._made_tensor, apply_module.build_model
    monkeypatch.setattr(apply_module, "_made_tensor", lambda *a, **kw: made.append(a[0]) or real_made(*a, **kw))
    monkeypatch.setattr(apply_module, "build_model",
                        lambda s, device="cpu", **kw: (built.append(device) if device != "meta" else None)
                        or real_build(s, device=device, **kw))
    report = apply_to_file(exact_mapping(source, MOBILENET, state), tmp_path / "out.safetensors", dtype="keep")
    assert made == [] and built == [] and report.casts == {}
    got = load_file(tmp_path / "out.safetensors")
    assert all(torch.equal(got[k], v) and got[k].dtype == v.dtype for k, v in state.items())


@pytest.mark.parametrize("option", ["keep", "bfloat16"])
def test_tied_target_with_a_dtype(tmp_path, gpt2_source, option):
    source, model = gpt2_source
    half = {k: v.to(torch.float16) for k, v in load_file(source).items()}
    save_file(half, tmp_path / "half.safetensors")
    mapping = exact_mapping(tmp_path / "half.safetensors", GPT2, half)
    want = torch.float16 if option == "keep" else torch.bfloat16
    report = apply_to_file(mapping, tmp_path / "out.pth", dtype=option)
    state = torch.load(tmp_path / "out.pth", weights_only=True)
    assert {v.dtype for v in state.values()} == {want}
    assert state["lm_head.weight"].data_ptr() == state["transformer.wte.weight"].data_ptr()
    assert all(torch.equal(state[k], v.to(want)) for k, v in half.items())
    n = len(half)
    assert report.casts == ({} if option == "keep" else {"float16 -> bfloat16": n})
    report = apply_to_file(mapping, tmp_path / "out.safetensors", dtype=option)
    written = load_file(tmp_path / "out.safetensors")
    assert "lm_head.weight" not in written and {v.dtype for v in written.values()} == {want}


@pytest.mark.parametrize("option", [None, "keep", "bfloat16"])
@pytest.mark.parametrize("out_suffix", [".safetensors", ".pth"])
def test_streamed_and_in_memory_agree_on_dtypes(tmp_path, option, out_suffix):
    """A float64 source into a float32 target: 'keep' must not pass it through the float32 model."""
    model = build_model(MOBILENET, seed=4)
    state = {k: (v.double() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    state["features.0.0.weight"] = torch.randn(16, 1, 3, 3, dtype=torch.float64)
    torch.save(state, tmp_path / "src.pth")
    mapping = exact_mapping(tmp_path / "src.pth", MOBILENET, [k for k in state if not k.startswith("classifier.3")])
    mapping.set(Entry("features.0.0.weight", "features.0.0.weight", {"op": "in_channels"}))
    streamed = apply_to_file(mapping, tmp_path / f"new{out_suffix}", dtype=option, seed=1)
    with load_source(tmp_path / "src.pth") as src:
        in_memory = run_steps(apply_module._in_memory_steps(mapping, src, MOBILENET, 1, tmp_path / f"old{out_suffix}",
                                                            dtype=option))
    assert streamed.to_dict() == in_memory.to_dict()
    new, old = read_back(tmp_path / f"new{out_suffix}"), read_back(tmp_path / f"old{out_suffix}")
    assert list(new) == list(old)
    assert all(new[k].dtype == old[k].dtype and torch.equal(new[k], old[k]) for k in new)
    if option == "keep":
        assert new["features.1.block.0.0.weight"].dtype == torch.float64
        assert torch.equal(new["features.1.block.0.0.weight"], state["features.1.block.0.0.weight"])


def test_unknown_dtype_is_refused_with_the_choices(tmp_path):
    mapping = Mapping(source_spec=MOBILENET, target_spec=MOBILENET)
    with pytest.raises(MappingError, match="keep, float32, bfloat16, float16"):
        apply_to_file(mapping, tmp_path / "out.safetensors", dtype="int8")


def test_apply_mapping_on_a_live_model_reports_ties_and_casts(tmp_path, gpt2_source):
    from spp_gui import apply_mapping

    source, model = gpt2_source
    half = {k: v.to(torch.float16) for k, v in load_file(source).items()}
    target = build_model(GPT2, seed=0).eval()
    report = apply_mapping(target, half, exact_mapping("<dict>", GPT2, half))
    assert report.tied == {"transformer.wte.weight": "lm_head.weight"} and report.share == 1.0
    assert report.casts == {"float16 -> float32": len(half)}
    assert torch.equal(target.transformer.wte.weight, half["lm_head.weight"].float())
    assert {p.dtype for p in target.parameters()} == {torch.float32}  # a live model keeps its dtypes


def test_mapping_digest_is_over_what_to_dict_says():
    """The digest's fast serialisation is Mapping.to_dict() (less source.spec), field for field."""
    mapping = Mapping(source_spec="a.pth", target_spec=MOBILENET, source_sha256="ab" * 32)
    mapping.set(Entry("x", "y"))
    mapping.set(Entry("z", "w", {"op": "slice"}, origin="auto", confidence=0.5, reason="same shape"))
    data = mapping.to_dict()
    del data["source"]["spec"]
    want = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert mapping_sha256(mapping) == want


def test_cli_apply_dtype_and_tie_lines(tmp_path, capsys, gpt2_source):
    from spp_gui.cli import main

    source, state = mobilenet_source(tmp_path, torch.bfloat16, ".safetensors")
    exact_mapping(source, MOBILENET, list(state)).save(tmp_path / "m.json")
    assert main(["apply", str(tmp_path / "m.json"), "-o", str(tmp_path / "kept.safetensors"), "--dtype", "keep"]) == 0
    out = capsys.readouterr().out
    assert "cast" not in out.splitlines()[0]  # kept: nothing cast
    assert all(v.dtype == state[k].dtype for k, v in load_file(tmp_path / "kept.safetensors").items())
    assert main(["apply", str(tmp_path / "m.json"), "-o", str(tmp_path / "f32.safetensors")]) == 0
    floats = sum(1 for v in state.values() if v.is_floating_point())
    assert f"cast {floats} tensors bfloat16 -> float32" in capsys.readouterr().out  # the default, said
    with pytest.raises(SystemExit) as refused:  # argparse names the choices
        main(["apply", str(tmp_path / "m.json"), "-o", str(tmp_path / "x.safetensors"), "--dtype", "int8"])
    assert refused.value.code == 2 and "choose from 'keep'" in capsys.readouterr().err

    path, _model = gpt2_source  # save_model kept one name of the tied pair: map what the file holds
    with load_source(path) as src:
        keys = list(src.tensors)
    exact_mapping(path, GPT2, keys).save(tmp_path / "g.json")
    assert main(["apply", str(tmp_path / "g.json"), "-o", str(tmp_path / "g.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "1 tied" in out and ": tied to " in out
