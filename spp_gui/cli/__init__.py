"""Command line: ``spp-gui SUBCOMMAND ...``, one module per subcommand (see dispatch.COMMANDS)."""

from __future__ import annotations

from .dispatch import main

__all__ = ["main"]
