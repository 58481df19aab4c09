"""``spp-gui export``: a mapping as a dependency-free snippet for another loader."""

from __future__ import annotations

import argparse
import sys

from ..core.export import FORMATS, export_mapping
from ..core.mapping import Mapping
from .common import add_quiet, add_source_key, check_inputs, printable, with_source_key


def cmd_export(args: argparse.Namespace) -> int:
    check_inputs(("mapping", args.mapping), ("--source", args.source))
    mapping = Mapping.load(args.mapping)
    source_keys = None
    source = with_source_key(args.source or mapping.source_spec, args.source_key)
    if source:
        from ..core.errors import SppError
        from ..core.strategies import source_side

        try:  # all source keys let the regex forms keep unused ones off target names
            with source_side(source) as side:
                source_keys = list(side.table)
        except SppError as exc:
            if args.source or args.source_key:
                raise
            if not args.quiet:
                print(f"note: source not read ({printable(exc)}); unused source keys are not diverted", file=sys.stderr)
    target_keys = None
    if mapping.target_spec:
        from ..core.errors import SppError
        from ..core.strategies import target_side

        try:
            with target_side(mapping.target_spec) as side:
                target_keys = list(side.table)
        except SppError as exc:
            if not args.quiet:
                print(f"note: target not built ({printable(exc)}); every unused source key is diverted", file=sys.stderr)
    result = export_mapping(mapping, args.format, source_keys, target_keys)
    sys.stdout.write(result.text)
    for line in result.not_expressed if not args.quiet else ():
        print(f"not expressed: {printable(line)}", file=sys.stderr)
    for line in result.not_loaded if not args.quiet else ():
        print(f"not loaded: {printable(line)}", file=sys.stderr)
    shortfalls = []  # one final line, -q or not
    if result.not_expressed:
        shortfalls.append(f"{len(result.not_expressed)} entries could not be expressed as {args.format}")
    if result.not_loaded:
        shortfalls.append(f"{len(result.not_loaded)} entries load wrong in one client version (see 'not loaded' "
                          f"in the snippet's header)")
    if shortfalls:
        print("; ".join(shortfalls) + "; use --as python for those", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="print a mapping as a Python function or another loader's rename rules")
    p.add_argument("mapping", help="mapping JSON file")
    p.add_argument("--as", dest="format", choices=FORMATS, default="python",
                   help="python: remap() function; hf-key-mapping: transformers key_mapping dict (one set for "
                        "4.x and 5.x, or one each, checked against each version's rules); "
                        "mmengine-revise-keys: revise_keys list")
    p.add_argument("--source", help="read source keys from here instead of the mapping's source")
    add_source_key(p)
    add_quiet(p)
    p.set_defaults(func=cmd_export)
