"""Apply a mapping: fill a target model tensor by tensor, report what happened, save atomically.

:func:`apply_mapping` fills a live model; peak memory is the target plus one source tensor.
:func:`apply_to_file` streams instead: the output file's layout is known from the target's
shapes (built on the meta device), tensors that need no change are copied file to file in one
pass over the source that also checks its CRCs and hashes it, and the rest are made one at a time.
The target is built for real only when some key keeps its fresh initialisation.

Every ``.safetensors`` written here carries ``{"format": "pt"}`` (transformers 4.x refuses a file
without it) and, from an apply, where it came from (:func:`provenance`). Target keys that are one
tensor (tied weights, GPT-2's ``lm_head.weight`` is ``transformer.wte.weight``) are filled once and
reported as tied; ``dtype=`` chooses the output's dtypes and the report counts every cast.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import math
import os
import pickle
import re
import secrets
import struct
import sys
import zlib
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write
from .combine import apply_combine, carried_combine
from .errors import MappingError, SourceError
from .mapping import EXACT, INVALID, TARGET_STATUSES, UNMAPPED, Entry, Mapping, Status
from .sources import ST_CODES, CopyJob, CopyPass, Source, cached_sha256, opened_source
from .specs import build_model
from .steps import map_steps, run_steps
from .tensors import KeyTable, TensorInfo, dtype_name, table_of, torch_dtype
from .transforms import TRANSFORMS, apply_transform, carried_numel

Progress = Callable[[int, int, str], None]

#: Report status of a target key that is one tensor with a mapped key (tied weights): filled through it.
TIED = Status.TIED
#: ``dtype=`` values of :func:`apply_to_file`; None (the default) writes each key in the target's dtype.
DTYPES = ("keep", "float32", "bfloat16", "float16")


@dataclass
class LoadReport:
    """What an apply did, per target key, with the totals a person asks for first."""

    status: dict[str, str]  # target key -> exact | renamed | adapted | tied | unmapped
    sources: dict[str, str]  # target key -> source key it came from (the first, when several)
    numel: dict[str, int]  # target key -> element count
    unused_source: list[str]
    #: target key -> elements that came from the source (less than numel when a transform fills part)
    carried: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: target key -> the key it is one tensor with (the mapped one, else the one the file keeps);
    #: such keys count once in the totals, as the model's parameters do
    tied: dict[str, str] = field(default_factory=dict)
    #: target keys the output file leaves out because the target's loader re-ties them (HF ``_tied_weights_keys``)
    dropped: list[str] = field(default_factory=list)
    #: "bfloat16 -> float32" -> source tensors written in another dtype than the source's
    casts: dict[str, int] = field(default_factory=dict)
    #: "float32 -> bfloat16" -> tensors keeping the target's init written in another dtype than the target's
    init_casts: dict[str, int] = field(default_factory=dict)
    #: the ``dtype=`` asked for (None: the target's dtypes)
    dtype: str | None = None
    #: target key -> every source key, in order, for targets made from several (a combining op)
    combined: dict[str, list[str]] = field(default_factory=dict)

    @property
    def loaded(self) -> list[str]:
        return [k for k, s in self.status.items() if s != UNMAPPED]

    @property
    def unmapped(self) -> list[str]:
        return [k for k, s in self.status.items() if s == UNMAPPED]

    def counts(self) -> dict[str, int]:
        names = [s for s in TARGET_STATUSES if s != INVALID]
        names.insert(names.index(UNMAPPED), TIED)
        return {s: sum(1 for v in self.status.values() if v == s) for s in names}

    @property
    def total_numel(self) -> int:
        return sum(n for k, n in self.numel.items() if k not in self.tied)

    @property
    def loaded_numel(self) -> int:
        return sum(self.carried.get(k, self.numel[k]) for k in self.loaded if k not in self.tied)

    @property
    def share(self) -> float:
        """Share of the target's elements (by numel, a tied tensor once) that came from the source."""
        return self.loaded_numel / self.total_numel if self.total_numel else 0.0

    def to_dict(self) -> dict[str, Any]:
        keys: dict[str, Any] = {}
        for k, s in self.status.items():
            keys[k] = {"status": s, "source": self.sources.get(k)}
            if k in self.combined:
                keys[k]["sources"] = self.combined[k]
            if k in self.tied:
                keys[k]["tied_to"] = self.tied[k]
        return {
            "counts": self.counts(),
            "loaded_tensors": len(self.loaded),
            "target_tensors": len(self.status),
            "loaded_numel": self.loaded_numel,
            "total_numel": self.total_numel,
            "share": self.share,
            "keys": keys,
            "unused_source": self.unused_source,
            "warnings": self.warnings,
            "tied": self.tied,
            "dropped": self.dropped,
            "dtype": self.dtype,
            "casts": self.casts,
            "init_casts": self.init_casts,
        }

    def summary(self) -> str:
        c = self.counts()
        tied = f", {c[TIED]} tied" if c[TIED] else ""
        many = sum(1 for k in self.combined if self.status.get(k) != INVALID)
        combined = f", {many} of them joined from several sources" if many else ""
        return (f"{len(self.loaded)} of {len(self.status)} target tensors loaded "
                f"({c[EXACT]} exact, {c['renamed']} renamed, {c['adapted']} adapted{combined}{tied}), "
                f"{self.share:.1%} of target parameters from the source; "
                f"{len(self.unused_source)} source tensors unused{self.cast_summary()}")

    def cast_summary(self) -> str:
        """'; cast 148 tensors bfloat16 -> float32' (and the init casts), or '' when nothing was cast."""
        parts = [f"cast {n} tensor{'s' * (n != 1)} {pair}" for pair, n in self.casts.items()]
        parts += [f"{n} initialised tensor{'s' * (n != 1)} {pair}" for pair, n in self.init_casts.items()]
        return "; " + ", ".join(parts) if parts else ""

    def tied_lines(self) -> list[str]:
        """'lm_head.weight: tied to transformer.wte.weight' per tied key, then what the file leaves out."""
        lines = [f"{k}: tied to {v}" for k, v in self.tied.items()]
        if self.dropped:
            lines.append(f"not written, the target's loader re-ties them: {', '.join(self.dropped)}")
        return lines


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
    not fit, or maps two names of one tied tensor from different sources, and Cancelled if
    ``cancelled()`` turns true between tensors. Each tensor takes the model's dtype (a live model
    keeps its own; :func:`apply_to_file` has ``dtype=``); the report counts the casts.
    The generator form is :func:`iter_apply`.
    """
    steps = iter_apply(model, source, mapping, verify_sha256=verify_sha256, trust_pickle=trust_pickle)
    report = run_steps(steps, (lambda step: progress(*step)) if progress is not None else None, cancelled,
                       lambda step: f"stopped after {step[0] if step else 0} of {len(mapping)} tensors; "
                                    "the model is partly filled")
    if progress is not None:
        progress(len(mapping), len(mapping), "")
    return report


def iter_apply(model: nn.Module | dict[str, torch.Tensor], source: Any, mapping: Mapping, *,
               verify_sha256: bool = True, trust_pickle: bool = False
               ) -> Generator[tuple[int, int, str], None, LoadReport]:
    """:func:`apply_mapping` as a generator: yields (tensors done, total, target key) before each
    tensor and returns the report; closed, it stops there (the model is then partly filled). A Source
    it opened is closed when it ends, either way."""
    with opened_source(source, trust_pickle=trust_pickle) as src:
        return (yield from _fill_steps(model, src, mapping, verify_sha256))


def _fill_steps(model: nn.Module | dict[str, torch.Tensor], src: Source, mapping: Mapping, verify_sha256: bool
                ) -> Generator[tuple[int, int, str], None, LoadReport]:
    state = model.state_dict(keep_vars=True) if isinstance(model, nn.Module) else model
    target_table = table_of(state)
    mapping.validate(src.tensors, target_table)
    if any(t.is_meta for t in state.values()):
        raise MappingError("the target model is on the meta device; build it for real (device='cpu') to apply")
    for entry in mapping:  # every entry checked before the first tensor is written
        _refuse_lossy_entry(entry, src.tensors, dtype_name(state[entry.target].dtype))
    groups = tie_groups(state)
    _check_ties(mapping, groups)
    warnings = []
    if verify_sha256 and (warning := check_sha256(src, mapping)):
        warnings.append(warning)
    total = len(mapping)
    for i, entry in enumerate(mapping):
        yield i, total, entry.target
        dest = state[entry.target]
        with torch.no_grad():  # per tensor: the grad mode is not held across a yield
            tensor = _entry_tensor(entry, src, dtype_name(dest.dtype), dest.detach())
            dest.copy_(tensor)
        del tensor
    out_dtypes = {k: info.dtype for k, info in target_table.items()}
    return _report(mapping, src.tensors, target_table, warnings, groups=groups, out_dtypes=out_dtypes)


def _refuse_lossy_entry(entry: Entry, table: KeyTable, target_dtype: str) -> None:
    for name in entry.sources:
        _refuse_lossy_cast(name, table[name].dtype, entry.target, target_dtype)


def _entry_tensor(entry: Entry, src: Source, target_dtype: str, base: torch.Tensor) -> torch.Tensor:
    """What ``entry`` makes for its target (``base``: the target's current tensor): each source read,
    then transformed, or combined when there are several. One entry's sources are in memory at once."""
    tensors = []
    for name in entry.sources:
        tensor = src.read(name)
        # the listing said otherwise (a source whose header lies): still never a lossy cast
        _refuse_lossy_cast(name, dtype_name(tensor.dtype), entry.target, target_dtype)
        tensors.append(tensor)
    if entry.more_sources:
        return apply_combine(entry.combine_op, tensors, base)
    return apply_transform(entry.transform, tensors[0], base)


def _carried(entry: Entry, source_table: KeyTable, target: TensorInfo) -> int:
    if entry.more_sources:
        return carried_combine(entry.combine_op, [source_table[s].shape for s in entry.sources], target.shape)
    return carried_numel(entry.transform, source_table[entry.source].shape, target.shape)


def _report(mapping: Mapping, source_table: KeyTable, target_table: KeyTable, warnings: list[str], *,
            groups: Sequence[list[str]] = (), out_dtypes: dict[str, str] | None = None, dropped: Sequence[str] = (),
            dtype: str | None = None) -> LoadReport:
    """The report; ``out_dtypes`` (target key -> dtype written) gives the casts, ``groups`` the tied keys."""
    status = mapping.status(source_table, target_table)
    report = LoadReport(
        status=dict(status.target),
        sources={t: e.source for t, e in mapping.entries.items()},
        numel={k: v.numel for k, v in target_table.items()},
        unused_source=status.unused_sources,
        warnings=warnings,
        carried={e.target: _carried(e, source_table, target_table[e.target]) for e in mapping},
        dropped=list(dropped),
        dtype=dtype,
        combined={e.target: list(e.sources) for e in mapping if e.more_sources},
    )
    for group in groups:
        mapped = [k for k in group if k in mapping]
        representative = mapped[0] if mapped else group[0]
        for key in group:
            if key == representative:
                continue
            report.tied[key] = representative
            if mapped and key not in mapping:
                report.status[key] = TIED
                report.sources[key] = report.sources[representative]
                report.carried[key] = report.carried[representative]
    if out_dtypes is not None:
        casts: collections.Counter[str] = collections.Counter()
        init_casts: collections.Counter[str] = collections.Counter()
        for key, info in target_table.items():
            written = out_dtypes.get(key, info.dtype)
            entry = mapping.get(key)
            if key in report.tied:
                continue  # one tensor with its representative: counted there
            if entry is not None:
                for name in entry.sources:  # a combined target counts each source it casts
                    if source_table[name].dtype != written:
                        casts[f"{source_table[name].dtype} -> {written}"] += 1
            elif info.dtype != written:
                init_casts[f"{info.dtype} -> {written}"] += 1
        report.casts, report.init_casts = dict(sorted(casts.items())), dict(sorted(init_casts.items()))
    return report


# ---------------------------------------------------------------------------------------------
# tied target tensors: two names, one tensor


def tie_groups(state: dict[str, Any]) -> list[list[str]]:
    """Target keys that are one tensor (same untyped storage, offset, shape, stride and dtype), in state order.

    GPT-2's ``lm_head.weight`` is ``transformer.wte.weight``; ``model.state_dict()`` lists both.
    Works on the meta device as on the CPU. Tensors that only overlap are not tied (and not here).
    """
    by_place: dict[tuple, list[str]] = {}
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            continue
        try:
            storage = tensor.untyped_storage()._cdata
        except (AttributeError, RuntimeError, NotImplementedError):
            continue
        place = (storage, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        by_place.setdefault(place, []).append(key)
    return [keys for keys in by_place.values() if len(keys) > 1]


def declared_aliases(model: nn.Module, keys: Iterable[str]) -> set[str]:
    """Keys the model's loader re-ties itself: HF ``_tied_weights_keys`` of the model and its submodules.

    transformers 5 declares ``{alias: partner}``, 4.x a list of names or patterns (``re.search``,
    relative to the declaring module); ``save_pretrained`` leaves these out of the file.
    """
    keys = list(keys)
    found: set[str] = set()
    for prefix, module in model.named_modules():
        declared = getattr(module, "_tied_weights_keys", None)
        if isinstance(declared, dict):
            names = list(declared)
        elif isinstance(declared, (list, tuple, set, frozenset)):
            names = list(declared)
        else:
            continue
        base = prefix + "." if prefix else ""
        for name in names:
            if not isinstance(name, str):
                continue
            if base + name in keys:
                found.add(base + name)
                continue
            try:
                pattern = re.compile(name)
            except re.error:
                continue
            found.update(k for k in keys if k.startswith(base) and pattern.search(k[len(base):]))
    return found


def _written_names(groups: list[list[str]], declared: set[str]) -> list[str]:
    """Names a safetensors file leaves out: per tied group, the declared aliases (always keeping one name).

    Undeclared ties (a plain torch module's) keep every name, each with its own copy of the data,
    since ``load_state_dict(strict=True)`` asks for every name.
    """
    dropped = []
    for group in groups:
        gone = [k for k in group if k in declared]
        if len(gone) == len(group):
            gone = gone[1:]
        dropped += gone
    return dropped


def _check_ties(mapping: Mapping, groups: list[list[str]]) -> None:
    """MappingError when two names of one tied tensor are mapped differently (the model holds one tensor)."""
    for group in groups:
        entries = [e for k in group if (e := mapping.get(k)) is not None]
        ways = {(e.sources, json.dumps(e.transform, sort_keys=True)) for e in entries}
        if len(ways) > 1:
            said = ", ".join(f"{e.target!r} from {e.source!r}" for e in entries)
            raise MappingError(f"{' and '.join(repr(k) for k in group)} are one tensor in the target (tied weights) "
                               f"but the mapping fills them differently ({said}); map only one of them")


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


def spp_gui_version() -> str:
    from .. import __version__  # (importlib.metadata.version scans every installed distribution: 30+ ms)

    return __version__


def file_metadata(metadata: dict[str, str] | None = None) -> dict[str, str]:
    """``metadata`` with what every spp_gui safetensors file says first: ``format: pt`` and the writer's version.

    transformers 4.x (``modeling_utils.load_state_dict``) refuses a safetensors file whose metadata
    has no ``format`` in pt/tf/flax/mlx; ``save_pretrained`` writes ``pt``, so do we.
    """
    out = {"format": "pt", "spp_gui.version": spp_gui_version()}
    out.update({str(k): str(v) for k, v in (metadata or {}).items()})
    out["format"] = "pt"  # the tensors are torch's whatever the caller's metadata said
    return out


def mapping_sha256(mapping: Mapping) -> str:
    """sha256 of the mapping's canonical JSON: what it maps, independent of where its files lie.

    That is ``Mapping.to_dict()`` with ``source.spec`` left out (``Mapping.save`` stores that one
    relative to the mapping file and ``Mapping.load`` resolves it, so it differs between copies of
    one mapping; the output names its source separately), keys sorted, no spaces. Recompute it for
    a mapping file with ``mapping_sha256(Mapping.load(path))``.
    """
    def dumps(value: Any) -> bytes:
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()

    # hashed entry by entry, not built as one dict: Entry.to_dict's deep copies cost 56 ms per 2,000
    # entries, and thousands of live dicts bring Python's full garbage collection into the apply
    head = Mapping(mapping.source_spec, mapping.target_spec, mapping.source_sha256).to_dict()  # no entries: cheap
    head["source"] = {k: v for k, v in head["source"].items() if k != "spec"}
    del head["entries"]
    digest = hashlib.sha256(b'{"entries":[')  # "entries" sorts first among the top-level keys
    for i, e in enumerate(mapping):
        entry: dict[str, Any] = {"target": e.target, "source": e.source, "transform": e.transform, "origin": e.origin,
                 "confidence": e.confidence}
        if e.more_sources:  # as Entry.to_dict writes it
            del entry["source"]
            entry["sources"] = list(e.sources)
        if e.reason:
            entry["reason"] = e.reason
        digest.update(b"," + dumps(entry) if i else dumps(entry))
    digest.update(b"]," + dumps(head)[1:])
    return digest.hexdigest()


def provenance(mapping: Mapping, source_spec: str, target_spec: str, source_sha256: str | None,
               tied: dict[str, str] | None = None, dtype: str | None = None) -> dict[str, str]:
    """The metadata an apply's safetensors output carries (``format: pt`` and where the weights came from).

    ``spp_gui.source_sha256`` is the source files' digest where this apply checks it against the one
    the mapping records (``map`` records one): remembered by the hash cache
    (:func:`~spp_gui.core.sources.cached_sha256`) for the files as they are now, else hashed in the
    same pass that copies them. The source is never read whole just for the metadata; without a
    digest in the mapping the key is left out. ``spp_gui.tied`` (JSON, name -> name) lists target keys the file leaves out and
    the key that holds their tensor.
    """
    meta = {"spp_gui.source": source_spec}
    if source_sha256:
        meta["spp_gui.source_sha256"] = source_sha256
    meta["spp_gui.mapping_sha256"] = mapping_sha256(mapping)
    meta["spp_gui.target"] = target_spec
    if tied:
        meta["spp_gui.tied"] = json.dumps(tied, separators=(",", ":"))
    if dtype is not None:
        meta["spp_gui.dtype"] = dtype
    return file_metadata(meta)


def _safetensors_header(table: KeyTable, metadata: dict[str, str] | None,
                        size: int | None = None) -> tuple[bytes, dict[str, int]]:
    """The header (length prefix included, padded to 8 bytes, or with spaces to ``size``) and each tensor's
    offset in the data section."""
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
    raw += b" " * ((-len(raw) % 8) if size is None else size - 8 - len(raw))
    if size is not None and len(raw) + 8 != size:
        raise AssertionError(f"a safetensors header of {len(raw) + 8} bytes does not fit the {size} laid out")
    return len(raw).to_bytes(8, "little") + raw, offsets


def write_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Stream ``state`` into a safetensors file, one tensor at a time, atomically.

    The metadata always holds ``format: pt`` and ``spp_gui.version`` (:func:`file_metadata`). Names
    that share a tensor each get their own copy (safetensors holds no shared tensors).
    """
    tensors = {k: v.detach() for k, v in state.items()}
    for t in tensors.values():
        _safetensors_dtype(t)
    head, _ = _safetensors_header(table_of(tensors), file_metadata(metadata))
    with atomic_write(path, "wb") as fh:
        fh.write(head)
        for t in tensors.values():
            if t.numel():
                data = _bytes_of(t)
                for at in range(0, len(data), WRITE_PIECE):
                    fh.write(data[at:at + WRITE_PIECE])


def _bytes_of(tensor: torch.Tensor) -> memoryview:
    """A tensor's bytes, row-major (a copy only when it is not contiguous on the CPU)."""
    return tensor.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().data


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
        self.table = table
        self.head, offsets = _safetensors_header(table, file_metadata(metadata))
        self.offset = {k: len(self.head) + v for k, v in offsets.items()}
        self.size = len(self.head) + sum(info.nbytes for info in table.values())

    def start(self, fd: int) -> None:
        os.ftruncate(fd, self.size)
        _write_all(fd, self.head, 0)

    def rewrite_metadata(self, fd: int, metadata: dict[str, str]) -> None:
        """The header again with ``metadata`` (no longer than the one laid out: a digest placeholder filled in)."""
        head, _ = _safetensors_header(self.table, file_metadata(metadata), size=len(self.head))
        _write_all(fd, head, 0)

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
        args: tuple[Any, ...] = (obj.storage, 0, obj.shape, obj.stride, False, collections.OrderedDict())
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

    def rewrite_metadata(self, fd: int, metadata: dict[str, str]) -> None:
        pass  # a torch file has no metadata of ours (see apply_to_file)

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
    dtype: str | None = None,
) -> LoadReport:
    """Build the mapping's target, fill it from its source, write it to ``out`` (atomically).

    Keys the mapping leaves out keep ``build_model(spec, seed=seed)``'s initialisation.
    ``progress(done, total, key)`` counts bytes (source bytes copied or hashed plus bytes of
    tensors made); ``done / total`` is the share done, as it was when it counted tensors, and
    :func:`format_progress` turns it into a line with rate and ETA. Raises Cancelled, leaving
    ``out`` as it was, when ``cancelled()`` turns true.

    ``dtype`` picks the output's dtypes: None (default) each key in the target's dtype; ``"keep"``
    each mapped floating tensor in its source's dtype (a bf16 checkpoint stays bf16 and is copied
    verbatim), unmapped keys in the target's; ``"float32"``, ``"bfloat16"`` or ``"float16"`` every
    floating tensor of the output, mapped or not. Integer and bool tensors keep the target's dtype.
    The report counts every cast (:attr:`LoadReport.casts`).

    A ``.safetensors`` output carries :func:`provenance` metadata. A torch output (``.pth``) holds
    the state dict only, as ``torch.save(model.state_dict())`` writes it (tied keys share one
    storage): anything else in it would stop ``model.load_state_dict(torch.load(f, weights_only=True))``.
    Tied target keys (:func:`tie_groups`) are filled once; a safetensors output leaves out the ones
    the target re-ties when loading (HF ``_tied_weights_keys``, as ``save_pretrained`` does) and
    keeps every other name with its own copy.
    """
    steps = iter_apply_to_file(mapping, out, source=source, target_spec=target_spec, seed=seed,
                               trust_pickle=trust_pickle, dtype=dtype)
    return run_steps(steps, (lambda step: progress(*step)) if progress is not None else None, cancelled,
                     lambda step: f"stopped after {step[0] if step else 0:,} of {step[1] if step else 0:,} bytes; "
                                  f"{out} was left as it was")


def iter_apply_to_file(mapping: Mapping, out: str | os.PathLike, *, source: Any = None, target_spec: str | None = None,
                       seed: int = 0, trust_pickle: bool = False, dtype: str | None = None
                       ) -> Generator[tuple[int, int, str], None, LoadReport]:
    """:func:`apply_to_file` as a generator: yields (bytes done, total, key) and returns the report;
    closed before it ends, it leaves ``out`` as it was."""
    if dtype is not None and dtype not in DTYPES:
        raise MappingError(f"unknown output dtype {dtype!r}: use one of {', '.join(DTYPES)} (or none for the target's)")
    spec = target_spec or mapping.target_spec
    if not spec:
        raise MappingError("the mapping names no target model spec; pass one (--target)")
    source = source if source is not None else mapping.source_spec
    if not source:
        raise MappingError("the mapping names no source; pass one (--source)")
    out = Path(out)
    fmt = _weight_format(out)
    with opened_source(source, trust_pickle=trust_pickle) as src:  # a caller's Source is left open
        state = _meta_state(spec)
        dtypes = None if state is None or dtype is None else output_dtypes(mapping, src.tensors, table_of(state), dtype)
        if state is not None and _can_stream(state, fmt, dtypes):
            return (yield from stream_apply(mapping, src, state, out, spec=spec, seed=seed, dtype=dtype))
        return (yield from _in_memory_steps(mapping, src, spec, seed, out, dtype=dtype))


def output_dtypes(mapping: Mapping, source: KeyTable, target: KeyTable, dtype: str | None) -> dict[str, str]:
    """Target key -> the dtype ``apply_to_file(dtype=dtype)`` writes it in (see there)."""
    if dtype is None:
        return {key: info.dtype for key, info in target.items()}
    out = {}
    for key, info in target.items():
        written = info.dtype
        floating = _is_floating(info.dtype)
        if dtype == "keep":
            entry = mapping.get(key)
            kept = _kept_dtype(entry, source) if entry is not None else None
            if floating and kept is not None:
                written = kept
        elif dtype is not None and floating:
            written = dtype
        out[key] = written
    return out


def _kept_dtype(entry: Entry, source: KeyTable) -> str | None:
    """The floating dtype ``dtype="keep"`` writes ``entry``'s target in: its source's; for several
    sources the one that holds them all (bf16 and float32 sources: float32); None: the target's."""
    infos = [info for name in entry.sources if (info := source.get(name)) is not None]
    if len(infos) < len(entry.sources) or any(not _is_floating(info.dtype) for info in infos):
        return None
    kept = torch_dtype(infos[0].dtype)
    for info in infos[1:]:
        kept = torch.promote_types(kept, torch_dtype(info.dtype))
    return dtype_name(kept)


def _is_floating(name: str) -> bool:
    try:
        return torch_dtype(name).is_floating_point
    except ValueError:
        return False


def _meta_state(spec: str) -> dict[str, torch.Tensor] | None:
    try:
        return build_model(spec, device="meta").state_dict(keep_vars=True)
    except Exception:  # noqa: BLE001 - a model that cannot live on meta: the in-memory path builds it for real
        return None


def _can_stream(state: dict[str, torch.Tensor], fmt: str, dtypes: dict[str, str] | None = None) -> bool:
    """Streaming writes each key's own bytes; tied or overlapping target tensors go the in-memory way.

    ``dtypes`` (key -> dtype written, default the target's) must be ones the format stores.
    """
    if not hasattr(os, "pwrite") or sys.byteorder != "little":
        return False
    storages = set()
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided or str(tensor.dtype).startswith("torch.q"):
            return False  # extra state, sparse or quantized tensors: torch.save pickles them its own way
        dtype = (dtypes or {}).get(key) or dtype_name(tensor.dtype)
        if (fmt == "safetensors" and dtype not in ST_CODES) or (fmt == "torch" and _torch_storage_kind(torch_dtype(dtype)) is None):
            return False
        try:
            storage = tensor.untyped_storage()._cdata
        except (AttributeError, RuntimeError):
            return False
        if storage in storages:
            return False
        storages.add(storage)
    return True


def _source_digest(src: Source, mapping: Mapping, verify_sha256: bool) -> tuple[str | None, bool]:
    """(the source files' sha256 if the hash cache has it, whether this apply must hash them to check it).

    Only when the mapping records a digest to check (``map`` always does): then the cache is read
    anyway. Reading it just for the metadata costs ~0.15 s with a full cache (2.3 MB of JSON), a
    third of a 2,000-tensor streamed apply, so a mapping without one leaves the digest out.
    """
    if not (verify_sha256 and mapping.source_sha256 and src.path is not None):
        return None, False
    paths = [path for path, _ in src.files()]
    digest = cached_sha256(paths) if paths else None
    return digest, bool(paths) and digest is None


def _in_memory_steps(mapping: Mapping, src: Source, spec: str, seed: int, out: Path, *,
                     dtype: str | None = None) -> Generator[tuple[int, int, str], None, LoadReport]:
    """The target built for real and filled, then saved: for targets streaming cannot write."""
    model = build_model(spec, device="cpu", seed=seed)
    live = model.state_dict(keep_vars=True)
    target_table = table_of(live)
    mapping.validate(src.tensors, target_table)
    groups = tie_groups(live)
    _check_ties(mapping, groups)
    dtypes = output_dtypes(mapping, src.tensors, target_table, dtype)
    for group in groups:  # one tensor, one dtype: the mapped member's (or the first's)
        lead = next((k for k in group if k in mapping), group[0])
        for key in group:
            dtypes[key] = dtypes[lead]
    # mapped keys written in another dtype than the target's are made again from the source (a float64
    # source held in a float32 target would otherwise lose its bits); their transforms want the init
    remade = {e.target for e in mapping if dtypes[e.target] != target_table[e.target].dtype}
    init = {k: live[k].detach().clone() for k in remade if mapping.entries[k].transform is not None}
    digest, hash_now = _source_digest(src, mapping, verify_sha256=True)
    if hash_now:
        digest = src.sha256()
    warnings = [w] if (w := _sha256_warning(src, mapping, digest)) else []
    sizes = [sum(src.tensors[s].nbytes for s in e.sources if s in src.tensors) for e in mapping]
    upto = [0, *itertools.accumulate(sizes)]  # bytes read before each entry
    yield from map_steps(_fill_steps(model, src, mapping, verify_sha256=False),
                         lambda step: (upto[step[0]], upto[-1], step[2]))  # (its report: ours is made below)
    yield upto[-1], upto[-1], ""  # filled; what follows writes the file
    state = model.state_dict()
    lead_of = {k: group[0] for group in groups for k in group}
    entry_for = {k: next((mapping.entries[m] for m in group if m in mapping), None) for group in groups for k in group}
    made: dict[str, torch.Tensor] = {}  # by group lead: tied names stay one tensor in a torch file
    output = {}
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or dtype_name(tensor.dtype) == dtypes[key]:
            output[key] = tensor
            continue
        lead = lead_of.get(key, key)
        if lead not in made:
            entry = entry_for[key] if key in entry_for else mapping.get(key)
            if entry is not None and entry.target in remade:
                made[lead] = _made_tensor(entry.target, entry, src, target_table[entry.target], init, dtypes[key])
            else:
                made[lead] = tensor.to(torch_dtype(dtypes[key]))
        output[key] = made[lead]
    dropped = []
    if _weight_format(out) == "safetensors":
        dropped = _written_names(groups, declared_aliases(model, state))
        tied = {k: next(n for n in next(g for g in groups if k in g) if n not in dropped) for k in dropped}
        for key in dropped:
            del output[key]
        save_weights(output, out, metadata=provenance(mapping, src.spec, spec, digest, tied, dtype))
    else:
        save_weights(output, out)
    return _report(mapping, src.tensors, target_table, warnings, groups=groups, out_dtypes=dtypes,
                   dropped=dropped, dtype=dtype)


#: Built-in transforms whose result owes nothing to the target's init when they fill every element.
_PURE_WHEN_FULL = ("slice", "pad", "select_rows", "in_channels", "transpose", "reshape", "spp_grid", "chunk")


def _needs_init(entry: Entry, source: TensorInfo, target: TensorInfo) -> bool:
    """Whether a transform's output depends on the target's fresh values (then the target is built for real)."""
    name = entry.transform.get("op") if isinstance(entry.transform, dict) else None
    op = TRANSFORMS.get(name) if isinstance(name, str) else None
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
    dtype: str | None = None,
) -> Generator[tuple[int, int, str], None, LoadReport]:
    """Write the target filled from ``src`` to ``out``, yielding (bytes done, total, key); return the report.

    ``target`` is the target's state dict on the meta device (shapes and dtypes, in file order;
    no two keys sharing storage). Copies go file to file; casts and transforms are made one
    tensor at a time; keys that keep the target's init come from ``build_model(spec, seed=seed)``,
    built only when there are such keys. ``dtype`` as in :func:`apply_to_file`: a tensor whose
    source dtype is the one written is still copied verbatim. Closing the generator leaves ``out``
    as it was.
    """
    out = Path(out)
    target_table = table_of(target)
    mapping.validate(src.tensors, target_table)
    for checked in mapping:  # every entry checked before the first byte is written
        _refuse_lossy_entry(checked, src.tensors, target_table[checked.target].dtype)
    dtypes = output_dtypes(mapping, src.tensors, target_table, dtype)
    out_table = target_table if dtype is None else {k: TensorInfo(k, info.shape, dtypes[k])
                                                    for k, info in target_table.items()}
    digest, hashing = _source_digest(src, mapping, verify_sha256)
    # a digest this pass makes is not known before the header is written: the header is laid out
    # with a placeholder of the same length and written again once the pass is done
    metadata = provenance(mapping, src.spec, spec, "0" * 64 if hashing else digest, dtype=dtype)
    layout = _SafetensorsLayout(out_table, metadata) if _weight_format(out) == "safetensors" else _TorchZipLayout(out_table)
    jobs: dict[str, CopyJob] = {}
    made: list[tuple[str, Entry | None]] = []
    keep_init: list[str] = []
    for key, info in out_table.items():
        entry = mapping.get(key)
        if entry is None:
            made.append((key, None))
            keep_init.append(key)
            continue
        source_info = src.tensors[entry.source]
        verbatim = entry.transform is None and not entry.more_sources and source_info.dtype == info.dtype
        span = src.locate(entry.source) if verbatim else None
        if span is not None and span.nbytes == info.nbytes and info.nbytes:
            jobs[key] = CopyJob(entry.source, span, layout.offset[key], want_crc=layout.wants_crc)
            continue
        made.append((key, entry))  # a combined target is made in memory from its sources, like a transform's
        if entry.transform is not None and not entry.more_sources and _needs_init(entry, source_info, info):
            keep_init.append(key)
    warnings: list[str] = []
    init = _initial_tensors(spec, seed, keep_init) if keep_init else {}
    with atomic_write(out, "wb") as fh:
        fd = fh.fileno()
        layout.start(fd)
        copier = CopyPass(src.files(), list(jobs.values()), fd, sha256=hashing)
        total = copier.total + sum(out_table[key].nbytes for key, _ in made)
        done = 0
        for done, name in copier.run():
            yield done, total, name
        if hashing:
            digest = copier.sha256
            layout.rewrite_metadata(fd, provenance(mapping, src.spec, spec, digest, dtype=dtype))
        crcs = {key: job.crc for key, job in jobs.items() if job.crc is not None}
        for key, made_entry in made:
            info = out_table[key]
            data = _bytes_of(_made_tensor(key, made_entry, src, target_table[key], init, info.dtype))
            _write_all(fd, data, layout.offset[key])
            if layout.wants_crc:
                crcs[key] = zlib.crc32(data)
            del data
            init.pop(key, None)
            done += info.nbytes
            yield done, total, key
        layout.finish(fd, crcs)
    if verify_sha256 and (warning := _sha256_warning(src, mapping, digest)):
        warnings.append(warning)
    yield total, total, ""
    return _report(mapping, src.tensors, target_table, warnings, out_dtypes=dtypes, dtype=dtype)


