"""Command line: ``spp-gui SUBCOMMAND ...``; with no subcommand it opens the editor.

Thin by design: parse, call the core or training package, print. Errors a user can cause end
in one line on stderr and exit status 2; tracebacks are for bugs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence

from .core.errors import SppError
from .core.trust import stderr_announce, trust_all_code, trust_named_specs

# Modules that add subcommands: each has ``register(subparsers)``.
COMMAND_MODULES = ["spp_gui.cli_core", "spp_gui.cli_export", "spp_gui.cli_train", "spp_gui.cli_verify"]
GUI_MODULE = "spp_gui.gui.app"

EXIT_USER_ERROR = 2


def colour_enabled(stream=sys.stdout) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def paint(text: str, code: str, enabled: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if enabled else text


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=1)
    sys.stdout.write("\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    parser = argparse.ArgumentParser(
        prog="spp-gui",
        description="Map pretrained weights into a model that is not quite the same, then train it. "
                    "With no subcommand, opens the mapping editor (spp-gui [SOURCE TARGET] [--mapping M]).",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"spp-gui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    for command in sub.choices.values():
        command.add_argument("--trust-code", action="store_true",
                             help="run model code (file.py:Class) that a mapping or run config names; "
                                  "each file is named on stderr before it runs")
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
    if not argv or (argv[0] not in commands and argv[0] not in ("-h", "--help", "--version")):
        return _gui(argv)
    args = parser.parse_args(argv)
    if args.trust_code:
        trust_all_code(True, announce=stderr_announce)
    try:
        return int(args.func(args) or 0)
    except SppError as exc:
        print(f"spp-gui: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("spp-gui: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("spp-gui: error: out of memory", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
