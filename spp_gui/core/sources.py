"""Sources: anything holding named tensors, read lazily.

Listing a source never reads tensor data: torch zip checkpoints are unpickled onto the meta
device (torch records each storage's byte offset in the file), safetensors headers are parsed
directly. Tensors are read one at a time with plain file reads into fresh memory (unpacking a
deflated zip entry, never past its declared size), checked against the zip CRC where the format
has one, so applying a mapping costs one source tensor at a time rather than a whole checkpoint
and corrupt data is caught before it is used.

A checkpoint file is untrusted input: only regular files are opened, every size and offset is
bounded before it is used, JSON is parsed with caps on nesting and numbers, and whatever is wrong
is one SourceError naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import stat
import struct
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import SourceError, SpecError, UnsafePickleError
from .specs import ModelSpec, build_model, looks_like_model_spec, module_classes, parse_spec
from .tensors import KeyTable, TensorInfo, table_of, torch_dtype

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")
SAFETENSORS_SUFFIX = ".safetensors"
INDEX_SUFFIX = ".index.json"
# Containers that hold a state dict, in the order they are tried.
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights", "params")

#: The most a torch zip's pickle and its other non-tensor entries may unpack to: it is all read at listing.
MAX_PICKLE_BYTES = 1 << 30
#: Deflate cannot expand data more than about 1032 times; an entry claiming more is lying.
MAX_DEFLATE_RATIO = 1032

PICKLE_HELP = (
    "it would need full unpickling, which can run arbitrary code from the file; "
    "if you trust its origin, opt in with --trust-pickle (GUI: 'Trust this file')"
)


class Source:
    """A named-tensor source. ``tensors`` lists them in file order; ``read`` loads one."""

    kind = "source"

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.tensors: KeyTable = {}
        self.notes: list[str] = []
        self.module_classes: dict[str, str] = {}
        self.path: Path | None = None

    def read(self, name: str) -> torch.Tensor:
        """Return tensor ``name`` on the CPU, in memory of its own."""
        raise NotImplementedError

    def sha256(self, progress: Callable[[int, int], None] | None = None) -> str | None:
        """Digest of the file(s) behind the source, or None when it is not a file."""
        return None

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r}: {len(self.tensors)} tensors>"

    def _check_name(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise SourceError(f"{self.spec}: no tensor named {name!r}") from None


def _file_sha256(paths: Iterable[Path], progress: Callable[[int, int], None] | None) -> str:
    paths = list(paths)
    total = sum(p.stat().st_size for p in paths)
    digest = hashlib.sha256()
    done = 0
    for path in paths:
        with _open_regular(path) as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    return digest.hexdigest()


def _pread_into(fh, offset: int, nbytes: int, what: str, path: Path) -> torch.Tensor:
    buf = torch.empty(nbytes, dtype=torch.uint8)
    view = memoryview(buf.numpy()).cast("B")
    done = 0
    while done < nbytes:  # one read returns at most ~2 GiB on Linux
        rest = view[done:]
        got = os.preadv(fh.fileno(), [rest], offset + done) if hasattr(os, "preadv") else _seek_read(fh, rest, offset + done)
        if not got:
            raise SourceError(f"{path}: file ends before the data of {what} (truncated?)")
        done += got
    return buf


def _seek_read(fh, view: memoryview, offset: int) -> int:
    fh.seek(offset)
    return fh.readinto(view)


def _pread(fh, nbytes: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fh.fileno(), nbytes, offset)
    fh.seek(offset)
    return fh.read(nbytes)


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _open_regular(path: Path):
    """Open ``path`` for reading only if it is a regular file: a FIFO or device would block or never end.

    The kind is checked before opening (opening some devices does something) and again on the descriptor.
    """
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            raise SourceError(_not_regular(path, before))
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise SourceError(f"file not found: {path}") from None
    except PermissionError:
        raise SourceError(f"no permission to read {path}") from None
    except OSError as exc:
        raise SourceError(f"cannot open {path} ({exc.strerror})") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped since the stat
            raise SourceError(_not_regular(path, st))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _not_regular(path: Path, st: os.stat_result) -> str:
    kind = ("a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
            else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
            else "a folder" if stat.S_ISDIR(st.st_mode) else "not a file")
    return f"{path} is {kind}, not a regular file; give a checkpoint file or the folder holding one"


# ---------------------------------------------------------------------------------------------
# JSON from a file someone sent: safetensors headers and shard indexes

#: Deeper than any header or index nests (they nest three or four levels); serde_json, behind the
#: reference safetensors library, stops at 128.
MAX_JSON_DEPTH = 64
#: Digits in one JSON integer: 20 hold any 64-bit size or offset.
MAX_JSON_INT_DIGITS = 20


class _JSONProblem(ValueError):
    """What is wrong with otherwise parseable JSON, said as the end of a sentence."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _JSONProblem(f"has the key {twice[:80]!r} twice")
    return obj


