"""Errors a user can cause. Each carries one clear message; the CLI prints it, the GUI shows it."""

from __future__ import annotations


class SppError(Exception):
    """Base for expected, user-caused errors (bad file, bad spec, bad mapping)."""


class SpecError(SppError):
    """A model or source spec that cannot be parsed or built."""


class SourceError(SppError):
    """A checkpoint that is missing, unreadable, corrupt or of an unknown kind."""


class UnsafePickleError(SourceError):
    """A checkpoint that would need full unpickling (arbitrary code execution) to load."""


class MappingError(SppError):
    """A mapping that does not fit its source and target, or a malformed mapping file."""


class Cancelled(SppError):  # noqa: N818 - reads better at the raise site
    """Long work stopped because the user asked it to."""
