"""The Train panel: configure a run from the mapping session, run the engine off the GUI thread, plot live.

Start runs the engine in a process of its own by default (``OWN_PROCESS``): ``spp_gui train
--events-jsonl --control-stdin``, whose events arrive as JSON lines (``ProcessRun``) and whose
Pause, Resume and Stop go to it as lines on its stdin. Python code the GUI thread runs (drawing,
handling events, the editor in use meanwhile) then never holds the engine's interpreter lock
(benchmarks/gui_responsiveness.py --gui-load: 0.89x of headless against 0.84x in this app's thread
on 2 cores). A crash or the kernel's out-of-memory killer ends that process, not the window.
In this app's thread (``IN_APP``; the comparison and the demo too when torchrun is chosen), the engine yields
events in a worker thread; they arrive here through signals received by ``@Slot`` methods of this
GUI-thread object. Events only append to per-run
arrays; a timer (<= 30 Hz, and no sooner than the plots' drawing budget allows: ``RunPlots.push``)
pushes changed arrays into plot items that were created once per run, together with the progress text.
A run can also go to torchrun as processes of its own (``ProcessRun``): its rank 0 prints the
same events as JSON lines, which arrive in the same slot and the same curves.

The panel reads the editor's session through a reader function (``set_session_reader``) when it
needs it: at Start, and when the window shows the Training page (``refresh_session``); nothing
pushes copies into it.

Layout, for a page of about 1000x520: the run buttons, progress bars and status line across the
top (always visible); below, the set-up form (scrolls if it must) and the run list on the left,
the plots in the remaining space on the right.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from PySide6.QtCore import (
    QEventLoop,
    Qt,
    QThread,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import SppError
from ..core.mapping import Mapping
from ..core.trust import UntrustedCodeError, code_files, file_sha256, is_trusted, trust_named_specs
from ..training.config import OPTIMIZERS, SCHEDULERS, RunConfig
from ..training.data import scan_dataset, split_info_text
from ..training.distributed import cluster_command, launch_command, per_rank_batch
from ..training.engine import RunControl, train
from ..training.events import ENDINGS, CheckpointSaved, Epoch, Failed, Message, Started, Step, describe
from ..training.metrics import read_epochs
from . import train_form
from .dialogs import ask_to_run_code
from .process_run import ProcessRun
from .run_plots import RunPlots
from .train_checks import class_mismatch, run_name_problem, with_num_classes
from .train_compare import MAPPED_LR, SCRATCH_LR, compare_configs, compare_runs, compare_summary
from .train_runs import RunListModel, run_folders
from .workers import Worker, WorkerPool

PLOT_INTERVAL_MS = 34  # <= 30 Hz
OFF_SCREEN_REFRESH_MS = 1000  # progress text only, while the plots are off screen
REMEMBER_DELAY_MS = 500  # the form is written to the settings once edits pause
OWN_PROCESS, IN_APP, TORCHRUN = "own process", "this app's thread", "torchrun processes"
NO_MAPPING_TIP = "Needs a mapping session: map source weights onto the target in the editor first"


@dataclass(frozen=True)
class TrainSession:
    """What the panel reads from the editor: the target, and the mapping (a copy the panel may keep)."""

    target_spec: str
    mapping: Mapping | None = None
    source: str | None = None


SessionReader = Callable[[], Any]  # returns None or an object with target_spec, mapping, source


class TrainPanel(QWidget):
    """Configure, start, pause, stop and watch training runs; overlay several runs for comparison."""

    run_finished = Signal(str)  # the status line of a run that ended, whatever the outcome
    thread_done = Signal()  # the run's thread has ended (after run_finished)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pool = WorkerPool(self)
        self._control: RunControl | None = None
        self._reader: SessionReader | None = None
        self._session: Any = None  # the snapshot last read: at Start, or when the page was shown
        self._data_classes: int | None = None  # the train folder's class count, once it was scanned
        self._class_problem = ""
        self._last_config: RunConfig | None = None
        self._last_was_process = False
        self._compare_names: tuple[str, str] | None = None  # a comparison running in its own process
        self._endings: dict[str, Any] = {}  # each run's last event (Finished, Stopped, Failed), by name
        self._last_checkpoint: CheckpointSaved | None = None  # the run's latest last.safetensors
        self._t_start = 0.0
        self._paused_total = 0.0
        self._paused_at: float | None = None
        self._progress_text = ""
        self.last_error = ""
        self.last_result = None
        self._thread: QThread | None = None
        self._latest_step: Step | None = None
        self._worker: Worker | None = None
        self._process: ProcessRun | None = None
        self._running = False  # a run's work is in progress (its thread may outlive it by a moment)
        self._build()
        self._session_spec = self.spec_edit.text()  # the spec the panel itself put in the field
        self._timer = QTimer(self)
        self._timer.setInterval(PLOT_INTERVAL_MS)
        self._timer.setSingleShot(True)  # armed by new data only: an idle panel never wakes up
        self._timer.timeout.connect(self._refresh_plots)
        self._remember_timer = QTimer(self)
        self._remember_timer.setInterval(REMEMBER_DELAY_MS)
        self._remember_timer.setSingleShot(True)
        self._remember_timer.timeout.connect(self.remember_form)
        train_form.restore(self._form_fields())
        self._watch_form()
        self._show_session()
        self._update_buttons()

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        """The panel, phase by phase: the set-up form and its hyper-parameters, the top bar, the form
        scrolled, the run list under it, the plots beside them."""
        defaults = RunConfig()
        form, hyper = self._build_form(defaults), self._build_hyper(defaults)  # made in this order, as before
        top = self._build_top_bar()
        self._build_setup(form, hyper)
        runs = self._build_run_list()

        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.setup_scroll)
        left.addWidget(runs)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 1)
        left.setChildrenCollapsible(False)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.plots)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([420, 580])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)

    def _build_form(self, defaults: RunConfig) -> QFormLayout:
        """Model, weights, data folders and where the run goes."""
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.spec_edit = QLineEdit(defaults.model.spec)
        self.spec_edit.setToolTip("The model to train; it follows the editor's target until you type another "
                                  "(clear the field to follow the editor again)")
        self.spec_edit.editingFinished.connect(self._check_classes)
        self.mapping_label = QLabel()
        self.mapping_label.setWordWrap(True)
        self.train_edit, self.val_edit = QLineEdit(), QLineEdit()
        self.train_info, self.val_info = QLabel("-"), QLabel("-")
        self.class_label = QLabel()
        self.class_label.setObjectName("classMismatch")
        self.class_label.setTextFormat(Qt.TextFormat.RichText)
        self.class_label.linkActivated.connect(self._fix_num_classes)
        self.class_label.setVisible(False)
        for label in (self.train_info, self.val_info, self.class_label):
            label.setWordWrap(True)
        for edit in (self.train_edit, self.val_edit):
            edit.editingFinished.connect(self.validate_dataset)
        form.addRow("Target model", self.spec_edit)
        form.addRow("Weights", self.mapping_label)
        form.addRow("Train folder", self._with_browse(self.train_edit))
        form.addRow("", self.train_info)
        form.addRow("Val folder", self._with_browse(self.val_edit))
        form.addRow("", self.val_info)
        form.addRow("", self.class_label)
        self.out_edit = QLineEdit(str(Path(defaults.run.out).resolve()))
        form.addRow("Runs folder", self._with_browse(self.out_edit))
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("automatic: scratch-HHMMSS or pretrained-HHMMSS")
        self.name_edit.setToolTip("The run's folder name under the runs folder (one name, no slashes); "
                                  "-2, -3 ... is added when it is taken")
        form.addRow("Run name", self.name_edit)
        return form

    def _build_hyper(self, defaults: RunConfig) -> QGridLayout:
        """Optimizer, schedule, sizes, and how the run is launched."""
        hyper = QGridLayout()
        self.optimizer_box = QComboBox()
        self.optimizer_box.addItems(OPTIMIZERS)
        self.scheduler_box = QComboBox()
        self.scheduler_box.addItems(SCHEDULERS)
        self.lr_spin = self._float_spin(defaults.optim.lr)
        self.loaded_lr_spin = self._float_spin(defaults.optim.loaded_lr)
        self.loaded_lr_spin.setSpecialValueText("same as lr")
        self.freeze_check = QCheckBox("freeze loaded layers")
        self.epochs_spin = self._int_spin(defaults.run.epochs, 1, 10000)
        self.batch_spin = self._int_spin(defaults.run.batch_size, 1, 65536)
        self.size_spin = self._int_spin(defaults.data.image_size, 8, 4096)
        self.workers_spin = self._int_spin(defaults.data.workers, 0, 64)
        cells = [("optimizer", self.optimizer_box), ("lr", self.lr_spin), ("loaded lr", self.loaded_lr_spin),
                 ("scheduler", self.scheduler_box), ("epochs", self.epochs_spin), ("batch", self.batch_spin),
                 ("image size", self.size_spin), ("workers", self.workers_spin)]
        for i, (text, widget) in enumerate(cells):
            hyper.addWidget(QLabel(text), i // 2, (i % 2) * 2)
            hyper.addWidget(widget, i // 2, (i % 2) * 2 + 1)
        hyper.addWidget(self.freeze_check, 4, 0, 1, 4)
        self.launch_box = QComboBox()
        self.launch_box.addItems([OWN_PROCESS, IN_APP, TORCHRUN])
        self.launch_box.setToolTip(
            "Where Start runs the training; its curves show here in every case.\n"
            f"{OWN_PROCESS}: a process of its own (drawing and the editor never compete with it for Python's "
            "lock; a crash there does not close this window); starts in a few seconds.\n"
            f"{IN_APP}: a worker thread of this app; starts at once.\n"
            f"{TORCHRUN}: separate processes (one per GPU, gloo on the CPU) with DistributedDataParallel.\n"
            f"Compare and Run demo run in their own process too, or in this app's thread when {TORCHRUN} is "
            "chosen.")
        self.nproc_spin = self._int_spin(_default_nproc(), 1, 256)
        self.nproc_spin.setToolTip("processes for torchrun; run.batch_size is the global batch, split across them")
        self.launch_box.currentIndexChanged.connect(self._update_buttons)
        hyper.addWidget(QLabel("run in"), 5, 0)
        hyper.addWidget(self.launch_box, 5, 1)
        hyper.addWidget(QLabel("processes"), 5, 2)
        hyper.addWidget(self.nproc_spin, 5, 3)
        self.cluster_button = QPushButton("Cluster command...")
        self.cluster_button.setToolTip("Save this run's config and show the torchrun line to run on each machine")
        self.cluster_button.clicked.connect(self.show_cluster_command)
        hyper.addWidget(self.cluster_button, 6, 0, 1, 4, Qt.AlignmentFlag.AlignLeft)
        return hyper

    def _build_top_bar(self) -> QVBoxLayout:
        # the top bar: what starts and stops a run, and how it goes; never scrolled away
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.demo_button = QPushButton("Run demo")
        self.demo_button.setToolTip("The seed's experiment on drawn images: scratch vs mapped-pretrained (quick size)")
        self.compare_button = QPushButton("Compare scratch vs mapped")
        self.compare_button.setObjectName("compareButton")
        buttons = QHBoxLayout()
        for button, slot in ((self.start_button, self.start), (self.pause_button, self.toggle_pause),
                             (self.stop_button, self.stop), (self.demo_button, self.start_demo),
                             (self.compare_button, self.start_compare)):
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addStretch(1)

        self.epoch_bar, self.run_bar = QProgressBar(), QProgressBar()
        for bar in (self.epoch_bar, self.run_bar):
            bar.setRange(0, 1000)
            bar.setValue(0)
        self.epoch_bar.setFormat("epoch %p%")
        self.run_bar.setFormat("run %p%")
        self.eta_label = QLabel("")
        self.eta_label.setObjectName("etaLabel")
        self.eta_label.setMinimumWidth(self.eta_label.fontMetrics().horizontalAdvance("ETA 000:00:00"))
        self.status_label = QLabel("idle")
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Changing text must not re-lay-out the panel (and repaint every plot) several times a second.
        for label in (self.status_label, self.eta_label):
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        bars = QHBoxLayout()
        bars.addWidget(self.epoch_bar, 1)
        bars.addWidget(self.run_bar, 1)
        bars.addWidget(self.eta_label)
        top = QVBoxLayout()
        top.setSpacing(4)
        top.addLayout(buttons)
        top.addLayout(bars)
        top.addWidget(self.status_label)
        return top

    def _build_setup(self, form: QFormLayout, hyper: QGridLayout) -> None:
        # the set-up form scrolls on its own when the page is short; the run list sits under it
        setup = QWidget()
        setup_layout = QVBoxLayout(setup)
        setup_layout.setContentsMargins(0, 0, 4, 0)
        setup_layout.addLayout(form)
        setup_layout.addLayout(hyper)
        setup_layout.addStretch(1)
        self.setup_scroll = QScrollArea()
        self.setup_scroll.setWidgetResizable(True)
        self.setup_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.setup_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setup_scroll.setWidget(setup)
        # it scrolls up and down only: never narrower than the form, whose fields would be cut off
        bar_width = self.setup_scroll.style().pixelMetric(self.setup_scroll.style().PixelMetric.PM_ScrollBarExtent)
        self.setup_scroll.setMinimumWidth(setup.minimumSizeHint().width() + bar_width)

    def _build_run_list(self) -> QWidget:
        """The plots, and the list of runs drawn in them with its tools."""
        self.plots = RunPlots()
        self.plots.shown.connect(self._on_plots_shown)
        self.run_model = RunListModel(self.plots, self)
        self.run_list = QListView()
        self.run_list.setModel(self.run_model)
        self.run_list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.run_list.setUniformItemSizes(True)
        self.load_button = QPushButton("Load runs...")
        self.load_button.setToolTip("Overlay earlier runs: pick the runs folder (every run in it) or one run's folder")
        self.png_button = QPushButton("Export PNG")
        self.png_button.setToolTip("The plots at twice their size on screen")
        self.csv_button = QPushButton("Export CSV")
        self.clear_button = QPushButton("Clear plots")
        run_tools = QGridLayout()
        for i, (button, slot) in enumerate(((self.load_button, self._ask_load), (self.clear_button, self.clear_runs),
                                            (self.png_button, self._ask_png), (self.csv_button, self._ask_csv))):
            button.clicked.connect(slot)
            run_tools.addWidget(button, i // 2, i % 2)
        runs = QWidget()
        runs_layout = QVBoxLayout(runs)
        runs_layout.setContentsMargins(0, 0, 4, 0)
        runs_layout.addWidget(QLabel("Runs (uncheck to hide)"))
        runs_layout.addWidget(self.run_list, 1)
        return runs

    def _with_browse(self, edit: QLineEdit) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        button = QPushButton("Browse...")
        button.clicked.connect(self._browse)
        self._browse_targets = getattr(self, "_browse_targets", {})
        self._browse_targets[button] = edit
        row.addWidget(button)
        return box

    @staticmethod
    def _float_spin(value: float) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setDecimals(6)
        spin.setRange(0.0, 10.0)
        spin.setSingleStep(1e-4)
        spin.setValue(value)
        return spin

    @staticmethod
    def _int_spin(value: int, low: int, high: int) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setValue(value)
        return spin

    # -- the form, remembered across sessions ---------------------------------------------------
    def _form_fields(self) -> dict[str, QWidget]:
        return {"train": self.train_edit, "val": self.val_edit, "runs_folder": self.out_edit,
                "optimizer": self.optimizer_box, "scheduler": self.scheduler_box, "lr": self.lr_spin,
                "loaded_lr": self.loaded_lr_spin, "freeze_loaded": self.freeze_check,
                "epochs": self.epochs_spin, "batch_size": self.batch_spin, "image_size": self.size_spin,
                "workers": self.workers_spin, "launch": self.launch_box, "processes": self.nproc_spin}

    def _watch_form(self) -> None:
        for widget in self._form_fields().values():
            signal = (widget.textChanged if isinstance(widget, QLineEdit) else
                      widget.currentTextChanged if isinstance(widget, QComboBox) else
                      widget.toggled if isinstance(widget, QCheckBox) else cast(QSpinBox, widget).valueChanged)
            signal.connect(self._remember_timer.start)

    @Slot()
    def remember_form(self) -> None:
        """Keep the folders and hyperparameters for the next session (also done by itself as edits pause)."""
        self._remember_timer.stop()
        train_form.remember(self._form_fields())

    # -- the editor's session ----------------------------------------------------------------
    def set_session_reader(self, reader: SessionReader | None) -> None:
        """How the panel reads the editor's session: ``reader()`` returns None (no session) or an
        object with ``target_spec`` (str), ``mapping`` (Mapping or None; a copy the panel may keep)
        and ``source`` (str or None). Called at Start and by :meth:`refresh_session`."""
        self._reader = reader
        self.refresh_session()

    def set_session(self, target_spec: str, mapping: Mapping | None, source: str | None) -> None:
        """A fixed session (scripts, tests): the panel reads this one from now on."""
        session = TrainSession(target_spec, mapping.copy() if mapping is not None else None, source)
        self.set_session_reader(lambda: session)

    @Slot()
    def refresh_session(self) -> None:
        """Read the session now (the window calls this when the Training page is shown): the Weights
        line, the compare button, and the target spec unless the user typed their own there."""
        self._session = self._reader() if self._reader is not None else None
        spec = str(getattr(self._session, "target_spec", "") or "")
        current = self.spec_edit.text().strip()
        if spec and (not current or (not self.spec_edit.isModified() and current == self._session_spec)):
            self.spec_edit.setText(spec)
            self._session_spec = spec
        self._show_session()
        self._check_classes()
        self._update_buttons()

    def _session_mapping(self) -> Mapping | None:
        """The last snapshot's mapping, when it maps anything."""
        mapping = getattr(self._session, "mapping", None)
        return mapping if mapping is not None and len(mapping) else None

    def _session_source(self) -> str:
        return str(getattr(self._session, "source", "") or "")

    def _show_session(self) -> None:
        mapping = self._session_mapping()
        if mapping is None:
            self.mapping_label.setText("from scratch (no mapping session)")
        else:
            self.mapping_label.setText(f"mapped: {len(mapping)} tensors from "
                                       f"{self._session_source() or mapping.source_spec}")

    # -- state ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a run is in progress or its thread or process has not ended yet."""
        return self._running or self._thread is not None or self._process is not None

    @property
    def external(self) -> bool:
        """The form asks for torchrun processes rather than this window's worker thread."""
        return self.launch_box.currentText() == TORCHRUN

    @property
    def isolated(self) -> bool:
        """The form asks for a run in a process of its own (one, without torchrun)."""
        return self.launch_box.currentText() == OWN_PROCESS

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Stop any run and wait for its thread or process (for the window's closeEvent); leaves nothing running."""
        self.remember_form()
        if self._control is not None:
            self._control.stop()  # the engine notices within one step, even when paused
        if self._process is not None:
            self._process.stop()  # SIGTERM, then SIGKILL after its grace period
        if self._worker is not None:
            try:
                self._worker.quit()
            except RuntimeError:  # already deleted: its work has ended
                pass
        if self._thread is not None or self._process is not None:
            # The thread ends through queued signals (worker.finished -> thread.quit) and a process
            # reports its end through QProcess's signals; both need this thread's event loop, so
            # wait in a local loop rather than blocking in QThread.wait().
            loop = QEventLoop()
            self.thread_done.connect(loop.quit)
            QTimer.singleShot(timeout_ms, loop.quit)
            if self._thread is not None or self._process is not None:
                loop.exec()
        self._timer.stop()

    def ask_to_stop(self) -> str:
        """For the window's closeEvent: what to do with a run in progress. Asks only while one runs.

        Returns
          * ``"stop"``: nothing runs, or the user chose "Stop and close": the window closes, and its
            closeEvent calls :meth:`shutdown` (which stops the run, keeping its last checkpoint and
            metrics, and waits for its thread or torchrun processes);
          * ``"keep"``: the user chose "Keep training": the window must not close (ignore the event);
            it may show the Training page so the run is in view;
          * ``"cancel"``: the user dismissed the question: the window must not close either.

        The box is ``QMessageBox`` "stopRunBox" with buttons "stopRunStop", "stopRunKeep" and
        "stopRunCancel" (object names, for tests).
        """
        if not self.busy:
            return "stop"
        if self._process is not None and self._process.controlled:
            what = "A training run is in progress in its own process. Stopping ends it after its current step."
        elif self._process is not None:
            what = (f"A training job is running as torchrun processes. Stopping sends them SIGTERM: each rank "
                    f"ends after its current step (killed if still running after {self._process.grace_s:g} s).")
        else:
            what = "A training run is in progress in this window. Stopping ends it after its current step."
        box = QMessageBox(QMessageBox.Icon.Question, "Training is running",
                          f"{what}\nIts last checkpoint and metrics are kept.", parent=self)
        box.setObjectName("stopRunBox")
        stop = box.addButton("Stop and close", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep training", QMessageBox.ButtonRole.AcceptRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        for button, name in ((stop, "stopRunStop"), (keep, "stopRunKeep"), (cancel, "stopRunCancel")):
            button.setObjectName(name)
        box.setDefaultButton(keep)
        box.setEscapeButton(cancel)
        box.exec()  # a close prompt, like the window's save question: modal by design
        clicked = box.clickedButton()
        box.deleteLater()
        return "stop" if clicked is stop else "keep" if clicked is keep else "cancel"

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """A standalone panel closing mid-run stops the run first (embedded: the window calls shutdown)."""
        self.shutdown()
        super().closeEvent(event)

    # -- configuration -----------------------------------------------------------------------
    @Slot()
    def _browse(self) -> None:
        edit = self._browse_targets.get(self.sender())
        if edit is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder", edit.text())
        if folder:
            edit.setText(folder)
            if edit is not self.out_edit:
                self.validate_dataset()

    @Slot()
    def validate_dataset(self) -> bool:
        """Scan both folders; show classes and image counts, or what is wrong; check the target's class count."""
        self._data_classes = None
        if not self.train_edit.text() or not self.val_edit.text():
            self.train_info.setText("pick a train folder (one subfolder of images per class)")
            self.val_info.setText("pick a val folder with the same class subfolders")
            self._check_classes()
            return False
        try:
            train_split, val_split = scan_dataset(self.train_edit.text(), self.val_edit.text())
        except SppError as exc:
            self.train_info.setText(f"<span style='color:#d33'>{exc}</span>")
            self.val_info.setText("")
            self._check_classes()
            return False
        self.train_info.setText(split_info_text(train_split))
        self.val_info.setText(split_info_text(val_split))
        self._data_classes = len(train_split.classes)
        self._check_classes()
        return True

    @property
    def class_problem(self) -> str:
        """The class-count mismatch shown under the folders ('' when there is none)."""
        return self._class_problem

    @Slot()
    def _check_classes(self) -> None:
        """The target's head against the data's class count: the mismatch and its fix, or nothing."""
        self._class_problem = ""
        if self._data_classes is not None:
            self._class_problem = class_mismatch(self.spec_edit.text(), self._data_classes)
        if self._class_problem:
            self.class_label.setText(f"<span style='color:#d33'>{self._class_problem}</span> "
                                     f"(<a href='fix'>do it</a>)")
        self.class_label.setVisible(bool(self._class_problem))

    @Slot(str)
    def _fix_num_classes(self, _link: str = "") -> None:
        if self._data_classes is None:
            return
        typed = self.spec_edit.isModified()  # a spec the user typed stays theirs (see start's trust check)
        self.spec_edit.setText(with_num_classes(self.spec_edit.text(), self._data_classes))
        self.spec_edit.setModified(typed)
        self._check_classes()

    def config(self) -> RunConfig:
        """The run config the form describes, with the session's mapping when it has one."""
        mapping = self._session_mapping()
        return self._config(mapping, self._run_name("pretrained" if mapping is not None else "scratch"))

    def _config(self, mapping: Mapping | None, name: str) -> RunConfig:
        cfg = RunConfig()
        cfg.model.spec = self.spec_edit.text().strip()
        cfg.data.train, cfg.data.val = self.train_edit.text(), self.val_edit.text()
        cfg.data.image_size, cfg.data.workers = self.size_spin.value(), self.workers_spin.value()
        cfg.optim.optimizer, cfg.optim.scheduler = self.optimizer_box.currentText(), self.scheduler_box.currentText()
        cfg.optim.lr, cfg.optim.loaded_lr = self.lr_spin.value(), self.loaded_lr_spin.value()
        cfg.optim.freeze_loaded = self.freeze_check.isChecked()
        cfg.run.epochs, cfg.run.batch_size = self.epochs_spin.value(), self.batch_spin.value()
        cfg.run.out = self.out_edit.text() or "runs"
        cfg.run.name = name
        if mapping is not None:
            path = Path(cfg.run.out) / f"{name}-mapping.json"  # one per run: a saved job keeps its own
            mapping.save(path)
            cfg.model.mapping = str(path)
            cfg.model.source = self._session_source()
        return cfg

    def _run_name(self, prefix: str, suffix: str = "", taken: tuple[str, ...] = ()) -> str:
        """The name field's run name (or prefix-HHMMSS), made unique among shown runs and run folders."""
        typed = self.name_edit.text()
        problem = run_name_problem(typed)
        if problem:
            raise SppError(f"{problem} (the Run name field)")
        base = f"{typed}{suffix}" if typed else prefix + time.strftime("-%H%M%S")
        out = Path(self.out_edit.text() or "runs")
        name, n = base, 1
        while name in self.plots.runs or name in taken or (out / name).exists():
            n += 1
            name = f"{base}-{n}"
        return name

    # -- running -----------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        """Start a run from the form and a fresh snapshot of the session, in this window or as torchrun processes."""
        if self._running:
            return
        self.refresh_session()
        if not self.validate_dataset():
            self._error("The dataset folders are not ready", self.train_info.text() or "pick train and val folders")
            return
        try:
            cfg = self.config()
            if self.spec_edit.isModified():  # typed here by the user: theirs to run
                trust_named_specs([cfg.model.spec])
            cfg.validate("the Train panel")
            if self.external:
                per_rank_batch(cfg.run.batch_size, self.nproc_spin.value())
            if self.external or self.isolated:
                self._check_code_allowed(cfg)  # asked here, as a run in this thread would ask
                path = self.write_job_config(cfg)
        except UntrustedCodeError as exc:
            self.status_label.setText("not started: the model file is not one you allowed to run")
            self._dialog = ask_to_run_code(self, exc, self.start)
            return
        except SppError as exc:
            self._error("Cannot start", str(exc))
            return
        except OSError as exc:
            self._error("Cannot start", f"cannot write in the runs folder {self.out_edit.text() or 'runs'}: {exc}")
            return
        self.remember_form()
        if self.external:
            logs = path.parent / "torchrun-logs"
            # the processes may run the model code this window was allowed to run, and no other
            extra = ["--events-jsonl", *self._trusted_code_args(cfg)]
            self.start_process(launch_command([str(path)], self.nproc_spin.value(), extra, tee=True,
                                              log_dir=str(logs)), logs=str(logs))
        elif self.isolated:
            self._start_own_process(cfg, path)
        else:
            self._launch(train, cfg)

    @Slot()
    def start_compare(self) -> None:
        """The seed article's comparison on these folders: from scratch at lr 1e-3, then from the session's
        mapped weights at lr 1e-4; same epochs, batch and seed; curves overlaid (in their own process, or in
        this app's thread unless Run in says own process)."""
        if self._running:
            return
        self.refresh_session()
        mapping = self._session_mapping()
        if mapping is None:
            self._error("Nothing to compare with", NO_MAPPING_TIP)
            return
        if not self.validate_dataset():
            self._error("The dataset folders are not ready", self.train_info.text() or "pick train and val folders")
            return
        try:
            scratch_name = self._run_name("scratch", "-scratch")
            mapped_name = self._run_name("pretrained", "-pretrained", taken=(scratch_name,))
            scratch, pretrained = compare_configs(self._config(None, scratch_name), self._config(mapping, mapped_name))
            if self.spec_edit.isModified():
                trust_named_specs([scratch.model.spec])
            for cfg in (scratch, pretrained):
                cfg.validate("the Train panel")
        except SppError as exc:
            self._error("Cannot start the comparison", str(exc))
            return
        except OSError as exc:
            self._error("Cannot start the comparison",
                        f"cannot write in the runs folder {self.out_edit.text() or 'runs'}: {exc}")
            return
        self.remember_form()
        if self.isolated:
            try:
                self._check_code_allowed(pretrained)
                paths = [self.write_job_config(cfg) for cfg in (scratch, pretrained)]
            except UntrustedCodeError as exc:
                self.status_label.setText("not started: the model file is not one you allowed to run")
                self._dialog = ask_to_run_code(self, exc, self.start_compare)
                return
            except (SppError, OSError) as exc:
                self._error("Cannot start the comparison", f"cannot write the runs' configs: {exc}")
                return
            self._compare_names = (scratch.run.name, pretrained.run.name)
            self.start_process(self.own_process_command(paths[0], pretrained, more=[str(paths[1])]),
                               controlled=True)
        else:
            self._launch(compare_runs, scratch, pretrained)

    @staticmethod
    def write_job_config(cfg: RunConfig) -> Path:
        """The run's config as a file another process (or machine) can run: absolute paths, in the runs folder."""
        job = cfg.copy()
        out = Path(job.run.out).resolve()  # relative to where the app runs, as an in-window run reads it
        out.mkdir(parents=True, exist_ok=True)
        job.run.out = str(out)
        for section, key in (("data", "train"), ("data", "val"), ("model", "mapping"), ("model", "source")):
            value = getattr(getattr(job, section), key)
            if value and Path(value).exists():
                setattr(getattr(job, section), key, str(Path(value).resolve()))
        path = out / f"{job.run.name or 'run'}.toml"
        job.save(path)
        return path

    def start_process(self, command: list[str], logs: str | None = None, controlled: bool = False,
                      config: RunConfig | None = None) -> None:
        """Run a torchrun job (``--tee 3 ... spp_gui train --events-jsonl``), whose rank 0 feeds the curves,
        or (``controlled``) one ``spp_gui train --events-jsonl --control-stdin`` process of ``config``."""
        if self.busy:
            return
        process = ProcessRun(command, parent=self, logs=logs, controlled=controlled)
        process.event.connect(self._on_event)
        process.ended.connect(self._on_process_ended)
        self._control, self._last_config = None, config
        self._process = process
        process.start()
        self._begin("starting its own process (importing torch)..." if controlled
                    else f"starting {' '.join(command[2:6])} ...")

    def own_process_command(self, path: str | os.PathLike, cfg: RunConfig, more: list[str] | None = None) -> list[str]:
        """The command line of a run in its own process: this interpreter, the saved config (``more``: the
        configs to run after it), the model files this window was allowed to run (pinned to their bytes),
        events on stdout, control on stdin."""
        return [sys.executable, "-m", "spp_gui", "train", str(path), *(more or []), "--events-jsonl",
                "--control-stdin", *self._trusted_code_args(cfg)]

    def _start_own_process(self, cfg: RunConfig, path: Path) -> None:
        self.start_process(self.own_process_command(path, cfg), controlled=True, config=cfg)

    def _check_code_allowed(self, cfg: RunConfig) -> None:
        """Before a run leaves this process: every model file it would run must be one the user allowed
        (:class:`UntrustedCodeError` otherwise, which the caller turns into the usual question)."""
        for text in self._code_specs(cfg):
            for path in code_files([text]):
                if not is_trusted(path):
                    raise UntrustedCodeError(path, file_sha256(path), text)

    @Slot(int, str)
    def _on_process_ended(self, code: int, message: str) -> None:
        self._show_progress()  # the last step's numbers first: the outcome goes over them, not under
        if self._compare_names is not None and not message:
            self.status_label.setText(compare_summary(self._compare_names, self._endings))
        self._compare_names = None
        kept = self._last_checkpoint
        if message and not message.startswith("stopped") and kept is not None:
            message += f"\nThe run's last checkpoint is kept (epoch {kept.epoch}): {kept.path}"
        if message:
            self.status_label.setText(message.splitlines()[0])
            if message.startswith("stopped"):
                self.last_error = message
            else:
                controlled = self._process is not None and self._process.controlled
                self._error("The training process failed" if controlled else "The training processes failed",
                            message)
        if self._process is not None:
            self._process.deleteLater()
        self._process = None
        self._on_finished()
        self.thread_done.emit()

    @Slot()
    def _trusted_code_args(self, cfg: RunConfig) -> list[str]:
        """``--trust-code-file PATH=SHA256`` for each model file this window was allowed to run: the
        processes run those exact bytes and nothing else (a file changed meanwhile is refused there)."""
        args: list[str] = []
        for path in code_files(self._code_specs(cfg)):
            if is_trusted(path):
                args += ["--trust-code-file", f"{path}={file_sha256(path)}"]
        return args

    def _code_specs(self, cfg: RunConfig) -> list[str]:
        """The specs a run of ``cfg`` may build, whose model files it would import."""
        mapping = self._session_mapping()
        return [cfg.model.spec, cfg.model.source, mapping.source_spec if mapping else ""]

    def show_cluster_command(self) -> None:
        """Save the run's config beside the runs and show the torchrun line for each machine of a cluster."""
        try:
            cfg = self.config()
            if self.spec_edit.isModified():  # typed here by the user: theirs to run
                trust_named_specs([cfg.model.spec])
            cfg.validate("the Train panel")
            path = self.write_job_config(cfg)
            line = cluster_command([str(path)], self.nproc_spin.value(), 2, "HOST:29500")
            code = self._trusted_code_args(cfg)
            if code:  # the same model file, byte for byte, must be at the same path on every machine
                line += " " + shlex.join(code)
        except (SppError, OSError) as exc:
            self._error("Cannot write the run's config", str(exc))
            return
        self.cluster_line = line
        box = QMessageBox(QMessageBox.Icon.Information, "Run on a cluster",
                          f"Run this line on every machine (set --nnodes to their number, HOST to the first "
                          f"machine's address; the config, data and weights must be at the same paths there):"
                          f"\n\n{line}", parent=self)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._dialog = box
        box.open()

    def start_run(self, cfg: RunConfig, own_process: bool = False) -> None:
        """Start a run from a ready config (scripts, tests, the editor): in this app's thread, or in a
        process of its own (its config saved beside its run folder, as Start does)."""
        if self._running:
            return
        if own_process:
            self._start_own_process(cfg, self.write_job_config(cfg))
        else:
            self._launch(train, cfg)

    @Slot()
    def start_demo(self, out: str | None = None) -> None:
        """The seed's experiment (quick size) with live curves, in a fresh folder."""
        from ..training.demo import run_demo

        if self._running:
            return
        base = Path(self.out_edit.text() or tempfile.gettempdir())
        folder = out or str(base / time.strftime("demo-%Y%m%d-%H%M%S"))
        if self.isolated:
            self.start_process([sys.executable, "-m", "spp_gui", "demo", "--quick", "--out", folder, "--seed", "0",
                                "--events-jsonl", "--control-stdin"], controlled=True)
        else:
            self._launch(run_demo, folder, True, 0)

    def _launch(self, func, *args) -> None:
        self._control = RunControl()
        self._last_config = args[0] if func is train else None
        worker = Worker(func, *args, control=self._control)
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._thread = self._pool.start(worker)
        self._thread.finished.connect(self._on_thread_finished)
        self._begin("starting...")

    def _begin(self, status: str) -> None:
        """What every run starts with, in this window or as processes."""
        self.last_error, self.last_result = "", None
        self._endings = {}
        self._last_checkpoint = None
        self._t_start, self._paused_total, self._paused_at = time.perf_counter(), 0.0, None
        self._progress_text = ""
        self._running = True
        self.status_label.setText(status)
        self.eta_label.setText("ETA -")
        self._update_buttons()

    @Slot()
    def toggle_pause(self) -> None:
        """Pause a run in this window (it waits before its next step), or resume it."""
        process = self._process if self._process is not None and self._process.controlled else None
        if (self._control is None and process is None) or not self._running:
            return
        if self.paused:
            if self._control is not None:
                self._control.resume()
            elif process is not None and not process.pause(False):
                return
            if self._paused_at is not None:
                self._paused_total += time.perf_counter() - self._paused_at
            self._paused_at = None
            self.status_label.setText(f"resumed: {self._progress_text}" if self._progress_text else "resumed")
            self.eta_label.setText("ETA -")
        else:
            if self._control is not None:
                self._control.pause()
            elif process is not None and not process.pause(True):
                return
            self._paused_at = time.perf_counter()
            self._show_paused()
        self._update_buttons()

    def _show_paused(self) -> None:
        self.status_label.setText(f"Paused: {self._progress_text}" if self._progress_text else "Paused")
        self.eta_label.setText("ETA paused")

    @property
    def paused(self) -> bool:
        if self._process is not None:
            return self._process.paused and self._running
        return self._control is not None and self._control.paused and self._running

    @Slot()
    def stop(self) -> None:
        if self._control is not None:
            self._control.stop()
            self.status_label.setText("stopping after this step...")
        if self._process is not None and self._process.controlled:
            self._process.stop()
            self.status_label.setText("stopping after this step...")
        elif self._process is not None:
            self._process.stop()
            self.status_label.setText(f"stopping: SIGTERM sent; killed if still running in "
                                      f"{self._process.grace_s:g} s")

    # -- events from the worker (GUI thread) ------------------------------------------------
    @Slot(object)
    def _on_event(self, event) -> None:
        if not self._timer.isActive():
            self._arm_timer()
        if isinstance(event, Started):
            self.plots.start_run(event)
        elif isinstance(event, Step):
            self.plots.add_step(event)
            self._latest_step = event  # progress text is drawn by the timer, not per event
            return
        elif isinstance(event, Epoch):
            self.plots.add_epoch(event)
            return
        elif isinstance(event, ENDINGS):
            self._show_progress()  # the last step's numbers first, then the outcome over them
            self._endings[event.run] = event
        elif isinstance(event, CheckpointSaved):
            if event.kind == "last":
                self._last_checkpoint = event
            return
        elif not isinstance(event, Message):
            return
        text = describe(event)
        if text is not None:
            self.status_label.setText(text)
        if isinstance(event, Failed):
            self.last_error = event.message
            if event.kind == "oom" and event.retry_batch_size and self._last_config is not None:
                self._offer_retry(event)
            else:
                self._error("Training stopped", event.message)

    @Slot(object)
    def _on_returned(self, result) -> None:
        self.last_result = result
        summary = getattr(result, "summary", None)
        if callable(summary):
            self.status_label.setText(summary())

    @Slot(object)
    def _on_errored(self, exc) -> None:
        self.last_error = str(exc)
        if isinstance(exc, UntrustedCodeError):  # the model file changed since it was allowed: ask, then rerun
            self.status_label.setText("not started: the model file changed since you allowed it")
            self._dialog = ask_to_run_code(self, exc, self.start)
            return
        if isinstance(exc, SppError):
            self.status_label.setText(f"cannot train: {str(exc).splitlines()[0] if str(exc) else exc!r}")
            self._error("Cannot train", str(exc))
        else:
            self.status_label.setText(f"training crashed (a bug): {exc!r}")
            self._error("Training crashed (a bug)", getattr(exc, "__traceback_text__", repr(exc)))

    @Slot()
    def _on_finished(self) -> None:
        self._running = False
        self._worker = None
        self._control = None
        self._paused_at = None
        self._refresh_plots(everything=True)
        self._timer.stop()
        self.eta_label.setText("")
        self._update_buttons()
        self.run_finished.emit(self.status_label.text())

    @Slot()
    def _on_thread_finished(self) -> None:
        # A retry starts a new run before the last one's thread has ended: that late signal must
        # not drop the reference to the new thread (shutdown would then not wait for it).
        if self.sender() is not None and self.sender() is not self._thread:
            return
        self._thread = None
        self.thread_done.emit()

    def _offer_retry(self, event: Failed) -> None:
        self._last_was_process = self._process is not None  # the retry runs where the run ran
        box = QMessageBox(QMessageBox.Icon.Warning, "Out of memory", event.message, parent=self)
        self._retry_button = box.addButton(f"Retry at batch size {event.retry_batch_size}",
                                           QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        self._retry_batch = event.retry_batch_size
        box.buttonClicked.connect(self._on_retry_answer)
        self._dialog = box
        box.open()

    @Slot(object)
    def _on_retry_answer(self, button) -> None:
        if button is self._retry_button and self._last_config is not None and not self._running:
            cfg = self._last_config.copy()
            cfg.run.batch_size = self._retry_batch or cfg.run.batch_size
            self.batch_spin.setValue(cfg.run.batch_size)
            if self._last_was_process:
                try:
                    path = self.write_job_config(cfg)
                except OSError as exc:
                    self._error("Cannot retry", f"cannot write the run's config: {exc}")
                    return
                self._start_own_process(cfg, path)
            else:
                self._launch(train, cfg)

    def _error(self, title: str, text: str) -> None:
        """A non-blocking message box (never a nested event loop inside a slot)."""
        self.last_error = text
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._dialog = box
        box.open()

    def _update_buttons(self) -> None:
        busy = self._running
        self.start_button.setEnabled(not busy)
        self.demo_button.setEnabled(not busy)
        has_mapping = self._session_mapping() is not None
        self.compare_button.setEnabled(not busy and has_mapping)
        self.compare_button.setToolTip(
            f"Two runs on these folders, one after the other, overlaid: from scratch at lr {SCRATCH_LR:g}, then "
            f"from the session's mapped weights at lr {MAPPED_LR:g}; same epochs, batch and seed; both curves in this window"
            if has_mapping else NO_MAPPING_TIP)
        torchrun = self._process is not None and not self._process.controlled
        self.pause_button.setEnabled(busy and not torchrun)  # torchrun's ranks cannot be paused from here
        self.pause_button.setToolTip("Pause is for runs in this window or their own process; a torchrun job "
                                     "can be stopped" if torchrun else "")
        self.nproc_spin.setEnabled(self.external)
        self.stop_button.setEnabled(busy)
        self.pause_button.setText("Resume" if self.paused else "Pause")

    # -- plots -------------------------------------------------------------------------------
    def _show_progress(self) -> None:
        event, self._latest_step = self._latest_step, None
        if event is None:
            return
        done = event.step / max(event.total_steps, 1)
        self.epoch_bar.setValue(int(1000 * event.epoch_fraction))
        self.run_bar.setValue(int(1000 * done))
        self.epoch_bar.setFormat(f"epoch {event.epoch}: %p%")
        self._progress_text = (f"{event.run}: epoch {event.epoch}, step {event.step}/{event.total_steps}, "
                               f"loss {event.losses[-1]:.4f}, {event.images_per_s:.0f} images/s")
        if self.paused:  # a step that was under way when Pause was pressed
            self._show_paused()
            return
        paused = self._paused_total + (time.perf_counter() - self._paused_at if self._paused_at else 0.0)
        elapsed = time.perf_counter() - self._t_start - paused
        eta = elapsed / done - elapsed if done > 0 else float("nan")
        self.status_label.setText(self._progress_text)
        self.eta_label.setText(f"ETA {_duration(eta)}")

    def _arm_timer(self) -> None:
        """The next refresh: when the plots' drawing budget allows one (never sooner than PLOT_INTERVAL_MS).

        Events only append data; whatever arrived meanwhile is drawn together, so the GUI thread wakes
        for a draw a few times a second rather than polling at 30 Hz.
        """
        if not self.plots.on_screen:  # only the progress text moves; the plots catch up when shown
            self._timer.start(OFF_SCREEN_REFRESH_MS)
            return
        self._timer.start(max(PLOT_INTERVAL_MS, math.ceil(1000 * self.plots.due_in())))

    @Slot()
    def _refresh_plots(self, everything: bool = False) -> None:
        """Progress text, then changed data into the plots (at once when asked); re-armed while data waits.

        Plots off screen (another tab in front, the window minimised) get nothing until they are shown
        again: handing data to pyqtgraph costs the GUI thread as much as the repaint it causes.
        """
        self._show_progress()
        if not (everything or self.plots.on_screen):
            return  # the next event arms the timer again
        self.plots.push(everything)
        if self.plots.dirty and self._running:
            self._arm_timer()

    @Slot()
    def _on_plots_shown(self) -> None:
        """The plots came back on screen: what arrived meanwhile is drawn now, in one push."""
        if self.plots.dirty:
            self._timer.stop()
            self._refresh_plots()

    @property
    def run_names(self) -> list[str]:
        return list(self.plots.runs)

    def run_epochs(self, name: str) -> list[dict[str, float]]:
        return list(self.plots.runs[name].epochs)

    def set_run_visible(self, name: str, visible: bool) -> None:
        """Show or hide one run in every plot (as its check box in the run list does)."""
        self.plots.set_visible(name, visible)

    @Slot()
    def clear_runs(self) -> None:
        if not self._running:
            self.plots.clear_runs()

    def load_runs(self, folder: str | os.PathLike) -> list[str]:
        """Overlay earlier runs read from disk: ``folder`` is one run's folder or a runs folder holding several.
        Runs already shown (by name) are skipped; returns the names added."""
        found = run_folders(folder)
        if not found:
            self._error("No runs there", f"{folder} holds no run folders (folders with a metrics.csv)")
            return []
        added, problems = [], []
        for run_dir in found:
            if run_dir.name in self.plots.runs:
                continue
            try:
                epochs = read_epochs(run_dir)
            except (SppError, OSError, ValueError) as exc:
                problems.append(f"{run_dir}: {exc}")
                continue
            if epochs:
                self.plots.add_finished_run(run_dir.name, epochs)
                added.append(run_dir.name)
        self.plots.push(everything=True)
        if problems:
            self._error("Some runs could not be read", "\n".join(problems))
        self.status_label.setText(f"loaded {len(added)} run(s) from {folder}" if added else
                                  f"no new runs in {folder}")
        return added

    @Slot()
    def _ask_load(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Load runs: a runs folder, or one run's folder",
                                                  self.out_edit.text())
        if folder:
            self.load_runs(folder)

    # -- export ------------------------------------------------------------------------------
    def export_csv(self, path: str | os.PathLike) -> None:
        """Every run's epoch rows in one CSV, with a ``run`` column."""
        self.plots.export_csv(path)

    def export_png(self, path: str | os.PathLike) -> None:
        """The four plots and their legend, at twice their size on screen, as one PNG (written atomically)."""
        self.plots.export_png(path)

    @Slot()
    def _ask_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export curves", "curves.png", "PNG images (*.png)")
        if path:
            self.export_png(path)

    @Slot()
    def _ask_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export metrics", "metrics.csv", "CSV files (*.csv)")
        if path:
            self.export_csv(path)


def _default_nproc() -> int:
    """One process per GPU; two on a machine without one (enough to show the split)."""
    return torch.cuda.device_count() or 2


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"
