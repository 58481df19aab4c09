"""``spp-gui demo``: the seed's experiment offline, on drawn images."""

from __future__ import annotations

import argparse

from ..training.events import drive
from .train import ProgressPrinter, say


def cmd_demo(args: argparse.Namespace) -> int:
    from ..training.demo import run_demo

    result = drive(run_demo(args.out, quick=args.quick, seed=args.seed), ProgressPrinter())
    if result is None:
        return 1
    say(result.table())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the seed's experiment offline, on drawn images: AlexNet -> AlexNet_SPP from "
                                    "scratch, by the seed's recipe (order) and by spp_grid")
    p.add_argument("--quick", action="store_true",
                   help="a smaller version (about 25 s on 2 CPU cores; the full one about a minute)")
    p.add_argument("--out", default="spp_demo", help="folder for data, runs and figure (default: spp_demo)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
