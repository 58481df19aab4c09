"""Export a mapping to other loaders: a plain Python function, HF ``key_mapping``, MMEngine ``revise_keys``.

Each snippet runs without spp_gui. Renames compress into a few regex rules (a changed prefix,
layer and expert indices carried as groups); every rule set is checked, over every source key,
by simulating the client that will run it: transformers 4.x (the first matching rule wins, then
its base-model prefix handling), transformers 5.x (every matching rule in turn with its own
pattern rules, its built-in legacy renames, then its prefix handling) and MMEngine (every rule in
turn, ``re.sub``). Keys the compact rules get wrong fall back to exact rules. Regex formats cannot
express transforms: those entries are reported, never dropped silently.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .combine import check_combine_params
from .errors import MappingError, SppError
from .mapping import Mapping
from .transforms import check_params

FORMATS = ("python", "hf-key-mapping", "mmengine-revise-keys")
UNUSED_PREFIX = "spp_gui_unused."
_TEMP = "@@"  # rules applied in turn: renamed keys carry this until the last rule strips it
#: The client versions the exports are loaded with by tests/core/test_export_clients*.py.
TESTED_WITH = {"transformers4": "4.57.1", "transformers5": "5.24.0", "mmengine": "0.10.7"}

Rule = tuple[str, str]


@dataclass
class Export:
    """A snippet and the entries it could not express (``target <- source: why``)."""

    format: str
    text: str
    not_expressed: list[str] = field(default_factory=list)
    #: the rule sets printed, by client ("transformers4", "transformers5", "mmengine")
    rules: dict[str, list[Rule]] = field(default_factory=dict)
    #: entries one client version cannot load under their name (``target <- source: why``)
    not_loaded: list[str] = field(default_factory=list)


def export_mapping(mapping: Mapping, fmt: str, source_keys: Iterable[str] | None = None,
                   target_keys: Iterable[str] | None = None, base_model_prefix: str | None = None) -> Export:
    """The mapping as ``fmt`` (one of FORMATS).

    With ``source_keys`` and ``target_keys`` (all keys of each side) the regex formats rename
    source keys the mapping leaves unused only where they would land on a target name; without
    ``target_keys`` every unused source key is diverted to ``spp_gui_unused.<key>``.
    ``base_model_prefix`` is the transformers model's (``resnet`` for ResNetForImageClassification):
    both transformers versions add or strip it, so hf-key-mapping rules are checked with it; when
    None it is read from an ``hf:`` target spec, where there is one.
    """
    if fmt == "python":
        return Export(fmt, python_function(mapping))
    if fmt not in FORMATS:
        raise MappingError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    _check_transforms(mapping)
    plain = {e.source: e.target for e in mapping if e.transform is None}
    skipped = [_one_line(f"{e.target} <- {' + '.join(e.sources)}: {e.transform['op']} joins several sources; "
                         "a rename rule cannot combine tensors") if e.many else
               _one_line(f"{e.target} <- {e.source}: transform {e.transform['op']} has no regex form")
               for e in mapping if e.transform is not None]
    keys = list(dict.fromkeys([*(source_keys or ()), *plain, *(s for e in mapping for s in e.sources)]))
    sources_of = Counter(plain.values())
    for key, n in sources_of.items():
        if n > 1:
            raise MappingError(f"target key {key!r} is filled twice")
    fanned = Counter(e.source for e in mapping if e.transform is None)
    for e in mapping:
        if e.transform is None and fanned[e.source] > 1:
            raise MappingError(f"source key {e.source!r} fills several targets; a rename rule gives one name")
    targets = set(target_keys) if target_keys is not None else None
    if fmt == "mmengine-revise-keys":
        client = MMEngineClient(targets)
        rules, lost = regex_rules(plain, keys, client)
        missed = _lost(lost, plain, "MMEngine")
        body = "revise_keys = [\n" + "".join(f"    ({_raw(p)}, {_raw(r)}),\n" for p, r in rules) + "]\n"
        usage = [f"# MMEngine revise_keys: each (pattern, repl) applied in turn with re.sub "
                 f"(checked against mmengine {TESTED_WITH['mmengine']})",
                 "# load_checkpoint(model, path, revise_keys=revise_keys)  (mmengine.runner)"]
        return Export(fmt, _header(mapping, usage, skipped, missed) + body, skipped, {"mmengine": rules}, missed)
    prefix_note = ""
    if base_model_prefix is None:
        base_model_prefix, prefix_note = _hf_prefix(mapping.target_spec)
    v4 = HF4Client(targets, base_model_prefix, keys)
    v5 = HF5Client(targets, base_model_prefix)
    rules4, lost4 = regex_rules(plain, keys, v4)
    both = not lost4 and not check_rules(v5, rules4, plain, keys)
    prefix_line = (f"# base-model prefix {base_model_prefix!r} (transformers adds or strips it) simulated"
                   if base_model_prefix else f"# no base-model prefix simulated{prefix_note}")
    if both:
        usage = ["# transformers key_mapping, one rule set for both major versions: checked by simulating",
                 f"# transformers 4.x (first matching rule wins; loaded with {TESTED_WITH['transformers4']}) and",
                 f"# transformers >= 5.0 (every matching rule in turn; loaded with {TESTED_WITH['transformers5']})",
                 prefix_line,
                 "# model = AutoModel.from_pretrained(path, key_mapping=key_mapping)"]
        body = _dict_text("key_mapping", rules4)
        return Export(fmt, _header(mapping, usage, skipped) + body, skipped,
                      {"transformers4": rules4, "transformers5": rules4})
    rules5, lost5 = regex_rules(plain, keys, v5)
    missed = _lost(lost4, plain, "transformers 4.x") + _lost(lost5, plain, "transformers >= 5.0")
    usage = ["# transformers key_mapping: the two major versions apply rules differently, so one rule set each,",
             "# checked by simulating each: [4] for transformers 4.x, [5] for transformers >= 5.0; the last line",
             "# picks the installed version's",
             prefix_line,
             "# model = AutoModel.from_pretrained(path, key_mapping=key_mapping)"]
    # one statement, like the single set: the dict of both sets, indexed by the installed major version
    body = ("key_mapping = {\n"
            f"    4: {{  # transformers 4.x: the first matching rule wins (loaded with {TESTED_WITH['transformers4']})\n"
            + "".join(f"        {_raw(p)}: {_raw(r)},\n" for p, r in rules4)
            + "    },\n"
            f"    5: {{  # transformers >= 5.0: every matching rule in turn (loaded with {TESTED_WITH['transformers5']})\n"
            + "".join(f"        {_raw(p)}: {_raw(r)},\n" for p, r in rules5)
            + "    },\n"
            "}[4 if __import__('importlib.metadata').metadata.version('transformers').startswith('4.') else 5]\n")
    return Export(fmt, _header(mapping, usage, skipped, missed) + body, skipped,
                  {"transformers4": rules4, "transformers5": rules5}, missed)


def _dict_text(name: str, rules: list[Rule]) -> str:
    return f"{name} = {{\n" + "".join(f"    {_raw(p)}: {_raw(r)},\n" for p, r in rules) + "}\n"


def _lost(keys: list[str], plain: dict[str, str], client: str) -> list[str]:
    return [_one_line(f"{plain[k]} <- {k}: {client} cannot load it under that name" if k in plain else
                      f"(unused) <- {k}: {client} loads it onto a target key regardless of the rules")
            for k in keys]


def _hf_prefix(target_spec: str) -> tuple[str | None, str]:
    """The base-model prefix of an ``hf:`` target spec's model (built on meta), and a note when none is known."""
    if not target_spec.startswith("hf:"):
        return None, " (the target is not an hf: spec; pass base_model_prefix to check one)"
    try:
        from .specs import build_model

        model = build_model(target_spec, device="meta")
    except (SppError, ImportError, OSError, ValueError) as exc:
        return None, f" (target {target_spec!r} not built: {_one_line(str(exc))[:200]})"
    return getattr(model, "base_model_prefix", "") or None, ""


