"""A mapping file someone sent is untrusted data: reading or exporting it never runs its contents."""

from __future__ import annotations

import ast
import json
import math
import os
import threading

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


# ---------------------------------------------------------------------------------------------
# reading: a file is data, every problem one MappingError naming the file and what is wrong


def _doc(**entry) -> dict:
    return {"format": "spp-gui-mapping", "version": 1, "source": {"spec": "a.pth", "sha256": "ab" * 32},
            "target": {"spec": "torchvision:alexnet"},
            "entries": [{"target": "fc.w", "source": "fc.w", "transform": None, **entry}]}


def _with(**top) -> dict:
    return {**_doc(), **top}


BAD_DOCS = [
    ("source-list", _with(source=["a.pth"]), "'source' must be an object"),
    ("source-str", _with(source="a.pth"), "'source' must be an object"),
    ("target-int", _with(target=3), "'target' must be an object"),
    ("spec-int", _with(source={"spec": 5}), "'source.spec' must be a string"),
    ("spec-long", _with(target={"spec": "x" * 5000}), "'target.spec' is 5000 characters"),
    ("spec-newline", _with(source={"spec": "a.pth\nimport os"}), "'source.spec' contains a control character"),
    ("sha-int", _with(source={"spec": "a.pth", "sha256": 12}), "'source.sha256' must be 64 hex digits"),
    ("sha-list", _with(source={"spec": "a.pth", "sha256": ["ab"]}), "'source.sha256' must be 64 hex digits"),
    ("version-bool", _with(version=True), "bad version True"),
    ("entries-obj", _with(entries={"a": "b"}), "'entries' must be a list"),
    ("entry-list", _with(entries=[["fc.w", "fc.w"]]), "entry #1 needs string 'target' and 'source'"),
    ("key-long", _doc(source="k" * 5000), "'source' is 5000 characters"),
    ("conf-bool", _doc(confidence=True), "confidence must be a number in [0, 1], got True"),
    ("conf-nan", _doc(confidence=math.nan), "confidence must be a number in [0, 1]"),
    ("conf-huge", _doc(confidence=10**4000), "confidence must be a number in [0, 1], got a 4001-digit number"),
    ("version-huge", _with(version=10**4000), "newer than this spp_gui"),
    ("spec-zero", _with(source={"spec": 0}), "'source.spec' must be a string"),
    ("origin-list", _doc(origin=[[["deep"]]]), "'origin' must be a string"),
    ("reason-int", _doc(reason=5), "'reason' must be a string"),
    ("transform-list", _doc(transform=["slice"]), "transform must be an object"),
    ("transform-op", _doc(transform={"op": ["slice"]}), "unknown transform ['slice']"),
    ("rows-missing", _doc(transform={"op": "select_rows"}), "select_rows: needs 'rows'"),
    ("bins-missing", _doc(transform={"op": "spp_grid", "levels": [1, 4]}), "spp_grid: 'bins'"),
    ("levels-missing", _doc(transform={"op": "spp_grid", "bins": 4}), "spp_grid: needs 'levels'"),
    ("dims-bools", _doc(transform={"op": "transpose", "dims": [True, False]}), "transpose: 'dims' must be"),
    ("extra-param", _doc(transform={"op": "slice", "dims": [0]}), "slice: takes no parameter 'dims'"),
]


@pytest.mark.parametrize("doc, match", [(d, m) for _, d, m in BAD_DOCS], ids=[n for n, _, _ in BAD_DOCS])
def test_each_malformed_field_is_one_mapping_error_naming_file_and_field(tmp_path, doc, match):
    path = tmp_path / "sent.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(MappingError) as info:
        Mapping.load(path)
    message = str(info.value)
    assert str(path) in message and match in message, message
    if doc["entries"] != _doc()["entries"] and isinstance(doc["entries"], list) and isinstance(doc["entries"][0], dict):
        assert "entry 'fc.w'" in message, message  # which entry


@pytest.mark.parametrize("text, match", [
    ('{"format": "spp-gui-mapping", "version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested"),
    ('{"format": "spp-gui-mapping", "version": 1, "x": ' + "[" * 1_500 + "]" * 1_500 + "}", "nested"),
    ('{"format": "spp-gui-mapping", "version": ' + "1" * 5000 + "}", "4,300 digits"),
    ('{"format": "spp-gui-mapping", "version": 1, "entries": [{"target": "a", "source": "b", "confidence": '
     + "9" * 4400 + "}]}", "4,300 digits"),
])
def test_json_bombs_are_mapping_errors(tmp_path, text, match):
    path = tmp_path / "bomb.json"
    path.write_text(text)
    with pytest.raises(MappingError, match=match) as info:
        Mapping.load(path)
    assert str(path) in str(info.value)


def test_invalid_utf8_is_a_mapping_error(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"format": "spp-gui-mapping", "version": 1, "source": {"spec": "caf\xe9"}}')
    with pytest.raises(MappingError, match="not UTF-8"):
        Mapping.load(path)


def _load_in_thread(path) -> tuple[threading.Thread, list]:
    result: list = []

    def run():
        try:
            Mapping.load(path)
            result.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    return thread, result


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "m.json"
    os.mkfifo(fifo)
    thread, result = _load_in_thread(fifo)
    if thread.is_alive():  # blocked in open(): release it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail("Mapping.load blocked on a FIFO")
    assert isinstance(result[0], MappingError) and "not a regular file" in str(result[0]), result
    assert str(fifo) in str(result[0])


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused_before_reading():
    thread, result = _load_in_thread("/dev/zero")
    assert not thread.is_alive()
    assert isinstance(result[0], MappingError) and "/dev/zero is not a regular file" in str(result[0]), result


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(MappingError, match="not a regular file"):
        Mapping.load(tmp_path)


def test_an_oversized_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as fh:
        fh.truncate(300 * 2**20)  # sparse: costs no disk
    with pytest.raises(MappingError, match="at most 256 MiB") as info:
        Mapping.load(path)
    assert str(path) in str(info.value)


WEIRD = [None, True, False, -1, 0, 2, 1.5, math.inf, 10**4000, "", "s", "a\nb", "x" * 5000, [], [1], {},
         {"op": "slice"},
         [[[[[[["deep"]]]]]]]]


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _replaced(doc, path, new):
    if not path:
        return new
    doc = json.loads(json.dumps(doc))
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = new
    return doc


def test_any_value_anywhere_loads_or_is_a_mapping_error(tmp_path):
    base = _doc(confidence=0.5, origin="auto", reason="same name")
    base["entries"].append({"target": "head.w", "source": "fc.w", "transform": {"op": "select_rows", "rows": [0, None]}})
    base["entries"].append({"target": "cls.w", "source": "fc.w",
                            "transform": {"op": "spp_grid", "levels": [1, 4], "bins": 4}})
    path = tmp_path / "m.json"
    for where in list(_paths(base)):
        for new in WEIRD:
            path.write_text(json.dumps(_replaced(base, where, new)))
            try:
                mapping = Mapping.load(path)
            except MappingError as exc:
                assert str(path) in str(exc) and "\n" not in str(exc), (where, new)
                assert len(str(exc)) < 1000, (where, new)
                continue
            mapping.to_json()
            mapping.copy()
            assert Mapping.from_dict(json.loads(mapping.to_json())) == mapping
