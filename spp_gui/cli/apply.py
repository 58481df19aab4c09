"""``spp-gui apply``: fill the mapping's target from its source and write the weights."""

from __future__ import annotations

import argparse
import sys

from ..core.apply import apply_to_file
from ..core.mapping import Mapping
from .common import (
    ProgressLine,
    add_quiet,
    add_source_key,
    check_inputs,
    check_output,
    print_json,
    printable,
    with_source_key,
)


def cmd_apply(args: argparse.Namespace) -> int:
    check_inputs(("mapping", args.mapping), ("--source", args.source), ("--target", args.target))
    check_output(args.output, "weights.safetensors")
    mapping = Mapping.load(args.mapping)
    progress = ProgressLine("apply", enabled=not args.quiet)
    try:
        source = with_source_key(args.source or mapping.source_spec, args.source_key)
        report = apply_to_file(mapping, args.output, source=source or None, target_spec=args.target,
                               progress=progress, trust_pickle=args.trust_pickle, seed=args.seed,
                               dtype=args.dtype)
    finally:
        progress.close()
    for warning in report.warnings:
        print(f"warning: {printable(warning)}", file=sys.stderr)
    if args.json:
        print_json(report.to_dict())
    elif args.quiet:
        print(printable(report.summary()))
    else:
        print(printable(report.summary()))
        for line in report.tied_lines():
            print(f"  {printable(line)}")
        print(f"wrote {printable(args.output)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("apply", help="fill the mapping's target from its source and write the weights")
    p.add_argument("mapping", help="mapping JSON file")
    p.add_argument("-o", "--output", required=True, help="weights to write: .safetensors or .pth")
    p.add_argument("--source", help="use this source instead of the one the mapping names")
    p.add_argument("--target", help="use this target spec instead of the one the mapping names")
    p.add_argument("--seed", type=int, default=0, help="seed for the target's initialisation of unmapped keys")
    p.add_argument("--dtype", choices=["keep", "float32", "bfloat16", "float16"],
                   help="dtype of the written tensors: keep = each mapped tensor in its source's dtype (unmapped "
                        "keys in the target's); float32/bfloat16/float16 = every floating tensor; default: the "
                        "target's dtypes")
    p.add_argument("--json", action="store_true", help="print the load report as JSON")
    p.add_argument("--trust-pickle", action="store_true", help="allow full unpickling (runs code from the file)")
    add_source_key(p)
    add_quiet(p)
    p.set_defaults(func=cmd_apply)
