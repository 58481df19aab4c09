"""The strip between the trees: one curve per mapping link between rows that are on screen.

Links are grouped by the visible row each end sits under (a collapsed module gathers its
children's links into one thicker curve). The grouping is rebuilt only when the mapping, a filter
or the expansion changes; scrolling only re-reads the positions of the few rows on screen, so a
frame costs O(visible rows), not O(keys).

A target filled from several sources (a many-to-one entry) has one link from each of them.

After a Verify the links take the colour of what was found for the target module they land in
(agree / disagree / not compared) until the mapping or a side changes; then the status colours return.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import cast

from PySide6.QtCore import QEvent, QPoint, QPointF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QHelpEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPainterPathStroker,
    QPaintEvent,
    QPen,
)
from PySide6.QtWidgets import QToolTip, QTreeView, QWidget

from ..core.combine import describe_combine
from ..core.mapping import INVALID, UNMAPPED
from ..core.tree import Node
from ..core.verify import DISAGREE, NOT_COMPARED, LayerCheck, VerifyReport
from .document import MappingDocument
from .link_groups import MappedLeaves, anchor_rows, link_groups
from .style import STATUS_ORDER, STATUS_STYLE, VERIFY_ORDER, status_color
from .tree_model import ParamTreeModel
from .tree_panel import ParamTreeView


def visible_rows(view: QTreeView) -> dict[Node, int]:
    """Node -> y centre (viewport coordinates) of every row currently on screen."""
    model = cast(ParamTreeModel, view.model())  # both tree views show a ParamTreeModel
    rows: dict[Node, int] = {}
    height = view.viewport().height()
    index = view.indexAt(QPoint(1, 1))
    while index.isValid():
        rect = view.visualRect(index)
        if rect.top() > height:
            break
        node = model.node(index)
        if node is not None:  # always, for a valid index
            rows[node] = rect.center().y()
        index = view.indexBelow(index)
    return rows


class LinkCanvas(QWidget):
    """Draws and hit-tests the links; ``linkClicked(target_path, source_path)`` on a click."""

    linkClicked = Signal(str, str)
    STATUS_TIP = ("Links from source keys (left) to target keys (right), coloured by status.\n"
                  "Click a link to select its entry.")
    VERIFY_TIP = ("Links coloured by Verify: green \u2713 agree (same input, same output), red dashed \u2717 "
                  "disagree, grey dotted ? not compared.\nAny edit returns to the status colours.")

    def __init__(self, doc: MappingDocument, source_view: QTreeView, target_view: QTreeView, parent=None) -> None:
        super().__init__(parent)
        self.doc, self.source_view, self.target_view = doc, source_view, target_view
        self._by_target: dict[Node, list[tuple[Node, str, int]]] = {}
        self._by_source: dict[Node, list[tuple[Node, str, int]]] = {}
        self._dirty = True
        self._mapped: MappedLeaves | None = None
        self._mapped_key: tuple | None = None
        self._hits: list[tuple[QPainterPath, Node, Node]] = []
        self.verify_status: dict[str, str] | None = None  # target module -> agreement, while a result is shown
        self._checks: dict[str, LayerCheck] = {}
        self.setMinimumWidth(60)
        self.setMouseTracking(False)
        self.setToolTip(self.STATUS_TIP)
        doc.changed.connect(self.invalidate)
        for view in (source_view, target_view):
            view.verticalScrollBar().valueChanged.connect(self.update)
            view.expanded.connect(self.invalidate)
            view.collapsed.connect(self.invalidate)
            if isinstance(view, ParamTreeView):  # expandAll / collapseAll say nothing per row
                view.expansionReset.connect(self.invalidate)
            view.model().modelReset.connect(self.invalidate)

    def sizeHint(self) -> QSize:
        return QSize(110, 400)

    def invalidate(self, *args) -> None:
        self._dirty = True
        self.update()

    # -- verification -------------------------------------------------------------------------
    def set_verify(self, report: VerifyReport | None) -> None:
        """Colour links by this report's agreement per target module; None returns to status colours."""
        if report is None and self.verify_status is None:
            return
        self.verify_status = report.module_status() if report is not None else None
        self._checks = {c.target_module: c for c in report.layers} if report is not None else {}
        self.setToolTip(self.VERIFY_TIP if report is not None else self.STATUS_TIP)
        self._mapped_key = None  # the per-leaf codes change with the colouring
        self.invalidate()

    def key_status(self, target: str) -> str:
        """The status a link into target key ``target`` is drawn with."""
        if self.verify_status is not None:
            return self.verify_status.get(target.rpartition(".")[0], NOT_COMPARED)
        return self.doc.status.target.get(target, UNMAPPED)

    # -- grouping -----------------------------------------------------------------------------
    def _rebuild(self) -> None:
        self._by_target, self._by_source = {}, {}
        self._dirty = False
        tmodel = cast(ParamTreeModel, self.target_view.model())
        smodel = cast(ParamTreeModel, self.source_view.model())
        if tmodel.tree is None or smodel.tree is None or not self.doc.ready:
            return
        key = (self.doc.status, smodel.tree, tmodel.tree)
        mapped = self._mapped
        if self._mapped_key != key or mapped is None:  # per mapping edit; expanding, collapsing and filtering reuse it
            mapped = MappedLeaves(smodel.tree, tmodel.tree, self.doc.mapping.entries, self.doc.status,
                                  self.verify_status)
            self._mapped, self._mapped_key = mapped, key
        groups = link_groups(anchor_rows(self.target_view), anchor_rows(self.source_view), mapped,
                             tmodel.leaf_shown, smodel.leaf_shown)
        by_t: dict[Node, list] = defaultdict(list)
        by_s: dict[Node, list] = defaultdict(list)
        # a gathered link shows the alarm if any of its keys has it, else its most common status
        alarm, order = (DISAGREE, VERIFY_ORDER) if self.verify_status is not None else (INVALID, STATUS_ORDER)
        for (ta, sa), counts in groups.items():
            worst = alarm if counts.get(alarm) else max(counts, key=lambda s: (counts[s], -order.index(s)))
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
        width = 1.6 + min(5.0, math.log2(count)) if count > 1 else 1.6
        pen = QPen(color, width + 0.6 if status in (DISAGREE, NOT_COMPARED) else width)
        if status in (INVALID, DISAGREE):  # colour is never the only cue
            pen.setStyle(Qt.PenStyle.DashLine)
        elif status == NOT_COMPARED:  # round dots at any width: never mistaken for the dashes above
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            pen.setDashPattern([0.01, 2.2])
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

    def link_tip(self, t_node: Node, s_node: Node) -> str:
        """What a hovered link says: its ends, and after a Verify what was measured there."""
        text = f"{s_node.path} \u2192 {t_node.path}"
        entry = self.doc.mapping.get(t_node.path) if t_node.tensor is not None else None
        if entry is not None and entry.many and s_node.path in entry.sources:
            text += (f"\nsource {entry.sources.index(s_node.path) + 1} of {len(entry.sources)}, joined by "
                     f"{describe_combine(entry.combine_op)}")
        if self.verify_status is None:
            return text
        module = t_node.path.rpartition(".")[0] if t_node.tensor is not None else t_node.path
        check = self._checks.get(module)
        if check is None:
            found = {self.key_status(leaf.path) for leaf in t_node.leaves() if leaf.path in self.doc.mapping.entries}
            return text + "\n" + ", ".join(sorted(found)) if found else text
        line = STATUS_STYLE[check.status][2].split(":")[0]
        if check.cosine is not None:
            line += f" (cosine {check.cosine:.6f}, relative error {check.rel_error:.2e})"
        return "\n".join(x for x in (text, line, check.note) if x)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            hit = self.link_at(QPointF(event.pos()))
            if hit is not None:
                QToolTip.showText(event.globalPos(), self.link_tip(*hit), self)
                return True
        return super().event(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        hit = self.link_at(event.position())
        if hit is not None:
            self.linkClicked.emit(hit[0].path, hit[1].path)
            event.accept()
        else:
            super().mousePressEvent(event)