def _one_line(text: str) -> str:
    """``text`` with every non-printable character escaped: a comment that stays one comment.

    A mapping's specs and keys come from a file someone sent; a newline or carriage return in
    one would otherwise end the comment and make the rest of it code that runs on import.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _title(mapping: Mapping) -> str:
    return _one_line(f"# spp-gui mapping {mapping.source_spec or '(source)'} -> {mapping.target_spec or '(target)'}")


def _header(mapping: Mapping, usage: list[str], skipped: list[str], missed: Sequence[str] = ()) -> str:
    lines = [_title(mapping), *usage]
    lines += [f"# not expressed: {_one_line(s)}" for s in skipped]
    lines += [f"# not loaded: {_one_line(s)}" for s in missed]
    return "\n".join(lines) + "\n"


def _raw(text: str) -> str:
    # repr() always yields a valid literal; a raw string reads better for regexes where it is
    # safe: printable (no line breaks, no NUL), no quote, no trailing backslash
    if text.isprintable() and "'" not in text and not text.endswith("\\"):
        return f"r'{text}'"
    return repr(text)


def _check_transforms(mapping: Mapping) -> None:
    """Refuse a transform whose op or parameters are not the plain data the snippets embed."""
    for e in mapping:
        why = check_combine_params(e.transform) if e.many else check_params(e.transform) if e.transform else None
        if why is not None:
            raise MappingError(f"entry {e.target!r}: {why}; fix or remove its transform before exporting")


# ---------------------------------------------------------------------------------------------
# the clients: how each one renames a checkpoint key, reproduced from its source


class Corrupted(SppError):
    """transformers 4.x refuses the whole checkpoint (a base-model checkpoint naming a head key)."""


def apply_first_match(rules: list[Rule], key: str) -> str:
    """transformers 4.x key_mapping: the first pattern that matches renames the key (re.subn)."""
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def apply_in_turn(rules: list[Rule], key: str) -> str:
    """MMEngine's revise_keys: every rule in order, each on the previous result (re.sub)."""
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def _hf5_process_target(pattern: str) -> str:
    """transformers 5.x ``process_target_pattern``: what becomes of a key_mapping value."""
    pattern = pattern.removeprefix("^")
    pattern = re.sub(r"\(\?.+?\)?\)", "", pattern)
    group = re.search(r"\(.+?\)", pattern)
    if group:
        pattern = pattern.replace(group.group(0), r"\1", 1)
    return pattern.replace(r"\.", ".")


