"""The run config: one TOML file per training run, the seed article's values as defaults.

Read with ``tomllib``; written by a small writer here (flat tables of scalars and lists are all
a run config holds), so a run folder's ``config.toml`` is exactly what produced it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.atomic import atomic_write_text
from ..core.errors import SppError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("step", "cosine", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")


class ConfigError(SppError):
    """A run config that cannot be read or holds a bad value."""


@dataclass
class ModelSection:
    spec: str = "spp_gui:alexnet_spp?num_classes=20"
    mapping: str = ""  # mapping JSON; empty: train from scratch
    source: str = ""  # overrides the mapping's recorded source (checkpoint path or spec)


@dataclass
class DataSection:
    train: str = "data/train"
    val: str = "data/val"
    image_size: int = 227
    hflip: bool = True
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    workers: int = 0
    cache: str = "auto"  # keep decoded, resized images in memory: auto (when small) | yes | no


@dataclass
class OptimSection:
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD only
    scheduler: str = "step"
    step_size: int = 15
    gamma: float = 0.1
    freeze_loaded: bool = False  # train only the parameters the mapping did not fill
    loaded_lr: float = 0.0  # lr for parameters the mapping filled; 0 = same as lr


@dataclass
class RunSection:
    name: str = ""
    out: str = "runs"
    epochs: int = 50
    batch_size: int = 128
    device: str = "auto"
    bf16: bool = True  # autocast to bfloat16, CUDA only
    channels_last: bool = True  # CUDA only
    seed: int = 0
    log_every: int = 10  # steps between step events (one host sync each)


@dataclass
class RunConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)
    path: str = field(default="", compare=False)  # the file it came from; relative paths resolve against it

    # -- reading ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> RunConfig:
        cfg = cls()
        for section_name, raw in data.items():
            section = getattr(cfg, section_name, None)
            if not dataclasses.is_dataclass(section):
                raise ConfigError(f"{where}: unknown section [{section_name}]; sections: model, data, optim, run")
            if not isinstance(raw, dict):
                raise ConfigError(f"{where}: [{section_name}] must be a table")
            known = {f.name: f for f in dataclasses.fields(section)}
            for key, value in raw.items():
                if key not in known:
                    raise ConfigError(f"{where}: unknown key {section_name}.{key}; known: {', '.join(known)}")
                setattr(section, key, _coerce(value, getattr(section, key), f"{where}: {section_name}.{key}"))
        cfg.validate(where)
        return cfg

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunConfig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"run config not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read run config {path}: {exc}") from exc
        cfg = cls.from_dict(data, where=str(path))
        cfg.path = str(path)
        return cfg

    def validate(self, where: str = "config") -> None:
        def bad(key: str, value: Any, want: str) -> ConfigError:
            return ConfigError(f"{where}: {key} = {value!r} is not valid; {want}")

        o, r, d = self.optim, self.run, self.data
        if o.optimizer not in OPTIMIZERS:
            raise bad("optim.optimizer", o.optimizer, f"choose one of {', '.join(OPTIMIZERS)}")
        if o.scheduler not in SCHEDULERS:
            raise bad("optim.scheduler", o.scheduler, f"choose one of {', '.join(SCHEDULERS)}")
        if r.device not in DEVICES and not r.device.startswith("cuda:"):
            raise bad("run.device", r.device, f"choose one of {', '.join(DEVICES)} or cuda:N")
        if not (o.lr > 0 and math.isfinite(o.lr)):
            raise bad("optim.lr", o.lr, "use a positive number such as 0.001")
        if o.loaded_lr < 0:
            raise bad("optim.loaded_lr", o.loaded_lr, "use 0 (same as lr) or a positive number")
        for key, value, low in (("run.epochs", r.epochs, 1), ("run.batch_size", r.batch_size, 1),
                                ("data.image_size", d.image_size, 8), ("data.workers", d.workers, 0),
                                ("optim.step_size", o.step_size, 1), ("run.log_every", r.log_every, 1)):
            if value < low:
                raise bad(key, value, f"use an integer >= {low}")
        if len(d.mean) != 3 or len(d.std) != 3 or any(s <= 0 for s in d.std):
            raise bad("data.mean/std", (d.mean, d.std), "give three numbers each, std positive")
        if d.cache not in ("auto", "yes", "no"):
            raise bad("data.cache", d.cache, "choose auto, yes or no")

    def resolve(self, value: str) -> str:
        """A path from the config, relative to the config file's folder (as a person expects)."""
        if not value or not self.path or Path(value).is_absolute() or ":" in value.split("/")[0]:
            return value
        candidate = Path(self.path).parent / value
        return str(candidate)

    # -- writing ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in ("model", "data", "optim", "run")}

    def to_toml(self) -> str:
        lines: list[str] = []
        for section, values in self.to_dict().items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
            lines.append("")
        return "\n".join(lines)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self.to_toml())

    def copy(self) -> RunConfig:
        return dataclasses.replace(
            self, model=dataclasses.replace(self.model), data=dataclasses.replace(self.data, mean=list(self.data.mean),
                                                                                  std=list(self.data.std)),
            optim=dataclasses.replace(self.optim), run=dataclasses.replace(self.run))


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: expected true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r}: expected an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r}: expected a number")
        return float(value)
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{where} = {value!r}: expected a list of numbers")
        return [float(v) for v in value]
    if not isinstance(value, str):
        raise ConfigError(f"{where} = {value!r}: expected a string")
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'
