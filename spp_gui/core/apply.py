"""Apply a mapping: fill a target model tensor by tensor, report what happened, save atomically.

Peak memory is the target plus one source tensor: sources read tensors one at a time and the
safetensors writer streams each tensor straight to disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write
from .errors import Cancelled, MappingError, SourceError
from .mapping import EXACT, INVALID, TARGET_STATUSES, UNMAPPED, Mapping
from .sources import Source, load_source
from .specs import build_model
from .tensors import dtype_name, table_of, torch_dtype
from .transforms import apply_transform, carried_numel

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
    digest = source.sha256(progress)
    if digest and digest != mapping.source_sha256:
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
    status = mapping.status(src.tensors, target_table)
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
    return LoadReport(
        status=dict(status.target),
        sources={t: e.source for t, e in mapping.entries.items()},
        numel={k: v.numel for k, v in target_table.items()},
        unused_source=status.unused_sources,
        warnings=warnings,
        carried={e.target: carried_numel(e.transform, src.tensors[e.source].shape, target_table[e.target].shape)
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


def _safetensors_dtype(tensor: torch.Tensor) -> str:
    from .sources import ST_CODES

    name = dtype_name(tensor.dtype)
    if name not in ST_CODES:
        raise SourceError(f"safetensors cannot store dtype {name}")
    return ST_CODES[name]


def write_safetensors(state: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Stream ``state`` into a safetensors file, one tensor at a time, atomically."""
    tensors = {k: v.detach() for k, v in state.items()}
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _safetensors_dtype(t), "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with atomic_write(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little"))
        fh.write(raw)
        for t in tensors.values():
            if t.numel():
                data = t.to("cpu").contiguous().reshape(-1).view(torch.uint8)
                fh.write(memoryview(data.numpy()))


def save_weights(
    model_or_state: nn.Module | dict[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Save a state dict as ``.safetensors`` (streamed) or a torch file (``.pth``/``.pt``/``.bin``), atomically."""
    path = Path(path)
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    if path.suffix == ".safetensors":
        write_safetensors(state, path, metadata)
    elif path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        with atomic_write(path, "wb") as fh:
            torch.save(dict(state), fh)
    else:
        raise MappingError(f"cannot tell the weight format from {path.name!r}: use .safetensors or .pth")
    return path


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
    """Build the mapping's target for real, fill it from its source, write it to ``out``."""
    spec = target_spec or mapping.target_spec
    if not spec:
        raise MappingError("the mapping names no target model spec; pass one (--target)")
    source = source if source is not None else mapping.source_spec
    if not source:
        raise MappingError("the mapping names no source; pass one (--source)")
    src = load_source(source, trust_pickle=trust_pickle)
    try:
        model = build_model(spec, device="cpu", seed=seed)
        report = apply_mapping(model, src, mapping, progress=progress, cancelled=cancelled)
        save_weights(model, out, metadata={"spp_gui.mapping_source": src.spec, "spp_gui.target": spec})
    finally:
        src.close()
    return report
