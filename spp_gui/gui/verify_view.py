"""Verify in the editor: run the source and the mapped target on one random batch, colour the links.

The comparison is the core's (:func:`~spp_gui.core.verify.verify_mapping`), run on a worker. This
module decides when it may run, shows what it found (link colours, a bar under the trees, a report
dialog) and drops the result as soon as the mapping or a side changes: it then describes another mapping.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import SppError
from ..core.specs import looks_like_model_spec
from ..core.strategies import Role
from ..core.trust import UntrustedCodeError
from ..core.verify import (
    AGREE,
    DISAGREE,
    NOT_COMPARED,
    NOT_INFORMATIVE,
    LayerCheck,
    VerifyReport,
    parse_input_shape,
)
from .dialogs import ask_to_run_code
from .jobs import Job, start_job, verify_session
from .session import MappingSession, Services
from .style import STATUS_STYLE, VERIFY_ORDER, status_icon

DEFAULT_INPUT_SHAPE = (1, 3, 224, 224)
RANK = {DISAGREE: 0, NOT_INFORMATIVE: 1, AGREE: 2, NOT_COMPARED: 3}  # the report lists what needs attention first
VERIFY_TIP = ("Run one random batch through the source model and the mapped target and compare "
              "each mapped layer's output where both see the same input")


def shape_text(shape: tuple[int, ...]) -> str:
    """As typed in the input-shape field: 1,3,224,224."""
    return ",".join(map(str, shape))


def dims(shape: tuple[int, ...]) -> str:
    """As read: 1\u00d73\u00d7224\u00d7224."""
    return "\u00d7".join(map(str, shape))


def counts_text(report: VerifyReport) -> str:
    agree, bad, zeros = (len(report.by_status(s)) for s in (AGREE, DISAGREE, NOT_INFORMATIVE))
    text = f"{agree} agree, {bad} disagree, "
    if zeros:
        text += f"{zeros} not informative (all-zero outputs), "
    return text + f"{len(report.layers) - agree - bad - zeros} not compared"


class VerifyTableModel(QAbstractTableModel):
    """The layers of one report, disagreeing first (a read-only adapter of :class:`VerifyReport`)."""

    COLUMNS = ("Status", "Target module", "Source module", "Cosine", "Rel. error", "Note")

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[LayerCheck] = []

    def set_report(self, report: VerifyReport | None) -> None:
        self.beginResetModel()
        self.rows = sorted(report.layers, key=lambda c: RANK.get(c.status, 3)) if report is not None else []
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return None
        check, col = self.rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 3:
                return f"{check.cosine:.6f}" if check.cosine is not None else ""
            if col == 4:
                return f"{check.rel_error:.2e}" if check.rel_error is not None else ""
            return (check.status, check.target_module, check.source_module or "\u2014", None, None, check.note)[col]
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            return status_icon(check.status)
        if role == Qt.ItemDataRole.ToolTipRole:
            return (check.note or STATUS_STYLE[check.status][2]) if col in (0, 5) else None
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (3, 4):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.COLUMNS[section] if 0 <= section < len(self.COLUMNS) else None
        return None


class VerifyDialog(QDialog):
    """The report of the last Verify: a summary, every compared layer, and the input shape to rerun with.

    Modeless, so its rows can be clicked to select the layers in the editor while it stays open.
    """

    rerunRequested = Signal(str)  # the input shape as typed
    layerActivated = Signal(str, str)  # target module, source module

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("verifyDialog")
        self.setWindowTitle("Verify mapping")
        self.setModal(False)
        self.summary = QLabel("")
        self.summary.setObjectName("verifySummary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model = VerifyTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)  # one line a layer; the full note is the cell's tooltip
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setToolTip("Click a layer to select it in the source and target trees")
        self.table.clicked.connect(self._clicked)
        self.shape = QLineEdit()
        self.shape.setObjectName("verifyInputShape")
        self.shape.setToolTip("The random input batch, e.g. 1,3,224,224 (batch, channels, height, width)")
        self.shape.returnPressed.connect(self._rerun)
        again = QPushButton("Verify again")
        again.setObjectName("verifyAgain")
        again.clicked.connect(self._rerun)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        row = QHBoxLayout()
        row.addWidget(QLabel("Input shape:"))
        row.addWidget(self.shape, 1)
        row.addWidget(again)
        row.addStretch(1)
        row.addWidget(buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addLayout(row)
        self.resize(900, 420)

    def show_report(self, report: VerifyReport) -> None:
        bad = report.by_status(DISAGREE)
        first = (f" The first is <b>{bad[0].target_module}</b> (from source <b>{bad[0].source_module}</b>): "
                 "what comes before it agrees, so its weights are the likely mistake." if bad else "")
        verdict = (f"<b style='color:{STATUS_STYLE[DISAGREE][0]}'>"
                   f"{'1 layer disagrees' if len(bad) == 1 else f'{len(bad)} layers disagree'}.</b>{first}" if bad else
                   f"<b style='color:{STATUS_STYLE[AGREE][0]}'>No compared layer disagrees.</b>")
        self.summary.setText(f"{verdict}<br>{counts_text(report)} on a random batch of shape "
                             f"{dims(report.input_shape)}.")
        self.model.set_report(report)
        self.shape.setText(shape_text(report.input_shape))

    def show_error(self, text: str, shape: tuple[int, ...]) -> None:
        self.summary.setText(f"<b style='color:{STATUS_STYLE[DISAGREE][0]}'>Verify failed.</b> "
                             f"{_escape(text)}<br>If the input does not fit the models, change its shape below.")
        self.model.set_report(None)
        self.shape.setText(shape_text(shape))

    def mark_stale(self) -> None:
        if self.model.rows and not self.summary.text().startswith("<i>"):
            self.summary.setText("<i>The mapping changed after this check; verify again to update it.</i><br>"
                                 + self.summary.text())

    def present(self) -> None:
        self.show()
        self.raise_()
        self.activateWindow()

    def _rerun(self) -> None:
        self.rerunRequested.emit(self.shape.text())

    def _clicked(self, index: QModelIndex) -> None:
        check = self.model.rows[index.row()]
        if check.source_module:
            self.layerActivated.emit(check.target_module, check.source_module)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class VerifyBar(QWidget):
    """Under the trees while a result is shown: the link legend with counts, Details and Clear."""

    detailsRequested = Signal()
    clearRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("verifyBar")
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 0, 4, 0)
        self.title = QLabel("")
        row.addWidget(self.title)
        self.counts: dict[str, QLabel] = {}
        for status in VERIFY_ORDER:
            icon = QLabel()
            icon.setPixmap(status_icon(status).pixmap(14, 14))
            text = QLabel(status)
            for w in (icon, text):
                w.setToolTip(STATUS_STYLE[status][2])
            self.counts[status] = text
            row.addWidget(icon)
            row.addWidget(text)
            row.addSpacing(8)
        row.addStretch(1)
        details = QPushButton("Details\u2026")
        details.setToolTip("The layers compared, with cosine similarity and relative error")
        details.clicked.connect(self.detailsRequested)
        clear = QPushButton("Clear")
        clear.setToolTip("Return the links to their status colours")
        clear.clicked.connect(self.clearRequested)
        row.addWidget(details)
        row.addWidget(clear)
        self.setVisible(False)

    def show_report(self, report: VerifyReport | None) -> None:
        if report is None:
            self.setVisible(False)
            return
        self.title.setText(f"<b>Links by Verify</b> ({dims(report.input_shape)}):")
        for status, label in self.counts.items():
            label.setText(f"{len(report.by_status(status))} {status}")
        self.setVisible(True)


class VerifyController(QObject):
    """The window's Verify action: preconditions, the worker job, and where its result is shown."""

    reported = Signal(object)  # a VerifyReport now shown
    failed = Signal(str)  # why a run could not start or did not finish
    coloursChanged = Signal(object)  # the report the links are coloured by, or None
    layerActivated = Signal(str, str)  # target, source: the user wants to see this pair

    def __init__(self, session: MappingSession, services: Services, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.services = session, services
        self.input_shape: tuple[int, ...] = DEFAULT_INPUT_SHAPE
        self.report: VerifyReport | None = None
        self.job: Job | None = None
        self.action: QAction | None = None
        self.dialog: VerifyDialog | None = None
        self.bar = VerifyBar()
        self.bar.detailsRequested.connect(self.show_dialog)
        self.bar.clearRequested.connect(self.clear)
        self._generation = 0  # bumped by every change that makes a result stale
        session.changed.connect(self._stale)
        session.stack.indexChanged.connect(self._stale)

    def bind_action(self, action: QAction) -> None:
        self.action = action
        self._refresh_action()

    # -- when it may run ----------------------------------------------------------------------
    def blocked(self) -> str | None:
        """Why Verify cannot run on this session (one sentence a user can act on), or None."""
        doc = self.session.doc
        if doc.source is None or doc.target is None:
            return "Verify needs a source and a target: open both first."
        if not doc.mapping.entries:
            return "The mapping is empty: map some keys (or run a strategy) first."
        if doc.status.problems:
            key, why = next(iter(doc.status.problems.items()))
            return (f"The mapping has {len(doc.status.problems)} invalid entries; fix or remove them first.\n\n"
                    f"{key}: {why}")
        for role, side in ((Role.SOURCE, doc.source), (Role.TARGET, doc.target)):
            if not looks_like_model_spec(side.spec):
                return (f"Verify runs both models, so the {role} must be a model spec or torchvision model "
                        f"(e.g. torchvision:alexnet, torchvision:alexnet:IMAGENET1K_V1, spp_gui:alexnet_spp), "
                        f"not a checkpoint file alone.\n\n{side.spec} holds tensors but names no architecture. "
                        "Open the " + role + " from a spec (File \u25b8 " + role.capitalize() + " from spec), or "
                        "verify from the command line: spp-gui verify MAPPING.json "
                        + ("--source-model SPEC" if role == Role.SOURCE else "--target SPEC") + ".")
        return None

    def _refresh_action(self) -> None:
        if self.action is None:
            return
        doc = self.session.doc
        ready = doc.ready and bool(doc.mapping.entries)
        self.action.setEnabled(ready)
        tip = VERIFY_TIP if ready else f"Verify: {self.blocked()}"
        self.action.setStatusTip(tip)
        self.action.setToolTip(tip)

    # -- running ------------------------------------------------------------------------------
    def run(self) -> Job | None:
        """Start a verification of the current mapping on a worker; None (and a message) if it cannot."""
        why = self.blocked()
        if why is not None:
            self.services.error("Cannot verify", why, "")
            self.services.message(f"Cannot verify: {why.splitlines()[0]}")
            self.failed.emit(why)
            return None
        if self.job is not None:
            self.job.cancel()
        doc = self.session.doc
        generation, shape = self._generation, self.input_shape
        job = Job(f"Verifying on {dims(shape)}", lambda report: self._verified(job, generation, report),
                  lambda exc: self._failed(job, exc), lambda: self._cancelled(job), self)
        job.ended.connect(lambda: self._ended(job))
        self.job = job
        self.services.progress.track(job)
        source, target = doc.loaded_source, doc.loaded_target  # blocked() said both are open
        start_job(self.services.pool, job, verify_session, doc.mapping.copy(), source.spec, target.spec,
                  source.pickle_trust, shape)
        return job

    def rerun(self, text: str) -> None:
        try:
            self.input_shape = parse_input_shape(text)
        except SppError as exc:
            self._show_error(str(exc))
            return
        self.run()

    def _verified(self, job: Job, generation: int, report: VerifyReport) -> None:
        if job is not self.job:
            return
        if generation != self._generation:
            self.services.message("Verify result dropped: the mapping changed while it ran; verify again")
            return
        self.report = report
        self.coloursChanged.emit(report)
        self.bar.show_report(report)
        self.services.message(f"Verify: {counts_text(report)}")
        dialog = self._dialog()
        dialog.show_report(report)
        dialog.present()
        self.reported.emit(report)

    def _failed(self, job: Job, exc: Exception) -> None:
        if job is not self.job:
            return
        if isinstance(exc, UntrustedCodeError):  # a model file changed since it was allowed
            ask_to_run_code(self.services.parent, exc, self.run)
            return
        if isinstance(exc, SppError):
            self._show_error(str(exc))
        else:  # a bug: the traceback is for the report
            self.services.error("Verify failed", f"{type(exc).__name__}: {exc}", getattr(exc, "__traceback_text__", ""))
            self.services.message(f"Verify failed: {type(exc).__name__}: {exc}")
            self.failed.emit(str(exc))

    def _show_error(self, text: str) -> None:
        self.services.message(f"Verify failed: {text}")
        dialog = self._dialog()
        dialog.show_error(text, self.input_shape)
        dialog.present()
        self.failed.emit(text)

    def _cancelled(self, job: Job) -> None:
        if job is self.job:
            self.services.message("Verify cancelled")

    def _ended(self, job: Job) -> None:
        if job is self.job:
            self.job = None

    # -- showing ------------------------------------------------------------------------------
    def _dialog(self) -> VerifyDialog:
        if self.dialog is None:
            self.dialog = VerifyDialog(self.services.parent)
            self.dialog.rerunRequested.connect(self.rerun)
            self.dialog.layerActivated.connect(self.layerActivated)
        return self.dialog

    def show_dialog(self) -> None:
        if self.report is not None:
            self._dialog().show_report(self.report)
        self._dialog().present()

    def clear(self) -> None:
        """Forget the result: the links return to their status colours."""
        self.report = None
        self.coloursChanged.emit(None)
        self.bar.show_report(None)

    def _stale(self, *args) -> None:
        self._generation += 1
        if self.report is not None:
            self.clear()
            if self.dialog is not None:
                self.dialog.mark_stale()
        self._refresh_action()
