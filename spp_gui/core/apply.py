"""Apply a mapping: fill a target model tensor by tensor, report what happened, save atomically.

:func:`apply_mapping` fills a live model; peak memory is the target plus one source tensor.
:func:`apply_to_file` streams instead: the output file's layout is known from the target's
shapes (built on the meta device), tensors that need no change are copied file to file in one
pass over the source that also checks its CRCs and hashes it, and the rest are made one at a time.
The target is built for real only when some key keeps its fresh initialisation.
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import os
import pickle
import secrets
import struct
import sys
import zlib
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write
from .errors import Cancelled, MappingError, SourceError
from .mapping import EXACT, INVALID, TARGET_STATUSES, UNMAPPED, Entry, Mapping
from .sources import ST_CODES, CopyJob, CopyPass, Source, cached_sha256, load_source
from .specs import build_model
from .tensors import KeyTable, TensorInfo, dtype_name, table_of, torch_dtype
from .transforms import TRANSFORMS, apply_transform, carried_numel

Progress = Callable[[int, int, str], None]


@dataclass
class LoadReport:
    """What an apply did, per target key, with the totals a person asks for first."""

    status: dict[str, str]  # target key -> exact | renamed | adapted | unmapped
    sources: dict[str, str]  # target key -> source key it came from
    numel: dict[str, int]  # target key -> element count
    unused_source: list[str]
    #: target key -> elements that came from the source (less than numel when a transform fills part)
    carried: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> list[str]:
        return [k for k, s in self.status.items() if s != UNMAPPED]

    @property
    def unmapped(self) -> list[str]:
        return [k for k, s in self.status.items() if s == UNMAPPED]

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for v in self.status.values() if v == s) for s in TARGET_STATUSES if s != INVALID}

    @property
    def total_numel(self) -> int:
        return sum(self.numel.values())

    @property
    def loaded_numel(self) -> int:
        return sum(self.carried.get(k, self.numel[k]) for k in self.loaded)

    @property
    def share(self) -> float:
        """Share of the target's elements (by numel) that came from the source."""
        return self.loaded_numel / self.total_numel if self.total_numel else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "loaded_tensors": len(self.loaded),
            "target_tensors": len(self.status),
            "loaded_numel": self.loaded_numel,
            "total_numel": self.total_numel,
            "share": self.share,
            "keys": {k: {"status": s, "source": self.sources.get(k)} for k, s in self.status.items()},
            "unused_source": self.unused_source,
            "warnings": self.warnings,
        }

    def summary(self) -> str:
        c = self.counts()
        return (f"{len(self.loaded)} of {len(self.status)} target tensors loaded "
                f"({c[EXACT]} exact, {c['renamed']} renamed, {c['adapted']} adapted), "
                f"{self.share:.1%} of target parameters from the source; "
                f"{len(self.unused_source)} source tensors unused")


def check_sha256(source: Source, mapping: Mapping, progress: Callable[[int, int], None] | None = None) -> str | None:
    """A warning when the source file differs from the one the mapping was made from."""
    if not mapping.source_sha256 or source.path is None:
        return None
    return _sha256_warning(source, mapping, source.sha256(progress))


def _sha256_warning(source: Source, mapping: Mapping, digest: str | None) -> str | None:
    if digest and mapping.source_sha256 and digest != mapping.source_sha256:
        return (f"source {source.spec} differs from the file the mapping was made from "
                f"(sha256 {digest[:12]}... vs recorded {mapping.source_sha256[:12]}...)")
    return None


