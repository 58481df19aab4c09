"""Subcommands over the core: inspect, map, apply."""

from __future__ import annotations

import argparse
import sys

from .cli import check_inputs, check_output, colour_enabled, paint, print_json, printable
from .core.apply import apply_to_file
from .core.mapping import ADAPTED, EXACT, INVALID, RENAMED, UNMAPPED, Mapping
from .core.strategies import source_side, strategy_names, suggest, target_side
from .core.tensors import format_shape
from .core.tree import Node, ParamTree

STATUS_COLOURS = {EXACT: "32", RENAMED: "36", ADAPTED: "33", INVALID: "31", UNMAPPED: "2"}


def human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def cmd_inspect(args: argparse.Namespace) -> int:
    check_inputs(("spec", args.spec))
    side = source_side(args.spec, trust_pickle=args.trust_pickle)
    tree = ParamTree(side.table, side.classes)
    if args.json:
        out = tree.to_dict()
        out["spec"] = side.spec
        out["notes"] = side.source.notes if side.source else []
        print_json(out)
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


def print_status_table(mapping: Mapping, source_table, target_table, limit: int | None = None) -> None:
    status = mapping.status(source_table, target_table)
    colour = colour_enabled()
    width = min(60, max((len(printable(k)) for k in target_table), default=10))
    rows = list(target_table)
    for key in rows[:limit] if limit else rows:
        st = status.target[key]
        entry = mapping.get(key)
        src = f"<- {entry.source}" if entry else ""
        extra = f"  {entry.reason}" if entry and entry.reason else ""
        if key in status.problems:
            extra = "  " + status.problems[key]
        line = printable(f"{key:<{width}} {format_shape(target_table[key].shape):<18} {src}{extra}")
        print(f"{paint(f'{st:<9}', STATUS_COLOURS[st], colour)} {line}")
    counts = {s: status.count(s) for s in STATUS_COLOURS}
    share = mapping.share(source_table, target_table, status)
    print(f"{len(target_table) - counts[UNMAPPED] - counts[INVALID]} of {len(target_table)} target tensors mapped "
          f"({counts[EXACT]} exact, {counts[RENAMED]} renamed, {counts[ADAPTED]} adapted, {counts[INVALID]} invalid); "
          f"{share:.1%} of target parameters from the source; {len(status.unused_sources)} source tensors unused")


def cmd_map(args: argparse.Namespace) -> int:
    check_inputs(("source", args.source), ("target", args.target))
    check_output(args.output, "mapping.json")
    src = source_side(args.source, trust_pickle=args.trust_pickle)
    tgt = target_side(args.target)
    options = {}
    strategy = args.strategy
    if args.rename:
        options["rules"] = args.rename
        if strategy is None:
            strategy = "rename"
    strategy = strategy or "exact"
    if args.adapt:
        options["adapt"] = True
    result = suggest(src, tgt, strategy, **options)
    mapping = result.to_mapping(src.spec, tgt.spec, threshold=args.threshold)
    if src.source is not None and src.source.path is not None and src.source.kind != "model":
        mapping.source_sha256 = src.source.sha256()
    mapping.save(args.output)
    print_status_table(mapping, src.table, tgt.table)
    if mapping.candidates:
        print(f"{len(mapping.candidates)} candidates not accepted (review them in the editor)")
    print(f"wrote {printable(args.output)}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    check_inputs(("mapping", args.mapping), ("--source", args.source), ("--target", args.target))
    check_output(args.output, "weights.safetensors")
    mapping = Mapping.load(args.mapping)
    show = sys.stderr.isatty()

    def progress(done: int, total: int, key: str) -> None:
        if show:
            print(f"\r[{done}/{total}] {printable(key)[:60]:<60}", end="", file=sys.stderr, flush=True)

    report = apply_to_file(mapping, args.output, source=args.source, target_spec=args.target,
                           progress=progress, trust_pickle=args.trust_pickle, seed=args.seed)
    if show:
        print(file=sys.stderr)
    for warning in report.warnings:
        print(f"warning: {printable(warning)}", file=sys.stderr)
    if args.json:
        print_json(report.to_dict())
    else:
        print(printable(report.summary()))
        print(f"wrote {printable(args.output)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show the parameter tree of a checkpoint or model spec")
    p.add_argument("spec", help="checkpoint path or spec (torchvision:resnet50, spp_gui:alexnet_spp, net.py:Net)")
    p.add_argument("--json", action="store_true", help="print the tree as JSON")
    p.add_argument("--trust-pickle", action="store_true", help="allow full unpickling (runs code from the file)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("map", help="suggest a mapping from SOURCE to TARGET and write it as JSON")
    p.add_argument("source", help="checkpoint path, torchvision:NAME:WEIGHTS, or model spec")
    p.add_argument("target", help="target model spec, e.g. spp_gui:alexnet_spp?num_classes=20")
    p.add_argument("-o", "--output", required=True, help="mapping file to write (JSON)")
    p.add_argument("--strategy", choices=strategy_names(), default=None, help="default: exact (rename with --rename)")
    p.add_argument("--rename", action="append", metavar="REGEX=REPL", help="rename rule, in order (repeatable)")
    p.add_argument("--threshold", type=float, default=None, help="accept every suggestion at or above this confidence")
    p.add_argument("--adapt", action="store_true", help="accept proposed shape-adapting transforms (auto)")
    p.add_argument("--trust-pickle", action="store_true", help="allow full unpickling (runs code from the file)")
    p.set_defaults(func=cmd_map)

    p = sub.add_parser("apply", help="fill the mapping's target from its source and write the weights")
    p.add_argument("mapping", help="mapping JSON file")
    p.add_argument("-o", "--output", required=True, help="weights to write: .safetensors or .pth")
    p.add_argument("--source", help="use this source instead of the one the mapping names")
    p.add_argument("--target", help="use this target spec instead of the one the mapping names")
    p.add_argument("--seed", type=int, default=0, help="seed for the target's initialisation of unmapped keys")
    p.add_argument("--json", action="store_true", help="print the load report as JSON")
    p.add_argument("--trust-pickle", action="store_true", help="allow full unpickling (runs code from the file)")
    p.set_defaults(func=cmd_apply)
