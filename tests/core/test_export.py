"""Exported snippets are run, the way their loaders run them, and compared with the mapping."""

from __future__ import annotations

import ast
import re

import pytest
import torch
from evalsuite import build_cases, moe_tables

from spp_gui.cli import main
from spp_gui.core.apply import apply_mapping
from spp_gui.core.errors import MappingError
from spp_gui.core.export import export_mapping
from spp_gui.core.mapping import Entry, Mapping
from spp_gui.core.strategies import Side, suggest_mapping


def hf_rename(key_mapping: dict[str, str], key: str) -> str:
    # transformers 4.x _get_key_renaming_mapping: the first pattern that matches wins
    for pattern, repl in key_mapping.items():
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def hf5_rename(key_mapping: dict[str, str], key: str) -> str:
    # transformers 5.x itself: every WeightRenaming in turn, then its legacy renames (no model, no prefix)
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    from transformers.core_model_loading import WeightRenaming, rename_source_key

    renamings = [WeightRenaming(source_patterns=p, target_patterns=r) for p, r in key_mapping.items()]
    return rename_source_key(key, renamings + get_checkpoint_conversion_mapping("legacy"), [])[0]


def hf_sets(text: str) -> list[tuple[dict[str, str], object]]:
    """The hf-key-mapping snippet's rule sets, each with the renamer of the version it is for."""
    namespace: dict = {}
    exec(compile(text, "<export>", "exec"), namespace)  # noqa: S102 - the point of the test
    (statement,) = ast.parse(text).body
    if isinstance(statement.value, ast.Subscript):  # {4: {...}, 5: {...}}[installed major version]
        sets = ast.literal_eval(statement.value.value)
        assert namespace["key_mapping"] == sets[5]  # transformers 5 is the one installed here
        return [(sets[4], hf_rename), (sets[5], hf5_rename)]
    return [(namespace["key_mapping"], hf_rename), (namespace["key_mapping"], hf5_rename)]


def mmengine_rename(revise_keys: list[tuple[str, str]], key: str) -> str:
    # mmengine _load_checkpoint_to_model: each (pattern, repl) over every key, in turn
    for pattern, repl in revise_keys:
        key = re.sub(pattern, repl, key)
    return key


def run_snippet(text: str, name: str):
    namespace: dict = {}
    exec(compile(text, "<export>", "exec"), namespace)  # noqa: S102 - the point of the test
    return namespace[name]


@pytest.fixture(scope="module")
def mappings():
    out = []
    for c in build_cases():
        if c.truth:
            out.append((c.name, suggest_mapping(c.source, c.target, "auto"), list(c.source.table), list(c.target.table)))
    return out


def rule_sets(fmt: str, text: str):
    if fmt == "hf-key-mapping":
        return hf_sets(text)
    return [(run_snippet(text, "revise_keys"), mmengine_rename)]


@pytest.mark.parametrize("fmt", ["hf-key-mapping", "mmengine-revise-keys"])
def test_regex_forms_rename_like_the_mapping(mappings, fmt):
    for name, mapping, source_keys, target_keys in mappings:
        result = export_mapping(mapping, fmt, source_keys, target_keys)
        pairs = mapping.pairs()
        for rules, rename in rule_sets(fmt, result.text):
            renamed = {k: rename(rules, k) for k in source_keys}
            assert {t: s for t, s in pairs.items()} == {renamed[s]: s for s in pairs.values()}, (name, rename)
            targets = set(target_keys)
            for key in set(source_keys) - set(pairs.values()):
                assert renamed[key] not in targets, (name, key)  # unused keys stay off target names
        assert result.not_expressed == []


def test_regex_rules_stay_compact_for_systematic_renames():
    src, tgt, truth = moe_tables(layers=4, experts=16)
    mapping = suggest_mapping(Side(src), Side(tgt), "auto")
    assert mapping.pairs() == truth
    for fmt in ("hf-key-mapping", "mmengine-revise-keys"):
        for rules, rename in rule_sets(fmt, export_mapping(mapping, fmt, list(src), list(tgt)).text):
            assert len(rules) <= 16, fmt  # per-layer, per-expert names collapse into index groups
            assert {rename(rules, s): s for s in src if s in truth.values()} == truth
    prefixed = Mapping.from_pairs({k: "module." + k for k in tgt})
    rules = run_snippet(export_mapping(prefixed, "hf-key-mapping", [f"module.{k}" for k in tgt], list(tgt)).text,
                        "key_mapping")
    assert rules == {r"^module\.": ""}


