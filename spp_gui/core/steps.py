"""Long core work as generators: each yields its progress and returns its result.

``iter_apply``, ``iter_apply_to_file``, ``iter_verify`` and the auto-verify steps are written this
way; closing the generator stops the work between two yields and leaves things as the function
says (an output file as it was, a model partly filled). A GUI worker iterates them and closes them
on cancel; :func:`run_steps` is the plain-call form behind ``apply_mapping``, ``apply_to_file`` and
``verify_mapping``, with ``progress`` and ``cancelled`` callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

from .errors import Cancelled

Y = TypeVar("Y")
Z = TypeVar("Z")
R = TypeVar("R")


def run_steps(steps: Generator[Y, None, R], progress: Callable[[Y], None] | None = None,
              cancelled: Callable[[], bool] | None = None,
              stopped: Callable[[Y | None], str] = lambda _step: "cancelled") -> R:
    """Run ``steps`` to its result, passing each step to ``progress``.

    ``cancelled()`` is asked after each step, before the work that follows it; when it is true the
    generator is closed and Cancelled raised with ``stopped(last step)`` as its message.
    """
    last: Y | None = None
    try:
        while True:
            last = next(steps)
            if progress is not None:
                progress(last)
            if cancelled is not None and cancelled():
                raise Cancelled(stopped(last))
    except StopIteration as stop:
        return stop.value
    finally:
        steps.close()  # on cancel or error: the generator cleans up (a half-written temporary file goes)


def map_steps(steps: Generator[Y, None, R], how: Callable[[Y], Z]) -> Generator[Z, None, R]:
    """``steps`` with each step passed through ``how``, and the same result (``yield from`` this)."""
    try:
        while True:
            yield how(next(steps))
    except StopIteration as stop:
        return stop.value
    finally:
        steps.close()
