"""Shape-adapting transforms: explicit, serialisable ops stored in a mapping entry.

A transform is a JSON object ``{"op": NAME, ...params}``. Each op knows the source shape it
accepts and checks that it produces the target's shape; ``apply`` receives the source tensor and
the target's current (initialised) tensor, so ops such as ``slice`` can keep the target's init
where the source has nothing to give.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

import torch

from .errors import MappingError
from .tensors import format_shape

Transform = dict[str, Any]


@dataclass(frozen=True)
class TransformOp:
    name: str
    describe: str
    #: (params, source shape, target shape) -> None, raising ValueError with the reason when it can't fit
    check: Callable[[Transform, tuple[int, ...], tuple[int, ...]], None]
    #: (params, source tensor, target tensor) -> new target tensor
    apply: Callable[[Transform, torch.Tensor, torch.Tensor], torch.Tensor]
    #: (params, source shape, target shape) -> target elements that come from the source; None: all
    carried: Callable[[Transform, tuple[int, ...], tuple[int, ...]], int] | None = None
    #: the parameters the op takes besides "op"; any other key is refused
    params: tuple[str, ...] = ()
    #: params -> None, raising ValueError when they are malformed whatever the shapes (a mapping
    #: file is checked with this when it is read, before any source or target is known)
    check_params: Callable[[Transform], None] | None = None


TRANSFORMS: dict[str, TransformOp] = {}


def register_transform(op: TransformOp) -> TransformOp:
    TRANSFORMS[op.name] = op
    return op


def brief(value: Any, limit: int = 60) -> str:
    """A short, one-line repr of a value read from a file, for a message (never a deep or huge one)."""
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        if len(value) <= limit and all(isinstance(v, scalar) for v in value) and len(text := repr(value)) <= limit:
            return text
        return f"a list of {len(value)} items"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"a {len(str(abs(value)))}-digit number"
    text = repr(value) if isinstance(value, scalar) else type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _op(transform: Transform) -> TransformOp:
    if not isinstance(transform, dict) or "op" not in transform:
        raise MappingError(f"a transform must be an object with an 'op' field, got {brief(transform)}")
    name = transform["op"]
    op = TRANSFORMS.get(name) if isinstance(name, str) else None
    if op is None:
        raise MappingError(f"unknown transform {brief(name)}; known: {', '.join(sorted(TRANSFORMS)) or 'none'}")
    return op


def _check_params(op: TransformOp, transform: Transform) -> None:
    for key in transform:
        if key != "op" and key not in op.params:
            takes = f"it takes {', '.join(repr(p) for p in op.params)}" if op.params else "it takes none"
            raise ValueError(f"takes no parameter {brief(key)} ({takes})")
    if op.check_params is not None:
        op.check_params(transform)


def check_params(transform: Any) -> str | None:
    """Return why ``transform`` is malformed whatever the shapes (unknown op or parameter, a
    parameter of the wrong type), or None. What a file reader checks before shapes are known."""
    try:
        _check_params(_op(transform), transform)
    except MappingError as exc:
        return str(exc)
    except ValueError as exc:
        return f"{transform['op']}: {exc}"
    return None


def check_transform(transform: Transform | None, src_shape: tuple[int, ...], tgt_shape: tuple[int, ...]) -> str | None:
    """Return why ``transform`` can't turn ``src_shape`` into ``tgt_shape``, or None when it fits."""
    if transform is None:
        return None if tuple(src_shape) == tuple(tgt_shape) else "shapes differ and no transform is set"
    why = check_params(transform)
    if why is not None:
        return why
    try:
        _op(transform).check(transform, tuple(src_shape), tuple(tgt_shape))
    except (ValueError, TypeError, KeyError, IndexError, ArithmeticError) as exc:
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


def carried_numel(transform: Transform | None, src_shape: tuple[int, ...], tgt_shape: tuple[int, ...]) -> int:
    """How many of the target tensor's elements come from the source (the rest keep their init).

    A load report that counts an adapted tensor as wholly loaded overstates the transfer: an
    ``spp_grid`` fills only the columns of one pyramid level.
    """
    n = math.prod(tgt_shape)
    if transform is None:
        return n
    op = _op(transform)
    return op.carried(transform, tuple(src_shape), tuple(tgt_shape)) if op.carried else n


