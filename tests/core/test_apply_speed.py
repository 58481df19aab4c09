"""apply_to_file's streaming path: every output tensor bit-exact against torch.load + the mapping.

Sources: .pth (stored and deflated zip), .safetensors and a sharded safetensors folder; outputs:
.safetensors and .pth; entries copied verbatim, cast, transformed and left unmapped, mixed.
The speed itself is measured by benchmarks/io_bench.py.
"""

from __future__ import annotations

import errno
import json
import os
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from spp_gui import build_model, trust_code
from spp_gui.core import apply as apply_module
from spp_gui.core import sources as sources_module
from spp_gui.core.apply import apply_to_file, format_progress
from spp_gui.core.errors import Cancelled, SourceError
from spp_gui.core.mapping import Entry, Mapping
from spp_gui.core.sources import load_source
from spp_gui.core.steps import run_steps
from spp_gui.core.transforms import apply_transform

NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, tied=False):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(32, 16)
        self.proj = nn.Linear(16, 12)
        self.rows = nn.Linear(6, 5)
        self.k = nn.Linear(6, 4, bias=False)
        self.lowp = nn.Parameter(torch.randn(7, 5).to(torch.bfloat16))
        self.register_buffer("table", torch.arange(24, dtype=torch.float64).reshape(4, 6))
        self.register_buffer("empty", torch.zeros(0, 3))
        self.register_buffer("scale", torch.tensor(2.5))
        self.head = nn.Linear(12, 3)
        if tied:
            self.tail = nn.Linear(12, 3)
            self.tail.weight = self.head.weight
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent(NET))
    trust_code(path)
    return f"{path}:Net"


def source_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {
        "features.0.weight": torch.randn(8, 1, 3, 3, generator=g),  # in_channels 1 -> 3
        "features.0.bias": torch.randn(8, generator=g),
        "norm.weight": torch.randn(8, generator=g).double(),  # float64 -> float32 cast
        "norm.bias": torch.randn(8, generator=g).half(),  # float16 -> float32 cast
        "norm.running_mean": torch.randn(8, generator=g),
        "norm.running_var": torch.rand(8, generator=g),
        "norm.num_batches_tracked": torch.tensor(11, dtype=torch.int32),  # int32 -> int64
        "fc.weight": torch.randn(40, 36, generator=g),  # slice to 16 x 32
        "fc.bias": torch.randn(16, generator=g),
        "proj.weight": torch.randn(16, 12, generator=g),  # transpose
        "proj.bias": torch.randn(3, 4, generator=g),  # reshape
        "rows.weight": torch.randn(9, 6, generator=g),  # select_rows with a kept row
        "rows.bias": torch.randn(4, generator=g),  # pad 4 -> 5: keeps the init
        "qkv.weight": torch.randn(12, 6, generator=g),  # chunk: the k part
        "lowp": torch.randn(7, 5, generator=g).to(torch.bfloat16),
        "table": torch.randn(4, 6, generator=g).double(),
        "empty": torch.zeros(0, 3),
        "scale": torch.tensor(-1.25),
        "unused": torch.randn(5, generator=g),
    }


def mapping_for(spec: str, source: str) -> Mapping:
    m = Mapping(source_spec=source, target_spec=spec)
    for target, src, transform in [
        ("conv.weight", "features.0.weight", {"op": "in_channels"}), ("conv.bias", "features.0.bias", None),
        ("bn.weight", "norm.weight", None), ("bn.bias", "norm.bias", None),
        ("bn.running_mean", "norm.running_mean", None), ("bn.running_var", "norm.running_var", None),
        ("bn.num_batches_tracked", "norm.num_batches_tracked", None),
        ("fc.weight", "fc.weight", {"op": "slice"}), ("fc.bias", "fc.bias", None),
        ("proj.weight", "proj.weight", {"op": "transpose"}), ("proj.bias", "proj.bias", {"op": "reshape"}),
        ("rows.weight", "rows.weight", {"op": "select_rows", "rows": [8, None, 0, 3, 3]}),
        ("rows.bias", "rows.bias", {"op": "pad"}),
        ("k.weight", "qkv.weight", {"op": "chunk", "dim": 0, "chunks": 3, "index": 1}),
        ("lowp", "lowp", None), ("table", "table", None), ("empty", "empty", None), ("scale", "scale", None),
    ]:
        m.entries[target] = Entry(target, src, transform)
    return m  # head.* stays unmapped