def test_transforms_are_reported_not_dropped_by_regex_forms():
    mapping = Mapping.from_pairs({"a.weight": "x.weight", "b.weight": "b.weight"})
    mapping.set(Entry("c.weight", "c.weight", {"op": "in_channels"}))
    result = export_mapping(mapping, "hf-key-mapping", ["x.weight", "b.weight", "c.weight"], ["a.weight", "b.weight", "c.weight"])
    assert result.not_expressed == ["c.weight <- c.weight: transform in_channels has no regex form"]
    assert "# not expressed: c.weight" in result.text
    for rules, rename in hf_sets(result.text):
        assert rename(rules, "x.weight") == "a.weight"


def test_python_form_gives_what_apply_gives_transforms_included():
    torch.manual_seed(0)
    source = {"enc.conv.weight": torch.randn(4, 3, 3, 3), "enc.fc.weight": torch.randn(6, 8 * 36),
              "enc.fc.bias": torch.randn(6), "head.weight": torch.randn(10, 6), "head.bias": torch.randn(10),
              "proj.weight": torch.randn(5, 6), "c1d.weight": torch.randn(6, 5), "big.weight": torch.randn(7, 7)}
    target = {"conv.weight": torch.randn(4, 1, 3, 3), "fc.weight": torch.randn(6, 8 * 50), "fc.bias": torch.randn(6),
              "cls.weight": torch.randn(3, 6), "cls.bias": torch.randn(3), "proj.weight": torch.randn(5, 6, 1, 1),
              "lin.weight": torch.randn(5, 6), "small.weight": torch.randn(3, 9)}
    rows = {"op": "select_rows", "rows": [4, None, 0]}
    entries = [("conv.weight", "enc.conv.weight", {"op": "in_channels"}),
               ("fc.weight", "enc.fc.weight", {"op": "spp_grid", "levels": [1, 4, 9, 36], "bins": 36}),
               ("fc.bias", "enc.fc.bias", None), ("cls.weight", "head.weight", rows), ("cls.bias", "head.bias", rows),
               ("proj.weight", "proj.weight", {"op": "reshape"}),
               ("lin.weight", "c1d.weight", {"op": "transpose", "dims": [1, 0]}),
               ("small.weight", "big.weight", {"op": "pad"})]
    mapping = Mapping()
    for t, s, tr in entries:
        mapping.set(Entry(t, s, tr))
    remap = run_snippet(export_mapping(mapping, "python").text, "remap")
    with pytest.raises(ValueError, match="pass the target state dict"):
        remap(source)
    got = remap(source, {k: v.clone() for k, v in target.items()})
    apply_mapping(target, source, mapping)
    assert got.keys() == target.keys()
    for k in target:
        assert torch.equal(got[k], target[k]), k


def test_python_form_of_a_plain_rename_needs_no_target(mappings):
    name, mapping, source_keys, _ = next(m for m in mappings if "q_proj" in m[0])
    remap = run_snippet(export_mapping(mapping, "python").text, "remap")
    source = {k: k for k in source_keys}  # any values: a plain rename only moves them
    assert remap(source) == mapping.pairs()


def test_a_mapping_no_rename_rule_can_express_is_refused():
    mapping = Mapping.from_pairs({"a": "x", "b": "x"})
    with pytest.raises(MappingError, match="fills several targets"):
        export_mapping(mapping, "mmengine-revise-keys", ["x"], ["a", "b"])
    with pytest.raises(MappingError, match="unknown export format"):
        export_mapping(mapping, "onnx")


def test_cli_export_prints_the_snippet_and_what_it_could_not_express(tmp_path, capsys):
    path = tmp_path / "m.json"
    assert main(["map", "torchvision:alexnet", "spp_gui:alexnet_spp?num_classes=20", "-o", str(path),
                 "--strategy", "auto", "--adapt"]) == 0
    capsys.readouterr()
    assert main(["export", str(path), "--as", "mmengine-revise-keys"]) == 0
    out, err = capsys.readouterr()
    rules = run_snippet(out, "revise_keys")
    assert mmengine_rename(rules, "classifier.4.weight") == "classifier.4.weight"
    assert mmengine_rename(rules, "classifier.6.weight") != "classifier.6.weight"  # new head: kept off
    assert "not expressed: classifier.1.weight <- classifier.1.weight: transform spp_grid" in err
    assert main(["export", str(path), "--as", "python"]) == 0
    assert "def remap(" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "missing.json")]) == 2
    assert "mapping file not found" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["hf-key-mapping", "mmengine-revise-keys"])
