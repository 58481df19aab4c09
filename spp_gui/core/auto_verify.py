"""``auto`` checked by function where both sides can run.

Names and shapes can agree while meaning does not (two equal convs of a block exchanged). With both
models at hand, the accepted pairs fill the target and :func:`~.verify.verify_models` compares each mapped
module with the source module that saw the same input. A module that disagrees first gets the swap of
its equal-shaped siblings tried (the likeliest mix-up); a swap is kept only when the module then agrees
and its partner does not disagree. Otherwise its pairs go back to the candidates, with the reason.
Modules verify cannot compare (inputs differ, adapted by a transform) keep what ``auto`` said.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .apply import apply_mapping
from .errors import Cancelled, MappingError, SppError
from .mapping import Mapping
from .specs import build_model, looks_like_model_spec
from .steps import run_steps
from .strategies import Side, Suggestion
from .verify import AGREE, DISAGREE, VerifyReport, source_model, verify_models

#: a demoted pair's confidence: below every accept threshold
DEMOTED = 0.3
#: disagreeing modules looked at, each costing up to one run of both models per sibling tried
MAX_ROUNDS = 16


@dataclass
class VerifyOutcome:
    """What verify changed in the suggestions (which are changed in place)."""

    items: list[Suggestion]
    report: VerifyReport | None = None
    swapped: list[tuple[str, str]] = field(default_factory=list)  # target modules whose sources were exchanged
    moved: list[tuple[str, str, str]] = field(default_factory=list)  # target module, old, new source module
    demoted: list[str] = field(default_factory=list)  # target modules whose pairs went back to candidates
    skipped: str = ""  # why verify did not run, or ""

    @property
    def changed(self) -> bool:
        return bool(self.swapped or self.moved or self.demoted)

    def summary(self) -> str:
        """One line for a panel or the CLI."""
        if self.skipped:
            return f"verify: not run ({self.skipped})"
        counts = self.report.counts() if self.report is not None else {}
        parts = [f"{counts.get(AGREE, 0)} modules agree"]
        if self.swapped:
            parts.append(f"{len(self.swapped)} swapped pair{'s' if len(self.swapped) > 1 else ''} fixed ("
                         + ", ".join(f"{a}<->{b}" for a, b in self.swapped[:3]) + ")")
        if self.moved:
            parts.append(f"{len(self.moved)} moved to a sibling")
        if self.demoted:
            parts.append(f"{len(self.demoted)} demoted to candidates (" + ", ".join(self.demoted[:3])
                         + (", ..." if len(self.demoted) > 3 else "") + ")")
        if not self.changed:
            parts.append("nothing changed")
        left = counts.get("not compared", 0)
        if left:
            parts.append(f"{left} not compared")
        return "verify: " + ", ".join(parts)


def _module(key: str) -> str:
    return key.rpartition(".")[0]


def why_not_runnable(source: Side, target: Side, source_model_spec: str | None = None) -> str | None:
    """None when both sides can run (the source a model spec, or a checkpoint with ``source_model_spec``;
    the target a model spec), else what is missing."""
    if not (target.spec and looks_like_model_spec(target.spec)):
        return "the target is no model spec"
    if source_model_spec:
        return None
    if source.spec and looks_like_model_spec(source.spec):
        return None
    return "the source is a checkpoint without a model spec (name its architecture to verify)"


def _siblings(state: dict[str, Any], smod: str, leaves: dict[str, tuple]) -> list[str]:
    """Source modules beside ``smod`` holding the same tensors (names and shapes)."""
    parent = smod.rpartition(".")[0]
    found: dict[str, dict[str, tuple]] = {}
    for key, value in state.items():
        mod, _, leaf = key.rpartition(".")
        if mod != smod and mod.rpartition(".")[0] == parent and leaf in leaves:
            found.setdefault(mod, {})[leaf] = tuple(value.shape)
    return [m for m, got in found.items() if got == leaves]


def _trials(mapping: Mapping, tmod: str, state: dict[str, Any]) -> Generator[tuple[Mapping, str | None, str]]:
    """Mappings with ``tmod``'s source exchanged for each equal-shaped sibling: (mapping, partner target module
    that gets ``tmod``'s old source or None, the sibling)."""
    mine = [e for e in mapping if _module(e.target) == tmod]
    if not mine or any(e.transform is not None for e in mine) or len({_module(e.source) for e in mine}) != 1:
        return
    smod = _module(mine[0].source)
    leaves = {e.source.rpartition(".")[2]: tuple(state[e.source].shape) for e in mine}
    for sib in _siblings(state, smod, leaves):
        trial = mapping.copy()
        partners = {_module(e.target) for e in trial if _module(e.source) == sib}
        if len(partners) > 1 or any(e.transform is not None for e in trial if _module(e.source) == sib):
            continue
        partner = next(iter(partners), None)
        for e in trial:
            if _module(e.target) == tmod:
                e.source = f"{sib}.{e.source.rpartition('.')[2]}"
            elif partner is not None and _module(e.target) == partner:
                e.source = f"{smod}.{e.source.rpartition('.')[2]}"
        yield trial, partner, sib


