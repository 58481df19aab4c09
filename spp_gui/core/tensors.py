"""Describing tensors without holding them: the currency of listing and mapping."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """Name, shape and dtype of one tensor of a source or target; never its data."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # torch dtype name without the "torch." prefix, e.g. "float32"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * dtype_size(self.dtype)

    @classmethod
    def of(cls, name: str, tensor: torch.Tensor) -> TensorInfo:
        return cls(name, tuple(tensor.shape), dtype_name(tensor.dtype))


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


@functools.cache
def dtype_size(name: str) -> int:
    return torch.empty((), dtype=torch_dtype(name)).element_size()


def format_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")" if shape else "()"


#: An ordered table of tensors, as a source or a target exposes it.
KeyTable = dict[str, TensorInfo]


_DTYPE_NAMES: dict[torch.dtype, str] = {}


def table_of(state: dict[str, torch.Tensor]) -> KeyTable:
    # one dtype name per dtype, not per tensor: a 46,500-key MoE model has two or three dtypes
    names, tensor, out = _DTYPE_NAMES, torch.Tensor, {}
    for k, v in state.items():
        if isinstance(v, tensor):
            dtype = v.dtype
            name = names.get(dtype)
            if name is None:
                name = names[dtype] = dtype_name(dtype)
            out[k] = TensorInfo(k, tuple(v.shape), name)
    return out