def expected(spec: str, state: dict[str, torch.Tensor], mapping: Mapping, seed: int = 0) -> dict[str, torch.Tensor]:
    """What torch.load + the mapping gives: the target built with the seed, each entry copied in."""
    model = build_model(spec, device="cpu", seed=seed)
    target = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for entry in mapping:
            dest = target[entry.target]
            dest.copy_(apply_transform(entry.transform, state[entry.source], dest.detach()))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def bits(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def assert_bit_exact(out_path, want: dict[str, torch.Tensor]) -> None:
    got = load_file(out_path) if str(out_path).endswith(".safetensors") else torch.load(out_path, weights_only=True)
    assert list(got) == list(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        assert bits(got[key]) == bits(value), key


def write_source(tmp_path, kind: str, state: dict[str, torch.Tensor]) -> str:
    if kind == "pth":
        torch.save(state, tmp_path / "src.pth")
        return str(tmp_path / "src.pth")
    if kind == "pth-deflated":
        torch.save(state, tmp_path / "stored.pth")
        with zipfile.ZipFile(tmp_path / "stored.pth") as zin, \
                zipfile.ZipFile(tmp_path / "src.pth", "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                zout.writestr(info.filename, zin.read(info.filename))
        return str(tmp_path / "src.pth")
    if kind == "safetensors":
        save_file(state, tmp_path / "src.safetensors")
        return str(tmp_path / "src.safetensors")
    if kind == "sharded":
        folder = tmp_path / "sharded"
        folder.mkdir()
        keys = list(state)
        shards = {"a.safetensors": keys[: len(keys) // 2], "b.safetensors": keys[len(keys) // 2:]}
        for name, part in shards.items():
            save_file({k: state[k] for k in part}, folder / name)
        weight_map = {k: name for name, part in shards.items() for k in part}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
        return str(folder)
    raise AssertionError(kind)


SOURCES = ["pth", "pth-deflated", "safetensors", "sharded"]
OUTPUTS = [".safetensors", ".pth"]


@pytest.mark.parametrize("out_suffix", OUTPUTS)
@pytest.mark.parametrize("kind", SOURCES)
def test_streamed_apply_is_bit_exact(tmp_path, spec, kind, out_suffix):
    state = source_state()
    source = write_source(tmp_path, kind, state)
    mapping = mapping_for(spec, source)
    out = tmp_path / f"out{out_suffix}"
    seen = []
    report = apply_to_file(mapping, out, seed=3, progress=lambda *a: seen.append(a))
    assert_bit_exact(out, expected(spec, state, mapping, seed=3))
    assert report.status["head.weight"] == "unmapped" and report.status["fc.weight"] == "adapted"
    assert seen[-1][0] == seen[-1][1] > 0 and seen[-1][2] == ""
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))
    assert all(done <= total for done, total, _ in seen)
    with load_source(out) as written:  # spp_gui reads its own output, CRCs and all
        assert set(written.tensors) == set(expected(spec, state, mapping, seed=3))


@pytest.mark.parametrize("out_suffix", OUTPUTS)
@pytest.mark.parametrize("kind", ["pth", "safetensors"])
def test_streamed_output_equals_the_in_memory_one(tmp_path, spec, kind, out_suffix):
    """Same report; a safetensors output is the same file byte for byte, a .pth one the same archive."""
    source = write_source(tmp_path, kind, source_state())
    mapping = mapping_for(spec, source)
    streamed = apply_to_file(mapping, tmp_path / f"new{out_suffix}", seed=1)
    with load_source(source) as src:
        in_memory = run_steps(apply_module._in_memory_steps(mapping, src, spec, 1, tmp_path / f"old{out_suffix}"))
    assert streamed.to_dict() == in_memory.to_dict()
    new, old = (tmp_path / f"new{out_suffix}").read_bytes(), (tmp_path / f"old{out_suffix}").read_bytes()
    if out_suffix == ".safetensors":
        assert new == old
    else:
        with zipfile.ZipFile(tmp_path / "new.pth") as a, zipfile.ZipFile(tmp_path / "old.pth") as b:
            assert a.testzip() is None
            assert [(i.filename, i.header_offset, i.file_size, i.CRC) for i in a.infolist()][:-1] == \
                   [(i.filename, i.header_offset, i.file_size, i.CRC) for i in b.infolist()][:-1]
            assert a.read("archive/data.pkl") == b.read("archive/data.pkl")
        assert len(new) == len(old)


def test_all_exact_mapping_never_builds_the_target_for_real(tmp_path, spec, monkeypatch):
    target = build_model(spec, seed=0).state_dict()
    save_file({k: v.contiguous() for k, v in target.items()}, tmp_path / "same.safetensors")
    mapping = Mapping(source_spec=str(tmp_path / "same.safetensors"), target_spec=spec,
                      entries={k: Entry(k, k) for k in target})
    real_builds = []
    original = apply_module.build_model
    monkeypatch.setattr(apply_module, "build_model",
                        lambda s, device="cpu", **kw: (real_builds.append(device) if device != "meta" else None)
                        or original(s, device=device, **kw))
    apply_to_file(mapping, tmp_path / "out.safetensors")
    assert real_builds == []
    assert_bit_exact(tmp_path / "out.safetensors", target)


def test_tied_target_goes_the_in_memory_way(tmp_path, spec):
    state = source_state()
    source = write_source(tmp_path, "pth", state)
    tied = spec + "?tied=true"
    mapping = mapping_for(tied, source)
    mapping.entries["head.weight"] = Entry("head.weight", "proj.weight", {"op": "slice"})
    mapping.entries["head.bias"] = Entry("head.bias", "fc.bias", {"op": "slice"})
    apply_to_file(mapping, tmp_path / "out.safetensors")
    assert_bit_exact(tmp_path / "out.safetensors", expected(tied, state, mapping))


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
@pytest.mark.parametrize("copy", ["buffered", "kernel", "exdev"])
def test_small_chunks_and_every_way_of_copying(tmp_path, spec, kind, copy, monkeypatch):
    """Chunks smaller than a tensor split tensors and zip entries; copy_file_range, where used, falls back."""
    monkeypatch.setattr(sources_module, "COPY_CHUNK", 100)
    monkeypatch.setattr(sources_module, "COPY_STEP", 64)
    monkeypatch.setattr(sources_module, "READ_GAP", 0)
    monkeypatch.setattr(sources_module, "USE_KERNEL_COPY", copy != "buffered")
    if copy == "exdev":
        def cross_device(*args):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(os, "copy_file_range", cross_device, raising=False)
    state = source_state()
    source = write_source(tmp_path, kind, state)
    mapping = mapping_for(spec, source)
    for out in ("out.safetensors", "out.pth"):
        apply_to_file(mapping, tmp_path / out)
        assert_bit_exact(tmp_path / out, expected(spec, state, mapping))


def test_views_and_shared_storages_in_the_source(tmp_path, spec):
    base = torch.randn(40, 36)
    state = source_state()
    state["fc.weight"] = base
    state["fc.bias"] = base[2, 4:20]  # a view inside the same storage: copied from the middle of its entry
    state["proj.weight"] = torch.randn(16, 12).t()  # not contiguous: read and made, not copied
    mapping = mapping_for(spec, write_source(tmp_path, "pth", state))
    mapping.entries["proj.weight"] = Entry("proj.weight", "proj.weight")
    for out in ("out.safetensors", "out.pth"):
        apply_to_file(mapping, tmp_path / out)
        assert_bit_exact(tmp_path / out, expected(spec, state, mapping))


def test_many_small_tensors(tmp_path):
    net = tmp_path / "many.py"
    net.write_text(textwrap.dedent("""
        import torch
        class Many(torch.nn.Module):
            def __init__(self, n=2000):
                super().__init__()
                self.p = torch.nn.ParameterList(torch.nn.Parameter(torch.zeros(3 + i % 5)) for i in range(n))
    """))
    trust_code(net)
    spec = f"{net}:Many"
    state = {f"p.{i}": torch.randn(3 + i % 5) for i in range(2000)}
    torch.save(state, tmp_path / "many.pth")
    mapping = Mapping(source_spec=str(tmp_path / "many.pth"), target_spec=spec,
                      entries={k: Entry(k, k) for k in state})
    for out in ("out.safetensors", "out.pth"):
        apply_to_file(mapping, tmp_path / out)
        assert_bit_exact(tmp_path / out, state)


def test_zip64_records_read_back(tmp_path, spec, monkeypatch):
    monkeypatch.setattr(apply_module, "ZIP64_LIMIT", 1024)  # every later record and the directory in zip64 form
    state = source_state()
    mapping = mapping_for(spec, write_source(tmp_path, "safetensors", state))
    apply_to_file(mapping, tmp_path / "out.pth")
    with zipfile.ZipFile(tmp_path / "out.pth") as zf:
        assert zf.testzip() is None
    assert_bit_exact(tmp_path / "out.pth", expected(spec, state, mapping))
    with load_source(tmp_path / "out.pth") as src:
        assert torch.equal(src.read("fc.bias"), state["fc.bias"])


def test_corrupt_entry_is_refused_and_nothing_written(tmp_path, spec):
    state = source_state()
    source = write_source(tmp_path, "pth", state)
    with zipfile.ZipFile(source) as zf:
        info = zf.getinfo(next(n for n in zf.namelist() if n.endswith("data/8")))  # fc.bias, copied verbatim
    raw = bytearray(Path(source).read_bytes())
    with open(source, "rb") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(fh.read(2), "little"), int.from_bytes(fh.read(2), "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + 5] ^= 0x40
    Path(source).write_bytes(bytes(raw))
    mapping = mapping_for(spec, source)
    (tmp_path / "out.safetensors").write_bytes(b"previous")
    with pytest.raises(SourceError, match=r"'fc.bias' is corrupt \(CRC mismatch\)"):
        apply_to_file(mapping, tmp_path / "out.safetensors")
    assert (tmp_path / "out.safetensors").read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_cancel_leaves_the_output_as_it_was(tmp_path, spec, monkeypatch):
    monkeypatch.setattr(sources_module, "COPY_CHUNK", 256)
    mapping = mapping_for(spec, write_source(tmp_path, "pth", source_state()))
    calls = []
    with pytest.raises(Cancelled, match="bytes"):
        apply_to_file(mapping, tmp_path / "out.pth", progress=lambda *a: calls.append(a),
                      cancelled=lambda: len(calls) >= 2)
    assert not (tmp_path / "out.pth").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_source_changed_after_listing_is_refused(tmp_path, spec):
    source = write_source(tmp_path, "safetensors", source_state())
    src = load_source(source)
    with open(source, "ab") as fh:
        fh.write(b"\0" * 8)
    with pytest.raises(SourceError, match="changed after it was listed"):
        apply_to_file(mapping_for(spec, source), tmp_path / "out.safetensors", source=src)
    src.close()


def count_hashing(monkeypatch) -> list[int]:
    hashed = []
    feed = sources_module._HashFeed.feed
    monkeypatch.setattr(sources_module._HashFeed, "feed", lambda self, view, offset: (hashed.append(len(view)),
                                                                                     feed(self, view, offset)))
    return hashed


@pytest.mark.parametrize("kind", ["pth", "sharded"])
def test_map_then_apply_hashes_once(tmp_path, spec, kind, monkeypatch):
    import hashlib

    from spp_gui import suggest_mapping

    source = write_source(tmp_path, kind, source_state())
    hashed = count_hashing(monkeypatch)
    mapping = suggest_mapping(source, spec, strategy="exact")
    with load_source(source) as src:
        files = [p for p, _ in src.files()]
    assert mapping.source_sha256 == hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
    first = sum(hashed)
    assert first == sum(p.stat().st_size for p in files)
    mapping.entries.update(mapping_for(spec, source).entries)
    report = apply_to_file(mapping, tmp_path / "out.safetensors")
    assert sum(hashed) == first and report.warnings == []  # the cached digest: not hashed again

    os.utime(files[-1], ns=(1, 1))  # touched: hashed again, in the same pass as the copy, and still the same
    report = apply_to_file(mapping, tmp_path / "out.safetensors")
    assert sum(hashed) == 2 * first and report.warnings == []
    report = apply_to_file(mapping, tmp_path / "out.safetensors")
    assert sum(hashed) == 2 * first  # and remembered again


def test_apply_warns_when_the_source_differs(tmp_path, spec):
    source = write_source(tmp_path, "safetensors", source_state())
    mapping = mapping_for(spec, source)
    mapping.source_sha256 = "0" * 64
    report = apply_to_file(mapping, tmp_path / "out.pth")
    assert any("differs from the file the mapping was made from" in w for w in report.warnings)


def test_format_progress():
    assert format_progress(1_200_000_000, 2_400_000_000, 2.0) == "1.2 GB of 2.4 GB   50%  600.0 MB/s  ETA 0:02"
    assert format_progress(0, 0, 0.0).startswith("0 B of 0 B  100%")
