"""Auto-suggest: run a strategy, preview what it proposes, apply some of it.

Honest wording: a row is "in mapping" only when the mapping holds that very entry; otherwise it
"will apply" (proposed by the strategy, or at or above the threshold the user set) or is a
"candidate" (needs a transform, low confidence, or only an alternative), until Apply.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
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

from ..core.mapping import ADAPTED, EXACT, UNMAPPED
from ..core.strategies import STRATEGIES, Suggestion, strategy_names
from ..core.transforms import describe_transform
from .session import MappingSession
from .style import status_icon

Index = QModelIndex | QPersistentModelIndex
SUGGEST_COLUMNS = ("", "Target", "Source", "Confidence", "Reason")
DEFAULT_RULES = "^module\\.=\n"


IN_MAPPING, WILL_APPLY, CANDIDATE = "in mapping", "will apply", "candidate"


def candidate_why(s: Suggestion) -> str:
    if s.transform:
        return "needs a transform"
    if not s.source:
        return "no source"
    return "low confidence" if s.confidence < 0.5 else "not proposed"


class SuggestionsModel(QAbstractTableModel):
    """The current pair's suggestions as a flat table; proposed ones first."""

    def __init__(self, session: MappingSession, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.items: list[Suggestion] = []
        self.threshold: float | None = None  # None: as the strategy proposed

    def will_apply(self, s: Suggestion) -> bool:
        if not s.source:
            return False
        return s.accepted if self.threshold is None else s.confidence >= self.threshold

    def state(self, s: Suggestion) -> str:
        if self.session.in_mapping(s):
            return IN_MAPPING
        return WILL_APPLY if self.will_apply(s) else CANDIDATE

    def set_threshold(self, threshold: float | None) -> None:
        self.threshold = threshold
        self.refresh_states()

    def refresh_states(self) -> None:
        if self.items:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.items) - 1, 0))

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
                state = self.state(s)
                return f"candidate: {candidate_why(s)}" if state == CANDIDATE else state
            if col == 1:
                return s.target
            if col == 2:
                return " + ".join(s.sources) + (f"  [{describe_transform(s.transform)}]" if s.transform else "")
            if col == 3:
                return f"{s.confidence:.2f}"
            return s.reason
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            state = self.state(s)
            return status_icon(EXACT if state == IN_MAPPING else (ADAPTED if state == WILL_APPLY else UNMAPPED))
        if role == Qt.ItemDataRole.ToolTipRole:
            alts = "".join(f"\n  {a} ({c:.2f}): {r}" for a, c, r in s.alternatives[:5])
            kind = {IN_MAPPING: "in the mapping", WILL_APPLY: "will apply when you press Apply",
                    CANDIDATE: f"candidate ({candidate_why(s)}): applied only if you choose it"}[self.state(s)]
            return f"{s.target} \u2190 {' + '.join(s.sources)}\n{kind}\n{s.reason}" + (f"\nalternatives:{alts}" if alts else "")
        return None


class SuggestPanel(QWidget):
    """Strategy picker with a rename-rules editor, the preview table and the accept buttons."""

    runRequested = Signal(str, dict)
    cancelRequested = Signal()
    acceptRequested = Signal(list)  # list[Suggestion]
    suggestionSelected = Signal(object)  # Suggestion | None

    def __init__(self, session: MappingSession, parent=None) -> None:
        super().__init__(parent)
        self.session = session
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
        self.table_model = SuggestionsModel(session, self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.table.setWordWrap(False)
        self.threshold = QDoubleSpinBox()
        self.threshold.setObjectName("threshold")
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setSpecialValueText("as proposed")
        self.threshold.setValue(0.0)
        self.threshold.setToolTip("Which rows Apply puts into the mapping: as the strategy proposed, "
                                  "or every suggestion at or above this confidence (transforms included)")
        self.accept_all = QPushButton("Apply")
        self.accept_all.setObjectName("applyButton")
        self.accept_all.setToolTip("Put every row that reads 'will apply' into the mapping (one undo step)")
        self.accept_selected = QPushButton("Apply selected")
        self.alternatives = QListWidget()
        self.alternatives.setToolTip("Other plausible sources for the selected target; double-click to use one")
        self.counts = QLabel("")
        self.verify_box = QCheckBox("Verify by running both models")
        self.verify_box.setObjectName("suggestVerify")
        self.verify_box.setChecked(True)
        self.verify_box.setToolTip("auto only, where both sides are model specs: run one random batch through the "
                                   "source and the mapped target, send pairs whose outputs disagree back to the "
                                   "candidates and swap equal-shaped siblings that agree swapped")
        self.verify_line = QLabel("")
        self.verify_line.setObjectName("suggestVerifyLine")
        self.verify_line.setWordWrap(True)
        self.verify_line.setVisible(False)

        top = QHBoxLayout()
        top.addWidget(QLabel("Strategy:"))
        top.addWidget(self.strategy, 1)
        top.addWidget(self.run_button)
        top.addWidget(self.cancel_button)
        buttons = QHBoxLayout()
        buttons.addWidget(QLabel("Apply:"))
        buttons.addWidget(self.threshold)
        buttons.addWidget(self.accept_all)
        buttons.addWidget(self.accept_selected)
        buttons.addStretch(1)
        buttons.addWidget(self.counts)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.description)
        layout.addWidget(self.rules_label)
        layout.addWidget(self.rules)
        layout.addWidget(self.verify_box)
        layout.addWidget(self.verify_line)
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
        self.threshold.valueChanged.connect(self._threshold_changed)
        session.suggestionsChanged.connect(self._session_suggestions)
        session.changed.connect(self._mapping_changed)
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
        self.verify_box.setVisible(name == "auto")
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

    def _session_suggestions(self) -> None:
        found = self.session.suggestions
        self.show_suggestions(found.strategy if found else self.strategy.currentText(), found.items if found else [])
        line = next((n for n in (found.notes if found else []) if n.startswith("verify:")), "")
        self.verify_line.setText(line[:1].upper() + line[1:])  # what verify changed, for these suggestions only
        self.verify_line.setVisible(bool(line))

    def _mapping_changed(self) -> None:
        self.table_model.refresh_states()
        self._count()

    def _threshold_changed(self, value: float) -> None:
        self.table_model.set_threshold(None if value <= self.threshold.minimum() else value)
        self._count()

    def will_apply(self) -> list[Suggestion]:
        """The rows Apply puts into the mapping now."""
        return [s for s in self.table_model.items if self.table_model.state(s) == WILL_APPLY]

    def _count(self) -> None:
        items = self.table_model.items
        if not items:
            self.counts.setText("")
            return
        states = [self.table_model.state(s) for s in items]
        self.counts.setText(f"{states.count(IN_MAPPING)} in mapping, {states.count(WILL_APPLY)} will apply, "
                            f"{states.count(CANDIDATE)} candidates")

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
        self._count()
        self.alternatives.clear()

    # -- applying -----------------------------------------------------------------------------
    def _accept_all(self) -> None:
        self.acceptRequested.emit(self.will_apply())

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
