"""One side of the editor: a heading that says what is loaded, a filter box and the tree view.

Expand all on a big tree (a 47k-key MoE lays out 108k rows) would stall the window for seconds:
QTreeView lays out every row through the Python model. Past ``FULL_EXPAND_ROWS`` the panel
instead keeps an *expand all* mode and expands only what comes on screen (and one page below),
each time the view scrolls or grows; a module the user collapses stays collapsed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise

from PySide6.QtCore import (
    QAbstractItemModel,
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QPoint,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from ..core.strategies import Role
from ..core.tree import Node
from .link_groups import shown_rows
from .tree_model import ParamTreeModel

EXPAND_ALL_BELOW = 400  # filter results this small are shown fully expanded
FULL_EXPAND_ROWS = 5000  # trees up to this many rows expand all at once (tens of ms); bigger ones as shown
BUSY_ROWS = 1000  # expanding more rows than this at once shows the busy cursor


@contextmanager
def busy_cursor(on: bool = True) -> Iterator[None]:
    """The wait cursor while the block runs, when ``on``."""
    if on:
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        yield
    finally:
        if on:
            QApplication.restoreOverrideCursor()


@dataclass
class ViewState:
    """What a view showed before a filter: the Expand-all mode, expanded and collapsed modules, top row."""

    expand_all: bool = False
    expanded: list[Node] = field(default_factory=list)
    collapsed: list[Node] = field(default_factory=list)
    top: Node | None = None


class ParamTreeView(QTreeView):
    """A QTreeView set up for big trees: uniform rows, no animation, drag/drop of keys and files."""

    #: many rows were expanded or collapsed at once (expandAll and collapseAll emit no per-row signals)
    expansionReset = Signal()

    def __init__(self, side: Role, parent=None) -> None:
        super().__init__(parent)
        self.setUniformRowHeights(True)
        self.setAnimated(False)
        self.setAlternatingRowColors(False)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setDragEnabled(side == Role.SOURCE)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setExpandsOnDoubleClick(True)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)

    def setModel(self, model: QAbstractItemModel | None) -> None:
        super().setModel(model)
        header = self.header()
        # names first and never squeezed away: fixed start width, the last column takes the slack
        header.setStretchLastSection(True)
        for col, width in ((0, 200), (1, 100), (2, 64), (3, 84)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(col, width)
        header.setMinimumSectionSize(36)


class FilterEdit(QLineEdit):
    """The filter box. Esc with text in it clears it, ahead of any window-wide Esc shortcut."""

    escaped = Signal()

    def event(self, event: QEvent) -> bool:
        if (event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent)
                and event.key() == Qt.Key.Key_Escape and self.text()):
            event.accept()  # the key comes to keyPressEvent instead of triggering the shortcut
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape and self.text():
            self.escaped.emit()
            event.accept()
            return
        super().keyPressEvent(event)


class TreePanel(QWidget):
    """Heading, filter (substring or regex) and tree for ``side`` ('source' or 'target')."""

    filterChanged = Signal()

    def __init__(self, model: ParamTreeModel, title: str, parent=None) -> None:
        super().__init__(parent)
        self.model = model
        self.title = QLabel(f"<b>{title}</b>")
        self.spec = QLabel("")
        self.spec.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.spec.setWordWrap(True)
        # a spec with a long query (hf:...?hidden_size=...&...) has no space to wrap at: it is cut at the
        # panel's edge (the tooltip holds it whole) instead of widening the window past the screen
        self.spec.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.same_shape = QLabel("")
        self.same_shape.setToolTip("Keys of the shape selected in the other tree are bold; on a big tree only "
                                   "those named most alike (then nearest in position) are")
        self.same_shape.hide()
        self.filter = FilterEdit()
        self.filter.setPlaceholderText("Filter keys (substring; tick Regex for a regular expression; Esc clears)")
        self.filter.setClearButtonEnabled(True)
        self.regex = QCheckBox("Regex")
        self.regex.setToolTip("Treat the filter as a regular expression (case-insensitive)")
        self.matches = QLabel("")
        self.matches.setMinimumWidth(70)
        self.view = ParamTreeView(model.side)
        self.view.setModel(model)
        self.view.setObjectName(f"{model.side}Tree")
        self.filter.setObjectName(f"{model.side}Filter")

        head = QHBoxLayout()
        head.addWidget(self.title)
        head.addWidget(self.spec, 1)
        head.addWidget(self.same_shape)
        row = QHBoxLayout()
        row.addWidget(self.filter, 1)
        row.addWidget(self.regex)
        row.addWidget(self.matches)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(head)
        layout.addLayout(row)
        layout.addWidget(self.view, 1)

        # typing re-filters after a short pause so a 47k-key tree is not filtered per keystroke
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(120)
        self._debounce.timeout.connect(self.apply_filter)
        self.filter.textChanged.connect(self._debounce.start)
        self.filter.returnPressed.connect(self.apply_filter)
        self.filter.escaped.connect(self.clear_filter)
        self.regex.toggled.connect(self.apply_filter)

        self._expanding_all = False  # Expand all is on: what comes on screen is expanded
        self._touched: set[int] = set()  # uids expanded by that mode or collapsed since: left as they are
        self._before_filter: ViewState | None = None  # restored when the filter is cleared
        self._lazy = QTimer(self)  # one expand_visible per burst of scrolling or resizing
        self._lazy.setSingleShot(True)
        self._lazy.setInterval(0)
        self._lazy.timeout.connect(self.expand_visible)
        bar = self.view.verticalScrollBar()
        bar.valueChanged.connect(self._schedule_expand)
        bar.rangeChanged.connect(self._schedule_expand)
        self.view.collapsed.connect(self._collapsed)
        model.modelReset.connect(self._model_reset)
        model.highlightChanged.connect(self._highlight_changed)

    def set_heading(self, spec: str, note: str = "") -> None:
        text = spec if not note else f"{spec} \u2014 <i>{note}</i>"
        self.spec.setText(text)
        self.spec.setToolTip(spec)

    # -- filter -------------------------------------------------------------------------------
    def apply_filter(self) -> None:
        """Filter now: computed once over the key list, then the view is reset.

        The first filter remembers what was expanded; clearing the filter brings it back.
        """
        self._debounce.stop()
        text = self.filter.text()
        if text and not self.model.filtered and self._before_filter is None:
            self._before_filter = self.view_state()
        filtering = bool(text) or self.model.filtered  # else no model reset: it would collapse every row
        try:
            count = self.model.set_filter(text, self.regex.isChecked()) if filtering else self.model.match_count
        except re.error as exc:
            self.filter.setStyleSheet("QLineEdit { border: 1px solid #d64541; }")
            self.filter.setToolTip(f"Not a valid regular expression: {exc}")
            return
        self.filter.setStyleSheet("")
        self.filter.setToolTip("")
        total = len(self.model.tree) if self.model.tree is not None else 0
        self.matches.setText(f"{count:,} / {total:,}" if text else f"{total:,} keys")
        if not text and self._before_filter is not None:
            state, self._before_filter = self._before_filter, None
            self.restore_view_state(state)
        elif self._expanding_all:
            self._expand_all_now()
        elif text and count <= EXPAND_ALL_BELOW:
            self.view.expandAll()
        self.filterChanged.emit()

    def clear_filter(self) -> None:
        """Empty the filter box and show the whole tree as it was before the filter (Esc in the box)."""
        self.filter.clear()
        self.apply_filter()

    def reset(self) -> None:
        """After a new tree: clear the filter and show the first level of modules."""
        self._expanding_all = False
        self._touched.clear()
        self._before_filter = None
        self.filter.blockSignals(True)
        self.filter.clear()
        self.filter.blockSignals(False)
        self.apply_filter()
        if self.model.tree is not None and len(self.model.tree) <= 2000:
            self.view.expandToDepth(0)
        self.filterChanged.emit()

    # -- expansion ----------------------------------------------------------------------------
    @property
    def expanding_all(self) -> bool:
        """Whether Expand all is on (until Collapse all, a new tree, or a restore that turns it off)."""
        return self._expanding_all

    def expand_all(self) -> None:
        """Expand every module: at once on a tree of up to FULL_EXPAND_ROWS rows, else as rows come on screen."""
        self._expanding_all = True
        self._touched.clear()
        self._expand_all_now()

    def collapse_all(self) -> None:
        self._expanding_all = False
        self._touched.clear()
        self._lazy.stop()
        self.view.collapseAll()
        self.view.expansionReset.emit()

    def _expand_all_now(self) -> None:
        rows = self.model.shown_count()
        if rows <= FULL_EXPAND_ROWS:
            with busy_cursor(rows > BUSY_ROWS):
                self.view.expandAll()
            self.view.expansionReset.emit()
        else:
            self.expand_visible()

    def _model_reset(self) -> None:
        self._touched = set()  # a reset collapses every row

    def _schedule_expand(self, *args) -> None:
        if self._expanding_all:
            self._lazy.start()

    def _collapsed(self, index: QModelIndex) -> None:
        if index.isValid():
            self._touched.add(index.internalId())

    def expand_visible(self) -> int:
        """In Expand-all mode, expand the modules on screen and one page below; return how many.

        One walk in display order from the top row: a module not yet expanded is expanded (its
        children come next), one the mode expanded before and the user collapsed is left closed.
        The walk stops after two pages of rows, so a step costs O(screen), not O(tree).
        """
        self._lazy.stop()
        model, view = self.model, self.view
        if not self._expanding_all or model.tree is None or not model.rowCount():
            return 0
        view.executeDelayedItemsLayout()
        top = view.indexAt(QPoint(1, 1))
        start = model.node(top) if top.isValid() else model.shown_children(model.tree.root)[0]
        if start is None:  # only without a tree, ruled out above
            return 0
        row_height = view.visualRect(model.index_of(start)).height() or view.fontMetrics().height()
        budget = 2 * max(1, view.viewport().height() // max(1, row_height)) + 2
        stack = self._rows_after(start)
        stack.append(start)
        opened = 0
        while stack and budget > 0:
            node = stack.pop()
            budget -= 1
            if node.tensor is not None:
                continue
            index = model.index_of(node)
            if not view.isExpanded(index):
                if node.uid in self._touched:
                    continue
                self._touched.add(node.uid)
                view.expand(index)
                opened += 1
            stack.extend(reversed(model.shown_children(node)))
        return opened

    def _rows_after(self, node: Node) -> list[Node]:
        """The rows after ``node``'s own subtree, as a stack (the next row last)."""
        levels = []
        while node.parent is not None:
            levels.append(self.model.shown_children(node.parent)[self.model.row_of(node) + 1:])
            node = node.parent
        stack: list[Node] = []
        for later in reversed(levels):  # the top level's rows come last, so at the bottom
            stack.extend(reversed(later))
        return stack

    def view_state(self) -> ViewState:
        """The expansion as shown now, read off the view's rows (modules hidden under a collapsed one are not)."""
        rows = shown_rows(self.view)
        expanded = [node for node, after in pairwise(rows) if after.parent is node]
        opened = set(expanded)
        collapsed = [node for node in rows if node.tensor is None and node not in opened]
        top = self.view.indexAt(QPoint(1, 1))
        return ViewState(self._expanding_all, expanded, collapsed, self.model.node(top) if top.isValid() else None)

    def restore_view_state(self, state: ViewState) -> None:
        """Expand what ``state`` had expanded (and its Expand-all mode) and scroll its top row back up."""
        model, view = self.model, self.view
        with busy_cursor(len(state.expanded) > BUSY_ROWS):
            view.scheduleDelayedItemsLayout()  # each expand below only records; one layout after them all
            for node in state.expanded:
                if model.visible(node):
                    view.expand(model.index_of(node))
            view.executeDelayedItemsLayout()
        self._expanding_all = state.expand_all
        self._touched = {n.uid for n in state.expanded} | {n.uid for n in state.collapsed}
        if state.top is not None and model.visible(state.top):
            view.scrollTo(model.index_of(state.top), QAbstractItemView.ScrollHint.PositionAtTop)
        view.expansionReset.emit()
        if self._expanding_all:
            self.expand_visible()

    # -- selection ----------------------------------------------------------------------------
    def reveal(self, path: str, current: bool = False) -> bool:
        """Show the key or module ``path``: expand its modules, scroll to it, select its row.

        ``current`` also makes it the current row (its currentChanged fires; leave it False when
        answering a selection in the other tree, so the two do not answer each other). False, with
        nothing changed, when ``path`` is not in this tree or the filter hides it.
        """
        model, view = self.model, self.view
        if model.tree is None:
            return False
        try:
            node = model.tree.node(path)
        except KeyError:
            return False
        if node is model.tree.root or not model.visible(node):
            return False
        chain = []
        parent = node.parent
        while parent is not None and parent is not model.tree.root:
            chain.append(parent)
            parent = parent.parent
        for module in reversed(chain):
            view.expand(model.index_of(module))
        index = model.index_of(node)
        if not view.visualRect(index).intersects(view.viewport().rect()):
            view.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        if current:
            view.selectionModel().setCurrentIndex(index, flags)
        else:
            view.selectionModel().select(index, flags)
        return True

    def _highlight_changed(self, shown: int, total: int) -> None:
        if total:
            self.same_shape.setText(f"same shape: {total:,}" if shown == total else
                                    f"same shape: {shown:,} of {total:,} shown")
        self.same_shape.setVisible(bool(total))
        self.view.viewport().update()
