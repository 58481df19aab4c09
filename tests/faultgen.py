"""Damaged and malicious checkpoints, made on the fly; shared by tests and benchmarks/faults.py."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
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
