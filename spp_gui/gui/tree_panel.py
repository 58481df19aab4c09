"""One side of the editor: a heading that says what is loaded, a filter box and the tree view."""

from __future__ import annotations

import re

from PySide6.QtCore import QAbstractItemModel, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from .tree_model import ParamTreeModel

EXPAND_ALL_BELOW = 400  # filter results this small are shown fully expanded


class ParamTreeView(QTreeView):
    """A QTreeView set up for big trees: uniform rows, no animation, drag/drop of keys and files."""

    def __init__(self, side: str, parent=None) -> None:
        super().__init__(parent)
        self.setUniformRowHeights(True)
        self.setAnimated(False)
        self.setAlternatingRowColors(False)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setDragEnabled(side == "source")
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setExpandsOnDoubleClick(True)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)

    def setModel(self, model: QAbstractItemModel) -> None:
        super().setModel(model)
        header = self.header()
        # names first and never squeezed away: fixed start width, the last column takes the slack
        header.setStretchLastSection(True)
        for col, width in ((0, 200), (1, 100), (2, 64), (3, 84)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(col, width)
        header.setMinimumSectionSize(36)


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
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter keys (substring; tick Regex for a regular expression)")
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
        self.regex.toggled.connect(self.apply_filter)

    def set_heading(self, spec: str, note: str = "") -> None:
        text = spec if not note else f"{spec} \u2014 <i>{note}</i>"
        self.spec.setText(text)
        self.spec.setToolTip(spec)

    def apply_filter(self) -> None:
        """Filter now: computed once over the key list, then the view is reset."""
        self._debounce.stop()
        text = self.filter.text()
        try:
            count = self.model.set_filter(text, self.regex.isChecked())
        except re.error as exc:
            self.filter.setStyleSheet("QLineEdit { border: 1px solid #d64541; }")
            self.filter.setToolTip(f"Not a valid regular expression: {exc}")
            return
        self.filter.setStyleSheet("")
        self.filter.setToolTip("")
        total = len(self.model.tree) if self.model.tree is not None else 0
        self.matches.setText(f"{count:,} / {total:,}" if text else f"{total:,} keys")
        if text and count <= EXPAND_ALL_BELOW:
            self.view.expandAll()
        self.filterChanged.emit()

    def reset(self) -> None:
        """After a new tree: clear the filter and show the first level of modules."""
        self.filter.blockSignals(True)
        self.filter.clear()
        self.filter.blockSignals(False)
        self.apply_filter()
        if self.model.tree is not None and len(self.model.tree) <= 2000:
            self.view.expandToDepth(0)
        self.filterChanged.emit()
