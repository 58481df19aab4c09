"""The Problems view: every mapping entry that cannot be applied, with why, and a way to remove it.

No state may hold entries that no view shows: an entry whose key is gone or whose shapes do not fit
after a side changed is listed here until it is fixed or removed.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from .session import MappingSession

Index = QModelIndex | QPersistentModelIndex
COLUMNS = ("Target", "Source", "Problem")


class ProblemsModel(QAbstractTableModel):
    """The session's invalid entries, in target order; rebuilt when the mapping changes."""

    def __init__(self, session: MappingSession, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.rows: list[tuple[str, str, str]] = []
        session.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        mapping = self.session.mapping
        rows = []
        for key, why in self.session.problems().items():
            entry = mapping.get(key)
            rows.append((key, " + ".join(entry.sources) if entry else "", why))
        if rows != self.rows:
            self.beginResetModel()
            self.rows = rows
            self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return self.rows[index.row()][index.column()]
        return None


class ProblemsPanel(QWidget):
    """The table with Remove and Remove all; selecting a row asks the window to show that entry."""

    removeRequested = Signal(list)  # target keys
    entrySelected = Signal(str, str)  # target, source

    def __init__(self, session: MappingSession, parent=None) -> None:
        super().__init__(parent)
        self.model = ProblemsModel(session, self)
        self.table = QTableView()
        self.table.setObjectName("problemsTable")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.summary = QLabel("")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected entries from the mapping (one undo step)")
        self.remove_all_button = QPushButton("Remove all")
        self.remove_all_button.setObjectName("removeAllProblems")
        buttons = QHBoxLayout()
        buttons.addWidget(self.summary, 1)
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.remove_all_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self.remove_button.clicked.connect(self._remove_selected)
        self.remove_all_button.clicked.connect(lambda: self.removeRequested.emit([r[0] for r in self.model.rows]))
        self.table.selectionModel().currentRowChanged.connect(self._row_changed)
        self.model.modelReset.connect(self._update)
        self._update()

    def _update(self) -> None:
        n = len(self.model.rows)
        self.summary.setText("Every entry can be applied." if not n else
                             f"{n} entries cannot be applied: Save warns, Export and `spp-gui apply` refuse them")
        self.remove_button.setEnabled(bool(n))
        self.remove_all_button.setEnabled(bool(n))

    def count(self) -> int:
        return len(self.model.rows)

    def _remove_selected(self) -> None:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        keys = [self.model.rows[r][0] for r in rows]
        if keys:
            self.removeRequested.emit(keys)

    def _row_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        if current.isValid():
            target, source, _ = self.model.rows[current.row()]
            self.entrySelected.emit(target, source)
