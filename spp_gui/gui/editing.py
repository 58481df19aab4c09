"""Manual edits: map by drag or keyboard, module onto module, unmap, transforms, accept suggestions,
several sources into one target (several keys dropped at once, Ctrl+drop adds one; the inspector
removes and reorders them).

Every edit ends as one :class:`ReplaceEntries` pushed on the undo stack; refusals end as one
sentence in the status bar naming the keys, their shapes and what would make them fit.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QInputDialog,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.combine import concat_dim
from ..core.mapping import Entry
from ..core.pairing import ModulePairing, channels_before, fitting_transforms, pair_modules, refusal
from ..core.strategies import Suggestion
from ..core.tensors import format_shape
from ..core.transforms import Transform, describe_transform
from .commands import map_text
from .session import MappingSession


class PairingPreview(QDialog):
    """Shows the pairs a module-onto-module drop would make when names alone did not decide them."""

    def __init__(self, pairing: ModulePairing, source: str, target: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Map module onto module")
        self.setObjectName("pairingPreview")
        by_order = set(pairing.by_order)
        tree = QTreeWidget()  # a handful of rows: a plain widget is right here
        tree.setHeaderLabels(["Source", "Target", "Matched by"])
        for s, t in pairing.pairs:
            QTreeWidgetItem(tree, [s, t, "order and shape" if (s, t) in by_order else "relative name"])
        for t in pairing.unmatched_targets:
            QTreeWidgetItem(tree, ["(nothing fits)", t, "stays unmapped"])
        tree.resizeColumnToContents(0)
        tree.resizeColumnToContents(1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText(f"Map {len(pairing.pairs)} pairs")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"<b>{source}</b> \u2192 <b>{target}</b>: some pairs were matched by position, "
                                "not by name. Check them before mapping."))
        layout.addWidget(tree)
        layout.addWidget(buttons)
        self.resize(640, 360)


class EditController:
    """Turns gestures into undoable edits of the session's mapping."""

    def __init__(self, session: MappingSession, message: Callable[[str], None], parent: QWidget | None = None) -> None:
        self.session, self.doc, self.message, self.parent = session, session.doc, message, parent

    def push(self, changes: dict[str, Entry | None], text: str | None = None) -> bool:
        return self.session.replace_entries(changes, text or map_text(changes))

    # -- mapping gestures ---------------------------------------------------------------------
    def map_paths(self, sources: list[str], target: str, add: bool = False) -> bool:
        """Drop or keyboard: one key onto one key, or a module onto a module; several keys onto one
        key join them (``concat``); ``add`` (Ctrl held on the drop) adds the key to the target's sources."""
        if self.doc.source is None or self.doc.target is None:
            return False
        stree, ttree = self.doc.source.tree, self.doc.target.tree
        if len(sources) > 1 and target in self.doc.target.side.table and all(
                s in self.doc.source.side.table for s in sources):
            return self.map_many(sources, target)
        if len(sources) != 1:
            self.message("Map one source key (or module) at a time onto one target key (or module), "
                         "or several source keys onto one target key to join them")
            return False
        if add and sources[0] in self.doc.source.side.table and target in self.doc.target.side.table:
            return self.add_source(target, sources[0])
        try:
            snode, tnode = stree.node(sources[0]), ttree.node(target)
        except KeyError as exc:
            self.message(f"No such key: {exc}")
            return False
        if snode.tensor is not None and tnode.tensor is not None:
            return self.map_key(snode.path, tnode.path)
        if snode.tensor is None and tnode.tensor is None:
            return self.map_module(snode.path, tnode.path)
        what = "a module onto a tensor" if tnode.tensor is not None else "a tensor onto a module"
        self.message(f"Cannot map {what}: drop a key onto a key, or a module onto a module")
        return False

    def map_key(self, source: str, target: str, transform: Transform | None = None) -> bool:
        stable, ttable = self.doc.loaded_source.side.table, self.doc.loaded_target.side.table
        sinfo = stable[source]
        tinfo = ttable[target]
        if transform is None and sinfo.shape != tinfo.shape:
            fits = fitting_transforms(sinfo.shape, tinfo.shape, channels_before(stable, source))
            if not fits:
                self.message(refusal(source, sinfo.shape, target, tinfo.shape))
                return False
            transform = self.choose_transform(source, target, fits)
            if transform is None:
                self.message("Not mapped: no transform chosen")
                return False
        entry = Entry(target, source, transform, "manual", None,
                      f"by hand{', ' + describe_transform(transform) if transform else ''}")
        done = self.push({target: entry})
        if done:
            self.message(f"Mapped {source} {format_shape(sinfo.shape)} \u2192 {target} {format_shape(tinfo.shape)}")
        return done

    def choose_transform(self, source: str, target: str, fits: list[Transform]) -> Transform | None:
        labels = [describe_transform(t) for t in fits]
        label, ok = QInputDialog.getItem(self.parent, "Shapes differ",
                                         f"{source} does not have the shape of {target}.\n"
                                         "Map it through one of these transforms?", labels, 0, False)
        return fits[labels.index(label)] if ok and label in labels else None

    def map_module(self, source: str, target: str) -> bool:
        pairing = pair_modules(self.doc.loaded_source.tree.node(source),
                               self.doc.loaded_target.tree.node(target))
        if not pairing.pairs:
            self.message(f"Nothing under {source} fits {target}: no tensor names or shapes agree")
            return False
        if pairing.ambiguous:
            preview = PairingPreview(pairing, source or "(root)", target or "(root)", self.parent)
            if preview.exec() != QDialog.DialogCode.Accepted:
                self.message("Module mapping cancelled")
                return False
        changes: dict[str, Entry | None] = {
            t: Entry(t, s, None, "manual:module", None, f"module {source} \u2192 {target}") for s, t in pairing.pairs}
        done = self.push(changes, f"Map module {source} \u2192 {target}")
        self.message(f"Mapped {len(pairing.pairs)} tensors of {source} onto {target}"
                     + (f"; {len(pairing.unmatched_targets)} left unmapped" if pairing.unmatched_targets else ""))
        return done

    def unmap(self, targets: list[str]) -> bool:
        keys = [t for t in targets if t in self.doc.mapping]
        if not keys:
            self.message("Nothing to remove: the selected target keys are not mapped")
            return False
        return self.push(dict.fromkeys(keys))

    # -- several sources into one target ---------------------------------------------------------
    def _joined(self, target: str, sources: list[str], origin: str = "manual") -> Entry:
        """An entry joining ``sources`` into ``target``: concat along the dim where they fit (the
        first where the other dims agree while some are still missing; 0 when none)."""
        stable, tinfo = self.doc.loaded_source.side.table, self.doc.loaded_target.side.table[target]
        shapes = [stable[s].shape for s in sources]
        dim = concat_dim(shapes, tinfo.shape)
        if dim is None:
            dim = next((d for d in range(len(tinfo.shape)) if all(
                len(sh) == len(tinfo.shape) and all(a == b for k, (a, b) in enumerate(zip(sh, tinfo.shape, strict=True))
                                                    if k != d) for sh in shapes)
                and sum(sh[d] for sh in shapes) <= tinfo.shape[d]), 0)
        return Entry.combined(target, sources, {"op": "concat", "dim": dim}, origin, None,
                              f"by hand, {len(sources)} sources joined along dim {dim}")

    def map_many(self, sources: list[str], target: str) -> bool:
        """Several source keys dropped onto one target key: joined in order (``concat``), if they fit."""
        sources = list(dict.fromkeys(sources))
        stable, tinfo = self.doc.loaded_source.side.table, self.doc.loaded_target.side.table[target]
        shapes = [stable[s].shape for s in sources]
        if concat_dim(shapes, tinfo.shape) is None:
            said = " + ".join(f"{s} {format_shape(sh)}" for s, sh in zip(sources, shapes, strict=True))
            self.message(f"Cannot join {said} into {target} {format_shape(tinfo.shape)}: they must agree in every "
                         "dimension but one, and add up to the target's size in that one")
            return False
        entry = self._joined(target, sources)
        done = self.push({target: entry}, f"Join {len(sources)} sources into {target}")
        if done:
            self.message(f"Mapped {' + '.join(sources)} → {target} {format_shape(tinfo.shape)} "
                         f"(concat along dim {entry.combine_op['dim']})")
        return done

    def add_source(self, target: str, source: str) -> bool:
        """Ctrl+drop: ``source`` becomes another source of ``target`` (after the ones it has)."""
        entry = self.doc.mapping.get(target)
        if entry is None:  # the first of several: a plain entry, however the shapes compare
            stable, ttable = self.doc.loaded_source.side.table, self.doc.loaded_target.side.table
            new = Entry(target, source, None, "manual", None, "by hand")
            done = self.push({target: new}, f"Map {target}")
            if done and stable[source].shape != ttable[target].shape:
                self.message(f"Mapped {source} → {target}; shapes differ: Ctrl+drop the other sources onto it")
            return done
        if source in entry.sources:
            self.message(f"{source} is already a source of {target}")
            return False
        return self._set_sources(target, [*entry.sources, source], f"Add {source} to {target}")

    def remove_source(self, target: str, source: str) -> bool:
        """Take ``source`` out of ``target``'s sources (the last one: unmap ``target``)."""
        entry = self.doc.mapping.get(target)
        if entry is None or source not in entry.sources:
            return False
        rest = [s for s in entry.sources if s != source]
        if not rest:
            return self.push({target: None})
        return self._set_sources(target, rest, f"Remove {source} from {target}")

    def move_source(self, target: str, source: str, step: int) -> bool:
        """Move ``source`` ``step`` places (-1 up, +1 down) in ``target``'s sources: the order they are joined in."""
        entry = self.doc.mapping.get(target)
        if entry is None or source not in entry.sources:
            return False
        order = list(entry.sources)
        i = order.index(source)
        j = i + step
        if not 0 <= j < len(order):
            return False
        order[i], order[j] = order[j], order[i]
        return self._set_sources(target, order, f"Move {source} {'up' if step < 0 else 'down'} in {target}")

    def _set_sources(self, target: str, sources: list[str], text: str) -> bool:
        old = self.doc.mapping.entries[target]
        if len(sources) == 1:  # one left: a plain entry again
            new = Entry(target, sources[0], None, old.origin, old.confidence, "by hand")
        else:
            new = self._joined(target, sources, old.origin)
            shapes = [self.doc.loaded_source.side.table[s].shape for s in sources]
            fits = concat_dim(shapes, self.doc.loaded_target.side.table[target].shape) is not None
            if old.many and not fits and old.transform:  # still partial: keep the dim the entry had
                new.transform = dict(old.transform)
        done = self.push({target: new}, text)
        if done:
            problem = self.doc.status.problems.get(target)
            self.message(f"{target} now from {' + '.join(sources)}" + (f"; {problem}" if problem else ""))
        return done

    def set_transform(self, target: str, transform: Transform | None) -> bool:
        entry = self.doc.mapping.get(target)
        if entry is None:
            return False
        new = Entry(entry.target, entry.source, transform, entry.origin, entry.confidence, entry.reason,
                    entry.more_sources)
        problem = self.doc.mapping.entry_problem(new, self.doc.loaded_source.side.table,
                                               self.doc.loaded_target.side.table)
        if problem:
            self.message(f"Transform not set: {problem}")
            return False
        return self.push({target: new}, f"Set transform of {target}")

    def unmap_sources(self, sources: list[str]) -> bool:
        """Delete in the source tree: remove the entries that read these source keys."""
        wanted = set(sources)
        keys = [t for t, e in self.doc.mapping.entries.items() if not wanted.isdisjoint(e.sources)]
        if not keys:
            self.message("Nothing to remove: the selected source keys are not used by the mapping")
            return False
        return self.push(dict.fromkeys(keys))

    def accept(self, suggestions: list[Suggestion], text: str | None = None) -> bool:
        """Put a batch of suggestions into the mapping: one undo step; says what changed."""
        changes: dict[str, Entry | None] = {}
        for s in suggestions:
            if s.source and s.target not in changes:
                changes[s.target] = s.entry()
        if not changes:
            self.message("No suggestions to apply")
            return False
        new = {t: e for t, e in changes.items() if self.doc.mapping.get(t) != e}
        done = self.push(changes, text or f"Apply {len(new)} suggestions")
        self.message(f"Applied {len(new)} suggestions: now in the mapping" if done
                     else "Those suggestions are already in the mapping")
        return done
