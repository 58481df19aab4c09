"""Long work of the editor (load a side, suggest, export, verify) run on worker threads with progress and cancel.

The work itself is Qt-free (core calls and small generators here); :class:`Job` lives in the GUI
thread and turns the worker's signals into calls of the window's handlers, so no lambda ever
receives a signal across threads.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Signal, Slot

from ..core.apply import LoadReport, format_bytes, iter_apply_to_file
from ..core.atomic import atomic_write_text
from ..core.errors import Cancelled, UnsafePickleError
from ..core.export import Export, export_mapping
from ..core.mapping import Mapping
from ..core.sources import Source, file_sha256_steps, load_source, opened_source, split_source_key
from ..core.steps import map_steps
from ..core.strategies import Role, Side, Suggestions, suggest, target_side
from ..core.tree import ParamTree
from ..core.verify import VerifyReport, iter_verify
from .document import Loaded
from .workers import Worker, WorkerPool

Progress = tuple[int, int, str]
R = TypeVar("R")


def load_side(spec: str, role: Role, trust_pickle: bool = False, download: bool = True) -> Generator[Progress, None, Loaded]:
    """Open a source or target, build its tree and hash its file, yielding between the steps.

    The side returned (in :class:`Loaded`) owns the Source it opened; the session closes it. Cancelled
    or failed on the way, the file is let go of here.
    """
    yield 0, 0, f"Opening {spec}"
    src: Source | None
    if role == Role.SOURCE:
        src = load_source(spec, trust_pickle=trust_pickle, download=download)
        side = Side(src.tensors, src.module_classes, src.spec, src, owns_source=True)
    else:
        side = target_side(spec)
        src = side.source
    try:
        yield 0, 0, f"Building the tree of {len(side.table):,} tensors"
        tree = ParamTree(side.table, side.classes)
        sha = None
        if src is not None and src.file_backed:
            sha = yield from _hash(src)
    except BaseException:  # cancelled (GeneratorExit) or failed: release the file we opened
        side.close()
        raise
    notes = list(src.notes) if src is not None else []
    return Loaded(side, tree, side.spec or spec, notes, src, trust_pickle, sha)


def _hash(src: Source) -> Generator[Progress, None, str | None]:
    """The source's sha256: remembered from an earlier hash of the same unchanged files, else read once."""
    name = src.path.name if src.path is not None else src.spec
    return (yield from map_steps(src.iter_sha256(), lambda step: (*step, f"Checksum of {name}")))


def still_trusted(source: str, trusted_sha256: str | None) -> Generator[str, None, bool]:
    """Whether a job may unpickle ``source`` in full: only if the user trusted it (``trusted_sha256``
    is the digest of the bytes they trusted, see Loaded.pickle_trust) and the file still has them.
    Yields what it checks.

    A file replaced since, under the same name, raises UnsafePickleError instead of being run.
    An unchanged file costs nothing: its digest is remembered by stamp (see sources.cached_sha256).
    """
    if trusted_sha256 is None:
        return False
    path = Path(split_source_key(source)[0])
    checking = f"Checking that {path.name} is the file you trusted"
    yield checking
    try:  # a step per piece read: a cancel stops a long hash too
        digest = yield from map_steps(file_sha256_steps([path]), lambda _step: checking)
    except OSError as exc:
        raise UnsafePickleError(f"{path}: cannot check it is the file you trusted ({exc.strerror or exc}); "
                                f"it is not unpickled in full") from None
    if digest != trusted_sha256:
        raise UnsafePickleError(f"{path} changed since you trusted it (sha256 {digest[:12]}..., trusted "
                                f"{trusted_sha256[:12]}...); it is not unpickled in full. Open it again and "
                                f"trust it once more if you still do")
    return True


def load_mapping(path: str) -> Generator[Progress, None, Mapping]:
    """Read a mapping file off the GUI thread (a slow or odd file must never freeze the window)."""
    yield 0, 0, f"Reading {path}"
    return Mapping.load(path)


def write_mapping_export(mapping: Mapping, fmt: str, source_keys: list[str], target_keys: list[str],
                         out: str) -> Generator[Progress, None, Export]:
    """The mapping as another loader's snippet (same checks as ``spp-gui export``), written atomically."""
    yield 0, 0, f"Exporting the mapping as {fmt}"
    result = export_mapping(mapping, fmt, source_keys, target_keys)
    yield 0, 0, f"Writing {out}"
    atomic_write_text(out, result.text)
    return result


