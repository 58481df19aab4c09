"""Running a strategy for the session's pair and putting what the user chooses into the mapping."""

from __future__ import annotations

from PySide6.QtCore import QObject

from ..core.strategies import Suggestion, Suggestions
from .editing import EditController
from .jobs import Job, run_suggest, start_job
from .session import MappingSession, Services
from .suggest_panel import SuggestPanel

CLEAN, UNDOABLE = "clean", "undoable"  # how suggestions applied by the strategy itself enter the mapping


class SuggestController(QObject):
    """Suggest runs on a worker for the pair of sides it started with; its result belongs to that pair."""

    def __init__(self, session: MappingSession, services: Services, panel: SuggestPanel, edits: EditController,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.services, self.panel, self.edits = session, services, panel, edits
        self.job: Job | None = None
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
        source, target = session.source, session.target
        mode = CLEAN if initial is True else (initial or None)
        job = Job(f"Suggesting ({strategy})", lambda result: self._suggested(job, result, source, target, mode),
                  lambda exc: self._failed(job, exc), lambda: self._ended(job), self)
        self.job = job
        self.panel.set_running(True)
        self.services.progress.track(job)
        job.ended.connect(lambda: self._ended(job))
        start_job(self.services.pool, job, run_suggest, source.side, target.side, strategy, options)
        return job

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
            self.services.message(f"{result.strategy} mapped {s['mapped']} of {s['targets']} target tensors on open; "
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
