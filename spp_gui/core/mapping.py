"""The mapping: for each target key, the source key that fills it and through which transform.

Saved as versioned, diffable JSON (``format: spp-gui-mapping``). Target keys not listed keep the
target's own initialisation.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .errors import MappingError
from .tensors import KeyTable, format_shape
from .transforms import Transform, carried_numel, check_transform

FORMAT = "spp-gui-mapping"
VERSION = 1

# Per-target statuses, strongest first.
EXACT, RENAMED, ADAPTED, INVALID, UNMAPPED = "exact", "renamed", "adapted", "invalid", "unmapped"
TARGET_STATUSES = (EXACT, RENAMED, ADAPTED, INVALID, UNMAPPED)
USED, UNUSED = "used", "unused"


@dataclass
class Entry:
    """One target key filled from one source key."""

    target: str
    source: str
    transform: Transform | None = None
    origin: str = "manual"
    confidence: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not out["reason"]:
            del out["reason"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        if not isinstance(data, dict) or not isinstance(data.get("target"), str) or not isinstance(data.get("source"), str):
            raise MappingError(f"mapping entry needs string 'target' and 'source' fields, got {data!r}")
        conf = data.get("confidence")
        if conf is not None and not (isinstance(conf, (int, float)) and 0.0 <= conf <= 1.0):
            raise MappingError(f"entry {data['target']!r}: confidence must be a number in [0, 1], got {conf!r}")
        transform = data.get("transform")
        if transform is not None and not isinstance(transform, dict):
            raise MappingError(f"entry {data['target']!r}: transform must be an object or null")
        return cls(data["target"], data["source"], transform, str(data.get("origin", "manual")), conf,
                   str(data.get("reason", "")))


@dataclass
class MappingStatus:
    """What a mapping does, key by key, against a given source and target."""

    target: dict[str, str]  # target key -> status
    problems: dict[str, str]  # target key -> why it is invalid
    source_used_by: dict[str, list[str]]  # source key -> target keys it fills ([] = unused)

    def count(self, status: str) -> int:
        return sum(1 for s in self.target.values() if s == status)

    @property
    def unused_sources(self) -> list[str]:
        return [k for k, v in self.source_used_by.items() if not v]


@dataclass
class Mapping:
    source_spec: str = ""
    target_spec: str = ""
    source_sha256: str | None = None
    entries: dict[str, Entry] = field(default_factory=dict)
    #: Suggestions a strategy made but did not accept; offered by the GUI, never saved.
    candidates: list[Entry] = field(default_factory=list, compare=False, repr=False)

    # -- editing ------------------------------------------------------------------------------
    def set(self, entry: Entry) -> Entry | None:
        """Add or replace the entry for ``entry.target``; return the one it replaced."""
        old = self.entries.get(entry.target)
        self.entries[entry.target] = entry
        return old

    def remove(self, target: str) -> Entry | None:
        return self.entries.pop(target, None)

    def get(self, target: str) -> Entry | None:
        return self.entries.get(target)

    def pairs(self) -> dict[str, str]:
        """``{target_key: source_key}`` for every mapped target key."""
        return {t: e.source for t, e in self.entries.items()}

    def copy(self) -> Mapping:
        """An independent copy; entry by entry, since deepcopy of 47,000 entries takes seconds."""
        def dup(e: Entry) -> Entry:
            return Entry(e.target, e.source, copy.deepcopy(e.transform) if e.transform else None, e.origin,
                         e.confidence, e.reason)

        return Mapping(self.source_spec, self.target_spec, self.source_sha256,
                       {k: dup(e) for k, e in self.entries.items()}, [dup(e) for e in self.candidates])

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries.values())

    def __contains__(self, target: object) -> bool:
        return target in self.entries

    # -- checking -----------------------------------------------------------------------------
    def entry_problem(self, entry: Entry, source: KeyTable, target: KeyTable) -> str | None:
        if entry.target not in target:
            return f"target has no key {entry.target!r}"
        if entry.source not in source:
            return f"source has no key {entry.source!r} (mapped to {entry.target!r})"
        s, t = source[entry.source].shape, target[entry.target].shape
        why = check_transform(entry.transform, s, t)
        if why is not None:
            return f"{entry.source!r} {format_shape(s)} -> {entry.target!r} {format_shape(t)}: {why}"
        return None

    def status(self, source: KeyTable, target: KeyTable) -> MappingStatus:
        statuses: dict[str, str] = {}
        problems: dict[str, str] = {}
        used: dict[str, list[str]] = {k: [] for k in source}
        for key in target:
            entry = self.entries.get(key)
            if entry is None:
                statuses[key] = UNMAPPED
                continue
            why = self.entry_problem(entry, source, target)
            if why is not None:
                statuses[key], problems[key] = INVALID, why
            elif entry.transform is not None:
                statuses[key] = ADAPTED
            else:
                statuses[key] = EXACT if entry.source == key else RENAMED
            if entry.source in used:
                used[entry.source].append(key)
        for key in self.entries:
            if key not in target:
                problems[key] = f"target has no key {key!r}"
        return MappingStatus(statuses, problems, used)

    def share(self, source: KeyTable, target: KeyTable, status: MappingStatus | None = None) -> float:
        """Share of the target's elements that valid entries fill from the source (transforms count
        only what they carry: an ``spp_grid`` fills one pyramid level, not the whole weight)."""
        status = status or self.status(source, target)
        total = sum(i.numel for i in target.values())
        carried = 0
        for key, st in status.target.items():
            if st in (EXACT, RENAMED):
                carried += target[key].numel
            elif st == ADAPTED:
                entry = self.entries[key]
                carried += carried_numel(entry.transform, source[entry.source].shape, target[key].shape)
        return carried / total if total else 0.0

    def validate(self, source: KeyTable, target: KeyTable) -> None:
        """Raise MappingError naming each entry that does not fit (key missing, shapes)."""
        problems = [p for e in self.entries.values() if (p := self.entry_problem(e, source, target))]
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise MappingError(f"mapping does not fit: {'; '.join(problems[:5])}{more}")

    # -- files --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        source: dict[str, Any] = {"spec": self.source_spec}
        if self.source_sha256:
            source["sha256"] = self.source_sha256
        return {
            "format": FORMAT,
            "version": VERSION,
            "source": source,
            "target": {"spec": self.target_spec},
            "entries": [e.to_dict() for e in self.entries.values()],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str = "mapping") -> Mapping:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise MappingError(f"{where} is not an spp-gui mapping (expected \"format\": \"{FORMAT}\")")
        version = data.get("version")
        if not isinstance(version, int) or version < 1:
            raise MappingError(f"{where}: bad version {version!r}")
        if version > VERSION:
            raise MappingError(f"{where} has format version {version}, newer than this spp_gui reads ({VERSION}); upgrade spp_gui")
        entries_raw = data.get("entries", [])
        if not isinstance(entries_raw, list):
            raise MappingError(f"{where}: 'entries' must be a list")
        mapping = cls(
            source_spec=str((data.get("source") or {}).get("spec", "")),
            target_spec=str((data.get("target") or {}).get("spec", "")),
            source_sha256=(data.get("source") or {}).get("sha256"),
        )
        for raw in entries_raw:
            entry = Entry.from_dict(raw)
            if entry.target in mapping.entries:
                raise MappingError(f"{where}: target key {entry.target!r} is listed twice")
            mapping.entries[entry.target] = entry
        return mapping

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Mapping:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise MappingError(f"mapping file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise MappingError(f"cannot read mapping file {path}: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MappingError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
        return cls.from_dict(data, where=str(path))

    @classmethod
    def from_pairs(cls, pairs: dict[str, str] | Iterable[tuple[str, str]], origin: str = "manual", **kw: Any) -> Mapping:
        items = pairs.items() if isinstance(pairs, dict) else pairs
        return cls(entries={t: Entry(t, s, origin=origin) for t, s in items}, **kw)
