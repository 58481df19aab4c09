"""Training events, the one text each becomes, and ``drive`` (Qt-free: the CLI and the GUI share them).

``engine.train`` yields ``Started``, ``Step``, ``Epoch``, ``CheckpointSaved`` and ends with one of
``Finished``, ``Stopped`` or ``Failed``; the demo adds ``Message`` events between its phases.
``describe(event)`` is the line the CLI prints and the Train panel shows for an event.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar


@dataclass
class Event:
    run: str


@dataclass
class Started(Event):
    run_dir: str
    device: str
    classes: list[str]
    n_train: int
    n_val: int
    steps_per_epoch: int
    epochs: int
    loaded: str  # the load report's summary, or "scratch"


@dataclass
class Step(Event):
    epoch: int  # 1-based
    step: int  # global step of the last loss in ``losses`` (1-based)
    total_steps: int
    losses: list[float]  # one per iteration since the previous Step event
    lr: float
    images_per_s: float
    epoch_fraction: float


@dataclass
class Epoch(Event):
    epoch: int
    epochs: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    images_per_s: float
    skipped: int  # unreadable images skipped so far (train + val)
    best: bool

    def row(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                                              "seconds", "images_per_s", "skipped")}


@dataclass
class CheckpointSaved(Event):
    path: str
    kind: str  # best | last
    epoch: int


@dataclass
class Finished(Event):
    run_dir: str
    best_val_acc: float
    best_epoch: int
    final_val_acc: float


@dataclass
class Stopped(Event):
    """The run ended on a stop request (not the ``core.errors.Cancelled`` exception: nothing was raised)."""

    run_dir: str
    epoch: int
    step: int


@dataclass
class Failed(Event):
    run_dir: str
    message: str
    kind: str  # nan | oom | data
    retry_batch_size: int | None = None


@dataclass
class Message(Event):
    """Progress text between phases (the demo's "pretraining AlexNet ...")."""

    text: str


ENDINGS = (Finished, Stopped, Failed)


def describe(event: Event) -> str | None:
    """The line an event becomes for a person, or None for events shown otherwise (a Step draws a
    progress bar, a checkpoint is no news)."""
    head = f"[{event.run}] " if event.run else ""
    if isinstance(event, Started):
        return (f"{head}{event.device}, {len(event.classes)} classes, {event.n_train} train / {event.n_val} "
                f"val images, {event.loaded}; folder {event.run_dir}")
    if isinstance(event, Epoch):
        return (f"{head}epoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.4f} acc "
                f"{event.train_acc:.3f} | val loss {event.val_loss:.4f} acc {event.val_acc:.3f}"
                f"{' (best)' if event.best else ''} | {event.seconds:.1f}s"
                + (f" | {event.skipped} unreadable images skipped" if event.skipped else ""))
    if isinstance(event, Finished):
        return (f"{head}done, best val acc {event.best_val_acc:.3f} (epoch {event.best_epoch}), final "
                f"{event.final_val_acc:.3f}; {event.run_dir}")
    if isinstance(event, Stopped):
        return f"{head}cancelled: stopped at epoch {event.epoch}, step {event.step}"
    if isinstance(event, Failed):
        return f"{head}failed: {event.message}"
    if isinstance(event, Message):
        return f"{head}{event.text}"
    return None


R = TypeVar("R")


def drive(gen: Generator[Event, None, R], on_event: Callable[[Event], None] | None = None) -> R:
    """Hand each event of ``gen`` to ``on_event``; return what the generator returns."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)
