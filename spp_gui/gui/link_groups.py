"""Which visible rows the mapping's links join, counted with array operations rather than per key.

A link runs between the rows that show its two keys: the key's own row, or the collapsed module
that holds it. Rows on screen are walked in pre-order, so each one covers one contiguous slice of
its tree's pre-order leaves (``Node.first_leaf``, ``Node.count``); a key's row is then a binary
search, done for all keys at once. For a 46k-key pair with everything collapsed this is a few
milliseconds instead of a Python loop over every key.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from typing import cast

import numpy as np
from PySide6.QtWidgets import QTreeView

from ..core.mapping import UNMAPPED, MappingStatus
from ..core.tree import Node, ParamTree
from ..core.verify import NOT_COMPARED
from .style import STATUS_ORDER, VERIFY_ORDER
from .tree_model import ParamTreeModel


def shown_rows(view: QTreeView) -> list[Node]:
    """Every row the view lays out (expanded or not, on screen or not), in display order.

    Read from the view's own row list (``indexBelow``), about 1 us a row: asking ``isExpanded``
    of each module costs several times that on a tree expanded to 100k rows.
    """
    model = cast(ParamTreeModel, view.model())  # both tree views show a ParamTreeModel
    if model.tree is None:
        return []
    view.executeDelayedItemsLayout()  # after a reset the rows exist only once the view lays them out
    nodes, below = model.tree.nodes, view.indexBelow
    out: list[Node] = []
    index = model.index(0, 0)
    while index.isValid():
        out.append(nodes[index.internalId()])
        index = below(index)
    return out


def anchor_rows(view: QTreeView) -> list[Node]:
    """The rows a link can end on (shown leaves and collapsed modules), in pre-order.

    A shown module is expanded exactly when the row after it is its own child.
    """
    rows = shown_rows(view)
    out = [node for node, after in pairwise(rows) if after.parent is not node and node.count]
    if rows and rows[-1].count:
        out.append(rows[-1])
    return out


class MappedLeaves:
    """For each target leaf (pre-order): its (first) source leaf's index or -1, and its status code.

    A target filled from several sources has one link per source: the sources after the first are
    ``extra_target`` (target leaf index) and ``extra_source`` (source leaf index), pairwise.

    ``verify`` (target module -> agreement, from a Verify report) counts the links by what was
    found for the module they land in instead of by mapping status; ``order`` names the codes.
    """

    def __init__(self, source: ParamTree, target: ParamTree, entries: dict, status: MappingStatus,
                 verify: dict[str, str] | None = None) -> None:
        index = {n.path: n.first_leaf for n in source.leaf_nodes}
        self.order = VERIFY_ORDER if verify is not None else STATUS_ORDER
        code = {s: i for i, s in enumerate(self.order)}
        fallback = NOT_COMPARED if verify is not None else UNMAPPED
        statuses = status.target
        src, st, extra_t, extra_s = [], [], [], []
        for i, leaf in enumerate(target.leaf_nodes):
            entry = entries.get(leaf.path)
            src.append(index.get(entry.source, -1) if entry is not None else -1)
            if entry is not None and entry.more_sources:
                for name in entry.more_sources:
                    if name in index:
                        extra_t.append(i)
                        extra_s.append(index[name])
            name = (verify.get(leaf.path.rpartition(".")[0], fallback) if verify is not None
                    else statuses.get(leaf.path, fallback))
            st.append(code.get(name, code[fallback]))
        self.source_index = np.asarray(src, dtype=np.int64)
        self.status = np.asarray(st, dtype=np.int64)
        self.extra_target = np.asarray(extra_t, dtype=np.int64)
        self.extra_source = np.asarray(extra_s, dtype=np.int64)


def _which_row(rows: list[Node], leaves: np.ndarray) -> np.ndarray:
    """Position in ``rows`` of the row holding each leaf index, or -1 when none does."""
    if not rows:
        return np.full(len(leaves), -1, dtype=np.int64)
    starts = np.fromiter((n.first_leaf for n in rows), dtype=np.int64, count=len(rows))
    ends = starts + np.fromiter((n.count for n in rows), dtype=np.int64, count=len(rows))
    pos = np.searchsorted(starts, leaves, side="right") - 1
    inside = (pos >= 0) & (leaves < ends[np.maximum(pos, 0)])
    return np.where(inside, pos, -1)


def link_groups(target_rows: list[Node], source_rows: list[Node], mapped: MappedLeaves,
                target_shown: np.ndarray | None, source_shown: np.ndarray | None) -> dict[tuple[Node, Node], Counter]:
    """(target row, source row) -> statuses of the links between them.

    ``*_shown``: per-leaf masks of the keys a filter keeps (None: every key).
    """
    n = len(mapped.source_index)
    keep = mapped.source_index >= 0
    if target_shown is not None:
        keep &= target_shown
    leaves = np.nonzero(keep)[0]
    src = mapped.source_index[leaves]
    if len(mapped.extra_target):  # the further sources of many-to-one entries: one link each
        more = mapped.extra_target if target_shown is None else mapped.extra_target[target_shown[mapped.extra_target]]
        more_src = mapped.extra_source if target_shown is None else \
            mapped.extra_source[target_shown[mapped.extra_target]]
        leaves, src = np.concatenate([leaves, more]), np.concatenate([src, more_src])
    if source_shown is not None:
        ok = source_shown[src]
        leaves, src = leaves[ok], src[ok]
    t_row = _which_row(target_rows, leaves) if n else np.empty(0, dtype=np.int64)
    s_row = _which_row(source_rows, src)
    ok = (t_row >= 0) & (s_row >= 0)
    order = mapped.order
    n_status = len(order)
    codes = (t_row[ok] * len(source_rows) + s_row[ok]) * n_status + mapped.status[leaves[ok]]
    groups: dict[tuple[Node, Node], Counter] = {}
    for code, count in zip(*np.unique(codes, return_counts=True), strict=True):
        pair, status = divmod(int(code), n_status)
        t, s = divmod(pair, len(source_rows))
        groups.setdefault((target_rows[t], source_rows[s]), Counter())[order[status]] += int(count)
    return groups
