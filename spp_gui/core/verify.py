"""Verify a mapping by what it computes, not by names and shapes.

Names and shapes can agree while meaning doesn't (q and k swapped, two equal convs exchanged).
We run one batch of random input through the source model and the mapped target, hook every
mapped module on both sides, and where a module sees the same input in both models compare
their outputs (cosine similarity, relative error). A swapped pair shows up as the first module
whose input agrees but whose output does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .apply import apply_mapping
from .errors import MappingError, SpecError, SppError
from .mapping import Mapping
from .sources import Source, opened_source
from .specs import build_model, looks_like_model_spec, parse_spec
from .steps import run_steps

AGREE, DISAGREE, NOT_COMPARED = "agree", "disagree", "not compared"
#: Both outputs all zeros (a zero-initialised residual branch, timm's default): they agree, but that says
#: nothing about the weights, so it is neither a pass nor a failure.
NOT_INFORMATIVE = "not informative"
STATUSES = (AGREE, DISAGREE, NOT_INFORMATIVE, NOT_COMPARED)
#: What DataParallel/DDP (``module.``) and Lightning-style wrappers (``model.``) put before every key.
_WRAPPER_PREFIX = re.compile(r"(?:(?:module|model)\.)+")


@dataclass
class LayerCheck:
    target_module: str
    source_module: str
    status: str
    cosine: float | None = None
    rel_error: float | None = None
    note: str = ""


@dataclass
class VerifyReport:
    layers: list[LayerCheck] = field(default_factory=list)
    input_shape: tuple[int, ...] = ()

    def by_status(self, status: str) -> list[LayerCheck]:
        return [c for c in self.layers if c.status == status]

    @property
    def ok(self) -> bool:
        """No compared layer disagrees (layers that agree only in being all zeros neither pass nor fail)."""
        return not self.by_status(DISAGREE)

    def counts(self) -> dict[str, int]:
        return {status: len(self.by_status(status)) for status in STATUSES}

    def module_status(self) -> dict[str, str]:
        """Target module path -> agreement status, for colouring links in the editor."""
        return {c.target_module: c.status for c in self.layers}

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "input_shape": list(self.input_shape),
                "layers": [c.__dict__ for c in self.layers]}


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"2,3,224,224"`` (or ``2x3x224x224``) -> a batch shape; SpecError naming the text otherwise."""
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise SpecError(f"the input shape must be numbers like 2,3,224,224, got {text!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise SpecError(f"the input shape must be positive numbers, got {text!r}")
    return shape


def _module_of(key: str) -> str:
    return key.rpartition(".")[0]


def wrapper_prefix(model_keys: list[str], source_keys) -> str | None:
    """The ``module.``/``model.`` prefix before every one of the model's keys in the checkpoint.

    ``""`` when the keys are there as they are; None when no such prefix explains them, or when the
    architecture's own keys start that way (then the prefix is part of the names, not a wrapper).
    """
    if all(k in source_keys for k in model_keys):
        return ""
    if not model_keys or any(_WRAPPER_PREFIX.match(k) for k in model_keys):
        return None
    seen: dict[str, None] = {}
    for key in source_keys:
        if (m := _WRAPPER_PREFIX.match(key)) is not None:
            seen.setdefault(m.group(0))
    for prefix in seen:
        if all(prefix + k in source_keys for k in model_keys):
            return prefix
    return None


def _source_model(src: Source, source_model_spec: str | None) -> tuple[nn.Module, str]:
    spec_text = source_model_spec
    if spec_text is None:
        if looks_like_model_spec(src.spec):
            spec = parse_spec(src.spec)
            spec_text = spec.text.replace(f":{spec.weights}", "", 1) if spec.weights else spec.text
        else:
            raise MappingError(f"cannot run the source {src.spec!r}: it is a checkpoint without a model; "
                               "name its architecture with --source-model SPEC")
    model = build_model(spec_text, device="cpu", seed=getattr(src, "seed", 0))
    state = model.state_dict()
    prefix = wrapper_prefix(list(state), src.tensors)
    if prefix is None:
        missing = [k for k in state if k not in src.tensors]
        raise MappingError(f"source model {spec_text!r} has keys the checkpoint lacks, e.g. {missing[0]!r}; "
                           "name the checkpoint's architecture with --source-model SPEC")
    with torch.no_grad():
        for key, value in state.items():
            value.copy_(src.read(prefix + key))
    return model.eval(), prefix


def source_model(source: Source | str, source_model_spec: str | None = None) -> nn.Module:
    """A live model holding the source's tensors: needed to run the source side.

    A checkpoint saved from a wrapper (``module.`` from DataParallel, ``model.``) fills the bare
    architecture, as ``map`` pairs such keys.
    """
    with opened_source(source) as src:  # the model holds copies: a Source opened here is closed again
        return _source_model(src, source_model_spec)[0]


def _strip_sources(mapping: Mapping, prefix: str) -> Mapping:
    """The mapping in the bare model's names: ``prefix`` taken off each source key that has it."""
    bare = mapping.copy()
    for entry in bare:
        entry.sources = [s[len(prefix):] if s.startswith(prefix) else s for s in entry.sources]
    return bare


def _compare(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=0, eps=1e-12).item()
    rel = ((a - b).norm() / b.norm().clamp_min(1e-12)).item()
    return cos, rel


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def verify_models(
    source: nn.Module,
    target: nn.Module,
    mapping: Mapping,
    input_shape: tuple[int, ...] = (2, 3, 224, 224),
    seed: int = 0,
    cos_min: float = 0.999,
    rel_max: float = 1e-3,
    progress: Callable[[str], None] | None = None,
    source_prefix: str = "",
) -> VerifyReport:
    """Compare the outputs of each mapped module pair on one random batch.

    ``source_prefix`` goes before each source module the report names: the checkpoint's wrapper
    prefix (``module.``) when ``source`` is the bare architecture and ``mapping`` was stripped to fit it.
    """
    return run_steps(iter_verify_models(source, target, mapping, input_shape, seed, cos_min, rel_max,
                                        source_prefix), progress)


def iter_verify_models(source: nn.Module, target: nn.Module, mapping: Mapping,
                       input_shape: tuple[int, ...] = (2, 3, 224, 224), seed: int = 0, cos_min: float = 0.999,
                       rel_max: float = 1e-3, source_prefix: str = "") -> Generator[str, None, VerifyReport]:
    """:func:`verify_models` as a generator: yields before running each model, returns the report."""
    pairs, adapted, partial = _module_pairs(mapping, target)
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(seed))
    seen = yield from _record(source, target, pairs, x)
    compare = _LayerComparer(seen, cos_min, rel_max, source_prefix)
    report = VerifyReport(input_shape=tuple(input_shape))
    for tmod, bare in pairs.items():
        if tmod in partial:
            report.layers.append(LayerCheck(tmod, source_prefix + bare, NOT_COMPARED,
                                            note="partly mapped (some tensors keep their init)"))
        else:
            report.layers.append(compare(tmod, bare))
    for tmod in sorted(adapted - set(pairs)):
        report.layers.append(LayerCheck(tmod, "", NOT_COMPARED, note="adapted by a transform"))
    return report


