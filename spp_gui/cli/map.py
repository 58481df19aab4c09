"""``spp-gui map``: suggest a mapping from a source to a target, write it, and show its status."""

from __future__ import annotations

import argparse
import sys

from ..core.auto_verify import verify_auto
from ..core.errors import SpecError
from ..core.mapping import ADAPTED, EXACT, INVALID, RENAMED, UNMAPPED, Mapping, MappingStatus
from ..core.strategies import Side, parse_rules, rename_key, source_side, strategy_names, suggest, target_side
from ..core.tensors import format_shape
from ..core.verify import parse_input_shape
from .common import (
    ProgressLine,
    add_quiet,
    add_source_key,
    check_inputs,
    check_output,
    colour_enabled,
    paint,
    print_json,
    printable,
    shorten,
    with_source_key,
)

STATUS_COLOURS = {EXACT: "32", RENAMED: "36", ADAPTED: "33", INVALID: "31", UNMAPPED: "2"}
#: ``map`` prints every row up to this many target keys; beyond it, the counts and the rows that need a look
FULL_TABLE_ROWS = 60


def _row(mapping: Mapping, status: MappingStatus, target_table, key: str) -> dict:
    entry = mapping.get(key)
    row = {"target": key, "status": status.target[key], "shape": list(target_table[key].shape),
           "source": entry.source if entry else None}
    if entry and entry.many:
        row["sources"] = list(entry.sources)
    if entry and entry.reason:
        row["reason"] = entry.reason
    if key in status.problems:
        row["problem"] = status.problems[key]
    return row


def print_status_table(mapping: Mapping, source_table, target_table, status: MappingStatus | None = None,
                       every_row: bool = True) -> None:
    """One row per target key; with ``every_row=False`` and more than FULL_TABLE_ROWS keys, only the
    invalid and unmapped ones (at most FULL_TABLE_ROWS of them), after a line of counts."""
    status = status or mapping.status(source_table, target_table)
    colour = colour_enabled()
    width = min(60, max((len(printable(k)) for k in target_table), default=10))
    rows = list(target_table)
    if not every_row and len(rows) > FULL_TABLE_ROWS:
        counts = ", ".join(f"{status.count(s)} {s}" for s in STATUS_COLOURS if status.count(s))
        attention = [k for k in rows if status.target[k] in (INVALID, UNMAPPED)]
        shown = attention[:FULL_TABLE_ROWS]
        what = f"the {len(shown)} invalid or unmapped" if attention else "no rows: none is invalid or unmapped"
        print(f"{len(rows)} target tensors: {counts}; showing {what} (--all for every row, --json for all of it)")
        rows = shown
    for key in rows:
        row = _row(mapping, status, target_table, key)
        src = f"<- {' + '.join(row.get('sources', [row['source']]))}" if row["source"] is not None else ""
        extra = f"  {row['problem']}" if "problem" in row else f"  {row['reason']}" if "reason" in row else ""
        line = printable(f"{key:<{width}} {format_shape(target_table[key].shape):<18} {src}{extra}")
        st = row["status"]
        print(f"{paint(f'{st:<9}', STATUS_COLOURS[st], colour)} {line}")
    if not every_row and len(target_table) > FULL_TABLE_ROWS:
        left = sum(1 for k in target_table if status.target[k] in (INVALID, UNMAPPED)) - len(rows)
        if left > 0:
            print(f"... and {left} more invalid or unmapped (--all for every row)")


def rule_matches(rules: list[str], source_keys) -> list[int]:
    """How many source keys each rename rule changes, applied in order to each key as the rename strategy does."""
    compiled = parse_rules(rules)
    counts = [0] * len(compiled)
    for key in source_keys:
        for i, rule in enumerate(compiled):
            key, fired = rename_key(key, [rule])
            counts[i] += bool(fired)
    return counts


def _nothing_fits(mapping: Mapping, args: argparse.Namespace, strategy: str, source_table, target_table) -> str:
    """The summary line of a mapping with no pairs, with what to try next."""
    first = renamed = next(iter(source_table), None)  # None: the source is empty
    if args.rename and strategy == "rename" and first is not None:
        renamed, _ = rename_key(first, parse_rules(args.rename))
    if first is not None and renamed is not None and renamed != first and renamed not in target_table:
        hint = (f"the rules turn source key '{shorten(first)}' into '{shorten(renamed)}', which the target lacks; "
                f"compare with the target's names (spp-gui inspect '{printable(args.target)}')")
    elif mapping.candidates:
        hint = (f"{len(mapping.candidates)} suggestions were not accepted: pass --adapt or --threshold, "
                "or review them in the editor")
    elif strategy != "auto":
        hint = "try --strategy auto, or --rename rules after comparing the names (spp-gui inspect on each side)"
    else:
        hint = "the two models share no names or structure auto recognises; map keys by hand in the editor"
    return f"{mapping.summary(source_table, target_table).headline()}: nothing fits; {hint}"


def cmd_map(args: argparse.Namespace) -> int:
    check_inputs(("source", args.source), ("target", args.target))
    check_output(args.output, "mapping.json")
    with (source_side(with_source_key(args.source, args.source_key), trust_pickle=args.trust_pickle) as src,
          target_side(args.target) as tgt):
        return _map_sides(args, src, tgt)


