"""The last pass of ``auto``: tensors left over inside parts already matched, paired where unique.

After structure, names and order have spoken, a matched part of the model often keeps a few tensors
nobody claimed: a ViT's class token and position embedding, a stem, a final norm and head, a
ConvNeXt block's layer scale. Inside a target part whose tensors are mostly matched already, and the
source part that holds all their counterparts (and nothing matched elsewhere), a left-over module or
tensor whose shape is the only one of its kind on both sides is the same part. Equal elements in
another shape (a layer scale as (C, 1, 1) or (C,)) pair with a ``reshape``.

Nothing is paired where nothing was matched: unrelated models stay unrelated.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from .strategies import Suggestion
from .tensors import format_shape

if TYPE_CHECKING:
    from .auto import _Node, _Run

#: a target part must have this share of its tensors matched already
MATCHED_SHARE = 0.5
CONFIDENCE = 0.75


def _elements(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _tokens(name: str) -> set[str]:
    return {t for t in name.lower().replace("-", "_").split("_") if t}


def _related(a: str, b: str) -> bool:
    """class_token ~ cls_token, pos_embedding ~ pos_embed: a shared word or a common stem."""
    ta, tb = _tokens(a), _tokens(b)
    if ta & tb:
        return True
    return any(x[:3] == y[:3] and len(x) >= 3 and len(y) >= 3 for x in ta for y in tb)


def unique_leftovers(run: _Run, items: list[Suggestion]) -> list[Suggestion]:
    src, tgt = run.src, run.tgt
    accepted = [s for s in items if s.accepted]
    if not accepted:
        return items
    paired_t = {s.target for s in accepted}
    if len(paired_t) == len(tgt.table):
        return items
    paired_s = {s.source for s in accepted}
    free_s_all = [k for k in src.table if k not in paired_s]
    if not free_s_all:
        return items
    free_t_all = [k for k in tgt.table if k not in paired_t]
    tkey_node = {k: n for n in tgt.modules for k in n.leaves.values()}
    skey_node = {k: n for n in src.modules for k in n.leaves.values()}

    # per target node: accepted tensors below and the LCA of their sources; per source node the LCA of
    # the targets its accepted tensors went to. Bottom-up, one pass per tree.
    t_acc: Counter[int] = Counter()
    t_lca: dict[int, _Node] = {}
    s_tlca: dict[int, _Node] = {}
    depth: dict[int, int] = {}
    for sug in accepted:
        tn, sn = tkey_node.get(sug.target), skey_node.get(sug.source)
        if tn is None or sn is None:
            continue
        t_acc[id(tn)] += 1
        t_lca[id(tn)] = sn if id(tn) not in t_lca else _lca(t_lca[id(tn)], sn, depth)
        s_tlca[id(sn)] = tn if id(sn) not in s_tlca else _lca(s_tlca[id(sn)], tn, depth)
    for tree, lca_of, count in ((tgt, t_lca, t_acc), (src, s_tlca, None)):
        for node in reversed(tree.nodes.values()):  # children after parents in creation order
            p = node.parent
            if p is None or id(node) not in lca_of:
                continue
            if count is not None:
                count[id(p)] += count[id(node)]
            mine = lca_of[id(node)]
            lca_of[id(p)] = mine if id(p) not in lca_of else _lca(lca_of[id(p)], mine, depth)

    # target parts with unclaimed tensors, deepest first
    scopes: dict[int, _Node] = {}  # every qualifying ancestor: what a part leaves, its parent may pair
    for key in free_t_all:
        leaf = tkey_node.get(key)
        if leaf is None:
            continue
        for a in _ancestors(leaf):
            if id(a) not in scopes and t_acc[id(a)] >= 2 and t_acc[id(a)] >= MATCHED_SHARE * a.size:
                scopes[id(a)] = a
    if not scopes:
        return items
    new: list[Suggestion] = []
    proposed: set[str] = set()
    for t_scope in sorted(scopes.values(), key=lambda n: -n.path.count(".") - (1 if n.path else 0)):
        s_scope = _source_scope(t_lca[id(t_scope)], t_scope, s_tlca)
        t_free = [k for k in free_t_all if k not in paired_t and _under(k, t_scope.path)]
        s_free = [k for k in free_s_all if k not in paired_s and _under(k, s_scope.path)]
        if not t_free or not s_free:
            continue
        where = f"'{s_scope.path or '(root)'}' -> '{t_scope.path or '(root)'}'"
        share = f"{t_acc[id(t_scope)]} of {t_scope.size} tensors matched there"
        found = _pair_modules(run, t_free, s_free, tkey_node, skey_node)
        taken_t = {t for t, _, _ in found}
        taken_s = {s for _, s, _ in found}
        found += _pair_leaves(run, [k for k in t_free if k not in taken_t], [k for k in s_free if k not in taken_s])
        left_t = [k for k in t_free if k not in paired_t and k not in {t for t, _, _ in found}]
        left_s = [k for k in s_free if k not in paired_s and k not in {s for _, s, _ in found}]
        offset = _position_offset(run, left_t, left_s, where)
        if offset is not None and offset.target not in proposed:
            new.append(offset)
            proposed.add(offset.target)
            if offset.accepted:
                paired_t.add(offset.target)
                paired_s.add(offset.source)
        for t, s, why in found:
            ts, ss = tgt.table[t].shape, src.table[s].shape
            transform = None if ts == ss else {"op": "reshape"}
            tleaf, sleaf = t.rpartition(".")[2], s.rpartition(".")[2]
            names = f"; names {sleaf}~{tleaf}" if sleaf != tleaf and _related(sleaf, tleaf) else ""
            reshape = f"; same elements {format_shape(ss)} -> {format_shape(ts)}: reshape" if transform else ""
            new.append(Suggestion(t, s, CONFIDENCE, f"{why} in {where} ({share}){names}{reshape}", "auto",
                                  transform, accepted=True))
            paired_t.add(t)
            paired_s.add(s)
    if not new:
        return items
    claimed = {s.target for s in new}
    out = [s for s in items if s.target not in claimed] + new
    order = {k: i for i, k in enumerate(tgt.table)}
    out.sort(key=lambda sug: order[sug.target])
    return out


def _ancestors(node: _Node):
    n: _Node | None = node
    while n is not None:
        yield n
        n = n.parent


def _under(key: str, path: str) -> bool:
    return not path or key.startswith(path) and key[len(path):len(path) + 1] == "."


def _depth(n: _Node, memo: dict[int, int]) -> int:
    d = memo.get(id(n))
    if d is None:
        d = memo[id(n)] = n.path.count(".") + 1 if n.path else 0
    return d


def _lca(a: _Node, b: _Node, memo: dict[int, int]) -> _Node:
    if a is b:
        return a
    da, db = _depth(a, memo), _depth(b, memo)
    while da > db:
        a, da = _parent(a), da - 1
    while db > da:
        b, db = _parent(b), db - 1
    while a is not b:
        a, b = _parent(a), _parent(b)
    return a


def _parent(n: _Node) -> _Node:
    """The parent of a node below the root (two nodes of one tree meet at the root at the latest)."""
    if n.parent is None:
        raise ValueError(f"{n.path!r} is a root: nodes of different trees have no common ancestor")
    return n.parent


def _inside(node: _Node, scope: _Node) -> bool:
    return any(n is scope for n in _ancestors(node))


def _source_scope(start: _Node, t_scope: _Node, s_tlca: dict[int, _Node]) -> _Node:
    """The biggest source part above ``start`` whose matched tensors all went into ``t_scope``."""
    scope = start
    while scope.parent is not None:
        up = s_tlca.get(id(scope.parent))
        if up is not None and not _inside(up, t_scope):
            break
        scope = scope.parent
    return scope


def _signature(tree, node: _Node) -> tuple:
    from .auto import canon

    return tuple(sorted((canon(leaf), tree.table[k].shape) for leaf, k in node.leaves.items()))


def _pair_modules(run: _Run, t_free: list[str], s_free: list[str], tkey_node, skey_node
                  ) -> list[tuple[str, str, str]]:
    """Left-over modules (all their tensors unclaimed) alike in their tensors' names and shapes, unique both sides."""
    from .auto import canon

    t_free_set, s_free_set = set(t_free), set(s_free)

    def whole(nodes: dict[int, _Node], free: set[str]) -> list[_Node]:
        return [n for n in nodes.values() if len(n.leaves) > 1 and all(k in free for k in n.leaves.values())]

    t_mods = whole({id(tkey_node[k]): tkey_node[k] for k in t_free}, t_free_set)
    s_mods = whole({id(skey_node[k]): skey_node[k] for k in s_free}, s_free_set)
    t_sig = Counter(_signature(run.tgt, n) for n in t_mods)
    s_by: dict[tuple, list[_Node]] = {}
    for n in s_mods:
        s_by.setdefault(_signature(run.src, n), []).append(n)
    out = []
    for t in t_mods:
        sig = _signature(run.tgt, t)
        ss = s_by.get(sig, [])
        why = f"the only unmatched module of these shapes ('{{}}' -> '{t.path}')"
        if t_sig[sig] != 1 or len(ss) != 1:  # alike modules: the one whose name means the same part
            alike_t = [n for n in t_mods if _signature(run.tgt, n) == sig]
            named = [n for n in ss if _part(n.name) == _part(t.name)]
            if len(ss) < 2 or len(named) != 1 or sum(_part(n.name) == _part(t.name) for n in alike_t) != 1:
                continue
            ss = named
            why = f"the unmatched module named like it ('{{}}' -> '{t.path}')"
        s = ss[0]
        why = why.format(s.path)
        for leaf, tk in t.leaves.items():
            sk = s.leaves.get(leaf) or next((k for n, k in s.leaves.items() if canon(n) == canon(leaf)), None)
            if sk is not None:
                out.append((tk, sk, why))
    return out


