"""Many-to-one entries: several sources joined into one target (mapping format version 2)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from spp_gui.core.apply import apply_mapping, apply_to_file, mapping_sha256, output_dtypes, write_safetensors
from spp_gui.core.combine import check_combine, concat_dim
from spp_gui.core.errors import MappingError
from spp_gui.core.mapping import ADAPTED, INVALID, Entry, Mapping
from spp_gui.core.sources import load_source
from spp_gui.core.tensors import TensorInfo

CONCAT = {"op": "concat", "dim": 0}


def _table(dtype: str = "float32", **shapes):
    return {k: TensorInfo(k, s, dtype) for k, s in shapes.items()}


def _qkv_mapping() -> Mapping:
    mapping = Mapping("src.safetensors", "target")
    mapping.set(Entry.combined("qkv.weight", ["q.weight", "k.weight", "v.weight"], dict(CONCAT)))
    mapping.set(Entry.combined("qkv.bias", ["q.bias", "k.bias", "v.bias"], dict(CONCAT)))
    return mapping


def _qkv_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in "qkv":
        out[f"{name}.weight"] = torch.randn(4, 4, generator=g)
        out[f"{name}.bias"] = torch.randn(4, generator=g)
    return out


def test_entry_keeps_first_source_and_lists_all():
    entry = Entry.combined("qkv.weight", ["q", "k", "v"], dict(CONCAT))
    assert entry.source == "q" and entry.sources == ("q", "k", "v") and entry.many
    entry.sources = ["v", "q"]
    assert (entry.source, entry.more_sources) == ("v", ("q",))
    plain = Entry("a", "b")
    assert plain.sources == ("b",) and not plain.many
    twin = _qkv_mapping().copy()
    assert twin == _qkv_mapping()
    twin.entries["qkv.weight"].transform["dim"] = 1  # copy() is deep: the original keeps its op
    assert _qkv_mapping().entries["qkv.weight"].transform["dim"] == 0


def test_version_2_is_written_only_when_an_entry_has_several_sources(tmp_path):
    mapping = _qkv_mapping()
    mapping.set(Entry("out.weight", "o.weight", None, "auto:exact", 1.0, "same name"))
    path = tmp_path / "m.json"
    mapping.save(path)
    data = json.loads(path.read_text())
    assert data["version"] == 2
    assert data["entries"][0] == {"target": "qkv.weight", "sources": ["q.weight", "k.weight", "v.weight"],
                                  "transform": CONCAT, "origin": "manual", "confidence": None}
    assert "sources" not in data["entries"][2] and data["entries"][2]["source"] == "o.weight"
    loaded = Mapping.load(path)
    assert loaded == mapping and loaded.entries["qkv.bias"].sources == ("q.bias", "k.bias", "v.bias")

    # without a many-to-one entry: version 1, exactly the text version 1 wrote (its fields in order)
    mapping.remove("qkv.weight")
    mapping.remove("qkv.bias")
    v1 = {"format": "spp-gui-mapping", "version": 1, "source": {"spec": "src.safetensors"},
          "target": {"spec": "target"},
          "entries": [{"target": "out.weight", "source": "o.weight", "transform": None, "origin": "auto:exact",
                       "confidence": 1.0, "reason": "same name"}]}
    assert mapping.to_json() == json.dumps(v1, indent=1) + "\n"
    assert mapping.version == 1


@pytest.mark.parametrize(("entry", "message"), [
    ({"target": "t", "sources": "q"}, "'sources' must be a list"),
    ({"target": "t", "sources": ["q"], "transform": CONCAT}, "lists 1 keys; it takes 2 to"),
    ({"target": "t", "sources": [f"s{i}" for i in range(300)], "transform": CONCAT}, "lists 300 keys"),
    ({"target": "t", "sources": ["q", "k", "q"], "transform": CONCAT}, "lists 'q' twice"),
    ({"target": "t", "sources": ["q", 7], "transform": CONCAT}, "'sources' #2 must be a string"),
    ({"target": "t", "sources": ["q", "k"], "transform": None}, "needs a combining transform"),
    ({"target": "t", "sources": ["q", "k"], "transform": {"op": "slice"}}, "needs a combining transform"),
    ({"target": "t", "sources": ["q", "k"], "transform": {"op": "concat", "dim": "x"}}, "'dim' must be an integer"),
    ({"target": "t", "sources": ["q", "k"], "transform": {"op": "concat", "axis": 0}}, "takes no parameter 'axis'"),
    ({"target": "t", "source": "q", "transform": CONCAT}, "combines several sources"),
    ({"target": "t", "source": "q", "sources": ["q", "k"], "transform": CONCAT}, "both 'source' and 'sources'"),
])
def test_untrusted_sources_fields_are_refused_with_a_reason(tmp_path, entry, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": "spp-gui-mapping", "version": 2, "entries": [entry]}))
    with pytest.raises(MappingError, match=message) as caught:
        Mapping.load(path)
    assert str(path) in str(caught.value)


def test_a_version_1_file_with_several_sources_says_it_needs_version_2(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "spp-gui-mapping", "version": 1,
                                "entries": [{"target": "t", "sources": ["q", "k"], "transform": CONCAT}]}))
    with pytest.raises(MappingError, match=r'needs "version": 2 \(entries with several sources'):
        Mapping.load(path)
    path.write_text(json.dumps({"format": "spp-gui-mapping", "version": 3, "entries": []}))
    with pytest.raises(MappingError, match=r"version 3, newer than this spp_gui reads \(up to 2: entries with several"):
        Mapping.load(path)


def test_status_counts_every_source_as_used_and_checks_the_shapes():
    source = _table(q=(4, 8), k=(4, 8), v=(2, 8), spare=(3,))
    target = _table(qkv=(10, 8), bad=(9, 8))
    mapping = Mapping()
    mapping.set(Entry.combined("qkv", ["q", "k", "v"], dict(CONCAT)))
    status = mapping.status(source, target)
    assert status.target["qkv"] == ADAPTED
    assert status.source_used_by == {"q": ["qkv"], "k": ["qkv"], "v": ["qkv"], "spare": []}
    assert mapping.share(source, target) == pytest.approx(80 / (80 + 72))

    mapping.set(Entry.combined("bad", ["q", "v"], dict(CONCAT)))
    assert mapping.status(source, target).target["bad"] == INVALID
    with pytest.raises(MappingError, match=r"'q' \(4, 8\) \+ 'v' \(2, 8\) -> 'bad' \(9, 8\): concat: the sources add "
                                           r"up to 4 \+ 2 = 6 along dim 0; the target has 9"):
        mapping.validate(source, target)
    mapping.set(Entry.combined("bad", ["q", "ghost"], dict(CONCAT)))
    assert "source has no key 'ghost' (one of 2 sources" in mapping.status(source, target).problems["bad"]
    mapping.set(Entry("bad", "q", dict(CONCAT)))  # a combining op needs several
    assert "combines several sources" in mapping.status(source, target).problems["bad"]


def test_concat_checks_every_dimension():
    assert check_combine(CONCAT, [(4, 8), (4, 7)], (8, 8)) == \
        "concat: source #2 (4, 7) differs from the target (8, 8) outside dim 0"
    assert "has 1 dimensions" in check_combine(CONCAT, [(4, 8), (4,)], (8, 8))
    assert check_combine({"op": "concat", "dim": -1}, [(8, 3), (8, 5)], (8, 8)) is None
    assert "out of range" in check_combine({"op": "concat", "dim": 2}, [(8, 3), (8, 5)], (8, 8))
    assert concat_dim([(8, 3), (8, 5)], (8, 8)) == 1 and concat_dim([(3,), (3,)], (7,)) is None


def test_apply_mapping_joins_the_sources_in_order():
    src = _qkv_state()
    target = {"qkv.weight": torch.zeros(12, 4), "qkv.bias": torch.zeros(12)}
    report = apply_mapping(target, src, _qkv_mapping())
    assert torch.equal(target["qkv.weight"], torch.cat([src["q.weight"], src["k.weight"], src["v.weight"]]))
    assert torch.equal(target["qkv.bias"], torch.cat([src["q.bias"], src["k.bias"], src["v.bias"]]))
    assert report.unused_source == [] and report.counts()["adapted"] == 2 and report.share == 1.0
    assert report.combined["qkv.bias"] == ["q.bias", "k.bias", "v.bias"]
    assert report.to_dict()["keys"]["qkv.weight"]["sources"] == ["q.weight", "k.weight", "v.weight"]
    assert "2 adapted, 2 of them joined from several sources)" in report.summary()


def test_every_source_is_refused_a_lossy_cast():
    src = _qkv_state()
    src["k.bias"] = torch.arange(4)  # an integer source joins floats: promoted, then fits a float target
    target = {"qkv.weight": torch.zeros(12, 4), "qkv.bias": torch.zeros(12)}
    apply_mapping(target, src, _qkv_mapping())
    assert torch.equal(target["qkv.bias"][4:8], torch.arange(4.0))
    target["qkv.bias"] = torch.zeros(12, dtype=torch.int64)
    src = _qkv_state()
    src["q.bias"] = torch.arange(4)
    with pytest.raises(MappingError, match="'k.bias' is float32 but 'qkv.bias' is int64: refusing a lossy cast"):
        apply_mapping(target, src, _qkv_mapping())


def test_keep_dtype_writes_the_dtype_that_holds_every_source():
    source = _table(q=(2,), k=(2,))
    source["k"] = TensorInfo("k", (2,), "bfloat16")
    target = _table(qk=(4,))
    mapping = Mapping(entries={"qk": Entry.combined("qk", ["q", "k"], dict(CONCAT))})
    assert output_dtypes(mapping, source, target, "keep") == {"qk": "float32"}
    source["q"] = TensorInfo("q", (2,), "bfloat16")
    assert output_dtypes(mapping, source, target, "keep") == {"qk": "bfloat16"}


class Split(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.o = nn.Linear(12, 4)


NET = """import torch.nn as nn


