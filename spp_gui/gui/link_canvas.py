"""The strip between the trees: one curve per mapping link between rows that are on screen.

Links are grouped by the visible row each end sits under (a collapsed module gathers its
children's links into one thicker curve). The grouping is rebuilt only when the mapping, a filter
or the expansion changes; scrolling only re-reads the positions of the few rows on screen, so a
frame costs O(visible rows), not O(keys).
"""

from __future__ import annotations

import math
from collections import defaultdict

from PySide6.QtCore import QPoint, QPointF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPainterPath, QPainterPathStroker, QPaintEvent, QPen
from PySide6.QtWidgets import QTreeView, QWidget

from ..core.mapping import INVALID
from ..core.tree import Node
from .document import MappingDocument
from .link_groups import MappedLeaves, anchor_rows, link_groups
from .style import STATUS_ORDER, status_color
from .tree_model import ParamTreeModel


def visible_rows(view: QTreeView) -> dict[Node, int]:
    """Node -> y centre (viewport coordinates) of every row currently on screen."""
    model: ParamTreeModel = view.model()
    rows: dict[Node, int] = {}
    height = view.viewport().height()
    index = view.indexAt(QPoint(1, 1))
    while index.isValid():
        rect = view.visualRect(index)
        if rect.top() > height:
            break
        rows[model.node(index)] = rect.center().y()
        index = view.indexBelow(index)
    return rows


class LinkCanvas(QWidget):
    """Draws and hit-tests the links; ``linkClicked(target_path, source_path)`` on a click."""

    linkClicked = Signal(str, str)

    def __init__(self, doc: MappingDocument, source_view: QTreeView, target_view: QTreeView, parent=None) -> None:
        super().__init__(parent)
        self.doc, self.source_view, self.target_view = doc, source_view, target_view
        self._by_target: dict[Node, list[tuple[Node, str, int]]] = {}
        self._by_source: dict[Node, list[tuple[Node, str, int]]] = {}
        self._dirty = True
        self._mapped: MappedLeaves | None = None
        self._mapped_key: tuple | None = None
        self._hits: list[tuple[QPainterPath, Node, Node]] = []
        self.setMinimumWidth(60)
        self.setMouseTracking(False)
        self.setToolTip("Links from source keys (left) to target keys (right), coloured by status.\n"
                        "Click a link to select its entry.")
        doc.changed.connect(self.invalidate)
        for view in (source_view, target_view):
            view.verticalScrollBar().valueChanged.connect(self.update)
            view.expanded.connect(self.invalidate)
            view.collapsed.connect(self.invalidate)
            view.model().modelReset.connect(self.invalidate)

    def sizeHint(self) -> QSize:
        return QSize(110, 400)

    def invalidate(self, *args) -> None:
        self._dirty = True
        self.update()

    # -- grouping -----------------------------------------------------------------------------
    def _rebuild(self) -> None:
        self._by_target, self._by_source = {}, {}
        self._dirty = False
        tmodel: ParamTreeModel = self.target_view.model()
        smodel: ParamTreeModel = self.source_view.model()
        if tmodel.tree is None or smodel.tree is None or not self.doc.ready:
            return
        key = (self.doc.status, smodel.tree, tmodel.tree)
        if self._mapped_key != key:  # per mapping edit; expanding, collapsing and filtering reuse it
            self._mapped = MappedLeaves(smodel.tree, tmodel.tree, self.doc.mapping.entries, self.doc.status)
            self._mapped_key = key
        groups = link_groups(anchor_rows(self.target_view), anchor_rows(self.source_view), self._mapped,
                             tmodel.leaf_shown, smodel.leaf_shown)
        by_t: dict[Node, list] = defaultdict(list)
        by_s: dict[Node, list] = defaultdict(list)
        for (ta, sa), counts in groups.items():
            worst = INVALID if counts.get(INVALID) else max(counts, key=lambda s: (counts[s], -STATUS_ORDER.index(s)))
            total = sum(counts.values())
            by_t[ta].append((sa, worst, total))
            by_s[sa].append((ta, worst, total))
        self._by_target, self._by_source = dict(by_t), dict(by_s)

    # -- painting -----------------------------------------------------------------------------
    def _offset(self, view: QTreeView) -> int:
        return view.viewport().mapTo(self.window(), QPoint(0, 0)).y() - self.mapTo(self.window(), QPoint(0, 0)).y()

    def paintEvent(self, event: QPaintEvent) -> None:
        if self._dirty:
            self._rebuild()
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        self._hits = []
        if not self._by_target:
            painter.end()
            return
        s_rows, t_rows = visible_rows(self.source_view), visible_rows(self.target_view)
        s_dy, t_dy = self._offset(self.source_view), self._offset(self.target_view)
        w = self.width()
        top, bottom = max(s_dy, t_dy), self.height()
        painter.setClipRect(0, top, w, bottom - top)
        stub = min(18.0, w / 4)
        for t_node, ty in t_rows.items():
            for s_node, status, count in self._by_target.get(t_node, ()):
                y1, y2 = t_dy + ty, s_rows.get(s_node)
                if y2 is None:
                    self._draw(painter, QPointF(w - stub, y1), QPointF(w, y1), status, count, faded=True)
                    continue
                path = self._draw(painter, QPointF(0, s_dy + y2), QPointF(w, y1), status, count)
                self._hits.append((path, t_node, s_node))
        for s_node, sy in s_rows.items():
            for t_node, status, count in self._by_source.get(s_node, ()):
                if t_node not in t_rows:
                    self._draw(painter, QPointF(0, s_dy + sy), QPointF(stub, s_dy + sy), status, count, faded=True)
        painter.end()

    def _draw(self, painter: QPainter, a: QPointF, b: QPointF, status: str, count: int, faded: bool = False):
        path = QPainterPath(a)
        mid = (a.x() + b.x()) / 2
        path.cubicTo(QPointF(mid, a.y()), QPointF(mid, b.y()), b)
        color = QColor(status_color(status))
        if faded:
            color.setAlpha(110)
        pen = QPen(color, 1.6 + min(5.0, math.log2(count)) if count > 1 else 1.6)
        if status == INVALID:
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawPath(path)
        return path

    # -- clicking -----------------------------------------------------------------------------
    def link_at(self, pos: QPointF) -> tuple[Node, Node] | None:
        stroker = QPainterPathStroker()
        stroker.setWidth(8)
        for path, t_node, s_node in reversed(self._hits):
            if stroker.createStroke(path).contains(pos):
                return t_node, s_node
        return None

    def mousePressEvent(self, event: QMouseEvent) -> None:
        hit = self.link_at(event.position())
        if hit is not None:
            self.linkClicked.emit(hit[0].path, hit[1].path)
            event.accept()
        else:
            super().mousePressEvent(event)
