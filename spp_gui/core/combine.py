"""Combining ops: how an entry with several sources makes its one target tensor.

A many-to-one entry (``Entry.sources`` longer than one) carries a combining op as its transform,
``{"op": "concat", "dim": 0}``: the sources, in order, joined along ``dim`` -- the inverse of the
single-source ``chunk`` (three q/k/v projections into one fused ``qkv``). The single-source ops
live in :mod:`spp_gui.core.transforms`; an entry is routed here when it has several sources.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import torch

from .tensors import format_shape
from .transforms import Transform, brief

Shape = tuple[int, ...]

#: Most sources one entry may combine (a mapping file is untrusted: the list is bounded).
MAX_SOURCES = 256


@dataclass(frozen=True)
class CombineOp:
    name: str
    describe: Callable[[Transform], str]
    #: (params) -> None, raising ValueError when they are malformed whatever the shapes
    check_params: Callable[[Transform], None]
    #: (params, source shapes, target shape) -> None, raising ValueError with the reason when they can't fit
    check: Callable[[Transform, Sequence[Shape], Shape], None]
    #: (params, source tensors, target tensor) -> new target tensor
    apply: Callable[[Transform, Sequence[torch.Tensor], torch.Tensor], torch.Tensor]
    params: tuple[str, ...] = ()


COMBINE_OPS: dict[str, CombineOp] = {}


def is_combining(transform: Any) -> TypeGuard[Transform]:
    """Whether ``transform`` names a combining op (one that takes several sources)."""
    return isinstance(transform, dict) and isinstance(transform.get("op"), str) and transform["op"] in COMBINE_OPS


def check_combine_params(transform: Any) -> str | None:
    """Why ``transform`` is not a well-formed combining op whatever the shapes, or None."""
    if not is_combining(transform):
        op = transform.get("op") if isinstance(transform, dict) else transform
        return (f"an entry with several sources needs a combining transform ({', '.join(sorted(COMBINE_OPS))}), "
                f"got {brief(op)}")
    op = COMBINE_OPS[transform["op"]]
    for key in transform:
        if key != "op" and key not in op.params:
            return f"{op.name}: takes no parameter {brief(key)} (it takes {', '.join(repr(p) for p in op.params)})"
    try:
        op.check_params(transform)
    except ValueError as exc:
        return f"{op.name}: {exc}"
    return None


def check_combine(transform: Any, src_shapes: Sequence[Shape], tgt_shape: Shape) -> str | None:
    """Why the combining ``transform`` can't make ``tgt_shape`` from ``src_shapes`` (in order), or None."""
    why = check_combine_params(transform)
    if why is not None:
        return why
    if len(src_shapes) < 2:
        return f"{transform['op']} combines several sources; this entry has {len(src_shapes)}"
    try:
        COMBINE_OPS[transform["op"]].check(transform, [tuple(s) for s in src_shapes], tuple(tgt_shape))
    except (ValueError, TypeError, IndexError) as exc:
        return f"{transform['op']}: {exc}"
    return None


def apply_combine(transform: Transform, tensors: Sequence[torch.Tensor], tgt: torch.Tensor) -> torch.Tensor:
    out = COMBINE_OPS[transform["op"]].apply(transform, tensors, tgt)
    if tuple(out.shape) != tuple(tgt.shape):  # a bug in an op, not a user error
        raise AssertionError(f"combine {transform} produced {tuple(out.shape)}, expected {tuple(tgt.shape)}")
    return out


def describe_combine(transform: Transform, sources: int | None = None) -> str:
    text = COMBINE_OPS[transform["op"]].describe(transform) if is_combining(transform) else str(transform)
    return f"{text} of {sources} sources" if sources else text


def carried_combine(transform: Transform, src_shapes: Sequence[Shape], tgt_shape: Shape) -> int:
    """Target elements the sources fill: all of them for ``concat`` (the shapes were checked)."""
    n = 1
    for d in tgt_shape:
        n *= d
    return n


# ---------------------------------------------------------------------------------------------
# concat


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _params_concat(params: Transform) -> None:
    dim = params.get("dim", 0)
    if not _is_int(dim) or not -64 <= dim < 64:
        raise ValueError(f"'dim' must be an integer (the axis the sources are joined along), got {brief(dim)}")


def _check_concat(params: Transform, src: Sequence[Shape], tgt: Shape) -> None:
    dim = params.get("dim", 0)
    if not -len(tgt) <= dim < len(tgt):
        raise ValueError(f"dim {dim} is out of range for the target's {len(tgt)} dimensions")
    dim %= len(tgt)
    for i, shape in enumerate(src, 1):
        if len(shape) != len(tgt):
            raise ValueError(f"source #{i} {format_shape(shape)} has {len(shape)} dimensions, "
                             f"the target {format_shape(tgt)} has {len(tgt)}")
        rest = [d for k, d in enumerate(shape) if k != dim]
        if rest != [d for k, d in enumerate(tgt) if k != dim]:
            raise ValueError(f"source #{i} {format_shape(shape)} differs from the target {format_shape(tgt)} "
                             f"outside dim {dim}")
    total = sum(shape[dim] for shape in src)
    if total != tgt[dim]:
        sizes = " + ".join(str(shape[dim]) for shape in src)
        raise ValueError(f"the sources add up to {sizes} = {total} along dim {dim}; the target has {tgt[dim]}")


def _apply_concat(params: Transform, tensors: Sequence[torch.Tensor], tgt: torch.Tensor) -> torch.Tensor:
    dtype = tensors[0].dtype
    for t in tensors[1:]:  # sources of different dtypes join in the one that holds them all (then cast once)
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.cat([t.to(dtype) for t in tensors], dim=params.get("dim", 0))


def _describe_concat(params: Transform) -> str:
    return f"concat along dim {params.get('dim', 0)}"


COMBINE_OPS["concat"] = CombineOp("concat", _describe_concat, _params_concat, _check_concat, _apply_concat,
                                  params=("dim",))


def concat_dim(src_shapes: Sequence[Shape], tgt_shape: Shape) -> int | None:
    """The dim along which ``src_shapes`` concatenate into ``tgt_shape``, or None when none does."""
    for dim in range(len(tgt_shape)):
        if check_combine({"op": "concat", "dim": dim}, src_shapes, tgt_shape) is None:
            return dim
    return None
