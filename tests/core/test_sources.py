from __future__ import annotations

import builtins
import json
import os
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file

from spp_gui import load_source
from spp_gui.core.errors import SourceError, SpecError, UnsafePickleError
from spp_gui.core.sources import TorchFileSource, torchvision_weights_path


def _assert_same(src, state):
    assert list(src.tensors) == list(state)
    for key, value in state.items():
        info = src.tensors[key]
        assert info.shape == tuple(value.shape)
        assert torch.equal(src.read(key), value), key


def test_torch_file_lists_without_reading_data(small_pth, small_state):
    with load_source(small_pth) as src:
        assert isinstance(src, TorchFileSource)
        assert src.tensors["features.0.weight"].dtype == "float32"
        _assert_same(src, small_state)


@pytest.mark.parametrize("wrap,note", [
    (lambda sd: {"state_dict": sd, "epoch": 3, "optimizer": {}}, "unwrapped ['state_dict']"),
    (lambda sd: {"model": sd}, "unwrapped ['model']"),
    (lambda sd: {"model": {"module": sd}}, "unwrapped ['model'] -> ['module']"),
    (lambda sd: {"state_dict": sd, "pytorch-lightning_version": "2.4.0", "global_step": 7}, "Lightning checkpoint"),
])
def test_containers_are_unwrapped_and_said(tmp_path, small_state, wrap, note):
    path = tmp_path / "ckpt.ckpt"
    torch.save(wrap(small_state), path)
    with load_source(path) as src:
        assert note in src.notes
        _assert_same(src, small_state)