# ---------------------------------------------------------------------------------------------
# the ops


def _overlap(src: tuple[int, ...], tgt: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(0, min(a, b)) for a, b in zip(src, tgt, strict=True))


def _check_block(params: Transform, src: tuple[int, ...], tgt: tuple[int, ...]) -> None:
    if len(src) != len(tgt):
        raise ValueError(f"needs the same number of dimensions, got {len(src)} and {len(tgt)}")
    if params["op"] == "slice":
        for d, (a, b) in enumerate(zip(src, tgt, strict=True)):
            if a < b:
                raise ValueError(f"dim {d}: source {a} < target {b}, nothing to cut (use pad)")


def _apply_block(params: Transform, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    out = tgt.clone()
    block = _overlap(tuple(src.shape), tuple(tgt.shape))
    out[block] = src[block].to(out.dtype)
    return out


def _carried_block(params: Transform, src: tuple[int, ...], tgt: tuple[int, ...]) -> int:
    return math.prod(min(a, b) for a, b in zip(src, tgt, strict=True))


def _is_int(value: Any) -> TypeGuard[int]:
    """A whole number a tensor index can hold (JSON true is not a 1)."""
    return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63


def _params_rows(params: Transform) -> None:
    rows = params.get("rows")
    if not isinstance(rows, list):
        raise ValueError("needs 'rows': a list of source row indices (null keeps the target's row)")
    for r in rows:
        if r is not None and not (_is_int(r) and r >= 0):
            raise ValueError(f"row {brief(r)} is not a source row index (a whole number >= 0, or null)")


def _check_rows(params: Transform, src: tuple[int, ...], tgt: tuple[int, ...]) -> None:
    rows = params["rows"]
    if not src or len(src) != len(tgt) or src[1:] != tgt[1:]:
        raise ValueError("source and target must agree on every dimension but the first")
    if len(rows) != tgt[0]:
        raise ValueError(f"lists {len(rows)} rows but the target has {tgt[0]}")
    for r in rows:
        if r is not None and not r < src[0]:
            raise ValueError(f"row {r!r} is not an index into the source's {src[0]} rows")


def _apply_rows(params: Transform, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    out = tgt.clone()
    pairs = [(i, r) for i, r in enumerate(params["rows"]) if r is not None]
    if pairs:
        dst_idx = torch.tensor([i for i, _ in pairs])
        src_idx = torch.tensor([r for _, r in pairs])
        out[dst_idx] = src[src_idx].to(out.dtype)
    return out


def _carried_rows(params: Transform, src: tuple[int, ...], tgt: tuple[int, ...]) -> int:
    return sum(r is not None for r in params["rows"]) * math.prod(tgt[1:])


def _check_in_channels(params: Transform, src: tuple[int, ...], tgt: tuple[int, ...]) -> None:
    if len(src) < 3 or len(src) != len(tgt):
        raise ValueError("applies to conv weights (out, in, *kernel)")
    if src[0] != tgt[0] or src[2:] != tgt[2:]:
        raise ValueError("only the input-channel dimension (dim 1) may differ")
    if src[1] == 0:
        raise ValueError("the source has 0 input channels: there is nothing to adapt from")


def _apply_in_channels(params: Transform, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    # timm's adapt_input_conv: one channel sums the source's; N channels repeat them, scaled so
    # the response to an input with equal channels keeps its magnitude.
    src_in, tgt_in = src.shape[1], tgt.shape[1]
    w = src.float()
    if tgt_in == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        repeat = -(-tgt_in // src_in)
        w = w.repeat(1, repeat, *([1] * (src.dim() - 2)))[:, :tgt_in] * (src_in / tgt_in)
    return w.to(tgt.dtype)


def _params_transpose(params: Transform) -> None:
    if "dims" not in params:
        return
    dims = params["dims"]
    if not isinstance(dims, list) or not all(_is_int(d) for d in dims) or sorted(dims) != list(range(len(dims))):
        raise ValueError(f"'dims' must be a permutation of 0..n-1 (whole numbers), got {brief(dims)}")


def _check_transpose(params: Transform, src: tuple[int, ...], tgt: tuple[int, ...]) -> None:
    dims = params.get("dims", [1, 0] if len(src) == 2 else None)
    if not isinstance(dims, list) or sorted(dims) != list(range(len(src))):
        raise ValueError(f"'dims' must be a permutation of 0..{len(src) - 1}, got {dims!r}")
    moved = tuple(src[d] for d in dims)
    if moved != tgt:
        raise ValueError(f"permuting by {dims} gives {moved}, not {tgt}")


def _apply_transpose(params: Transform, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    dims = params.get("dims", [1, 0])
    return src.permute(*dims).contiguous()


def _check_reshape(params: Transform, src: tuple[int, ...], tgt: tuple[int, ...]) -> None:
    if math.prod(src) != math.prod(tgt):
        raise ValueError(f"element counts differ ({math.prod(src)} vs {math.prod(tgt)})")


def _apply_reshape(params: Transform, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    return src.reshape(tgt.shape)


def _params_chunk(params: Transform) -> None:
    for name in ("dim", "chunks", "index"):
        if not _is_int(params.get(name)):
            raise ValueError(f"needs {name!r}: a whole number (e.g. dim 0, chunks 3, index 1 for k of a fused qkv)")
    if params["chunks"] < 1 or not 0 <= params["index"] < params["chunks"] or params["dim"] < 0:
        raise ValueError(f"needs 0 <= index < chunks and dim >= 0, got dim {params['dim']}, chunks "
                         f"{params['chunks']}, index {params['index']}")
    if "transpose" in params and not isinstance(params["transpose"], bool):
        raise ValueError(f"'transpose' must be true or false, got {brief(params['transpose'])}")


def _chunk_shape(params: Transform, src: tuple[int, ...]) -> tuple[int, ...]:
    dim, chunks = params["dim"], params["chunks"]
    if dim >= len(src):
        raise ValueError(f"dim {dim} is not a dimension of a {len(src)}-d source")
    if src[dim] % chunks:
        raise ValueError(f"dim {dim} of size {src[dim]} does not split into {chunks} equal parts")
    part = list(src)
    part[dim] //= chunks
    if params.get("transpose"):
        if len(part) != 2:
            raise ValueError("transpose applies to a 2-d part")
        part.reverse()
    return tuple(part)


def _check_chunk(params: Transform, src: tuple[int, ...], tgt: tuple[int, ...]) -> None:
    part = _chunk_shape(params, src)
    if part != tgt:
        raise ValueError(f"part {params['index']} of {params['chunks']} along dim {params['dim']} is {part}, "
                         f"not {tgt}")


def _apply_chunk(params: Transform, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    part = src.chunk(params["chunks"], dim=params["dim"])[params["index"]]
    return (part.t() if params.get("transpose") else part).contiguous()


def spp_offset(levels: list[int], bins: int) -> int:
    """Column offset, within one channel's bins, of the pyramid level with ``bins`` bins."""
    return sum(levels[: levels.index(bins)])


def _params_spp_grid(params: Transform) -> None:
    levels, bins = params.get("levels"), params.get("bins")
    if not isinstance(levels, list) or not levels or not all(_is_int(n) and n > 0 for n in levels):
        raise ValueError("needs 'levels': the target pyramid's bin counts, e.g. [1, 4, 9, 36]")
    if not _is_int(bins) or bins not in levels:
        raise ValueError(f"'bins' (the source grid's bins per channel) must be one of the levels {brief(levels)}")


def _check_spp_grid(params: Transform, src: tuple[int, ...], tgt: tuple[int, ...]) -> None:
    levels, bins = params["levels"], params["bins"]
    if len(src) != 2 or len(tgt) != 2 or src[0] != tgt[0]:
        raise ValueError("applies to Linear weights (out, in) with the same out features")
    if src[1] % bins:
        raise ValueError(f"source in-features {src[1]} are not channels x {bins} bins")
    channels = src[1] // bins
    if tgt[1] != channels * sum(levels):
        raise ValueError(f"target in-features {tgt[1]} != {channels} channels x {sum(levels)} bins")


def _apply_spp_grid(params: Transform, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    # The source reads flatten(C, k, k): column c*bins + b. The SPP output is (C, sum(levels))
    # flattened: column c*total + offset + b. So copy per channel into the level's slot.
    levels, bins = params["levels"], params["bins"]
    out_f, channels = src.shape[0], src.shape[1] // bins
    offset = spp_offset(levels, bins)
    out = tgt.clone()
    view = out.view(out_f, channels, sum(levels))
    view[:, :, offset:offset + bins] = src.reshape(out_f, channels, bins).to(out.dtype)
    return out


def _carried_spp_grid(params: Transform, src: tuple[int, ...], tgt: tuple[int, ...]) -> int:
    return math.prod(src)


ROPE_LAYOUTS = ("hf", "meta")


def _params_rope(params: Transform) -> None:
    heads = params.get("heads")
    if not _is_int(heads) or heads < 1:
        raise ValueError(f"needs 'heads': the attention heads the rows hold (n_heads for wq/q_proj, n_kv_heads for "
                         f"wk/k_proj), a whole number >= 1, got {brief(heads)}")
    if params.get("to") not in ROPE_LAYOUTS:
        raise ValueError(f"needs 'to': 'hf' (Meta's interleaved rotary pairs -> HF's two halves, as "
                         f"convert_llama_weights_to_hf.py's permute) or 'meta' (the inverse), got {brief(params.get('to'))}")


def _check_rope(params: Transform, src: tuple[int, ...], tgt: tuple[int, ...]) -> None:
    if src != tgt:
        raise ValueError(f"reorders rows only: the source {format_shape(src)} and target {format_shape(tgt)} must agree")
    heads = params["heads"]
    if not src or src[0] % (2 * heads):
        raise ValueError(f"{src[0] if src else 0} rows do not split into {heads} heads of an even size")


def _apply_rope(params: Transform, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    # per head, Meta keeps rotary pairs interleaved (rows 2i, 2i+1); HF's rotate_half keeps them i and i + d/2
    heads = params["heads"]
    half = src.shape[0] // heads // 2
    w = src.reshape(heads, half, 2, -1) if params["to"] == "hf" else src.reshape(heads, 2, half, -1)
    return w.transpose(1, 2).reshape(src.shape).contiguous()


for _t in (
    TransformOp("slice", "copy the leading block of a bigger source; the rest of the source is dropped",
                _check_block, _apply_block, _carried_block),
    TransformOp("pad", "copy the overlapping block; what the source lacks keeps the target's init",
                _check_block, _apply_block, _carried_block),
    TransformOp("select_rows", "target row i <- source row rows[i] (null keeps the target's row)",
                _check_rows, _apply_rows, _carried_rows, ("rows",), _params_rows),
    TransformOp("in_channels", "conv input channels: sum to 1, or repeat and scale by in/out (timm)",
                _check_in_channels, _apply_in_channels),
    TransformOp("transpose", "permute dimensions (default [1, 0]), e.g. Conv1D-style (in, out) weights",
                _check_transpose, _apply_transpose, None, ("dims",), _params_transpose),
    TransformOp("reshape", "same elements, other shape, e.g. Linear (o, i) <-> 1x1 conv (o, i, 1, 1)",
                _check_reshape, _apply_reshape),
    TransformOp("spp_grid", "a Linear reading a C x k x k grid -> one reading C x sum(levels) SPP bins",
                _check_spp_grid, _apply_spp_grid, _carried_spp_grid, ("levels", "bins"), _params_spp_grid),
    TransformOp("chunk", "part index of chunks equal parts along dim (one of a fused qkv); transpose: then .t()",
                _check_chunk, _apply_chunk, None, ("dim", "chunks", "index", "transpose"), _params_chunk),
    TransformOp("rope_permute", "each head's rows between Meta's interleaved rotary pairs and HF's two halves "
                "(to 'hf' or 'meta'; heads: n_heads for q, n_kv_heads for k)",
                _check_rope, _apply_rope, None, ("heads", "to"), _params_rope),
):
    register_transform(_t)