def _module_pairs(mapping: Mapping, target: nn.Module) -> tuple[dict[str, str], set[str], set[str]]:
    """Target module -> the source module its copied weights come from; the modules filled by a
    transform; and those of the pairs that keep some tensors of their own init (partly mapped)."""
    pairs: dict[str, str] = {}
    for entry in mapping:
        if entry.transform is not None:
            continue
        tmod, smod = _module_of(entry.target), _module_of(entry.source)
        # a module's weight decides its partner; a bias alone is used only if no weight is mapped
        if tmod not in pairs or entry.target.endswith(".weight"):
            pairs[tmod] = smod
    adapted = {_module_of(e.target) for e in mapping if e.transform is not None}
    own_keys: dict[str, list[str]] = {}
    for key in target.state_dict():
        own_keys.setdefault(_module_of(key), []).append(key)
    partial = {m for m in pairs if any(k not in mapping.entries for k in own_keys.get(m, []))}
    return pairs, adapted, partial


#: ("s" or "t", module name) -> (its first input, its first output), as the forward hooks saw them
_Seen = dict[tuple[str, str], tuple[torch.Tensor | None, torch.Tensor | None]]


def _record(source: nn.Module, target: nn.Module, pairs: dict[str, str], x: torch.Tensor
            ) -> Generator[str, None, _Seen]:
    """Run both models on ``x`` with forward hooks on the paired modules (and the source's other
    weighted modules); what each module received and returned."""
    t_modules, s_modules = dict(target.named_modules()), dict(source.named_modules())
    seen: _Seen = {}
    handles = []

    def hook(side: str, name: str):
        def record(module, inputs, output):
            t_in, t_out = _first_tensor(inputs), _first_tensor(output)
            # clone: in-place ops later in forward() (ReLU(inplace), +=) would change what we saw
            seen[(side, name)] = (t_in.clone() if t_in is not None else None, t_out.clone() if t_out is not None else None)
        return record

    hooked: set[str] = set()
    for tmod, smod in pairs.items():
        if tmod in t_modules and smod in s_modules:
            handles.append(t_modules[tmod].register_forward_hook(hook("t", tmod)))
            if smod not in hooked:
                handles.append(s_modules[smod].register_forward_hook(hook("s", smod)))
                hooked.add(smod)
    # the source's other weighted modules too: a target module filled from the wrong one is then compared with
    # the module that saw its input (its counterpart), not left "not compared" because nobody maps from that one
    for name, module in s_modules.items():
        if name not in hooked and any(True for _ in module.parameters(recurse=False)):
            handles.append(module.register_forward_hook(hook("s", name)))
            hooked.add(name)
    try:
        for side, model in (("source", source.eval()), ("target", target.eval())):
            yield f"running the {side} model"
            with torch.no_grad():  # per run: the grad mode is not held across a yield
                try:
                    model(x)
                except Exception as exc:  # the user's models; their failure is their message
                    raise SppError(f"the {side} model failed on input {tuple(x.shape)}: {exc}; "
                                   "pass a fitting --input-shape") from exc
    finally:
        for h in handles:
            h.remove()
    return seen