def test_views_and_shared_storage_read_correctly(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {"a": base, "b": base[1:3], "c": base.t(), "d": torch.tensor(5.0), "e": torch.zeros(0, 3)}
    torch.save(state, tmp_path / "v.pth")
    with load_source(tmp_path / "v.pth") as src:
        for key, value in state.items():
            assert torch.equal(src.read(key), value)


def test_bf16_and_int_dtypes(tmp_path):
    state = {"w": torch.randn(3, 4).to(torch.bfloat16), "n": torch.tensor([1, 2, 3]), "m": torch.ones(2, dtype=torch.bool)}
    torch.save(state, tmp_path / "d.pth")
    save_file(state, tmp_path / "d.safetensors")
    for name in ("d.pth", "d.safetensors"):
        with load_source(tmp_path / name) as src:
            assert src.tensors["w"].dtype == "bfloat16"
            for key, value in state.items():
                assert torch.equal(src.read(key), value)


def test_safetensors_header_only(tmp_path, small_state):
    path = tmp_path / "a.safetensors"
    save_file(small_state, path, metadata={"who": "test"})
    with load_source(path) as src:
        assert set(src.tensors) == set(small_state)
        assert src.metadata == {"who": "test"}
        for key, value in small_state.items():
            assert torch.equal(src.read(key), value)


def _shard(state, folder, kind):
    keys = list(state)
    halves = [keys[: len(keys) // 2], keys[len(keys) // 2:]]
    weight_map = {}
    for i, part in enumerate(halves):
        name = f"model-{i + 1:05d}-of-00002.{'safetensors' if kind == 'st' else 'bin'}"
        chunk = {k: state[k] for k in part}
        if kind == "st":
            save_file(chunk, folder / name)
        else:
            torch.save(chunk, folder / name)
        weight_map.update(dict.fromkeys(part, name))
    index = folder / ("model.safetensors.index.json" if kind == "st" else "pytorch_model.bin.index.json")
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


@pytest.mark.parametrize("kind", ["st", "bin"])
def test_sharded_round_trip(tmp_path, small_state, kind):
    index = _shard(small_state, tmp_path, kind)
    for where in (index, tmp_path):  # the index file, or the folder holding it
        with load_source(where) as src:
            assert "2 shards" in src.notes
            assert set(src.tensors) == set(small_state)
            for key, value in small_state.items():
                assert torch.equal(src.read(key), value)


def test_sharded_index_with_missing_key(tmp_path, small_state):
    index = _shard(small_state, tmp_path, "st")
    data = json.loads(index.read_text())
    data["weight_map"]["ghost.weight"] = next(iter(data["weight_map"].values()))
    index.write_text(json.dumps(data))
    with pytest.raises(SourceError, match="missing from their shards"):
        load_source(index)


def test_model_spec_source_is_listed_on_meta_and_deterministic():
    src = load_source("torchvision:resnet18?num_classes=7")
    assert src.tensors["fc.weight"].shape == (7, 512)
    assert src.module_classes["layer1.0.conv1"] == "Conv2d"
    again = load_source("torchvision:resnet18?num_classes=7")
    assert torch.equal(src.read("conv1.weight"), again.read("conv1.weight"))


def test_torchvision_weights_from_cache(small_state):
    path, url = torchvision_weights_path("alexnet", "IMAGENET1K_V1")
    assert url.endswith(path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(small_state, path)
    with load_source("torchvision:alexnet:IMAGENET1K_V1") as src:
        assert src.spec == "torchvision:alexnet:IMAGENET1K_V1"
        assert any(str(path) in n for n in src.notes)
        assert torch.equal(src.read("features.0.weight"), small_state["features.0.weight"])


def test_torchvision_weights_offline_names_the_cache_file():
    path, _ = torchvision_weights_path("alexnet", "IMAGENET1K_V1")
    with pytest.raises(SourceError, match="not in the cache") as err:
        load_source("torchvision:alexnet:IMAGENET1K_V1", download=False)
    assert str(path) in str(err.value)


def test_unknown_torchvision_weights():
    with pytest.raises(SpecError, match="unknown weights 'IMAGENET9K'.*IMAGENET1K_V1"):
        load_source("torchvision:alexnet:IMAGENET9K")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


@pytest.mark.parametrize("nest", [lambda e: e, lambda e: {"state_dict": {"w": torch.ones(1)}, "extra": [e]}])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, nest):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save(nest(_Evil(marker)), path)
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match="arbitrary code.*--trust-pickle"):
        load_source(path)
    assert not marker.exists()


def test_pickled_module_needs_opt_in(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    path = tmp_path / "whole_model.pth"
    torch.save(model, path)
    with pytest.raises(UnsafePickleError):
        load_source(path)
    with load_source(path, trust_pickle=True) as src:
        assert "took the state dict of a pickled Sequential" in src.notes
        assert torch.equal(src.read("0.weight"), model[0].weight.detach())


def test_legacy_format_is_read(tmp_path, small_state):
    path = tmp_path / "legacy.pth"
    torch.save(small_state, path, _use_new_zipfile_serialization=False)
    with load_source(path) as src:
        assert any("legacy" in n for n in src.notes)
        _assert_same(src, small_state)


@pytest.mark.parametrize("fraction", [0.0001, 0.3, 0.7, 0.999])
def test_truncated_files_give_clean_errors(tmp_path, small_pth, small_state, fraction):
    data = small_pth.read_bytes()
    for name, blob in (("t.pth", data), ("t.safetensors", _st_bytes(tmp_path, small_state))):
        path = tmp_path / ("cut_" + name)
        path.write_bytes(blob[: max(1, int(len(blob) * fraction))])
        with pytest.raises(SourceError):
            with load_source(path) as src:
                for key in src.tensors:  # a cut in the data is caught when the tensor is read
                    src.read(key)


def _st_bytes(tmp_path, state):
    save_file(state, tmp_path / "whole.safetensors")
    return (tmp_path / "whole.safetensors").read_bytes()


def _data_start(path, info):
    with open(path, "rb") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", fh.read(4))
    return info.header_offset + 30 + name_len + extra_len


def test_bit_flip_in_tensor_data_is_caught_by_crc(tmp_path, small_pth):
    data = bytearray(small_pth.read_bytes())
    with zipfile.ZipFile(small_pth) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    data[_data_start(small_pth, info) + 200] ^= 0x10
    path = tmp_path / "flipped.pth"
    path.write_bytes(bytes(data))
    with load_source(path) as src:
        with pytest.raises(SourceError, match="CRC mismatch"):
            for key in src.tensors:
                src.read(key)


def test_bit_flip_in_pickle_is_caught_before_unpickling(tmp_path, small_pth):
    data = bytearray(small_pth.read_bytes())
    with zipfile.ZipFile(small_pth) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("data.pkl"))
    data[_data_start(small_pth, info) + 10] ^= 0x01
    path = tmp_path / "flipped.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(SourceError):
        load_source(path)


@pytest.mark.parametrize("content", [b"", b"hello world, not a checkpoint\n", b"PK\x03\x04garbage"])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(SourceError):
        load_source(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(SourceError, match="file not found"):
        load_source(tmp_path / "nope.pth")
    with pytest.raises(SourceError, match="folder without a checkpoint"):
        load_source(tmp_path)


def _st_with_header(tmp_path, header, data=b"\0" * 64):
    raw = json.dumps(header).encode()
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_safetensors_crafted_headers(tmp_path):
    overlap = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
               "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}
    with pytest.raises(SourceError, match="overlap"):
        load_source(_st_with_header(tmp_path, overlap))
    outside = {"a": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}
    with pytest.raises(SourceError, match="outside the file"):
        load_source(_st_with_header(tmp_path, outside))
    wrong_size = {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}
    with pytest.raises(SourceError, match="bytes for shape"):
        load_source(_st_with_header(tmp_path, wrong_size))
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    with pytest.raises(SourceError, match="header length"):
        load_source(path)


def test_safetensors_we_write_load_with_the_reference_library(tmp_path, small_state):
    from spp_gui.core.apply import write_safetensors

    path = tmp_path / "ours.safetensors"
    write_safetensors(small_state, path, {"k": "v"})
    loaded = load_file(path)
    assert all(torch.equal(loaded[k], v) for k, v in small_state.items())


def test_plain_dict_and_module_sources():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    src = load_source(model)
    assert src.module_classes["1"] == "BatchNorm2d"
    assert torch.equal(src.read("0.weight"), model[0].weight.detach())
    with torch.device("meta"):
        meta = torchvision.models.resnet18()
    meta_src = load_source(meta.state_dict())
    assert meta_src.tensors["fc.weight"].shape == (1000, 512)
    with pytest.raises(SourceError, match="meta tensor"):
        meta_src.read("fc.weight")


def test_weights_only_loads_plain_containers(tmp_path):
    state = OrderedDict(w=torch.ones(2))
    torch.save({"state_dict": state, "hparams": {"lr": 0.1, "name": "x"}}, tmp_path / "c.pth")
    assert list(load_source(tmp_path / "c.pth").tensors) == ["w"]
    assert os.path.exists(tmp_path / "c.pth")
    assert pickle  # the module is used above through torch.save


# ---------------------------------------------------------------------------------------------
# locating tensors' bytes, the one-pass copier and the digest cache


def _span_bytes(span) -> bytes:
    with open(span.file.path, "rb") as fh:
        fh.seek(span.offset)
        return fh.read(span.nbytes)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_located_bytes_are_the_tensor(tmp_path, small_state, suffix):
    path = tmp_path / f"s{suffix}"
    torch.save(small_state, path) if suffix == ".pth" else save_file(small_state, path)
    with load_source(path) as src:
        for key in small_state:
            span = src.locate(key)
            assert (span.record is not None) == (suffix == ".pth")
            assert _span_bytes(span) == src.read(key).reshape(-1).view(torch.uint8).numpy().tobytes(), key
        with pytest.raises(SourceError, match="no tensor named"):
            src.locate("nope")


def test_only_verbatim_tensors_are_located(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    torch.save({"a": base, "b": base[1:3], "t": base.t()}, tmp_path / "v.pth")
    with load_source(tmp_path / "v.pth") as src:
        assert src.locate("t") is None  # not contiguous: read() makes it
        span = src.locate("b")
        assert span.offset == span.record.start + 6 * 4 and span.nbytes == 12 * 4
    with zipfile.ZipFile(tmp_path / "v.pth") as zin, zipfile.ZipFile(tmp_path / "d.pth", "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    with load_source(tmp_path / "d.pth") as src:
        assert src.locate("a") is None  # deflated
    assert load_source({"x": torch.ones(2)}).locate("x") is None


def test_sha256_is_hashed_once_per_unchanged_file(tmp_path, small_state, monkeypatch):
    import hashlib

    from spp_gui.core import sources

    monkeypatch.setenv("SPP_GUI_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "s.safetensors"
    save_file(small_state, path)
    want = hashlib.sha256(path.read_bytes()).hexdigest()
    seen = []
    assert load_source(path).sha256(lambda done, total: seen.append((done, total))) == want
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    assert sources.cached_sha256([path]) == want
    assert json.loads((tmp_path / "cache" / "sha256.json").read_text())["entries"][str(path)]["sha256"] == want
    seen.clear()
    assert load_source(path).sha256(lambda done, total: seen.append(done)) == want and seen == []  # from the cache

    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    stat_before = path.stat()
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(stat_before.st_atime_ns, stat_before.st_mtime_ns))  # same size and mtime: ctime still tells
    assert sources.cached_sha256([path]) is None
    assert load_source(path).sha256() == hashlib.sha256(bytes(raw)).hexdigest()

    (tmp_path / "cache" / "sha256.json").write_text("{not json")
    assert sources.cached_sha256([path]) is None  # a damaged cache is no cache
    assert load_source(path).sha256() == hashlib.sha256(bytes(raw)).hexdigest()
    assert sources.cached_sha256([path]) is not None


def test_digest_cache_is_bounded_and_may_be_unwritable(tmp_path, monkeypatch):
    from spp_gui.core import sources

    monkeypatch.setenv("SPP_GUI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "HASH_CACHE_ENTRIES", 3)
    files = []
    for i in range(5):
        files.append(tmp_path / f"f{i}.bin")
        files[-1].write_bytes(bytes([i]) * 10)
        sources._file_sha256([files[-1]], None)
    assert [sources.cached_sha256([f]) is not None for f in files] == [False, False, True, True, True]
    (tmp_path / "blocked").write_text("a file where the folder should be")
    monkeypatch.setenv("SPP_GUI_CACHE_DIR", str(tmp_path / "blocked" / "cache"))
    assert sources._file_sha256([files[0]], None) == sources._file_sha256([files[0]], None)


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    from spp_gui.core.sources import cache_dir

    monkeypatch.setenv("SPP_GUI_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SPP_GUI_CACHE_DIR")
    monkeypatch.setenv("SPP_GUI_CONFIG_DIR", str(tmp_path / "conf"))
    assert cache_dir() == tmp_path / "conf" / "cache"
    monkeypatch.delenv("SPP_GUI_CONFIG_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert cache_dir() == tmp_path / "xdg" / "spp_gui"


def test_sharded_digest_covers_index_and_shards(tmp_path, small_state, monkeypatch):
    import hashlib

    monkeypatch.setenv("SPP_GUI_CACHE_DIR", str(tmp_path / "cache"))
    keys = list(small_state)
    save_file({k: small_state[k] for k in keys[:10]}, tmp_path / "a.safetensors")
    save_file({k: small_state[k] for k in keys[10:]}, tmp_path / "b.safetensors")
    weight_map = {k: "a.safetensors" if i < 10 else "b.safetensors" for i, k in enumerate(keys)}
    (tmp_path / "m.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with load_source(tmp_path / "m.safetensors.index.json") as src:
        files = [p for p, _ in src.files()]
        assert [p.name for p in files] == ["m.safetensors.index.json", "a.safetensors", "b.safetensors"]
        assert src.sha256() == hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
        assert src.locate(keys[12]).file is src.shards["b.safetensors"]


def test_copy_pass_checks_crcs_it_copies_through(tmp_path, monkeypatch):
    from spp_gui.core.sources import CopyJob, CopyPass

    monkeypatch.setattr("spp_gui.core.sources.COPY_CHUNK", 64)
    state = {"a": torch.arange(100, dtype=torch.float32), "b": torch.ones(7)}
    torch.save(state, tmp_path / "s.pth")
    with load_source(tmp_path / "s.pth") as src:
        out = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT)
        try:
            jobs = [CopyJob("a", src.locate("a"), 0, want_crc=True), CopyJob("b", src.locate("b"), 400, want_crc=True)]
            copier = CopyPass(src.files(), jobs, out, sha256=True)
            steps = list(copier.run())
            assert steps[-1][0] == copier.total == (tmp_path / "s.pth").stat().st_size
            assert [j.crc for j in jobs] == [j.span.record.crc for j in jobs]
            data = os.pread(out, 428, 0)
            assert data == state["a"].numpy().tobytes() + state["b"].numpy().tobytes()
        finally:
            os.close(out)


def test_a_source_says_whether_it_is_a_file_or_a_models_fresh_init(tmp_path):
    path = tmp_path / "w.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(path))
    with load_source(path) as src:
        assert src.file_backed and not src.random_init
    model = load_source("torchvision:alexnet")
    assert model.random_init and not model.file_backed


def test_iter_sha256_yields_its_progress_and_returns_the_files_digest(tmp_path):
    import hashlib

    from spp_gui.core.steps import run_steps

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.randn(300, 300), "b": torch.randn(7)}, str(path))
    with load_source(path) as src:
        seen: list[tuple[int, int]] = []
        digest = run_steps(src.iter_sha256(), seen.append)
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == src.sha256()
        assert seen and seen[-1] == (path.stat().st_size, path.stat().st_size)
        assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    with load_source("torchvision:resnet18") as model_source:  # no file behind it: no digest, no steps
        assert run_steps(model_source.iter_sha256()) is None