class HF5Rule:
    """One transformers 5.x ``WeightRenaming(source, target)``: ``WeightTransform.__init__`` and
    ``rename_source_key`` (search; only ``\\1`` is substituted; the matched text is replaced
    literally, its first occurrence)."""

    def __init__(self, source: str, target: str):
        self.target = _hf5_process_target(target)
        if r"\1" in source:
            raise MappingError(f"transformers 5.x rule {source!r}: a source pattern may not hold \\1")
        if target.startswith("^") and not source.startswith("^"):
            source = "^" + source
        pattern = source.replace("*.", r".*\.")
        if re.search(r"[a-zA-Z0-9]$", pattern):
            pattern += r"(?!\w)"
        self.compiled = re.compile(f"(?P<g0>{pattern})")

    def rename(self, key: str) -> str:
        m = self.compiled.search(key)
        if m is None:
            return key
        repl = self.target
        if r"\1" in repl:
            repl = repl.replace(r"\1", m.group(self.compiled.groupindex["g0"] + 1))
        return key.replace(m.group(0), repl, 1)


#: transformers 5.x ``get_checkpoint_conversion_mapping("legacy")``: applied after key_mapping to every model
HF5_LEGACY = [("LayerNorm.gamma", "LayerNorm.weight"), ("LayerNorm.beta", "LayerNorm.bias"),
              (".weight_g", ".parametrizations.weight.original0"), (".weight_v", ".parametrizations.weight.original1"),
              (r"^model\.language_model\.model|^language_model\.model\.model", "model.language_model")]


def hf4_fix_key(key: str) -> str:
    """transformers 4.x ``PreTrainedModel._fix_state_dict_key_on_load`` (before key_mapping runs)."""
    if key.endswith("LayerNorm.beta"):
        return key.replace("LayerNorm.beta", "LayerNorm.bias")
    if key.endswith("LayerNorm.gamma"):
        return key.replace("LayerNorm.gamma", "LayerNorm.weight")
    if key.endswith("weight_g"):
        return key.replace("weight_g", "parametrizations.weight.original0")
    if key.endswith("weight_v"):
        return key.replace("weight_v", "parametrizations.weight.original1")
    return key