class _LayerComparer:
    """Checks one target module against its counterpart: the source module that saw the same input
    (which is where its weights should come from), preferring the one the mapping names."""

    def __init__(self, seen: _Seen, cos_min: float, rel_max: float, source_prefix: str) -> None:
        self.seen, self.cos_min, self.rel_max, self.prefix = seen, cos_min, rel_max, source_prefix
        self.by_input: dict[tuple, list[str]] = {}  # source modules by the shape of what they received
        for (side, name), (s_in, _out) in seen.items():
            if side == "s" and s_in is not None:
                self.by_input.setdefault(tuple(s_in.shape), []).append(name)

    def counterpart(self, t_in: torch.Tensor, prefer: str) -> str | None:
        names = self.by_input.get(tuple(t_in.shape), [])
        for name in sorted(names, key=lambda n: n != prefer):
            s_in = self.seen[("s", name)][0]  # by_input holds only names whose input was recorded
            if s_in is not None and _compare(s_in, t_in)[1] <= self.rel_max:
                return name
        return None

    def __call__(self, tmod: str, bare: str) -> LayerCheck:
        smod = self.prefix + bare  # as the report names it
        t_in, t_out = self.seen.get(("t", tmod), (None, None))
        if t_out is None or t_in is None or ("s", bare) not in self.seen:
            return LayerCheck(tmod, smod, NOT_COMPARED, note="not run by forward()")
        partner = self.counterpart(t_in, bare)
        if partner is None:
            return LayerCheck(tmod, smod, NOT_COMPARED, note="inputs differ between the models")
        s_out = self.seen[("s", partner)][1]
        if s_out is None or t_out.shape != s_out.shape:
            shape = tuple(s_out.shape) if s_out is not None else None
            return LayerCheck(tmod, smod, DISAGREE, note=f"output shapes {shape} vs {tuple(t_out.shape)}")
        if not t_out.any() and not s_out.any():
            return LayerCheck(tmod, smod, NOT_INFORMATIVE, note="both outputs are all zeros (a zero-initialised "
                                                                "layer?): this input cannot tell right weights from wrong")
        cos, rel = _compare(t_out, s_out)
        if cos >= self.cos_min and rel <= self.rel_max:
            return LayerCheck(tmod, smod, AGREE, cos, rel, "")
        note = "same input, different output: wrong weights for this layer?"
        if partner != bare:
            note = f"same input as source {self.prefix + partner!r}, different output: its weights come from {smod!r}"
        return LayerCheck(tmod, smod, DISAGREE, cos, rel, note)


def verify_mapping(
    mapping: Mapping,
    source: Any = None,
    target_spec: str | None = None,
    source_model_spec: str | None = None,
    input_shape: tuple[int, ...] = (2, 3, 224, 224),
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> VerifyReport:
    """Build both models, apply the mapping to the target, and compare them layer by layer.
    The generator form is :func:`iter_verify` (``progress`` gets what it yields)."""
    return run_steps(iter_verify(mapping, source, target_spec, source_model_spec, input_shape, seed), progress)


def iter_verify(
    mapping: Mapping,
    source: Any = None,
    target_spec: str | None = None,
    source_model_spec: str | None = None,
    input_shape: tuple[int, ...] = (2, 3, 224, 224),
    seed: int = 0,
) -> Generator[str, None, VerifyReport]:
    """:func:`verify_mapping` as a generator: yields what it is about to do, returns the report;
    closed, it stops before the next step."""
    # the source model holds copies of its tensors: a Source opened here is closed once it is built
    with opened_source(source if source is not None else mapping.source_spec) as src:
        spec = target_spec or mapping.target_spec
        if not spec:
            raise MappingError("the mapping names no target model spec; pass one (--target)")
        yield "building the source model"
        s_model, prefix = _source_model(src, source_model_spec)
    bare = _strip_sources(mapping, prefix) if prefix else mapping
    yield "building and filling the target model"
    t_model = build_model(spec, device="cpu", seed=seed)
    apply_mapping(t_model, s_model.state_dict(), bare, verify_sha256=False)
    return (yield from iter_verify_models(s_model, t_model, bare, input_shape, seed, source_prefix=prefix))