def _bounded_int(text: str) -> int:
    if len(text) > MAX_JSON_INT_DIGITS and len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise _JSONProblem(f"holds an integer of {len(text.lstrip('-')):,} digits (at most {MAX_JSON_INT_DIGITS} fit a size)")
    return int(text)


def _no_constant(name: str) -> Any:
    raise _JSONProblem(f"holds {name}, which JSON does not allow")


def _check_nesting(value: Any, raw: bytes) -> None:
    """Depth at most MAX_JSON_DEPTH, and every string valid Unicode (JSON escapes can make lone surrogates)."""
    containers = (dict, list)
    level, depth = [value], 1
    while level:
        if depth > MAX_JSON_DEPTH:
            raise _JSONProblem(f"is nested more than {MAX_JSON_DEPTH} levels deep")
        deeper = []
        for item in level:
            children = item.values() if type(item) is dict else item
            deeper.extend(child for child in children if type(child) in containers)
        level, depth = deeper, depth + 1
    if re.search(rb"\\u[dD][89a-fA-F]", raw):  # only such an escape can make a lone surrogate
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _JSONProblem("holds a string with a lone surrogate escape, which is not valid Unicode") from None


def parse_untrusted_json(raw: bytes, path: Path, what: str, fix: str) -> Any:
    """Parse JSON from a file someone sent; any problem is one SourceError naming ``path`` and ``what``.

    Nesting, integer size, duplicate keys, non-JSON constants and encodings are all checked, so a
    crafted file can neither exhaust the stack or the CPU nor be read two ways.
    """
    def refuse(problem: str) -> SourceError:
        return SourceError(f"{path}: {what} {problem}; {fix}")

    if raw.startswith(b"\xef\xbb\xbf"):
        raise refuse("starts with a UTF-8 byte-order mark, which JSON does not allow")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(f"is not UTF-8 text (byte {exc.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_int=_bounded_int, parse_constant=_no_constant)
        _check_nesting(value, raw)
    except RecursionError:
        raise refuse(f"is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise refuse(f"is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except ValueError as exc:  # _JSONProblem, or a number the json module itself refuses
        raise refuse(str(exc) if isinstance(exc, _JSONProblem) else f"is not valid JSON ({str(exc)[:200]})") from None
    return value


# ---------------------------------------------------------------------------------------------
# torch checkpoints (.pth/.pt/.bin/.ckpt)


def _unwrap(obj: Any, notes: list[str]) -> dict[str, Any]:
    """Find the state dict inside the usual containers; say in ``notes`` what was unwrapped."""
    path: list[str] = []
    for _ in range(4):
        if isinstance(obj, nn.Module):
            notes.append("took the state dict of a pickled " + type(obj).__name__)
            obj = obj.state_dict()
            break
        if not isinstance(obj, dict):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        if "pytorch-lightning_version" in obj or "lightning_version" in obj:
            notes.append("Lightning checkpoint")
        for key in CONTAINER_KEYS:
            if isinstance(obj.get(key), (dict, nn.Module)):
                path.append(key)
                obj = obj[key]
                break
        else:
            break
    if path:
        notes.append("unwrapped " + " -> ".join(f"[{k!r}]" for k in path))
    if not isinstance(obj, dict):
        raise SourceError(f"holds a {type(obj).__name__}, not a dict of tensors")
    flat: dict[str, torch.Tensor] = {}
    _flatten(obj, "", flat)
    if not flat:
        raise SourceError("holds no tensors (keys: " + ", ".join(map(str, list(obj)[:8])) + ")")
    skipped = sum(1 for v in obj.values() if not isinstance(v, (torch.Tensor, dict)))
    if skipped:
        notes.append(f"ignored {skipped} non-tensor entries")
    return flat


#: Nested state dicts deeper than this are refused (a pickle can nest dicts without end, or in a cycle).
MAX_DICT_DEPTH = 64


def _flatten(obj: dict, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Tensors of nested dicts under dotted names, in file order; iterative, so no pickle can overflow the stack."""
    stack = [(prefix, iter(obj.items()))]
    while stack:
        prefix, items = stack[-1]
        for key, value in items:
            name = f"{prefix}{key}"
            if isinstance(value, torch.Tensor):
                out[name] = value
            elif isinstance(value, dict):
                if len(stack) >= MAX_DICT_DEPTH:
                    raise SourceError(f"nests dicts more than {MAX_DICT_DEPTH} levels deep (or in a cycle); "
                                      "not a state dict")
                stack.append((name + ".", iter(value.items())))
                break
        else:
            stack.pop()


class FileSource(Source):
    """A source backed by one file, opened when first read; ``close`` lets go of it until the next read."""

    _fh = None
    _identity: tuple[int, ...] | None = None  # the file as it was listed

    def _file(self):
        if self._fh is None:
            fh = _open_regular(self.path)
            if self._identity is not None and _identity(os.fstat(fh.fileno())) != self._identity:
                fh.close()
                raise SourceError(f"{self.path}: the file changed after it was listed; open it again")
            self._fh = fh
        return self._fh

    def sha256(self, progress=None) -> str:
        return _file_sha256([self.path], progress)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@dataclass(frozen=True, slots=True)
class ZipRecord:
    """Where one zip entry's bytes lie in the file, and what they must unpack to."""

    name: str
    start: int  # file offset of its (possibly compressed) bytes
    compressed: int
    size: int  # unpacked size
    crc: int
    deflated: bool


def _zip_records(fh, infos: list[zipfile.ZipInfo]) -> list[ZipRecord]:
    """Every entry of a zip archive, checked for what a reader must trust before unpacking it."""
    file_size = os.fstat(fh.fileno()).st_size
    records, seen = [], set()
    for info in infos:
        name = info.filename
        if name in seen:
            raise SourceError(f"zip archive has two entries named {name!r} (crafted or damaged)")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise SourceError(f"zip entry {name} is encrypted; torch cannot read it either")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise SourceError(f"zip entry {name} is compressed with method {info.compress_type}, which torch cannot "
                              "read either; re-save the checkpoint with torch.save (or re-zip it with zip -0 / deflate)")
        deflated = info.compress_type == zipfile.ZIP_DEFLATED
        if (not deflated and info.file_size != info.compress_size) or (
                deflated and info.file_size > MAX_DEFLATE_RATIO * info.compress_size + 1024):
            raise SourceError(f"zip entry {name} claims {info.file_size} bytes from {info.compress_size} stored, "
                              "more than its compression allows (crafted or damaged)")
        fh.seek(info.header_offset)
        header = fh.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise SourceError(f"damaged zip entry {name}")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        local_name = fh.read(name_len).decode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")
        if local_name != info.orig_filename:
            raise SourceError(f"damaged zip entry {name} (its local header names {local_name!r})")
        start = info.header_offset + 30 + name_len + extra_len
        if start + info.compress_size > file_size:
            raise SourceError(f"file ends inside zip entry {name} (truncated?)")
        records.append(ZipRecord(name, start, info.compress_size, info.file_size, info.CRC, deflated))
    return records


def _read_record(fh, record: ZipRecord, what: str, path: Path) -> torch.Tensor:
    """A zip entry's bytes in fresh memory, unpacked (never past its declared size) and CRC-checked."""
    if record.deflated:
        raw = _inflate(fh, record, what, path)
    else:
        raw = _pread_into(fh, record.start, record.size, what, path)
    if zlib.crc32(raw.numpy()) != record.crc:
        raise SourceError(f"{path}: data of {what} is corrupt (CRC mismatch); the file is damaged")
    return raw


def _inflate(fh, record: ZipRecord, what: str, path: Path) -> torch.Tensor:
    buf = torch.empty(record.size, dtype=torch.uint8)
    out = memoryview(buf.numpy()).cast("B")
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    done, offset, left = 0, record.start, record.compressed
    try:
        while left and not inflater.eof:
            chunk = _pread(fh, min(left, 1 << 20), offset)
            if not chunk:
                break
            offset += len(chunk)
            left -= len(chunk)
            while chunk and not inflater.eof:
                room = record.size - done
                # asking for one byte when full tells a stream that goes on from one that is just ending
                data = inflater.decompress(chunk, min(max(room, 1), 1 << 24))
                if len(data) > room:
                    raise SourceError(f"{path}: data of {what} unpacks to more than the {record.size} bytes "
                                      f"its zip entry {record.name} declares (crafted or damaged)")
                out[done:done + len(data)] = data
                done += len(data)
                chunk = inflater.unconsumed_tail
    except zlib.error as exc:
        raise SourceError(f"{path}: data of {what} is corrupt ({exc}); the file is damaged") from exc
    if not inflater.eof or done != record.size:
        raise SourceError(f"{path}: data of {what} is corrupt or truncated (unpacked {done} of "
                          f"{record.size} bytes); the file is damaged")
    return buf


class TorchFileSource(FileSource):
    """A ``torch.save`` checkpoint, listed from its pickle alone (meta device)."""

    kind = "torch"

    def __init__(self, path: Path, spec: str | None = None, trust_pickle: bool = False) -> None:
        super().__init__(spec or str(path))
        self.path = path
        self._fh = None
        self._records: dict[str, ZipRecord] = {}  # storage key -> its zip entry
        self._storage_of: dict[str, ZipRecord] = {}  # tensor name -> the entry holding its storage
        self._offsets_computed = False
        self._meta: dict[str, torch.Tensor] = {}
        self._loaded: dict[str, torch.Tensor] | None = None  # legacy format: tensors in memory
        try:
            self._open(trust_pickle)
        except SourceError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise type(exc)(f"{path}: {exc}") from exc.__cause__

    def _open(self, trust_pickle: bool) -> None:
        path = self.path
        assert path is not None
        with _open_regular(path) as fh:
            self._identity = _identity(os.fstat(fh.fileno()))
            is_zip = zipfile.is_zipfile(fh)
            if is_zip:
                self._index_zip(fh)
            else:
                self._check_legacy(fh)
        if is_zip:
            obj = self._torch_load(map_location="meta", trust_pickle=trust_pickle)
            self._meta = _unwrap(obj, self.notes)
            self.tensors = table_of(self._meta)
            self._locate_storages()
        else:
            obj = self._torch_load(map_location="cpu", trust_pickle=trust_pickle)
            self._loaded = _unwrap(obj, self.notes)
            self.tensors = table_of(self._loaded)
            self.notes.append("legacy (non-zip) torch format: read into memory whole")
        if trust_pickle:
            self.notes.append("loaded with full unpickling (trusted by the user)")

    @staticmethod
    def _check_legacy(fh) -> None:
        fh.seek(0)
        head = fh.read(16)
        if not head:
            raise SourceError("file is empty")
        if head[:1] != b"\x80":  # legacy torch files start with a pickle protocol opcode
            if head.startswith(b"PK"):
                raise SourceError("zip archive is damaged (central directory missing or unreadable; truncated?)")
            raise SourceError("not a PyTorch checkpoint (neither a torch zip archive nor a pickle)")

    def _index_zip(self, fh) -> None:
        try:
            with zipfile.ZipFile(fh) as zf:
                records = _zip_records(fh, zf.infolist())
                if not records or "/" not in records[0].name:
                    raise SourceError("zip archive is not a torch.save checkpoint (its first entry is not in a folder)")
                # like torch, read everything from the folder of the archive's first entry
                folder = records[0].name.split("/", 1)[0] + "/"
                by_name = {r.name: r for r in records}
                pickle_record = by_name.get(folder + "data.pkl")
                if pickle_record is None:
                    raise SourceError("zip archive without data.pkl: not a torch.save checkpoint")
                unpacked = sum(r.size for r in records if not r.name.startswith(folder + "data/"))
                if unpacked > MAX_PICKLE_BYTES:
                    raise SourceError(f"its pickle and other non-tensor entries unpack to {unpacked:,} bytes, more "
                                      f"than the {MAX_PICKLE_BYTES:,} a checkpoint may take (a zip bomb, or far more "
                                      "than tensors); if it is genuine, re-save just its state dict with torch.save")
                # The pickle steers everything else: check its CRC before trusting it (streamed: it may be deflated).
                with zf.open(pickle_record.name) as member:
                    while member.read(1 << 20):
                        pass
                version = by_name.get(folder + ".format_version")
                # torch computes the offsets of a format >= 1 archive from its own layout, in key order
                self._offsets_computed = version is not None and zf.read(version.name) >= b"1"
            prefix = folder + "data/"
            self._records = {r.name[len(prefix):]: r for r in records if r.name.startswith(prefix)}
        except zipfile.BadZipFile as exc:
            raise SourceError(f"corrupt checkpoint ({exc})") from exc
        except (OSError, EOFError, ValueError, struct.error) as exc:
            raise SourceError(f"unreadable zip archive ({exc})") from exc

    def _locate_storages(self) -> None:
        """Match each tensor's storage to its zip entry, and check the entry holds what the pickle declares.

        Torch notes on a meta storage where its bytes start. For a format >= 1 archive it computes that
        from where torch.save would have put them, which differs once the archive was re-zipped; those
        offsets still rise in the order the pickle first meets each storage, which torch.save numbers
        0, 1, 2, ...: the n-th smallest offset is storage ``n``.
        """
        offsets = {name: getattr(meta.untyped_storage(), "_checkpoint_offset", None)
                   for name, meta in self._meta.items()}
        if self._offsets_computed:
            ranked = {offset: str(i) for i, offset in enumerate(sorted({o for o in offsets.values() if o is not None}))}
            first = self._records.get("0")
            if ranked and (first is None or min(ranked) != first.start):
                raise SourceError("its tensors cannot be matched to their data (crafted or damaged)")
            record_at = {offset: self._records.get(key) for offset, key in ranked.items()}
        else:
            record_at = {r.start: r for r in self._records.values()}
        for name, meta in self._meta.items():
            record = record_at.get(offsets[name])
            if record is None:
                raise SourceError(f"cannot locate the data of {name!r}")
            storage_bytes = meta.untyped_storage().nbytes()
            if storage_bytes > record.size:
                raise SourceError(f"tensor {name!r} needs {storage_bytes} bytes but its zip entry {record.name} holds "
                                  f"{record.size}; the file is damaged or crafted")
            if meta.numel():
                last = meta.storage_offset() + sum((n - 1) * s for n, s in zip(meta.shape, meta.stride(), strict=True))
                if min(meta.stride(), default=0) < 0 or (last + 1) * meta.element_size() > storage_bytes:
                    raise SourceError(f"tensor {name!r} reaches past the end of its data; the file is damaged or crafted")
            self._storage_of[name] = record

    def _torch_load(self, map_location: str, trust_pickle: bool) -> Any:
        try:
            return torch.load(self.path, map_location=map_location, weights_only=not trust_pickle)
        except pickle.UnpicklingError as exc:
            if trust_pickle:
                raise SourceError(f"cannot unpickle: {exc}") from exc
            detail = str(exc).split("\n")[0]
            if "Weights only load failed" in detail or "weights_only" in str(exc):
                raise UnsafePickleError(f"refused: {PICKLE_HELP}") from exc
            raise SourceError(f"corrupt pickle data ({detail})") from exc
        except (RuntimeError, EOFError, ValueError, KeyError, OSError, AttributeError, TypeError, AssertionError,
                IndexError, struct.error, OverflowError, MemoryError, RecursionError, zipfile.BadZipFile) as exc:
            first = str(exc).strip().split("\n")[0][:300]
            raise SourceError(f"corrupt or unreadable checkpoint ({type(exc).__name__}: {first})") from exc

    def read(self, name: str) -> torch.Tensor:
        self._check_name(name)
        if self._loaded is not None:
            return self._loaded[name].detach().clone()
        meta = self._meta[name]
        raw = _read_record(self._file(), self._storage_of[name], repr(name), self.path)
        nbytes = meta.untyped_storage().nbytes()
        flat = raw[:nbytes].view(meta.dtype) if nbytes else torch.empty(0, dtype=meta.dtype)
        tensor = flat.as_strided(meta.shape, meta.stride(), meta.storage_offset())
        if flat.numel() != meta.numel() or not tensor.is_contiguous():
            tensor = tensor.contiguous()
        return tensor


# ---------------------------------------------------------------------------------------------
# safetensors

_ST_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "U16": "uint16", "U32": "uint32", "U64": "uint64",
}
ST_CODES = {v: k for k, v in _ST_DTYPES.items()}
MAX_HEADER = 100_000_000  # the reference library's limit


def read_safetensors_header(path: Path) -> tuple[dict[str, tuple[TensorInfo, int, int]], dict, int]:
    """Parse and validate a safetensors header: name -> (info, begin, end); metadata; data start."""
    with _open_regular(path) as fh:
        return _read_safetensors_header(fh, path)


def _read_safetensors_header(fh, path: Path) -> tuple[dict[str, tuple[TensorInfo, int, int]], dict, int]:
    size = os.fstat(fh.fileno()).st_size
    head = fh.read(8)
    if len(head) < 8:
        raise SourceError(f"{path}: too short to be a safetensors file ({size} bytes)")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER or n > size - 8:
        raise SourceError(f"{path}: header length {n} is larger than the file allows (corrupt or truncated)")
    raw = fh.read(n)
    if len(raw) != n:
        raise SourceError(f"{path}: file ends inside its header (truncated?)")
    if not raw.startswith(b"{") and not raw.startswith(b"\xef\xbb\xbf"):
        raise SourceError(f"{path}: header does not begin with '{{'; not a safetensors file, or damaged")
    header = parse_untrusted_json(raw, path, "header", ST_FIX)
    if not isinstance(header, dict):
        raise SourceError(f"{path}: header is not a JSON object; {ST_FIX}")
    meta = _st_metadata(header.pop("__metadata__", None), path)
    data_start = 8 + n
    data_len = size - data_start
    out = {name: _st_entry(name, entry, data_len, path) for name, entry in header.items()}
    spans = sorted((begin, end, name) for name, (_info, begin, end) in out.items())
    covered = 0
    for (_b0, e0, n0), (b1, _e1, n1) in zip(spans, spans[1:], strict=False):
        if b1 < e0:
            raise SourceError(f"{path}: tensors {n0!r} and {n1!r} overlap in the file (corrupt or crafted header)")
    for begin, end, name in spans:  # like the reference library: the tensors tile the data exactly
        if begin != covered:
            raise SourceError(f"{path}: {begin - covered} bytes before {name!r} belong to no tensor; {ST_FIX}")
        covered = end
    if covered != data_len:
        raise SourceError(f"{path}: {data_len - covered} bytes after the last tensor belong to no tensor; {ST_FIX}")
    ordered = dict(sorted(out.items(), key=lambda kv: kv[1][1]))
    return ordered, meta, data_start


ST_FIX = "the file is damaged, or was not written by a safetensors writer"
#: torch sizes are int64: no dimension or element count may pass this
MAX_NUMEL = (1 << 63) - 1


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def _st_metadata(meta: Any, path: Path) -> dict[str, str]:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise SourceError(f"{path}: __metadata__ is {_kind(meta)}, not an object of strings; {ST_FIX}")
    for key, value in meta.items():
        if not isinstance(value, str):
            raise SourceError(f"{path}: __metadata__ value for {key[:80]!r} is {_kind(value)}, not a string; {ST_FIX}")
    return meta


def _is_size(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_NUMEL


def _st_entry(name: str, entry: Any, data_len: int, path: Path) -> tuple[TensorInfo, int, int]:
    """One tensor of a safetensors header, checked as strictly as the reference library checks it."""
    if type(entry) is not dict:
        raise SourceError(f"{path}: header entry for {name[:200]!r} is {_kind(entry)}, not an object; {ST_FIX}")
    dtype = entry.get("dtype")
    if type(dtype) is not str or dtype not in _ST_DTYPES:
        shown = repr(dtype[:40]) if isinstance(dtype, str) else _kind(dtype)
        raise SourceError(f"{path}: {name[:200]!r} has dtype {shown}, which is not a safetensors dtype "
                          f"({', '.join(_ST_DTYPES)}); {ST_FIX}")
    shape = entry.get("shape")
    numel = 1
    for dim in shape if type(shape) is list else [None]:  # checked as it goes, like the reference library:
        if type(dim) is not int or not 0 <= dim <= MAX_NUMEL:  # [2**40, 2**40, 0] overflows before the 0
            raise SourceError(f"{path}: {name[:200]!r} has shape {_brief(shape)}; a shape is a list of integers "
                              f"from 0 to 2**63 - 1; {ST_FIX}")
        numel *= dim
        if numel > MAX_NUMEL:
            raise SourceError(f"{path}: {name[:200]!r} has shape {_brief(shape)}, too large for any tensor; {ST_FIX}")
    offsets = entry.get("data_offsets")
    if not (type(offsets) is list and len(offsets) == 2 and _is_size(offsets[0]) and _is_size(offsets[1])
            and offsets[0] <= offsets[1]):
        raise SourceError(f"{path}: {name[:200]!r} has data_offsets {_brief(offsets)}; they must be two integers, "
                          f"begin <= end; {ST_FIX}")
    begin, end = offsets
    info = TensorInfo(name, tuple(shape), _ST_DTYPES[dtype])
    if end > data_len:
        raise SourceError(f"{path}: {name[:200]!r} points outside the file (offsets {begin}..{end}, "
                          f"data {data_len} bytes)")
    if end - begin != info.nbytes:
        raise SourceError(f"{path}: {name[:200]!r} has {end - begin} bytes for shape {info.shape} {info.dtype} "
                          f"({info.nbytes})")
    return info, begin, end


def _brief(value: Any) -> str:
    """A JSON value as an error message shows it: short, whatever its size."""
    if isinstance(value, list) and len(value) > 8:
        return json.dumps(value[:8])[:-1] + ", ...]"
    return json.dumps(value)[:200]


class SafetensorsSource(FileSource):
    kind = "safetensors"

    def __init__(self, path: Path, spec: str | None = None) -> None:
        super().__init__(spec or str(path))
        self.path = path
        with _open_regular(path) as fh:
            self._identity = _identity(os.fstat(fh.fileno()))
            self._entries, self.metadata, self._data_start = _read_safetensors_header(fh, path)
        self.tensors = {k: v[0] for k, v in self._entries.items()}

    def read(self, name: str) -> torch.Tensor:
        info = self._check_name(name)
        _, begin, end = self._entries[name]
        raw = _pread_into(self._file(), self._data_start + begin, end - begin, repr(name), self.path)
        return raw.view(torch_dtype(info.dtype)).reshape(info.shape) if info.numel else torch.empty(info.shape, dtype=torch_dtype(info.dtype))


# ---------------------------------------------------------------------------------------------
# sharded checkpoints


#: Shards kept open between reads; the others are closed until read again (a checkpoint may have thousands).
MAX_OPEN_SHARDS = 8


def _shard_path(index: Path, shard: str) -> Path:
    """Where ``shard`` of ``index`` lies, provided it stays inside the checkpoint.

    Inside means the index's folder, or the ``blobs/`` folder of the Hugging Face hub cache that
    folder is a snapshot of: there ``snapshots/<revision>/<file>`` are symlinks to ``../../blobs/<hash>``.
    """
    folder = Path(os.path.abspath(index)).parent
    path = folder / shard
    try:
        if "\0" in shard:
            raise ValueError("a NUL character")
        target = path.resolve()
        is_dir = target.is_dir()
    except (OSError, ValueError) as exc:
        raise SourceError(f"{index}: shard name {shard[:200]!r} is not a usable file name ({exc}); {INDEX_FIX}") from None
    if is_dir:
        raise SourceError(f"{index}: shard {shard[:200]!r} is a folder, not a shard file; {INDEX_FIX}")
    if folder.resolve() in target.parents:
        return path
    named_inside = not Path(shard).is_absolute() and ".." not in Path(shard).parts
    for snapshot in (folder, *folder.parents):
        if snapshot.parent.name == "snapshots":
            if named_inside and target.parent == (snapshot.parent.parent / "blobs").resolve():
                return path
            break
    raise SourceError(f"{index}: shard {shard!r} lies outside the checkpoint folder (it resolves to {target}); "
                      "copy the shard into the folder of the index")


INDEX_FIX = "the index is damaged, or not a sharded-checkpoint index (*.index.json with a weight_map)"


def _read_weight_map(index: Path) -> dict[str, str]:
    """An index's ``weight_map`` (tensor name -> shard file name), read as untrusted JSON."""
    with _open_regular(index) as fh:
        raw = fh.read(MAX_HEADER + 1)
    if len(raw) > MAX_HEADER:
        raise SourceError(f"{index}: index is larger than {MAX_HEADER:,} bytes; {INDEX_FIX}")
    data = parse_untrusted_json(raw, index, "index", INDEX_FIX)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        raise SourceError(f"{index}: not a sharded-checkpoint index (its weight_map is "
                          f"{'missing' if weight_map is None else _kind(weight_map)}, not an object)")
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise SourceError(f"{index}: weight_map value for {name[:200]!r} is {_kind(shard)}, not a shard file name; "
                              f"{INDEX_FIX}")
    return weight_map


class ShardedSource(Source):
    """``*.safetensors.index.json`` / ``pytorch_model.bin.index.json`` and their shards.

    Each shard is opened to list it and closed again; reads keep the last few open.
    """

    kind = "sharded"

    def __init__(self, index: Path, spec: str | None = None, trust_pickle: bool = False) -> None:
        super().__init__(spec or str(index))
        self.path = index
        weight_map = _read_weight_map(index)
        shard_names = list(dict.fromkeys(weight_map.values()))
        self.shards: dict[str, Source] = {}
        self._where: dict[str, str] = {}  # tensor name -> shard name
        self._open: OrderedDict[str, None] = OrderedDict()  # shards with an open file, least recently read first
        try:
            for shard in shard_names:
                if shard.endswith(INDEX_SUFFIX):
                    raise SourceError(f"{index}: shard {shard[:200]!r} is itself an index; an index lists "
                                      ".safetensors or .bin files")
                src = _open_checkpoint_file(_shard_path(index, shard), trust_pickle=trust_pickle)
                src.close()
                self.shards[shard] = src
                for name, info in src.tensors.items():
                    if weight_map.get(name) == shard:
                        self.tensors[name] = info
                        self._where[name] = shard
            missing = [k for k in weight_map if k not in self.tensors]
            if missing:
                raise SourceError(f"{index}: {len(missing)} keys listed in the index are missing from their shards, e.g. {missing[0]!r}")
        except BaseException:
            self.close()
            raise
        self.notes.append(f"{len(shard_names)} shards")

    def read(self, name: str) -> torch.Tensor:
        self._check_name(name)
        shard = self._where[name]
        self._open[shard] = None
        self._open.move_to_end(shard)
        while len(self._open) > MAX_OPEN_SHARDS:
            self.shards[self._open.popitem(last=False)[0]].close()
        return self.shards[shard].read(name)

    def sha256(self, progress=None) -> str:
        return _file_sha256([self.path, *(s.path for s in self.shards.values())], progress)

    def close(self) -> None:
        for src in self.shards.values():
            src.close()
        self._open.clear()


# ---------------------------------------------------------------------------------------------
# in-memory sources: model specs, modules, dicts


class StateDictSource(Source):
    """A live ``dict[str, Tensor]`` (meta tensors allowed for listing)."""

    kind = "dict"

    def __init__(self, state: dict[str, torch.Tensor], spec: str = "<state dict>") -> None:
        super().__init__(spec)
        self._state = state
        self.tensors = table_of(state)

    def read(self, name: str) -> torch.Tensor:
        self._check_name(name)
        tensor = self._state[name]
        if tensor.is_meta:
            raise SourceError(f"{self.spec}: {name!r} is a meta tensor and holds no data")
        return tensor.detach().to("cpu", copy=True)


class ModelSource(StateDictSource):
    """A model spec's freshly initialised state dict: listed on meta, built for real when read."""

    kind = "model"

    def __init__(self, spec: ModelSpec | str, seed: int = 0) -> None:
        spec = parse_spec(spec) if isinstance(spec, str) else spec
        meta = build_model(spec, device="meta")
        super().__init__(meta.state_dict(), spec.text)
        self.model_spec = spec
        self.module_classes = module_classes(meta)
        self.seed = seed
        self.notes.append(f"freshly initialised (seed {seed})")
        self._real: dict[str, torch.Tensor] | None = None

    def read(self, name: str) -> torch.Tensor:
        self._check_name(name)
        if self._real is None:
            self._real = build_model(self.model_spec, device="cpu", seed=self.seed).state_dict()
        return self._real[name].detach().clone()


# ---------------------------------------------------------------------------------------------
# torchvision pretrained weights


def torchvision_weights_path(model: str, weights: str) -> tuple[Path, str]:
    """Where torch's hub cache keeps ``weights`` of torchvision ``model``, and its URL."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(model)
    except (ValueError, KeyError) as exc:
        raise SpecError(f"torchvision has no pretrained weights for {model!r}") from exc
    try:
        member = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        names = ", ".join(m.name for m in enum)
        raise SpecError(f"unknown weights {weights!r} for torchvision {model!r}; available: {names}") from None
    url = member.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url), url


def torchvision_weights_source(spec: ModelSpec, download: bool = True, progress: bool = True) -> Source:
    path, url = torchvision_weights_path(spec.name, spec.weights or "DEFAULT")
    if not path.exists():
        if not download or os.environ.get("SPP_GUI_NO_DOWNLOAD"):
            raise SourceError(f"torchvision weights {spec.text!r} are not in the cache; expected file: {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), progress=progress)
        except Exception as exc:
            raise SourceError(
                f"torchvision weights {spec.text!r} are not in torch's cache and downloading {url} failed "
                f"({type(exc).__name__}: {exc}). Offline? Copy the file to {path}"
            ) from exc
    src = open_file(path)
    src.spec = spec.text
    src.notes.append(f"torchvision weights from {path}")
    return src


# ---------------------------------------------------------------------------------------------


def open_file(path: Path, trust_pickle: bool = False) -> Source:
    """Open a checkpoint file or folder by what it is, not only by its name."""
    path = Path(path).expanduser()
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        raise SourceError(f"file not found: {path}") from None
    except OSError as exc:
        raise SourceError(f"cannot open {path} ({exc.strerror})") from exc
    if is_dir:
        for candidate in ("model.safetensors.index.json", "pytorch_model.bin.index.json", "model.safetensors",
                          "pytorch_model.bin"):
            if (path / candidate).exists():
                return open_file(path / candidate, trust_pickle)
        indexes = sorted(path.glob("*" + INDEX_SUFFIX))
        if len(indexes) == 1:
            return open_file(indexes[0], trust_pickle)
        raise SourceError(f"{path} is a folder without a checkpoint (no *.safetensors, *.bin or index.json)")
    if path.name.endswith(INDEX_SUFFIX):
        return ShardedSource(path, trust_pickle=trust_pickle)
    return _open_checkpoint_file(path, trust_pickle)


def _open_checkpoint_file(path: Path, trust_pickle: bool = False) -> Source:
    """One checkpoint file, never a folder or an index, by what it holds."""
    with _open_regular(path) as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise SourceError(f"{path}: file is empty")
        head = fh.read(9)
    is_zip_or_pickle = head[:2] == b"PK" or head[:1] == b"\x80"
    if path.suffix == SAFETENSORS_SUFFIX or (not is_zip_or_pickle and len(head) > 8 and head[8:9] == b"{"):
        return SafetensorsSource(path)
    return TorchFileSource(path, trust_pickle=trust_pickle)


def load_source(
    source: str | os.PathLike | Source | nn.Module | dict,
    trust_pickle: bool = False,
    download: bool = True,
) -> Source:
    """Open anything holding named tensors: a checkpoint path, a spec, a module or a state dict.

    Accepted strings: a checkpoint file or folder (``.pth .pt .bin .ckpt .safetensors``, an
    ``*.index.json``), ``torchvision:NAME:WEIGHTS`` for torchvision's pretrained weights, or a
    model spec (``torchvision:resnet50``, ``spp_gui:alexnet_spp``, ``net.py:Net``) for its freshly
    initialised tensors.
    """
    if isinstance(source, Source):
        return source
    if isinstance(source, nn.Module):
        src = StateDictSource(source.state_dict(), f"<{type(source).__name__}>")
        src.module_classes = module_classes(source)
        return src
    if isinstance(source, dict):
        return StateDictSource(source)
    text = os.fspath(source)
    if Path(text).expanduser().exists() and not looks_like_model_spec(text):
        return open_file(Path(text), trust_pickle=trust_pickle)
    if looks_like_model_spec(text):
        spec = parse_spec(text)
        if spec.kind == "torchvision" and spec.weights:
            return torchvision_weights_source(spec, download=download)
        return ModelSource(spec)
    raise SourceError(f"file not found: {text}" if _looks_like_path(text) else
                      f"{text!r} is neither an existing checkpoint file nor a model spec "
                      "(torchvision:NAME[:WEIGHTS], spp_gui:NAME, path/net.py:Class)")


def _looks_like_path(text: str) -> bool:
    return os.sep in text or text.endswith((*TORCH_SUFFIXES, SAFETENSORS_SUFFIX, ".json"))

