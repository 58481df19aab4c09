"""The mapping document: one source, one target, one mapping, and the statuses derived from them.

Owned by :class:`~spp_gui.gui.session.MappingSession`. A QObject only to announce changes; every
mapping edit goes through :meth:`replace`, the single method the undo commands call, so undo/redo
and the views can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Signal

from ..core.mapping import UNMAPPED, Entry, Mapping, MappingStatus, MappingSummary
from ..core.sources import Source
from ..core.strategies import Side
from ..core.tree import ParamTree


@dataclass
class Loaded:
    """One side, fully prepared off the GUI thread: the key table, its tree and where it came from."""

    side: Side
    tree: ParamTree
    spec: str
    notes: list[str] = field(default_factory=list)
    source: Source | None = None
    trust_pickle: bool = False
    sha256: str | None = None  # of the file, recorded in the mapping

    @property
    def pickle_trust(self) -> str | None:
        """The digest of the bytes the user trusted to unpickle in full, or None: later jobs (export,
        verify) reopen the file and unpickle it in full only while it still has these bytes."""
        return self.sha256 if self.trust_pickle else None


class MappingDocument(QObject):
    """Holds the session; emits ``changed`` after every edit and ``sidesChanged`` on a new side."""

    changed = Signal()
    sidesChanged = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.source: Loaded | None = None
        self.target: Loaded | None = None
        self.mapping = Mapping()
        self.status: MappingStatus = MappingStatus({}, {}, {})

    # -- sides --------------------------------------------------------------------------------
    def set_sides(self, source: Loaded | None, target: Loaded | None, mapping: Mapping | None = None) -> None:
        """Swap in new sides (and optionally a mapping). Only :class:`MappingSession` calls this, from a
        command or a reset; it also decides when a side's file is closed (undo may bring it back)."""
        if source is not None:
            self.source = source
        if target is not None:
            self.target = target
        if mapping is not None:
            self.mapping = mapping
        if self.source is not None:
            self.mapping.source_spec = self.source.spec
            self.mapping.source_sha256 = self.source.sha256
        if self.target is not None:
            self.mapping.target_spec = self.target.spec
        self._recompute()
        self.sidesChanged.emit()
        self.changed.emit()

    @property
    def ready(self) -> bool:
        return self.source is not None and self.target is not None

    @property
    def loaded_source(self) -> Loaded:
        """The source side, for code that only runs once one is open (a bug otherwise, not a user error)."""
        if self.source is None:
            raise RuntimeError("no source is open")
        return self.source

    @property
    def loaded_target(self) -> Loaded:
        """The target side, for code that only runs once one is open (a bug otherwise, not a user error)."""
        if self.target is None:
            raise RuntimeError("no target is open")
        return self.target

    # -- the one edit method ------------------------------------------------------------------
    def replace(self, changes: dict[str, Entry | None]) -> dict[str, Entry | None]:
        """Set (Entry) or remove (None) the entry of each target key; return what was there."""
        previous: dict[str, Entry | None] = {}
        for target, entry in changes.items():
            previous[target] = self.mapping.get(target)
            if entry is None:
                self.mapping.remove(target)
            else:
                self.mapping.set(entry)
        self._recompute()
        self.changed.emit()
        return previous

    def _recompute(self) -> None:
        if self.source is not None and self.target is not None:
            self.status = self.mapping.status(self.source.side.table, self.target.side.table)
        else:
            self.status = MappingStatus({}, {}, {})

    # -- questions the views ask --------------------------------------------------------------
    def target_status(self, key: str) -> str:
        return self.status.target.get(key, UNMAPPED)

    def source_status(self, key: str) -> str:
        """A used source key takes the status of the (first) target it fills."""
        users = self.status.source_used_by.get(key)
        if not users:
            return "unused"
        return self.status.target.get(users[0], UNMAPPED)

    def summary(self) -> MappingSummary:
        if self.source is None or self.target is None:
            return MappingSummary.empty()
        return self.mapping.summary(self.source.side.table, self.target.side.table, self.status)
