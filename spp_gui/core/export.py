"""Export a mapping to other loaders: a plain Python function, HF ``key_mapping``, MMEngine ``revise_keys``.

Each snippet runs without spp_gui. Renames compress into a few regex rules (a changed prefix,
layer and expert indices carried as groups); every rule set is checked by simulating the
loader's own semantics on all source keys before it is printed, and keys the compact rules get
wrong fall back to exact ``^key$`` rules. Regex formats cannot express transforms: those
entries are reported, never dropped silently.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import MappingError
from .mapping import Mapping
from .transforms import check_params

FORMATS = ("python", "hf-key-mapping", "mmengine-revise-keys")
UNUSED_PREFIX = "spp_gui_unused."
_TEMP = "@@"  # MMEngine applies every rule in turn: renamed keys carry this until the last rule


@dataclass
class Export:
    """A snippet and the entries it could not express (``target <- source: why``)."""

    format: str
    text: str
    not_expressed: list[str] = field(default_factory=list)


def export_mapping(mapping: Mapping, fmt: str, source_keys: Iterable[str] | None = None,
                   target_keys: Iterable[str] | None = None) -> Export:
    """The mapping as ``fmt`` (one of FORMATS).

    With ``source_keys`` and ``target_keys`` (all keys of each side) the regex formats rename
    source keys the mapping leaves unused only where they would land on a target name; without
    ``target_keys`` every unused source key is diverted to ``spp_gui_unused.<key>``.
    """
    if fmt == "python":
        return Export(fmt, python_function(mapping))
    if fmt not in FORMATS:
        raise MappingError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    _check_transforms(mapping)
    plain = {e.source: e.target for e in mapping if e.transform is None}
    skipped = [_one_line(f"{e.target} <- {e.source}: transform {e.transform['op']} has no regex form")
               for e in mapping if e.transform is not None]
    keys = list(dict.fromkeys([*(source_keys or ()), *plain, *(e.source for e in mapping)]))
    sources_of = Counter(plain.values())
    for key, n in sources_of.items():
        if n > 1:
            raise MappingError(f"target key {key!r} is filled twice")
    fanned = Counter(e.source for e in mapping if e.transform is None)
    for e in mapping:
        if e.transform is None and fanned[e.source] > 1:
            raise MappingError(f"source key {e.source!r} fills several targets; a rename rule gives one name")
    targets = set(target_keys) if target_keys is not None else None
    rules = regex_rules(plain, keys, targets, sequential=fmt == "mmengine-revise-keys")
    if fmt == "hf-key-mapping":
        body = "key_mapping = {\n" + "".join(f"    {_raw(p)}: {_raw(r)},\n" for p, r in rules) + "}\n"
        usage = "# model = AutoModel.from_pretrained(path, key_mapping=key_mapping)"
    else:
        body = "revise_keys = [\n" + "".join(f"    ({_raw(p)}, {_raw(r)}),\n" for p, r in rules) + "]\n"
        usage = "# load_checkpoint(model, path, revise_keys=revise_keys)  (mmengine.runner)"
    head = _header(mapping, usage, skipped)
    return Export(fmt, head + body, skipped)


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


def _header(mapping: Mapping, usage: str, skipped: list[str]) -> str:
    lines = [_title(mapping), usage]
    lines += [f"# not expressed: {_one_line(s)}" for s in skipped]
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
        if e.transform is not None and (why := check_params(e.transform)) is not None:
            raise MappingError(f"entry {e.target!r}: {why}; fix or remove its transform before exporting")


# ---------------------------------------------------------------------------------------------
# regex rules


def apply_first_match(rules: list[tuple[str, str]], key: str) -> str:
    """HF transformers' key_mapping: the first pattern that matches renames the key (re.subn)."""
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def apply_in_turn(rules: list[tuple[str, str]], key: str) -> str:
    """MMEngine's revise_keys: every rule in order, each on the previous result (re.sub)."""
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def _prefix_rule(src: str, tgt: str) -> tuple[str, str] | None:
    """A rule that only drops or adds a leading prefix (``module.``, ``backbone.``), if that is all."""
    if src != tgt and src.endswith("." + tgt):
        return "^" + re.escape(src[: len(src) - len(tgt)]), ""
    if src != tgt and tgt.endswith("." + src):
        return "^", tgt[: len(tgt) - len(src)].replace("\\", "\\\\")
    return None


def _generalise(src: str, tgt: str) -> tuple[str, str] | None:
    """A (pattern, replacement) turning ``src`` into ``tgt`` and its siblings: changed prefix, indices as groups."""
    a, b = src.split("."), tgt.split(".")
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n] and not a[-1 - n].isdigit():
        n += 1
    head_a, head_b = a[: len(a) - n], b[: len(b) - n]
    nums_a = [p for p in head_a if p.isdigit()]
    nums_b = [p for p in head_b if p.isdigit()]
    if nums_a != nums_b:
        return None
    pattern = [r"(\d+)" if p.isdigit() else re.escape(p) for p in head_a]
    groups = iter(range(1, len(nums_a) + 1))
    repl = [f"\\{next(groups)}" if p.isdigit() else p.replace("\\", "\\\\") for p in head_b]
    if n == 0:
        return "^" + r"\.".join(pattern) + "$", ".".join(repl)
    pat = "^" + "".join(p + r"\." for p in pattern)
    rep = "".join(p + "." for p in repl)
    return pat, rep


