"""``spp-gui SUBCOMMAND ...``: the parser, the dispatch and how errors end; with no subcommand, the editor.

Thin by design: parse, call the public API, print. Errors a user can cause end in one line on
stderr and exit status 2; tracebacks are for bugs.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence

from ..core.errors import SppError
from ..core.trust import trust_all_code, trust_file, trust_named_specs
from . import apply, demo, export, inspect, map, prepare_voc, train, verify
from .common import EXIT_USER_ERROR, announce, os_error_in, os_error_message, printable

#: one module per subcommand, each with ``register(subparsers)``, in the order --help lists them
COMMANDS = (inspect, map, apply, export, verify, train, demo, prepare_voc)
#: the editor is imported only when it is asked for (the subcommands never load Qt)
GUI_MODULE = "spp_gui.gui.app"


def _looks_like_operand(text: str) -> bool:
    """A file, a spec or an option: what the editor's ``spp-gui [SOURCE TARGET] [--mapping M]`` takes."""
    return (text.startswith("-") or any(c in text for c in "/\\.:?=~") or os.path.lexists(text))


def mistyped_command(text: str, commands: Sequence[str]) -> str | None:
    """The subcommand ``text`` was probably meant to be (``inpsect`` -> ``inspect``), if it is no file or spec."""
    if text in commands or _looks_like_operand(text):
        return None
    near = difflib.get_close_matches(text.lower(), list(commands), n=1, cutoff=0.6)
    return near[0] if near else None


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="spp-gui",
        description="Map pretrained weights into a model that is not quite the same, then train it. "
                    "With no subcommand, opens the mapping editor (spp-gui [SOURCE TARGET] [--mapping M]).",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"spp-gui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    for command in sub.choices.values():
        command.add_argument("--trust-code", action="store_true",
                             help="run model code (file.py:Class) that a mapping or run config names; "
                                  "each file is named on stderr before it runs")
        command.add_argument("--trust-code-file", action="append", default=[], metavar="PATH=SHA256",
                             help="run this model file only while it has this sha256 (what the editor passes "
                                  "to the processes it starts); repeatable")
    return parser, sub.choices


def _gui(argv: Sequence[str]) -> int:
    try:
        module = importlib.import_module(GUI_MODULE)
    except ModuleNotFoundError as exc:
        print(f"spp-gui: error: the editor is not available ({exc}); use a subcommand, see --help", file=sys.stderr)
        return EXIT_USER_ERROR
    return module.main(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_parser()
    # model files the user names here are theirs to run; those read from a mapping or config are not
    trust_named_specs(argv)
    if argv and (meant := mistyped_command(argv[0], list(commands))):
        print(f"spp-gui: error: unknown command '{printable(argv[0])}'; did you mean '{meant}'? "
              "(spp-gui --help lists them)", file=sys.stderr)
        return EXIT_USER_ERROR
    if not argv or (argv[0] not in commands and argv[0] not in ("-h", "--help", "--version")):
        return _gui(argv)
    args = parser.parse_args(argv)
    if args.trust_code:
        trust_all_code(True, announce=announce)
    for pinned in getattr(args, "trust_code_file", []):
        path, _, digest = pinned.rpartition("=")
        if not path or len(digest) != 64:
            parser.error(f"--trust-code-file {pinned!r}: expected PATH=SHA256 (64 hex digits)")
        trust_file(path, digest.lower())
    try:
        return int(args.func(args) or 0)
    except SppError as exc:
        print(f"spp-gui: error: {printable(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("spp-gui: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("spp-gui: error: out of memory", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a full disk or a refused write is the machine's answer, not a bug
        if (cause := os_error_in(exc)) is None:
            raise
        print(f"spp-gui: error: {os_error_message(cause, getattr(args, 'output', None))}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