def run_suggest(source: Side, target: Side, strategy: str, options: dict[str, Any]) -> Suggestions:
    return suggest(source, target, strategy, **options)


def export_weights(mapping: Mapping, out: str, source: str, target_spec: str, pickle_trust: str | None
                   ) -> Generator[Progress, None, LoadReport]:
    """Apply the mapping to a freshly built target and write it; cancelled (closed) between tensors,
    ``out`` is left as it was.

    ``mapping`` is the caller's own copy, taken on the GUI thread (the editor goes on editing).
    """
    trust_pickle = yield from _texts(still_trusted(source, pickle_trust))
    steps = iter_apply_to_file(mapping, out, source=source, target_spec=target_spec, trust_pickle=trust_pickle)
    return (yield from map_steps(steps, _writing))


def _writing(step: Progress) -> Progress:
    done, total, key = step
    amount = f"{format_bytes(done)} of {format_bytes(total)}"  # bytes: see apply_to_file
    return done, total, f"Writing {key} ({amount})" if key else f"Saving ({amount})"


VERIFY_STEPS = 4  # the core reports: build source, build target, run source, run target


def verify_session(mapping: Mapping, source: str, target_spec: str, pickle_trust: str | None,
                   input_shape: tuple[int, ...]) -> Generator[Progress, None, VerifyReport]:
    """Build both models from their specs, fill the target by the mapping, compare layer by layer.

    ``mapping`` is the caller's own copy, taken on the GUI thread (the editor goes on editing).
    The source is opened afresh here, as export does, so the worker never reads the file the GUI
    thread holds; cancel (closing this generator) takes effect between the core's steps.
    """
    trust_pickle = yield from _texts(still_trusted(source, pickle_trust), total=VERIFY_STEPS)
    with opened_source(source, trust_pickle=trust_pickle, download=False) as src:
        steps = iter_verify(mapping, source=src, target_spec=target_spec, input_shape=input_shape)
        return (yield from _texts(steps, total=VERIFY_STEPS, counted=True))


def _texts(steps: Generator[str, None, R], total: int = 0, counted: bool = False) -> Generator[Progress, None, R]:
    """A core generator's texts as Progress: step 0 of ``total`` each, or (``counted``) the n-th step."""
    n = itertools.count()
    return (yield from map_steps(steps, lambda text: (min(next(n), total - 1) if counted else 0, total,
                                                      text[:1].upper() + text[1:])))


class Job(QObject):
    """One running piece of work; forwards the worker's outcome to plain callbacks in the GUI thread."""

    progressed = Signal(int, int, str)
    ended = Signal()

    def __init__(self, title: str, on_result: Callable[[Any], None], on_error: Callable[[Exception], None],
                 on_cancel: Callable[[], None] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self._on_result, self._on_error, self._on_cancel = on_result, on_error, on_cancel
        self.worker: Worker | None = None
        self.cancelled = False

    def cancel(self) -> None:
        """Stop at the next yield; the outcome is then dropped, so the session stays as it was."""
        self.cancelled = True
        if self.worker is not None:
            self.worker.quit()

    @Slot(object)
    def _yielded(self, value: Any) -> None:
        if isinstance(value, tuple) and len(value) == 3:
            done, total, text = value
            # per mille, so byte counts of big files fit a QProgressBar's int; total 0: busy
            self.progressed.emit(min(1000, done * 1000 // total) if total else 0, 1000 if total else 0, str(text))

    @Slot(object)
    def _returned(self, value: Any) -> None:
        if self.cancelled:
            return self._cancelled()
        self._on_result(value)

    @Slot(object)
    def _errored(self, exc: Exception) -> None:
        if self.cancelled or isinstance(exc, Cancelled):
            return self._cancelled()
        self._on_error(exc)

    @Slot()
    def _cancelled(self) -> None:
        if self._on_cancel is not None:
            self._on_cancel()
            self._on_cancel = None

    @Slot()
    def _finished(self) -> None:
        self.worker = None
        self.ended.emit()


def start_job(pool: WorkerPool, job: Job, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
    """Run ``func`` on a worker thread and route its signals to ``job``."""
    worker = Worker(func, *args, **kwargs)
    job.worker = worker
    worker.yielded.connect(job._yielded)
    worker.returned.connect(job._returned)
    worker.errored.connect(job._errored)
    worker.aborted.connect(job._cancelled)
    worker.finished.connect(job._finished)
    pool.start(worker)
    return job
