"""Opening sources, targets and mappings, saving mappings and exporting weights.

Loads run as a *plan*: every side it names (and a mapping file) is read on a worker; only when all
succeeded does the session change, so an error or a cancel leaves the window exactly as it was.
A whole new session (start-up, a mapping file, a restored autosave) resets the session's history;
a side replaced in an open session is one undoable step, after asking what becomes of the mapping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ..core.errors import SppError, UnsafePickleError
from ..core.mapping import Mapping
from ..core.sources import join_source_key, split_source_key
from ..core.strategies import Role
from ..core.trust import UntrustedCodeError, trust_named_specs
from . import settings
from .dialogs import (
    CHECKPOINT_FILTER,
    MAPPING_FILTER,
    WEIGHTS_FILTER,
    ContainerDialog,
    SpecDialog,
    ask_to_run_code,
)
from .document import Loaded
from .jobs import (
    Job,
    export_weights,
    load_mapping,
    load_side,
    start_job,
    write_mapping_export,
)
from .session import MappingSession, Services
from .suggest_control import SuggestController

PROBLEMS_NAMED = 5  # invalid entries a dialog names before it says "and N more"


@dataclass
class LoadPlan:
    """What one open gesture asked for, and what has arrived so far."""

    specs: dict[Role, str]  # role -> spec
    whole: bool  # a new session (history reset) rather than a side replaced in this one
    mapping: Mapping | None = None
    mapping_path: str | None = None
    strategy: str | None = None
    trust: dict[Role, bool] = field(default_factory=dict)
    done: dict[Role, Loaded] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)
    failed: bool = False
    recovered: bool = False  # a session restored from the autosave: unsaved until saved

    def again(self, trust: dict[Role, bool] | None = None) -> LoadPlan:
        """The same request, started afresh (after the user allowed code, or a pickle: then ``trust`` says whose)."""
        return LoadPlan(self.specs, self.whole, self.mapping, self.mapping_path, self.strategy,
                        dict(self.trust) if trust is None else trust, recovered=self.recovered)


def _one_side(role: Role, spec: str) -> tuple[str | None, str | None]:
    """(source, target) for opening ``spec`` as one side, ``role``, of the session."""
    return (spec, None) if role == Role.SOURCE else (None, spec)


def problems_text(problems: dict[str, str]) -> str:
    named = [f"{key}: {why}" for key, why in list(problems.items())[:PROBLEMS_NAMED]]
    more = len(problems) - len(named)
    return "\n".join(named) + (f"\n\u2026and {more} more" if more > 0 else "")


class FileController(QObject):
    """The session's file actions; long steps go through :func:`start_job`."""

    recentChanged = Signal()
    problemsRequested = Signal()  # the user should see the Problems view

    def __init__(self, session: MappingSession, services: Services, suggester: SuggestController,
                 allow_download: bool = False, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.services, self.suggester = session, services, suggester
        self.allow_download = allow_download
        self.plan: LoadPlan | None = None
        self.mapping_job: Job | None = None
        self.last_report = None
        self.last_mapping_export = None
        self.save_hint: str | None = None  # where Save As starts for a restored session
        self._box: QMessageBox | None = None  # the open question, if any (tests answer it)
        self.container_dialog: ContainerDialog | None = None  # "which weights?" while one is open

    # -- loading ------------------------------------------------------------------------------
    def open_session(self, source: str | None, target: str | None, mapping_path: str | None = None,
                     strategy: str | None = None, recovered: Mapping | None = None) -> None:
        """Load the named sides (and mapping); change the session once all have loaded.

        ``recovered`` is a mapping from the autosave: it is restored as one undoable step on top of
        a fresh history, so the session stays unsaved until saved (to ``mapping_path``, its file).
        """
        self.cancel_plan()
        if mapping_path and recovered is None:
            job = Job(f"Reading {Path(mapping_path).name}",
                      lambda m: self._mapping_read(job, m, mapping_path, source, target, strategy),
                      lambda exc: self._mapping_failed(job, mapping_path, exc),
                      lambda: self._mapping_cancelled(job), self)
            self.mapping_job = job
            self.services.progress.track(job)
            start_job(self.services.pool, job, load_mapping, mapping_path)
            return
        self._start_plan(source, target, recovered, mapping_path, strategy, recovered is not None)

    def _mapping_read(self, job: Job, mapping: Mapping, path: str, source: str | None, target: str | None,
                      strategy: str | None) -> None:
        if job is not self.mapping_job:
            return
        self.mapping_job = None
        self._start_plan(source or mapping.source_spec or None, target or mapping.target_spec or None,
                         mapping, path, strategy, False)

    def _mapping_failed(self, job: Job, path: str, exc: Exception) -> None:
        if job is self.mapping_job:
            self.mapping_job = None
            self._error("Cannot open mapping", f"Could not open {path}:\n\n{self._text(exc)}\n\n"
                        "The session is unchanged.", exc)

    def _mapping_cancelled(self, job: Job) -> None:
        if job is self.mapping_job:
            self.mapping_job = None
            self.services.message("Opening the mapping cancelled; the session is unchanged")

    def _start_plan(self, source: str | None, target: str | None, mapping: Mapping | None,
                    mapping_path: str | None, strategy: str | None, recovered: bool) -> None:
        specs = {role: spec for role, spec in ((Role.SOURCE, source), (Role.TARGET, target)) if spec}
        whole = mapping is not None or not self.session.ready or len(specs) == 2
        plan = LoadPlan(specs, whole, mapping, mapping_path, strategy, recovered=recovered)
        self._run_plan(plan)

    def _run_plan(self, plan: LoadPlan) -> None:
        self.plan = plan
        if not plan.specs:
            self._finish_plan(plan)
            return
        for role, spec in plan.specs.items():
            self._start_side(plan, role, spec)

    def _start_side(self, plan: LoadPlan, role: Role, spec: str) -> None:
        job = Job(f"Loading {role} {spec}", lambda result: self._side_loaded(plan, role, result),
                  lambda exc: self._side_failed(plan, role, spec, exc),
                  lambda: self._plan_cancelled(plan), self)
        plan.jobs.append(job)
        self.services.progress.track(job)
        start_job(self.services.pool, job, load_side, spec, role, plan.trust.get(role, False),
                  download=self.allow_download)

    def _side_loaded(self, plan: LoadPlan, role: Role, loaded: Loaded) -> None:
        if plan is not self.plan or plan.failed:
            if loaded.source is not None:
                loaded.source.close()
            return
        if role == Role.SOURCE and self._ask_container(plan, role, loaded):
            return
        plan.done[role] = loaded
        if set(plan.done) == set(plan.specs):
            self._finish_plan(plan)

    def _ask_container(self, plan: LoadPlan, role: Role, loaded: Loaded) -> bool:
        """A checkpoint with several weight containers and none named: ask which (the preferred one chosen).

        True while the question is open; the answer either keeps ``loaded`` or loads the chosen container.
        """
        src = loaded.source
        if src is None or len(src.containers) < 2 or split_source_key(plan.specs[role])[1] is not None:
            return False
        dialog = ContainerDialog(str(src.path), src.containers, src.container_sizes, src.container,
                                 self.services.parent)
        self.container_dialog = dialog

        def finished(result: int) -> None:
            self.container_dialog = None
            dialog.deleteLater()
            if plan is not self.plan or plan.failed:
                src.close()
                return
            if result != ContainerDialog.DialogCode.Accepted:
                src.close()
                self._drop_plan(plan)
                self.services.message(f"Not opened: {src.path}; the session is unchanged")
                return
            key = dialog.chosen()
            if key == src.container:
                plan.done[role] = loaded
                if set(plan.done) == set(plan.specs):
                    self._finish_plan(plan)
                return
            src.close()
            plan.specs[role] = join_source_key(str(src.path), key)
            self._start_side(plan, role, plan.specs[role])

        dialog.finished.connect(finished)
        dialog.open()
        return True

    def _side_failed(self, plan: LoadPlan, role: Role, spec: str, exc: Exception) -> None:
        if plan is not self.plan or plan.failed:
            return
        self._drop_plan(plan)
        if isinstance(exc, UnsafePickleError):
            self._offer_pickle_trust(plan, role, exc)
            return
        if isinstance(exc, UntrustedCodeError):
            self._offer_code_trust(plan, exc)
            return
        text = self._text(exc)
        self._error(f"Cannot open {role}", f"Could not open {spec}:\n\n{text}\n\nThe session is unchanged.", exc)
        self.services.message(f"Could not open {role}: {text}")

    def _drop_plan(self, plan: LoadPlan) -> None:
        plan.failed = True
        for job in plan.jobs:
            job.cancel()
        for loaded in plan.done.values():
            if loaded.source is not None:
                loaded.source.close()
        plan.done.clear()
        if plan is self.plan:
            self.plan = None

    def _ask(self, box: QMessageBox, answered) -> None:
        """Open a question without blocking; ``answered(clicked_button)`` runs once it is answered."""
        self._box = box

        def finished(_result: int) -> None:
            self._box = None
            answered(box.clickedButton())

        box.finished.connect(finished)
        box.open()

    def _offer_pickle_trust(self, plan: LoadPlan, role: Role, exc: Exception) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, "Unsafe checkpoint",
                          f"{exc}\n\nOnly trust files whose origin you know.", QMessageBox.StandardButton.Cancel,
                          self.services.parent)
        box.setObjectName("errorBox")
        trust = box.addButton("Trust this file", QMessageBox.ButtonRole.AcceptRole)
        trust.setObjectName("trustButton")

        def answered(clicked: object) -> None:
            if clicked is trust:
                self._run_plan(plan.again(trust={**plan.trust, role: True}))

        self._ask(box, answered)

    def _offer_code_trust(self, plan: LoadPlan, exc: UntrustedCodeError) -> None:
        """A spec read from a file names Python code: run it only after a yes that names the file."""
        self._box = ask_to_run_code(self.services.parent, exc, lambda: self._run_plan(plan.again()))
        self._box.finished.connect(lambda _r: self._code_answered())

    def _code_answered(self) -> None:
        self._box = None
        if self.plan is None:
            self.services.message("Not opened: the session names code you did not allow to run")

    def _plan_cancelled(self, plan: LoadPlan) -> None:
        if plan is self.plan:
            self._drop_plan(plan)
            self.services.message("Loading cancelled; the session is unchanged")

    def cancel_plan(self) -> None:
        if self.mapping_job is not None:
            self.mapping_job.cancel()
            self.mapping_job = None
        if self.plan is not None:
            self._drop_plan(self.plan)

    @property
    def busy(self) -> bool:
        return self.plan is not None or self.mapping_job is not None

    def _finish_plan(self, plan: LoadPlan) -> None:
        self.plan = None
        source, target = plan.done.get(Role.SOURCE), plan.done.get(Role.TARGET)
        if plan.whole:
            self._open_whole(plan, source, target)
        else:
            self._replace_side(plan, source, target)
        for role, spec in plan.specs.items():
            path = split_source_key(spec)[0]  # a container chosen is asked again when the file is reopened
            if os.path.exists(path):
                settings.add_recent(role, path)
        self.recentChanged.emit()

    def _open_whole(self, plan: LoadPlan, source: Loaded | None, target: Loaded | None) -> None:
        session = self.session
        if plan.recovered:
            # the clean state under the restore is an empty, untitled mapping, so undoing the restore
            # can never make Save write that over the file the session came from
            session.reset(source, target, Mapping(), None)
            session.replace_sides(None, None, plan.mapping or Mapping(), "Restore autosaved session")
            self.save_hint = plan.mapping_path
            self.services.message(f"Restored the autosaved session: {len(session.mapping)} entries, not saved yet"
                                  + (f" (it came from {plan.mapping_path}: Save asks where)" if plan.mapping_path else ""))
            return
        session.reset(source, target, plan.mapping, plan.mapping_path)
        if plan.mapping_path:
            settings.add_recent("mappings", plan.mapping_path)
        problems = session.problems()
        if problems:
            self.services.message(f"{len(problems)} entries of the mapping cannot be applied: see Problems")
            self.problemsRequested.emit()
        if plan.strategy and session.ready:
            self.suggester.run(plan.strategy, {}, initial=True)

    # -- replacing one side -----------------------------------------------------------------------
    def _replace_side(self, plan: LoadPlan, source: Loaded | None, target: Loaded | None) -> None:
        session = self.session
        role = Role.SOURCE if source is not None else Role.TARGET
        opened = source or target
        assert opened is not None  # a side replaced: the plan loaded it
        name = opened.spec
        new_source, new_target = source or session.source, target or session.target
        mapping = session.mapping
        if not len(mapping) or new_source is None or new_target is None:
            session.replace_sides(source, target, Mapping(), f"Open {role} {name}")
            self.services.message(f"Opened {role} {name}" + ("; Suggest (Ctrl+R) maps it" if session.ready else ""))
            return
        status = mapping.status(new_source.side.table, new_target.side.table)
        kept = mapping.copy()
        for key in status.problems:
            kept.remove(key)
        dropped = len(mapping) - len(kept)
        box = QMessageBox(QMessageBox.Icon.Question, f"New {role}: what about the mapping?",
                          f"The mapping has {len(mapping)} entries for the old {role}. With {name}, "
                          f"{len(kept)} of them still fit and {dropped} do not.",
                          QMessageBox.StandardButton.Cancel, self.services.parent)
        box.setObjectName("replaceSideBox")
        strategy = self.suggester.strategy()
        resuggest = box.addButton(f"Suggest again ({strategy})", QMessageBox.ButtonRole.AcceptRole)
        resuggest.setObjectName("resuggestButton")
        keep = box.addButton(f"Keep {len(kept)} that fit" + (f", drop {dropped}" if dropped else ""),
                             QMessageBox.ButtonRole.AcceptRole)
        keep.setObjectName("keepButton")
        keep.setVisible(bool(kept))  # keeping none is clearing
        clear = box.addButton("Clear the mapping", QMessageBox.ButtonRole.DestructiveRole)
        clear.setObjectName("clearButton")
        box.setDefaultButton(resuggest)

        def answered(clicked) -> None:
            if clicked is keep:
                session.replace_sides(source, target, kept, f"Open {role} {name} (kept {len(kept)} entries)")
                self.services.message(f"Opened {role} {name}: kept {len(kept)} entries, dropped {dropped}")
            elif clicked in (resuggest, clear):
                session.replace_sides(source, target, Mapping(), f"Open {role} {name}")
                self.services.message(f"Opened {role} {name}: the mapping was cleared")
                if clicked is resuggest:  # its result is one more undo step, never a new clean state
                    self.suggester.run(strategy, self.suggester.options(), initial="undoable")
            else:
                for side in (source, target):
                    if side is not None and side.source is not None:
                        side.source.close()
                self.services.message(f"Not opened: {name}; the session is unchanged")

        self._ask(box, answered)

    # -- dialogs --------------------------------------------------------------------------------
    def open_side_dialog(self, role: Role) -> None:
        side = self.session.source if role == Role.SOURCE else self.session.target
        dialog = SpecDialog(role, side.spec if side else "", self.services.parent)
        if dialog.exec() == SpecDialog.DialogCode.Accepted and dialog.spec():
            trust_named_specs([dialog.spec()])  # typed or browsed by the user: theirs to run
            self.open_session(*_one_side(role, dialog.spec()))

    def open_side_file(self, role: Role) -> None:
        path, _ = QFileDialog.getOpenFileName(self.services.parent, f"Open {role} checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self.open_file(role, path)

    def open_file(self, role: Role, path: str) -> bool:
        """A checkpoint for one side (also what dropping a file on a tree does); a mapping file opens as such."""
        if path.endswith(".json") and not path.endswith(".index.json"):
            if not self.confirm_discard():
                return False
            self.open_session(None, None, mapping_path=path)
            return True
        self.open_session(*_one_side(role, path))
        return True

    def open_mapping_dialog(self) -> None:
        if not self.confirm_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self.services.parent, "Open mapping", "", MAPPING_FILTER)
        if path:
            self.open_session(None, None, mapping_path=path)

    def confirm_discard(self) -> bool:
        """Ask before unsaved changes are lost: Save, Discard or Cancel. True to go on."""
        if not self.session.modified:
            return True
        box = QMessageBox(QMessageBox.Icon.Question, "Unsaved changes",
                          "The mapping has unsaved changes. Save them?",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self.services.parent)
        box.setObjectName("saveChangesBox")
        answer = box.exec()
        if answer == QMessageBox.StandardButton.Save:
            return self.save_mapping()
        return answer == QMessageBox.StandardButton.Discard

    # -- saving ---------------------------------------------------------------------------------
    def save_mapping(self, path: str | None = None, even_with_problems: bool = False) -> bool:
        path = path or self.session.path
        if not path:
            return self.save_mapping_as()
        problems = self.session.problems()
        if problems and not even_with_problems and not self._save_anyway(problems):
            return False
        try:
            self.session.mapping.save(path)
        except (OSError, SppError) as exc:
            self._error("Cannot save mapping", f"Could not write {path}: {exc}", exc)
            return False
        self.session.mark_saved(path)
        settings.add_recent("mappings", path)
        self.recentChanged.emit()
        self.services.message(f"Saved {len(self.session.mapping)} entries to {path}")
        return True

    def _save_anyway(self, problems: dict[str, str]) -> bool:
        self.problemsRequested.emit()
        box = QMessageBox(QMessageBox.Icon.Warning, "Entries that cannot be applied",
                          f"{len(problems)} entries of this mapping cannot be applied; `spp-gui apply` and "
                          f"Export refuse the file until they are fixed or removed (see Problems):\n\n"
                          f"{problems_text(problems)}", QMessageBox.StandardButton.Cancel, self.services.parent)
        box.setObjectName("saveProblemsBox")
        anyway = box.addButton("Save anyway", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is anyway

    def save_mapping_as(self) -> bool:
        start = self.session.path or self.save_hint or str(Path.cwd() / "mapping.json")
        path, _ = QFileDialog.getSaveFileName(self.services.parent, "Save mapping", start, MAPPING_FILTER)
        return bool(path) and self.save_mapping(path)

    # -- export ---------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        if not self._exportable():
            return
        path, chosen = QFileDialog.getSaveFileName(self.services.parent, "Export weights", "mapped.safetensors",
                                                   WEIGHTS_FILTER)
        if path:
            if not path.endswith((".safetensors", ".pth", ".pt", ".bin")):
                path += ".pth" if "pth" in chosen else ".safetensors"
            self.export(path)

    def _exportable(self) -> bool:
        session = self.session
        if not session.ready:
            self.services.message("Nothing to export: open a source and a target first")
            return False
        problems = session.problems()
        if problems:
            self.problemsRequested.emit()
            self._error("Cannot export", f"{len(problems)} entries of the mapping cannot be applied; fix or "
                        f"remove them first (they are listed under Problems):\n\n{problems_text(problems)}", None)
            return False
        return True

    def export(self, path: str) -> Job | None:
        """Write the mapped target weights to ``path`` on a worker, with progress and cancel."""
        if not self._exportable():
            return None
        session = self.session
        src = session.loaded_source
        source = str(src.source.path) if src.source is not None and src.source.path is not None else src.spec
        if src.source is not None and src.source.container is not None and src.source.path is not None:
            source = join_source_key(source, src.source.container)  # the container the session shows
        job = Job(f"Exporting {Path(path).name}", lambda report: self._exported(path, report),
                  lambda exc: self._export_failed(path, exc), lambda: self.services.message("Export cancelled"), self)
        self.services.progress.track(job)
        # the worker gets its own copy, taken here: the user may go on editing while it writes
        start_job(self.services.pool, job, export_weights, session.mapping.copy(), path, source,
                  session.loaded_target.spec, src.pickle_trust)
        return job

    def _exported(self, path: str, report) -> None:
        self.last_report = report
        self.services.message(f"Exported {path}: {report.summary()}")

    def _export_failed(self, path: str, exc: Exception) -> None:
        if isinstance(exc, UntrustedCodeError):  # the model file changed since it was allowed
            ask_to_run_code(self.services.parent, exc, lambda: self.export(path))
            return
        self._error("Export failed", f"Could not export {path}:\n\n{self._text(exc)}", exc)

    # -- the mapping for other loaders --------------------------------------------------------------
    def export_mapping_dialog(self, fmt: str) -> None:
        suffix = {"python": "remap.py", "hf-key-mapping": "key_mapping.py", "mmengine-revise-keys": "revise_keys.py"}
        if not self._exportable():
            return
        start = str(Path(self.session.path or Path.cwd() / "mapping.json").with_name(suffix.get(fmt, "mapping.py")))
        path, _ = QFileDialog.getSaveFileName(self.services.parent, f"Export mapping as {fmt}", start,
                                              "Python (*.py);;All files (*)")
        if path:
            self.export_mapping_as(fmt, path)

    def export_mapping_as(self, fmt: str, path: str) -> Job | None:
        """Write the mapping as a snippet another loader uses (python, HF key_mapping, MMEngine revise_keys)."""
        if not self._exportable():
            return None
        session = self.session
        job = Job(f"Exporting the mapping as {fmt}", lambda result: self._mapping_exported(fmt, path, result),
                  lambda exc: self._error("Export failed", f"Could not export the mapping as {fmt}:\n\n"
                                          f"{self._text(exc)}", exc),
                  lambda: self.services.message("Export cancelled"), self)
        self.services.progress.track(job)
        start_job(self.services.pool, job, write_mapping_export, session.mapping.copy(), fmt,
                  list(session.loaded_source.side.table), list(session.loaded_target.side.table), path)
        return job

    def _mapping_exported(self, fmt: str, path: str, result) -> None:
        self.last_mapping_export = result
        if result.not_expressed:
            self._error(f"Exported as {fmt}, with entries left out",
                        f"Wrote {path}. {len(result.not_expressed)} entries cannot be expressed as {fmt} "
                        "(export as python for those):\n\n" + "\n".join(result.not_expressed[:PROBLEMS_NAMED])
                        + (f"\n\u2026and {len(result.not_expressed) - PROBLEMS_NAMED} more"
                           if len(result.not_expressed) > PROBLEMS_NAMED else ""), None)
        self.services.message(f"Exported the mapping as {fmt} to {path}")

    # -- messages -------------------------------------------------------------------------------
    @staticmethod
    def _text(exc: Exception) -> str:
        return str(exc) if isinstance(exc, SppError) else f"{type(exc).__name__}: {exc}"

    def _error(self, title: str, text: str, exc: Exception | None) -> None:
        detail = "" if exc is None or isinstance(exc, SppError) else getattr(exc, "__traceback_text__", "")
        self.services.error(title, text, detail)
