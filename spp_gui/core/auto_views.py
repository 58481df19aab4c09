"""Views of a key table in one library-neutral layout, so that ``auto`` sees alike what computes alike.

``auto`` matches structure by shapes. Three conventions hide equal structure behind other shapes
or nesting; a view undoes them on virtual keys and remembers the way back:

- tensors a module holds itself (``nn.MultiheadAttention.in_proj_weight``) are shown as a child's
  (``in_proj.weight``), like timm's ``attn.qkv`` Linear;
- a fused projection (``qkv``, ``in_proj``, ``c_attn``) is shown as three parts ``q``, ``k``, ``v`` when
  the other side keeps them apart; in the source each part is a ``chunk`` of the real tensor, in the
  target the three parts are filled together, joined by ``concat`` (an entry with three sources);
- where one side stores its block matrices as (in, out) (GPT-2's Conv1D) and the other as (out, in),
  every block matrix of the source is shown transposed, square ones too: the convention is the
  model's, not the shape's.

Only the source's tensors get transforms; the target's view only renames. Views cost one pass over
the keys; without anything to undo the table is used as it is.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from .tensors import KeyTable, TensorInfo
from .transforms import Transform

_OWN = re.compile(r"^(\w*proj)_(weight|bias)$")  # in_proj_weight, q_proj_weight (nn.MultiheadAttention)
FUSED = ("qkv", "in_proj", "c_attn", "query_key_value", "wqkv", "qkv_proj", "to_qkv", "Wqkv")
_FUSED = {n.lower() for n in FUSED}
_PARTS = ("q", "k", "v")
_SEPARATE = {"q": {"q", "query", "q_proj", "to_q", "wq", "q_lin"}, "k": {"k", "key", "k_proj", "to_k", "wk", "k_lin"},
             "v": {"v", "value", "v_proj", "to_v", "wv", "v_lin"}}
_NUMERIC = re.compile(r"\.\d+(\.|$)")


@dataclass
class View:
    """A virtual table: virtual key -> shape, with the real key and the transform that makes it."""

    table: KeyTable
    real: dict[str, str] = field(default_factory=dict)  # virtual -> real; absent: the same
    transform: dict[str, Transform] = field(default_factory=dict)  # virtual source key -> from the real tensor
    note: dict[str, str] = field(default_factory=dict)  # virtual key -> what the view did, for the reason
    notes: list[str] = field(default_factory=list)  # model-wide conventions found
    #: virtual target key -> (real fused key, which part, the dim the parts are joined along)
    part: dict[str, tuple[str, int, int]] = field(default_factory=dict)

    def real_key(self, key: str) -> str:
        return self.real.get(key, key)


def _own_as_child(key: str) -> str | None:
    path, _, leaf = key.rpartition(".")
    m = _OWN.match(leaf)
    if m is None:
        return None
    return f"{path}.{m.group(1)}.{m.group(2)}" if path else f"{m.group(1)}.{m.group(2)}"


def _renamed(table: KeyTable) -> dict[str, str]:
    """Real key -> virtual key for tensors a module holds itself under a child's name."""
    out = {}
    for key in table:
        if "proj_" in key:
            v = _own_as_child(key)
            if v is not None and v not in table:
                out[key] = v
    return out


def layout(table: KeyTable) -> str | None:
    """'in_out' (Conv1D: x @ W) or 'out_in' (nn.Linear) for the block matrices, from the first block.

    The width D is the commonest size of the first block's 1-d weights (its norms); the first
    non-square block matrix with a D side says which side its input is on.
    """
    prefix = None
    block: list[tuple[str, tuple[int, ...]]] = []
    for key, info in table.items():
        m = _NUMERIC.search(key)
        if m is None:
            if prefix is not None:
                break
            continue
        p = key[: m.end()]
        if prefix is None:
            prefix = p
        elif p != prefix:
            break
        block.append((key, info.shape))
    sizes = Counter(s[0] for k, s in block if len(s) == 1 and k.endswith("weight"))
    if not sizes:
        return None
    d = sizes.most_common(1)[0][0]
    for key, shape in block:
        if len(shape) == 2 and shape[0] != shape[1] and d in shape and key.endswith("weight"):
            return "in_out" if shape[0] == d else "out_in"
    return None


def _has_separate_qkv(keys: list[str]) -> bool:
    parents: dict[str, set[str]] = {}
    for key in keys:
        path = key.rpartition(".")[0]
        parent, _, name = path.rpartition(".")
        low = name.lower()
        for part, names in _SEPARATE.items():
            if low in names:
                parents.setdefault(parent, set()).add(part)
    return any(len(found) == 3 for found in parents.values())


def _has_fused(keys: list[str]) -> bool:
    return any(key.rpartition(".")[0].rpartition(".")[2].lower() in _FUSED for key in keys)


