"""Sources: anything holding named tensors, read lazily.

Listing a source never reads tensor data: torch zip checkpoints are unpickled onto the meta
device (torch records each storage's byte offset in the file), safetensors headers are parsed
directly. Tensors are read one at a time with plain file reads into fresh memory (unpacking a
deflated zip entry, never past its declared size), checked against the zip CRC where the format
has one, so applying a mapping costs one source tensor at a time rather than a whole checkpoint
and corrupt data is caught before it is used.

Tensors stored verbatim can also be located (:meth:`Source.locate`) and copied file to file by a
:class:`CopyPass`, which checks their CRCs and hashes the files in the same single pass; file
digests are cached per file identity (:func:`cached_sha256`), so a file is hashed once.

A checkpoint file is untrusted input: only regular files are opened, every size and offset is
bounded before it is used, JSON is parsed with caps on nesting and numbers, and whatever is wrong
is one SourceError naming the file.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import importlib
import io
import json
import math
import os
import pickle
import queue
import re
import stat
import struct
import sys
import threading
import time
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import torch
from torch import nn

from .atomic import atomic_write_text
from .errors import SourceError, SpecError, UnsafePickleError
from .specs import ModelSpec, build_model, looks_like_model_spec, module_classes, parse_spec
from .steps import run_steps
from .tensors import KeyTable, TensorInfo, dtype_name, table_of, torch_dtype

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")
SAFETENSORS_SUFFIX = ".safetensors"
INDEX_SUFFIX = ".index.json"
#: Keys that hold a state dict, in the order one is chosen when a checkpoint holds several: EMA weights
#: first, as timm's ``load_state_dict`` chooses (state_dict_ema, model_ema, state_dict, model), then the
#: names other trainers use.
CONTAINER_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict", "ema", "ema_params", "state_dict", "model",
                  "model_state_dict", "module", "net", "network", "weights", "params")
#: Keys of training state kept beside the weights (optimizer moments, schedules, arguments): never source tensors.
TRAINING_STATE_KEYS = frozenset({
    "optimizer", "optimizers", "optimizer_state_dict", "optimizer_states", "optim", "opt", "opt_state",
    "scheduler", "schedulers", "lr_scheduler", "lr_schedulers", "scheduler_state_dict", "scaler", "grad_scaler",
    "amp", "amp_scaler", "loss_scaler", "args", "hparams", "hyper_parameters", "config", "cfg", "epoch",
    "global_step", "step", "iteration", "callbacks", "loops", "rng_state", "rng_states", "metric", "best_metric",
    "version", "arch",
})
#: The spec suffix that names a checkpoint's container: ``ckpt.pth#state_dict_ema``.
KEY_SEPARATOR = "#"

#: The most a torch zip's pickle and its other non-tensor entries may unpack to: it is all read at listing,
#: and unpickling holds about twice that. A state dict's pickle is metadata: ~150 bytes a tensor, so
#: 256 MiB is a million tensors with room to spare.
MAX_PICKLE_BYTES = 256 << 20
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
        #: The checkpoint's weight containers (state_dict, state_dict_ema, ...), the preferred first; the one read
        self.containers: list[str] = []
        self.container: str | None = None
        self.container_sizes: dict[str, int] = {}

    @property
    def file_backed(self) -> bool:
        """Whether the tensors come from files on disk (a checkpoint, not a model's own init), so
        there is a sha256 to record in a mapping."""
        return self.path is not None and not isinstance(self, StateDictSource)

    @property
    def random_init(self) -> bool:
        """Whether the tensors are a model spec's fresh initialisation (no pretrained weights)."""
        return isinstance(self, ModelSource)

    def read(self, name: str) -> torch.Tensor:
        """Return tensor ``name`` on the CPU, in memory of its own."""
        raise NotImplementedError

    def sha256(self, progress: Callable[[int, int], None] | None = None) -> str | None:
        """Digest of the file(s) behind the source, or None when it is not a file."""
        return None

    def iter_sha256(self) -> Generator[tuple[int, int], None, str | None]:
        """:meth:`sha256` as a generator of (bytes done, total), for a worker that shows it and may stop
        it (closed, it stops between two reads); a digest remembered for the unchanged files costs nothing."""
        paths = [path for path, _ in self.files()]
        if not paths:
            return self.sha256()
        return (yield from file_sha256_steps(paths))

    def locate(self, name: str) -> ByteSpan | None:
        """Where tensor ``name``'s bytes lie verbatim in a file (row-major, uncompressed), or None."""
        self._check_name(name)
        return None

    def files(self) -> list[tuple[Path, FileSource | None]]:
        """The files :meth:`sha256` digests, in its order, each with the source that reads tensors from it."""
        return []

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
    return run_steps(file_sha256_steps(paths), (lambda step: progress(*step)) if progress is not None else None)


def _pread_into(fh, offset: int, nbytes: int, what: str, path: Path) -> torch.Tensor:
    buf = torch.empty(nbytes, dtype=torch.uint8)
    view = buf.numpy().data.cast("B")
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
        for k, _ in pairs:
            if k in seen:
                raise _JSONProblem(f"has the key {k[:80]!r} twice")
            seen.add(k)
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
        deeper: list[Any] = []
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


def _is_training_state(key: Any, value: Any) -> bool:
    """Optimizer, scheduler, scaler, arguments...: by name, or by the shape of an optimizer's state dict."""
    name = str(key).lower()
    if name in TRAINING_STATE_KEYS or any(part in name for part in ("optim", "scheduler", "scaler")):
        return True
    return isinstance(value, dict) and "state" in value and "param_groups" in value


def _holds_tensors(value: Any) -> bool:
    """Whether a container value holds at least one tensor (dicts walked without recursion, bounded)."""
    if isinstance(value, nn.Module):
        return bool(value.state_dict())
    if not isinstance(value, dict):
        return False
    stack, seen = [value], 0
    while stack and seen < 100_000:
        item = stack.pop()
        for child in item.values():
            seen += 1
            if isinstance(child, torch.Tensor):
                return True
            if isinstance(child, dict):
                stack.append(child)
    return False


def weight_containers(obj: Any) -> list[str]:
    """The keys of a checkpoint dict that hold weights, the preferred first (see CONTAINER_KEYS).

    Empty for a plain state dict. Known containers come first; other keys holding tensors follow,
    in file order; training state (optimizer, scheduler, scaler, args...) is never one.
    """
    if not isinstance(obj, dict) or (obj and all(isinstance(v, torch.Tensor) for v in obj.values())):
        return []
    known = [k for k in CONTAINER_KEYS if isinstance(obj.get(k), (dict, nn.Module)) and _holds_tensors(obj[k])]
    others = [k for k, v in obj.items() if isinstance(k, str) and k not in known and isinstance(v, (dict, nn.Module))
              and not _is_training_state(k, v) and _holds_tensors(v)]
    return known + others


def _why_chosen(key: str) -> str:
    if key in ("state_dict_ema", "model_ema", "state_dict", "model"):
        return "timm's preference: EMA weights first"
    return "EMA weights first, as timm prefers" if "ema" in key else "the preferred container"


def _unwrap(obj: Any, notes: list[str], key: str | None = None) -> tuple[dict[str, Any], str | None, list[str]]:
    """Find the state dict inside the usual containers; say in ``notes`` what was unwrapped.

    ``key`` names the top-level container to use. Returns the tensors under dotted names, the
    top-level container used (None: the dict itself) and every container the dict holds.
    """
    path: list[str] = []
    chosen, available = None, weight_containers(obj)
    if key is not None:
        if not isinstance(obj, dict) or key not in available:
            have = ", ".join(repr(k) for k in available) if available else "none: it holds a single state dict"
            raise SourceError(f"has no weight container {key!r} (containers in the file: {have})")
    for level in range(4):
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
        pick: str | None
        if level == 0 and key is not None:
            pick = key
        else:
            pick = next((k for k in CONTAINER_KEYS if isinstance(obj.get(k), (dict, nn.Module))
                         and _holds_tensors(obj[k])), None)
        if pick is None:
            break
        if level == 0:
            chosen = pick
            others = [k for k in available if k != pick]
            if others:
                why = "as asked" if key is not None else _why_chosen(pick)
                notes.append(f"using {pick} ({why}); also in the file: {', '.join(others)} "
                             f"\u2014 choose with --source-key (or the spec PATH{KEY_SEPARATOR}KEY)")
        path.append(pick)
        obj = obj[pick]
    if path:
        notes.append("unwrapped " + " -> ".join(f"[{k!r}]" for k in path))
    if not isinstance(obj, dict):
        raise SourceError(f"holds a {type(obj).__name__}, not a dict of tensors")
    left_out = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor) and _is_training_state(k, v)]
    if left_out:
        notes.append("left out training state: " + ", ".join(left_out))
        obj = {k: v for k, v in obj.items() if str(k) not in left_out}
    flat: dict[str, torch.Tensor] = {}
    _flatten(obj, "", flat)
    if not flat:
        raise SourceError("holds no tensors (keys: " + ", ".join(map(str, list(obj)[:8])) + ")")
    skipped = sum(1 for v in obj.values() if not isinstance(v, (torch.Tensor, dict)))
    if skipped:
        notes.append(f"ignored {skipped} non-tensor entries")
    return flat, chosen, available


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

    path: Path  # every file source has one (Source.path is None for the in-memory ones)
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

    def files(self) -> list[tuple[Path, FileSource | None]]:
        return [(self.path, self)]

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
    if zlib.crc32(raw.numpy().data) != record.crc:
        raise SourceError(f"{path}: data of {what} is corrupt (CRC mismatch); the file is damaged")
    return raw