class _Client:
    name = ""
    #: rules applied in turn (else the first that matches wins)
    sequential = False
    #: most capture groups a rule may use (None: any)
    max_groups: int | None = None

    def __init__(self, targets: set[str] | None):
        self.targets = targets

    def sees(self, key: str) -> str:
        """The name the rules are matched against."""
        return key

    def want(self, target: str) -> str | None:
        """The name the rules must produce for the key to end at ``target`` (None: no name does)."""
        return target

    def literal(self, text: str) -> str:
        """``text`` as a replacement that inserts it unchanged."""
        return text.replace("\\", "\\\\")

    def unused_name(self, key: str) -> str:
        """Where an unused key that would land on a target name is sent instead."""
        return UNUSED_PREFIX + key

    def one(self, rule: Rule, key: str) -> str | None:
        """``key`` renamed by one rule, or None where the rule does not match."""
        new, n = re.subn(rule[0], rule[1], key)
        return new if n else None

    def post(self, key: str) -> str:
        """The client's own renames after the rules."""
        return key

    def run(self, rules: list[Rule], key: str) -> str:
        """``key`` as the rules (and the client's own renames) leave it."""
        key = self.sees(key)
        for rule in rules:
            new = self.one(rule, key)
            if new is not None:
                key = new
                if not self.sequential:
                    break
        return self.post(key)

    def land(self, renamed: str, original: str) -> str | None:
        """The model key a renamed checkpoint key fills (None: dropped); may raise Corrupted."""
        return renamed

    def winner(self, keys: list[str]) -> str | None:
        """Which of several checkpoint keys renamed to one model key fills it (None: the load fails)."""
        return None


class MMEngineClient(_Client):
    """mmengine ``_load_checkpoint_to_model``: ``re.sub(p, r, k)`` for each rule in turn, over every key
    (a dict comprehension: of two keys renamed alike, the later one stays)."""

    name = "mmengine"
    sequential = True

    def winner(self, keys: list[str]) -> str | None:
        return keys[-1]


class HF4Client(_Client):
    """transformers 4.x ``_load_pretrained_model`` / ``_get_key_renaming_mapping``.

    ``_fix_state_dict_key_on_load`` first, then the first matching key_mapping rule (re.subn).
    The prefix mode comes from the checkpoint's ORIGINAL keys: none starting with the base-model
    prefix while the model has it means every renamed key gets ``prefix.`` added (and one naming a
    head-only key raises "state dictionary ... corrupted"); keys with it into a model without it
    means only renamed keys starting with ``prefix.`` are kept, stripped.
    """

    name = "transformers4"

    def __init__(self, targets: set[str] | None, prefix: str | None, checkpoint_keys: list[str]):
        super().__init__(targets)
        self.prefix = p = prefix or ""
        has = bool(p) and any(k.startswith(p) for k in checkpoint_keys)
        expects = bool(p) and targets is not None and any(t.startswith(p + ".") for t in targets)
        self.add_prefix = not has and expects
        self.strip_prefix = has and not expects and targets is not None
        self.head_only: set[str] = set()
        self.base_keys: set[str] = set()
        if self.add_prefix and targets is not None:
            self.head_only = {t for t in targets if not t.startswith(p + ".")}
            self.base_keys = {t[len(p) + 1:] for t in targets if t.startswith(p + ".")}

    def sees(self, key: str) -> str:
        return hf4_fix_key(key)

    def want(self, target: str) -> str | None:
        if self.add_prefix:
            return target[len(self.prefix) + 1:] if target.startswith(self.prefix + ".") else None
        if self.strip_prefix:
            return self.prefix + "." + target
        return target

    def land(self, renamed: str, original: str) -> str | None:
        if self.add_prefix:
            if renamed in self.head_only and renamed not in self.base_keys:
                raise Corrupted(renamed)
            return self.prefix + "." + renamed
        if self.strip_prefix:
            return renamed[len(self.prefix) + 1:] if renamed.startswith(self.prefix + ".") else None
        return renamed


