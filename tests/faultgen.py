"""Damaged and malicious inputs, made on the fly; shared by tests and benchmarks/faults.py.

Checkpoints (truncated, bit-flipped, re-zipped, crafted headers and indexes, pickle bombs, hub-cache
layouts, thousands of shards), mapping files (malformed fields, JSON bombs, code in specs), model
files that leave a marker when imported, and names that carry terminal escapes.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file


def base_files(folder: Path, seed: int = 0) -> dict[str, Path]:
    """A small .pth and .safetensors with a few dozen tensors of mixed shapes."""
    torch.manual_seed(seed)
    state = {f"block{i}.{kind}": torch.randn(*shape) for i in range(8)
             for kind, shape in (("weight", (32, 16, 3, 3)), ("bias", (32,)), ("norm", (16,)))}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "base.pth")
    save_file(state, folder / "base.safetensors")
    return {"pth": folder / "base.pth", "safetensors": folder / "base.safetensors"}


def truncations(path: Path, count: int, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    data = path.read_bytes()
    for _ in range(count):
        cut = rng.randrange(0, len(data))
        yield f"{path.suffix} truncated at {cut}/{len(data)}", data[:cut]


def bit_flips(path: Path, count: int, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    data = path.read_bytes()
    for _ in range(count):
        pos = rng.randrange(0, len(data))
        flipped = bytearray(data)
        flipped[pos] ^= 1 << rng.randrange(8)
        yield f"{path.suffix} bit {pos} flipped", bytes(flipped)


def crafted_safetensors() -> Iterator[tuple[str, bytes]]:
    def make(header: dict, data: bytes = b"\0" * 64, length: int | None = None) -> bytes:
        raw = json.dumps(header).encode()
        return struct.pack("<Q", len(raw) if length is None else length) + raw + data

    one = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
    yield "safetensors header length 2**63", make({"a": one}, length=1 << 63)
    yield "safetensors header length past EOF", make({"a": one}, length=10_000)
    yield "safetensors overlapping offsets", make({"a": one, "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})
    yield "safetensors offsets out of range", make({"a": {"dtype": "F32", "shape": [4096], "data_offsets": [0, 16384]}})
    yield "safetensors negative shape", make({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})
    yield "safetensors unknown dtype", make({"a": {"dtype": "Q7", "shape": [4], "data_offsets": [0, 16]}})
    yield "safetensors header not JSON", struct.pack("<Q", 12) + b"{not json!!}" + b"\0" * 16
    yield "safetensors header a list", make([1, 2, 3])  # type: ignore[arg-type]


def zip_damage(path: Path) -> Iterator[tuple[str, bytes]]:
    data = path.read_bytes()
    eocd = data.rfind(b"PK\x05\x06")
    yield ".pth without end of central directory", data[:eocd]
    cd = data.rfind(b"PK\x01\x02")
    yield ".pth central directory cut", data[:cd + 10]
    yield ".pth central directory zeroed", data[:cd] + b"\0" * (len(data) - cd)


class _Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def malicious(folder: Path, marker: Path) -> Iterator[tuple[str, Path]]:
    """Checkpoints that would create ``marker`` if they were ever unpickled with code execution."""
    folder.mkdir(parents=True, exist_ok=True)
    payloads = {
        "os.system": _Reduce(os.system, (f"touch {marker}",)),
        "subprocess.Popen": _Reduce(subprocess.Popen, (["touch", str(marker)],)),
        "eval": _Reduce(eval, (f"open({str(marker)!r}, 'w')",)),
        "builtins.open": _Reduce(open, (str(marker), "w")),
    }
    for name, payload in payloads.items():
        path = folder / f"evil_{name}.pth"
        torch.save(payload, path)
        yield f"pickle {name} at top level", path
        nested = folder / f"evil_nested_{name}.pth"
        torch.save({"state_dict": {"w": torch.ones(2)}, "meta": {"x": [payload]}}, nested)
        yield f"pickle {name} nested in a dict", nested
    shard_dir = folder / "sharded"
    shard_dir.mkdir(exist_ok=True)
    torch.save({"a": torch.ones(2)}, shard_dir / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": payloads["os.system"]}, shard_dir / "pytorch_model-00002-of-00002.bin")
    (shard_dir / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"weight_map": {"a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}))
    yield "pickle os.system in a shard of a sharded checkpoint", shard_dir / "pytorch_model.bin.index.json"


# -- model files --------------------------------------------------------------------------------

OSC_TITLE, CLEAR = "\x1b]0;pwned\x07", "\x1b[2J"

NET_PY = f'''
import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(32, 16, 3, 3))
        self.bias = nn.Parameter(torch.zeros(32))
        self.norm = nn.Parameter(torch.zeros(16))


class Base(nn.Module):
    """The keys and shapes of base_files()."""

    def __init__(self):
        super().__init__()
        for i in range(8):
            self.add_module(f"block{{i}}", Block())


class Leaf(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2))


class Many(nn.Module):
    """The keys of many_shards(): layer0.weight ... layer{{n-1}}.weight."""

    def __init__(self, n=1100):
        super().__init__()
        for i in range(n):
            self.add_module(f"layer{{i}}", Leaf())


class W(nn.Module):
    """The one tensor of pickle_bombs()' files."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1000))


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)