def apply_mapping(
    model: nn.Module | dict[str, torch.Tensor],
    source: Any,
    mapping: Mapping,
    *,
    verify_sha256: bool = True,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    trust_pickle: bool = False,
) -> LoadReport:
    """Fill ``model`` (a live module or state dict) from ``source`` per ``mapping``; return the report.

    Raises MappingError (naming key and shapes) before touching the model if the mapping does
    not fit, and Cancelled if ``cancelled()`` turns true between tensors.
    """
    src = load_source(source, trust_pickle=trust_pickle)
    state = model.state_dict(keep_vars=True) if isinstance(model, nn.Module) else model
    target_table = table_of(state)
    mapping.validate(src.tensors, target_table)
    if any(t.is_meta for t in state.values()):
        raise MappingError("the target model is on the meta device; build it for real (device='cpu') to apply")
    for entry in mapping:  # every entry checked before the first tensor is written
        _refuse_lossy_cast(entry.source, src.tensors[entry.source].dtype, entry.target,
                           dtype_name(state[entry.target].dtype))
    warnings = []
    if verify_sha256 and (warning := check_sha256(src, mapping)):
        warnings.append(warning)
    total = len(mapping)
    with torch.no_grad():
        for i, entry in enumerate(mapping):
            if cancelled is not None and cancelled():
                raise Cancelled(f"stopped after {i} of {total} tensors; the model is partly filled")
            if progress is not None:
                progress(i, total, entry.target)
            dest = state[entry.target]
            tensor = src.read(entry.source)
            # the listing said otherwise (a source whose header lies): still never a lossy cast
            _refuse_lossy_cast(entry.source, dtype_name(tensor.dtype), entry.target, dtype_name(dest.dtype))
            tensor = apply_transform(entry.transform, tensor, dest.detach())
            dest.copy_(tensor)
            del tensor
    if progress is not None:
        progress(total, total, "")
    return _report(mapping, src.tensors, target_table, warnings)


def _report(mapping: Mapping, source_table: KeyTable, target_table: KeyTable, warnings: list[str]) -> LoadReport:
    status = mapping.status(source_table, target_table)
    return LoadReport(
        status=dict(status.target),
        sources={t: e.source for t, e in mapping.entries.items()},
        numel={k: v.numel for k, v in target_table.items()},
        unused_source=status.unused_sources,
        warnings=warnings,
        carried={e.target: carried_numel(e.transform, source_table[e.source].shape, target_table[e.target].shape)
                 for e in mapping},
    )


def _refuse_lossy_cast(source_key: str, source_dtype: str, target_key: str, target_dtype: str) -> None:
    """MappingError when filling an integer (or bool) tensor from a floating-point one."""
    if source_dtype == target_dtype:
        return
    try:
        lossy = torch_dtype(source_dtype).is_floating_point and not torch_dtype(target_dtype).is_floating_point
    except ValueError:
        return  # a dtype torch does not name: reading the tensor will say so
    if lossy:
        raise MappingError(f"{source_key!r} is {source_dtype} but {target_key!r} is {target_dtype}: refusing a lossy "
                           f"cast; map {target_key!r} from a {target_dtype} tensor or leave it unmapped")


# ---------------------------------------------------------------------------------------------
# writing weights

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
#: Bytes handed to one write: writes of several MiB ran several times slower here (Linux 6, ext4).
WRITE_PIECE = 1 << 20


def _weight_format(path: Path) -> str:
    if path.suffix == ".safetensors":
        return "safetensors"
    if path.suffix in TORCH_SUFFIXES:
        return "torch"
    raise MappingError(f"cannot tell the weight format from {path.name!r}: use .safetensors or .pth")


def _safetensors_dtype(tensor: torch.Tensor) -> str:
    name = dtype_name(tensor.dtype)
    if name not in ST_CODES:
        raise SourceError(f"safetensors cannot store dtype {name}")
    return ST_CODES[name]


