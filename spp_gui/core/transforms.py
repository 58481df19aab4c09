"""Shape-adapting transforms: explicit, serialisable ops stored in a mapping entry.

A transform is a JSON object ``{"op": NAME, ...params}``. Each op knows the source shape it
accepts and checks that it produces the target's shape; ``apply`` receives the source tensor and
the target's current (initialised) tensor, so ops such as ``slice`` can keep the target's init
where the source has nothing to give.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .errors import MappingError

Transform = dict[str, Any]


@dataclass(frozen=True)
class TransformOp:
    name: str
    describe: str
    #: (params, source shape, target shape) -> None, raising ValueError with the reason when it can't fit
    check: Callable[[Transform, tuple[int, ...], tuple[int, ...]], None]
    #: (params, source tensor, target tensor) -> new target tensor
    apply: Callable[[Transform, torch.Tensor, torch.Tensor], torch.Tensor]


TRANSFORMS: dict[str, TransformOp] = {}


def register_transform(op: TransformOp) -> TransformOp:
    TRANSFORMS[op.name] = op
    return op


def _op(transform: Transform) -> TransformOp:
    if not isinstance(transform, dict) or "op" not in transform:
        raise MappingError(f"a transform must be an object with an 'op' field, got {transform!r}")
    op = TRANSFORMS.get(transform["op"])
    if op is None:
        raise MappingError(f"unknown transform {transform['op']!r}; known: {', '.join(sorted(TRANSFORMS)) or 'none'}")
    return op


def check_transform(transform: Transform | None, src_shape: tuple[int, ...], tgt_shape: tuple[int, ...]) -> str | None:
    """Return why ``transform`` can't turn ``src_shape`` into ``tgt_shape``, or None when it fits."""
    if transform is None:
        return None if tuple(src_shape) == tuple(tgt_shape) else "shapes differ and no transform is set"
    try:
        _op(transform).check(transform, tuple(src_shape), tuple(tgt_shape))
    except MappingError as exc:
        return str(exc)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        return f"{transform['op']}: {exc}"
    return None


def apply_transform(transform: Transform | None, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    if transform is None:
        return src
    out = _op(transform).apply(transform, src, tgt)
    if tuple(out.shape) != tuple(tgt.shape):  # a bug in an op, not a user error
        raise AssertionError(f"transform {transform} produced {tuple(out.shape)}, expected {tuple(tgt.shape)}")
    return out


def describe_transform(transform: Transform | None) -> str:
    if transform is None:
        return ""
    params = ", ".join(f"{k}={v}" for k, v in transform.items() if k != "op")
    return f"{transform.get('op')}({params})"