def _inflate(fh, record: ZipRecord, what: str, path: Path) -> torch.Tensor:
    buf = torch.empty(record.size, dtype=torch.uint8)
    out = buf.numpy().data.cast("B")
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


#: Globals a training checkpoint holds beside its weights that are safe to build under weights_only:
#: what timm's own loader allows (argparse.Namespace, the training script's ``args``).
CHECKPOINT_SAFE_GLOBALS = (argparse.Namespace,)
_globals_lock = threading.Lock()
_globals_users = 0
_globals_added: list[Any] = []


@contextlib.contextmanager
def _checkpoint_globals() -> Generator[None, None, None]:
    """Allow CHECKPOINT_SAFE_GLOBALS for weights_only loads while one of ours runs, never for the process.

    torch keeps one process-wide allowlist; ``torch.serialization.safe_globals`` entered from two
    threads at once would remove the globals under the other's feet, so loads here count themselves
    in and out, and only globals not already allowed are added (and removed again).
    """
    global _globals_users, _globals_added
    with _globals_lock:
        if _globals_users == 0:
            present = set(map(id, torch.serialization.get_safe_globals()))
            _globals_added = [g for g in CHECKPOINT_SAFE_GLOBALS if id(g) not in present]
            torch.serialization.add_safe_globals(_globals_added)
        _globals_users += 1
    try:
        yield
    finally:
        with _globals_lock:
            _globals_users -= 1
            if _globals_users == 0 and _globals_added:
                remove = {id(g) for g in _globals_added}
                kept = [g for g in torch.serialization.get_safe_globals() if id(g) not in remove]
                torch.serialization.clear_safe_globals()
                torch.serialization.add_safe_globals(kept)
                _globals_added = []


#: Blocking globals an error names before it says "and N more".
GLOBALS_NAMED = 5


def _needs_globals(path: Path, message: str) -> str:
    """'unpickling it needs `mod.Class`, which ...; ' for a file weights_only loading refused, or ''."""
    try:
        with _checkpoint_globals():
            names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - a legacy or odd file: fall back on the one torch named
        found = re.search(r"GLOBAL ([\w.]+)", message)
        names = [found.group(1)] if found else []
    if not names:
        return ""
    shown = ", ".join(f"`{printable_name(n)}`" for n in names[:GLOBALS_NAMED])
    more = f" and {len(names) - GLOBALS_NAMED} more" if len(names) > GLOBALS_NAMED else ""
    return f"this file needs {shown}{more} to be unpickled, which weights_only loading does not allow; "


def printable_name(name: str) -> str:
    """A global's name from a file, safe to show: printable, at most 120 characters."""
    name = "".join(c if c.isprintable() else "?" for c in name)
    return name if len(name) <= 120 else name[:117] + "..."


TORCHSCRIPT_HELP = (
    "a TorchScript module (torch.jit.save), not a torch.save checkpoint; reading its weights means "
    "torch.jit.load, which runs code from the file. If you trust its origin, opt in with --trust-pickle "
    "(GUI: 'Trust this file'), or convert it once where you trust it: "
    "torch.save(torch.jit.load(f, map_location='cpu').state_dict(), 'weights.pth')"
)


def _jit_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    except Exception as exc:  # noqa: BLE001 - torch.jit raises RuntimeError and more for a bad archive
        first = str(exc).strip().split("\n")[0][:300]
        raise SourceError(f"cannot load TorchScript module ({type(exc).__name__}: {first})") from exc


def _every_tensor(obj: Any, limit: int = 10_000_000) -> list[torch.Tensor]:
    """Every tensor a loaded checkpoint holds, in dicts, lists, tuples and namespaces (no recursion; cycles safe)."""
    found: list[torch.Tensor] = []
    stack: list[Any] = [obj]
    seen: set[int] = set()
    while stack and len(seen) < limit:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            found.append(item)
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, nn.Module):
            stack.extend(item.state_dict().values())
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)
        elif isinstance(item, argparse.Namespace):
            stack.extend(vars(item).values())
    return found


def _container_sizes(obj: Any, containers: list[str]) -> dict[str, int]:
    """Tensors in each container, for a chooser to show."""
    sizes = {}
    for key in containers:
        value = obj[key]
        if isinstance(value, nn.Module):
            sizes[key] = len(value.state_dict())
            continue
        flat: dict[str, torch.Tensor] = {}
        try:
            _flatten(value, "", flat)
        except SourceError:
            continue
        sizes[key] = len(flat)
    return sizes


def _zip_kind(names: Iterable[str]) -> str:
    """'; it is ...' for a zip archive that is another format's, with what to do; else ''."""
    names = set(names)
    if "config.json" in names and any(n.endswith(".weights.h5") or n == "model.weights.h5" for n in names):
        return "; " + KERAS_HELP
    if names and all(n.endswith(".npy") for n in names if not n.endswith("/")):
        return "; it is a numpy .npz archive: open it by its .npz name"
    return ""


