"""A custom QAbstractItemModel over a :class:`ParamTree`: the adapter behind both tree views.

Rows are the tree's nodes, addressed by an integer id in ``internalId`` (no Python object per
index). Filtering is computed once over the key list into per-node child lists, never as a
per-row ``filterAcceptsRow`` callback, so a 47,000-key tree filters in milliseconds.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from PySide6.QtCore import (
    QAbstractItemModel,
    QByteArray,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QFont, QGuiApplication

from ..core.mapping import UNMAPPED
from ..core.strategies import Role
from ..core.tensors import format_shape
from ..core.tree import Node, ParamTree
from .document import MappingDocument
from .style import STATUS_STYLE, UNUSED, status_background, status_icon

MIME_KEYS = "application/x-spp-gui-keys"
COLUMNS = ("Name", "Shape", "Dtype", "Numel", "Module")
PATH_ROLE = Qt.ItemDataRole.UserRole + 1
STATUS_ROLE = Qt.ItemDataRole.UserRole + 2

Index = QModelIndex | QPersistentModelIndex
HIGHLIGHT_MAX = 50  # same-shape keys shown bold at most: on a MoE tree one shape has thousands

# flags are asked for every row a view lays out: combined once here, not per call
_SELECTABLE = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
_FLAGS = {  # (side, is_leaf) -> flags; a leaf says it never has children, so expandAll skips it
    (Role.SOURCE, False): _SELECTABLE | Qt.ItemFlag.ItemIsDragEnabled,
    (Role.SOURCE, True): _SELECTABLE | Qt.ItemFlag.ItemIsDragEnabled | Qt.ItemFlag.ItemNeverHasChildren,
    (Role.TARGET, False): _SELECTABLE | Qt.ItemFlag.ItemIsDropEnabled,
    (Role.TARGET, True): _SELECTABLE | Qt.ItemFlag.ItemIsDropEnabled | Qt.ItemFlag.ItemNeverHasChildren,
}


def compile_filter(text: str, regex: bool) -> Callable[[str], bool] | None:
    """A key predicate for the filter box; None matches everything. Raises re.error on a bad regex."""
    if not text:
        return None
    if regex:
        pattern = re.compile(text, re.IGNORECASE)
        return lambda key: pattern.search(key) is not None
    needle = text.lower()
    return lambda key: needle in key.lower()


def nearest_keys(paths: Sequence[str], positions: np.ndarray, near: str | None, near_position: float | None,
                 limit: int) -> np.ndarray:
    """Indices into ``paths`` of the ``limit`` keys most like ``near``, best first.

    Most alike: the most dotted components equal counted from the end (two models name a layer's
    tensors alike under different prefixes: ``model.layers.3.w1.weight`` ~ ``layers.3.gate.weight``),
    then the nearest relative position (``positions`` and ``near_position`` in [0, 1]), then key order.
    """
    distance = np.abs(positions - near_position) if near_position is not None else np.zeros(len(paths))
    if near is None:
        alike = np.zeros(len(paths), dtype=np.int64)
    else:
        tail = near.split(".")[::-1]

        def equal_from_end(path: str) -> int:
            return sum(a == b for a, b in zip(tail, reversed(path.split(".")), strict=False))

        alike = np.fromiter(map(equal_from_end, paths), dtype=np.int64, count=len(paths))
    return np.lexsort((distance, -alike))[:limit]  # stable: ties stay in key order


class ParamTreeModel(QAbstractItemModel):
    """One side (``'source'`` or ``'target'``) of the session as a tree of modules and tensors."""

    #: (keys shown bold, keys of the highlighted shape) after each :meth:`set_highlight`
    highlightChanged = Signal(int, int)

    def __init__(self, doc: MappingDocument, side: Role, parent=None) -> None:
        super().__init__(parent)
        self.doc, self.side = doc, side
        self.tree: ParamTree | None = None
        self._nodes: list[Node] = []
        self._leaves: list[Node] = []
        self._kids: dict[Node, list[Node]] | None = None  # filtered child lists; None: unfiltered
        self._rows: dict[Node, int] = {}
        self._agg: dict[Node, dict[str, int]] = {}
        self._leaf_status: list[str] | None = None
        self.leaf_shown: np.ndarray | None = None  # per pre-order leaf: kept by the filter (None: no filter)
        self.highlight_shape: tuple[int, ...] | None = None
        self.highlight_count = 0  # keys of that shape; at most HIGHLIGHT_MAX of them are bold
        self._highlight: set[int] = set()  # uids of the bold rows
        self._by_shape: dict[tuple[int, ...], list[int]] | None = None  # shape -> pre-order leaf indices
        self.match_count = 0
        #: called with (source keys, target path) when keys are dropped here, and ``add=True`` when Ctrl
        #: is held (add the key as another source of the target); set by the window
        self.on_drop_keys: Callable[..., bool] | None = None
        #: called with a list of local file paths dropped on the tree
        self.on_drop_files: Callable[[list[str]], bool] | None = None
        self._flags = (_FLAGS[Role(side), False], _FLAGS[Role(side), True])
        self._bold = QFont()
        self._bold.setBold(True)
        doc.changed.connect(self._statuses_changed)

    # -- content ------------------------------------------------------------------------------
    def set_tree(self, tree: ParamTree | None) -> None:
        self.beginResetModel()
        self.tree = tree
        self._nodes, self._leaves, self._kids, self._rows, self._agg = [], [], None, {}, {}
        self._leaf_status = None
        self.leaf_shown = None
        self.highlight_shape, self.highlight_count, self._highlight, self._by_shape = None, 0, set(), None
        if tree is not None:  # numbered on the loading thread: nothing to walk here
            self._nodes, self._leaves = tree.nodes, tree.leaf_nodes
            self.match_count = len(tree)
        self.endResetModel()

    def set_filter(self, text: str, regex: bool = False) -> int:
        """Show only keys matching ``text`` (and their modules); return how many keys match."""
        match = compile_filter(text, regex)
        self.beginResetModel()
        self._kids, self._rows, self.leaf_shown = None, {}, None
        if self.tree is not None and match is not None:
            visible: set[Node] = {self.tree.root}
            matched = [leaf for leaf in self._leaves if match(leaf.path)]
            self.leaf_shown = np.zeros(len(self._leaves), dtype=bool)  # per pre-order leaf, for the link canvas
            self.leaf_shown[[leaf.first_leaf for leaf in matched]] = True
            for leaf in matched:
                node: Node | None = leaf
                while node is not None and node not in visible:  # stops at the root, visible from the start
                    visible.add(node)
                    node = node.parent
            kids: dict[Node, list[Node]] = {}
            for module in visible:
                if module.tensor is None:
                    shown = [c for c in module.children if c in visible]
                    kids[module] = shown
                    for row, child in enumerate(shown):
                        self._rows[child] = row
            self._kids = kids
            self.match_count = len(matched)
        else:
            self.match_count = len(self.tree) if self.tree is not None else 0
        self.endResetModel()
        return self.match_count

    @property
    def filtered(self) -> bool:
        return self._kids is not None

    def shown_children(self, node: Node) -> list[Node]:
        """The children shown under ``node`` (all of them, or those the filter keeps)."""
        if self._kids is None:
            return node.children
        return self._kids.get(node, [])

    def _row(self, node: Node) -> int:
        return node.row if self._kids is None else self._rows.get(node, 0)

    def row_of(self, node: Node) -> int:
        """``node``'s row under its parent as shown (the filter renumbers)."""
        return self._row(node)

    def shown_count(self) -> int:
        """How many rows the tree has under the filter, were every module expanded."""
        if self.tree is None:
            return 0
        return len(self._nodes) - 1 if self._kids is None else len(self._rows)

    def visible(self, node: Node) -> bool:
        return self._kids is None or (self.tree is not None and node is self.tree.root) or node in self._rows

    # -- lookups the views and the canvas use ------------------------------------------------
    def node(self, index: Index) -> Node | None:
        if not index.isValid():
            return self.tree.root if self.tree is not None else None
        return self._nodes[index.internalId()]

    def index_of(self, node: Node, column: int = 0) -> QModelIndex:
        if self.tree is None or node is self.tree.root or not self.visible(node):
            return QModelIndex()
        return self.createIndex(self._row(node), column, node.uid)

    def index_of_path(self, path: str) -> QModelIndex:
        if self.tree is None:
            return QModelIndex()
        try:
            return self.index_of(self.tree.node(path))
        except KeyError:
            return QModelIndex()

    def status_of(self, node: Node) -> str:
        if node.tensor is not None:
            return self.doc.target_status(node.path) if self.side == Role.TARGET else self.doc.source_status(node.path)
        counts = self.aggregate(node)
        return next(iter(counts)) if len(counts) == 1 else ""

    def aggregate(self, node: Node) -> dict[str, int]:
        """Leaf statuses below a module, counted when a row asks, cached until the mapping changes.

        The leaves below a module are one slice of the pre-order leaf list, so a module costs one
        C-level count over its slice; only rows that are shown are ever counted.
        """
        if self.tree is None or node.tensor is not None:
            return {}
        counts = self._agg.get(node)
        if counts is None:
            if self._leaf_status is None:  # every leaf's status, in pre-order, in one comprehension
                target_status = self.doc.status.target
                if self.side == Role.TARGET:
                    self._leaf_status = [target_status.get(n.path, UNMAPPED) for n in self._leaves]
                else:
                    used_by = self.doc.status.source_used_by
                    self._leaf_status = [target_status.get(u[0], UNMAPPED) if (u := used_by.get(n.path)) else
                                         UNUSED for n in self._leaves]
            counts = dict(Counter(self._leaf_status[node.first_leaf:node.first_leaf + node.count]))
            self._agg[node] = counts
        return counts

    def set_highlight(self, shape: tuple[int, ...] | None, near: str | None = None) -> int:
        """Bold up to HIGHLIGHT_MAX keys of ``shape``, those most like ``near`` first; return how many
        keys have that shape (also in ``highlight_count`` and ``highlightChanged``).

        ``near`` is the key selected in the other tree: keys named alike, then those at the same
        relative position, win. The views repaint; no per-row signals over a huge tree.
        """
        self.highlight_shape = shape
        self._highlight = set()
        self.highlight_count = 0
        if shape is not None and self.tree is not None:
            found = self._shape_index().get(tuple(shape), [])
            self.highlight_count = len(found)
            if len(found) > HIGHLIGHT_MAX:
                leaves = self._leaves
                paths = [leaves[i].path for i in found]
                positions = np.asarray(found, dtype=np.float64) / max(1, len(leaves))
                found = [found[i] for i in nearest_keys(paths, positions, near, self._position_in_other(near),
                                                        HIGHLIGHT_MAX)]
            self._highlight = {self._leaves[i].uid for i in found}
        self.highlightChanged.emit(len(self._highlight), self.highlight_count)
        return self.highlight_count

    @property
    def highlight_shown(self) -> int:
        """How many of the ``highlight_count`` same-shape keys are bold (at most HIGHLIGHT_MAX)."""
        return len(self._highlight)

    def highlighted(self, node: Node) -> bool:
        """Whether ``node``'s row is shown bold (one of the capped same-shape keys)."""
        return node.uid in self._highlight

    def _shape_index(self) -> dict[tuple[int, ...], list[int]]:
        if self._by_shape is None:  # once per tree, on the first selection
            by_shape: dict[tuple[int, ...], list[int]] = {}
            for i, leaf in enumerate(self._leaves):
                by_shape.setdefault(tuple(leaf.info.shape), []).append(i)
            self._by_shape = by_shape
        return self._by_shape

    def _position_in_other(self, key: str | None) -> float | None:
        """Where ``key`` sits in the other side's key order, in [0, 1]; None when it is not a key there."""
        other = self.doc.source if self.side == Role.TARGET else self.doc.target
        if key is None or other is None:
            return None
        try:
            leaf = other.tree.leaf(key)
        except KeyError:
            return None
        return leaf.first_leaf / max(1, len(other.tree))

    def _statuses_changed(self) -> None:
        self._agg.clear()
        self._leaf_status = None
        if self.tree is not None and self.rowCount():
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, len(COLUMNS) - 1))

    # -- QAbstractItemModel ---------------------------------------------------------------------
    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        if self.tree is None or column < 0 or column >= len(COLUMNS) or row < 0:
            return QModelIndex()
        node = self._nodes[parent.internalId()] if parent.isValid() else self.tree.root
        kids = node.children if self._kids is None else self._kids.get(node, ())
        if row >= len(kids):
            return QModelIndex()
        return self.createIndex(row, column, kids[row].uid)

    # the stubs declare QObject.parent() and parent(index) as overloads, which one Python override cannot
    # match; the views only ever call this one, with an index
    def parent(self, index: Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not index.isValid() or self.tree is None:
            return QModelIndex()
        parent = self._nodes[index.internalId()].parent
        if parent is None or parent is self.tree.root:
            return QModelIndex()
        return self.createIndex(self._row(parent), 0, parent.uid)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        if self.tree is None or (parent.isValid() and parent.column() != 0):
            return 0
        node = self._nodes[parent.internalId()] if parent.isValid() else self.tree.root
        return len(self.shown_children(node))

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return len(COLUMNS)

    def hasChildren(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        if self.tree is None or (parent.isValid() and parent.column() != 0):
            return False
        node = self._nodes[parent.internalId()] if parent.isValid() else self.tree.root
        return bool(self.shown_children(node))

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(COLUMNS):
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        node = self._nodes[index.internalId()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return node.name if node.tensor is not None else f"{node.name}  ({node.count})"
            if col == 1:
                return format_shape(node.tensor.shape) if node.tensor is not None else ""
            if col == 2:
                return node.tensor.dtype if node.tensor is not None else ""
            if col == 3:
                return f"{node.numel:,}"
            return node.module_class or ""
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            status = self.status_of(node)
            return status_icon(status) if status else None
        if role == Qt.ItemDataRole.BackgroundRole:
            status = self.status_of(node) if node.tensor is not None else ""
            return status_background(status) if status else None
        if role == Qt.ItemDataRole.FontRole:
            return self._bold if node.uid in self._highlight else None
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(node)
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 3:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == PATH_ROLE:
            return node.path
        if role == STATUS_ROLE:
            return self.status_of(node)
        return None

    def _tooltip(self, node: Node) -> str:
        if node.tensor is None:
            counts = self.aggregate(node)
            parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
            return f"{node.path or '(root)'}: {node.count} tensors, {node.numel:,} parameters\n{parts}"
        status = self.status_of(node)
        lines = [node.path, STATUS_STYLE.get(status, STATUS_STYLE[UNUSED])[2]]
        if self.side == Role.TARGET and (entry := self.doc.mapping.get(node.path)) is not None:
            lines.append(f"from {' + '.join(entry.sources)}" if entry.many else f"from {entry.source}")
            if (why := self.doc.status.problems.get(node.path)) is not None:
                lines.append(why)
        elif self.side == Role.SOURCE and (users := self.doc.status.source_used_by.get(node.path)):
            lines.append("fills " + ", ".join(users[:5]) + (" ..." if len(users) > 5 else ""))
        if self.highlight_shape is not None and node.tensor.shape == self.highlight_shape:
            lines.append("shape-compatible with the selected key")
        return "\n".join(lines)

    # -- drag and drop ----------------------------------------------------------------------------
    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.ItemIsDropEnabled
        return self._flags[self._nodes[index.internalId()].tensor is not None]

    def mimeTypes(self) -> list[str]:
        return [MIME_KEYS, "text/uri-list"]

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.LinkAction | Qt.DropAction.CopyAction

    def supportedDropActions(self) -> Qt.DropAction:
        return Qt.DropAction.LinkAction | Qt.DropAction.CopyAction

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        paths: list[str] = []
        for index in indexes:
            if index.isValid() and index.column() == 0:
                paths.append(self._nodes[index.internalId()].path)
        mime = QMimeData()
        mime.setData(MIME_KEYS, QByteArray(json.dumps({"side": self.side, "paths": paths}).encode()))
        mime.setText("\n".join(paths))
        return mime

    @staticmethod
    def decode_keys(mime: QMimeData) -> tuple[str, list[str]] | None:
        if not mime.hasFormat(MIME_KEYS):
            return None
        try:
            data = json.loads(bytes(mime.data(MIME_KEYS).data()).decode())
            return str(data["side"]), [str(p) for p in data["paths"]]
        except (ValueError, KeyError, TypeError):
            return None

    def canDropMimeData(self, mime: QMimeData, action: Qt.DropAction, row: int, column: int, parent: Index) -> bool:
        if mime.hasUrls():
            return any(url.isLocalFile() for url in mime.urls())
        decoded = self.decode_keys(mime)
        return (self.side == Role.TARGET and decoded is not None and decoded[0] == Role.SOURCE
                and bool(decoded[1]) and parent.isValid())

    def dropMimeData(self, mime: QMimeData, action: Qt.DropAction, row: int, column: int, parent: Index) -> bool:
        if not self.canDropMimeData(mime, action, row, column, parent):
            return False
        if mime.hasUrls():
            files = [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]
            return bool(self.on_drop_files and self.on_drop_files(files))
        if row >= 0 and parent.isValid():  # dropped between rows: the row under the cursor's parent
            target = self.index(row, 0, parent)
            parent = target if target.isValid() else parent
        node = self.node(parent)
        decoded = self.decode_keys(mime)  # not None: canDropMimeData said yes to keys
        if decoded is None or node is None or self.on_drop_keys is None:
            return False
        if QGuiApplication.keyboardModifiers() & Qt.KeyboardModifier.ControlModifier:
            return bool(self.on_drop_keys(decoded[1], node.path, add=True))
        return bool(self.on_drop_keys(decoded[1], node.path))
