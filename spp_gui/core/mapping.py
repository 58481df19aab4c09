"""The mapping: for each target key, the source key (or keys) that fill it and through which transform.

Saved as versioned, diffable JSON (``format: spp-gui-mapping``). Target keys not listed keep the
target's own initialisation. Version 1 has one source per entry; version 2 adds entries with
several sources (``"sources": [...]``, joined by a combining transform such as ``concat``) and
is written only when a mapping has one, so every other mapping stays a version 1 file.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .combine import MAX_SOURCES, carried_combine, check_combine, check_combine_params, is_combining
from .errors import MappingError
from .tensors import KeyTable, format_shape
from .transforms import Transform, brief, carried_numel, check_params, check_transform
from .untrusted import read_untrusted_text

FORMAT = "spp-gui-mapping"
#: The newest version read and written; a mapping without a many-to-one entry is written as 1.
VERSION = 2
#: What each version holds, for messages about a file's version.
VERSIONS = {1: "one source per entry", 2: "entries with several sources ('sources' and a combining transform)"}

#: A mapping of 47,000 entries is about 10 MiB; a file past this is not a mapping.
MAX_FILE_BYTES = 256 * 2**20  # a mapping file; see read_untrusted_text
#: Longest spec, path, key, origin or reason a mapping file may hold.
MAX_TEXT = 4096

class Status(StrEnum):
    """What a mapping does to one target key; a str, so files and JSON hold the plain word."""

    EXACT = "exact"  # same name, same shape
    RENAMED = "renamed"  # another name, same shape
    ADAPTED = "adapted"  # a transform (or a combining op) makes the shape
    INVALID = "invalid"  # mapped, but it cannot be applied (see MappingStatus.problems)
    UNMAPPED = "unmapped"  # keeps the target's init
    TIED = "tied"  # a load report's only: filled through the tensor it is tied to


EXACT, RENAMED, ADAPTED, INVALID, UNMAPPED = Status.EXACT, Status.RENAMED, Status.ADAPTED, Status.INVALID, Status.UNMAPPED
#: Per-target statuses of a mapping, strongest first.
TARGET_STATUSES = (EXACT, RENAMED, ADAPTED, INVALID, UNMAPPED)


@dataclass
class Entry:
    """One target key filled from one source key, or from several (``sources``) through a combining op.

    ``source`` is always the first source, so code that reads one source keeps working;
    ``more_sources`` holds the rest, in order. Read every source through ``sources``.
    """

    target: str
    source: str
    transform: Transform | None = None
    origin: str = "manual"
    confidence: float | None = None
    reason: str = ""
    more_sources: tuple[str, ...] = ()

    @classmethod
    def combined(cls, target: str, sources: Iterable[str], transform: Transform | None = None,
                 origin: str = "manual", confidence: float | None = None, reason: str = "") -> Entry:
        """An entry filled from ``sources`` in order (several: ``transform`` is the combining op)."""
        first, *rest = sources
        return cls(target, first, transform, origin, confidence, reason, tuple(rest))

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source key, in the order the combining op takes them (one for a plain entry)."""
        return (self.source, *self.more_sources)

    @sources.setter
    def sources(self, keys: Iterable[str]) -> None:
        self.source, *rest = keys
        self.more_sources = tuple(rest)

    @property
    def many(self) -> bool:
        """Whether several sources fill this target (a version 2 entry)."""
        return bool(self.more_sources)

    @property
    def combine_op(self) -> Transform:
        """The combining op of an entry with several sources (checked when the entry was read or made)."""
        if self.transform is None:
            raise MappingError(f"{self.target!r}: {len(self.sources)} sources but no combining op")
        return self.transform

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target}
        if self.more_sources:
            out["sources"] = list(self.sources)
        else:
            out["source"] = self.source
        out.update(transform=copy.deepcopy(self.transform), origin=self.origin, confidence=self.confidence)
        if self.reason:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "mapping", number: int | None = None) -> Entry:
        """An entry read from a file: every field type-checked, transform parameters included."""
        several = isinstance(data, dict) and "sources" in data and "source" not in data
        if not isinstance(data, dict) or not isinstance(data.get("target"), str) or not (
                several or isinstance(data.get("source"), str)):
            which = f"entry #{number}" if number is not None else "a mapping entry"
            got = brief(data) if not isinstance(data, dict) else "an object without them"
            raise MappingError(f"{where}: {which} needs string 'target' and 'source' fields "
                               f"(or a 'sources' list), got {got}")
        target = data["target"]
        name = f"{where}: entry {brief(target, 120)}"
        _text(target, f"{name}: 'target'")
        if "sources" in data and not several:
            raise MappingError(f"{name}: has both 'source' and 'sources'; keep one ('sources' for several)")
        sources = _sources(data["sources"], name) if several else (_text(data["source"], f"{name}: 'source'"),)
        conf = data.get("confidence")
        # (NaN fails the comparison; an int too big for a float does not reach one)
        if conf is not None and not (isinstance(conf, (int, float)) and not isinstance(conf, bool) and 0 <= conf <= 1):
            raise MappingError(f"{name}: confidence must be a number in [0, 1], got {brief(conf)}; "
                               f"set it to null if unknown")
        transform = data.get("transform")
        if transform is not None and not isinstance(transform, dict):
            raise MappingError(f"{name}: transform must be an object or null, got {brief(transform)}")
        if len(sources) > 1:
            why = check_combine_params(transform)
        elif is_combining(transform):
            why = f"{transform['op']} combines several sources; list them in 'sources' (this entry has one)"
        else:
            why = check_params(transform) if transform is not None else None
        if why is not None:
            raise MappingError(f"{name}: {why}")
        origin = _text(data.get("origin", "manual"), f"{name}: 'origin'")
        reason = _text(data.get("reason", ""), f"{name}: 'reason'")
        return cls(target, sources[0], transform, origin, conf, reason, tuple(sources[1:]))