class HF5Client(_Client):
    """transformers 5.x ``rename_source_key``: the user's key_mapping (each rule in turn), the
    legacy renames, then the base-model prefix added or stripped where the model has that key.
    (Conversions registered for a model type also follow; none of them touches the models tested.)"""

    name = "transformers5"
    sequential = True
    max_groups = 1

    def __init__(self, targets: set[str] | None, prefix: str | None):
        super().__init__(targets)
        self.prefix = prefix
        self.legacy = [HF5Rule(s, t) for s, t in HF5_LEGACY]
        self._compiled: dict[Rule, HF5Rule] = {}

    def literal(self, text: str) -> str:
        return text  # a 5.x target pattern is literal, apart from ^, \1, (...) and \.

    def want(self, target: str) -> str | None:
        return target if _hf5_process_target(target) == target else None

    def unused_name(self, key: str) -> str:
        return UNUSED_PREFIX + re.sub(r"[()\\^]", "_", key)

    def one(self, rule: Rule, key: str) -> str | None:
        if rule not in self._compiled:
            self._compiled[rule] = HF5Rule(*rule)
        r = self._compiled[rule]
        try:
            return r.rename(key) if r.compiled.search(key) else None
        except IndexError:  # a (...) in the target became \1 with no group to fill it: the load fails
            raise Corrupted(key) from None

    def winner(self, keys: list[str]) -> str | None:
        # keys are loaded in dot_natural_key order; the first one renamed to a model key fills it
        return min(keys, key=_dot_natural_key)

    def post(self, key: str) -> str:
        for r in self.legacy:
            key = r.rename(key)
        return key

    def land(self, renamed: str, original: str) -> str | None:
        meta = self.targets
        if meta is not None and renamed not in meta and original in meta:
            renamed = original  # convert_and_load_state_dict_in_model: a model key renamed off the model keeps its name
        p = self.prefix
        if not p or meta is None:
            return renamed
        stripped = re.sub(f"^{p}.", "", renamed, count=1)
        if renamed.startswith(p) and stripped in meta:
            return stripped
        if f"{p}.{renamed}" in meta:
            return f"{p}.{renamed}"
        return renamed


def _dot_natural_key(s: str) -> list[tuple]:
    """transformers 5.x ``dot_natural_key``: the order checkpoint keys are loaded in."""
    parts: list[tuple] = []
    for part in s.split("."):
        if part.isdigit():
            parts.append((0, int(part)))
        else:
            text = part.rstrip("0123456789")
            digits = part[len(text):]
            parts.append((1, text, int(digits)) if digits else (1, text))
    return parts


def check_rules(client: _Client, rules: list[Rule], pairs: dict[str, str], keys: list[str]) -> list[str]:
    """Source keys the client would load wrong with ``rules``: a mapped key not on its target, an
    unused key on a target name (or, without target names, not diverted), two keys on one name,
    or (transformers 4.x) a key that makes the loader refuse the checkpoint."""
    runner = _Runner(client, rules)
    wrong: list[str] = []
    on: dict[str, list[str]] = {}
    targets = client.targets
    for key in keys:
        try:
            renamed = runner.run(key)
            final = client.land(renamed, key)
        except Corrupted:
            wrong.append(key)
            continue
        want = pairs.get(key)
        if want is not None:
            bad = final != want
        else:  # an unused key is wrong where it fills a target key (decided below, with the others there)
            bad = targets is None and not renamed.startswith(UNUSED_PREFIX)
        if final is not None and targets is not None and final in targets:
            on.setdefault(final, []).append(key)
        if bad:
            wrong.append(key)
    for final, claim in on.items():  # several keys on one model key: the client keeps one
        kept = claim[0] if len(claim) == 1 else client.winner(claim)
        if kept is None:
            wrong += claim
        elif pairs.get(kept) != final:
            wrong += [k for k in claim if k == kept or k in pairs]
        else:
            wrong += [k for k in claim if k != kept and k in pairs]
    return list(dict.fromkeys(wrong))


class _Runner:
    """``client.run`` over many keys, fast with many exact ``^key$`` rules (looked up, confirmed by the rule)."""

    def __init__(self, client: _Client, rules: list[Rule]):
        self.client, self.rules = client, rules
        self.exact: dict[str, list[int]] = {}
        self.generic: list[int] = []
        for i, (p, _) in enumerate(rules):
            lit = _exact_literal(p)
            if lit is None:
                self.generic.append(i)
            else:
                self.exact.setdefault(lit, []).append(i)

    def run(self, key: str) -> str:
        client = self.client
        if len(self.exact) < 16:
            return client.run(self.rules, key)
        key = client.sees(key)
        pos = 0
        while True:
            ex = [i for i in self.exact.get(key, ()) if i >= pos]
            for i in sorted(ex + self.generic[bisect_left(self.generic, pos):]):
                new = client.one(self.rules[i], key)
                if new is not None:
                    key, pos = new, i + 1
                    break
            else:
                return client.post(key)
            if not client.sequential:
                return client.post(key)