def verify_steps(items: list[Suggestion], source: nn.Module, target: nn.Module, input_shape: tuple[int, ...],
                 seed: int = 0, max_rounds: int = MAX_ROUNDS) -> Generator[str, None, VerifyOutcome]:
    """The work of :func:`verify_suggestions`, yielding what it does between model runs (a GUI worker
    cancels there). ``target`` is a real model; it is left holding the final mapping's tensors."""
    outcome = VerifyOutcome(items)
    by_target = {s.target: s for s in items if s.accepted and s.source}
    mapping = Mapping()
    for sug in by_target.values():
        mapping.set(sug.entry())
    if not mapping.entries:
        outcome.skipped = "nothing accepted to check"
        return outcome
    base = {k: v.detach().clone() for k, v in target.state_dict().items()}
    s_state = source.state_dict()

    def check(m: Mapping) -> VerifyReport:
        target.load_state_dict(base)
        apply_mapping(target, s_state, m, verify_sha256=False)
        return verify_models(source, target, m, input_shape, seed)

    yield f"running both models on {tuple(input_shape)}"
    report = check(mapping)
    settled: set[str] = set()
    notes: dict[str, str] = {}
    for _ in range(max_rounds):
        bad = [c for c in report.layers if c.status == DISAGREE and c.target_module not in settled]
        if not bad:
            break
        layer = bad[0]
        settled.add(layer.target_module)
        fixed = None
        for trial, partner, sib in _trials(mapping, layer.target_module, s_state):
            yield f"{layer.target_module} disagrees: trying source '{sib}'"
            got = check(trial)
            status = got.module_status()
            if status.get(layer.target_module) == AGREE and (partner is None or status.get(partner) != DISAGREE):
                fixed = trial, partner, sib, got
                break
        if fixed is not None:
            mapping, partner, sib, report = fixed
            old = layer.source_module
            if partner is not None:
                outcome.swapped.append((layer.target_module, partner))
                settled.add(partner)
                notes[partner] = f"verify: swapped with '{layer.target_module}' (outputs agree then)"
            else:
                outcome.moved.append((layer.target_module, old, sib))
            notes[layer.target_module] = f"verify: source '{old}' gave another output; '{sib}' agrees"
            continue
        outcome.demoted.append(layer.target_module)
        cos = f" (cosine {layer.cosine:.3f})" if layer.cosine is not None else ""
        notes[layer.target_module] = f"verify: {layer.note or 'output differs'}{cos}"
        for key in [e.target for e in mapping if _module(e.target) == layer.target_module]:
            mapping.remove(key)
    if outcome.demoted:
        yield "checking the result"
        report = check(mapping)
    outcome.report = report
    for key, sug in by_target.items():
        note = notes.get(_module(key))
        if note is None:
            continue
        entry = mapping.get(key)
        if entry is None:
            sug.accepted = False
            sug.confidence = min(sug.confidence, DEMOTED)
        else:
            sug.source = entry.source
        sug.reason = f"{sug.reason}; {note}"
    return outcome


def verify_suggestions(items: list[Suggestion], source: nn.Module, target: nn.Module,
                       input_shape: tuple[int, ...], seed: int = 0, progress: Callable[[str], None] | None = None,
                       cancelled: Callable[[], bool] | None = None) -> VerifyOutcome:
    """Check ``auto``'s accepted pairs by function: demote the ones that disagree, fix swapped equal-shaped
    siblings; returns what changed (the suggestions are changed in place). Raises Cancelled when
    ``cancelled()`` turns true between model runs."""
    return run_steps(verify_steps(items, source, target, input_shape, seed), progress, cancelled, _stopped)


def runnable_models(source: Side, target: Side, source_model_spec: str | None = None, seed: int = 0
                    ) -> tuple[nn.Module, nn.Module]:
    """Both sides as live models: the source holding its tensors, the target built (seeded) from its spec."""
    why = why_not_runnable(source, target, source_model_spec)
    if why is not None:
        raise MappingError(f"cannot verify: {why}")
    src = source.source if source.source is not None else source.spec
    s_model = source_model(src, source_model_spec)
    t_model = build_model(target.spec, device="cpu", seed=seed)
    return s_model, t_model


def verify_auto_steps(items: list[Suggestion], source: Side, target: Side, input_shape: tuple[int, ...],
                      source_model_spec: str | None = None, seed: int = 0) -> Generator[str, None, VerifyOutcome]:
    """:func:`verify_auto` as a generator of what it does (a GUI worker shows it and cancels between)."""
    why = why_not_runnable(source, target, source_model_spec)
    if why is not None:
        return VerifyOutcome(items, skipped=why)
    yield "building both models"
    s_model, t_model = runnable_models(source, target, source_model_spec, seed)
    try:
        return (yield from verify_steps(items, s_model, t_model, input_shape, seed))
    except Cancelled:
        raise
    except SppError as exc:  # e.g. the models cannot take this input: say so, change nothing
        return VerifyOutcome(items, skipped=str(exc))


def verify_auto(items: list[Suggestion], source: Side, target: Side, input_shape: tuple[int, ...],
                source_model_spec: str | None = None, seed: int = 0, progress: Callable[[str], None] | None = None,
                cancelled: Callable[[], bool] | None = None) -> VerifyOutcome:
    """:func:`verify_suggestions` for two sides; an outcome with ``skipped`` set when they cannot both run
    or the models fail on ``input_shape`` (the suggestions then stay as auto made them)."""
    return run_steps(verify_auto_steps(items, source, target, input_shape, source_model_spec, seed), progress,
                     cancelled, _stopped)


def _stopped(_step: str | None) -> str:
    return "verify cancelled"