def _safetensors_header(table: KeyTable, metadata: dict[str, str] | None) -> tuple[bytes, dict[str, int]]:
    """The header (length prefix included, padded to 8 bytes) and each tensor's offset in the data section."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offsets, offset = {}, 0
    for name, info in table.items():
        header[name] = {"dtype": ST_CODES[info.dtype], "shape": list(info.shape),
                        "data_offsets": [offset, offset + info.nbytes]}
        offsets[name] = offset
        offset += info.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw, offsets


def write_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Stream ``state`` into a safetensors file, one tensor at a time, atomically."""
    tensors = {k: v.detach() for k, v in state.items()}
    for t in tensors.values():
        _safetensors_dtype(t)
    head, _ = _safetensors_header(table_of(tensors), metadata)
    with atomic_write(path, "wb") as fh:
        fh.write(head)
        for t in tensors.values():
            if t.numel():
                data = _bytes_of(t)
                for at in range(0, len(data), WRITE_PIECE):
                    fh.write(data[at:at + WRITE_PIECE])


def _bytes_of(tensor: torch.Tensor) -> memoryview:
    """A tensor's bytes, row-major (a copy only when it is not contiguous on the CPU)."""
    return memoryview(tensor.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())


def save_weights(
    model_or_state: nn.Module | dict[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Save a state dict as ``.safetensors`` (streamed) or a torch file (``.pth``/``.pt``/``.bin``), atomically."""
    path = Path(path)
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    if _weight_format(path) == "safetensors":
        write_safetensors(state, path, metadata)
    else:
        with atomic_write(path, "wb") as fh:
            torch.save(dict(state), fh)
    return path


# ---------------------------------------------------------------------------------------------
# output layouts known before any data: safetensors, and torch.save's zip


class _SafetensorsLayout:
    wants_crc = False

    def __init__(self, table: KeyTable, metadata: dict[str, str] | None) -> None:
        self.head, offsets = _safetensors_header(table, metadata)
        self.offset = {k: len(self.head) + v for k, v in offsets.items()}
        self.size = len(self.head) + sum(info.nbytes for info in table.values())

    def start(self, fd: int) -> None:
        os.ftruncate(fd, self.size)
        _write_all(fd, self.head, 0)

    def finish(self, fd: int, crcs: dict[str, int]) -> None:
        pass


#: Fields of a zip record at or past this need the zip64 form (a constant so tests can lower it).
ZIP64_LIMIT = 0xFFFFFFFF
_ALIGN = 64  # torch.save aligns every record's data to 64 bytes


@dataclass(slots=True)
class _ZipEntry:
    name: bytes
    header: int  # offset of the local header
    data: int  # offset of the data
    size: int
    crc: int | None  # None until the data is written

    @property
    def zip64(self) -> bool:
        return self.header >= ZIP64_LIMIT or self.size >= ZIP64_LIMIT


def _torch_storage_kind(dtype: torch.dtype) -> str | None:
    """'v2' (a legacy typed storage), 'v3' (untyped storage plus dtype) or None: how torch.save pickles it."""
    if dtype in torch.storage._new_dtypes():
        return "v3"
    return "v2" if dtype in torch.storage._dtype_to_storage_type_map() else None


class _StorageRef:
    __slots__ = ("dtype", "key", "numel", "nbytes")

    def __init__(self, key: str, dtype: torch.dtype, numel: int, nbytes: int) -> None:
        self.key, self.dtype, self.numel, self.nbytes = key, dtype, numel, nbytes


class _TensorRef:
    __slots__ = ("shape", "storage", "stride")

    def __init__(self, storage: _StorageRef, shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape
        self.stride = torch.empty(shape, dtype=storage.dtype, device="meta").stride()


class _TorchPickler(pickle.Pickler):
    """Pickles placeholders exactly as torch.save pickles fresh contiguous CPU tensors (``Tensor._reduce_ex_internal``)."""

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is not _StorageRef:
            return None
        if _torch_storage_kind(obj.dtype) == "v3":
            return ("storage", torch.storage.UntypedStorage, obj.key, "cpu", obj.nbytes)
        kind = getattr(torch, torch.storage._dtype_to_storage_type_map()[obj.dtype])
        return ("storage", kind, obj.key, "cpu", obj.numel)

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is not _TensorRef:
            return NotImplemented
        args = (obj.storage, 0, obj.shape, obj.stride, False, collections.OrderedDict())
        if _torch_storage_kind(obj.storage.dtype) == "v3":
            return torch._utils._rebuild_tensor_v3, (*args, obj.storage.dtype)
        return torch._utils._rebuild_tensor_v2, args


class _TorchZipLayout:
    """What ``torch.save(dict_of_tensors, file)`` writes, laid out in advance.

    Records sit where torch's zip writer (miniz) puts them: data aligned to 64 bytes by an "FB"
    padding field, a data descriptor after each non-empty record, so torch's own offset
    arithmetic agrees with the file; the CRCs go into the descriptors and the central directory
    once the data is written.
    """

    wants_crc = True
    PREFIX = "archive/"

    def __init__(self, table: KeyTable) -> None:
        refs = {}
        for i, (name, info) in enumerate(table.items()):
            dtype = torch_dtype(info.dtype)
            refs[name] = _TensorRef(_StorageRef(str(i), dtype, info.numel, info.nbytes), info.shape)
        buf = _BytesSink()
        _TorchPickler(buf, protocol=2).dump(refs)
        small = {"data.pkl": buf.value(), ".format_version": b"1", ".storage_alignment": str(_ALIGN).encode(),
                 "byteorder": sys.byteorder.encode()}
        tail = {"version": b"3\n", ".data/serialization_id": f"{secrets.randbits(128):040d}".encode()}
        self.entries: list[_ZipEntry] = []
        self.small: dict[int, bytes] = {}  # entry index -> its bytes
        self.offset: dict[str, int] = {}
        pos = 0

        def add(name: str, size: int, data: bytes | None) -> None:
            nonlocal pos
            raw = (self.PREFIX + name).encode()
            pad = -(pos + 30 + len(raw) + 4) % _ALIGN
            entry = _ZipEntry(raw, pos, pos + 30 + len(raw) + 4 + pad, size, None if data is None else zlib.crc32(data))
            if data is not None:
                self.small[len(self.entries)] = data
            self.entries.append(entry)
            pos = entry.data + size + ((24 if entry.zip64 else 16) if size else 0)

        for name, data in small.items():
            add(name, len(data), data)
        for name, info in table.items():
            add("data/" + refs[name].storage.key, info.nbytes, None)
            self.offset[name] = self.entries[-1].data
        for name, data in tail.items():
            add(name, len(data), data)
        self._data_entries = {name: self.entries[len(small) + i] for i, name in enumerate(table)}
        self.directory = pos
        self.size = pos + len(self._directory())

    @staticmethod
    def _local_header(entry: _ZipEntry) -> bytes:
        pad = entry.data - entry.header - 30 - len(entry.name) - 4
        flags = 0x808 if entry.size else 0x800  # UTF-8 names; sizes and CRC in a descriptor after the data
        return (struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, flags, 0, 0, 0, 0, 0, 0, len(entry.name), 4 + pad)
                + entry.name + struct.pack("<HH", 0x4246, pad) + b"Z" * pad)

    @staticmethod
    def _descriptor(entry: _ZipEntry) -> bytes:
        if entry.zip64:
            return struct.pack("<IIQQ", 0x08074B50, entry.crc, entry.size, entry.size)
        return struct.pack("<IIII", 0x08074B50, entry.crc, entry.size, entry.size)

    def _directory(self) -> bytes:
        out = bytearray()
        for entry in self.entries:
            crc = entry.crc or 0
            extra, size32, header32 = b"", entry.size, entry.header
            fields = []
            if entry.size >= ZIP64_LIMIT:
                fields += [entry.size, entry.size]
                size32 = 0xFFFFFFFF
            if entry.header >= ZIP64_LIMIT:
                fields.append(entry.header)
                header32 = 0xFFFFFFFF
            if fields:
                extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields)
            flags = 0x808 if entry.size else 0x800
            out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 45 if fields else 0, flags, 0, 0, 0, crc, size32,
                               size32, len(entry.name), len(extra), 0, 0, 0, 0, header32)
            out += entry.name + extra
        count, size, offset = len(self.entries), len(out), self.directory
        # like miniz, always the zip64 end records too; the classic one saturates where a field overflows
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 45, 0, 0, count, count, size, offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, offset + size, 1)
        small = min(count, 0xFFFF)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, small, small, size if size < ZIP64_LIMIT else 0xFFFFFFFF,
                           offset if offset < ZIP64_LIMIT else 0xFFFFFFFF, 0)
        return bytes(out)

    def start(self, fd: int) -> None:
        os.ftruncate(fd, self.size)
        for i, entry in enumerate(self.entries):
            data = self.small.get(i, b"")
            tail = self._descriptor(entry) if data else b""
            _write_all(fd, self._local_header(entry) + data + tail, entry.header)

    def finish(self, fd: int, crcs: dict[str, int]) -> None:
        for name, entry in self._data_entries.items():
            entry.crc = crcs[name] if entry.size else 0
            if entry.size:
                _write_all(fd, self._descriptor(entry), entry.data + entry.size)
        _write_all(fd, self._directory(), self.directory)


class _BytesSink:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def value(self) -> bytes:
        return b"".join(self.parts)


def _write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data).cast("B")
    while len(view):
        got = os.pwrite(fd, view[:WRITE_PIECE], offset)
        view, offset = view[got:], offset + got


# ---------------------------------------------------------------------------------------------
# apply to a file


def apply_to_file(
    mapping: Mapping,
    out: str | os.PathLike,
    *,
    source: Any = None,
    target_spec: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    trust_pickle: bool = False,
) -> LoadReport:
    """Build the mapping's target, fill it from its source, write it to ``out`` (atomically).

    Keys the mapping leaves out keep ``build_model(spec, seed=seed)``'s initialisation.
    ``progress(done, total, key)`` counts bytes (source bytes copied or hashed plus bytes of
    tensors made); ``done / total`` is the share done, as it was when it counted tensors, and
    :func:`format_progress` turns it into a line with rate and ETA. Raises Cancelled, leaving
    ``out`` as it was, when ``cancelled()`` turns true.
    """
    spec = target_spec or mapping.target_spec
    if not spec:
        raise MappingError("the mapping names no target model spec; pass one (--target)")
    source = source if source is not None else mapping.source_spec
    if not source:
        raise MappingError("the mapping names no source; pass one (--source)")
    out = Path(out)
    fmt = _weight_format(out)
    src = load_source(source, trust_pickle=trust_pickle)
    try:
        state = _meta_state(spec)
        if state is not None and _can_stream(state, fmt):
            steps = stream_apply(mapping, src, state, out, spec=spec, seed=seed)
            return _drive(steps, progress, cancelled, out)
        return _apply_in_memory(mapping, src, spec, seed, out, progress, cancelled)
    finally:
        src.close()


def _meta_state(spec: str) -> dict[str, torch.Tensor] | None:
    try:
        return build_model(spec, device="meta").state_dict(keep_vars=True)
    except Exception:  # noqa: BLE001 - a model that cannot live on meta: the in-memory path builds it for real
        return None


def _can_stream(state: dict[str, torch.Tensor], fmt: str) -> bool:
    """Streaming writes each key's own bytes; tied or overlapping target tensors go the in-memory way."""
    if not hasattr(os, "pwrite") or sys.byteorder != "little":
        return False
    storages = set()
    for tensor in state.values():
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided or str(tensor.dtype).startswith("torch.q"):
            return False  # extra state, sparse or quantized tensors: torch.save pickles them its own way
        dtype = dtype_name(tensor.dtype)
        if (fmt == "safetensors" and dtype not in ST_CODES) or (fmt == "torch" and _torch_storage_kind(tensor.dtype) is None):
            return False
        try:
            storage = tensor.untyped_storage()._cdata
        except (AttributeError, RuntimeError):
            return False
        if storage in storages:
            return False
        storages.add(storage)
    return True


def _apply_in_memory(mapping: Mapping, src: Source, spec: str, seed: int, out: Path,
                     progress: Progress | None, cancelled: Callable[[], bool] | None) -> LoadReport:
    """The target built for real and filled, then saved: for targets streaming cannot write."""
    model = build_model(spec, device="cpu", seed=seed)
    by_tensor = progress
    if progress is not None:
        sizes = [src.tensors[e.source].nbytes if e.source in src.tensors else 0 for e in mapping]
        upto = [0, *itertools.accumulate(sizes)]

        def by_tensor(i: int, total: int, key: str) -> None:
            progress(upto[i], upto[-1], key)
    report = apply_mapping(model, src, mapping, progress=by_tensor, cancelled=cancelled)
    save_weights(model, out, metadata={"spp_gui.mapping_source": src.spec, "spp_gui.target": spec})
    return report


def _drive(steps: Generator[tuple[int, int, str], None, LoadReport], progress: Progress | None,
           cancelled: Callable[[], bool] | None, out: Path) -> LoadReport:
    """Run a progress generator to its result, reporting and honouring cancel between steps."""
    done = total = 0
    try:
        while True:
            if cancelled is not None and cancelled():
                raise Cancelled(f"stopped after {done:,} of {total:,} bytes; {out} was left as it was")
            done, total, key = next(steps)
            if progress is not None:
                progress(done, total, key)
    except StopIteration as stop:
        return stop.value
    finally:
        steps.close()  # on cancel or error: the half-written temporary file goes


#: Built-in transforms whose result owes nothing to the target's init when they fill every element.
_PURE_WHEN_FULL = ("slice", "pad", "select_rows", "in_channels", "transpose", "reshape", "spp_grid", "chunk")


def _needs_init(entry: Entry, source: TensorInfo, target: TensorInfo) -> bool:
    """Whether a transform's output depends on the target's fresh values (then the target is built for real)."""
    op = TRANSFORMS.get(entry.transform.get("op")) if isinstance(entry.transform, dict) else None
    builtin = op is not None and op.name in _PURE_WHEN_FULL and op.apply.__module__ == apply_transform.__module__
    return not builtin or carried_numel(entry.transform, source.shape, target.shape) < target.numel


def stream_apply(
    mapping: Mapping,
    src: Source,
    target: dict[str, torch.Tensor],
    out: str | os.PathLike,
    *,
    spec: str,
    seed: int = 0,
    verify_sha256: bool = True,
) -> Generator[tuple[int, int, str], None, LoadReport]:
    """Write the target filled from ``src`` to ``out``, yielding (bytes done, total, key); return the report.

    ``target`` is the target's state dict on the meta device (shapes and dtypes, in file order;
    no two keys sharing storage). Copies go file to file; casts and transforms are made one
    tensor at a time; keys that keep the target's init come from ``build_model(spec, seed=seed)``,
    built only when there are such keys. Closing the generator leaves ``out`` as it was.
    """
    out = Path(out)
    target_table = table_of(target)
    mapping.validate(src.tensors, target_table)
    for entry in mapping:  # every entry checked before the first byte is written
        _refuse_lossy_cast(entry.source, src.tensors[entry.source].dtype, entry.target, target_table[entry.target].dtype)
    metadata = {"spp_gui.mapping_source": src.spec, "spp_gui.target": spec}
    layout = _SafetensorsLayout(target_table, metadata) if _weight_format(out) == "safetensors" else _TorchZipLayout(target_table)
    jobs: dict[str, CopyJob] = {}
    made: list[tuple[str, Entry | None]] = []
    keep_init: list[str] = []
    for key, info in target_table.items():
        entry = mapping.get(key)
        if entry is None:
            made.append((key, None))
            keep_init.append(key)
            continue
        source_info = src.tensors[entry.source]
        span = src.locate(entry.source) if entry.transform is None and source_info.dtype == info.dtype else None
        if span is not None and span.nbytes == info.nbytes and info.nbytes:
            jobs[key] = CopyJob(entry.source, span, layout.offset[key], want_crc=layout.wants_crc)
            continue
        made.append((key, entry))
        if entry.transform is not None and _needs_init(entry, source_info, info):
            keep_init.append(key)
    warnings: list[str] = []
    files = src.files() if verify_sha256 and mapping.source_sha256 and src.path is not None else []
    digest = cached_sha256([path for path, _ in files]) if files else None
    init = _initial_tensors(spec, seed, keep_init) if keep_init else {}
    with atomic_write(out, "wb") as fh:
        fd = fh.fileno()
        layout.start(fd)
        copier = CopyPass(src.files(), list(jobs.values()), fd, sha256=bool(files) and digest is None)
        total = copier.total + sum(target_table[key].nbytes for key, _ in made)
        done = 0
        for done, name in copier.run():
            yield done, total, name
        digest = digest or copier.sha256
        crcs = {key: job.crc for key, job in jobs.items()}
        for key, entry in made:
            info = target_table[key]
            data = _bytes_of(_made_tensor(key, entry, src, info, init))
            _write_all(fd, data, layout.offset[key])
            if layout.wants_crc:
                crcs[key] = zlib.crc32(data)
            del data
            init.pop(key, None)
            done += info.nbytes
            yield done, total, key
        layout.finish(fd, crcs)
    if warning := _sha256_warning(src, mapping, digest):
        warnings.append(warning)
    yield total, total, ""
    return _report(mapping, src.tensors, target_table, warnings)


def _initial_tensors(spec: str, seed: int, keys: list[str]) -> dict[str, torch.Tensor]:
    """The target's fresh values of ``keys``; the rest of the model is let go at once."""
    state = build_model(spec, device="cpu", seed=seed).state_dict()
    return {key: state[key].detach() for key in keys}


def _made_tensor(key: str, entry: Entry | None, src: Source, info: TensorInfo,
                 init: dict[str, torch.Tensor]) -> torch.Tensor:
    """What the in-memory path would leave in target ``key``: its init, or the source cast/transformed into it."""
    dtype = torch_dtype(info.dtype)
    if entry is None:
        return init[key]
    with torch.no_grad():
        tensor = src.read(entry.source)
        # the listing said otherwise (a source whose header lies): still never a lossy cast
        _refuse_lossy_cast(entry.source, dtype_name(tensor.dtype), key, info.dtype)
        if entry.transform is not None:
            base = init[key] if key in init else torch.zeros(info.shape, dtype=dtype)
            tensor = apply_transform(entry.transform, tensor, base)
        if tuple(tensor.shape) != info.shape:
            raise MappingError(f"{entry.source!r} reads as shape {tuple(tensor.shape)}, not the listed "
                               f"{info.shape} that {key!r} needs (the source changed or lies)")
        return tensor.to(dtype)


# ---------------------------------------------------------------------------------------------
# progress in bytes, as a person reads it


def format_bytes(n: float) -> str:
    """'812 B', '3.4 MB', '2.1 GB' (decimal units, as disks are sold)."""
    unit = "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            break
        n /= 1000
    return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"


def format_progress(done: int, total: int, elapsed: float) -> str:
    """'1.2 GB of 2.1 GB  57%  1.6 GB/s  ETA 0:01' from a byte count and the seconds since the start."""
    share = done / total if total else 1.0
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate and done < total else 0.0
    minutes, seconds = divmod(math.ceil(eta), 60)
    return (f"{format_bytes(done)} of {format_bytes(total)}  {share:4.0%}  {format_bytes(rate)}/s  "
            f"ETA {minutes}:{seconds:02d}")


__all__ = ["LoadReport", "apply_mapping", "apply_to_file", "check_sha256", "format_bytes", "format_progress",
           "save_weights", "stream_apply", "write_safetensors"]