class Fused(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(4, 12)
        self.proj = nn.Linear(12, 4)


class FusedTied(Fused):  # two names of one tensor: apply_to_file takes the in-memory path
    def __init__(self):
        super().__init__()
        self.again = nn.Linear(12, 4)
        self.again.weight = self.proj.weight
"""


@pytest.mark.parametrize("cls", ["Fused", "FusedTied"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_apply_to_file_writes_the_joined_tensor(tmp_path, cls, suffix, dtype):
    """Streamed (Fused) and in memory (FusedTied: tied target tensors), both formats, with and without a cast."""
    net = tmp_path / "net.py"
    net.write_text(NET)
    torch.manual_seed(0)
    split = Split()
    src_path = tmp_path / "split.safetensors"
    write_safetensors(split.state_dict(), src_path)
    mapping = _qkv_mapping()
    mapping.source_spec, mapping.target_spec = str(src_path), f"{net}:{cls}"
    mapping.set(Entry("proj.weight", "o.weight"))
    mapping.set(Entry("proj.bias", "o.bias"))
    if cls == "FusedTied":
        mapping.set(Entry("again.bias", "o.bias"))
    from spp_gui.core.trust import trust_file

    trust_file(net)
    out = tmp_path / f"out{suffix}"
    report = apply_to_file(mapping, out, dtype=dtype)
    with load_source(str(out)) as written:
        want = torch.cat([split.q.weight, split.k.weight, split.v.weight]).detach()
        got = written.read("qkv.weight")
        if dtype is None:
            assert torch.equal(got, want)
        else:
            assert got.dtype == torch.bfloat16 and torch.equal(got, want.to(torch.bfloat16))
            # each of the 6 sources and the proj tensors (the tied weight once)
            assert report.casts == {"float32 -> bfloat16": 8 + (cls == "FusedTied")}
        assert torch.equal(written.read("proj.weight"), split.o.weight.detach().to(got.dtype))
    assert report.unused_source == [] and report.share == 1.0


def test_mapping_sha256_tells_the_sources_apart():
    one, two = _qkv_mapping(), _qkv_mapping()
    two.entries["qkv.weight"].sources = ["k.weight", "q.weight", "v.weight"]
    assert mapping_sha256(one) != mapping_sha256(two)


def test_the_cli_status_table_names_every_source(capsys):
    from spp_gui.cli.map import _row, print_status_table

    src = _table(**{f"{n}.{p}": (4, 4) if p == "weight" else (4,) for n in "qkv" for p in ("weight", "bias")})
    tgt = _table(**{"qkv.weight": (12, 4), "qkv.bias": (12,)})
    mapping = _qkv_mapping()
    print_status_table(mapping, src, tgt)
    out = capsys.readouterr().out
    assert "<- q.weight + k.weight + v.weight" in out and "<- q.bias + k.bias + v.bias" in out
    row = _row(mapping, mapping.status(src, tgt), tgt, "qkv.bias")
    assert row["source"] == "q.bias" and row["sources"] == ["q.bias", "k.bias", "v.bias"]


class _SeparateBlock(nn.Module):
    def __init__(self, d: int = 8, parts: str = "qkv") -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        for p in parts:
            setattr(self, p, nn.Linear(d, d))
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        return x + self.proj(torch.softmax(q @ k.transpose(-1, -2), -1) @ v)


class _FusedBlock(nn.Module):
    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        return x + self.proj(torch.softmax(q @ k.transpose(-1, -2), -1) @ v)


class _Net(nn.Module):
    def __init__(self, block, depth: int = 2, **kw) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(block(**kw) for _ in range(depth))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def test_auto_joins_separate_q_k_v_into_a_fused_qkv_and_the_models_agree():
    from spp_gui.core.strategies import suggest

    torch.manual_seed(0)
    source, target = _Net(_SeparateBlock).eval(), _Net(_FusedBlock).eval()
    result = suggest(source, target, "auto")
    mapping = result.to_mapping()
    joined = {e.target: e for e in mapping if e.many}
    assert set(joined) == {f"blocks.{i}.qkv.{p}" for i in range(2) for p in ("weight", "bias")}
    entry = joined["blocks.1.qkv.weight"]
    assert entry.sources == ("blocks.1.q.weight", "blocks.1.k.weight", "blocks.1.v.weight")
    assert entry.transform == {"op": "concat", "dim": 0} and "joined into fused 'blocks.1.qkv'" in entry.reason
    assert len(mapping) == len(target.state_dict()) and mapping.version == 2 and not mapping.candidates
    apply_mapping(target, source.state_dict(), mapping)
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        assert torch.allclose(target(x), source(x), atol=1e-6)


def test_a_fused_qkv_missing_a_part_in_the_source_is_not_joined():
    from spp_gui.core.strategies import suggest

    source, target = _Net(_SeparateBlock, parts="qk").eval(), _Net(_FusedBlock).eval()
    mapping = suggest(source, target, "auto").to_mapping()
    assert not any(e.many for e in mapping) and not any(".qkv." in e.target for e in mapping)