class Counted(nn.Module):
    """A float weight and an integer counter: a float source for the counter is a lossy cast."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


class Src(nn.Module):
    """Module names a checkpoint someone sent could carry: an OSC title change and a screen clear."""

    def __init__(self):
        super().__init__()
        self.add_module({OSC_TITLE + "fc"!r}, nn.Linear(4, 2))
        self.add_module({CLEAR + "head"!r}, nn.Linear(2, 2))

    def forward(self, x):
        return getattr(self, {CLEAR + "head"!r})(getattr(self, {OSC_TITLE + "fc"!r})(x))


class Dst(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.head = nn.Linear(2, 2)

    def forward(self, x):
        return self.head(self.fc(x))
'''

EVIL_PY = '''
import pathlib
pathlib.Path({marker!r}).write_text("ran")
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.fc = nn.Linear(4, 2)
'''


def tiny_net(folder: Path) -> Path:
    """``net.py`` with the small models the fault cases map into (see NET_PY)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.py").write_text(NET_PY)
    return folder / "net.py"


def evil_module(folder: Path, marker: Path) -> Path:
    """A model file that creates ``marker`` when it is imported: code ran."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evil.py").write_text(EVIL_PY.format(marker=str(marker)))
    return folder / "evil.py"


def escape_names_state() -> dict[str, torch.Tensor]:
    """The state dict of NET_PY's Src: tensor names with an OSC title change and a screen clear."""
    torch.manual_seed(0)
    fc, head = torch.nn.Linear(4, 2), torch.nn.Linear(2, 2)
    return {OSC_TITLE + "fc.weight": fc.weight.detach().clone(), OSC_TITLE + "fc.bias": fc.bias.detach().clone(),
            CLEAR + "head.weight": head.weight.detach().clone(), CLEAR + "head.bias": head.bias.detach().clone()}


# -- torch zips as other tools write them --------------------------------------------------------