def test_swapped_names_survive_rules_applied_in_turn(fmt):
    # q and k swapped, a prefix added to all: in-turn rules must not rename a key twice
    keys = ["blk.0.q.weight", "blk.0.k.weight", "blk.1.q.weight", "blk.1.k.weight", "norm.weight"]
    pairs = {"net.blk.0.k.weight": "blk.0.q.weight", "net.blk.0.q.weight": "blk.0.k.weight",
             "net.blk.1.k.weight": "blk.1.q.weight", "net.blk.1.q.weight": "blk.1.k.weight",
             "net.norm.weight": "norm.weight"}
    for rules, rename in rule_sets(fmt, export_mapping(Mapping.from_pairs(pairs), fmt, keys, list(pairs)).text):
        assert {rename(rules, s): s for s in keys} == pairs


def test_python_export_carries_a_chunk_of_a_fused_qkv():
    """One part of a fused qkv (auto's split across libraries) exports as plain torch code."""
    from spp_gui.core.transforms import apply_transform

    fused = torch.randn(12, 4)
    mapping = Mapping("src", "tgt")
    for i, name in enumerate("qkv"):
        mapping.set(Entry(f"{name}.weight", "qkv.weight", {"op": "chunk", "dim": 0, "chunks": 3, "index": i,
                                                           "transpose": i == 2}))
    namespace: dict = {}
    exec(compile(export_mapping(mapping, "python").text, "remap", "exec"), namespace)
    target = {"q.weight": torch.zeros(4, 4), "k.weight": torch.zeros(4, 4), "v.weight": torch.zeros(4, 4)}
    out = namespace["remap"]({"qkv.weight": fused}, target)
    for key, entry in mapping.entries.items():
        assert torch.equal(out[key], apply_transform(entry.transform, fused, target[key]))


def _joined() -> tuple[Mapping, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    source = {"q.weight": torch.randn(4, 4), "k.weight": torch.randn(4, 4), "v.weight": torch.randn(2, 4),
              "o.weight": torch.randn(4, 10), "conv.weight": torch.randn(4, 3, 3, 3)}
    source["k.weight"] = source["k.weight"].to(torch.bfloat16)  # sources of several dtypes join in the widest
    target = {"qkv.weight": torch.zeros(10, 4), "proj.weight": torch.zeros(4, 10), "stem.weight": torch.zeros(4, 1, 3, 3)}
    mapping = Mapping("src", "tgt")
    mapping.set(Entry.combined("qkv.weight", ["q.weight", "k.weight", "v.weight"], {"op": "concat", "dim": 0}))
    mapping.set(Entry("proj.weight", "o.weight"))
    mapping.set(Entry("stem.weight", "conv.weight", {"op": "in_channels"}))
    return mapping, source, target


def test_python_form_joins_several_sources_as_apply_does():
    mapping, source, target = _joined()
    text = export_mapping(mapping, "python").text
    assert "'qkv.weight': ('q.weight', 'k.weight', 'v.weight')," in text and "torch.cat" in text
    got = run_snippet(text, "remap")(source, {k: v.clone() for k, v in target.items()})
    apply_mapping(target, source, mapping)
    assert got.keys() == target.keys()
    for k in target:
        assert torch.equal(got[k].to(target[k].dtype), target[k]), k
    assert got["qkv.weight"].dtype == torch.float32


@pytest.mark.parametrize("fmt", ["hf-key-mapping", "mmengine-revise-keys"])
def test_regex_forms_say_they_cannot_join_sources(fmt):
    mapping, source, target = _joined()
    result = export_mapping(mapping, fmt, list(source), list(target))
    assert result.not_expressed[0] == ("qkv.weight <- q.weight + k.weight + v.weight: concat joins several sources; "
                                       "a rename rule cannot combine tensors")
    assert "# not expressed: qkv.weight <- q.weight + k.weight + v.weight" in result.text
    for rules, rename in rule_sets(fmt, result.text):
        assert rename(rules, "o.weight") == "proj.weight"
        assert all(rename(rules, s) not in target for s in ("q.weight", "k.weight", "v.weight"))
