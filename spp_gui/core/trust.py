"""Which Python files the user has agreed to run.

A model spec ``path/to/net.py:Net`` imports that file, so it runs whatever the file contains.
Mapping files, run configs and autosaves are data someone may have sent: a spec read from one of
them must never import silently. The rule is one check in one place: :func:`code_to_run` hands
out a file's source only when the user trusted that file *with these exact bytes*, by naming it
on the command line or in a dialog (:func:`trust_file`), by answering yes to a prompt that named
the file and its sha256, or by ``--trust-code`` (:func:`trust_all_code`).

The source is read once, hashed, and the same bytes are compiled: a file swapped between the
check and the import cannot slip through.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from .errors import SpecError

MAX_CODE_BYTES = 16 * 1024 * 1024  # a model definition, not a data file

_lock = threading.Lock()
_trusted: dict[Path, set[str]] = {}  # resolved path -> sha256 digests the user agreed to
_trust_all = False
_announce: Callable[[str], None] | None = None


class UntrustedCodeError(SpecError):
    """A spec would import a Python file the user has not agreed to run."""

    def __init__(self, path: Path, sha256: str, spec: str) -> None:
        self.path = path
        self.sha256 = sha256
        self.spec = spec
        super().__init__(
            f"model spec {spec!r} would run the Python file {path} (sha256 {sha256[:16]}…), which you have "
            "not named yourself (or that changed since you allowed it); run it only if you trust that file: "
            "pass --trust-code (command line), answer Run this file in the editor, or call "
            "spp_gui.trust_code(path) in a script"
        )


def _read(path: Path) -> bytes:
    try:
        if not path.is_file():
            raise SpecError(f"model file not found or not a regular file: {path}")
        with open(path, "rb") as fh:
            data = fh.read(MAX_CODE_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CODE_BYTES:
        raise SpecError(f"model file {path} is over {MAX_CODE_BYTES // 2**20} MiB: not a model definition")
    return data


def file_sha256(path: str | Path) -> str:
    """The digest a prompt shows and :func:`trust_file` can pin."""
    return hashlib.sha256(_read(Path(path).expanduser().resolve())).hexdigest()


def trust_file(path: str | Path, sha256: str | None = None) -> str:
    """Allow running ``path`` as it is now (or, with ``sha256``, only while it has that digest)."""
    resolved = Path(path).expanduser().resolve()
    digest = sha256 or hashlib.sha256(_read(resolved)).hexdigest()
    with _lock:
        _trusted.setdefault(resolved, set()).add(digest)
    return digest


def trust_all_code(on: bool = True, announce: Callable[[str], None] | None = None) -> None:
    """``--trust-code``: run any model file a spec names; ``announce`` is told each one before it runs."""
    global _trust_all, _announce
    with _lock:
        _trust_all = on
        _announce = announce if on else None


def forget_trust() -> None:
    """Back to trusting nothing (tests, and a session that wants a clean slate)."""
    global _trust_all, _announce
    with _lock:
        _trusted.clear()
        _trust_all = False
        _announce = None


def is_trusted(path: str | Path) -> bool:
    resolved = Path(path).expanduser().resolve()
    try:
        digest = hashlib.sha256(_read(resolved)).hexdigest()
    except SpecError:
        return False
    with _lock:
        return _trust_all or digest in _trusted.get(resolved, ())


def code_to_run(path: Path, spec: str) -> tuple[bytes, str]:
    """The file's source and sha256 if the user trusts these bytes; else :class:`UntrustedCodeError`."""
    resolved = path.expanduser().resolve()
    data = _read(resolved)
    digest = hashlib.sha256(data).hexdigest()
    with _lock:
        allowed = digest in _trusted.get(resolved, ())
        announce = _announce if _trust_all and not allowed else None
        allowed = allowed or _trust_all
    if not allowed:
        raise UntrustedCodeError(resolved, digest, spec)
    if announce is not None:
        announce(f"running model code from {resolved} (sha256 {digest[:16]}…), allowed by --trust-code")
    return data, digest


def trust_named_specs(texts: list[str]) -> None:
    """Trust the files of the file specs among ``texts``: the user typed them (command line, dialog)."""
    from .specs import looks_like_model_spec, parse_spec

    for text in texts:
        for part in (text, text.partition("=")[2]):
            if part and looks_like_model_spec(part):
                try:
                    spec = parse_spec(part)
                except SpecError:
                    continue
                if spec.kind == "file" and spec.path:
                    try:
                        trust_file(spec.path)
                    except SpecError:
                        pass  # a missing file: building it will say so


def code_files(texts: list[str]) -> list[Path]:
    """The Python files that the file specs among ``texts`` would run."""
    from .specs import looks_like_model_spec, parse_spec

    found = []
    for text in texts:
        if text and looks_like_model_spec(text):
            try:
                spec = parse_spec(text)
            except SpecError:
                continue
            if spec.kind == "file" and spec.path:
                found.append(Path(spec.path).expanduser().resolve())
    return found


def stderr_announce(text: str) -> None:
    print(f"spp-gui: {text}", file=sys.stderr)