def rezip(src: Path, dst: Path, compression: int = zipfile.ZIP_DEFLATED, replace: dict | None = None) -> Path:
    """Copy a torch zip entry by entry, as ``zip -r`` would (its own layout, optionally compressed)."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, replace.get(info.filename, zin.read(info)))
    return dst


def _entry(path: Path, suffix: str) -> zipfile.ZipInfo:
    with zipfile.ZipFile(path) as zf:
        return next(i for i in zf.infolist() if i.filename.endswith(suffix))


def _patch_uncompressed_size(path: Path, info: zipfile.ZipInfo, size: int) -> None:
    """Make both the local and the central header of ``info`` claim ``size`` uncompressed bytes."""
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, info.header_offset + 22, size)
    name = info.filename.encode()
    central = data.rfind(b"PK\x01\x02")
    while data[central + 46:central + 46 + len(name)] != name:
        central = data.rfind(b"PK\x01\x02", 0, central)
    struct.pack_into("<I", data, central + 24, size)
    path.write_bytes(bytes(data))


def rezipped(path: Path, folder: Path) -> Iterator[tuple[str, Path, bool]]:
    """(name, file, readable): re-zipped copies torch.load reads, and damaged ones it must not trust."""
    folder.mkdir(parents=True, exist_ok=True)
    yield "deflated (zipfile.ZIP_DEFLATED)", rezip(path, folder / "deflated.pth"), True
    yield "stored, another tool's layout", rezip(path, folder / "stored.pth", zipfile.ZIP_STORED), True
    torch.manual_seed(0)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    views = {"a": base, "b": base[1:3], "c": base.t(), "d": torch.tensor(5.0), "e": torch.zeros(0, 3),
             "w": torch.randn(64, 32).to(torch.bfloat16), "n": torch.tensor([1, 2, 3])}
    torch.save(views, folder / "views.pth")
    yield "views and bf16, deflated", rezip(folder / "views.pth", folder / "views_deflated.pth"), True
    damaged = rezip(path, folder / "damaged.pth")
    info = _entry(damaged, "/data/0")
    data = bytearray(damaged.read_bytes())
    with open(damaged, "rb") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", fh.read(4))
    data[info.header_offset + 30 + name_len + extra_len + info.compress_size // 2] ^= 0x20
    damaged.write_bytes(bytes(data))
    yield "deflated, a byte of a tensor flipped", damaged, False
    torch.save({"small": torch.ones(4), "after": torch.arange(100.0)}, folder / "t.pth")
    short = _entry(folder / "t.pth", "/data/0")
    with zipfile.ZipFile(folder / "t.pth") as zf:
        eight = zf.read(short)[:8]  # the pickle says 16 bytes; the record keeps 8 (with a valid CRC)
    yield "storage bigger than its record", rezip(folder / "t.pth", folder / "short.pth", zipfile.ZIP_STORED,
                                                  {short.filename: eight}), False
    torch.save({"w": torch.ones(3)}, folder / "w.pth")
    yield "LZMA-compressed entries", rezip(folder / "w.pth", folder / "lzma.pth", zipfile.ZIP_LZMA), False


def pickle_bombs(folder: Path) -> Iterator[tuple[str, Path]]:
    """Small .pth files whose data.pkl claims or inflates to far more than any real one."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.zeros(1000)}, folder / "z.pth")
    claim = rezip(folder / "z.pth", folder / "claims_2gb.pth")
    _patch_uncompressed_size(claim, _entry(claim, "data.pkl"), 2_000_000_000)
    yield "data.pkl claiming 2 GB", claim
    tensor = rezip(folder / "z.pth", folder / "tensor_claims_2gb.pth")
    _patch_uncompressed_size(tensor, _entry(tensor, "/data/0"), 2_000_000_000)
    yield "a tensor record claiming 2 GB", tensor
    name = _entry(folder / "z.pth", "/data/0").filename
    longer = rezip(folder / "z.pth", folder / "inflates_past.pth", replace={name: bytes(40_000)})
    _patch_uncompressed_size(longer, _entry(longer, "/data/0"), 4000)
    yield "a tensor inflating past its declared size", longer
    cycle = b"\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s."  # d = {}; d["a"] = d
    deep = b"\x80\x02}" + b"X\x01\x00\x00\x00a}" * 100_000 + b"s" * 100_000 + b"."
    pkl = _entry(folder / "z.pth", "data.pkl").filename
    for label, program in (("a pickled dict containing itself", cycle), ("dicts nested 100,000 deep", deep)):
        yield label, rezip(folder / "z.pth", folder / f"{label.split()[1]}.pth", zipfile.ZIP_DEFLATED, {pkl: program})


