"""``spp-gui inspect``: the parameter tree of a checkpoint or model spec."""

from __future__ import annotations

import argparse

from ..core.strategies import Side, source_side
from ..core.tensors import format_shape
from ..core.tree import Node, ParamTree
from .common import (
    add_quiet,
    add_source_key,
    check_inputs,
    colour_enabled,
    human,
    paint,
    print_json,
    printable,
    with_source_key,
)


def cmd_inspect(args: argparse.Namespace) -> int:
    check_inputs(("spec", args.spec))
    with source_side(with_source_key(args.spec, args.source_key), trust_pickle=args.trust_pickle) as side:
        return _inspect_side(args, side)


def _inspect_side(args: argparse.Namespace, side: Side) -> int:
    tree = ParamTree(side.table, side.classes)
    if args.json:
        out = tree.to_dict()
        out["spec"] = side.spec
        out["notes"] = side.source.notes if side.source else []
        print_json(out)
        return 0
    if args.quiet:
        print(f"total: {len(tree)} tensors, {tree.numel:,} parameters")
        return 0
    colour = colour_enabled()
    if side.source is not None and side.source.notes:
        print(paint(printable("# " + "; ".join(side.source.notes)), "2", colour))

    def show(node: Node, depth: int) -> None:
        for child in node.children:
            pad, name = "  " * depth, printable(child.name)  # names come from the file: no escapes reach the terminal
            if child.tensor is not None:
                t = child.tensor
                print(f"{pad}{name:<{max(1, 40 - len(pad))}} {format_shape(t.shape):<22} {printable(t.dtype):<9} "
                      f"{t.numel:>12,}")
            else:
                cls = f" ({printable(child.module_class)})" if child.module_class else ""
                print(paint(f"{pad}{name}{cls}  [{child.count} tensors, {human(child.numel)}]", "1", colour))
                show(child, depth + 1)

    show(tree.root, 0)
    print(f"total: {len(tree)} tensors, {tree.numel:,} parameters")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show the parameter tree of a checkpoint or model spec")
    p.add_argument("spec", help="checkpoint path or spec (torchvision:resnet50, spp_gui:alexnet_spp, net.py:Net)")
    p.add_argument("--json", action="store_true", help="print the tree as JSON")
    p.add_argument("--trust-pickle", action="store_true", help="allow full unpickling (runs code from the file)")
    add_source_key(p)
    add_quiet(p)
    p.set_defaults(func=cmd_inspect)
