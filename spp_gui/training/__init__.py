"""Qt-free training: run config, data, the event-emitting engine, the offline demo, VOC preparation."""

from __future__ import annotations

from .config import ConfigError, RunConfig
from .data import DatasetError, scan_dataset, scan_split
from .engine import (
    CheckpointSaved,
    Epoch,
    Event,
    Failed,
    Finished,
    RunControl,
    RunResult,
    RunStatus,
    Started,
    Step,
    pick_device,
    run,
    train,
)
from .events import Message, Stopped, describe, drive

__all__ = [
    "RunConfig", "ConfigError", "DatasetError", "scan_dataset", "scan_split", "train", "run", "RunControl",
    "RunResult", "RunStatus", "Event", "Started", "Step", "Epoch", "CheckpointSaved", "Finished", "Stopped", "Failed",
    "Message", "describe", "drive", "pick_device",
]
