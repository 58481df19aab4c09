"""A mapping file someone sent is untrusted data: reading or exporting it never runs its contents."""

from __future__ import annotations

import ast
import os

import pytest
import torch

from spp_gui.core.errors import MappingError
from spp_gui.core.export import FORMATS, export_mapping
from spp_gui.core.mapping import Entry, Mapping

EVIL = "\nimport os; os.system('touch MARKER')"


def _evil_mapping() -> Mapping:
    mapping = Mapping("x" + EVIL + "  #", "y\r" + EVIL, "ab" * 32)  # both lines would run
    mapping.set(Entry("t" + EVIL, "s" + EVIL))  # a plain rename, newline in both keys
    mapping.set(Entry("cr\rkey", "src\rkey"))  # a lone carriage return ends a line too
    mapping.set(Entry("u\u2028v\x00w", "fc'\\" + EVIL + "#"))
    mapping.set(Entry("head" + EVIL, "head.w", {"op": "select_rows", "rows": [1, None]}))
    return mapping


EXPECTED = {
    "python": ["FunctionDef:_select_rows", "Assign:MAPPING", "FunctionDef:remap"],
    "hf-key-mapping": ["Assign:key_mapping"],
    "mmengine-revise-keys": ["Assign:revise_keys"],
}


def _statements(text: str) -> list[str]:
    out = []
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef):
            out.append(f"FunctionDef:{node.name}")
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out.append(f"Assign:{node.targets[0].id}")
        else:
            out.append(type(node).__name__)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_snippets_carry_no_code_from_specs_or_keys(tmp_path, monkeypatch, fmt):
    monkeypatch.chdir(tmp_path)
    mapping = _evil_mapping()
    keys = [e.source for e in mapping]
    result = export_mapping(mapping, fmt, keys, list(mapping.entries))
    assert _statements(result.text) == EXPECTED[fmt]
    for line in result.text.splitlines():  # comments stay one line each, without control characters
        if line.lstrip().startswith("#"):
            assert line.isprintable(), line
    namespace: dict = {}
    exec(compile(result.text, "<export>", "exec"), namespace)  # noqa: S102 - the point of the test
    assert not (tmp_path / "MARKER").exists()
    assert "MARKER" in result.text  # the text is there, escaped, not dropped
    if fmt == "python":
        plain = {t: s for t, s in mapping.pairs().items()}
        assert namespace["MAPPING"] == plain
        source = {s: torch.full((2, 3), float(i)) for i, s in enumerate(plain.values())}
        target = {t: torch.zeros(2, 3) for t in plain}
        got = namespace["remap"](source, target)
        assert torch.equal(got["head" + EVIL][0], source["head.w"][1])
    else:
        assert result.not_expressed == [
            "head\\nimport os; os.system('touch MARKER') <- head.w: transform select_rows has no regex form"]


def test_export_refuses_transform_params_that_are_not_data():
    mapping = Mapping()
    mapping.set(Entry("a", "b", {"op": "transpose", "dims": [True, False]}))
    with pytest.raises(MappingError, match="dims"):
        export_mapping(mapping, "python")
    mapping.set(Entry("a", "b", {"op": "x" + EVIL}))
    with pytest.raises(MappingError, match="unknown transform"):
        export_mapping(mapping, "hf-key-mapping")
    assert not os.path.exists("MARKER")