def _initial_tensors(spec: str, seed: int, keys: list[str]) -> dict[str, torch.Tensor]:
    """The target's fresh values of ``keys``; the rest of the model is let go at once."""
    state = build_model(spec, device="cpu", seed=seed).state_dict()
    return {key: state[key].detach() for key in keys}


def _made_tensor(key: str, entry: Entry | None, src: Source, info: TensorInfo,
                 init: dict[str, torch.Tensor], out_dtype: str | None = None) -> torch.Tensor:
    """What the in-memory path would leave in target ``key`` (``info``: the target's), written as ``out_dtype``:
    its init, or the source transformed into it, then cast."""
    dtype = torch_dtype(info.dtype)
    written = torch_dtype(out_dtype) if out_dtype else dtype
    if entry is None:
        return init[key].to(written)
    with torch.no_grad():
        if key in init:
            base = init[key]
        elif entry.transform is not None and not entry.more_sources:
            base = torch.zeros(info.shape, dtype=dtype)
        else:  # no transform, or a combining op: only the shape is read
            base = torch.empty(info.shape, dtype=dtype, device="meta")
        try:
            tensor = _entry_tensor(entry, src, info.dtype, base)
        except RuntimeError as exc:  # torch.cat of sources that read as other shapes than listed
            if not entry.more_sources:
                raise
            raise MappingError(f"{' + '.join(repr(s) for s in entry.sources)} read as other shapes than listed "
                               f"and cannot make {key!r} {info.shape} (the source changed or lies): {exc}") from None
        if tuple(tensor.shape) != info.shape:
            raise MappingError(f"{entry.source!r} reads as shape {tuple(tensor.shape)}, not the listed "
                               f"{info.shape} that {key!r} needs (the source changed or lies)")
        return tensor.to(written)


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


__all__ = ["DTYPES", "TIED", "LoadReport", "apply_mapping", "apply_to_file", "iter_apply", "iter_apply_to_file", "check_sha256", "declared_aliases",
           "file_metadata", "format_bytes", "format_progress", "mapping_sha256", "output_dtypes", "provenance",
           "save_weights", "stream_apply", "tie_groups", "write_safetensors"]