class TorchFileSource(FileSource):
    """A ``torch.save`` checkpoint, listed from its pickle alone (meta device)."""

    kind = "torch"

    def __init__(self, path: Path, spec: str | None = None, trust_pickle: bool = False,
                 source_key: str | None = None) -> None:
        super().__init__(spec or str(path))
        self.path = path
        self._fh = None
        self._records: dict[str, ZipRecord] = {}  # storage key -> its zip entry
        self._storage_of: dict[str, ZipRecord] = {}  # tensor name -> the entry holding its storage
        self._offsets_computed = False
        self._meta: dict[str, torch.Tensor] = {}
        self._loaded: dict[str, torch.Tensor] | None = None  # legacy format: tensors in memory
        try:
            self._open(trust_pickle, source_key)
        except SourceError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise type(exc)(f"{path}: {exc}") from exc.__cause__

    def _open(self, trust_pickle: bool, source_key: str | None) -> None:
        path = self.path
        assert path is not None
        torchscript = False
        with _open_regular(path) as fh:
            self._identity = _identity(os.fstat(fh.fileno()))
            is_zip = zipfile.is_zipfile(fh)
            if is_zip:
                torchscript = self._index_zip(fh)
            else:
                self._check_legacy(fh)
        if torchscript:
            if not trust_pickle:
                raise UnsafePickleError(TORCHSCRIPT_HELP)
            obj = _jit_state_dict(path)
            self.notes.append("TorchScript module: its state dict, read into memory whole")
            self._loaded = _unwrap(obj, self.notes)[0]
            self.tensors = table_of(self._loaded)
        elif is_zip:
            obj = self._torch_load(map_location="meta", trust_pickle=trust_pickle)
            self._meta = self._choose(obj, source_key)
            self.tensors = table_of(self._meta)
            self._locate_storages()
        else:
            obj = self._torch_load(map_location="cpu", trust_pickle=trust_pickle)
            self._loaded = self._choose(obj, source_key)
            self.tensors = table_of(self._loaded)
            self.notes.append("legacy (non-zip) torch format: read into memory whole")
        if trust_pickle:
            self.notes.append("loaded with full unpickling (trusted by the user)")

    def _choose(self, obj: Any, source_key: str | None) -> dict[str, torch.Tensor]:
        self._every_tensor = _every_tensor(obj)
        flat, self.container, self.containers = _unwrap(obj, self.notes, source_key)
        self.container_sizes = _container_sizes(obj, self.containers)
        if self.container is not None and (source_key is not None or len(self.containers) > 1):
            # the spec says which container, so a mapping made from it reads the same one again
            self.spec = join_source_key(os.path.abspath(self.path), self.container)
        return flat

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

    def _index_zip(self, fh) -> bool:
        """Index a torch.save archive's entries; True if it is a TorchScript archive instead."""
        try:
            with zipfile.ZipFile(fh) as zf:
                records = _zip_records(fh, zf.infolist())
                if not records or "/" not in records[0].name:
                    raise SourceError("zip archive is not a torch.save checkpoint (its first entry is not in a "
                                      f"folder){_zip_kind({r.name: r for r in records})}")
                # like torch, read everything from the folder of the archive's first entry
                folder = records[0].name.split("/", 1)[0] + "/"
                by_name = {r.name: r for r in records}
                pickle_record = by_name.get(folder + "data.pkl")
                if folder + "constants.pkl" in by_name or any(n.startswith(folder + "code/") for n in by_name):
                    return True  # TorchScript: torch.jit.save, not torch.save
                if pickle_record is None:
                    raise SourceError(f"zip archive without data.pkl: not a torch.save checkpoint{_zip_kind(by_name)}")
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
            return False
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
        def offset_of(meta: torch.Tensor) -> int | None:
            return getattr(meta.untyped_storage(), "_checkpoint_offset", None)

        offsets = {name: offset_of(meta) for name, meta in self._meta.items()}
        if self._offsets_computed:
            # every storage of the file counts, those of the containers not read (optimizer, other weights) too
            every = {offset_of(t) for t in self._every_tensor} | set(offsets.values())
            ranked = {offset: str(i) for i, offset in enumerate(sorted(o for o in every if o is not None))}
            first = self._records.get("0")
            if ranked and (first is None or min(ranked) != first.start):
                raise SourceError("its tensors cannot be matched to their data (crafted or damaged)")
            record_at = {offset: self._records.get(key) for offset, key in ranked.items()}
        else:
            record_at = {r.start: r for r in self._records.values()}
        for name, meta in self._meta.items():
            offset = offsets[name]
            record = record_at.get(offset) if offset is not None else None
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
            if trust_pickle:
                return torch.load(self.path, map_location=map_location, weights_only=False)
            with _checkpoint_globals():
                return torch.load(self.path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            if trust_pickle:
                raise SourceError(f"cannot unpickle: {exc}") from exc
            detail = str(exc).split("\n")[0]
            if "Weights only load failed" in detail or "weights_only" in str(exc):
                raise UnsafePickleError(f"refused: {_needs_globals(self.path, str(exc))}{PICKLE_HELP}") from exc
            raise SourceError(f"corrupt pickle data ({detail})") from exc
        except (RuntimeError, EOFError, ValueError, KeyError, OSError, AttributeError, TypeError, AssertionError,
                IndexError, struct.error, OverflowError, MemoryError, RecursionError, zipfile.BadZipFile) as exc:
            first = str(exc).strip().split("\n")[0][:300]
            raise SourceError(f"corrupt or unreadable checkpoint ({type(exc).__name__}: {first})") from exc

    def locate(self, name: str) -> ByteSpan | None:
        self._check_name(name)
        if self._loaded is not None:
            return None
        meta, record = self._meta[name], self._storage_of[name]
        if record.deflated or not meta.is_contiguous():
            return None
        size = meta.element_size()
        return ByteSpan(self, record.start + int(meta.storage_offset()) * size, meta.numel() * size, record)

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


def _is_size(value: Any) -> TypeGuard[int]:
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
    dims: list[Any] = shape if type(shape) is list else [None]
    numel = 1
    for dim in dims:  # checked as it goes, like the reference library:
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
    info = TensorInfo(name, tuple(dims), _ST_DTYPES[dtype])
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

    def locate(self, name: str) -> ByteSpan | None:
        self._check_name(name)
        _, begin, end = self._entries[name]
        return ByteSpan(self, self._data_start + begin, end - begin)

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
    path: Path  # the index

    def __init__(self, index: Path, spec: str | None = None, trust_pickle: bool = False) -> None:
        super().__init__(spec or str(index))
        self.path = index
        weight_map = _read_weight_map(index)
        shard_names = list(dict.fromkeys(weight_map.values()))
        self.shards: dict[str, FileSource] = {}
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

    def locate(self, name: str) -> ByteSpan | None:
        self._check_name(name)
        return self.shards[self._where[name]].locate(name)

    def files(self) -> list[tuple[Path, FileSource | None]]:
        return [(self.path, None), *((s.path, s) for s in self.shards.values())]

    def sha256(self, progress=None) -> str:
        return _file_sha256([path for path, _ in self.files()], progress)

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


# ---------------------------------------------------------------------------------------------
# other formats: named for what they are, read where that is safe


WEIGHTS_TO_SAFETENSORS = ("save its weights as safetensors where you trust it, e.g. "
                          "`safetensors.numpy.save_file({name: array, ...}, 'weights.safetensors')`, and open that")
KERAS_HELP = ("a Keras model or weights file (.keras: config.json + model.weights.h5; .h5: HDF5), not a PyTorch "
              "checkpoint; load it in Keras and " + WEIGHTS_TO_SAFETENSORS.replace("{name: array, ...}",
              "{w.path.replace('/', '.'): w.numpy() for w in model.weights}"))
ONNX_HELP = ("an ONNX model, not a PyTorch checkpoint; its weights are the graph's initializers: with the onnx "
             "package, " + WEIGHTS_TO_SAFETENSORS.replace("{name: array, ...}", "{t.name: onnx.numpy_helper.to_array(t) "
                                                          "for t in onnx.load(f).graph.initializer}"))
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _looks_like_onnx(head: bytes) -> bool:
    """An ONNX ModelProto opens with ir_version (field 1, a small varint) then producer_name or the graph."""
    return len(head) >= 3 and head[0] == 0x08 and head[1] < 0x80 and head[2] in (0x12, 0x1a, 0x22, 0x2a, 0x3a, 0x42)


class NpzSource(FileSource):
    """A numpy ``.npz`` archive (``numpy.savez``): one ``.npy`` entry a tensor, read with no pickle allowed."""

    kind = "npz"

    def __init__(self, path: Path, spec: str | None = None) -> None:
        super().__init__(spec or str(path))
        self.path = path
        self._entries: dict[str, tuple[ZipRecord, Any, bool, int]] = {}  # name -> record, dtype, fortran, data offset
        import numpy as np

        with _open_regular(path) as fh:
            self._identity = _identity(os.fstat(fh.fileno()))
            try:
                with zipfile.ZipFile(fh) as zf:
                    records = _zip_records(fh, zf.infolist())
                    for record in records:
                        if record.name.endswith("/"):
                            continue
                        if not record.name.endswith(".npy"):
                            raise SourceError(f"{path}: entry {record.name[:200]!r} is not a .npy array; not a numpy "
                                              ".npz archive")
                        with zf.open(record.name) as member:
                            dtype, shape, fortran, offset = self._header(np, member, record)
                        name = record.name[:-4]
                        self._entries[name] = (record, dtype, fortran, offset)
                        self.tensors[name] = TensorInfo(name, shape, dtype_name(torch.from_numpy(
                            np.empty(0, dtype.newbyteorder("="))).dtype))
            except zipfile.BadZipFile as exc:
                raise SourceError(f"{path}: damaged .npz archive ({exc})") from exc
            except SourceError as exc:
                raise SourceError(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}") from None
        if not self.tensors:
            raise SourceError(f"{path}: the .npz archive holds no arrays")
        self.notes.append(f"numpy .npz archive: {len(self.tensors)} arrays")

    def _header(self, np: Any, member: Any, record: ZipRecord) -> tuple[Any, tuple[int, ...], bool, int]:
        what = f"entry {record.name[:200]!r}"
        try:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(member, max_header_size=10_000)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(member, max_header_size=10_000)
            else:
                raise ValueError(f"npy version {version}")
        except (ValueError, OSError, EOFError, SyntaxError, TypeError, zlib.error) as exc:
            raise SourceError(f"{what} is not a readable .npy array ({str(exc)[:200]})") from None
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biufc":
            raise SourceError(f"{what} holds {dtype} values, not numbers (numpy would need allow_pickle for objects); "
                              "only numeric arrays are tensors")
        try:
            torch.from_numpy(np.empty(0, dtype.newbyteorder("=")))
        except TypeError:
            raise SourceError(f"{what} is {dtype}, which torch has no dtype for") from None
        if any(d < 0 for d in shape) or math.prod(shape) > MAX_NUMEL:
            raise SourceError(f"{what} has shape {shape}, too large for any tensor")
        offset = member.tell()
        if offset + math.prod(shape) * dtype.itemsize > record.size:
            raise SourceError(f"{what} is shorter than its shape {shape} {dtype} needs (damaged or crafted)")
        return dtype, tuple(int(d) for d in shape), bool(fortran), offset

    def read(self, name: str) -> torch.Tensor:
        import numpy as np

        info = self._check_name(name)
        record, dtype, fortran, offset = self._entries[name]
        raw = _read_record(self._file(), record, repr(name), self.path)
        array = np.frombuffer(raw.numpy(), dtype=dtype, count=info.numel, offset=offset)
        array = array.reshape(info.shape, order="F" if fortran else "C")
        array = np.ascontiguousarray(array, dtype=dtype.newbyteorder("="))
        return torch.from_numpy(array.copy() if array.base is not None else array)


# torch.distributed.checkpoint folders: a .metadata pickle and *.distcp files of torch.save blobs

#: The globals a DCP .metadata pickle names: its own dataclasses, torch sizes, dtypes and layouts, a path.
_DCP_GLOBALS = {
    "torch.distributed.checkpoint.metadata": ("Metadata", "StorageMeta", "TensorStorageMetadata", "MetadataIndex",
                                              "TensorProperties", "_MEM_FORMAT_ENCODING", "ChunkStorageMetadata",
                                              "BytesStorageMetadata"),
    "torch.distributed.checkpoint.filesystem": ("_StorageInfo",),
    "torch.serialization": ("_get_layout",),
    "torch": ("Size",),
    "pathlib": ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"),
    "pathlib._local": ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"),
    "collections": ("OrderedDict",),
}
DCP_HELP = ("convert it once where you trust it: `torch.distributed.checkpoint.format_utils.dcp_to_torch_save"
            "(folder, 'weights.pth')`, and open that")


class _DCPUnpickler(pickle.Unpickler):
    """Unpickles a DCP .metadata and nothing else: only the classes that format is made of can be named."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if name in _DCP_GLOBALS.get(module, ()):
            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(f"its metadata names {printable_name(f'{module}.{name}')}, which a distributed "
                                     "checkpoint's metadata does not hold")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("its metadata holds a persistent reference, which DCP metadata does not")


def _read_dcp_metadata(path: Path) -> Any:
    import torch.distributed.checkpoint.filesystem  # noqa: F401 - the classes the metadata names
    from torch.distributed.checkpoint.metadata import Metadata

    with _open_regular(path) as fh:
        raw = fh.read(MAX_PICKLE_BYTES + 1)
    if len(raw) > MAX_PICKLE_BYTES:
        raise SourceError(f"{path}: metadata is larger than {MAX_PICKLE_BYTES:,} bytes; {DCP_HELP}")
    try:
        metadata = _DCPUnpickler(io.BytesIO(raw)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RecursionError, MemoryError, struct.error, ImportError) as exc:
        raise SourceError(f"{path}: cannot read this distributed checkpoint's metadata safely "
                          f"({type(exc).__name__}: {str(exc)[:200]}); {DCP_HELP}") from None
    if not isinstance(metadata, Metadata) or not isinstance(metadata.state_dict_metadata, dict):
        raise SourceError(f"{path}: not torch.distributed.checkpoint metadata; {DCP_HELP}")
    return metadata


class DCPSource(Source):
    """A ``torch.distributed.checkpoint`` folder: listed from its metadata, each tensor read from its chunks."""

    kind = "dcp"
    path: Path  # the folder

    def __init__(self, folder: Path, spec: str | None = None, source_key: str | None = None) -> None:
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        super().__init__(spec or str(folder))
        self.path = folder
        metadata = _read_dcp_metadata(folder / ".metadata")
        where = {(getattr(k, "fqn", None), tuple(getattr(k, "offset", None) or ())): v
                 for k, v in (metadata.storage_data or {}).items()}
        planner = metadata.planner_data if isinstance(metadata.planner_data, dict) else {}
        nested: dict[str, Any] = {}
        fqn_of: dict[int, str] = {}
        self._chunks: dict[str, list[tuple[tuple[int, ...], tuple[int, ...], str, int, int]]] = {}
        skipped = 0
        for fqn, entry in metadata.state_dict_metadata.items():
            if not isinstance(entry, TensorStorageMetadata):
                skipped += 1
                continue
            meta = self._meta_tensor(fqn, entry, where)
            parts = planner.get(fqn)
            parts = list(parts) if isinstance(parts, (tuple, list)) and parts and all(
                isinstance(p, str) for p in parts) else [fqn]
            level = nested
            for part in parts[:-1]:
                level = level.setdefault(part, {}) if isinstance(level.get(part, {}), dict) else {}
            level[parts[-1]] = meta
            fqn_of[id(meta)] = fqn
        try:
            flat, self.container, self.containers = _unwrap(nested, self.notes, source_key)
        except SourceError as exc:
            raise SourceError(f"{folder}: {exc}") from None
        self.container_sizes = _container_sizes(nested, self.containers)
        self._fqn = {name: fqn_of[id(t)] for name, t in flat.items()}
        self.tensors = table_of(flat)
        if self.container is not None and (source_key is not None or len(self.containers) > 1):
            self.spec = join_source_key(os.path.abspath(folder), self.container)
        self.notes.append(f"torch.distributed.checkpoint folder: {len(self._files())} data files"
                          + (f"; {skipped} non-tensor entries ignored" if skipped else ""))

    def _meta_tensor(self, fqn: str, entry: Any, where: dict) -> torch.Tensor:
        bad = f"{self.path}: entry {printable_name(str(fqn))!r}"
        dtype, size = getattr(entry.properties, "dtype", None), entry.size
        if not isinstance(dtype, torch.dtype) or not isinstance(size, torch.Size) or any(d < 0 for d in size) \
                or math.prod(size) > MAX_NUMEL:
            raise SourceError(f"{bad} has no valid dtype and size (damaged or crafted); {DCP_HELP}")
        chunks: list[tuple[tuple[int, ...], tuple[int, ...], str, int, int]] = []
        for chunk in entry.chunks:
            offsets, sizes = tuple(chunk.offsets), tuple(chunk.sizes)
            if len(offsets) != len(size) or len(sizes) != len(size) or any(
                    o < 0 or n < 0 or o + n > d for o, n, d in zip(offsets, sizes, size, strict=True)):
                raise SourceError(f"{bad} has a chunk outside its tensor (damaged or crafted); {DCP_HELP}")
            info = where.get((fqn, offsets))
            relative = getattr(info, "relative_path", None)
            offset, length = getattr(info, "offset", None), getattr(info, "length", None)
            if not (isinstance(relative, str) and relative and os.path.basename(relative) == relative
                    and relative not in (".", "..") and _is_size(offset) and _is_size(length)):
                raise SourceError(f"{bad}: its data is not a file of the folder (damaged or crafted); {DCP_HELP}")
            if transforms := getattr(info, "transform_descriptors", None):
                raise SourceError(f"{bad} is stored transformed ({transforms}); {DCP_HELP}")
            chunks.append((offsets, sizes, relative, offset, length))
        if math.prod(size) and sum(math.prod(c[1]) for c in chunks) < math.prod(size):
            raise SourceError(f"{bad}: its chunks do not cover the tensor (a partial save?); {DCP_HELP}")
        self._chunks[fqn] = chunks
        return torch.empty(size, dtype=dtype, device="meta")

    def _files(self) -> list[str]:
        return sorted({c[2] for chunks in self._chunks.values() for c in chunks})

    def read(self, name: str) -> torch.Tensor:
        info = self._check_name(name)
        dtype = torch_dtype(info.dtype)
        out: torch.Tensor | None = None
        for offsets, sizes, relative, offset, length in self._chunks[self._fqn[name]]:
            path = self.path / relative
            with _open_regular(path) as fh:
                if offset + length > os.fstat(fh.fileno()).st_size:
                    raise SourceError(f"{path}: file ends before the data of {name!r} (truncated?)")
                blob = _pread(fh, length, offset)
            try:
                with _checkpoint_globals():
                    chunk = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a damaged blob
                raise SourceError(f"{path}: data of {name!r} is damaged or not torch.save data "
                                  f"({type(exc).__name__}); {DCP_HELP}") from None
            if not isinstance(chunk, torch.Tensor) or tuple(chunk.shape) != sizes or chunk.dtype != dtype:
                raise SourceError(f"{path}: data of {name!r} is not the {sizes} {info.dtype} chunk its metadata "
                                  f"declares (damaged or crafted)")
            if sizes == info.shape:
                return chunk.contiguous().clone() if not chunk.is_contiguous() else chunk
            if out is None:
                out = torch.zeros(info.shape, dtype=dtype)
            out[tuple(slice(o, o + n) for o, n in zip(offsets, sizes, strict=True))] = chunk
        return out if out is not None else torch.zeros(info.shape, dtype=dtype)

    def files(self) -> list[tuple[Path, FileSource | None]]:
        return [(self.path / ".metadata", None), *((self.path / f, None) for f in self._files())]

    def sha256(self, progress=None) -> str:
        return _file_sha256([p for p, _ in self.files()], progress)


# ---------------------------------------------------------------------------------------------


def join_source_key(path: str, key: str) -> str:
    """The spec of one container of a checkpoint: ``PATH#KEY``."""
    return f"{path}{KEY_SEPARATOR}{key}"


def split_source_key(text: str) -> tuple[str, str | None]:
    """``PATH#KEY`` -> (PATH, KEY) when PATH exists and the whole text names no file; else (text, None)."""
    head, sep, key = text.rpartition(KEY_SEPARATOR)
    if not sep or not head or not key:
        return text, None
    try:
        if Path(text).expanduser().exists() or not Path(head).expanduser().exists():
            return text, None
    except (OSError, ValueError):
        return text, None
    return head, key


def _no_containers(src: Source, key: str) -> SourceError:
    src.close()
    return SourceError(f"{src.path}: has no weight container {key!r} ({src.kind} files hold a single state dict; "
                       "--source-key chooses among state_dict, state_dict_ema, ... of a torch checkpoint)")


def open_file(path: Path, trust_pickle: bool = False, source_key: str | None = None) -> Source:
    """Open a checkpoint file or folder by what it is, not only by its name.

    ``source_key`` names the weight container to read from a checkpoint holding several
    (``state_dict``, ``state_dict_ema``, ...); by default the preferred one (see CONTAINER_KEYS).
    """
    path = Path(path).expanduser()
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        raise SourceError(f"file not found: {path}") from None
    except OSError as exc:
        raise SourceError(f"cannot open {path} ({exc.strerror})") from exc
    if is_dir:
        if (path / ".metadata").is_file():
            return DCPSource(path, source_key=source_key)
        for candidate in ("model.safetensors.index.json", "pytorch_model.bin.index.json", "model.safetensors",
                          "pytorch_model.bin"):
            if (path / candidate).exists():
                return open_file(path / candidate, trust_pickle, source_key)
        indexes = sorted(path.glob("*" + INDEX_SUFFIX))
        if len(indexes) == 1:
            return open_file(indexes[0], trust_pickle, source_key)
        if (path / "saved_model.pb").exists():
            raise SourceError(f"{path} is a TensorFlow SavedModel folder, not a PyTorch checkpoint; load it in "
                              f"TensorFlow/Keras and {WEIGHTS_TO_SAFETENSORS}")
        raise SourceError(f"{path} is a folder without a checkpoint (no *.safetensors, *.bin or index.json)")
    if path.name.endswith(INDEX_SUFFIX):
        src: Source = ShardedSource(path, trust_pickle=trust_pickle)
        if source_key is not None:
            raise _no_containers(src, source_key)
        return src
    return _open_checkpoint_file(path, trust_pickle, source_key)


def _open_checkpoint_file(path: Path, trust_pickle: bool = False, source_key: str | None = None) -> FileSource:
    """One checkpoint file, never a folder or an index, by what it holds."""
    with _open_regular(path) as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise SourceError(f"{path}: file is empty")
        head = fh.read(16)
        names: list[str] = []
        if head[:2] == b"PK":
            try:
                with zipfile.ZipFile(fh) as zf:
                    names = zf.namelist()
            except (zipfile.BadZipFile, OSError, ValueError, EOFError):
                pass  # TorchFileSource says what is wrong with it
    is_zip_or_pickle = head[:2] == b"PK" or head[:1] == b"\x80"
    if head.startswith(HDF5_SIGNATURE):
        raise SourceError(f"{path}: an HDF5 file (the .h5 of Keras, or other HDF5 data): {KERAS_HELP}")
    if path.suffix.lower() == ".onnx" or (not is_zip_or_pickle and _looks_like_onnx(head)):
        raise SourceError(f"{path}: {ONNX_HELP}")
    if names and "config.json" in names and any(n.endswith(".weights.h5") for n in names):
        raise SourceError(f"{path}: {KERAS_HELP}")
    if names and all(n.endswith((".npy", "/")) for n in names) and any(n.endswith(".npy") for n in names):
        src: FileSource = NpzSource(path)
    elif path.suffix == SAFETENSORS_SUFFIX or (not is_zip_or_pickle and len(head) > 8 and head[8:9] == b"{"):
        src = SafetensorsSource(path)
    else:
        return TorchFileSource(path, trust_pickle=trust_pickle, source_key=source_key)
    if source_key is not None:
        raise _no_containers(src, source_key)
    return src


def _hf_folder_source(spec: ModelSpec, trust_pickle: bool, source_key: str | None) -> Source | None:
    """``hf:path/to/folder`` as a source: the weights saved in the folder, or None when it holds none."""
    if spec.path is None or spec.kwargs:
        return None
    folder = Path(spec.path).expanduser()
    if not folder.is_dir():
        return None
    names = ("model.safetensors.index.json", "pytorch_model.bin.index.json", "model.safetensors", "pytorch_model.bin")
    if not any((folder / n).is_file() for n in names):
        return None
    src = open_file(folder, trust_pickle=trust_pickle, source_key=source_key)
    src.notes.append(f"weights of the Hugging Face folder {folder}")
    return src


def load_source(
    source: str | os.PathLike | Source | nn.Module | dict,
    trust_pickle: bool = False,
    download: bool = True,
    source_key: str | None = None,
) -> Source:
    """Open anything holding named tensors: a checkpoint path, a spec, a module or a state dict.

    Accepted strings: a checkpoint file or folder (``.pth .pt .bin .ckpt .safetensors .npz``, an
    ``*.index.json``, a torch.distributed.checkpoint folder), ``PATH#KEY`` for one weight container of
    a checkpoint holding several (``ckpt.pth#state_dict``; ``source_key`` does the same and wins),
    ``hf:path/to/folder`` for the weights saved in a Hugging Face folder,
    ``torchvision:NAME:WEIGHTS`` for torchvision's pretrained weights, or a model spec
    (``torchvision:resnet50``, ``spp_gui:alexnet_spp``, ``net.py:Net``) for its freshly
    initialised tensors.
    """
    if isinstance(source, Source):
        return source
    if isinstance(source, (nn.Module, dict)) and source_key is not None:
        if isinstance(source, dict):
            return StateDictSource(_unwrap(source, [], source_key)[0], f"<state dict>[{source_key!r}]")
        raise SourceError(f"a live {type(source).__name__} has no weight containers; --source-key is for checkpoints")
    if isinstance(source, nn.Module):
        src = StateDictSource(source.state_dict(), f"<{type(source).__name__}>")
        src.module_classes = module_classes(source)
        return src
    if isinstance(source, dict):
        return StateDictSource(source)
    text = os.fspath(source)
    try:
        exists = Path(text).expanduser().exists()
    except (OSError, ValueError) as exc:  # a name over 255 bytes, a NUL: nothing on disk is called that
        raise SourceError(f"cannot use {text[:120]!r}{'...' if len(text) > 120 else ''} as a file name: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    if not exists and not looks_like_model_spec(text):
        path_part, spec_key = split_source_key(text)
        if spec_key is not None:
            return open_file(Path(path_part), trust_pickle=trust_pickle, source_key=source_key or spec_key)
    if exists and not looks_like_model_spec(text):
        return open_file(Path(text), trust_pickle=trust_pickle, source_key=source_key)
    if looks_like_model_spec(text):
        spec = parse_spec(text)
        if spec.kind == "hf" and spec.path is not None:
            saved = _hf_folder_source(spec, trust_pickle, source_key)
            if saved is not None:
                return saved
        if source_key is not None:
            raise SourceError(f"{text}: a model spec has no weight containers; --source-key is for checkpoints")
        if spec.kind == "torchvision" and spec.weights:
            return torchvision_weights_source(spec, download=download)
        return ModelSource(spec)
    raise SourceError(f"file not found: {text}" if _looks_like_path(text) else
                      f"{text!r} is neither an existing checkpoint file nor a model spec "
                      "(torchvision:NAME[:WEIGHTS], spp_gui:NAME, path/net.py:Class)")


@contextlib.contextmanager
def opened_source(
    source: str | os.PathLike | Source | nn.Module | dict,
    trust_pickle: bool = False,
    download: bool = True,
    source_key: str | None = None,
) -> Iterator[Source]:
    """:func:`load_source` for the length of a ``with`` block: the Source it opened is closed at the end,
    a Source the caller passed in is left open (it is the caller's to close)."""
    src = load_source(source, trust_pickle=trust_pickle, download=download, source_key=source_key)
    try:
        yield src
    finally:
        if src is not source:
            src.close()


def _looks_like_path(text: str) -> bool:
    return os.sep in text or text.endswith((*TORCH_SUFFIXES, SAFETENSORS_SUFFIX, ".json"))



# ---------------------------------------------------------------------------------------------
# the sha256 of source files, cached per file identity

#: Digests remembered; the least recently used go first.
HASH_CACHE_ENTRIES = 512
HASH_CACHE_FILE = "sha256.json"
_HASH_CACHE_MAX_BYTES = 1 << 22
_cache_lock = threading.Lock()


def cache_dir() -> Path:
    """Where spp_gui keeps what it can always recompute.

    ``SPP_GUI_CACHE_DIR``; else ``cache/`` in a relocated ``SPP_GUI_CONFIG_DIR``; else the platform's
    user cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``, ``~/Library/Caches``, ``%LOCALAPPDATA%``).
    """
    if folder := os.environ.get("SPP_GUI_CACHE_DIR"):
        return Path(folder)
    if folder := os.environ.get("SPP_GUI_CONFIG_DIR"):
        return Path(folder) / "cache"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "spp_gui" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "spp_gui"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "spp_gui"


def _stamp(st: os.stat_result) -> list[int]:
    """What changes whenever a file's bytes may have: ctime cannot be set back, unlike mtime."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _cache_key(paths: Iterable[Path]) -> str:
    return "\n".join(os.path.abspath(p) for p in paths)


def _read_hash_cache() -> dict[str, Any]:
    try:
        with open(cache_dir() / HASH_CACHE_FILE, "rb") as fh:
            raw = fh.read(_HASH_CACHE_MAX_BYTES + 1)
        entries = json.loads(raw)["entries"] if len(raw) <= _HASH_CACHE_MAX_BYTES else None
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return entries if isinstance(entries, dict) else {}


def cached_sha256(paths: Iterable[Path]) -> str | None:
    """The remembered sha256 of ``paths`` (their bytes one after another), if none of them changed since."""
    paths = list(paths)
    try:
        stamps = [_stamp(os.stat(p)) for p in paths]
    except OSError:
        return None
    entry = _read_hash_cache().get(_cache_key(paths))
    if not isinstance(entry, dict) or entry.get("files") != stamps:
        return None
    digest = entry.get("sha256")
    return digest if isinstance(digest, str) and re.fullmatch("[0-9a-f]{64}", digest) else None


def remember_sha256(paths: Iterable[Path], stamps: list[list[int]], digest: str) -> None:
    """Cache ``digest`` for ``paths`` as they were when hashed (``stamps``); a cache that cannot be written is skipped."""
    key = _cache_key(paths)
    with _cache_lock:
        entries = _read_hash_cache()
        entries.pop(key, None)
        entries[key] = {"files": stamps, "sha256": digest, "used": time.time()}
        if len(entries) > HASH_CACHE_ENTRIES:
            def used(k: str) -> float:
                value = entries[k].get("used") if isinstance(entries[k], dict) else None
                return value if isinstance(value, (int, float)) else 0.0
            entries = {k: entries[k] for k in sorted(entries, key=used)[-HASH_CACHE_ENTRIES:]}
        try:
            atomic_write_text(cache_dir() / HASH_CACHE_FILE, json.dumps({"version": 1, "entries": entries}))
        except OSError:
            pass


def file_sha256_steps(paths: Iterable[Path]) -> Generator[tuple[int, int], None, str]:
    """sha256 of ``paths`` one after another, yielding (bytes done, total); the cached digest when nothing changed."""
    paths = [Path(p) for p in paths]
    if (digest := cached_sha256(paths)) is not None:
        return digest
    hasher = CopyPass([(p, None) for p in paths], [], sha256=True)
    steps = hasher.run()
    try:
        while True:
            done, _ = next(steps)
            yield done, hasher.total
    except StopIteration as stop:
        return stop.value
    finally:
        steps.close()


# ---------------------------------------------------------------------------------------------
# copying tensors verbatim from source files: one pass that also checks CRCs and hashes

#: Bytes read (and written) at a time, and buffers in flight between the reading thread and the digesting
#: ones. Writes of a few MiB and more ran several times slower here (Linux 6, ext4) than 1 MiB ones.
COPY_CHUNK = 1 << 20
COPY_BUFFERS = 8
#: Bytes one kernel copy moves at a time.
COPY_STEP = 1 << 26
#: Progress is reported (and cancel checked) about this often.
REPORT_EVERY = 1 << 24
#: A gap this small between two ranges to read is read too, rather than seeking over it.
READ_GAP = 1 << 16
#: copy_file_range failing with these means "not here" (another filesystem, an old kernel): copy through memory.
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.EINVAL,
                   errno.ETXTBSY}


@dataclass(frozen=True, slots=True)
class ByteSpan:
    """A tensor's bytes as they lie in a source file: row-major, native byte order, uncompressed."""

    file: FileSource
    offset: int
    nbytes: int
    record: ZipRecord | None = None  # the zip entry whose CRC-32 covers them (checked over the whole entry)


@dataclass(eq=False, slots=True)
class CopyJob:
    """Copy ``span`` to ``dst_offset`` of the output; ``crc`` is filled in when ``want_crc``."""

    name: str  # the source tensor, for messages
    span: ByteSpan
    dst_offset: int
    want_crc: bool = False
    crc: int | None = None


@dataclass(eq=False, slots=True)
class _Run:
    """Jobs that are contiguous in both files, copied as one."""

    src: int
    dst: int
    nbytes: int
    name: str


@dataclass(eq=False, slots=True)
class _Crc:
    """A CRC-32 over [start, end) of a file: checked against ``expect``, or handed to ``job``."""

    start: int
    end: int
    expect: int | None = None
    what: str = ""
    job: CopyJob | None = None
    value: int = 0


@dataclass(eq=False, slots=True)
class _FilePlan:
    path: Path
    source: FileSource | None
    size: int
    runs: list[_Run]
    regions: list[tuple[int, int]] | None  # read through memory; None: kernel copies only
    crcs: list[_Crc]

    @property
    def work(self) -> int:
        return sum(b - a for a, b in self.regions) if self.regions is not None else sum(r.nbytes for r in self.runs)


def _merge(ranges: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


#: Copy bytes no one must look at with copy_file_range. Off: on ext4 here it ran 1.5x slower than
#: 1 MiB copies through memory (1.5 s against 1.0 s for 2 GB, fsync included); it pays where the
#: filesystem copies on the server (NFS 4.2, SMB) or shares extents.
USE_KERNEL_COPY = False


def _kernel_copy_available() -> bool:
    return USE_KERNEL_COPY and hasattr(os, "copy_file_range")


class CopyPass:
    """One pass over a source's files that copies tensors verbatim into an output file.

    The same pass checks the CRC-32 of every zip entry it copies from, computes the CRC-32 of the
    copies a zip output needs (``want_crc``), and with ``sha256=True`` hashes every file whole
    (then remembered by :func:`remember_sha256`). What must be checked or hashed is read in file
    order into a few reused buffers, written from them (so the bytes written are the bytes
    checked) and digested by worker threads (hashlib and zlib release the GIL); with
    ``USE_KERNEL_COPY``, what needs no look goes file to file with ``copy_file_range``. Memory stays at
    ``COPY_BUFFERS * COPY_CHUNK`` whatever the file size. ``run`` yields (bytes done, tensor)
    up to ``total``; close it to stop. Every problem with a source file is a SourceError.
    """

    def __init__(self, files: list[tuple[Path, FileSource | None]], jobs: list[CopyJob], out_fd: int | None = None,
                 *, sha256: bool = False) -> None:
        self.out_fd = out_fd
        self.hashing = sha256
        self.sha256: str | None = None
        self._kernel_copy = _kernel_copy_available()
        self._scratch: memoryview | None = None
        by_file: dict[int, list[CopyJob]] = {}
        for job in jobs:
            if job.span.nbytes:
                by_file.setdefault(id(job.span.file), []).append(job)
            elif job.want_crc:
                job.crc = 0
        self.plans = []
        for path, source in files:
            file_jobs = by_file.pop(id(source), []) if source is not None else []
            if file_jobs or sha256:
                self.plans.append(self._plan(Path(path), source, file_jobs))
        if by_file:
            raise ValueError("a copy job's file is not among the files of the pass")
        if jobs and out_fd is None:
            raise ValueError("copy jobs need an output file")
        self.total = sum(plan.work for plan in self.plans)

    def _plan(self, path: Path, source: FileSource | None, jobs: list[CopyJob]) -> _FilePlan:
        jobs.sort(key=lambda j: j.span.offset)
        runs: list[_Run] = []
        for job in jobs:
            last = runs[-1] if runs else None
            if last and last.src + last.nbytes == job.span.offset and last.dst + last.nbytes == job.dst_offset:
                last.nbytes += job.span.nbytes
            else:
                runs.append(_Run(job.span.offset, job.dst_offset, job.span.nbytes, job.name))
        crcs: dict[tuple[int, int, int | None], _Crc] = {}
        for job in jobs:
            span, record = job.span, job.span.record
            if record is not None:
                crcs.setdefault((record.start, record.size, None), _Crc(record.start, record.start + record.size,
                                                                         record.crc, repr(job.name)))
            if job.want_crc:
                if record is not None and (record.start, record.size) == (span.offset, span.nbytes):
                    job.crc = record.crc  # the same bytes, and checked against it
                else:
                    crcs[(span.offset, span.nbytes, id(job))] = _Crc(span.offset, span.offset + span.nbytes, job=job)
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            raise SourceError(f"cannot read {path} ({exc.strerror})") from exc
        regions = None
        if self.hashing:
            regions = [(0, size)]
        elif crcs or not self._kernel_copy:
            regions = _merge([(r.src, r.src + r.nbytes) for r in runs] + [(c.start, c.end) for c in crcs.values()],
                             READ_GAP)
        return _FilePlan(path, source, size, runs, regions, sorted(crcs.values(), key=lambda c: c.start))

    def run(self) -> Generator[tuple[int, str], None, str | None]:
        digest = hashlib.sha256() if self.hashing else None
        crc_feed = _CrcFeed() if any(plan.crcs for plan in self.plans) else None
        feeds: list[Any] = [f for f in (digest and _HashFeed(digest), crc_feed) if f is not None]
        ring = _Ring(feeds) if any(plan.regions is not None for plan in self.plans) else None
        stamps, done = [], 0
        try:
            for plan in self.plans:
                fh, own = self._open(plan)
                try:
                    before = os.fstat(fh.fileno())
                    if before.st_size != plan.size or (plan.source is not None and plan.source._identity is not None
                                                       and _identity(before) != plan.source._identity):
                        raise SourceError(f"{plan.path}: the file changed after it was listed; open it again")
                    if plan.regions is None:
                        steps = self._copy_runs(fh, plan)
                    else:
                        assert ring is not None  # made above whenever a plan has regions
                        if crc_feed is not None:
                            ring.tell(crc_feed, (plan.crcs, plan.path))
                        steps = self._read_through(fh, plan, ring)
                    reported = done
                    for moved, name in steps:
                        done += moved
                        if done - reported >= REPORT_EVERY:
                            reported = done
                            yield done, name
                    if done != reported:
                        yield done, name
                    after = os.fstat(fh.fileno())
                    if _identity(after) != _identity(before):
                        raise SourceError(f"{plan.path}: the file changed while it was read; try again when nothing "
                                          "writes to it")
                    stamps.append(_stamp(after))
                finally:
                    if own:
                        fh.close()
                    elif plan.source is not None:
                        plan.source.close()
            if ring is not None:
                ring.finish()
        finally:
            if ring is not None:
                ring.stop()
        if digest is not None:
            self.sha256 = digest.hexdigest()
            remember_sha256([plan.path for plan in self.plans], stamps, self.sha256)
        return self.sha256

    @staticmethod
    def _open(plan: _FilePlan):
        if plan.source is not None:
            return plan.source._file(), False
        return _open_regular(plan.path), True

    def _copy_runs(self, fh, plan: _FilePlan) -> Generator[tuple[int, str], None, None]:
        for run in plan.runs:
            for at in range(0, run.nbytes, COPY_STEP):
                n = min(COPY_STEP, run.nbytes - at)
                self._copy(fh, run.src + at, n, run.dst + at, plan.path)
                yield n, run.name

    def _read_through(self, fh, plan: _FilePlan, ring: _Ring) -> Generator[tuple[int, str], None, None]:
        runs, next_run, active = plan.runs, 0, []
        name = runs[0].name if runs else ""
        for start, end in plan.regions or ():
            for a in range(start, end, COPY_CHUNK):
                n = min(COPY_CHUNK, end - a)
                index, view = ring.acquire()
                view = view[:n]
                _read_exact(fh, view, a, plan.path)
                b = a + n
                while next_run < len(runs) and runs[next_run].src < b:
                    active.append(runs[next_run])
                    next_run += 1
                for run in active:
                    lo, hi = max(a, run.src), min(b, run.src + run.nbytes)
                    if lo < hi:
                        _write_exact(self._output(), view[lo - a:hi - a], run.dst + lo - run.src)
                        name = run.name
                active = [run for run in active if run.src + run.nbytes > b]
                ring.submit(index, a, n)
                yield n, name
        if next_run != len(runs) or active:  # a bug: the regions always cover the runs
            raise AssertionError(f"{plan.path}: copy ranges outside the ranges read")

    def _copy(self, fh, src: int, n: int, dst: int, path: Path) -> None:
        if self._kernel_copy:
            try:
                _kernel_copy(fh.fileno(), self._output(), src, n, dst, path)
                return
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
                self._kernel_copy = False  # and copy this piece again, through memory
        if self._scratch is None:
            self._scratch = memoryview(bytearray(COPY_CHUNK))
        for at in range(0, n, COPY_CHUNK):
            piece = self._scratch[:min(COPY_CHUNK, n - at)]
            _read_exact(fh, piece, src + at, path)
            _write_exact(self._output(), piece, dst + at)

    def _output(self) -> int:
        """The output file; a pass copies only with one (``__init__`` refuses copy jobs without it)."""
        if self.out_fd is None:
            raise AssertionError("a copy pass copied with no output file")
        return self.out_fd


def _kernel_copy(src_fd: int, dst_fd: int, src: int, n: int, dst: int, path: Path) -> None:
    while n:
        got = os.copy_file_range(src_fd, dst_fd, min(n, 1 << 30), src, dst)
        if not got:
            raise SourceError(f"{path}: file ends before the data at offset {src} (truncated?)")
        src, dst, n = src + got, dst + got, n - got


def _read_exact(fh, view: memoryview, offset: int, path: Path) -> None:
    done = 0
    while done < len(view):
        rest = view[done:]
        got = os.preadv(fh.fileno(), [rest], offset + done) if hasattr(os, "preadv") else _seek_read(fh, rest, offset + done)
        if not got:
            raise SourceError(f"{path}: file ends at offset {offset + done}, inside tensor data (truncated?)")
        done += got


def _write_exact(fd: int, view: memoryview, offset: int) -> None:
    while len(view):
        got = os.pwrite(fd, view, offset)
        view, offset = view[got:], offset + got


class _HashFeed:
    def __init__(self, digest) -> None:
        self.digest = digest

    def feed(self, view: memoryview, offset: int) -> None:
        self.digest.update(view)


class _CrcFeed:
    """CRC-32 of ranges of the file being read, checked (or handed to their job) when each range is complete."""

    def __init__(self) -> None:
        self.pending: list[_Crc] = []
        self.active: list[_Crc] = []
        self.path = Path()

    def tell(self, message: tuple[list[_Crc], Path]) -> None:
        crcs, self.path = message
        if self.active or self.pending:  # a bug: the previous file's regions covered its ranges
            raise AssertionError("CRC ranges left over from the previous file")
        self.pending = list(reversed(crcs))

    def feed(self, view: memoryview, a: int) -> None:
        b = a + len(view)
        while self.pending and self.pending[-1].start < b:
            self.active.append(self.pending.pop())
        still = []
        for crc in self.active:
            lo, hi = max(a, crc.start), min(b, crc.end)
            if lo < hi:
                crc.value = zlib.crc32(view[lo - a:hi - a], crc.value)
            if crc.end > b:
                still.append(crc)
            elif crc.job is not None:
                crc.job.crc = crc.value
            elif crc.value != crc.expect:
                raise SourceError(f"{self.path}: data of {crc.what} is corrupt (CRC mismatch); the file is damaged")
        self.active = still


class _Ring:
    """Buffers filled by the reading thread and digested, in order, by one thread per feed."""

    def __init__(self, feeds: list[Any], count: int = COPY_BUFFERS, size: int = COPY_CHUNK) -> None:
        self._views = [memoryview(bytearray(size)) for _ in range(count)]
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(count):
            self._free.put(i)
        self._left = [0] * count
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self._queues: dict[int, queue.SimpleQueue] = {id(f): queue.SimpleQueue() for f in feeds}
        self._threads = [threading.Thread(target=self._work, args=(f, self._queues[id(f)]), daemon=True,
                                          name="spp_gui digest") for f in feeds]
        for thread in self._threads:
            thread.start()

    def _work(self, feed: Any, inbox: queue.SimpleQueue) -> None:
        while (item := inbox.get()) is not None:
            kind, payload = item
            try:
                if self.error is None:
                    if kind == "tell":
                        feed.tell(payload)
                    else:
                        index, offset, n = payload
                        feed.feed(self._views[index][:n], offset)
            except BaseException as exc:  # handed to the reading thread, which raises it
                self.error = self.error or exc
            if kind == "data":
                self._release(payload[0])

    def _release(self, index: int) -> None:
        with self._lock:
            self._left[index] -= 1
            free = self._left[index] == 0
        if free:
            self._free.put(index)

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def acquire(self) -> tuple[int, memoryview]:
        self._check()
        index = self._free.get()
        self._check()
        return index, self._views[index]

    def tell(self, feed: Any, message: Any) -> None:
        self._queues[id(feed)].put(("tell", message))

    def submit(self, index: int, offset: int, n: int) -> None:
        if not self._queues:
            self._free.put(index)
            return
        self._left[index] = len(self._queues)
        for inbox in self._queues.values():
            inbox.put(("data", (index, offset, n)))

    def finish(self) -> None:
        """Wait for every feed to digest what was read; raise what one of them found."""
        self.stop()
        self._check()

    def stop(self) -> None:
        for inbox in self._queues.values():
            inbox.put(None)
        self._queues = {}
        for thread in self._threads:
            thread.join()
        self._threads = []
