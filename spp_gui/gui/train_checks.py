"""Checks the Train panel makes before a run, as small Qt-free functions.

* how many classes a target spec's head predicts, so a dataset with another count is caught
  when the folders are picked, not minutes later when the engine builds the model;
* whether a run name the user typed can be a folder name under the runs folder.
"""

from __future__ import annotations

import re
from functools import lru_cache

from torch import nn

from ..core.errors import SppError
from ..core.specs import build_model, parse_spec

RESERVED = set('<>:"/\\|?*')  # not in a file name on some system the runs folder may be shared with


@lru_cache(maxsize=64)  # the page re-checks on every show; a spec always builds the same head
def head_classes(spec: str) -> int | None:
    """The number of classes the spec's model predicts, or None when it cannot be told cheaply and safely.

    ``num_classes`` in the spec says it; otherwise the model is built on the meta device (no memory,
    no init) and its last ``nn.Linear`` is read. A ``file.py:Class`` spec is never built here: that
    would run the user's file just to count.
    """
    try:
        parsed = parse_spec(spec)
    except SppError:
        return None
    stated = parsed.kwargs.get("num_classes")
    if isinstance(stated, int) and not isinstance(stated, bool):
        return stated
    if parsed.kind == "file":
        return None
    try:
        model = build_model(parsed, device="meta")
    except SppError:
        return None  # Start reports what is wrong with the spec
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def with_num_classes(spec: str, classes: int) -> str:
    """The spec with ``num_classes`` set (replaced where it is given, appended otherwise)."""
    head, _, query = spec.strip().partition("?")
    items = [item for item in query.split("&") if item]
    setting = f"num_classes={classes}"
    for i, item in enumerate(items):
        if item.partition("=")[0] == "num_classes":
            items[i] = setting
            break
    else:
        items.append(setting)
    return f"{head}?{'&'.join(items)}"


def class_mismatch(spec: str, data_classes: int) -> str:
    """'' when the target predicts ``data_classes`` classes (or it cannot be told); else the problem and its fix."""
    head = head_classes(spec)
    if head is None or head == data_classes:
        return ""
    return (f"the data has {data_classes} classes; the target has {head}: "
            f"set num_classes={data_classes} in the spec")


def run_name_problem(name: str) -> str:
    """'' when ``name`` can be a run folder's name (one path component); else why not."""
    if not name:
        return ""  # the panel picks one
    if name != name.strip():
        return f"run name {name!r} starts or ends with a space"
    if name in (".", ".."):
        return f"run name {name!r} is not a folder name"
    bad = sorted({c for c in name if c in RESERVED or ord(c) < 32})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        return f"run name {name!r} holds {shown}: use one folder name (letters, digits, - _ .)"
    if re.fullmatch(r"(?i)(con|prn|aux|nul|com\d|lpt\d)(\..*)?", name):
        return f"run name {name!r} is a reserved device name on Windows"
    return ""