_PART = {"proj": "o", "c_proj": "o", "out_proj": "o", "o_proj": "o", "out": "o", "out_lin": "o"}


def _part(name: str) -> str:
    from .auto import canon

    return _PART.get(name.lower()) or canon(name)


#: position tables whose first rows are no positions: OPT's and BART's learned positional embeddings
#: (``OPTLearnedPositionalEmbedding``, offset 2), RoBERTa's (positions start after padding_idx 1)
_OFFSET_CONVENTIONS = (("embed_positions", "OPT and BART keep learned positions from row 2"),
                       ("roberta", "RoBERTa starts positions at row 2 (after padding_idx 1)"))
POSITION_OFFSET = 2


def _offset_convention(key: str) -> str | None:
    """Why ``key``'s position table starts at row 2 (its library's convention), or None."""
    parts = key.lower().split(".")
    for name, why in _OFFSET_CONVENTIONS:
        if name in parts[:-1]:
            return why
    return None


def _position_offset(run: _Run, t_free: list[str], s_free: list[str], where: str) -> Suggestion | None:
    """The only left-over position tables, one of them a row or two longer.

    Two rows more in a target whose names are OPT's/BART's (``embed_positions``) or RoBERTa's, from a
    source that has no such convention, is the offset: target row i + 2 <- source row i (``select_rows``;
    rows 0 and 1 keep the target's init), accepted. Two rows fewer the other way round takes rows 2 on.
    Anything else (one row, or names without the convention: a longer table may hold new positions at
    the end) is only proposed."""
    from .auto import canon

    def positional(key: str) -> bool:
        return "pos" in key.lower() or "pos" in canon(key.rpartition(".")[0].rpartition(".")[2])

    pos_t = [k for k in t_free if positional(k) and len(run.tgt.table[k].shape) == 2]
    pos_s = [k for k in s_free if positional(k) and len(run.src.table[k].shape) == 2]
    if len(pos_t) != 1 or len(pos_s) != 1:
        return None
    tkey, skey = pos_t[0], pos_s[0]
    ts, ss = run.tgt.table[tkey].shape, run.src.table[skey].shape
    k = ts[0] - ss[0]
    if ts[1] != ss[1] or k not in (1, 2, -POSITION_OFFSET):
        return None
    conv_t, conv_s = _offset_convention(tkey), _offset_convention(skey)
    shapes = f"{ss[0]} -> {ts[0]} rows"
    if k == POSITION_OFFSET and conv_t and not conv_s:
        rows: list[int | None] = [None] * k + list(range(ss[0]))
        return Suggestion(tkey, skey, 0.7, f"the only unmatched position tables in {where}, {shapes}: {conv_t} "
                          f"('{tkey}'), '{skey}' from row 0: select_rows places source row i at row i+2 (rows 0-1 "
                          "keep the target's init)", "auto", {"op": "select_rows", "rows": rows}, accepted=True)
    if k == -POSITION_OFFSET:
        if not (conv_s and not conv_t):
            return None
        rows = list(range(POSITION_OFFSET, ss[0]))
        return Suggestion(tkey, skey, 0.7, f"the only unmatched position tables in {where}, {shapes}: {conv_s} "
                          f"('{skey}'), '{tkey}' from row 0: select_rows takes source rows 2 on", "auto",
                          {"op": "select_rows", "rows": rows}, accepted=True)
    rows = [None] * k + list(range(ss[0]))
    return Suggestion(tkey, skey, 0.5, f"the only unmatched position tables in {where}, {shapes}: select_rows "
                      f"from row {k} (OPT and RoBERTa start positions at 2; use pad if the new rows are positions "
                      "at the end)", "auto", {"op": "select_rows", "rows": rows}, accepted=run.adapt)


def _pair_leaves(run: _Run, t_free: list[str], s_free: list[str]) -> list[tuple[str, str, str]]:
    """Left-over tensors whose shape (or, failing that, whose elements) no other left-over has, on each side."""
    out = []
    for key_of in (lambda sh: sh, _elements):
        tc = Counter(key_of(run.tgt.table[k].shape) for k in t_free)
        sc: dict[tuple, list[str]] = {}
        for k in s_free:
            sc.setdefault(key_of(run.src.table[k].shape), []).append(k)
        taken = set()
        for t in t_free:
            shape = run.tgt.table[t].shape
            if len(shape) == 0 or sum(d > 1 for d in shape) == 0:
                continue  # a scalar or a single element says nothing
            shape_key = key_of(shape)
            ss = sc.get(shape_key, [])
            if tc[shape_key] == 1 and len(ss) == 1:
                what = (format_shape(shape) if key_of is not _elements
                        else f"{len(shape_key)}-d {format_shape(shape_key)}-element")
                out.append((t, ss[0], f"the only unmatched {what} tensor on each side"))
                taken.add(t)
        t_free = [t for t in t_free if t not in taken]
        used = {s for _, s, _ in out}
        s_free = [s for s in s_free if s not in used]
    return out
