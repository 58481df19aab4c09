"""Strategies suggest mappings from names, shapes and structure alone (no tensor data).

A strategy is an object with a ``name``, a one-line ``description`` and
``suggest(source: Side, target: Side, **options) -> list[Suggestion]``. Register one with
``register_strategy``; ``suggest`` / ``suggest_mapping`` run any registered strategy by name.
Accepted suggestions go into the mapping; the rest are candidates a person may accept.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from torch import nn

from .errors import MappingError, SpecError
from .mapping import Entry, Mapping
from .sources import Source, load_source
from .specs import build_model, looks_like_model_spec, module_classes, parse_spec
from .tensors import KeyTable, format_shape, table_of
from .transforms import Transform


class Role(StrEnum):
    """Which side of a mapping: the checkpoint read from, or the model filled."""

    SOURCE = "source"
    TARGET = "target"


@dataclass
class Side:
    """The key table of a source or target, with module classes where a model is known.

    A side that :func:`source_side` made from a path or spec holds the Source it opened
    (``owns_source``) and is closed by its owner: ``with source_side(path) as side:`` or
    :meth:`close`. A side made from a Source the caller passed in leaves that Source open.
    """

    table: KeyTable
    classes: dict[str, str] = field(default_factory=dict)
    spec: str = ""
    source: Source | None = None
    owns_source: bool = field(default=False, repr=False, compare=False)

    @property
    def keys(self) -> list[str]:
        return list(self.table)

    def close(self) -> None:
        """Let go of the files of the Source this side opened (reading it again opens them again)."""
        if self.owns_source and self.source is not None:
            self.source.close()

    def __enter__(self) -> Side:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def source_side(obj: Any, trust_pickle: bool = False) -> Side:
    """A source: a checkpoint path, a spec, a Source, a live module or a state dict.

    A Source opened here belongs to the returned side: close the side (or use it in a ``with``).
    """
    if isinstance(obj, Side):
        return obj
    src = load_source(obj, trust_pickle=trust_pickle)
    spec = src.spec if isinstance(obj, (str, os.PathLike, Source)) else ""
    return Side(src.tensors, src.module_classes, spec, src, owns_source=src is not obj)


def target_side(obj: Any) -> Side:
    """A target: a model spec (built on meta), a live module, a state dict or a checkpoint.

    A checkpoint target holds its open Source as :func:`source_side` does: close the side.
    """
    if isinstance(obj, Side):
        return obj
    if isinstance(obj, nn.Module):
        return Side(table_of(obj.state_dict()), module_classes(obj), "")
    if isinstance(obj, dict):
        return Side(table_of(obj), {}, "")
    if isinstance(obj, (str, os.PathLike)) and looks_like_model_spec(os.fspath(obj)):
        spec = parse_spec(os.fspath(obj))
        if spec.weights:
            raise SpecError(f"a target is a model, not weights: drop ':{spec.weights}' from {spec.text!r}")
        model = build_model(spec, device="meta")
        return Side(table_of(model.state_dict()), module_classes(model), spec.text)
    return source_side(obj)


@dataclass
class Suggestion:
    target: str
    source: str
    confidence: float
    reason: str
    origin: str
    transform: Transform | None = None
    accepted: bool = True
    #: other plausible sources, best first: (source key, confidence, reason)
    alternatives: list[tuple[str, float, str]] = field(default_factory=list)
    #: the sources after the first, for a target joined from several (``transform`` is the combining op)
    more_sources: tuple[str, ...] = ()

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source, *self.more_sources)

    def entry(self) -> Entry:
        return Entry(self.target, self.source, self.transform, self.origin, round(self.confidence, 4), self.reason,
                     self.more_sources)


@dataclass
class Suggestions:
    strategy: str
    items: list[Suggestion]
    notes: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> list[Suggestion]:
        return [s for s in self.items if s.accepted]

    @property
    def candidates(self) -> list[Suggestion]:
        return [s for s in self.items if not s.accepted]

    def to_mapping(self, source_spec: str = "", target_spec: str = "", threshold: float | None = None) -> Mapping:
        """Accepted suggestions (or all at or above ``threshold``) as a mapping; the rest as candidates."""
        mapping = Mapping(source_spec=source_spec, target_spec=target_spec)
        for s in self.items:
            take = s.accepted if threshold is None else (s.confidence >= threshold and s.source)
            if take and s.target not in mapping.entries:
                mapping.set(s.entry())
            else:
                mapping.candidates.append(s.entry())
        return mapping


class Strategy(Protocol):
    name: str
    description: str

    def suggest(self, source: Side, target: Side, **options: Any) -> list[Suggestion]: ...


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy) -> Strategy:
    STRATEGIES[strategy.name] = strategy
    return strategy


def _same_shape(source: Side, target: Side, s: str, t: str) -> bool:
    return source.table[s].shape == target.table[t].shape


class ExactStrategy:
    name = "exact"
    description = "same name and shape (what load_state_dict(strict=False) loads, without its size-mismatch crash)"

    def suggest(self, source: Side, target: Side, **options: Any) -> list[Suggestion]:
        out = []
        for key, info in target.table.items():
            src = source.table.get(key)
            if src is None:
                continue
            if src.shape == info.shape:
                out.append(Suggestion(key, key, 1.0, "same name and shape", self.name))
            else:
                out.append(Suggestion(key, key, 0.0, self.mismatch_reason(src.shape, info.shape), self.name,
                                      accepted=False))
        return out

    def mismatch_reason(self, source_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> str:
        return f"same name, shapes differ: {format_shape(source_shape)} vs {format_shape(target_shape)}"


class OrderStrategy:
    name = "order"
    description = "the seed article's recipe: zip keys by position, keep pairs whose name and shape agree"

    def suggest(self, source: Side, target: Side, **options: Any) -> list[Suggestion]:
        out = []
        for i, (s, t) in enumerate(zip(source.table, target.table, strict=False)):
            if s != t:
                continue
            if _same_shape(source, target, s, t):
                out.append(Suggestion(t, s, 1.0, f"position {i}: same name and shape", self.name))
            else:
                out.append(Suggestion(t, s, 0.0, f"position {i}: same name, shapes differ "
                                      f"{format_shape(source.table[s].shape)} vs {format_shape(target.table[t].shape)}",
                                      self.name, accepted=False))
        return out


def parse_rules(rules: Iterable[str] | None) -> list[tuple[re.Pattern[str], str, str]]:
    """``REGEX=REPLACEMENT`` strings -> compiled rules, applied in order to each source key."""
    parsed = []
    for rule in rules or ():
        pattern, eq, repl = rule.partition("=")
        if not eq:
            raise MappingError(f"rename rule {rule!r} needs the form REGEX=REPLACEMENT (e.g. '^module\\.=')")
        try:
            parsed.append((re.compile(pattern), repl, rule))
        except re.error as exc:
            raise MappingError(f"rename rule {rule!r}: bad regular expression ({exc})") from exc
    return parsed


def rename_key(key: str, rules: Sequence[tuple[re.Pattern[str], str, str]]) -> tuple[str, list[str]]:
    """Apply ``rules`` in order; return the new key and the rules that changed it."""
    fired = []
    for pattern, repl, text in rules:
        try:
            new = pattern.sub(repl, key)
        except (re.error, IndexError) as exc:
            raise MappingError(f"rename rule {text!r}: bad replacement ({exc})") from exc
        if new != key:
            fired.append(text)
            key = new
    return key, fired


class RenameStrategy:
    name = "rename"
    description = "ordered REGEX=REPLACEMENT rules turn source names into target names (e.g. '^module\\.=')"

    def suggest(self, source: Side, target: Side, rules: Iterable[str] | None = None, **options: Any) -> list[Suggestion]:
        compiled = parse_rules(rules)
        out: dict[str, Suggestion] = {}
        for s in source.table:
            t, fired = rename_key(s, compiled)
            if t not in target.table:
                continue
            reason = ("rules " + ", ".join(repr(r) for r in fired)) if fired else "same name"
            if not _same_shape(source, target, s, t):
                sug = Suggestion(t, s, 0.0, f"{reason}; shapes differ {format_shape(source.table[s].shape)} vs "
                                 f"{format_shape(target.table[t].shape)}", self.name, accepted=False)
            else:
                sug = Suggestion(t, s, 1.0, reason, self.name)
            if t in out and out[t].accepted:
                out[t].alternatives.append((s, sug.confidence, sug.reason))
                continue
            out[t] = sug
        return list(out.values())


class HeadStrategy(ExactStrategy):
    name = "head"
    description = "new class count or head: everything by name except the mismatched head, which keeps its init"

    def mismatch_reason(self, source_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> str:
        return f"new head: {format_shape(source_shape)} -> {format_shape(target_shape)}, keeps its initialisation"


for _s in (ExactStrategy(), OrderStrategy(), RenameStrategy(), HeadStrategy()):
    register_strategy(_s)


def suggest(source: Any, target: Any, strategy: str = "exact", **options: Any) -> Suggestions:
    """Run a strategy over a source and a target (specs, paths, modules, state dicts or Sides)."""
    if strategy not in STRATEGIES:
        raise MappingError(f"unknown strategy {strategy!r}; choose one of {', '.join(sorted(STRATEGIES))}")
    with _sides(source, target) as (src, tgt):
        items = STRATEGIES[strategy].suggest(src, tgt, **options)
    return Suggestions(strategy, items)


def suggest_mapping(source: Any, target: Any, strategy: str = "exact", **options: Any) -> Mapping:
    """Suggest a mapping; accepted suggestions are its entries, the rest its ``candidates``.

    ``source`` and ``target`` may be spec strings, checkpoint paths, ``nn.Module``s or plain
    ``dict[str, Tensor]`` (meta tensors included). Options go to the strategy (``rules`` for
    ``rename``).
    """
    with _sides(source, target) as (src, tgt):
        result = suggest(src, tgt, strategy, **options)
        mapping = result.to_mapping(src.spec, tgt.spec)
        if src.source is not None and src.source.file_backed:
            mapping.source_sha256 = src.source.sha256()
    return mapping


@contextmanager
def _sides(source: Any, target: Any) -> Iterator[tuple[Side, Side]]:
    """Both sides for one call: the ones made here are closed after it, Sides passed in are the caller's."""
    src = source_side(source)
    try:
        tgt = target_side(target)
        try:
            yield src, tgt
        finally:
            if tgt is not target:
                tgt.close()
    finally:
        if src is not source:
            src.close()


def strategy_names() -> list[str]:
    return list(STRATEGIES)


__all__ = ["Side", "Suggestion", "Suggestions", "STRATEGIES", "register_strategy", "suggest", "suggest_mapping",
           "source_side", "target_side", "parse_rules", "rename_key"]


# auto lives in its own module (it is large) and registers itself when imported: import it here, last,
# so that every user of this registry sees it
from . import auto as _auto  # noqa: E402, F401