def _sources(value: Any, name: str) -> tuple[str, ...]:
    """A 'sources' list from a file: 2 to MAX_SOURCES distinct strings, else MappingError."""
    if not isinstance(value, list):
        raise MappingError(f"{name}: 'sources' must be a list of source keys, got {brief(value)}")
    if not 2 <= len(value) <= MAX_SOURCES:
        raise MappingError(f"{name}: 'sources' lists {len(value)} keys; it takes 2 to {MAX_SOURCES} "
                           f"(one source goes in 'source')")
    keys = tuple(_text(v, f"{name}: 'sources' #{i}") for i, v in enumerate(value, 1))
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise MappingError(f"{name}: 'sources' lists {brief(twice, 120)} twice; each source is listed once")
    return keys


def _text(value: Any, what: str, one_line: bool = False) -> str:
    """``value`` when it is a string of sane length (and one line where asked), else MappingError."""
    if not isinstance(value, str):
        raise MappingError(f"{what} must be a string, got {brief(value)}")
    if len(value) > MAX_TEXT:
        raise MappingError(f"{what} is {len(value)} characters long; it may have at most {MAX_TEXT}")
    if one_line and not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        raise MappingError(f"{what} contains a control character ({bad!r}); a spec is one line of printable text")
    return value


def _side(data: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    side = data.get(name)
    if side is None:
        return {}
    if not isinstance(side, dict):
        raise MappingError(f"{where}: '{name}' must be an object like {{\"spec\": \"...\"}}, got {brief(side)}")
    return side


def _split_container(spec: str, exists) -> tuple[str, str]:
    """``PATH#KEY`` (a checkpoint's weight container, see sources.load_source) -> (PATH, "#KEY");
    a spec whose whole text ``exists()`` (a file with '#' in its name), or with no key, -> (spec, "")."""
    head, sep, key = spec.rpartition("#")
    if not sep or not head or not key or exists(spec):
        return spec, ""
    return head, sep + key


def _exists(text: str, folder: Path | None = None) -> bool:
    try:
        path = Path(text).expanduser()
        return (folder / path if folder is not None and not path.is_absolute() else path).exists()
    except (OSError, ValueError):
        return False


def _source_file(spec: str) -> tuple[Path, str] | None:
    """The file or folder a source spec names and its container suffix (``#state_dict_ema`` or "");
    None for a model spec or torchvision weights."""
    from .specs import looks_like_model_spec

    if not spec or looks_like_model_spec(spec) or spec.startswith("torchvision:"):
        return None
    base, suffix = _split_container(spec, _exists)
    try:
        candidate = Path(base).expanduser()
        return (candidate.resolve(), suffix) if candidate.exists() else None
    except (OSError, ValueError):
        return None


def _resolve_source(spec: str, absolute: Any, mapping_path: Path) -> str:
    """Where a stored source is now: beside the mapping file first, then its recorded absolute path;
    otherwise as written (older files stored it relative to where `map` ran). A container suffix
    (``#KEY``) stays on whichever path is found."""
    from .specs import looks_like_model_spec

    if not spec or looks_like_model_spec(spec) or spec.startswith("torchvision:"):
        return spec
    folder = mapping_path.resolve().parent
    base, suffix = _split_container(spec, lambda text: _exists(text, folder) or _exists(text))
    try:
        if not Path(base).is_absolute():
            beside = folder / base
            if beside.exists():
                return str(beside.resolve()) + suffix
        if isinstance(absolute, str) and len(absolute) < 4096 and Path(absolute).exists():
            return absolute + suffix
    except (OSError, ValueError):
        pass
    return spec


def _combined_problem(entry: Entry, source: KeyTable, target: KeyTable) -> str | None:
    """Why a many-to-one entry does not fit (a source missing, shapes the combining op can't join), or None."""
    missing = [s for s in entry.sources if s not in source]
    if missing:
        return f"source has no key {missing[0]!r} (one of {len(entry.sources)} sources mapped to {entry.target!r})"
    shapes = [source[s].shape for s in entry.sources]
    t = target[entry.target].shape
    why = check_combine(entry.transform, shapes, t)
    if why is not None:
        said = " + ".join(f"{s!r} {format_shape(shape)}" for s, shape in zip(entry.sources, shapes, strict=True))
        return f"{said} -> {entry.target!r} {format_shape(t)}: {why}"
    return None


@dataclass
class MappingStatus:
    """What a mapping does, key by key, against a given source and target."""

    target: dict[str, Status]  # target key -> status
    problems: dict[str, str]  # target key -> why it is invalid
    source_used_by: dict[str, list[str]]  # source key -> target keys it fills ([] = unused)

    def count(self, status: str) -> int:
        return sum(1 for s in self.target.values() if s == status)

    @property
    def unused_sources(self) -> list[str]:
        return [k for k, v in self.source_used_by.items() if not v]


@dataclass(frozen=True)
class MappingSummary:
    """The counts behind every "N of M target tensors mapped" line: the CLI's, the editor's status
    bar and its messages all read one of these (:meth:`Mapping.summary`)."""

    targets: int  # target tensors
    counts: dict[Status, int]  # target tensors per status (every one of TARGET_STATUSES)
    share: float  # of the target's elements, filled from the source
    unused: int  # source tensors no target takes

    @classmethod
    def empty(cls) -> MappingSummary:
        """Before both sides are open."""
        return cls(0, dict.fromkeys(TARGET_STATUSES, 0), 0.0, 0)

    @property
    def invalid(self) -> int:
        return self.counts[INVALID]

    @property
    def mapped(self) -> int:
        """Target tensors the mapping fills (invalid entries do not count: they cannot be applied)."""
        return self.targets - self.counts[UNMAPPED] - self.counts[INVALID]

    def headline(self) -> str:
        """'120 of 122 target tensors mapped'."""
        return f"{self.mapped} of {self.targets} target tensors mapped"

    def text(self, sep: str = "; ") -> str:
        """The headline with the counts per status, the share and the unused sources."""
        c = self.counts
        return (f"{self.headline()} ({c[EXACT]} exact, {c[RENAMED]} renamed, {c[ADAPTED]} adapted, "
                f"{c[INVALID]} invalid){sep}{self.share:.1%} of target parameters from the source{sep}"
                f"{self.unused} source tensors unused")


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
                         e.confidence, e.reason, e.more_sources)

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
        if entry.more_sources:
            return _combined_problem(entry, source, target)
        if is_combining(entry.transform):
            return f"{entry.source!r} -> {entry.target!r}: {entry.transform['op']} combines several sources; add another"
        if entry.source not in source:
            return f"source has no key {entry.source!r} (mapped to {entry.target!r})"
        s, t = source[entry.source].shape, target[entry.target].shape
        why = check_transform(entry.transform, s, t)
        if why is not None:
            return f"{entry.source!r} {format_shape(s)} -> {entry.target!r} {format_shape(t)}: {why}"
        return None

    def status(self, source: KeyTable, target: KeyTable) -> MappingStatus:
        statuses: dict[str, Status] = {}
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
            for name in entry.sources:
                if name in used:
                    used[name].append(key)
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
                if entry.more_sources:
                    carried += carried_combine(entry.combine_op, [source[s].shape for s in entry.sources],
                                               target[key].shape)
                else:
                    carried += carried_numel(entry.transform, source[entry.source].shape, target[key].shape)
        return carried / total if total else 0.0

    def summary(self, source: KeyTable, target: KeyTable, status: MappingStatus | None = None) -> MappingSummary:
        """How much of ``target`` this mapping fills from ``source`` (``status``: one already computed)."""
        status = status or self.status(source, target)
        counts = {s: status.count(s) for s in TARGET_STATUSES}
        return MappingSummary(len(target), counts, self.share(source, target, status), len(status.unused_sources))

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
            "version": self.version,
            "source": source,
            "target": {"spec": self.target_spec},
            "entries": [e.to_dict() for e in self.entries.values()],
        }

    @property
    def version(self) -> int:
        """The file version this mapping needs: 2 with an entry of several sources, else 1."""
        return 2 if any(e.more_sources for e in self.entries.values()) else 1

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str = "mapping") -> Mapping:
        """A mapping from parsed JSON that may come from anyone: every field is checked."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise MappingError(f"{where} is not an spp-gui mapping (expected \"format\": \"{FORMAT}\")")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise MappingError(f"{where}: bad version {brief(version)}; a mapping file has \"version\": {VERSION}")
        if version > VERSION:
            raise MappingError(f"{where} has format version {brief(version)}, newer than this spp_gui reads "
                               f"(up to {VERSION}: {VERSIONS[VERSION]}); upgrade spp_gui")
        entries_raw = data.get("entries", [])
        if not isinstance(entries_raw, list):
            raise MappingError(f"{where}: 'entries' must be a list")
        source, target = _side(data, "source", where), _side(data, "target", where)
        sha = source.get("sha256")
        if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha)):
            raise MappingError(f"{where}: 'source.sha256' must be 64 hex digits (the source file's SHA-256), "
                               f"got {brief(sha)}; remove it to skip the check")
        mapping = cls(
            source_spec=_text(source.get("spec", ""), f"{where}: 'source.spec'", one_line=True),
            target_spec=_text(target.get("spec", ""), f"{where}: 'target.spec'", one_line=True),
            source_sha256=sha,
        )
        for number, raw in enumerate(entries_raw, 1):
            entry = Entry.from_dict(raw, where, number)
            if entry.more_sources and version < 2:
                raise MappingError(f"{where}: entry {brief(entry.target, 120)} lists several sources, which needs "
                                   f"\"version\": 2 ({VERSIONS[2]}); this file says version {version}")
            if entry.target in mapping.entries:
                raise MappingError(f"{where}: target key {brief(entry.target, 120)} is listed twice")
            mapping.entries[entry.target] = entry
        return mapping

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically. A source that is a file is stored relative to the mapping file (so the
        pair can move together, and `apply` works from any folder), its absolute path beside it."""
        data = self.to_dict()
        found = _source_file(self.source_spec)
        if found is not None:
            where, suffix = found
            folder = Path(path).resolve().parent
            try:
                data["source"]["spec"] = Path(os.path.relpath(where, folder)).as_posix() + suffix
            except ValueError:  # another drive: only the absolute path can say where it is
                data["source"]["spec"] = str(where) + suffix
            data["source"]["path"] = str(where)
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Mapping:
        """Read a mapping file as untrusted data: any malformed content is one MappingError."""
        path = Path(path)
        text = read_untrusted_text(path, limit=MAX_FILE_BYTES)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MappingError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
        except RecursionError:
            raise MappingError(f"{path} has lists or objects nested past ~1,000 levels; "
                               f"a mapping file nests four, so this is not one") from None
        except ValueError as exc:  # an integer past sys.get_int_max_str_digits()
            if "digits" not in str(exc):
                raise MappingError(f"{path} is not valid JSON ({brief(str(exc))})") from None
            raise MappingError(f"{path} holds a number with more than 4,300 digits; no mapping field needs one") from None
        mapping = cls.from_dict(data, where=str(path))
        mapping.source_spec = _resolve_source(mapping.source_spec, (data.get("source") or {}).get("path"), path)
        return mapping

    @classmethod
    def from_pairs(cls, pairs: dict[str, str] | Iterable[tuple[str, str]], origin: str = "manual", **kw: Any) -> Mapping:
        items = pairs.items() if isinstance(pairs, dict) else pairs
        return cls(entries={t: Entry(t, s, origin=origin) for t, s in items}, **kw)
