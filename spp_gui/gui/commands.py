"""Undo commands: every user edit of the session is one QUndoCommand calling one owner method."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QUndoCommand

from ..core.mapping import Entry, Mapping
from .document import Loaded, MappingDocument

if TYPE_CHECKING:
    from .session import MappingSession


class ReplaceSides(QUndoCommand):
    """A new source and/or target, with the mapping that goes with them: one undo step."""

    def __init__(self, session: MappingSession, source: Loaded | None, target: Loaded | None,
                 mapping: Mapping, text: str) -> None:
        super().__init__(text)
        doc = session.doc
        self._session = session
        self._new = (source or doc.source, target or doc.target, mapping.copy())
        self._old = (doc.source, doc.target, doc.mapping.copy())

    def redo(self) -> None:
        self._session._install(*self._new)

    def undo(self) -> None:
        self._session._install(*self._old)


class ReplaceEntries(QUndoCommand):
    """Set or remove entries of several target keys at once: one undo step however many keys."""

    def __init__(self, doc: MappingDocument, changes: dict[str, Entry | None], text: str) -> None:
        super().__init__(text)
        self._doc = doc
        self._changes = dict(changes)
        self._previous: dict[str, Entry | None] = {}

    def redo(self) -> None:
        self._previous = self._doc.replace(self._changes)

    def undo(self) -> None:
        self._doc.replace(self._previous)


def map_text(changes: dict[str, Entry | None]) -> str:
    """A short label for the Edit menu ('Map features.0.weight', 'Accept 13 suggestions')."""
    sets = [t for t, e in changes.items() if e is not None]
    removes = [t for t, e in changes.items() if e is None]
    if len(changes) == 1:
        key = next(iter(changes))
        return f"Map {key}" if sets else f"Unmap {key}"
    if not sets:
        return f"Unmap {len(removes)} keys"
    return f"Map {len(sets)} keys"
