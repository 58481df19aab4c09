"""Editor speed on a ~47,000-key pair (MoE: 60 layers x 256 experts x 3 matrices, meta tensors).

Measures, in one run, for the editor (custom QAbstractItemModel + uniform rows + link canvas) and
for a plain QTreeWidget baseline on the same keys:
  * populate: both trees shown and first painted, on the GUI thread (goal < 1 s). The editor's
              ParamTrees are built on the load worker (printed apart); QTreeWidgetItems cannot be.
  * filter:   a substring and a regex filter, applied and painted (goal < 100 ms)
  * frame:    one paint of trees (+ link canvas) after a scroll step, median over frames (goal < 16 ms)
and, against QTreeView's own expandAll on the same two trees (what Expand all used to call):
  * expand:   Expand all on both trees, collapsed to painted with the link canvas, median of --rounds
              rounds, the two alternating (goal < 500 ms). TreePanel.expand_all expands what is on screen
  * step:     the worst page-down step after it (expanding what comes on screen, then painting; goal < 100 ms)
Usage: QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/gui_speed.py [--layers 60 --experts 256 --rounds 5]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402
from _report import bench_row  # noqa: E402
from PySide6.QtWidgets import QApplication, QHBoxLayout, QTreeWidget, QTreeWidgetItem, QWidget  # noqa: E402

from spp_gui.core.mapping import Mapping  # noqa: E402
from spp_gui.core.strategies import Side  # noqa: E402
from spp_gui.core.tensors import format_shape, table_of  # noqa: E402
from spp_gui.core.tree import ParamTree  # noqa: E402
from spp_gui.gui.document import Loaded  # noqa: E402
from spp_gui.gui.window import MainWindow  # noqa: E402


def moe_state(layers: int, experts: int, names: tuple[str, ...], prefix: str, mlp: str) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {f"{prefix}embed.weight": torch.empty(32000, 1024, device="meta")}
    for i in range(layers):
        base = f"{prefix}layers.{i}."
        for part in ("q", "k", "v", "o"):
            state[f"{base}attn.{part}.weight"] = torch.empty(1024, 1024, device="meta")
        state[f"{base}norm.weight"] = torch.empty(1024, device="meta")
        state[f"{base}{mlp}.router.weight"] = torch.empty(experts, 1024, device="meta")
        for j in range(experts):
            for n, shape in zip(names, ((512, 1024), (512, 1024), (1024, 512)), strict=True):
                state[f"{base}{mlp}.experts.{j}.{n}.weight"] = torch.empty(*shape, device="meta")
    return state


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def spread(times: list[float]) -> str:
    return f"median {ms(statistics.median(times))} [{ms(min(times))} .. {ms(max(times))}]"


def expand_run(window: MainWindow, rounds: int) -> dict[str, list[float]]:
    """Expand all on both trees, QTreeView.expandAll against TreePanel.expand_all, from collapsed to painted."""
    panels = (window.source_panel, window.target_panel)
    out: dict[str, list[float]] = {"base": [], "ours": [], "step": []}
    for _ in range(rounds):
        for name, expand in (("base", lambda p: p.view.expandAll()), ("ours", lambda p: p.expand_all())):
            for p in panels:
                p.collapse_all()
            window.repaint()
            start = time.perf_counter()
            for p in panels:
                expand(p)
            window.canvas.invalidate()
            window.repaint()
            out[name].append(time.perf_counter() - start)
    for _ in range(40):  # page down through the expand-all mode: each step expands what comes on screen
        start = time.perf_counter()
        for p in panels:
            bar = p.view.verticalScrollBar()
            bar.setValue(bar.value() + bar.pageStep())
            p.expand_visible()
        window.repaint()
        out["step"].append(time.perf_counter() - start)
    for p in panels:
        p.collapse_all()
    return out


def editor_run(src: Side, tgt: Side, pairs: dict[str, str], app: QApplication,
               rounds: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    app.processEvents()
    s_loaded = Loaded(src, ParamTree(src.table), "source")  # built on the load worker in the app
    t_loaded = Loaded(tgt, ParamTree(tgt.table), "target")
    start = time.perf_counter()
    window.session.reset(s_loaded, t_loaded, Mapping.from_pairs(pairs), None)
    window.repaint()
    populate = time.perf_counter() - start

    filters = []
    panel = window.target_panel
    for text, regex in (("experts.17.", False), (r"layers\.3\d\.attn\.q", True)):
        panel.regex.setChecked(regex)
        panel.filter.setText(text)
        start = time.perf_counter()
        panel.apply_filter()
        panel.view.repaint()
        filters.append(time.perf_counter() - start)
    panel.regex.setChecked(False)
    panel.filter.setText("")
    panel.apply_filter()

    for p, prefix in ((window.source_panel, "model."), (window.target_panel, "transformer.")):
        view, model = p.view, p.model  # the first layers open, as a user would
        layers = model.index_of_path(prefix + "layers")
        view.expand(layers.parent())
        view.expand(layers)
        for r in range(3):
            layer = model.index(r, 0, layers)
            view.expand(layer)
            for c in range(model.rowCount(layer)):
                view.expand(model.index(c, 0, layer))
    window.canvas.invalidate()
    window.repaint()
    frames = []
    area = window.centralWidget()
    for step in range(40):
        start = time.perf_counter()
        for p in (window.source_panel, window.target_panel):
            p.view.verticalScrollBar().setValue(step * 60)
        area.repaint()
        frames.append(time.perf_counter() - start)
    expand = expand_run(window, rounds)
    window.stack.setClean()
    window._sides_changed = False
    window.close()
    return {"populate": populate, "filter": max(filters), "frame": statistics.median(frames)}, expand


def widget_tree(table) -> QTreeWidget:
    tree = QTreeWidget()
    tree.setHeaderLabels(["Name", "Shape", "Dtype", "Numel", "Module"])
    tree.setUniformRowHeights(True)
    nodes: dict[str, QTreeWidgetItem] = {}
    for key, info in table.items():
        parent_path, parent = "", None
        parts = key.split(".")
        for part in parts[:-1]:
            parent_path = f"{parent_path}.{part}" if parent_path else part
            item = nodes.get(parent_path)
            if item is None:
                item = QTreeWidgetItem([part, "", "", "", ""])
                (parent.addChild(item) if parent is not None else tree.addTopLevelItem(item))
                nodes[parent_path] = item
            parent = item
        leaf = QTreeWidgetItem([parts[-1], format_shape(info.shape), info.dtype, f"{info.numel:,}", ""])
        leaf.setData(0, 256, key)
        parent.addChild(leaf)
    return tree


def widget_filter(tree: QTreeWidget, match) -> None:
    """The usual QTreeWidget filter: visit every item, hide what does not match."""
    def visit(item: QTreeWidgetItem) -> bool:
        key = item.data(0, 256)
        if key is not None:
            shown = bool(match(key))
        else:
            shown = False
            for i in range(item.childCount()):
                shown = visit(item.child(i)) or shown
        item.setHidden(not shown)
        return shown

    for i in range(tree.topLevelItemCount()):
        visit(tree.topLevelItem(i))


def baseline_run(src: Side, tgt: Side, app: QApplication) -> dict[str, float]:
    host = QWidget()
    layout = QHBoxLayout(host)
    host.resize(1600, 1000)
    host.show()
    app.processEvents()
    start = time.perf_counter()
    left, right = widget_tree(src.table), widget_tree(tgt.table)  # QTreeWidgetItems live in the GUI thread
    layout.addWidget(left)
    layout.addWidget(right)
    left.show()
    right.show()
    host.repaint()
    populate = time.perf_counter() - start
    filters = []
    for text, regex in (("experts.17.", False), (r"layers\.3\d\.attn\.q", True)):
        match = re.compile(text, re.I).search if regex else (lambda k, t=text: t in k)
        start = time.perf_counter()
        widget_filter(right, match)
        right.repaint()
        filters.append(time.perf_counter() - start)
    widget_filter(right, lambda k: True)
    for tree in (left, right):
        tree.topLevelItem(0).setExpanded(True)
        layers = tree.topLevelItem(0).child(1)
        layers.setExpanded(True)
        for r in range(3):
            layer = layers.child(r)
            layer.setExpanded(True)
            for c in range(layer.childCount()):
                layer.child(c).setExpanded(True)
    host.repaint()
    frames = []
    for step in range(40):
        start = time.perf_counter()
        for tree in (left, right):
            tree.verticalScrollBar().setValue(step * 3)
        host.repaint()
        frames.append(time.perf_counter() - start)
    host.close()
    return {"populate": populate, "filter": max(filters), "frame": statistics.median(frames)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=60)
    parser.add_argument("--experts", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of Expand all, each way")
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    s_state = moe_state(args.layers, args.experts, ("w1", "w3", "w2"), "model.", "mlp")
    t_state = moe_state(args.layers, args.experts, ("gate_proj", "up_proj", "down_proj"), "transformer.", "moe")
    src, tgt = Side(table_of(s_state)), Side(table_of(t_state))
    pairs = dict(zip(tgt.table, src.table, strict=True))
    print(f"{len(src.table):,} source keys, {len(tgt.table):,} target keys, {len(pairs):,} links")
    start = time.perf_counter()
    ParamTree(src.table)
    ParamTree(tgt.table)
    print(f"ParamTree build of both sides (core, on the load worker): {ms(time.perf_counter() - start)}")
    ours, expand = editor_run(src, tgt, pairs, app, args.rounds)
    base = baseline_run(src, tgt, app)
    goals = {"populate": 1.0, "filter": 0.1, "frame": 0.016}
    for name, label in (("populate", "both trees populated"), ("filter", "filter (worst of substring, regex)"),
                        ("frame", "frame while scrolling (median)")):
        ratio = base[name] / ours[name] if ours[name] else None
        print(f"{label:38s} editor {ms(ours[name]):>10s}   QTreeWidget {ms(base[name]):>10s}   "
              f"speed-up {ratio:.1f}x   goal < {ms(goals[name])}")
        bench_row(f"gui {name}", ms(ours[name]), f"QTreeWidget {ms(base[name])}", ratio, f"< {ms(goals[name])}",
                  ours[name] < goals[name])
    mine, theirs, worst = statistics.median(expand["ours"]), statistics.median(expand["base"]), max(expand["step"])
    print(f"expand all, both trees ({args.rounds} rounds)  editor {spread(expand['ours'])}   "
          f"QTreeView.expandAll {spread(expand['base'])}   speed-up {theirs / mine:.1f}x   goal < {ms(0.5)}")
    print(f"page-down step after it (worst of {len(expand['step'])})  editor {ms(worst)} "
          f"({spread(expand['step'])})   goal < {ms(0.1)}")
    bench_row("gui expand all", ms(mine), f"QTreeView.expandAll {ms(theirs)}", theirs / mine, f"< {ms(0.5)}", mine < 0.5)
    bench_row("gui expand-all scroll step", ms(worst), "-", None, f"< {ms(0.1)}", worst < 0.1)


if __name__ == "__main__":
    main()