def target_view(table: KeyTable, source: KeyTable | None = None) -> View:
    """The target with its own-tensors renamed as a child's; its fused projections shown as their
    q, k, v parts when ``source`` keeps them apart (and has no fused one of its own)."""
    renamed = _renamed(table)
    split = False
    if source is not None:
        virtual = [renamed.get(k, k) for k in table]
        source_renamed = _renamed(source)
        source_keys = [source_renamed.get(k, k) for k in source]
        split = _has_fused(virtual) and _has_separate_qkv(source_keys) and not _has_fused(source_keys)
    if not split:
        return _apply(table, renamed, {}, {}) if renamed else View(table)
    in_out = layout(table) == "in_out"
    view = View({})
    for key, info in table.items():
        vkey = renamed.get(key, key)
        module, _, leaf = vkey.rpartition(".")
        parent, _, own = module.rpartition(".")
        shape = info.shape
        dim = 1 if in_out and len(shape) == 2 and leaf == "weight" else 0
        parts = [f"{parent}.{p}.{leaf}" if parent else f"{p}.{leaf}" for p in _PARTS]
        if (own.lower() in _FUSED and leaf in ("weight", "bias") and shape and shape[dim] % 3 == 0
                and not any(p in table for p in parts)):
            for i, pkey in enumerate(parts):
                part_shape = tuple(n // 3 if d == dim else n for d, n in enumerate(shape))
                view.table[pkey] = TensorInfo(pkey, part_shape, info.dtype)
                view.real[pkey] = key
                view.part[pkey] = (key, i, dim)
            continue
        view.table[vkey] = TensorInfo(vkey, shape, info.dtype) if vkey != key else info
        if vkey != key:
            view.real[vkey] = key
    return view


def source_view(source: KeyTable, target: View) -> View:
    """The source as the target's conventions would hold it (see the module docstring)."""
    renamed = _renamed(source)
    virtual_keys = [renamed.get(k, k) for k in source]
    src_layout, tgt_layout = layout(source), layout(target.table)
    transpose = src_layout is not None and tgt_layout is not None and src_layout != tgt_layout
    split = _has_fused(virtual_keys) and _has_separate_qkv(list(target.table)) and not _has_fused(list(target.table))
    if not (renamed or transpose or split):
        return View(source)
    transforms: dict[str, Transform] = {}
    notes: dict[str, str] = {}
    view = View({})
    if transpose and src_layout is not None and tgt_layout is not None:
        view.notes.append(f"block matrices are stored {src_layout.replace('_', ', ')} in the source and "
                          f"{tgt_layout.replace('_', ', ')} in the target: transposed, square ones too")
    real: dict[str, str] = {}
    table: KeyTable = {}
    for key, info in source.items():
        vkey = renamed.get(key, key)
        shape = info.shape
        tr: Transform | None = None
        leaf = vkey.rpartition(".")[2]
        is_block_matrix = transpose and len(shape) == 2 and leaf == "weight" and _NUMERIC.search(key) is not None
        if is_block_matrix:
            shape = (shape[1], shape[0])
            tr = {"op": "transpose", "dims": [1, 0]}
        module, _, leaf = vkey.rpartition(".")
        parent, _, own = module.rpartition(".")
        if split and own.lower() in _FUSED and leaf in ("weight", "bias") and shape and shape[0] % 3 == 0:
            part = shape[0] // 3
            for i, p in enumerate(_PARTS):
                pkey = f"{parent}.{p}.{leaf}" if parent else f"{p}.{leaf}"
                if pkey in source or pkey in table:
                    break
                dim = 1 if is_block_matrix else 0
                chunk: Transform = {"op": "chunk", "dim": dim, "chunks": 3, "index": i}
                if is_block_matrix:
                    chunk["transpose"] = True
                table[pkey] = TensorInfo(pkey, (part, *shape[1:]), info.dtype)
                real[pkey] = key
                transforms[pkey] = chunk
                notes[pkey] = f"part {i + 1} of 3 ({p}) of fused '{module}'"
            else:
                continue
        table[vkey] = TensorInfo(vkey, shape, info.dtype)
        if vkey != key:
            real[vkey] = key
        if tr is not None:
            transforms[vkey] = tr
            notes[vkey] = "transposed as the model's convention"
    view.table, view.real, view.transform, view.note = table, real, transforms, notes
    return view


def _apply(table: KeyTable, renamed: dict[str, str], transforms: dict, notes: dict) -> View:
    out: KeyTable = {}
    real = {}
    for key, info in table.items():
        vkey = renamed.get(key, key)
        out[vkey] = TensorInfo(vkey, info.shape, info.dtype) if vkey != key else info
        if vkey != key:
            real[vkey] = key
    return View(out, real, transforms, notes)
