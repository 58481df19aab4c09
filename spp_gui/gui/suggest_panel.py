"""Auto-suggest: run a strategy, preview what it proposes (accepted vs candidates), accept some of it."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..core.strategies import STRATEGIES, Suggestion, strategy_names
from ..core.transforms import describe_transform
from .style import status_icon

Index = QModelIndex | QPersistentModelIndex
SUGGEST_COLUMNS = ("", "Target", "Source", "Confidence", "Reason")
DEFAULT_RULES = "^module\\.=\n"


class SuggestionsModel(QAbstractTableModel):
    """The strategy's suggestions as a flat table; accepted ones first."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.items: list[Suggestion] = []

    def set_items(self, items: list[Suggestion]) -> None:
        self.beginResetModel()
        self.items = sorted(items, key=lambda s: (not s.accepted, -s.confidence))
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.items)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(SUGGEST_COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return SUGGEST_COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        s = self.items[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return "accepted" if s.accepted else "candidate"
            if col == 1:
                return s.target
            if col == 2:
                return s.source + (f"  [{describe_transform(s.transform)}]" if s.transform else "")
            if col == 3:
                return f"{s.confidence:.2f}"
            return s.reason
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            return status_icon("exact" if s.accepted else ("adapted" if s.transform else "unmapped"))
        if role == Qt.ItemDataRole.ToolTipRole:
            alts = "".join(f"\n  {a} ({c:.2f}): {r}" for a, c, r in s.alternatives[:5])
            kind = "accepted by the strategy" if s.accepted else "candidate: offered, not applied unless you accept it"
            return f"{s.target} \u2190 {s.source}\n{kind}\n{s.reason}" + (f"\nalternatives:{alts}" if alts else "")
        return None


class SuggestPanel(QWidget):
    """Strategy picker with a rename-rules editor, the preview table and the accept buttons."""

    runRequested = Signal(str, dict)
    cancelRequested = Signal()
    acceptRequested = Signal(list)  # list[Suggestion]
    suggestionSelected = Signal(object)  # Suggestion | None

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.strategy = QComboBox()
        self.strategy.setObjectName("strategy")
        self.refresh_strategies()
        self.rules = QPlainTextEdit(DEFAULT_RULES)
        self.rules.setPlaceholderText("One REGEX=REPLACEMENT rule per line, applied in order to each source key")
        self.rules.setMaximumHeight(70)
        self.rules_label = QLabel("Rename rules (REGEX=REPLACEMENT, one per line):")
        self.run_button = QPushButton("Suggest")
        self.run_button.setToolTip("Run the strategy on the current source and target (Ctrl+R)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.description = QLabel("")
        self.description.setWordWrap(True)
        self.table_model = SuggestionsModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.table.setWordWrap(False)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.9)
        self.threshold.setToolTip("Confidence threshold for 'Accept \u2265'")
        self.accept_all = QPushButton("Accept proposed")
        self.accept_all.setToolTip("Put every suggestion the strategy accepted into the mapping (one undo step)")
        self.accept_above = QPushButton("Accept \u2265")
        self.accept_selected = QPushButton("Accept selected")
        self.alternatives = QListWidget()
        self.alternatives.setToolTip("Other plausible sources for the selected target; double-click to use one")
        self.counts = QLabel("")

        top = QHBoxLayout()
        top.addWidget(QLabel("Strategy:"))
        top.addWidget(self.strategy, 1)
        top.addWidget(self.run_button)
        top.addWidget(self.cancel_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.accept_all)
        buttons.addWidget(self.accept_above)
        buttons.addWidget(self.threshold)
        buttons.addWidget(self.accept_selected)
        buttons.addStretch(1)
        buttons.addWidget(self.counts)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.description)
        layout.addWidget(self.rules_label)
        layout.addWidget(self.rules)
        # alternatives beside the table, not below it: the dock stays short in small windows
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(QLabel("Alternatives for the selected target:"))
        side_layout.addWidget(self.alternatives, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        self.table.setMinimumHeight(80)
        layout.addWidget(split, 1)
        layout.addLayout(buttons)

        self.strategy.currentTextChanged.connect(self._strategy_changed)
        self.run_button.clicked.connect(self.request_run)
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.accept_all.clicked.connect(self._accept_all)
        self.accept_above.clicked.connect(self._accept_above)
        self.accept_selected.clicked.connect(self._accept_selected)
        self.table.selectionModel().currentRowChanged.connect(self._row_changed)
        self.alternatives.itemDoubleClicked.connect(self._use_alternative)
        self._strategy_changed(self.strategy.currentText())

    def refresh_strategies(self) -> None:
        current = self.strategy.currentText()
        self.strategy.blockSignals(True)
        self.strategy.clear()
        for name in strategy_names():
            self.strategy.addItem(name)
            self.strategy.setItemData(self.strategy.count() - 1, STRATEGIES[name].description,
                                      Qt.ItemDataRole.ToolTipRole)
        if current:
            self.strategy.setCurrentText(current)
        self.strategy.blockSignals(False)

    def _strategy_changed(self, name: str) -> None:
        strategy = STRATEGIES.get(name)
        self.description.setText(strategy.description if strategy else "")
        rename = name == "rename"
        self.rules.setVisible(rename)
        self.rules_label.setVisible(rename)

    def options(self) -> dict:
        if self.strategy.currentText() == "rename":
            return {"rules": [line.strip() for line in self.rules.toPlainText().splitlines() if line.strip()]}
        return {}

    def request_run(self) -> None:
        self.runRequested.emit(self.strategy.currentText(), self.options())

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def show_suggestions(self, strategy: str, items: list[Suggestion]) -> None:
        if self.strategy.currentText() != strategy:
            self.strategy.blockSignals(True)
            self.strategy.setCurrentText(strategy)
            self.strategy.blockSignals(False)
            self._strategy_changed(strategy)
        self.table_model.set_items(items)
        self.table.resizeColumnToContents(0)
        for col in (1, 2):
            self.table.setColumnWidth(col, 170)
        accepted = sum(1 for s in items if s.accepted)
        self.counts.setText(f"{accepted} accepted, {len(items) - accepted} candidates")
        self.alternatives.clear()

    # -- accepting ----------------------------------------------------------------------------
    def _accept_all(self) -> None:
        self.acceptRequested.emit([s for s in self.table_model.items if s.accepted and s.source])

    def _accept_above(self) -> None:
        limit = self.threshold.value()
        self.acceptRequested.emit([s for s in self.table_model.items if s.source and s.confidence >= limit])

    def selected(self) -> list[Suggestion]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.table_model.items[r] for r in rows]

    def _accept_selected(self) -> None:
        self.acceptRequested.emit([s for s in self.selected() if s.source])

    def _row_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        self.alternatives.clear()
        if not current.isValid():
            self.suggestionSelected.emit(None)
            return
        s = self.table_model.items[current.row()]
        for source, confidence, reason in s.alternatives:
            item = QListWidgetItem(f"{source}  ({confidence:.2f})  {reason}")
            item.setData(Qt.ItemDataRole.UserRole, source)
            self.alternatives.addItem(item)
        self.suggestionSelected.emit(s)

    def _use_alternative(self, item: QListWidgetItem) -> None:
        row = self.table.currentIndex().row()
        if row < 0:
            return
        s = self.table_model.items[row]
        source = item.data(Qt.ItemDataRole.UserRole)
        chosen = Suggestion(s.target, source, 0.0, f"alternative chosen by hand (was {s.source})", "manual",
                            accepted=True)
        for alt, confidence, reason in s.alternatives:
            if alt == source:
                chosen.confidence, chosen.reason = confidence, reason
        self.acceptRequested.emit([chosen])
