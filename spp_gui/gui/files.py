"""Opening sources, targets and mappings, saving mappings and exporting weights.

Loads run as a *plan*: every side it names is loaded on a worker; only when all succeeded does the
session change, so an error or a cancel leaves the window exactly as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ..core.errors import SppError, UnsafePickleError
from ..core.mapping import Mapping
from ..core.strategies import Suggestions
from ..core.trust import UntrustedCodeError, trust_file, trust_named_specs
from . import settings
from .dialogs import CHECKPOINT_FILTER, MAPPING_FILTER, WEIGHTS_FILTER, SpecDialog, error_box
from .document import Loaded
from .jobs import Job, ProgressBridge, export_weights, load_side, run_suggest, start_job

if TYPE_CHECKING:
    from .window import MainWindow


@dataclass
class LoadPlan:
    """What one open gesture asked for, and what has arrived so far."""

    specs: dict[str, str]  # role -> spec
    mapping: Mapping | None = None
    mapping_path: str | None = None
    strategy: str | None = None
    trust: dict[str, bool] = field(default_factory=dict)
    done: dict[str, Loaded] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)
    failed: bool = False
    recovered: bool = False  # a session restored from the autosave: unsaved until saved


class FileController(QObject):
    """The window's file and session actions; long steps go through :func:`start_job`."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.w = window
        self.plan: LoadPlan | None = None
        self.mapping_path: str | None = None
        self.suggest_job: Job | None = None
        self.export_job: Job | None = None
        self.last_report = None

    # -- loading ------------------------------------------------------------------------------
    def open_session(self, source: str | None, target: str | None, mapping_path: str | None = None,
                     strategy: str | None = None, recovered: Mapping | None = None) -> None:
        """Load the named sides (and mapping); apply them together once all have loaded.

        ``recovered`` is a mapping from the autosave: it is applied like an opened file, but the
        session stays marked unsaved, and saving goes to ``mapping_path`` (its original file).
        """
        mapping = recovered
        if mapping_path and recovered is None:
            try:
                mapping = Mapping.load(mapping_path)
            except SppError as exc:
                error_box(self.w, "Cannot open mapping", str(exc))
                return
            source = source or mapping.source_spec or None
            target = target or mapping.target_spec or None
        specs = {role: spec for role, spec in (("source", source), ("target", target)) if spec}
        if self.plan is not None:
            self.cancel_plan()
        self.plan = LoadPlan(specs, mapping, mapping_path, strategy, recovered=recovered is not None)
        if not specs:
            self._finish_plan(self.plan)
            return
        for role, spec in specs.items():
            self._start_side(self.plan, role, spec)

    def _start_side(self, plan: LoadPlan, role: str, spec: str) -> None:
        job = Job(f"Loading {role} {spec}", lambda result, r=role: self._side_loaded(plan, r, result),
                  lambda exc, r=role, s=spec: self._side_failed(plan, r, s, exc),
                  lambda: self._plan_cancelled(plan), self)
        plan.jobs.append(job)
        self.w.progress.track(job)
        start_job(self.w.pool, job, load_side, spec, role, plan.trust.get(role, False),
                  download=self.w.allow_download)

    def _side_loaded(self, plan: LoadPlan, role: str, loaded: Loaded) -> None:
        if plan is not self.plan or plan.failed:
            if loaded.source is not None:
                loaded.source.close()
            return
        plan.done[role] = loaded
        if set(plan.done) == set(plan.specs):
            self._finish_plan(plan)

    def _side_failed(self, plan: LoadPlan, role: str, spec: str, exc: Exception) -> None:
        if plan is not self.plan or plan.failed:
            return
        plan.failed = True
        for job in plan.jobs:
            job.cancel()
        self.plan = None
        if isinstance(exc, UnsafePickleError):
            self._offer_trust(plan, role, spec, exc)
            return
        if isinstance(exc, UntrustedCodeError):
            self._offer_code_trust(plan, exc)
            return
        text = str(exc) if isinstance(exc, SppError) else f"{type(exc).__name__}: {exc}"
        detail = "" if isinstance(exc, SppError) else getattr(exc, "__traceback_text__", "")
        error_box(self.w, f"Cannot open {role}", f"Could not open {spec}:\n\n{text}\n\nThe session is unchanged.",
                  detail)
        self.w.message(f"Could not open {role}: {text}")

    def _offer_trust(self, plan: LoadPlan, role: str, spec: str, exc: Exception) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, "Unsafe checkpoint",
                          f"{exc}\n\nOnly trust files whose origin you know.", QMessageBox.StandardButton.Cancel, self.w)
        box.setObjectName("errorBox")
        trust = box.addButton("Trust this file", QMessageBox.ButtonRole.AcceptRole)
        trust.setObjectName("trustButton")

        def finished(_result: int) -> None:
            if box.clickedButton() is trust:
                retry = LoadPlan(plan.specs, plan.mapping, plan.mapping_path, plan.strategy, {**plan.trust, role: True})
                self.plan = retry
                for r, s in retry.specs.items():
                    self._start_side(retry, r, s)

        box.finished.connect(finished)
        box.open()

    def _offer_code_trust(self, plan: LoadPlan, exc: UntrustedCodeError) -> None:
        """A spec read from a file names Python code: run it only after a yes that names the file."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Run code from this file?",
                          f"Opening this session would run the Python file\n\n{exc.path}\n\n"
                          f"sha256 {exc.sha256}\n\nIt is named by {exc.spec!r}, which you did not type yourself "
                          "(it comes from a mapping or a saved session). Running it can do anything your account "
                          "can do. Run it only if you know where it comes from.",
                          QMessageBox.StandardButton.Cancel, self.w)
        box.setObjectName("codeTrustBox")
        run = box.addButton("Run this file", QMessageBox.ButtonRole.AcceptRole)
        run.setObjectName("runCodeButton")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def finished(_result: int) -> None:
            if box.clickedButton() is not run:
                self.w.message("Not opened: the session names code you did not allow to run")
                return
            trust_file(exc.path, exc.sha256)  # these bytes only: a changed file asks again
            retry = LoadPlan(plan.specs, plan.mapping, plan.mapping_path, plan.strategy, dict(plan.trust),
                             recovered=plan.recovered)
            self.plan = retry
            for r, s in retry.specs.items():
                self._start_side(retry, r, s)

        box.finished.connect(finished)
        box.open()

    def _plan_cancelled(self, plan: LoadPlan) -> None:
        if plan is self.plan:
            self.plan = None
            self.w.message("Loading cancelled; the session is unchanged")

    def cancel_plan(self) -> None:
        if self.plan is not None:
            for job in self.plan.jobs:
                job.cancel()
            self.plan = None

    def _finish_plan(self, plan: LoadPlan) -> None:
        self.plan = None
        mapping = plan.mapping
        fresh = mapping is not None or "target" in plan.done and "source" in plan.done
        if mapping is None and fresh:
            mapping = Mapping()
        self.w.apply_sides(plan.done.get("source"), plan.done.get("target"), mapping)
        if plan.recovered:
            self.mapping_path = plan.mapping_path
            self.w.mark_recovered()
        elif plan.mapping_path:
            self.mapping_path = plan.mapping_path
            settings.add_recent("mappings", plan.mapping_path)
        elif fresh:
            self.mapping_path = None
        for role, spec in plan.specs.items():
            if os.path.exists(spec):
                settings.add_recent(role, spec)
        self.w.refresh_recent()
        if plan.strategy:
            self.run_suggest(plan.strategy, {}, initial=True)

    # -- suggestions ----------------------------------------------------------------------------
    def run_suggest(self, strategy: str, options: dict, initial: bool = False) -> None:
        doc = self.w.doc
        if not doc.ready:
            return
        if self.suggest_job is not None:
            self.suggest_job.cancel()
        job = Job(f"Suggesting ({strategy})", lambda result: self._suggested(job, result, initial),
                  lambda exc: self._suggest_failed(job, exc), lambda: self._suggest_ended(job), self)
        self.suggest_job = job
        self.w.suggest.set_running(True)
        self.w.progress.track(job)
        job.ended.connect(lambda: self._suggest_ended(job))
        start_job(self.w.pool, job, run_suggest, doc.source.side, doc.target.side, strategy, options)

    def _suggest_ended(self, job: Job) -> None:
        if job is self.suggest_job:
            self.suggest_job = None
            self.w.suggest.set_running(False)

    def _suggested(self, job: Job, result: Suggestions, initial: bool) -> None:
        if job is not self.suggest_job:
            return
        self.w.suggest.show_suggestions(result.strategy, result.items)
        if initial and not self.w.doc.mapping.entries:
            mapping = result.to_mapping(self.w.doc.mapping.source_spec, self.w.doc.mapping.target_spec)
            mapping.source_sha256 = self.w.doc.mapping.source_sha256
            self.w.apply_sides(None, None, mapping)
        accepted = len(result.accepted)
        self.w.message(f"{result.strategy}: {accepted} suggestions accepted, {len(result.items) - accepted} candidates")

    def _suggest_failed(self, job: Job, exc: Exception) -> None:
        if job is self.suggest_job:
            error_box(self.w, "Suggestion failed", str(exc), getattr(exc, "__traceback_text__", ""))

    # -- dialogs --------------------------------------------------------------------------------
    def open_side_dialog(self, role: str) -> None:
        doc = self.w.doc
        side = doc.source if role == "source" else doc.target
        dialog = SpecDialog(role, side.spec if side else "", self.w)
        if dialog.exec() == SpecDialog.DialogCode.Accepted and dialog.spec():
            trust_named_specs([dialog.spec()])  # typed or browsed by the user: theirs to run
            self.open_session(**{role: dialog.spec(), "source" if role == "target" else "target": None})

    def open_side_file(self, role: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self.w, f"Open {role} checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self.open_file(role, path)

    def open_file(self, role: str, path: str) -> bool:
        """A checkpoint for one side (also what dropping a file on a tree does); a mapping file opens as such."""
        if path.endswith(".json") and not path.endswith(".index.json"):
            if not self.w.confirm_discard():
                return False
            self.open_session(None, None, mapping_path=path)
            return True
        self.open_session(**{role: path, "source" if role == "target" else "target": None})
        return True

    def open_mapping_dialog(self) -> None:
        if not self.w.confirm_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self.w, "Open mapping", "", MAPPING_FILTER)
        if path:
            self.open_session(None, None, mapping_path=path)

    def save_mapping(self, path: str | None = None) -> bool:
        path = path or self.mapping_path
        if not path:
            return self.save_mapping_as()
        try:
            self.w.doc.mapping.save(path)
        except (OSError, SppError) as exc:
            error_box(self.w, "Cannot save mapping", f"Could not write {path}: {exc}")
            return False
        self.mapping_path = path
        self.w.mark_saved()
        settings.add_recent("mappings", path)
        self.w.refresh_recent()
        self.w.message(f"Saved {len(self.w.doc.mapping)} entries to {path}")
        return True

    def save_mapping_as(self) -> bool:
        start = self.mapping_path or str(Path.cwd() / "mapping.json")
        path, _ = QFileDialog.getSaveFileName(self.w, "Save mapping", start, MAPPING_FILTER)
        return bool(path) and self.save_mapping(path)

    # -- export ---------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        path, chosen = QFileDialog.getSaveFileName(self.w, "Export weights", "mapped.safetensors", WEIGHTS_FILTER)
        if path:
            if not path.endswith((".safetensors", ".pth", ".pt", ".bin")):
                path += ".pth" if "pth" in chosen else ".safetensors"
            self.export(path)

    def export(self, path: str) -> Job | None:
        """Write the mapped target weights to ``path`` on a worker, with progress and cancel."""
        doc = self.w.doc
        if not doc.ready:
            return None
        if doc.status.problems:
            key, why = next(iter(doc.status.problems.items()))
            error_box(self.w, "Cannot export", f"The mapping has {len(doc.status.problems)} invalid entries; "
                      f"fix or remove them first.\n\n{key}: {why}")
            return None
        src = doc.source
        source = str(src.source.path) if src.source is not None and src.source.path is not None else src.spec
        bridge = ProgressBridge(self)
        job = Job(f"Exporting {Path(path).name}", lambda report: self._exported(path, report),
                  lambda exc: self._export_failed(path, exc), lambda: self.w.message("Export cancelled"), self)
        bridge.progressed.connect(job._yielded)
        worker_ref: list = []
        self.export_job = job
        self.w.progress.track(job)
        # the worker gets its own copy, taken here: the user may go on editing while it writes
        start_job(self.w.pool, job, export_weights, doc.mapping.copy(), path, source, doc.target.spec, src.trust_pickle,
                  bridge, worker_ref)
        worker_ref.append(job.worker)
        return job

    def _exported(self, path: str, report) -> None:
        self.last_report = report
        self.w.message(f"Exported {path}: {report.summary()}")

    def _export_failed(self, path: str, exc: Exception) -> None:
        text = str(exc) if isinstance(exc, SppError) else f"{type(exc).__name__}: {exc}"
        error_box(self.w, "Export failed", f"Could not export {path}:\n\n{text}", getattr(exc, "__traceback_text__", ""))
