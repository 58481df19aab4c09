"""A checkpoint someone sent is untrusted input: it is read exactly like torch/safetensors read it, or refused
with one clear SourceError naming the file, never garbage, an unbounded read or a stray exception."""

from __future__ import annotations

import json
import os
import struct
import threading
import zipfile
from pathlib import Path

import pytest
import torch
from faultgen import hf_cache_snapshot
from safetensors.torch import save_file

from spp_gui import load_source
from spp_gui.core import sources
from spp_gui.core.errors import SourceError


def _rezip(src, dst, compression=zipfile.ZIP_DEFLATED, replace=None):
    """Copy a torch zip entry by entry, as ``zip -r`` would (its own layout, optionally compressed)."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, replace.get(info.filename, zin.read(info)))
    return dst


def _views_state():
    torch.manual_seed(0)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {"a": base, "b": base[1:3], "c": base.t(), "d": torch.tensor(5.0), "e": torch.zeros(0, 3),
            "w": torch.randn(64, 32).to(torch.bfloat16), "n": torch.tensor([1, 2, 3])}


def _read_all(src):
    return {key: src.read(key) for key in src.tensors}


def _open_and_read_all(path):
    with load_source(path) as src:
        return _read_all(src)


def _assert_reads_like_torch_load(path):
    expected = torch.load(path, weights_only=True)
    with load_source(path) as src:
        got = _read_all(src)
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED], ids=["deflated", "stored"])
def test_rezipped_pth_reads_like_torch_load(tmp_path, small_state, compression):
    for name, state in (("small", small_state), ("views", _views_state())):
        torch.save(state, tmp_path / f"{name}.pth")
        _assert_reads_like_torch_load(_rezip(tmp_path / f"{name}.pth", tmp_path / f"{name}_rezip.pth", compression))


def _entry(path, suffix):
    with zipfile.ZipFile(path) as zf:
        return next(i for i in zf.infolist() if i.filename.endswith(suffix))


def _data_start(path, info):
    with open(path, "rb") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", fh.read(4))
    return info.header_offset + 30 + name_len + extra_len


def test_damaged_deflated_tensor_is_caught(tmp_path, small_state):
    torch.save(small_state, tmp_path / "s.pth")
    path = _rezip(tmp_path / "s.pth", tmp_path / "deflated.pth")
    info = _entry(path, "/data/0")
    data = bytearray(path.read_bytes())
    data[_data_start(path, info) + info.compress_size // 2] ^= 0x20
    path.write_bytes(bytes(data))
    with load_source(path) as src:  # listing reads no tensor data, so the damage shows when the tensor is read
        with pytest.raises(SourceError, match="corrupt") as err:
            _read_all(src)
    assert str(path) in str(err.value)


def test_storage_larger_than_its_record_is_refused_naming_the_tensor(tmp_path):
    torch.save({"small": torch.ones(4), "after": torch.arange(100.0)}, tmp_path / "t.pth")
    info = _entry(tmp_path / "t.pth", "/data/0")
    with zipfile.ZipFile(tmp_path / "t.pth") as zf:
        short = zf.read(info)[:8]  # the pickle says 16 bytes; the record keeps 8 (with a valid CRC)
    path = _rezip(tmp_path / "t.pth", tmp_path / "short.pth", zipfile.ZIP_STORED, {info.filename: short})
    with pytest.raises(SourceError, match="'small'.*16 bytes.*8") as err:
        load_source(path)
    assert str(path) in str(err.value)


def _patch_uncompressed_size(path, info, size):
    """Make both the local and the central header of ``info`` claim ``size`` uncompressed bytes."""
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, info.header_offset + 22, size)
    central = data.rfind(b"PK\x01\x02" + data[info.header_offset + 4:info.header_offset + 10])
    name = info.filename.encode()
    while data[central + 46:central + 46 + len(name)] != name:
        central = data.rfind(b"PK\x01\x02", 0, central)
    struct.pack_into("<I", data, central + 24, size)
    path.write_bytes(bytes(data))


def test_deflated_record_claiming_an_impossible_size_is_refused(tmp_path):
    torch.save({"w": torch.zeros(1000)}, tmp_path / "z.pth")
    path = _rezip(tmp_path / "z.pth", tmp_path / "bomb.pth")
    info = _entry(path, "/data/0")
    _patch_uncompressed_size(path, info, 2_000_000_000)
    with pytest.raises(SourceError, match="data/0") as err:
        _open_and_read_all(path)
    assert str(path) in str(err.value)


def test_deflated_record_inflating_past_its_declared_size_is_refused(tmp_path):
    torch.save({"w": torch.zeros(1000), "v": torch.ones(10)}, tmp_path / "z.pth")
    name = _entry(tmp_path / "z.pth", "/data/0").filename
    path = _rezip(tmp_path / "z.pth", tmp_path / "long.pth", replace={name: bytes(4100)})
    _patch_uncompressed_size(path, _entry(path, "/data/0"), 4000)  # what the pickle expects; it inflates to more
    with pytest.raises(SourceError) as err:
        _open_and_read_all(path)
    assert str(path) in str(err.value)


def test_unsupported_zip_compression_is_refused(tmp_path):
    torch.save({"w": torch.ones(3)}, tmp_path / "w.pth")
    path = _rezip(tmp_path / "w.pth", tmp_path / "lzma.pth", zipfile.ZIP_LZMA)
    with pytest.raises(SourceError, match="compress") as err:
        _open_and_read_all(path)
    assert str(path) in str(err.value)


def test_pickle_unpacking_past_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    torch.save({"w": torch.ones(2), "notes": "x" * 3_000_000}, tmp_path / "big_pickle.pth")
    path = _rezip(tmp_path / "big_pickle.pth", tmp_path / "bomb.pth")
    assert path.stat().st_size < 100_000  # a few kB that unpack to 3 MB
    monkeypatch.setattr(sources, "MAX_PICKLE_BYTES", 1 << 20, raising=False)
    with pytest.raises(SourceError, match="unpack to 3,0.* bytes, more than the 1,048,576") as err:
        load_source(path)
    assert str(path) in str(err.value)
    monkeypatch.setattr(sources, "MAX_PICKLE_BYTES", 16 << 20)
    assert list(load_source(path).tensors) == ["w"]


def test_hugging_face_cache_snapshot_is_read_through_its_blob_symlinks(tmp_path, small_state):
    snapshot = hf_cache_snapshot(tmp_path / "hub", small_state)
    for where in (snapshot, snapshot / "model.safetensors.index.json"):
        with load_source(where) as src:
            assert "2 shards" in src.notes
            got = _read_all(src)
        assert set(got) == set(small_state)
        assert all(torch.equal(got[k], v) for k, v in small_state.items())


@pytest.mark.parametrize("target", ["outside", "other_repo_blob", "blobs_of_no_cache"])
def test_shard_symlinks_escaping_the_checkpoint_are_refused(tmp_path, small_state, target):
    snapshot = hf_cache_snapshot(tmp_path / "hub", small_state)
    shard = snapshot / "model-00002-of-00002.safetensors"
    elsewhere = {"outside": tmp_path / "outside.safetensors",
                 "other_repo_blob": tmp_path / "hub" / "models--org--other" / "blobs" / "blob1",
                 "blobs_of_no_cache": tmp_path / "plain" / "blobs" / "blob1"}[target]
    elsewhere.parent.mkdir(parents=True, exist_ok=True)
    (snapshot.parent.parent / "blobs" / "blob1").rename(elsewhere)
    shard.unlink()
    shard.symlink_to(elsewhere)
    if target == "blobs_of_no_cache":  # a plain folder whose shards link to ../blobs: not a hub cache
        folder = tmp_path / "plain" / "model"
        folder.mkdir()
        (folder / "model.safetensors.index.json").write_text((snapshot / "model.safetensors.index.json").read_text())
        first = snapshot / "model-00001-of-00002.safetensors"
        (folder / first.name).write_bytes(first.read_bytes())
        (folder / "model-00002-of-00002.safetensors").symlink_to("../blobs/blob1")
        snapshot = folder
    with pytest.raises(SourceError, match="outside the checkpoint folder") as err:
        load_source(snapshot)
    assert "model-00002-of-00002.safetensors" in str(err.value)


def test_a_thousand_shards_open_under_a_low_open_file_limit(tmp_path):
    resource = pytest.importorskip("resource")
    weight_map = {}
    expected = {}
    for i in range(1100):
        name = f"model-{i + 1:05d}-of-01100.safetensors"
        expected[f"layer{i}.weight"] = torch.full((2,), float(i))
        save_file({f"layer{i}.weight": expected[f"layer{i}.weight"]}, tmp_path / name)
        weight_map[f"layer{i}.weight"] = name
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 64
    low = min(in_use + 200, hard if hard != resource.RLIM_INFINITY else in_use + 200)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        with load_source(tmp_path) as src:
            assert len(src.tensors) == 1100
            for key, value in expected.items():
                assert torch.equal(src.read(key), value), key
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _in_thread(call, *args):
    """Run ``call`` where a blocking open cannot hang the test run; return (finished, error)."""
    result = []

    def run():
        try:
            call(*args)
            result.append(None)
        except Exception as exc:  # noqa: BLE001 - the test looks at what was raised
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    return not thread.is_alive(), (result[0] if result else None)


@pytest.fixture
def fifo(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    path = tmp_path / "pipe.safetensors"
    os.mkfifo(path)
    yield path
    try:  # wake a reader the code under test may have left blocked in open()
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


@pytest.mark.parametrize("opener", ["load_source", "SafetensorsSource", "TorchFileSource", "read_safetensors_header"])
def test_fifo_is_refused_without_blocking(fifo, opener):
    call = load_source if opener == "load_source" else getattr(sources, opener)
    finished, error = _in_thread(call, fifo)
    assert finished, f"{opener} blocked opening a FIFO"
    assert isinstance(error, SourceError) and "not a regular file" in str(error) and str(fifo) in str(error)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize("opener", ["load_source", "SafetensorsSource", "TorchFileSource"])
def test_device_file_is_refused_before_any_read(opener):
    call = load_source if opener == "load_source" else getattr(sources, opener)
    finished, error = _in_thread(call, Path("/dev/zero"))
    assert finished
    assert isinstance(error, SourceError) and "/dev/zero is a character device, not a regular file" in str(error)


def test_fifo_as_a_shard_or_folder_candidate_is_refused(tmp_path, fifo):
    save_file({"a": torch.ones(2)}, tmp_path / "one.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "one.safetensors", "b": fifo.name}}))
    finished, error = _in_thread(load_source, tmp_path)
    assert finished and isinstance(error, SourceError) and "not a regular file" in str(error)
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "model.safetensors")
    finished, error = _in_thread(load_source, folder)
    assert finished and isinstance(error, SourceError) and "not a regular file" in str(error)


ONE = '{"dtype":"F32","shape":[4],"data_offsets":[0,16]}'
BAD_HEADERS = {  # name: (header text, tensor data, what the message must say)
    "nested past 1,000 levels": ('{"__metadata__":{"x":' + "[" * 5000 + "]" * 5000 + "}}", b"", "nested"),
    "nested past the cap": ('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16],"x":' + "[" * 200 + "]" * 200 + "}}",
                            bytes(16), "nested"),
    "integer over 4,300 digits": ('{"a":{"dtype":"F32","shape":[' + "9" * 5000 + '],"data_offsets":[0,16]}}',
                                  bytes(16), "digits"),
    "Infinity in a shape": ('{"a":{"dtype":"F32","shape":[Infinity],"data_offsets":[0,4]}}', bytes(4), "Infinity"),
    "NaN in metadata": ('{"__metadata__":{"k":NaN},"a":' + ONE + '}', bytes(16), "NaN"),
    "1.5 in a shape": ('{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}', bytes(4), "shape"),
    "4.0 in a shape": ('{"a":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}}', bytes(16), "shape"),
    "true in a shape": ('{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}', bytes(4), "shape"),
    "shape [0, 2**70]": (f'{{"a":{{"dtype":"F32","shape":[0,{2**70}],"data_offsets":[0,0]}}}}', b"", "digits|shape"),
    "shape [0, 2**63]": (f'{{"a":{{"dtype":"F32","shape":[0,{2**63}],"data_offsets":[0,0]}}}}', b"", "shape"),
    "shape overflowing before its 0": (f'{{"a":{{"dtype":"F32","shape":[{2**40},{2**40},0],"data_offsets":[0,0]}}}}',
                                       b"", "shape"),
    "duplicate tensor": ('{"a":' + ONE + ',"a":' + ONE + "}", bytes(16), "twice"),
    "duplicate metadata key": ('{"__metadata__":{"k":"1","k":"2"},"a":' + ONE + '}', bytes(16), "twice"),
    "UTF-8 BOM": ('\ufeff{"a":' + ONE + '}', bytes(16), "byte-order mark"),
    "__metadata__ a list": ('{"__metadata__":[1],"a":' + ONE + '}', bytes(16), "__metadata__"),
    "__metadata__ a string": ('{"__metadata__":"x","a":' + ONE + '}', bytes(16), "__metadata__"),
    "metadata value an int": ('{"__metadata__":{"k":1},"a":' + ONE + '}', bytes(16), "__metadata__"),
    "metadata value an object": ('{"__metadata__":{"k":{}},"a":' + ONE + '}', bytes(16), "__metadata__"),
    "lone surrogate": ('{"\\ud800":' + ONE + '}', bytes(16), "surrogate"),
    "entry a list": ('{"a":[1,2]}', bytes(16), "'a'"),
    "dtype a list": ('{"a":{"dtype":["F32"],"shape":[4],"data_offsets":[0,16]}}', bytes(16), "dtype"),
    "three offsets": ('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16,3]}}', bytes(16), "data_offsets"),
    "offsets as floats": ('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0.0,16.0]}}', bytes(16), "data_offsets"),
    "a gap before a tensor": ('{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', bytes(16), "no tensor"),
    "bytes after the last tensor": ('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', bytes(16), "no tensor"),
    "not starting with {": (' {"a":' + ONE + '}', bytes(16), "begin"),
    "invalid UTF-8": ('{"a\xff":' + ONE + '}', bytes(16), "UTF-8"),
}


def _crafted_safetensors(tmp_path, text, data):
    raw = text.encode("utf-8", "surrogatepass") if "\xff" not in text else text.encode("latin-1")
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize("case", list(BAD_HEADERS))
def test_crafted_safetensors_headers_are_one_clear_source_error(tmp_path, case):
    text, data, says = BAD_HEADERS[case]
    path = _crafted_safetensors(tmp_path, text, data)
    with pytest.raises(SourceError, match=says) as err:
        load_source(path)
    assert str(err.value).startswith(f"{path}: ")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text,data", [
    ('{"__metadata__":null,"a":' + ONE + '}', bytes(16)),
    ('{"a":' + ONE + '}       ', bytes(16)),  # the space padding safetensors writes
    ('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16],"extra":{"k":[1]}}}', bytes(16)),
    ('{"z":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"a":' + ONE + '}', bytes(16)),
    ("{}", b""),
], ids=["null metadata", "padded", "unknown field", "empty tensor", "no tensors"])
def test_headers_the_reference_library_accepts_still_load(tmp_path, text, data):
    from safetensors import safe_open

    path = _crafted_safetensors(tmp_path, text, data)
    with safe_open(path, "pt") as ref:
        expected = {k: ref.get_tensor(k) for k in ref.keys()}  # noqa: SIM118 - safe_open has no __iter__
    with load_source(path) as src:
        got = _read_all(src)
    assert set(got) == set(expected) and all(torch.equal(got[k], v) for k, v in expected.items())


def _index(folder, text):
    save_file({"a": torch.ones(2)}, folder / "one.safetensors")
    (folder / "model.safetensors.index.json").write_text(text)
    return folder / "model.safetensors.index.json"


@pytest.mark.parametrize("text,says", [
    ('{"weight_map":{"a":"model.safetensors.index.json"}}', "itself an index"),
    ('{"weight_map":{"a":"other.safetensors.index.json"}}', "itself an index"),
    ('{"weight_map":{"a":"."}}', "is a folder, not a shard file"),
    ('{"metadata":' + "[" * 5000 + "]" * 5000 + ',"weight_map":{"a":"one.safetensors"}}', "nested"),
    ('{"metadata":' + "[" * 100 + "]" * 100 + ',"weight_map":{"a":"one.safetensors"}}', "nested"),
    ('{"metadata":{"total_size":' + "1" * 5000 + '},"weight_map":{"a":"one.safetensors"}}', "digits"),
    ('{"weight_map":{"a":"one.safetensors","a":"one.safetensors"}}', "twice"),
    ('{"weight_map":{"a":["one.safetensors"]}}', "weight_map"),
    ('{"weight_map":{"a":7}}', "weight_map"),
    ('{"weight_map":[]}', "weight_map"),
    ('{"metadata":{}}', "weight_map"),
    ("[1]", "weight_map"),
    ('\ufeff{"weight_map":{"a":"one.safetensors"}}', "byte-order mark"),
    ('{"weight_map":{"a":"one.safetensors"}', "not valid JSON"),
], ids=["itself", "another index", "a folder", "nested past 1,000", "nested past the cap", "huge integer",
        "duplicate key", "list shard", "int shard", "list weight_map", "no weight_map", "not an object", "BOM",
        "cut"])
def test_crafted_shard_indexes_are_one_clear_source_error(tmp_path, text, says):
    index = _index(tmp_path, text)
    (tmp_path / "other.safetensors.index.json").write_text('{"weight_map":{"a":"model.safetensors.index.json"}}')
    for where in (index, tmp_path):
        with pytest.raises(SourceError, match=says) as err:
            load_source(where)
        assert str(err.value).startswith(f"{index}: ")


def _with_pickle(tmp_path, program):
    """A torch zip whose data.pkl is ``program``, a pickle written by hand."""
    torch.save({"w": torch.ones(2)}, tmp_path / "base.pth")
    name = _entry(tmp_path / "base.pth", "data.pkl").filename
    return _rezip(tmp_path / "base.pth", tmp_path / "crafted.pth", zipfile.ZIP_STORED, {name: program})


@pytest.mark.parametrize("program", [
    b"\x80\x02}" + b"X\x01\x00\x00\x00a}" * 100_000 + b"s" * 100_000 + b".",  # {"a": {"a": ... 100,000 deep
    b"\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s.",  # d = {}; d["a"] = d
], ids=["nested 100,000 deep", "a cycle"])
def test_pickled_dicts_nested_without_end_are_refused(tmp_path, program):
    path = _with_pickle(tmp_path, program)
    with pytest.raises(SourceError, match="nests dicts more than") as err:
        load_source(path)
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize("shard", ["one\\u0000.safetensors", "x" * 5000 + ".safetensors"], ids=["NUL", "too long"])
def test_unusable_shard_names_are_refused(tmp_path, shard):
    index = _index(tmp_path, '{"weight_map":{"a":"' + shard + '"}}')
    with pytest.raises(SourceError, match="not a usable file name") as err:
        load_source(index)
    assert str(err.value).startswith(f"{index}: ")


def test_a_source_name_no_file_can_have_is_one_source_error():
    """What the GUI's Open dialog passes straight to load_source (the CLI checks names first)."""
    from spp_gui.core.errors import SourceError
    from spp_gui.core.sources import load_source

    for name in ("x" * 300 + ".pth", "bad\x00name.pth"):
        with pytest.raises(SourceError):  # never an OSError or ValueError from the name itself
            load_source(name)
