"""``spp-gui verify``: check a mapping by running both models on one random batch."""

from __future__ import annotations

import argparse

from ..core.errors import SpecError
from ..core.mapping import Mapping
from ..core.verify import AGREE, DISAGREE, NOT_COMPARED, NOT_INFORMATIVE, parse_input_shape, verify_mapping
from .common import (
    add_quiet,
    add_source_key,
    check_inputs,
    colour_enabled,
    paint,
    print_json,
    printable,
    with_source_key,
)

COLOURS = {AGREE: "32", DISAGREE: "31", NOT_INFORMATIVE: "33", NOT_COMPARED: "2"}
WIDTH = max(map(len, COLOURS)) + 1


def _shape(text: str) -> tuple[int, ...]:
    try:
        return parse_input_shape(text)
    except SpecError as exc:
        raise SpecError(str(exc).replace("the input shape", "--input-shape", 1)) from None


def cmd_verify(args: argparse.Namespace) -> int:
    check_inputs(("mapping", args.mapping), ("--source", args.source), ("--source-model", args.source_model),
                 ("--target", args.target))
    mapping = Mapping.load(args.mapping)
    source = with_source_key(args.source or mapping.source_spec, args.source_key) or None
    report = verify_mapping(mapping, source=source, target_spec=args.target,
                            source_model_spec=args.source_model, input_shape=_shape(args.input_shape), seed=args.seed)
    if args.json:
        print_json(report.to_dict())
        return 0 if report.ok else 1
    colour = colour_enabled()
    for c in report.layers if not args.quiet else ():
        nums = f"cos {c.cosine:.6f}  rel.err {c.rel_error:.2e}" if c.cosine is not None else ""
        line = printable(f"{c.target_module:<32} <- {c.source_module:<32} {nums}  {c.note}".rstrip())
        print(f"{paint(f'{c.status:<{WIDTH}}', COLOURS.get(c.status, '2'), colour)} {line}")
    counts = report.counts()
    zeros = f", {counts[NOT_INFORMATIVE]} not informative (all-zero outputs)" if counts[NOT_INFORMATIVE] else ""
    print(f"{counts[AGREE]} layers agree, {counts[DISAGREE]} disagree{zeros}, {counts[NOT_COMPARED]} not compared "
          f"(input {'x'.join(map(str, report.input_shape))})")
    return 0 if report.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="run source and mapped target on one random batch and compare each mapped layer")
    p.add_argument("mapping", help="mapping JSON file")
    p.add_argument("--source", help="use this source instead of the one the mapping names")
    p.add_argument("--source-model", help="architecture spec of a checkpoint source (e.g. torchvision:alexnet)")
    p.add_argument("--target", help="use this target spec instead of the one the mapping names")
    add_source_key(p)
    p.add_argument("--input-shape", default="2,3,224,224", help="random input batch shape (default 2,3,224,224)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    add_quiet(p)
    p.set_defaults(func=cmd_verify)