def regex_rules(pairs: dict[str, str], source_keys: list[str], targets: set[str] | None, sequential: bool
                ) -> list[tuple[str, str]]:
    """Rules that rename each source key in ``pairs`` to its target and keep every other source key
    away from target names (all names when ``targets`` is None), under first-match (HF) or
    in-turn (MMEngine) semantics."""
    counts: Counter[tuple[str, str]] = Counter()
    for s, t in pairs.items():
        if s == t:
            continue  # a key that keeps its name needs no rule, only that none hits it
        g = _prefix_rule(s, t) or _generalise(s, t)
        if g is not None and g != ("^", ""):
            counts[g] += 1
    # most specific first: under first-match semantics a broad rule would shadow the others
    generic = sorted((g for g, n in counts.items() if n >= 2), key=lambda g: (-len(g[0]), g))
    exact: list[tuple[str, str]] = []
    fixed: set[str] = set()
    for _ in range(3):
        rules = _assemble(exact, generic, sequential)
        run = apply_in_turn if sequential else apply_first_match
        wrong = []
        for key in source_keys:
            if key in fixed:
                continue
            got = run(rules, key)
            want = pairs.get(key)
            if want is not None:
                bad = got != want
            else:
                bad = got in targets if targets is not None else not got.startswith(UNUSED_PREFIX)
            if bad:
                wrong.append(key)
        if not wrong:
            return rules
        for key in wrong:
            fixed.add(key)
            want = pairs.get(key, UNUSED_PREFIX + key)
            exact.append(("^" + re.escape(key) + "$", want.replace("\\", "\\\\")))
    # the compact rules did not converge: one exact rule per key that must change
    exact = []
    for key in source_keys:
        want = pairs.get(key)
        if want is None and (key in targets if targets is not None else True):
            want = UNUSED_PREFIX + key
        if want is not None and want != key:
            exact.append(("^" + re.escape(key) + "$", want.replace("\\", "\\\\")))
    return _assemble(exact, [], sequential)


def _assemble(exact: list[tuple[str, str]], generic: list[tuple[str, str]], sequential: bool) -> list[tuple[str, str]]:
    rules = exact + generic
    if not sequential:
        return rules
    # A key renamed by one rule must not be renamed again by a later one: mark it, strip the mark last.
    # (?!@@) so that no rule, '^' included, touches a key an earlier rule has already renamed
    return [("^(?!" + _TEMP + ")" + p.removeprefix("^"), _TEMP + r) for p, r in rules] + [("^" + _TEMP, "")]


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
_CALLS = {
    "chunk": "_chunk(x, {dim!r}, {chunks!r}, {index!r}, {transpose!r})",
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
        if e.transform is not None and e.transform.get("op") not in _CALLS:
            raise MappingError(f"entry {e.target!r}: transform {e.transform.get('op')!r} has no Python form")
    ops = {e.transform["op"] for e in mapping if e.transform is not None}
    needed = sorted({"slice" if op == "pad" else op for op in ops} & set(_HELPERS))
    helpers = [_HELPERS[op] for op in needed]
    lines = [_title(mapping),
             "# usage: model.load_state_dict(remap(source_state_dict, model.state_dict()), strict=False)",
             "", *dict.fromkeys(helpers),
             "MAPPING = {  # target key: source key"]
    lines += [f"    {e.target!r}: {e.source!r}," for e in mapping]
    lines.append("}")
    lines.append("")
    lines.append("")
    lines.append("def remap(source, target=None):")
    lines.append('    """Tensors for the target keys, from ``source`` (a state dict); ``target`` is the')
    lines.append('    target model\'s state dict, needed only where a transform keeps part of its init."""')
    lines.append("    out = {t: source[s] for t, s in MAPPING.items()}")
    if ops:
        lines.append("    if target is None:")
        lines.append("        raise ValueError('remap: pass the target state dict; transforms keep part of its init')")
    for e in mapping:
        if e.transform is None:
            continue
        params = {k: v for k, v in e.transform.items() if k != "op"}
        params.setdefault("dims", [1, 0])
        params.setdefault("transpose", False)
        call = _CALLS[e.transform["op"]].format(**params)
        lines.append(f"    x, t = out[{e.target!r}], (target or {{}}).get({e.target!r})")
        lines.append(f"    out[{e.target!r}] = {call}")
    lines.append("    return out")
    return "\n".join(lines) + "\n"
