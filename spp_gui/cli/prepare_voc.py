"""``spp-gui prepare-voc``: PASCAL VOC 2007 as a 20-class ImageFolder."""

from __future__ import annotations

import argparse

from .train import say


def cmd_prepare_voc(args: argparse.Namespace) -> int:
    from ..training.voc import prepare_voc

    counts = prepare_voc(args.voc, args.out, min_size=args.min_size)
    names = sorted({c for split in counts.values() for c in split})
    say(f"{'class':<14}" + "".join(f"{s:>8}" for s in counts))
    for name in names:
        say(f"{name:<14}" + "".join(f"{counts[s][name]:>8}" for s in counts))
    say(f"{'total':<14}" + "".join(f"{sum(counts[s].values()):>8}" for s in counts))
    say(f"written to {args.out}/train and {args.out}/val")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare-voc", help="PASCAL VOC 2007 -> 20-class ImageFolder (object crops, VOC's splits)")
    p.add_argument("voc", metavar="VOCdevkit/VOC2007")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--min-size", type=int, default=32, help="skip objects smaller than this many pixels (default 32)")
    p.set_defaults(func=cmd_prepare_voc)
