"""The seed article's comparison on the user's own folders: scratch, then mapped-pretrained weights.

Two run configs that differ only where the article's two runs differ (the weights and the
learning rate: 1e-3 from scratch, 1e-4 from pretrained weights), and one generator that trains
them one after the other, yielding every event of both, so their curves overlay in the panel.
Qt-free: a script can run the same comparison.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from ..training.config import RunConfig
from ..training.engine import Event, RunControl, RunResult, RunStatus, train
from ..training.events import Failed, Finished, Stopped

SCRATCH_LR, MAPPED_LR = 1e-3, 1e-4  # the seed article's two learning rates


@dataclass
class CompareResult:
    scratch: RunResult
    pretrained: RunResult | None  # None when a stop ended the scratch run

    def lines(self) -> list[str]:
        runs = (("scratch", self.scratch), ("pretrained", self.pretrained))
        return [f"{label}: {_outcome(r)}   {r.run_dir}" for label, r in runs if r is not None]

    def summary(self) -> str:
        """One status line: each run's outcome, without the folders."""
        runs = (("scratch", self.scratch), ("pretrained", self.pretrained))
        return "compare: " + " | ".join(f"{label} {_outcome(r)}" for label, r in runs if r is not None)


def compare_summary(names: tuple[str, str], endings: dict[str, Event]) -> str:
    """The same status line for a comparison that ran in its own process, from each run's last event."""
    parts = []
    for label, name in zip(("scratch", "pretrained"), names, strict=True):
        event = endings.get(name)
        if isinstance(event, Finished):
            parts.append(f"{label} {_best(event.best_val_acc, event.best_epoch)}")
        elif isinstance(event, (Stopped, Failed)):
            parts.append(f"{label} {RunStatus.CANCELLED if isinstance(event, Stopped) else RunStatus.FAILED}")
    return "compare: " + " | ".join(parts)


def _outcome(result: RunResult) -> str:
    if result.status != RunStatus.FINISHED:
        return result.status
    return _best(result.best_val_acc, result.best_epoch)


def _best(acc: float, epoch: int) -> str:
    return f"best val acc {acc:.3f} (epoch {epoch})"


def compare_configs(base: RunConfig, mapped: RunConfig) -> tuple[RunConfig, RunConfig]:
    """The scratch and the mapped run: same data, epochs, batch and seed; lr 1e-3 and 1e-4, one lr per run."""
    scratch, pretrained = base.copy(), mapped.copy()
    scratch.model.mapping, scratch.model.source = "", ""
    for cfg, lr in ((scratch, SCRATCH_LR), (pretrained, MAPPED_LR)):
        cfg.optim.lr, cfg.optim.loaded_lr = lr, 0.0
        cfg.run.epochs, cfg.run.seed = base.run.epochs, base.run.seed
    return scratch, pretrained


def compare_runs(scratch: RunConfig, pretrained: RunConfig,
                 control: RunControl | None = None) -> Generator[Event, None, CompareResult]:
    """Every event of the scratch run, then of the mapped run, which starts unless a stop ended the first
    (a scratch run that failed, say on a NaN loss, is a result too), as ``spp-gui train a.toml b.toml``
    runs them in a process of its own."""
    control = control or RunControl()
    first = yield from train(scratch, control)
    if control.stop_requested:
        return CompareResult(first, None)
    second = yield from train(pretrained, control)
    return CompareResult(first, second)
