"""A run's metrics on disk: one CSV row per epoch (for spreadsheets) and JSON lines (everything).

Both files are rewritten atomically at each epoch end, so a crash or kill never leaves a torn
file, and a run folder can be read back for comparisons without the process that wrote it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from ..core.atomic import atomic_write_text
from ..core.errors import SppError

EPOCH_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s", "skipped")
CSV_NAME, JSONL_NAME = "metrics.csv", "metrics.jsonl"


class MetricsLog:
    """Epoch rows and per-iteration losses of one run, written to ``folder``."""

    def __init__(self, folder: str | os.PathLike, run: str = "") -> None:
        self.folder = Path(folder)
        self.run = run
        self.epochs: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []

    def add_steps(self, first_step: int, losses: list[float], lr: float) -> None:
        self.steps.extend({"kind": "step", "step": first_step + i, "loss": v, "lr": lr} for i, v in enumerate(losses))

    def add_epoch(self, row: dict[str, Any]) -> None:
        self.epochs.append({k: row[k] for k in EPOCH_FIELDS})
        self.flush()

    def flush(self) -> None:
        atomic_write_text(self.folder / CSV_NAME, epochs_to_csv(self.epochs))
        lines = [json.dumps({"kind": "run", "run": self.run})]
        lines += [json.dumps(s) for s in self.steps]
        lines += [json.dumps({"kind": "epoch", **e}) for e in self.epochs]
        atomic_write_text(self.folder / JSONL_NAME, "\n".join(lines) + "\n")


def epochs_to_csv(rows: list[dict[str, Any]], run: str | None = None) -> str:
    out = io.StringIO()
    fields = (("run",) if run is not None else ()) + EPOCH_FIELDS
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**({"run": run} if run is not None else {}), **{k: row.get(k) for k in EPOCH_FIELDS}})
    return out.getvalue()


def read_epochs(run_dir: str | os.PathLike) -> list[dict[str, float]]:
    """The epoch rows of a finished (or interrupted) run folder."""
    path = Path(run_dir) / CSV_NAME
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [{k: float(v) for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(fh)]
    except FileNotFoundError:
        raise SppError(f"no metrics in {run_dir} (expected {CSV_NAME}); is it a run folder?") from None
