"""The editing session's one owner: both sides, the mapping document, its file, one undo stack, suggestions.

Everything that changes what the user sees goes through here: an edit of the mapping or a new side
is a command on :attr:`MappingSession.stack`; opening a session (a mapping file, the start-up pair)
resets the stack explicitly. So ``modified`` is ``not stack.isClean()`` and nothing else, and
undo can take back a replaced side as well as an edit. Controllers and panels get this object (and
a small :class:`Services`), never the main window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QWidget

from ..core.mapping import Entry, Mapping
from ..core.strategies import Suggestion, Suggestions
from .commands import ReplaceEntries, ReplaceSides
from .document import Loaded, MappingDocument
from .progress import ProgressArea
from .workers import WorkerPool


@dataclass
class Services:
    """What a controller may use besides the session: threads, progress, the status line, error dialogs."""

    pool: WorkerPool
    progress: ProgressArea
    message: Callable[[str], None]
    error: Callable[[str, str, str], None]  # title, text, detail
    parent: QWidget  # for dialogs


@dataclass(frozen=True)
class SessionSnapshot:
    """What a training run takes from the session when it starts."""

    target_spec: str
    mapping: Mapping | None  # a copy: later edits do not reach a running job
    source: str | None
    invalid: int = 0


@dataclass
class SuggestionSet:
    """A strategy's result and the pair of sides it was made for: stale as soon as a side changes."""

    result: Suggestions
    source: Loaded
    target: Loaded


class MappingSession(QObject):
    """Owns the session. Signals: ``changed`` (any edit), ``sidesChanged``, ``pathChanged``,
    ``suggestionsChanged``, ``modifiedChanged(bool)``."""

    changed = Signal()
    sidesChanged = Signal()
    pathChanged = Signal()
    suggestionsChanged = Signal()
    modifiedChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.doc = MappingDocument(self)
        self.stack = QUndoStack(self)
        self.path: str | None = None
        self._suggestions: SuggestionSet | None = None
        self._opened: list[Loaded] = []  # sides the stack may still bring back; closed on reset
        self.doc.changed.connect(self.changed)
        self.doc.sidesChanged.connect(self._sides_installed)
        self.stack.cleanChanged.connect(lambda clean: self.modifiedChanged.emit(not clean))

    # -- state ----------------------------------------------------------------------------------
    @property
    def modified(self) -> bool:
        return not self.stack.isClean()

    @property
    def ready(self) -> bool:
        return self.doc.ready

    @property
    def source(self) -> Loaded | None:
        return self.doc.source

    @property
    def target(self) -> Loaded | None:
        return self.doc.target

    @property
    def loaded_source(self) -> Loaded:
        """The source, where one must be open (RuntimeError otherwise: a bug, not a user error)."""
        return self.doc.loaded_source

    @property
    def loaded_target(self) -> Loaded:
        """The target, where one must be open (RuntimeError otherwise: a bug, not a user error)."""
        return self.doc.loaded_target

    @property
    def mapping(self) -> Mapping:
        return self.doc.mapping

    # -- whole sessions (not undoable: they start a new history) -------------------------------------
    def reset(self, source: Loaded | None, target: Loaded | None, mapping: Mapping | None,
              path: str | None) -> None:
        """Start a fresh history on these sides (None keeps the current one) and this mapping."""
        source, target = source or self.doc.source, target or self.doc.target
        self.stack.clear()
        self._install(source, target, mapping.copy() if mapping is not None else Mapping())
        self._forget_closed_sides()
        self.stack.setClean()
        self.set_path(path)

    def set_path(self, path: str | None) -> None:
        if path != self.path:
            self.path = path
            self.pathChanged.emit()

    def mark_saved(self, path: str) -> None:
        self.set_path(path)
        self.stack.setClean()

    # -- undoable changes ---------------------------------------------------------------------------
    def replace_sides(self, source: Loaded | None, target: Loaded | None, mapping: Mapping, text: str) -> None:
        """A new side (or both) and the mapping kept for them, as one undo step."""
        for side in (source, target):
            if side is not None and side not in self._opened:
                self._opened.append(side)
        self.stack.push(ReplaceSides(self, source, target, mapping, text))

    def replace_entries(self, changes: dict[str, Entry | None], text: str) -> bool:
        changes = {t: e for t, e in changes.items() if self.doc.mapping.get(t) != e}
        if not changes:
            return False
        self.stack.push(ReplaceEntries(self.doc, changes, text))
        return True

    def _install(self, source: Loaded | None, target: Loaded | None, mapping: Mapping) -> None:
        for side in (source, target):
            if side is not None and side not in self._opened:
                self._opened.append(side)
        self.doc.set_sides(source, target, mapping.copy())

    def _sides_installed(self) -> None:
        if self._suggestions is not None and not self._suggestions_fit(self._suggestions):
            self._suggestions = None
            self.suggestionsChanged.emit()
        self.sidesChanged.emit()

    def _forget_closed_sides(self) -> None:
        keep = [s for s in (self.doc.source, self.doc.target) if s is not None]
        for side in self._opened:
            if side not in keep and side.source is not None:
                side.source.close()
        self._opened = keep

    def close(self) -> None:
        """The window closes: release every file the session opened."""
        self.stack.clear()
        for side in self._opened:
            if side.source is not None:
                side.source.close()
        self._opened = []

    # -- suggestions ----------------------------------------------------------------------------------
    def _suggestions_fit(self, found: SuggestionSet) -> bool:
        return found.source is self.doc.source and found.target is self.doc.target

    def set_suggestions(self, result: Suggestions | None, source: Loaded | None = None,
                        target: Loaded | None = None) -> bool:
        """Keep a strategy's result for the pair it was made for; False (and dropped) if the pair changed."""
        found = None
        if result is not None:
            source, target = source or self.doc.source, target or self.doc.target
            if source is None or target is None:  # suggestions are made for a pair of open sides
                return False
            found = SuggestionSet(result, source, target)
            if not self._suggestions_fit(found):
                return False
        self._suggestions = found
        self.suggestionsChanged.emit()
        return True

    @property
    def suggestions(self) -> Suggestions | None:
        """The current pair's suggestions, or None (never another pair's)."""
        found = self._suggestions
        return found.result if found is not None and self._suggestions_fit(found) else None

    def in_mapping(self, s: Suggestion) -> bool:
        entry = self.doc.mapping.get(s.target)
        return entry is not None and entry.sources == s.sources and entry.transform == s.transform

    # -- what others read -----------------------------------------------------------------------------
    def snapshot(self) -> SessionSnapshot | None:
        """The target, a copy of the mapping and its source, for a run that starts now."""
        if self.doc.target is None:
            return None
        mapping = self.doc.mapping.copy() if self.doc.ready and len(self.doc.mapping) else None
        source = self.doc.source
        where = None
        if source is not None:
            where = str(source.source.path) if source.source is not None and source.source.path is not None \
                else source.spec
        return SessionSnapshot(self.doc.target.spec, mapping, where if mapping is not None else None,
                               len(self.doc.status.problems))

    def problems(self) -> dict[str, str]:
        """Every entry that cannot be applied, with why: no view may hide one."""
        return dict(self.doc.status.problems)
