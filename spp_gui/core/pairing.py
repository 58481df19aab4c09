"""Qt-free helpers for manual mapping: module-onto-module pairing and transforms that make shapes fit.

The editor's drop and inspector use them; they are plain functions over key tables and trees, so
they live in core and are tested without Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import transforms
from .auto import propose_transform
from .tensors import KeyTable, format_shape
from .tree import Node


@dataclass
class ModulePairing:
    """Source key -> target key pairs for a module dropped on a module, and how sure we are."""

    pairs: list[tuple[str, str]] = field(default_factory=list)  # (source, target)
    by_order: list[tuple[str, str]] = field(default_factory=list)  # the pairs that came from position only
    unmatched_targets: list[str] = field(default_factory=list)

    @property
    def ambiguous(self) -> bool:
        """Anything beyond a clean match by relative name deserves a preview before it is applied."""
        return bool(self.by_order or self.unmatched_targets)


def pair_modules(source: Node, target: Node) -> ModulePairing:
    """Pair the tensors below two modules: by relative name and shape first, then by order and shape."""
    def rel(node: Node, leaf: Node) -> str:
        return leaf.path[len(node.path) + 1:] if node.path else leaf.path

    src = {rel(source, leaf): leaf for leaf in source.leaves()}
    tgt = {rel(target, leaf): leaf for leaf in target.leaves()}
    out = ModulePairing()
    used: set[str] = set()
    rest: list[Node] = []
    for name, leaf in tgt.items():
        match = src.get(name)
        if match is not None and match.info.shape == leaf.info.shape:
            out.pairs.append((match.path, leaf.path))
            used.add(name)
        else:
            rest.append(leaf)
    remaining = [leaf for name, leaf in src.items() if name not in used]
    for leaf in rest:
        pick = next((s for s in remaining if s.info.shape == leaf.info.shape), None)
        if pick is None:
            out.unmatched_targets.append(leaf.path)
            continue
        remaining.remove(pick)
        out.pairs.append((pick.path, leaf.path))
        out.by_order.append((pick.path, leaf.path))
    return out


def channels_before(table: KeyTable, key: str) -> int | None:
    """Output channels of the last conv weight before ``key``: what an SPP or flatten stage reads."""
    channels = None
    for name, info in table.items():
        if name == key:
            return channels
        if len(info.shape) == 4:
            channels = info.shape[0]
    return None


def _proposals(src: tuple[int, ...], tgt: tuple[int, ...], channels: int | None = None) -> list[dict[str, Any]]:
    """The auto strategy's proposal first (it knows parameters such as spp_grid's levels), then bare ops."""
    out: list[dict[str, Any]] = []
    proposed, _confidence, _why = propose_transform(src, tgt, channels)
    if proposed is not None:
        out.append(proposed)
    out += [{"op": op} for op in transforms.TRANSFORMS if {"op": op} not in out]
    return out


def fitting_transforms(src_shape: tuple[int, ...], tgt_shape: tuple[int, ...],
                       channels: int | None = None) -> list[dict[str, Any]]:
    """Transforms that turn ``src_shape`` into ``tgt_shape`` (checked with the core's validator)."""
    return [t for t in _proposals(tuple(src_shape), tuple(tgt_shape), channels)
            if transforms.check_transform(t, src_shape, tgt_shape) is None]


def refusal(src_key: str, src_shape: tuple[int, ...], tgt_key: str, tgt_shape: tuple[int, ...]) -> str:
    return (f"Cannot map {src_key} {format_shape(src_shape)} onto {tgt_key} {format_shape(tgt_shape)}: "
            "shapes differ and no transform makes them fit")