def _exact_literal(pattern: str) -> str | None:
    """The key an exact rule (``^key$``, ``^(?!@@)key$``) names, else None."""
    body = pattern.removeprefix("^").removeprefix("(?!" + _TEMP + ")")
    if not body.endswith("$") or body.endswith("\\$"):
        return None
    body = body[:-1]
    text = re.sub(r"\\(.)", r"\1", body, flags=re.S)
    return text if re.escape(text) == body else None


# ---------------------------------------------------------------------------------------------
# generating rules


def _esc(parts: list[str]) -> str:
    return r"\.".join(re.escape(p) for p in parts)


def _prefix_rule(src: str, tgt: str, client: _Client) -> Rule | None:
    """A rule that only drops or adds a leading prefix (``module.``, ``backbone.``), if that is all."""
    if src != tgt and src.endswith("." + tgt):
        return "^" + re.escape(src[: len(src) - len(tgt)]), ""
    if src != tgt and tgt.endswith("." + src):
        return "^", client.literal(tgt[: len(tgt) - len(src)])
    return None


def _generalise(src: str, tgt: str, client: _Client) -> list[Rule] | None:
    """Rules turning ``src`` into ``tgt`` and its siblings: changed prefix, indices as groups.

    Where the indices differ (a layer inserted) they stay literal: one rule per layer. transformers
    5.x substitutes only ``\\1``: there a rename with changed text between two indices becomes
    stages applied in turn, each carrying the part already renamed as its one group.
    """
    a, b = src.split("."), tgt.split(".")
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n] and not a[-1 - n].isdigit():
        n += 1
    head_a, head_b, tail = a[: len(a) - n], b[: len(b) - n], a[len(a) - n:]
    nums_a = [p for p in head_a if p.isdigit()]
    nums_b = [p for p in head_b if p.isdigit()]
    if nums_a != nums_b:
        if not tail:
            return None
        return [("^" + _esc(head_a) + r"\.", client.literal(".".join(head_b) + "."))]
    if client.max_groups is not None and len(nums_a) > client.max_groups:
        return _stages(head_a, head_b, tail, client)
    pattern = [r"(\d+)" if p.isdigit() else re.escape(p) for p in head_a]
    groups = iter(range(1, len(nums_a) + 1))
    repl = [f"\\{next(groups)}" if p.isdigit() else client.literal(p) for p in head_b]
    if not tail:
        return [("^" + r"\.".join(pattern) + "$", ".".join(repl))]
    return [("^" + "".join(p + r"\." for p in pattern), "".join(p + "." for p in repl))]


def _stages(head_a: list[str], head_b: list[str], tail: list[str], client: _Client) -> list[Rule] | None:
    """transformers 5.x: one rule per changed stretch between indices, applied in turn, each with one group."""
    def split(parts: list[str]) -> list[list[str]]:
        segs: list[list[str]] = [[]]
        for p in parts:
            if p.isdigit():
                segs.append([])
            else:
                segs[-1].append(p)
        return segs

    sa, sb = split(head_a), split(head_b)
    if not sa[0] or not sb[0]:
        return None
    rules: list[Rule] = []
    last = len(sa) - 1
    for s in range(len(sa)):
        if sa[s] == sb[s] and s > 0:
            continue
        after = (r"(?=\.\d+(?:\.|$))" if s < last else
                 (r"(?=\." + re.escape(tail[0]) + r"(?:\.|$))") if tail else "$")
        if s == 0:
            rules.append(("^" + _esc(sa[0]) + after, client.literal(".".join(sb[0]))))
            continue
        ctx = r"\d+" + "".join((r"\." + _esc(sb[j]) if sb[j] else "") + r"\.\d+" for j in range(1, s))
        pat = "^" + _esc(sb[0]) + r"\.(" + ctx + ")" + (r"\." + _esc(sa[s]) if sa[s] else "") + after
        rep = client.literal(".".join(sb[0])) + r".\1" + ("." + client.literal(".".join(sb[s])) if sb[s] else "")
        rules.append((pat, rep))
    return rules