def inflating_pickle(folder: Path, size: int) -> Path:
    """A .pth of about size/1000 bytes whose data.pkl inflates to ``size`` (and honestly says so)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.zeros(1000)}, folder / "small.pth")
    path = folder / f"inflates_to_{size}.pth"
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(folder / "small.pth") as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if not info.filename.endswith("data.pkl"):
                zout.writestr(info.filename, zin.read(info))
                continue
            with zout.open(info.filename, "w", force_zip64=True) as fh:  # streamed: no 1 GB in memory here
                program = zin.read(info)[:-1]  # the real pickle without its STOP, then zeros
                fh.write(program)
                left = size - len(program)
                while left > 0:
                    fh.write(chunk[:left])
                    left -= len(chunk)
    return path


# -- safetensors headers and shard indexes ---------------------------------------------------------

_ONE = '{"dtype":"F32","shape":[4],"data_offsets":[0,16]}'


def strict_safetensors() -> Iterator[tuple[str, bytes]]:
    """Headers the reference library refuses, and JSON bombs: each must be refused, not read or raised."""
    cases = {
        "JSON nested 5,000 deep": ('{"__metadata__":{"x":' + "[" * 5000 + "]" * 5000 + "}}", b""),
        "an integer of 5,000 digits": ('{"a":{"dtype":"F32","shape":[' + "9" * 5000 + '],"data_offsets":[0,16]}}',
                                       bytes(16)),
        "Infinity in a shape": ('{"a":{"dtype":"F32","shape":[Infinity],"data_offsets":[0,4]}}', bytes(4)),
        "shape [0, 2**70]": (f'{{"a":{{"dtype":"F32","shape":[0,{2**70}],"data_offsets":[0,0]}}}}', b""),
        "shape 1.5": ('{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}', bytes(4)),
        "true as a dimension": ('{"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}}', bytes(4)),
        "duplicate keys": ('{"a":' + _ONE + ',"a":' + _ONE + "}", bytes(16)),
        "a byte-order mark": ('\ufeff{"a":' + _ONE + "}", bytes(16)),
        "__metadata__ a list": ('{"__metadata__":[1],"a":' + _ONE + "}", bytes(16)),
        "a lone surrogate": ('{"\\ud800":' + _ONE + "}", bytes(16)),
    }
    for name, (text, data) in cases.items():
        raw = text.encode("utf-8")
        yield f"safetensors header: {name}", struct.pack("<Q", len(raw)) + raw + data


def hostile_indexes(folder: Path) -> Iterator[tuple[str, Path]]:
    """Shard indexes that point at themselves, at folders, or are JSON bombs."""
    from safetensors.torch import save_file

    texts = {
        "an index naming itself": '{"weight_map":{"a":"model.safetensors.index.json"}}',
        "an index naming a folder": '{"weight_map":{"a":"."}}',
        "an index nested 5,000 deep": '{"metadata":' + "[" * 5000 + "]" * 5000 + ',"weight_map":{"a":"one.safetensors"}}',
        "an index with a 5,000-digit size": '{"metadata":{"total_size":' + "1" * 5000 + '},"weight_map":{"a":"one.safetensors"}}',
        "an index with a NUL in a shard name": '{"weight_map":{"a":"one\\u0000.safetensors"}}',
    }
    for i, (name, text) in enumerate(texts.items()):
        sub = folder / f"index{i}"
        sub.mkdir(parents=True, exist_ok=True)
        save_file({"a": torch.ones(2)}, sub / "one.safetensors")
        (sub / "model.safetensors.index.json").write_text(text)
        yield name, sub / "model.safetensors.index.json"


def hf_cache_snapshot(root: Path, state: dict[str, torch.Tensor], shards: int = 2) -> Path:
    """The Hugging Face hub cache: snapshots/<rev>/<file> are symlinks to ../../blobs/<hash>."""
    from safetensors.torch import save_file

    repo = root / "models--org--net"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / "0123abcd"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    keys = list(state)
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: state[k].contiguous() for k in keys[i::shards]}, blobs / f"blob{i}")
        (snapshot / name).symlink_to(f"../../blobs/blob{i}")
        weight_map.update(dict.fromkeys(keys[i::shards], name))
    (blobs / "index").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (snapshot / "model.safetensors.index.json").symlink_to("../../blobs/index")
    return snapshot


def many_shards(folder: Path, n: int = 1100) -> dict[str, torch.Tensor]:
    """``n`` safetensors shards of one tensor each (NET_PY's Many) and their index; the tensors written."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    expected, weight_map = {}, {}
    for i in range(n):
        name = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        expected[f"layer{i}.weight"] = torch.full((2,), float(i))
        save_file({f"layer{i}.weight": expected[f"layer{i}.weight"]}, folder / name)
        weight_map[f"layer{i}.weight"] = name
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return expected


# -- mapping files ----------------------------------------------------------------------------------


def _mapping_doc(entry: dict | None = None, **top) -> dict:
    doc = {"format": "spp-gui-mapping", "version": 1, "source": {"spec": "a.pth", "sha256": "ab" * 32},
           "target": {"spec": "torchvision:alexnet"},
           "entries": [{"target": "fc.w", "source": "fc.w", "transform": None, **(entry or {})}]}
    return {**doc, **top}


def malformed_mappings(folder: Path) -> Iterator[tuple[str, Path]]:
    """Mapping files with a wrong field, an impossible transform or a JSON bomb: each one clear refusal."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = {
        "source a list": _mapping_doc(source=["a.pth"]),
        "source a string": _mapping_doc(source="a.pth"),
        "sha256 an integer": _mapping_doc(source={"spec": "a.pth", "sha256": 12}),
        "spec with a newline": _mapping_doc(source={"spec": "a.pth\nimport os"}),
        "a 5,000-character spec": _mapping_doc(target={"spec": "x" * 5000}),
        "select_rows without rows": _mapping_doc({"transform": {"op": "select_rows"}}),
        "spp_grid without bins": _mapping_doc({"transform": {"op": "spp_grid", "levels": [1, 4]}}),
        "transpose dims [true, false]": _mapping_doc({"transform": {"op": "transpose", "dims": [True, False]}}),
        "an unknown transform": _mapping_doc({"transform": {"op": "x\nimport os"}}),
        "entries an object": _mapping_doc(entries={"a": "b"}),
        "confidence NaN": _mapping_doc({"confidence": float("nan")}),
    }
    for i, (name, doc) in enumerate(docs.items()):
        (folder / f"bad{i}.json").write_text(json.dumps(doc))
        yield name, folder / f"bad{i}.json"
    bombs = {
        "JSON nested 100,000 deep": '{"format": "spp-gui-mapping", "version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "a 5,000-digit version": '{"format": "spp-gui-mapping", "version": ' + "1" * 5000 + "}",
        "a 4,400-digit confidence": ('{"format": "spp-gui-mapping", "version": 1, "entries": [{"target": "a", '
                                     '"source": "b", "confidence": ' + "9" * 4400 + "}]}"),
        "not UTF-8": '{"format": "spp-gui-mapping", "version": 1, "source": {"spec": "caf\udce9"}}',
    }
    for i, (name, text) in enumerate(bombs.items()):
        (folder / f"bomb{i}.json").write_bytes(text.encode("utf-8", "surrogateescape"))
        yield name, folder / f"bomb{i}.json"


def code_mapping(folder: Path, spec: str, side: str, name: str, other: str | None = None) -> Path:
    """A mapping whose ``side`` ('source' or 'target') spec is ``spec``, e.g. a marker-writing evil.py:Net;
    ``other`` is the other side's spec (a checkpoint that exists lets apply get as far as the code)."""
    doc = _mapping_doc({"target": "fc.weight", "source": "fc.weight"})
    doc[side] = {"spec": spec}
    if other is not None:
        doc["target" if side == "source" else "source"] = {"spec": other}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(doc))
    return folder / name
