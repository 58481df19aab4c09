"""Running a strategy for the session's pair and putting what the user chooses into the mapping."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from PySide6.QtCore import QObject

from ..core.auto_verify import verify_auto_steps, why_not_runnable
from ..core.strategies import Side, Suggestion, Suggestions, suggest
from .editing import EditController
from .jobs import Job, run_suggest, start_job
from .session import MappingSession, Services
from .suggest_panel import SuggestPanel
from .verify_view import DEFAULT_INPUT_SHAPE

CLEAN, UNDOABLE = "clean", "undoable"  # how suggestions applied by the strategy itself enter the mapping


def suggest_and_verify(source: Side, target: Side, strategy: str, options: dict[str, Any],
                       input_shape: tuple[int, ...]) -> Generator[tuple[int, int, str], None, Suggestions]:
    """Suggest, then check the accepted pairs by running both models (core/auto_verify.py); the worker
    cancels between the steps. The sides are copies without their open files: the models are built
    afresh from the specs here, so the worker never reads what the GUI thread holds."""
    yield 0, 0, f"Suggesting ({strategy})"
    result = suggest(source, target, strategy, **options)
    steps = verify_auto_steps(result.items, Side(source.table, source.classes, source.spec),
                              Side(target.table, target.classes, target.spec), input_shape)
    try:
        while True:
            yield 0, 0, "Verify: " + next(steps)
    except StopIteration as stop:
        runs = stop.value
    finally:
        steps.close()
    return Suggestions(result.strategy, result.items, [*result.notes, runs.summary()])


class SuggestController(QObject):
    """Suggest runs on a worker for the pair of sides it started with; its result belongs to that pair."""

    def __init__(self, session: MappingSession, services: Services, panel: SuggestPanel, edits: EditController,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.services, self.panel, self.edits = session, services, panel, edits
        self.job: Job | None = None
        #: the batch verify runs on (the Verify view's default: an image model's)
        self.input_shape: tuple[int, ...] = DEFAULT_INPUT_SHAPE
        panel.runRequested.connect(self.run)
        panel.cancelRequested.connect(self.cancel)
        panel.acceptRequested.connect(self.apply)

    def strategy(self) -> str:
        return self.panel.strategy.currentText()

    def options(self) -> dict:
        return self.panel.options()

    @property
    def busy(self) -> bool:
        return self.job is not None

    def run(self, strategy: str, options: dict, initial: bool | str = False) -> Job | None:
        """Suggest for the current pair. ``initial``: also put what the strategy accepted into an empty
        mapping, as part of a freshly opened session (``True``/"clean") or as one undo step ("undoable")."""
        session = self.session
        if not session.ready:
            self.services.message("Open a source and a target first")
            return None
        self.cancel()
        source, target = session.loaded_source, session.loaded_target  # ready: both are open
        mode = CLEAN if initial is True else (initial or None)
        job = Job(f"Suggesting ({strategy})", lambda result: self._suggested(job, result, source, target, mode),
                  lambda exc: self._failed(job, exc), lambda: self._ended(job), self)
        self.job = job
        self.panel.set_running(True)
        self.services.progress.track(job)
        job.ended.connect(lambda: self._ended(job))
        if self.verifies(strategy, source.side, target.side, mode):
            start_job(self.services.pool, job, suggest_and_verify, source.side, target.side, strategy, options,
                      self.input_shape)
        else:
            start_job(self.services.pool, job, run_suggest, source.side, target.side, strategy, options)
        return job

    def verifies(self, strategy: str, source: Side, target: Side, mode: str | None = None) -> bool:
        """Whether this Suggest checks auto's pairs by running both models: asked for in the panel, both
        sides can run, and not the suggest that is part of opening a session (opening stays quick)."""
        return (strategy == "auto" and mode is None and self.panel.verify_box.isChecked()
                and why_not_runnable(source, target) is None)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _ended(self, job: Job) -> None:
        if job is self.job:
            self.job = None
            self.panel.set_running(False)

    def _suggested(self, job: Job, result: Suggestions, source, target, mode: str | None) -> None:
        if job is not self.job:
            return
        session = self.session
        if not session.set_suggestions(result, source, target):
            self.services.message("Suggestions dropped: a side changed while they were computed; suggest again")
            return
        accepted = [s for s in result.accepted if s.source]
        candidates = len(result.items) - len(accepted)
        if not result.items:
            self.services.message(f"{result.strategy} found nothing to map from {source.spec} to {target.spec} "
                                  "(unrelated architectures?); map keys by hand or try another strategy")
            return
        if mode is not None and not session.mapping.entries and accepted:
            if mode == CLEAN and session.stack.count() == 0:  # part of opening the session: its saved state
                mapping = result.to_mapping(session.mapping.source_spec, session.mapping.target_spec)
                mapping.source_sha256 = session.mapping.source_sha256
                mapping.candidates = []
                session.reset(None, None, mapping, session.path)
            else:
                self.edits.accept(accepted, f"Apply {len(accepted)} suggestions ({result.strategy})")
            s = session.doc.summary()
            self.services.message(f"{result.strategy} mapped {s.mapped} of {s.targets} target tensors on open; "
                                  f"{candidates} candidates to review under Auto-suggest")
            return
        will = len(self.panel.will_apply())
        self.services.message(f"{result.strategy}: {will} suggestions will apply, {len(result.items) - will} "
                              "candidates; nothing is in the mapping until you press Apply")

    def _failed(self, job: Job, exc: Exception) -> None:
        if job is self.job:
            self.services.error("Suggestion failed", str(exc), getattr(exc, "__traceback_text__", ""))

    def apply(self, suggestions: list[Suggestion]) -> bool:
        if self.session.suggestions is None and suggestions:
            self.services.message("Those suggestions were made for another pair of sides; suggest again")
            return False
        return self.edits.accept(suggestions)