def regex_rules(pairs: dict[str, str], source_keys: list[str], client: _Client) -> tuple[list[Rule], list[str]]:
    """Rules that rename each source key in ``pairs`` to its target and keep every other source key
    away from target names (all names when the client knows none), checked by simulating ``client``
    over every source key. Returns the rules and the mapped keys no rule brings to their target."""
    want = {s: client.want(t) for s, t in pairs.items()}
    for s, t in pairs.items():  # rules applied in turn need none for a key that keeps its name
        if want[s] is None and client.sequential and client.sees(s) == t:
            want[s] = t
    impossible = [s for s, w in want.items() if w is None]
    counts: Counter[Rule] = Counter()
    stage: dict[Rule, int] = {}  # second and later stages of a 5.x rename carry on from the mark
    for s, w in want.items():
        seen = client.sees(s)
        if w is None or seen == w:
            continue  # a key that keeps its name needs no rule, only that none hits it
        single = _prefix_rule(seen, w, client)
        found = [single] if single is not None else _generalise(seen, w, client) or []
        for i, g in enumerate(found):
            if g != ("^", ""):
                counts[g] += 1
                stage[g] = max(stage.get(g, 0), i)
    # most specific first: under first-match semantics a broad rule would shadow the others
    generic = sorted((g for g, n in counts.items() if n >= 2), key=lambda g: (stage[g], -len(g[0]), g))
    later = {g for g in generic if stage[g]}
    checked = {s: t for s, t in pairs.items() if s not in impossible}
    exact: list[Rule] = []
    fixed: set[str] = set()
    best: tuple[list[Rule], list[str]] | None = None
    for _ in range(3):
        rules = _assemble(exact, generic, later, client)
        wrong = check_rules(client, rules, checked, source_keys)
        if not wrong:
            return rules, impossible
        if best is None or len(wrong) < len(best[1]):
            best = rules, wrong
        new = [k for k in wrong if k not in fixed]
        if not new:
            break  # what is still wrong no rule can fix (the client loads it regardless)
        for key in new:
            fixed.add(key)
            exact.append(_exact(key, checked, client))
    # the compact rules did not converge: one exact rule per key that must change
    exact = []
    for key in source_keys:
        if key in checked or _lands_on_target(client, key):
            rule = _exact(key, checked, client)
            if client.one(rule, client.sees(key)) != client.sees(key):
                exact.append(rule)
    rules = _assemble(exact, [], set(), client)
    wrong = check_rules(client, rules, checked, source_keys)
    if best is not None and len(best[1]) < len(wrong):
        rules, wrong = best
    return rules, impossible + wrong


def _lands_on_target(client: _Client, key: str) -> bool:
    """Whether ``key``, left as it is, would fill a target key (or make the loader refuse it)."""
    if client.targets is None:
        return True
    try:
        return client.land(client.run([], key), key) in client.targets
    except Corrupted:
        return True


def _exact(key: str, pairs: dict[str, str], client: _Client) -> Rule:
    seen = client.sees(key)
    target = pairs.get(key)
    name = client.want(target) if target is not None else None
    return "^" + re.escape(seen) + "$", client.literal(name if name is not None else client.unused_name(seen))


def _assemble(exact: list[Rule], generic: list[Rule], later: set[Rule], client: _Client) -> list[Rule]:
    rules = exact + generic
    if not client.sequential:
        return rules
    # A key renamed by one rule must not be renamed again by a later one: mark it, strip the mark last.
    # (?!@@) so that no rule, '^' included, touches a key an earlier rule has already renamed; a
    # later stage of one rename (transformers 5.x) carries on from the mark instead
    out = [("^" + _TEMP + p.removeprefix("^"), _TEMP + r) if (p, r) in later else
           ("^(?!" + _TEMP + ")" + p.removeprefix("^"), _TEMP + r) for p, r in rules]
    return out + [("^" + _TEMP, "")]


# ---------------------------------------------------------------------------------------------
# python

