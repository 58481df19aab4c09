"""The Train panel: configure a run from the mapping session, run the engine off the GUI thread, plot live.

The engine (``spp_gui.training``) yields events in a worker thread; they arrive here through
signals received by ``@Slot`` methods of this GUI-thread object. Events only append to per-run
arrays; a timer (<= 30 Hz) pushes changed arrays into plot items that were created once per run.
A run can instead go to torchrun as processes of its own (``ProcessRun``): its rank 0 prints the
same events as JSON lines, which arrive in the same slot and the same curves.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

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
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import SppError
from ..core.mapping import Mapping
from ..core.trust import code_files, is_trusted, trust_named_specs
from ..training.config import OPTIMIZERS, SCHEDULERS, RunConfig
from ..training.data import scan_dataset, split_info_text
from ..training.distributed import cluster_command, launch_command, per_rank_batch
from ..training.engine import Cancelled, Epoch, Failed, Finished, RunControl, Started, Step, train
from .process_run import ProcessRun
from .run_plots import RunPlots
from .workers import Worker, WorkerPool

PLOT_INTERVAL_MS = 34  # <= 30 Hz
IN_APP, TORCHRUN = "this window", "torchrun processes"


class TrainPanel(QWidget):
    """Configure, start, pause, stop and watch training runs; overlay several runs for comparison."""

    run_finished = Signal(str)  # the status line of a run that ended, whatever the outcome
    thread_done = Signal()  # the run's thread has ended (after run_finished)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pool = WorkerPool(self)
        self._control: RunControl | None = None
        self._mapping: Mapping | None = None
        self._source: str | None = None
        self._last_config: RunConfig | None = None
        self._t_start = 0.0
        self._paused_total = 0.0
        self._paused_at: float | None = None
        self.last_error = ""
        self.last_result = None
        self._thread: QThread | None = None
        self._latest_step: Step | None = None
        self._worker: Worker | None = None
        self._process: ProcessRun | None = None
        self._running = False  # a run's work is in progress (its thread may outlive it by a moment)
        self._build()
        self._timer = QTimer(self)
        self._timer.setInterval(PLOT_INTERVAL_MS)
        self._timer.setSingleShot(True)  # armed by new data only: an idle panel never wakes up
        self._timer.timeout.connect(self._refresh_plots)
        self._update_buttons()

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        defaults = RunConfig()
        form = QFormLayout()
        self.spec_edit = QLineEdit(defaults.model.spec)
        self.mapping_label = QLabel("from scratch (no mapping session)")
        self.train_edit, self.val_edit = QLineEdit(), QLineEdit()
        self.train_info, self.val_info = QLabel("-"), QLabel("-")
        for edit in (self.train_edit, self.val_edit):
            edit.editingFinished.connect(self.validate_dataset)
        form.addRow("Target model", self.spec_edit)
        form.addRow("Weights", self.mapping_label)
        form.addRow("Train folder", self._with_browse(self.train_edit))
        form.addRow("", self.train_info)
        form.addRow("Val folder", self._with_browse(self.val_edit))
        form.addRow("", self.val_info)
        self.out_edit = QLineEdit(str(Path(defaults.run.out).resolve()))
        form.addRow("Runs folder", self._with_browse(self.out_edit))

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
        for i, (label, widget) in enumerate(cells):
            hyper.addWidget(QLabel(label), i // 2, (i % 2) * 2)
            hyper.addWidget(widget, i // 2, (i % 2) * 2 + 1)
        hyper.addWidget(self.freeze_check, 4, 0, 1, 4)
        self.launch_box = QComboBox()
        self.launch_box.addItems([IN_APP, TORCHRUN])
        self.launch_box.setToolTip("torchrun: the run goes to separate processes (one per GPU, gloo on the CPU) "
                                   "with DistributedDataParallel; its curves still show here")
        self.nproc_spin = self._int_spin(_default_nproc(), 1, 256)
        self.nproc_spin.setToolTip("processes for torchrun; run.batch_size is the global batch, split across them")
        self.launch_box.currentIndexChanged.connect(self._update_buttons)
        hyper.addWidget(QLabel("run in"), 5, 0)
        hyper.addWidget(self.launch_box, 5, 1)
        hyper.addWidget(QLabel("processes"), 5, 2)
        hyper.addWidget(self.nproc_spin, 5, 3)

        buttons, tools = QHBoxLayout(), QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.demo_button = QPushButton("Run demo")
        self.demo_button.setToolTip("The seed's experiment on drawn images: scratch vs mapped-pretrained (quick size)")
        self.png_button = QPushButton("Export PNG")
        self.csv_button = QPushButton("Export CSV")
        self.clear_button = QPushButton("Clear plots")
        self.cluster_button = QPushButton("Cluster command...")
        self.cluster_button.setToolTip("Save this run's config and show the torchrun line to run on each machine")
        for button, slot in ((self.start_button, self.start), (self.pause_button, self.toggle_pause),
                             (self.stop_button, self.stop), (self.demo_button, self.start_demo),
                             (self.cluster_button, self.show_cluster_command),
                             (self.png_button, self._ask_png), (self.csv_button, self._ask_csv),
                             (self.clear_button, self.clear_runs)):
            button.clicked.connect(slot)
            (buttons if button in (self.start_button, self.pause_button, self.stop_button, self.demo_button)
             else tools).addWidget(button)
        buttons.addStretch(1)
        tools.addStretch(1)

        progress = QGridLayout()
        self.epoch_bar, self.run_bar = QProgressBar(), QProgressBar()
        for bar in (self.epoch_bar, self.run_bar):
            bar.setRange(0, 1000)
            bar.setValue(0)
        self.epoch_bar.setFormat("epoch %p%")
        self.run_bar.setFormat("run %p%")
        self.status_label = QLabel("idle")
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Changing text must not re-lay-out the panel (and repaint every plot) several times a second.
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        progress.addWidget(self.epoch_bar, 0, 0)
        progress.addWidget(self.run_bar, 0, 1)
        progress.addWidget(self.status_label, 1, 0, 1, 2)

        self.plots = RunPlots()

        # the set-up on the left, the run's progress and curves on the right, at full height
        setup = QWidget()
        left = QVBoxLayout(setup)
        left.setContentsMargins(0, 0, 0, 0)
        for part in (form, hyper, buttons, tools):
            left.addLayout(part)
        left.addStretch(1)
        watch = QWidget()
        right = QVBoxLayout(watch)
        right.setContentsMargins(0, 0, 0, 0)
        right.addLayout(progress)
        right.addWidget(self.plots, 1)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(setup)
        self.splitter.addWidget(watch)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

    def _with_browse(self, edit: QLineEdit) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        button = QPushButton("Browse...")
        button.setProperty("target_edit", edit.objectName())
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

    # -- the editor's interface --------------------------------------------------------------
    def set_session(self, target_spec: str, mapping: Mapping | None, source: str | None) -> None:
        """The editor's mapping session changed: train this target, from these weights or from scratch."""
        self.spec_edit.setText(target_spec)
        self._mapping, self._source = (mapping.copy() if mapping is not None else None), source
        if mapping is None or not len(mapping):
            self.mapping_label.setText("from scratch (no mapping session)")
        else:
            self.mapping_label.setText(f"mapped: {len(mapping)} tensors from {source or mapping.source_spec}")

    @property
    def busy(self) -> bool:
        """True while a run is in progress or its thread or process has not ended yet."""
        return self._running or self._thread is not None or self._process is not None

    @property
    def external(self) -> bool:
        """The form asks for torchrun processes rather than this window's worker thread."""
        return self.launch_box.currentText() == TORCHRUN

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Stop any run and wait for its thread or process (for the window's closeEvent); leaves nothing running."""
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

    def ask_to_stop(self) -> bool:
        """For a window's closeEvent: True when nothing runs or the user agrees to stop the run."""
        if not self.busy:
            return True
        answer = QMessageBox.question(self, "Training is running",
                                      "A training run is in progress. Stop it and close? "
                                      "(Its last checkpoint and metrics are kept.)")
        return answer == QMessageBox.StandardButton.Yes

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
            self.validate_dataset()

    @Slot()
    def validate_dataset(self) -> bool:
        """Scan both folders; show classes and image counts, or what is wrong."""
        if not self.train_edit.text() or not self.val_edit.text():
            self.train_info.setText("pick a train folder (one subfolder of images per class)")
            self.val_info.setText("pick a val folder with the same class subfolders")
            return False
        try:
            train_split, val_split = scan_dataset(self.train_edit.text(), self.val_edit.text())
        except SppError as exc:
            self.train_info.setText(f"<span style='color:#b00'>{exc}</span>")
            self.val_info.setText("")
            return False
        self.train_info.setText(split_info_text(train_split))
        self.val_info.setText(split_info_text(val_split))
        return True

    def config(self) -> RunConfig:
        """The run config the form describes (the seed's defaults where the form says nothing)."""
        cfg = RunConfig()
        cfg.model.spec = self.spec_edit.text().strip()
        cfg.data.train, cfg.data.val = self.train_edit.text(), self.val_edit.text()
        cfg.data.image_size, cfg.data.workers = self.size_spin.value(), self.workers_spin.value()
        cfg.optim.optimizer, cfg.optim.scheduler = self.optimizer_box.currentText(), self.scheduler_box.currentText()
        cfg.optim.lr, cfg.optim.loaded_lr = self.lr_spin.value(), self.loaded_lr_spin.value()
        cfg.optim.freeze_loaded = self.freeze_check.isChecked()
        cfg.run.epochs, cfg.run.batch_size = self.epochs_spin.value(), self.batch_spin.value()
        cfg.run.out = self.out_edit.text() or "runs"
        cfg.run.name = ("pretrained" if self._mapping is not None and len(self._mapping) else "scratch") + \
            time.strftime("-%H%M%S")
        if self._mapping is not None and len(self._mapping):
            path = Path(cfg.run.out) / f"{cfg.run.name}-mapping.json"  # one per run: a saved job keeps its own
            self._mapping.save(path)
            cfg.model.mapping = str(path)
            cfg.model.source = self._source or ""
        return cfg

    # -- running -----------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        if self._running:
            return
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
                path = self.write_job_config(cfg)
        except SppError as exc:
            self._error("Cannot start", str(exc))
            return
        except OSError as exc:
            self._error("Cannot start", f"cannot write in the runs folder {self.out_edit.text() or 'runs'}: {exc}")
            return
        if self.external:
            logs = path.parent / "torchrun-logs"
            # the processes may run the model code this window was allowed to run, and no other
            code = code_files([cfg.model.spec, cfg.model.source, self._mapping.source_spec if self._mapping else ""])
            trusted = bool(code) and all(is_trusted(p) for p in code)
            extra = ["--events-jsonl", *(["--trust-code"] if trusted else [])]
            self.start_process(launch_command([str(path)], self.nproc_spin.value(), extra, tee=True,
                                              log_dir=str(logs)), logs=str(logs))
        else:
            self._launch(train, cfg)

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

    def start_process(self, command: list[str], logs: str | None = None) -> None:
        """Run a torchrun job (``--tee 3 ... spp_gui train --events-jsonl``); its rank 0 feeds the curves."""
        if self.busy:
            return
        process = ProcessRun(command, parent=self, logs=logs)
        process.event.connect(self._on_event)
        process.ended.connect(self._on_process_ended)
        self._control, self._last_config = None, None
        self._process = process
        process.start()
        self._begin(f"starting {' '.join(command[2:6])} ...")

    @Slot(int, str)
    def _on_process_ended(self, code: int, message: str) -> None:
        if message:
            self.status_label.setText(message.splitlines()[0])
            if message.startswith("stopped"):
                self.last_error = message
            else:
                self._error("The training processes failed", message)
        if self._process is not None:
            self._process.deleteLater()
        self._process = None
        self._on_finished()
        self.thread_done.emit()

    @Slot()
    def show_cluster_command(self) -> None:
        """Save the run's config beside the runs and show the torchrun line for each machine of a cluster."""
        try:
            cfg = self.config()
            if self.spec_edit.isModified():  # typed here by the user: theirs to run
                trust_named_specs([cfg.model.spec])
            cfg.validate("the Train panel")
            path = self.write_job_config(cfg)
            line = cluster_command([str(path)], self.nproc_spin.value(), 2, "HOST:29500")
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

    def start_run(self, cfg: RunConfig) -> None:
        """Start a run from a ready config (scripts, tests, the editor)."""
        if not self._running:
            self._launch(train, cfg)

    @Slot()
    def start_demo(self, out: str | None = None) -> None:
        """The seed's experiment (quick size) with live curves, in a fresh folder."""
        from ..training.demo import run_demo

        if self._running:
            return
        base = Path(self.out_edit.text() or tempfile.gettempdir())
        folder = out or str(base / time.strftime("demo-%Y%m%d-%H%M%S"))
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
        self._t_start, self._paused_total, self._paused_at = time.perf_counter(), 0.0, None
        self._running = True
        self.status_label.setText(status)
        self._update_buttons()

    @Slot()
    def toggle_pause(self) -> None:
        if self._control is None or not self._running:
            return
        if self._control.paused:
            self._control.resume()
            if self._paused_at is not None:
                self._paused_total += time.perf_counter() - self._paused_at
            self._paused_at = None
            self.status_label.setText("resumed")
        else:
            self._control.pause()
            self._paused_at = time.perf_counter()
            self.status_label.setText("paused")
        self._update_buttons()

    @property
    def paused(self) -> bool:
        return self._control is not None and self._control.paused and self._running

    @Slot()
    def stop(self) -> None:
        if self._control is not None:
            self._control.stop()
            self.status_label.setText("stopping after this step...")
        if self._process is not None:
            self._process.stop()
            self.status_label.setText(f"stopping: SIGTERM sent; killed if still running in "
                                      f"{self._process.grace_s:g} s")

    # -- events from the worker (GUI thread) ------------------------------------------------
    @Slot(object)
    def _on_event(self, event) -> None:
        if not self._timer.isActive():
            self._timer.start()
        if isinstance(event, Started):
            self.plots.curves(event.run).reset()
            self.status_label.setText(f"{event.run}: {event.device}, {len(event.classes)} classes, {event.n_train} "
                                      f"train / {event.n_val} val images, {event.loaded}")
        elif isinstance(event, Step):
            self.plots.add_step(event)
            self._latest_step = event  # progress text is drawn by the timer, not per event
        elif isinstance(event, Epoch):
            self.plots.add_epoch(event)
        elif isinstance(event, (Finished, Cancelled, Failed)):
            self._show_progress()  # the last step's numbers first, then the outcome over them
        if isinstance(event, Finished):
            self.status_label.setText(f"{event.run}: done, best val acc {event.best_val_acc:.3f} "
                                      f"(epoch {event.best_epoch}), final {event.final_val_acc:.3f}")
        elif isinstance(event, Cancelled):
            self.status_label.setText(f"{event.run}: stopped at epoch {event.epoch}, step {event.step}")
        elif isinstance(event, Failed):
            self.last_error = event.message
            self.status_label.setText(f"{event.run}: failed: {event.message}")
            if event.kind == "oom" and event.retry_batch_size and self._last_config is not None:
                self._offer_retry(event)
            else:
                self._error("Training stopped", event.message)
        elif hasattr(event, "message"):
            self.status_label.setText(event.message)

    @Slot(object)
    def _on_returned(self, result) -> None:
        self.last_result = result
        lines = getattr(result, "lines", None)
        if callable(lines):
            self.status_label.setText("demo: " + " | ".join(line.split("   /")[0] for line in lines()))

    @Slot(object)
    def _on_errored(self, exc) -> None:
        self.last_error = str(exc)
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
        self._refresh_plots(everything=True)
        self._timer.stop()
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
            cfg.run.batch_size = self._retry_batch
            self.batch_spin.setValue(self._retry_batch)
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
        self.pause_button.setEnabled(busy and self._process is None)  # a process cannot be paused from here
        self.pause_button.setToolTip("Pause is for runs in this window; a torchrun job can be stopped"
                                     if self._process is not None else "")
        self.nproc_spin.setEnabled(self.external)
        self.stop_button.setEnabled(busy)
        self.pause_button.setText("Resume" if self.paused else "Pause")

    # -- plots -------------------------------------------------------------------------------
    def _show_progress(self) -> None:
        event, self._latest_step = self._latest_step, None
        if event is None:
            return
        done = event.step / max(event.total_steps, 1)
        paused = self._paused_total + (time.perf_counter() - self._paused_at if self._paused_at else 0.0)
        elapsed = time.perf_counter() - self._t_start - paused
        eta = elapsed / done - elapsed if done > 0 else float("nan")
        self.epoch_bar.setValue(int(1000 * event.epoch_fraction))
        self.run_bar.setValue(int(1000 * done))
        self.epoch_bar.setFormat(f"epoch {event.epoch}: %p%")
        self.status_label.setText(f"{event.run}: epoch {event.epoch}, step {event.step}/{event.total_steps}, "
                                  f"loss {event.losses[-1]:.4f}, {event.images_per_s:.0f} images/s, "
                                  f"ETA {_duration(eta)}")

    @Slot()
    def _refresh_plots(self, everything: bool = False) -> None:
        """Progress text, then changed data into one plot (all of them when asked); re-armed while data waits."""
        self._show_progress()
        self.plots.push(everything)
        if self.plots.dirty and self._running:
            self._timer.start()

    @property
    def run_names(self) -> list[str]:
        return list(self.plots.runs)

    def run_epochs(self, name: str) -> list[dict[str, float]]:
        return list(self.plots.runs[name].epochs)

    @Slot()
    def clear_runs(self) -> None:
        if not self._running:
            self.plots.clear_runs()

    # -- export ------------------------------------------------------------------------------
    def export_csv(self, path: str | os.PathLike) -> None:
        """Every run's epoch rows in one CSV, with a ``run`` column."""
        self.plots.export_csv(path)

    def export_png(self, path: str | os.PathLike) -> None:
        """The four plots as they are on screen, as one PNG (written atomically)."""
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
