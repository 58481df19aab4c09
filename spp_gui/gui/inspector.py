"""The inspector: everything about one target key's entry, with a transform editor."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..core.pairing import channels_before, fitting_transforms
from ..core.strategies import Suggestion
from ..core.tensors import format_shape
from ..core.transforms import describe_transform
from .session import MappingSession
from .style import STATUS_STYLE


class Inspector(QWidget):
    """Shows the entry of ``target`` (or the selected source key) and edits its transform."""

    transformRequested = Signal(str, object)  # target key, transform dict or None
    removeRequested = Signal(str)
    suggestionChosen = Signal(object)  # a Suggestion to put into the mapping
    message = Signal(str)

    def __init__(self, session: MappingSession, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.doc = session.doc
        self.target: str | None = None
        self.labels: dict[str, QLabel] = {}
        form = QFormLayout()
        for name in ("Target", "Source", "Status", "Origin", "Confidence", "Reason", "Problem"):
            label = QLabel("")
            # one line each, clipped at the dock's edge (full text in the tooltip): wrapped labels in a
            # form overlap when the dock is short
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setObjectName(f"inspector{name}")
            self.labels[name] = label
            form.addRow(f"{name}:", label)
        self.fits = QComboBox()
        self.fits.setToolTip("Transforms that make the source tensor fit the target shape")
        self.transform = QLineEdit()
        self.transform.setPlaceholderText('transform as JSON, e.g. {"op": "slice"}; empty for a plain copy')
        self.fits.setObjectName("transformChoice")
        self.apply_button = QPushButton("Set transform")
        self.remove_button = QPushButton("Remove entry")
        self.remove_button.setToolTip("Unmap this target key (Delete)")
        row = QHBoxLayout()
        row.addWidget(self.apply_button)
        row.addWidget(self.remove_button)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Transform:"))
        layout.addWidget(self.fits)
        layout.addWidget(self.transform)
        layout.addLayout(row)
        self.options_label = QLabel("Suggestions for this key:")
        self.options = QListWidget()
        self.options.setObjectName("inspectorOptions")
        self.options.setToolTip("What the last Suggest offered for this target key; double-click or Use to apply one")
        self.use_button = QPushButton("Use")
        self.use_button.setObjectName("useSuggestion")
        layout.addWidget(self.options_label)
        layout.addWidget(self.options, 1)
        layout.addWidget(self.use_button)
        self.fits.activated.connect(self._pick_fit)
        self.options.itemDoubleClicked.connect(lambda _item: self._use())
        self.use_button.clicked.connect(self._use)
        session.suggestionsChanged.connect(self.refresh)
        self.apply_button.clicked.connect(self._apply)
        self.remove_button.clicked.connect(self._remove)
        session.changed.connect(self.refresh)
        self.refresh()

    def show_target(self, target: str | None) -> None:
        self.target = target
        self.refresh()

    def refresh(self) -> None:
        self._fill()
        self._fill_options()
        for label in self.labels.values():  # labels are clipped to one line: the tooltip has it all
            label.setToolTip(label.text())

    def _fill(self) -> None:
        key, source, target = self.target, self.doc.source, self.doc.target
        entry = self.doc.mapping.get(key) if key else None
        ready = source is not None and target is not None and key is not None and key in target.side.table
        for widget in (self.fits, self.transform, self.apply_button, self.remove_button):
            widget.setEnabled(bool(entry) and ready)
        if source is None or target is None or key is None or not ready:
            for label in self.labels.values():
                label.setText("")
            self.labels["Target"].setText("Select a target key, or a link between the trees.")
            self.fits.clear()
            self.transform.clear()
            return
        tinfo = target.side.table[key]
        self.labels["Target"].setText(f"{key}  {format_shape(tinfo.shape)} {tinfo.dtype}")
        status = self.doc.target_status(key)
        self.labels["Status"].setText(STATUS_STYLE[status][2])
        if entry is None:
            for name in ("Source", "Origin", "Confidence", "Reason", "Problem"):
                self.labels[name].setText("")
            self.labels["Source"].setText("(none: keeps the target's initialisation)")
            self.fits.clear()
            self.transform.clear()
            return
        sinfo = source.side.table.get(entry.source)
        shape = f"  {format_shape(sinfo.shape)} {sinfo.dtype}" if sinfo else "  (missing from the source)"
        self.labels["Source"].setText(entry.source + shape)
        self.labels["Origin"].setText(entry.origin)
        self.labels["Confidence"].setText("" if entry.confidence is None else f"{entry.confidence:.2f}")
        self.labels["Reason"].setText(entry.reason)
        self.labels["Problem"].setText(self.doc.status.problems.get(key, ""))
        self.transform.setText(json.dumps(entry.transform) if entry.transform else "")
        self.fits.clear()
        if sinfo is not None and sinfo.shape == tinfo.shape:
            self.fits.addItem("plain copy (no transform)", None)
        if sinfo is not None:
            for t in fitting_transforms(sinfo.shape, tinfo.shape,
                                        channels_before(source.side.table, entry.source)):
                self.fits.addItem(describe_transform(t), t)
        current = self.fits.findData(entry.transform) if entry.transform else (0 if self.fits.count() and
                                                                               self.fits.itemData(0) is None else -1)
        if current < 0 and entry.transform:  # set by hand or by a strategy: shown as it is, first
            self.fits.insertItem(0, f"{describe_transform(entry.transform)} (current)", entry.transform)
            current = 0
        self.fits.setCurrentIndex(current)

    def _options_for(self, target: str) -> list[Suggestion]:
        found = self.session.suggestions
        if found is None:
            return []
        out: list[Suggestion] = []
        for s in found.items:
            if s.target != target:
                continue
            if s.source:
                out.append(s)
            for source, confidence, reason in s.alternatives:
                out.append(Suggestion(target, source, confidence, reason, s.origin, None, accepted=False))
        return out

    def _fill_options(self) -> None:
        self.options.clear()
        options = self._options_for(self.target) if self.target else []
        for s in options:
            state = "in mapping" if self.session.in_mapping(s) else ("proposed" if s.accepted else "candidate")
            how = f" [{describe_transform(s.transform)}]" if s.transform else ""
            item = QListWidgetItem(f"{s.source}{how}  {s.confidence:.2f}  {state}: {s.reason}")
            item.setData(Qt.ItemDataRole.UserRole, s)
            item.setToolTip(item.text())
            self.options.addItem(item)
        if not options:
            self.options_label.setText("Suggestions for this key: none (run Suggest)" if self.target else "")
        else:
            self.options_label.setText(f"Suggestions for this key ({len(options)}):")
        self.use_button.setEnabled(bool(options))

    def _use(self) -> None:
        item = self.options.currentItem() or (self.options.item(0) if self.options.count() else None)
        if item is not None:
            self.suggestionChosen.emit(item.data(Qt.ItemDataRole.UserRole))

    def _pick_fit(self, row: int) -> None:
        transform = self.fits.itemData(row)
        self.transform.setText(json.dumps(transform) if transform else "")

    def _apply(self) -> None:
        text = self.transform.text().strip()
        if not text:
            self.transformRequested.emit(self.target, None)
            return
        try:
            transform = json.loads(text)
        except json.JSONDecodeError as exc:
            self.message.emit(f"Transform is not valid JSON: {exc.msg} (column {exc.colno})")
            return
        if not isinstance(transform, dict) or "op" not in transform:
            self.message.emit('A transform is a JSON object with an "op" field, e.g. {"op": "slice"}')
            return
        self.transformRequested.emit(self.target, transform)

    def _remove(self) -> None:
        if self.target:
            self.removeRequested.emit(self.target)