def _map_sides(args: argparse.Namespace, src: Side, tgt: Side) -> int:
    options = {}
    strategy = args.strategy
    warnings: list[str] = []
    if args.rename:
        options["rules"] = args.rename
        if strategy is None:
            strategy = "rename"
        if strategy == "rename":
            for rule, hits in zip(args.rename, rule_matches(args.rename, src.table), strict=True):
                if not hits:
                    warnings.append(f"rename rule '{rule}' matched no source key; check it against the source's "
                                    "names (spp-gui inspect SOURCE)")
        else:
            warnings.append(f"--rename rules are used by --strategy rename only; --strategy {strategy} ignores them")
    strategy = strategy or "exact"
    if args.adapt:
        options["adapt"] = True
    if args.head_dim is not None:
        if strategy != "auto":
            raise SpecError("--head-dim is an option of --strategy auto (HF <-> Meta Llama q/k rows)")
        options["head_dim"] = args.head_dim
    if args.verify and strategy != "auto":
        raise SpecError("--verify checks what --strategy auto suggests; add --strategy auto")
    input_shape = parse_input_shape(args.input_shape) if args.verify else None
    for warning in warnings:
        print(f"warning: {printable(warning)}", file=sys.stderr)
    result = suggest(src, tgt, strategy, **options)
    verify_line = ""
    if input_shape is not None:
        outcome = verify_auto(result.items, src, tgt, input_shape, source_model_spec=args.source_model)
        verify_line = outcome.summary()
        if outcome.skipped:
            warnings.append(verify_line)
            print(f"warning: {printable(verify_line)}", file=sys.stderr)
    mapping = result.to_mapping(src.spec, tgt.spec, threshold=args.threshold)
    if src.source is not None and src.source.file_backed and src.source.path is not None:
        hashing = ProgressLine(f"sha256 of {shorten(src.source.path.name, 40)}", enabled=not args.quiet)
        try:  # a file hashed before and unchanged since comes from the digest cache: no line at all
            mapping.source_sha256 = src.source.sha256(hashing)
        finally:
            hashing.close()
    mapping.save(args.output)
    status = mapping.status(src.table, tgt.table)
    summary = mapping.summary(src.table, tgt.table, status)
    line = summary.text() if len(mapping) else _nothing_fits(mapping, args, strategy, src.table, tgt.table)
    if args.json:
        print_json({"output": str(args.output), "summary": line, "warnings": warnings, "verify": verify_line,
                    "counts": summary.counts, "share": summary.share,
                    "unused_sources": status.unused_sources, "candidates": len(mapping.candidates),
                    "rows": [_row(mapping, status, tgt.table, key) for key in tgt.table],
                    "mapping": mapping.to_dict()})
        return 0
    if args.quiet:
        print(printable(line))
        return 0
    print_status_table(mapping, src.table, tgt.table, status, every_row=args.all)
    if verify_line and verify_line not in warnings:
        print(printable(verify_line))
    print(printable(line))
    if mapping.candidates:
        print(f"{len(mapping.candidates)} candidates not accepted (review them in the editor)")
    print(f"wrote {printable(args.output)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("map", help="suggest a mapping from SOURCE to TARGET and write it as JSON")
    p.add_argument("source", help="checkpoint path, torchvision:NAME:WEIGHTS, or model spec")
    p.add_argument("target", help="target model spec, e.g. spp_gui:alexnet_spp?num_classes=20")
    p.add_argument("-o", "--output", required=True, help="mapping file to write (JSON)")
    p.add_argument("--strategy", choices=strategy_names(), default=None, help="default: exact (rename with --rename)")
    p.add_argument("--rename", action="append", metavar="REGEX=REPL", help="rename rule, in order (repeatable)")
    p.add_argument("--threshold", type=float, default=None, help="accept every suggestion at or above this confidence")
    p.add_argument("--adapt", action="store_true", help="accept proposed shape-adapting transforms (auto)")
    p.add_argument("--head-dim", type=int, default=None, metavar="N",
                   help="auto: attention head size, for HF <-> Meta Llama wq/wk rows (otherwise read from an hf: "
                        "spec's config or a params.json beside the checkpoint)")
    p.add_argument("--verify", action="store_true",
                   help="with --strategy auto: run both models on one random batch; pairs whose outputs disagree "
                        "become candidates, equal-shaped siblings that agree when swapped are swapped")
    p.add_argument("--source-model", metavar="SPEC", help="with --verify: the architecture of a checkpoint source")
    p.add_argument("--input-shape", default="2,3,224,224", metavar="N,C,H,W",
                   help="with --verify: shape of the random input batch (default 2,3,224,224)")
    p.add_argument("--trust-pickle", action="store_true", help="allow full unpickling (runs code from the file)")
    add_source_key(p)
    p.add_argument("--json", action="store_true", help="print the mapping and its status per target key as JSON")
    p.add_argument("--all", action="store_true",
                   help=f"print every target key (by default, over {FULL_TABLE_ROWS} keys only the invalid and unmapped)")
    add_quiet(p)
    p.set_defaults(func=cmd_map)