_HELPERS = {
    "slice": '''def _block(src, tgt):
    out = tgt.clone()
    idx = tuple(slice(0, min(a, b)) for a, b in zip(src.shape, tgt.shape))
    out[idx] = src[idx].to(out.dtype)
    return out
''',
    "select_rows": '''def _select_rows(src, tgt, rows):
    out = tgt.clone()
    for i, r in enumerate(rows):
        if r is not None:
            out[i] = src[r].to(out.dtype)
    return out
''',
    "in_channels": '''def _in_channels(src, tgt):
    n_src, n_tgt = src.shape[1], tgt.shape[1]
    w = src.float()
    if n_tgt == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        reps = -(-n_tgt // n_src)
        w = w.repeat(1, reps, *([1] * (src.dim() - 2)))[:, :n_tgt] * (n_src / n_tgt)
    return w.to(tgt.dtype)
''',
    "spp_grid": '''def _spp_grid(src, tgt, levels, bins):
    out_f, channels = src.shape[0], src.shape[1] // bins
    offset = sum(levels[: levels.index(bins)])
    out = tgt.clone()
    out.view(out_f, channels, sum(levels))[:, :, offset:offset + bins] = src.reshape(out_f, channels, bins)
    return out
''',
}
_HELPERS["chunk"] = '''def _chunk(src, dim, chunks, index, transpose):
    part = src.chunk(chunks, dim=dim)[index]
    return (part.t() if transpose else part).contiguous()
'''
_HELPERS["rope_permute"] = '''def _rope_permute(src, heads, to):
    # HF <-> Meta Llama: per head, rotary pairs as two halves (HF, rotate_half) or interleaved rows (Meta)
    half = src.shape[0] // heads // 2
    w = src.reshape(heads, half, 2, -1) if to == "hf" else src.reshape(heads, 2, half, -1)
    return w.transpose(1, 2).reshape(src.shape).contiguous()
'''
_HELPERS["concat"] = '''def _concat(parts, dim):
    import torch  # several sources joined in order (a many-to-one entry), in the dtype that holds them all

    dtype = parts[0].dtype
    for part in parts[1:]:
        dtype = torch.promote_types(dtype, part.dtype)
    return torch.cat([part.to(dtype) for part in parts], dim=dim)
'''
_CALLS = {
    "chunk": "_chunk(x, {dim!r}, {chunks!r}, {index!r}, {transpose!r})",
    "rope_permute": "_rope_permute(x, {heads!r}, {to!r})",
    "slice": "_block(x, t)",
    "pad": "_block(x, t)",
    "select_rows": "_select_rows(x, t, {rows!r})",
    "in_channels": "_in_channels(x, t)",
    "transpose": "x.permute(*{dims!r}).contiguous()",
    "reshape": "x.reshape(t.shape)",
    "spp_grid": "_spp_grid(x, t, {levels!r}, {bins!r})",
}


def python_function(mapping: Mapping) -> str:
    """A self-contained ``remap(source, target)`` returning the target's tensors from the mapping."""
    _check_transforms(mapping)
    for e in mapping:
        if e.transform is not None and not e.many and e.transform.get("op") not in _CALLS:
            raise MappingError(f"entry {e.target!r}: transform {e.transform.get('op')!r} has no Python form")
    ops = {e.transform["op"] for e in mapping if e.transform is not None and not e.many}
    many = [e for e in mapping if e.many]
    needed = sorted({"slice" if op == "pad" else op for op in ops} & set(_HELPERS)) + (["concat"] if many else [])
    helpers = [_HELPERS[op] for op in needed]
    lines = [_title(mapping),
             "# usage: model.load_state_dict(remap(source_state_dict, model.state_dict()), strict=False)",
             "", *dict.fromkeys(helpers),
             "MAPPING = {  # target key: source key" + (" (a tuple: several, joined in order)" if many else "")]
    lines += [f"    {e.target!r}: {e.sources if e.many else e.source!r}," for e in mapping]
    lines.append("}")
    lines.append("")
    lines.append("")
    lines.append("def remap(source, target=None):")
    lines.append('    """Tensors for the target keys, from ``source`` (a state dict); ``target`` is the')
    lines.append('    target model\'s state dict, needed only where a transform keeps part of its init."""')
    if many:
        lines.append("    out = {t: source[s] for t, s in MAPPING.items() if isinstance(s, str)}")
    else:
        lines.append("    out = {t: source[s] for t, s in MAPPING.items()}")
    if ops:
        lines.append("    if target is None:")
        lines.append("        raise ValueError('remap: pass the target state dict; transforms keep part of its init')")
    for e in many:
        lines.append(f"    out[{e.target!r}] = _concat([source[s] for s in MAPPING[{e.target!r}]], "
                     f"{e.combine_op.get('dim', 0)!r})")
    for e in mapping:
        if e.transform is None or e.many:
            continue
        params = {k: v for k, v in e.transform.items() if k != "op"}
        params.setdefault("dims", [1, 0])
        params.setdefault("transpose", False)
        call = _CALLS[e.transform["op"]].format(**params)
        lines.append(f"    x, t = out[{e.target!r}], (target or {{}}).get({e.target!r})")
        lines.append(f"    out[{e.target!r}] = {call}")
    lines.append("    return out")
    return "\n".join(lines) + "\n"
