"""The inspector: everything about one target key's entry, with a transform editor and, for a
target filled from several sources, their list (add, remove, reorder: each one undo step)."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..core.combine import concat_dim, describe_combine
from ..core.pairing import channels_before, fitting_transforms
from ..core.strategies import Suggestion
from ..core.tensors import format_shape
from ..core.transforms import describe_transform
from .editing import EditController
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
        self._build_sources(layout)
        session.suggestionsChanged.connect(self.refresh)
        self.apply_button.clicked.connect(self._apply)
        self.remove_button.clicked.connect(self._remove)
        session.changed.connect(self.refresh)
        self.refresh()

    # -- several sources --------------------------------------------------------------------------
    def _build_sources(self, layout: QVBoxLayout) -> None:
        self.edits = EditController(self.session, self.message.emit, self)
        self.sources_label = QLabel("Sources:")
        self.sources = QListWidget()
        self.sources.setObjectName("inspectorSources")
        self.sources.setToolTip("The source keys that fill this target, in the order they are joined "
                                "(Ctrl+drop a source key on the target, or Add source, to join another)")
        self.sources.setMaximumHeight(96)
        self.source_up = QPushButton("Up")
        self.source_down = QPushButton("Down")
        self.source_remove = QPushButton("Remove source")
        self.source_add = QPushButton("Add source\u2026")
        for button, name in ((self.source_up, "sourceUp"), (self.source_down, "sourceDown"),
                             (self.source_remove, "sourceRemove"), (self.source_add, "sourceAdd")):
            button.setObjectName(name)
        row = QHBoxLayout()
        for button in (self.source_up, self.source_down, self.source_remove, self.source_add):
            row.addWidget(button)
        row.addStretch(1)
        layout.insertWidget(layout.indexOf(self.options_label), self.sources_label)
        layout.insertWidget(layout.indexOf(self.options_label), self.sources)
        layout.insertLayout(layout.indexOf(self.options_label), row)
        self.source_up.clicked.connect(lambda: self._move_source(-1))
        self.source_down.clicked.connect(lambda: self._move_source(1))
        self.source_remove.clicked.connect(self._remove_source)
        self.source_add.clicked.connect(self._add_source)
        self.sources.currentRowChanged.connect(self._source_buttons)

    def _fill_sources(self, entry, ready: bool) -> None:
        keep = self.sources.currentRow()
        self.sources.clear()
        table = self.doc.source.side.table if self.doc.source is not None else {}
        for name in entry.sources if entry is not None and ready else ():
            info = table.get(name)
            item = QListWidgetItem(name + (f"  {format_shape(info.shape)} {info.dtype}" if info else "  (missing)"))
            item.setData(Qt.ItemDataRole.UserRole, name)
            self.sources.addItem(item)
        if self.sources.count():
            self.sources.setCurrentRow(min(max(keep, 0), self.sources.count() - 1))
        self.source_add.setEnabled(entry is not None and ready)
        self._source_buttons()

    def _source_buttons(self, *_args) -> None:
        row, n = self.sources.currentRow(), self.sources.count()
        self.source_up.setEnabled(n > 1 and row > 0)
        self.source_down.setEnabled(n > 1 and 0 <= row < n - 1)
        self.source_remove.setEnabled(n > 1 and row >= 0)

    def _current_source(self) -> str | None:
        item = self.sources.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _move_source(self, step: int) -> None:
        name = self._current_source()
        if self.target and name and self.edits.move_source(self.target, name, step):
            self.sources.setCurrentRow(self.doc.mapping.entries[self.target].sources.index(name))

    def _remove_source(self) -> None:
        name = self._current_source()
        if self.target and name:
            self.edits.remove_source(self.target, name)

    def joinable_sources(self, limit: int = 2000) -> list[str]:
        """Source keys that could join this target's sources: the target's shape but smaller in one dim."""
        entry = self.doc.mapping.get(self.target) if self.target else None
        if entry is None or self.doc.source is None or self.doc.target is None:
            return []
        want = self.doc.target.side.table[entry.target].shape
        out = []
        for name, info in self.doc.source.side.table.items():
            shape = info.shape
            if name in entry.sources or len(shape) != len(want) or not want:
                continue
            differ = [k for k, (a, b) in enumerate(zip(shape, want, strict=True)) if a != b]
            if len(differ) <= 1 and all(shape[k] < want[k] for k in differ) and shape != want:
                out.append(name)
                if len(out) >= limit:
                    break
        return out

    def _add_source(self) -> None:
        if not self.target:
            return
        choices = self.joinable_sources()
        name, ok = QInputDialog.getItem(self, "Add source",
                                        f"Join another source key into {self.target} (after the ones it has):",
                                        choices, 0, True)
        if ok and name:
            if self.doc.source is None or name not in self.doc.source.side.table:
                self.message.emit(f"The source has no key {name!r}")
                return
            self.edits.add_source(self.target, name)

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
        self._fill_sources(entry, ready)
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
        self.labels["Source"].setText(entry.source + shape if not entry.many else
                                      f"{len(entry.sources)} sources: {' + '.join(entry.sources)}")
        self.labels["Origin"].setText(entry.origin)
        self.labels["Confidence"].setText("" if entry.confidence is None else f"{entry.confidence:.2f}")
        self.labels["Reason"].setText(entry.reason)
        self.labels["Problem"].setText(self.doc.status.problems.get(key, ""))
        self.transform.setText(json.dumps(entry.transform) if entry.transform else "")
        self.fits.clear()
        if entry.many:  # several sources: the combining op that fits them, if one does
            shapes = [source.side.table[s].shape for s in entry.sources if s in source.side.table]
            dim = concat_dim(shapes, tinfo.shape) if len(shapes) == len(entry.sources) else None
            if dim is not None:
                fit = {"op": "concat", "dim": dim}
                self.fits.addItem(describe_combine(fit, len(shapes)), fit)
            current = self.fits.findData(entry.transform) if entry.transform else -1
            if current < 0 and entry.transform:
                self.fits.insertItem(0, f"{describe_combine(entry.transform, len(entry.sources))} (current)",
                                     entry.transform)
                current = 0
            self.fits.setCurrentIndex(current)
            return
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
            item = QListWidgetItem(f"{' + '.join(s.sources)}{how}  {s.confidence:.2f}  {state}: {s.reason}")
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
