"""``spp-gui demo``: the seed's experiment offline, on drawn images."""

from __future__ import annotations

import argparse
import signal
import sys

from ..training.engine import RunControl
from ..training.event_stream import JsonLinesEmitter
from ..training.events import Message, drive
from .train import event_printer, follow_stdin, say, stop_on_sigterm


def cmd_demo(args: argparse.Namespace) -> int:
    from ..training.demo import run_demo

    control = RunControl()
    previous = signal.getsignal(signal.SIGTERM)
    stop_on_sigterm(control)  # SIGTERM ends the run under way after its step, as in ``train``
    if args.control_stdin:
        follow_stdin(control)
    try:
        result = drive(run_demo(args.out, quick=args.quick, seed=args.seed, control=control),
                       event_printer(args.events_jsonl))
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    if result is None:
        return 1
    if args.events_jsonl:  # stdout carries only events then: the table goes to stderr, its gist as a Message
        say(result.table(), file=sys.stderr)
        JsonLinesEmitter(sys.stdout)(Message("", result.summary()))
    else:
        say(result.table())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the seed's experiment offline, on drawn images: AlexNet -> AlexNet_SPP from "
                                    "scratch, by the seed's recipe (order) and by spp_grid")
    p.add_argument("--quick", action="store_true",
                   help="a smaller version (about 25 s on 2 CPU cores; the full one about a minute)")
    p.add_argument("--out", default="spp_demo", help="folder for data, runs and figure (default: spp_demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--events-jsonl", action="store_true",
                   help="print every event as one JSON line on stdout (the table goes to stderr)")
    p.add_argument("--control-stdin", action="store_true",
                   help="read pause, resume and stop lines on stdin; end of input stops the demo after its step")
    p.set_defaults(func=cmd_demo)
