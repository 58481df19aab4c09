"""The ``auto`` strategy: match keys by structure, shapes, order and names, and say how sure it is.

How it works (keys and shapes only, no tensor data):

1. Both key tables become module trees. Each node gets a structural hash that ignores names and
   child order: the multiset of its tensors' shapes and its children's hashes. Equal hashes mean
   "this part of the model is built the same", whatever it is called.
2. Top-down, biggest first, target nodes are matched to free source nodes of equal hash (a
   nested backbone, a ``module.`` prefix, a refactor that renamed everything). A bucket of several
   equal nodes is resolved by names (exact path, dotted suffix), else by order when both sides
   have as many.
3. Inside a matched pair, children of equal hash pair up where names speak (``q_proj`` ~
   ``query``, ``w1`` ~ ``gate_proj``, equal indices), else by order.
4. Confidence grows with the size of the matched structure, its uniqueness, name agreement and
   order consistency (a longest increasing chain); isolated small matches stay candidates.
5. Modules whose weights no longer fit (a new head, other input channels, an SPP stage) get
   their fitting tensors paired and a transform *proposed* as a candidate with its reason.

Buckets keep the work near-linear: the 47,000-key MoE case never compares all pairs.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import math
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from .auto_views import View, source_view, target_view
from .strategies import Side, Suggestion, register_strategy
from .tensors import KeyTable, format_shape
from .transforms import Transform

#: Accepted above this confidence; the rest are candidates.
ACCEPT = 0.6
#: Proposed transforms at or above this confidence are accepted with ``adapt=True``.
ADAPT = 0.5

# Names that mean the same part in different libraries; used to pair equal-shaped siblings.
SYNONYMS = {
    "query": "q", "q_proj": "q", "to_q": "q", "wq": "q", "q_lin": "q",
    "key": "k", "k_proj": "k", "to_k": "k", "wk": "k", "k_lin": "k",
    "value": "v", "v_proj": "v", "to_v": "v", "wv": "v", "v_lin": "v",
    "out_proj": "o", "o_proj": "o", "out": "o", "to_out": "o", "wo": "o", "out_lin": "o", "dense": "o",
    "gate_proj": "gate", "w1": "gate", "up_proj": "up", "w3": "up", "down_proj": "down", "w2": "down",
    "gamma": "weight", "beta": "bias",
    "wte": "embed", "embed_tokens": "embed", "word_embeddings": "embed", "tok_embeddings": "embed",
    "wpe": "pos_embed", "position_embeddings": "pos_embed",
    "input_layernorm": "norm1", "ln_1": "norm1", "attention_norm": "norm1",
    "post_attention_layernorm": "norm2", "ln_2": "norm2", "ffn_norm": "norm2",
    "router": "router", "gate": "router",
    "self_attn_layer_norm": "norm1", "layernorm_before": "norm1", "sa_layer_norm": "norm1",
    "layernorm_after": "norm2", "output_layer_norm": "norm2",
}
# A model's last norm: spelled like a block's norm in some libraries (OPT's final_layer_norm), so it is
# told apart by where it sits (no block index above it).
FINAL_NORMS = {"ln_f": "norm_f", "final_layer_norm": "norm_f", "norm_f": "norm_f", "final_norm": "norm_f",
               "norm": "norm_f", "layernorm": "norm_f", "ln": "norm_f", "final_layernorm": "norm_f"}
BLOCK_NORMS = {"final_layer_norm": "norm2"}
# Names of a block's shortcut branch (libraries define it before or after the main branch).
SHORTCUTS = {"downsample", "shortcut", "skip", "proj", "short", "residual", "res", "identity", "sc",
             "skip_connection", "shortcut_conv", "conv_shortcut", "skip_conv"}
_STAGE = re.compile(r"^([A-Za-z_]+?)(\d+)$")
_NUM = re.compile(r"^\d+$")
_NAMED = ("suffix", "name tokens", "same name", "same path", "branch")


_CANON: dict[str, str] = {}


def canon(name: str) -> str:
    """A path component in a library-neutral spelling (for pairing siblings, not for matching alone)."""
    out = _CANON.get(name)
    if out is None:
        low = name.lower()
        out = _CANON[name] = SYNONYMS.get(low, low)
    return out


class _Node:
    """A module path in one tree (slots: the MoE case makes ~60,000 of them per side)."""

    __slots__ = ("path", "name", "parent", "order", "children", "leaves", "h", "size", "mods", "used", "blocked")

    def __init__(self, path: str, name: str, parent: _Node | None, order: int) -> None:
        self.path, self.name, self.parent, self.order = path, name, parent, order
        self.children: dict[str, _Node] = {}
        self.leaves: dict[str, str] = {}  # leaf name -> full key
        self.h = 0  # structural hash: shapes and child hashes, names and order ignored
        self.size = 0  # tensors below
        self.mods = 0  # nodes holding tensors below (itself included)
        self.used = False  # matched, or inside a matched subtree
        self.blocked = False  # an ancestor of a matched node


def _has_matrix(table: KeyTable, leaves: dict[str, str]) -> bool:
    for k in leaves.values():
        if len(table[k].shape) >= 2:
            return True
    return False


class _Tree:
    def __init__(self, table: KeyTable) -> None:
        self.root = _Node("", "", None, 0)
        self.table = table
        self.modules: list[_Node] = []  # nodes holding tensors, in key order
        nodes = {"": self.root}
        for i, key in enumerate(table):
            path, _, leaf = key.rpartition(".")
            node = nodes.get(path)
            if node is None:
                node = self._make(path, i, nodes)
            if not node.leaves:
                self.modules.append(node)
            node.leaves[leaf] = key
        self.nodes = nodes
        self.index = {id(m): i for i, m in enumerate(self.modules)}
        # modules with a matrix or kernel: their sequence skips norms, which are often inserted
        self.weighted = [m for m in self.modules if _has_matrix(table, m.leaves)]
        self.windex = {id(m): i for i, m in enumerate(self.weighted)}
        self._hash()

    def _make(self, path: str, order: int, nodes: dict[str, _Node]) -> _Node:
        parent_path, _, name = path.rpartition(".")
        parent = nodes.get(parent_path) if path else None
        if parent is None and path:
            parent = self._make(parent_path, order, nodes)
        node = _Node(path, name, parent, order)
        if parent is not None:
            parent.children[name] = node
        nodes[path] = node
        return node

    def _hash(self) -> None:
        # A parent is always created before its children, so reversed creation order is post-order.
        table, known = self.table, _CANON
        for node in reversed(self.nodes.values()):
            if node.leaves:
                leaves = [(known.get(n) or canon(n), table[k].shape) for n, k in node.leaves.items()]
                if len(leaves) > 1:
                    leaves.sort()
                size, mods = len(leaves), 1
            else:
                leaves, size, mods = [], 0, 0
            children = node.children
            if len(children) == 1:  # most nodes of a deep model: skip the list and the sort
                (c,) = children.values()
                kids: tuple[int, ...] = (c.h,)
                size += c.size
                mods += c.mods
            else:
                hashes = []
                for c in children.values():
                    hashes.append(c.h)
                    size += c.size
                    mods += c.mods
                hashes.sort()
                kids = tuple(hashes)
            node.h = hash((tuple(leaves), kids))
            node.size, node.mods = size, mods

    def walk(self, node: _Node):
        stack = [node]
        while stack:
            n = stack.pop()
            yield n
            stack.extend(n.children.values())


def _suffix_len(a: str, b: str, spelling=canon) -> int:
    """Number of trailing dotted components two paths share (canonical spelling by default)."""
    if spelling is str:
        common = len(os.path.commonprefix([a[::-1], b[::-1]]))
        if common == len(a) == len(b):
            return a.count(".") + 1
        tail = a[len(a) - common:]
        if common < len(a) and a[len(a) - common - 1] != "." or common < len(b) and b[len(b) - common - 1] != ".":
            tail = tail.partition(".")[2]  # a component shared only in part does not count
        return tail.count(".") + 1 if tail else 0
    pa, pb = a.split(".") if a else [], b.split(".") if b else []
    n = 0
    while n < len(pa) and n < len(pb) and spelling(pa[-1 - n]) == spelling(pb[-1 - n]):
        n += 1
    return n


@dataclass
class _Match:
    s: _Node
    t: _Node
    conf: float
    why: str
    alternatives: list[_Node] = field(default_factory=list)


def _only_1d(tree: _Tree, node: _Node) -> bool:
    return all(len(tree.table[k].shape) <= 1 for n in tree.walk(node) for k in n.leaves.values())


class AutoStrategy:
    name = "auto"
    description = ("structure, shapes, order and names together, with a confidence per key; "
                   "proposes transforms where shapes differ recognisably")

    def suggest(self, source: Side, target: Side, adapt: bool = False, head_dim: int | None = None,
                **options: Any) -> list[Suggestion]:
        """``head_dim``: the attention head size, for the RoPE row order between HF and Meta Llama naming
        (otherwise read from an hf: spec's config or a Meta params.json; see :mod:`.auto_rope`)."""
        with _gc_paused():
            items = self._suggest(source, target, adapt)
        from .auto_rope import rope_permutations

        return rope_permutations(items, source, target, head_dim)

    def _suggest(self, source: Side, target: Side, adapt: bool) -> list[Suggestion]:
        tview = target_view(target.table, source.table)
        sview = source_view(source.table, tview)
        run = _Run(sview.table, tview.table, adapt)
        items = run.suggestions()
        from .auto_leftovers import unique_leftovers

        items = unique_leftovers(run, items)
        run.release()
        if sview.real or sview.transform or tview.real:
            items = _translate(items, sview, tview)
        return items


_GC_LOCK = threading.Lock()
_GC_DEPTH = [0, False]  # runs in progress, whether the collector was on before the first


@contextlib.contextmanager
def _gc_paused():
    """The cyclic collector off while the trees are built: ~120,000 nodes made at once set off full
    collections over the whole heap (torch's too), which cost more than the matching itself. Nothing
    here makes garbage cycles that need collecting sooner; other threads' runs nest."""
    with _GC_LOCK:
        if _GC_DEPTH[0] == 0:
            _GC_DEPTH[1] = gc.isenabled()
            gc.disable()
        _GC_DEPTH[0] += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_DEPTH[0] -= 1
            if _GC_DEPTH[0] == 0 and _GC_DEPTH[1]:
                gc.enable()


def _translate(items: list[Suggestion], sview: View, tview: View) -> list[Suggestion]:
    """Virtual keys back to real ones; a view's transform goes with its source (a proposal on top stays a
    candidate: one entry holds one transform); a fused target's three parts become one joined suggestion,
    where its first part was."""
    out: list[Suggestion | str] = []  # a str: where the joined suggestion for that fused target goes
    parts: dict[str, list[tuple[int, int, Suggestion]]] = {}  # real fused target -> its parts' suggestions
    for sug in items:
        vs = sug.source
        part = tview.part.get(sug.target)
        sug.target = tview.real_key(sug.target)
        sug.source = sview.real_key(vs)
        view_tr = sview.transform.get(vs)
        if view_tr is not None:
            note = sview.note.get(vs, "")
            if sug.transform is None:
                sug.transform = view_tr
                if note:
                    sug.reason = f"{sug.reason}; {note}: {view_tr['op']}"
            else:
                sug.reason = f"{sug.reason}; also {note}: needs two transforms, set one by hand"
                sug.accepted = False
        sug.alternatives = [(sview.real_key(a), c, w) for a, c, w in sug.alternatives
                            if a not in sview.transform]
        if part is None:
            out.append(sug)
            continue
        real, index, dim = part
        if real not in parts:
            out.append(real)
        parts.setdefault(real, []).append((index, dim, sug))
    joined = {real: _joined(real, found) for real, found in parts.items()}
    return [j for s in out if (j := joined[s] if isinstance(s, str) else s) is not None]


def _joined(target: str, parts: list[tuple[int, int, Suggestion]]) -> Suggestion | None:
    """One suggestion for a fused target from the suggestions of its q, k, v parts: their sources
    joined by ``concat``, accepted when all three were and none needs a transform of its own."""
    parts = sorted(parts, key=lambda p: p[0])
    if [p[0] for p in parts] != [0, 1, 2] or not all(p[2].source for p in parts):
        return None  # a part without a source: the fused target stays unmapped
    dim, sugs = parts[0][1], [p[2] for p in parts]
    own = [s.transform for s in sugs if s.transform is not None]
    module = target.rpartition(".")[0]
    joined = Suggestion(target, sugs[0].source, min(s.confidence for s in sugs),
                        f"{sugs[0].reason} (k and v alike); q, k, v joined into fused '{module}' (concat along dim {dim})",
                        sugs[0].origin, {"op": "concat", "dim": dim}, all(s.accepted for s in sugs) and not own,
                        more_sources=tuple(s.source for s in sugs[1:]))
    if own:
        joined.reason += "; a part also needs a transform of its own: join them by hand"
    return joined


_Pair = tuple[_Node, _Node, str]  # source module, target module, the reason


def _pair_same_path(free_s: dict[int, _Node], rest_t: list[_Node], pairs: list[_Pair]) -> list[_Node]:
    """The same path; an index as own name is a position, and positions shift. Returns the targets left."""
    by_path = {s.path: s for s in free_s.values()}
    left = []
    for t in rest_t:
        s = by_path.get(t.path)
        if s is not None and not _NUM.match(t.name) and _other_kind(s.parent, t.parent) is None:
            pairs.append((s, t, "same path"))
            del free_s[id(s)]
        else:
            left.append(t)
    return left


def _pair_by_suffix(free_s: dict[int, _Node], rest_t: list[_Node], pairs: list[_Pair]) -> list[_Node]:
    """The longest shared dotted suffix, best both ways (skipped on buckets too big to compare all pairs)."""
    if len(rest_t) * len(free_s) > 4096:
        return rest_t
    left = []
    for t in rest_t:
        cands = [s for s in free_s.values() if _contradiction(s, t) is None]
        lens = [_suffix_len(s.path, t.path) for s in cands]
        n = max(lens, default=0)
        if n and lens.count(n) == 1 and not _NUM.match(t.name):
            s = cands[lens.index(n)]
            if len(rest_t) == 1 or _mutual(s, t, rest_t, n):
                tail = _tail(t.path, n)
                if s.name != t.name and n == 1:
                    why = f"name tokens {s.name}~{t.name}"
                else:
                    why = f"suffix '{tail}'" if tail == _tail(s.path, n) else f"suffix '{tail}'~'{_tail(s.path, n)}'"
                pairs.append((s, t, why))
                del free_s[id(s)]
                continue
        left.append(t)
    return left


def _pair_by_name_key(free_s: dict[int, _Node], rest_t: list[_Node], pairs: list[_Pair]) -> list[_Node]:
    """Names that speak: the same indices inside, the same canonical name, unique on both sides."""
    keys_s: dict[tuple, list[_Node]] = {}
    for s in free_s.values():
        keys_s.setdefault(_name_key(s), []).append(s)
    keys_t: dict[tuple, int] = {}
    for t in rest_t:
        key = _name_key(t)
        keys_t[key] = keys_t.get(key, 0) + 1
    left = []
    for t in rest_t:
        key = _name_key(t)
        cand = keys_s.get(key)
        if key[1] and cand is not None and len(cand) == 1 and keys_t[key] == 1 and _contradiction(cand[0], t) is None:
            s = cand[0]
            pairs.append((s, t, f"name tokens {s.name}~{t.name}" if s.name != t.name else "same name"))
            del free_s[id(s)]
        else:
            left.append(t)
    return left


def _pair_by_branch(free_s: dict[int, _Node], rest_t: list[_Node], pairs: list[_Pair]) -> list[_Node]:
    """A block's shortcut and main branch: by meaning, not by definition order."""
    left, branch_pairs = _pair_branches(sorted(free_s.values(), key=lambda n: n.order), rest_t)
    for s, t, why in branch_pairs:
        pairs.append((s, t, why))
        del free_s[id(s)]
    return left


def _pair_by_order(free_s: dict[int, _Node], rest_t: list[_Node], pairs: list[_Pair]) -> list[_Node]:
    """As many alike on each side: by order, unless order would cross stages (layer2 -> layer4)."""
    if len(rest_t) != len(free_s):
        return rest_t
    alike = len(rest_t)
    rest_s = sorted(free_s.values(), key=lambda n: n.order)
    if any(_stage_conflict(s.path, t.path) for s, t in zip(rest_s, rest_t, strict=True)):
        return rest_t  # no evidence
    for i, (s, t) in enumerate(zip(rest_s, rest_t, strict=True)):
        if alike > 1:
            why = f"#{i + 1} of {alike} alike, by order"
        elif t.mods == 1:
            why = "the only module of these shapes on each side"
        else:
            why = "same structure"
        pairs.append((s, t, why))
        del free_s[id(s)]
    return []


#: how a bucket's modules are paired, strongest evidence first; each takes what it can
_PHASES = (_pair_same_path, _pair_by_suffix, _pair_by_name_key, _pair_by_branch, _pair_by_order)


class _Run:
    def __init__(self, source: KeyTable, target: KeyTable, adapt: bool) -> None:
        self.src, self.tgt = _Tree(source), _Tree(target)
        self.adapt = adapt
        self.matches: list[_Match] = []
        self.module_pairs: dict[int, tuple[_Node, _Match]] = {}  # id(target module) -> source module, match
        self._channels: dict[str, int | None] | None = None

    def release(self) -> None:
        """Break the trees' parent <-> child cycles so they go by reference counting, not a full collection.

        Dropping the children dicts is enough: what is left (child -> parent) is a tree, no cycle."""
        for tree in (self.src, self.tgt):
            for node in tree.nodes.values():
                node.children = None  # type: ignore[assignment]
            tree.nodes.clear()
            tree.modules.clear()
            tree.weighted.clear()
        self.matches.clear()
        self.module_pairs.clear()

    # -- phase 1: equal structures, biggest first ---------------------------------------------
    def match_structures(self) -> None:
        # every node, in creation order (the lists are sorted by order below, so the walk's order is no matter)
        src_by_h: dict[int, list[_Node]] = {}
        for n in self.src.nodes.values():
            if n.size:
                src_by_h.setdefault(n.h, []).append(n)
        tgt_by_h: dict[int, list[_Node]] = {}
        for n in self.tgt.nodes.values():
            if n.size and n.h in src_by_h:
                tgt_by_h.setdefault(n.h, []).append(n)
        order = sorted(tgt_by_h, key=lambda h: (-tgt_by_h[h][0].size, min(n.order for n in tgt_by_h[h])))
        for h in order:
            ts = sorted((t for t in tgt_by_h[h] if not t.used and not t.blocked), key=lambda n: n.order)
            ss = sorted((s for s in src_by_h[h] if not s.used and not s.blocked), key=lambda n: n.order)
            if ts and ss:
                self._resolve_bucket(ss, ts)

    def _resolve_bucket(self, ss: list[_Node], ts: list[_Node]) -> None:
        """Pair the structurally equal modules of one bucket, strongest evidence first (see _PHASES)."""
        unique = len(ss) == 1 and len(ts) == 1
        pairs: list[_Pair] = []
        free_s = {id(s): s for s in ss}
        rest_t = list(ts)
        for phase in _PHASES:
            if not rest_t or not free_s:
                break
            rest_t = phase(free_s, rest_t, pairs)
        pos = {id(s): i for i, s in enumerate(ss)}
        for s, t, why in pairs:
            conf = self._structure_conf(s, t, unique or len(ss) == len(ts), why)
            i = pos[id(s)]  # the equal-structured neighbours in the source: the likeliest mix-ups
            alts = [ss[j] for j in (i - 1, i + 1) if 0 <= j < len(ss)]
            self._take(_Match(s, t, conf, why, alts))

    def _structure_conf(self, s: _Node, t: _Node, balanced: bool, why: str) -> float:
        if s.path == t.path and s.path:
            return 1.0
        conf = 0.55 if balanced else 0.3
        conf += 0.25 if t.mods >= 3 else 0.1 if t.mods == 2 else 0.0
        if why.startswith(_NAMED):
            # one shared component ('head') says less than a shared path ('layer1.0.conv1')
            conf += 0.1 if why.startswith("suffix") and "." not in why else 0.2
        if t.mods == 1 and _only_1d(self.tgt, t):
            conf -= 0.15  # a lone norm or bias says little by itself
        return conf

    def _take(self, m: _Match) -> None:
        self.matches.append(m)
        for node in (m.s, m.t):
            stack = [node]
            while stack:  # tree.walk inline: the MoE case marks ~120,000 nodes here
                n = stack.pop()
                n.used = True
                stack.extend(n.children.values())
            p = node.parent
            while p is not None and not p.blocked:
                p.blocked = True
                p = p.parent

    # -- phase 2: order consistency and neighbours --------------------------------------------
    def score_order(self) -> None:
        roots = sorted(self.matches, key=lambda m: m.t.order)
        chain = _lis([m.s.order for m in roots])
        for i, m in enumerate(roots):
            if m.conf >= 1.0:
                continue
            if i in chain:
                m.conf += 0.15
            elif not m.why.startswith(_NAMED):  # names outrank order; order alone must be consistent
                m.conf -= 0.3
                m.why += ", out of order"
        self._expand_all()
        # A lone module matched on shapes alone is a coincidence unless its neighbours agree: the
        # weight-bearing module before or after it (norms skipped) is matched to its counterpart there.
        lone = [m for m in roots if m.t.mods == 1 and m.conf < 1.0 and not _names_speak(m.why)]
        support = [self._neighbour_agrees(m.s, m.t, weighted) for m in lone for weighted in (True, False)]
        for i, m in enumerate(lone):
            if support[2 * i] or support[2 * i + 1]:
                if m.conf < ACCEPT:
                    m.conf += 0.15
                m.why += ", next to a matched neighbour"
            else:
                m.conf -= 0.25
                m.why += ", no matched neighbour"

    def _neighbour_agrees(self, s: _Node, t: _Node, weighted: bool) -> bool:
        tseq, sseq = (self.tgt.weighted, self.src.weighted) if weighted else (self.tgt.modules, self.src.modules)
        tidx, sidx = (self.tgt.windex, self.src.windex) if weighted else (self.tgt.index, self.src.index)
        ti, si = tidx.get(id(t)), sidx.get(id(s))
        if ti is None or si is None:
            return False
        for dt in (-1, 1):
            j = ti + dt
            if 0 <= j < len(tseq):
                pair = self.module_pairs.get(id(tseq[j]))
                if pair is not None and sidx.get(id(pair[0])) == si + dt and pair[1].conf >= ACCEPT:
                    return True
        return False

    def _expand_all(self) -> None:
        self.module_pairs.clear()
        for m in self.matches:
            self._expand(m.s, m.t, m)

    def _expand(self, s: _Node, t: _Node, m: _Match) -> None:
        stack = [(s, t)]
        while stack:
            s, t = stack.pop()
            if t.leaves:
                self.module_pairs[id(t)] = (s, m)
            cs, ct = s.children, t.children
            if len(ct) == 1 and len(cs) == 1:
                (c_s,), (c_t,) = cs.values(), ct.values()
                if c_s.h == c_t.h:
                    stack.append((c_s, c_t))
                continue
            groups_s: dict[int, list[_Node]] = {}
            groups_t: dict[int, list[_Node]] = {}
            for c in s.children.values():
                groups_s.setdefault(c.h, []).append(c)
            for c in t.children.values():
                groups_t.setdefault(c.h, []).append(c)
            for h, group_t in groups_t.items():
                stack.extend(_pair_by_names(groups_s.get(h, []), group_t))

    # -- phase 3: modules that no longer fit whole --------------------------------------------
    def partial_modules(self) -> list[Suggestion]:
        out = []
        taken: set[int] = set()
        lonely = []
        for t in self.tgt.modules:
            if id(t) in self.module_pairs or t.used:
                continue
            s, how = self._counterpart(t)
            if s is None or id(s) in taken:
                lonely.append(t)
                continue
            taken.add(id(s))
            kind = _contradiction(s, t)  # a same-named part of another kind of block is no counterpart
            out.extend(self._leaf_pairs(s, t, f"{how}, but {kind}" if kind else how, plain=kind is None))
        # A new head defined elsewhere: the only unmatched modules alike but for their first dimension.
        def shape_key(tree: _Tree, n: _Node) -> tuple:
            return tuple(sorted((canon(leaf), tree.table[k].shape[1:], len(tree.table[k].shape))
                                for leaf, k in n.leaves.items()))

        free_s: dict[tuple, list[_Node]] = {}
        for s in self.src.modules:
            if not s.used and id(s) not in taken:
                free_s.setdefault(shape_key(self.src, s), []).append(s)
        by_key: dict[tuple, list[_Node]] = {}
        for t in lonely:
            by_key.setdefault(shape_key(self.tgt, t), []).append(t)
        for key, ts in by_key.items():
            ss = free_s.get(key, [])
            if len(ts) == 1 and len(ss) == 1 and any(len(k[1]) for k in key):
                out.extend(self._leaf_pairs(ss[0], ts[0], f"'{ss[0].path}' -> '{ts[0].path}', the only unmatched "
                                            "pair alike but for dim 0", plain=False))
        return out

    def _leaf_pairs(self, s: _Node, t: _Node, how: str, plain: bool = True) -> list[Suggestion]:
        fits, proposed = [], []
        for leaf, tkey in t.leaves.items():
            skey = s.leaves.get(leaf)
            if skey is None:
                continue
            ss, ts = self.src.table[skey].shape, self.tgt.table[tkey].shape
            if ss == ts:
                fits.append((tkey, skey))
            else:
                proposed.append(self._propose(tkey, skey, how))
        # a bias that fits beside a weight no transform carries belongs to another layer (a head on other
        # features, a norm of other width): it fits by accident
        unsure = [p for p in proposed if p.confidence < ADAPT]
        if unsure and plain:
            plain, how = False, f"{how}; its {unsure[0].target.rpartition('.')[2]} has no sure transform"
        out = [Suggestion(tkey, skey, 0.75 if plain else 0.3, f"{how}; this tensor fits", "auto", accepted=plain)
               for tkey, skey in fits]
        return out + proposed

    def _counterpart(self, t: _Node) -> tuple[_Node | None, str]:
        s = self.src.nodes.get(t.path)
        if s is not None and s.leaves and not s.used:
            return s, f"module '{t.path}' by name, shapes differ in part"
        if t.parent is None:
            return None, ""
        parents = {}
        for sib in t.parent.children.values():
            pair = self.module_pairs.get(id(sib))
            if pair is not None and pair[0].parent is not None:
                parents[id(pair[0].parent)] = pair[0].parent
        if len(parents) == 1:
            sp = next(iter(parents.values()))
            s = sp.children.get(t.name)
            if s is None:  # q_proj ~ query: the same part in another library's spelling
                alike = [c for c in sp.children.values() if canon(c.name) == canon(t.name)]
                s = alike[0] if len(alike) == 1 else None
            if s is not None and s.leaves and not s.used:
                return s, f"'{s.path}' -> '{t.path}', among matched siblings"
        return None, ""

    def _propose(self, tkey: str, skey: str, how: str) -> Suggestion:
        ss, ts = self.src.table[skey].shape, self.tgt.table[tkey].shape
        transform, conf, why = propose_transform(ss, ts, self._channels_before(skey))
        accepted = self.adapt and conf >= ADAPT
        return Suggestion(tkey, skey, conf, f"{how}; {why}", "auto", transform, accepted)

    def _channels_before(self, skey: str) -> int | None:
        """Out-channels of the last conv before ``skey`` in the source (what a classifier reads)."""
        if self._channels is None:  # one pass, however many proposals
            self._channels, last = {}, None
            for key, info in self.src.table.items():
                self._channels[key] = last
                if len(info.shape) == 4:
                    last = info.shape[0]
        return self._channels.get(skey)

    # -- the result ----------------------------------------------------------------------------
    def suggestions(self) -> list[Suggestion]:
        self.match_structures()
        self.score_order()
        out: list[Suggestion] = []
        memo: dict = {}
        src_table = self.src.table
        for t in self.tgt.modules:
            pair = self.module_pairs.get(id(t))
            if pair is None:
                continue
            s, m = pair
            conf = max(0.0, min(0.99, m.conf))
            alt_conf, cut = round(conf * 0.5, 3), len(m.t.path) + 1 if m.t.path else 0
            for leaf, tkey in t.leaves.items():
                skey = s.leaves.get(leaf)
                if skey is None:  # gamma/beta spellings
                    skey = next((k for n, k in s.leaves.items() if canon(n) == canon(leaf)), None)
                if skey is None:
                    continue
                why = _key_reason(skey, tkey, m, s.name, t.name, memo)
                key_conf = 1.0 if skey == tkey and conf >= ACCEPT else conf
                alts = []
                rel = tkey[cut:]
                for a in m.alternatives:
                    akey = f"{a.path}.{rel}" if a.path else rel
                    if akey in src_table:
                        alts.append((akey, alt_conf, "same structure, other position"))
                out.append(Suggestion(tkey, skey, round(key_conf, 3), why, "auto", accepted=conf >= ACCEPT, alternatives=alts))
        out.extend(self.partial_modules())
        order = {k: i for i, k in enumerate(self.tgt.table)}
        out.sort(key=lambda sug: order[sug.target])
        return out


def _role(n: _Node) -> str:
    """'shortcut' for a block's skip branch (``downsample``, ``proj``, ``shortcut.0``), else 'main'."""
    name = n.name.lower()
    if _NUM.match(name) and n.parent is not None:
        name = n.parent.name.lower()
    return "shortcut" if name in SHORTCUTS else "main"


def _pair_branches(ss: list[_Node], ts: list[_Node]) -> tuple[list[_Node], list[tuple[_Node, _Node, str]]]:
    """Pair shortcuts with shortcuts and main branches with main branches where both sides hold as many of
    each; returns the targets left and the pairs."""
    roles_s = [_role(n) for n in ss]
    roles_t = [_role(n) for n in ts]
    if "shortcut" not in roles_s and "shortcut" not in roles_t:
        return ts, []
    if roles_s.count("shortcut") != roles_t.count("shortcut") or len(ss) != len(ts):
        return ts, []
    pairs = []
    for role in ("shortcut", "main"):
        s_r = [n for n, r in zip(ss, roles_s, strict=True) if r == role]
        t_r = [n for n, r in zip(ts, roles_t, strict=True) if r == role]
        for s, t in zip(s_r, t_r, strict=True):
            if _stage_conflict(s.path, t.path):
                return ts, []
            why = (f"branch: shortcut '{s.name}'~'{t.name}'" if role == "shortcut"
                   else f"branch: main path beside the shortcut ('{s.name}'~'{t.name}')")
            pairs.append((s, t, why))
    return [], pairs


def _stage_conflict(a: str, b: str) -> str | None:
    """'layer2'~'layer4' when two paths name the same kind of stage with other numbers (a suffix or an order
    across stages is no evidence)."""
    stages_a = {}
    for part in a.split("."):
        m = _STAGE.match(part)
        if m:
            stages_a[m.group(1)] = part
    if not stages_a:
        return None
    for part in b.split("."):
        m = _STAGE.match(part)
        if m and m.group(1) in stages_a and stages_a[m.group(1)] != part:
            return f"'{stages_a[m.group(1)]}'~'{part}'"
    return None


def _other_kind(s: _Node | None, t: _Node | None) -> str | None:
    """Why two same-named parents are different kinds of block (a Bottleneck vs a BasicBlock): other
    weighted children, and a same-named child with other shapes. The model root never counts."""
    if s is None or t is None or not s.path or not t.path or s.h == t.h:
        return None
    names_s = {n for n, c in s.children.items() if c.size}
    names_t = {n for n, c in t.children.items() if c.size}
    if names_s == names_t:
        return None
    # in the target's child order, not a set's (whose order changes with the process's string hashing)
    clash = [n for n in t.children if n in names_s and n in names_t and s.children[n].h != t.children[n].h]
    if not clash:
        return None
    return f"'{t.path}' is another kind of block in each model ({clash[0]} differs)"


def _contradiction(s: _Node, t: _Node) -> str | None:
    return _stage_conflict(s.path, t.path) or _other_kind(s.parent, t.parent)


def _names_speak(why: str) -> bool:
    """Name evidence beyond one shared component: the same path, synonyms, a dotted suffix."""
    return (why.startswith(("same path", "same name", "name tokens", "branch"))
            or why.startswith("suffix") and "." in why)


def _name_key(n: _Node) -> tuple[tuple[str, ...], str]:
    """Indices inside the path (layer 3, expert 17) and the canonical own name: what names say."""
    parts = n.path.split(".")
    indices = tuple(p for p in parts[:-1] if _NUM.match(p))
    own = parts[-1]
    if _NUM.match(own):
        return indices, ""
    low = own.lower()
    if not indices and low in FINAL_NORMS:
        return indices, FINAL_NORMS[low]
    return indices, BLOCK_NORMS.get(low) or canon(own)


def _mutual(s: _Node, t: _Node, ts: list[_Node], n: int) -> bool:
    return all(_suffix_len(s.path, o.path) < n for o in ts if o is not t)


def _tail(path: str, n: int) -> str:
    return ".".join(path.split(".")[-n:])


_INDEX: dict[str, bool] = {}


def _is_index(name: str) -> bool:
    """``_NUM.match(name)``, remembered: the MoE case asks it of ~30,000 expert indices per run."""
    out = _INDEX.get(name)
    if out is None:
        out = _INDEX[name] = _NUM.match(name) is not None
    return out


def _pair_by_names(ss: list[_Node], ts: list[_Node]) -> list[tuple[_Node, _Node]]:
    """Pair equal-structured siblings: where names speak by name, the rest by order."""
    if len(ss) == 1 and len(ts) == 1:
        return [(ss[0], ts[0])]
    ss = sorted(ss, key=lambda n: n.order)
    ts = sorted(ts, key=lambda n: n.order)
    names_s = [canon(n.name) for n in ss]
    names_t = [canon(n.name) for n in ts]
    numeric = all(map(_is_index, names_s)) and all(map(_is_index, names_t))
    pairs = []
    if numeric:
        # indices are positions: only trust them when both sides hold exactly the same ones
        if sorted(names_s) == sorted(names_t):
            by = {n: s for n, s in zip(names_s, ss, strict=True)}
            return [(by[n], t) for n, t in zip(names_t, ts, strict=True)]
    elif len(set(names_s)) == len(names_s) and len(set(names_t)) == len(names_t):
        by = {n: s for n, s in zip(names_s, ss, strict=True)}
        rest_t = []
        for n, t in zip(names_t, ts, strict=True):
            s = by.pop(n, None)
            if s is None:
                rest_t.append(t)
            else:
                pairs.append((s, t))
        taken = {id(s) for s, _ in pairs}
        ss = [s for s in ss if id(s) not in taken]
        ts = rest_t
    pairs.extend(zip(ss, ts, strict=False))
    return pairs


def _lis(values: list[int]) -> set[int]:
    """Indices of one longest strictly increasing subsequence (patience sorting, O(n log n))."""
    tails: list[int] = []
    tails_idx: list[int] = []
    prev = [-1] * len(values)
    for i, v in enumerate(values):
        j = bisect.bisect_left(tails, v)
        if j == len(tails):
            tails.append(v)
            tails_idx.append(i)
        else:
            tails[j] = v
            tails_idx[j] = i
        prev[i] = tails_idx[j - 1] if j else -1
    out = set()
    i = tails_idx[-1] if tails_idx else -1
    while i >= 0:
        out.add(i)
        i = prev[i]
    return out


def _key_reason(skey: str, tkey: str, m: _Match, own_s: str, own_t: str, memo: dict) -> str:
    """What a person checks first: the names' evidence, then the structure's."""
    if skey == tkey:
        return "same name and shape"
    if own_s != own_t and canon(own_s) == canon(own_t) and not _NUM.match(own_s):
        # the module names differ, so no dotted suffix beyond the leaf: one reason per module pair
        memo_key = (id(m), own_s, own_t)
        why = memo.get(memo_key)
        if why is None:
            why = memo[memo_key] = _context(f"name tokens {own_s}~{own_t}", m)
        return why
    if (n := _suffix_len(skey, tkey, str)) >= 2:
        local = f"suffix '{_tail(tkey, n)}'"
    else:
        local = f"'{skey}'"
    return _context(local, m)


def _context(local: str, m: _Match) -> str:
    if m.why.startswith(_NAMED) and not local.startswith("'"):
        if m.s.path and not m.why.startswith("same path"):
            return f"{local} (within '{m.s.path}' -> '{m.t.path}')"
        return local
    where = f"'{m.s.path}'" if m.s.path else "the whole source"
    if m.why.startswith("#"):
        return f"{local}: aligned {m.why}"
    if m.why.startswith("the only"):
        return f"{local}: {m.why}"
    return f"{local} in {m.why} as {where} ({m.t.size} tensors)"


def propose_transform(src: tuple[int, ...], tgt: tuple[int, ...], channels: int | None = None
                      ) -> tuple[Transform | None, float, str]:
    """A transform that makes ``src`` fit ``tgt``, its confidence and why; (None, 0, why) if none fits.

    Recognised with confidence: an SPP stage (``spp_grid``), other input channels
    (``in_channels``), Linear <-> 1x1 conv (``reshape``), a transposed matrix (``transpose``).
    A new class count is only a low-confidence ``slice``/``pad``: rows correspond only where
    the classes do (use ``select_rows`` with the shared classes' indices).
    """
    shapes = f"{format_shape(src)} -> {format_shape(tgt)}"
    if len(src) == 2 and len(tgt) == 2 and src[0] == tgt[0] and src[1] != tgt[1]:
        grid = _spp_levels(src[1], tgt[1], channels)
        if grid is not None:
            levels, bins = grid
            return ({"op": "spp_grid", "levels": levels, "bins": bins}, 0.8,
                    f"a {math.isqrt(bins)}x{math.isqrt(bins)} grid into SPP levels {levels}: spp_grid")
    if len(src) == 4 and len(tgt) == 4 and src[0] == tgt[0] and src[2:] == tgt[2:] and src[1] != tgt[1]:
        return {"op": "in_channels"}, 0.8, f"input channels {src[1]} -> {tgt[1]}: in_channels (as timm)"
    if math.prod(src) == math.prod(tgt) and [d for d in src if d != 1] == [d for d in tgt if d != 1]:
        return {"op": "reshape"}, 0.8, f"same elements {shapes}: reshape"
    if len(src) == 2 and tuple(reversed(src)) == tgt:
        return {"op": "transpose", "dims": [1, 0]}, 0.6, f"transposed {shapes}: transpose"
    if len(src) == len(tgt) and src[1:] == tgt[1:]:
        op = "slice" if src[0] > tgt[0] else "pad"
        return ({"op": op}, 0.2, f"new class count {src[0]} -> {tgt[0]}: {op} keeps the first rows, right only "
                f"if classes correspond (else select_rows)")
    if len(src) == len(tgt):
        op = "slice" if all(a >= b for a, b in zip(src, tgt, strict=True)) else "pad"
        return {"op": op}, 0.2, f"shapes differ {shapes}: {op} copies the overlapping block"
    return None, 0.0, f"shapes differ {shapes}, no transform fits"


def _spp_levels(src_in: int, tgt_in: int, channels: int | None) -> tuple[list[int], int] | None:
    """(levels, bins) when ``src_in`` = C*k*k and ``tgt_in`` = C*sum(levels) with k*k among the levels."""
    found = []
    for k in range(1, 33):
        bins = k * k
        if src_in % bins:
            continue
        c = src_in // bins
        if tgt_in % c or (channels is not None and c != channels):
            continue
        total = tgt_in // c
        squares = [i * i for i in range(1, 33) if i * i <= total and i * i != bins]
        for levels in _subset_sums(squares, total - bins):
            found.append((sorted([*levels, bins]), bins))
    return found[0] if len(found) == 1 else None


def _subset_sums(values: list[int], target: int, limit: int = 2) -> list[list[int]]:
    """Up to ``limit`` subsets of distinct ``values`` summing to ``target`` (small inputs only)."""
    out: list[list[int]] = []

    def walk(i: int, left: int, acc: list[int]) -> None:
        if len(out) >= limit:
            return
        if left == 0:
            out.append(list(acc))
            return
        for j in range(i, len(values)):
            if values[j] <= left:
                acc.append(values[j])
                walk(j + 1, left - values[j], acc)
                acc.pop()

    walk(0, target, [])
    return out


register_strategy(AutoStrategy())
