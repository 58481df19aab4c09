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
from pathlib import Path, PureWindowsPath
from typing import Any

from ..core.atomic import atomic_write_text
from ..core.errors import SpecError, SppError
from ..core.specs import parse_spec
from ..core.untrusted import read_untrusted_text

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("step", "cosine", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")

# Upper bounds far above any real run, low enough that a value sent in a config cannot exhaust the
# machine before the first step (each is allocated or started up front).
MAX_IMAGE_SIZE = 4096
MAX_BATCH_SIZE = 65536
MAX_STEPS = 1_000_000  # epochs, step_size, log_every
MAX_CLASSES = 1_000_000
WORKERS_PER_CPU = 4
MAX_NAME = 200  # characters in run.name (a folder name; file systems allow 255 bytes)


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
    max_unreadable: float = 0.1  # share of a split's images that may be unreadable before the run stops


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
    channels_last: bool = True  # on CUDA and on the CPU (1.2x at the seed's size here)
    compile: bool = False  # torch.compile the model: opt-in, minutes of compiling before the first step
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
        # a file someone may have sent: a regular file of bounded size, like a mapping
        text = read_untrusted_text(path, "run config", ConfigError, "a run .toml file", limit=1 << 20)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        except RecursionError:
            raise ConfigError(f"{path} nests arrays or tables past ~1,000 levels; a run config nests two") from None
        except ValueError as exc:  # an integer past sys.get_int_max_str_digits()
            raise ConfigError(f"{path} is not a usable run config ({str(exc)[:120]})") from None
        cfg = cls.from_dict(data, where=str(path))
        cfg.path = str(path)
        return cfg

    def validate(self, where: str = "config") -> None:
        """Every value in range, or a ConfigError that names the key, the value and what would do."""
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
        for key, value, want in (("optim.loaded_lr", o.loaded_lr, "use 0 (same as lr) or a positive number"),
                                 ("optim.weight_decay", o.weight_decay, "use 0 or a positive number such as 1e-4")):
            if not (value >= 0 and math.isfinite(value)):
                raise bad(key, value, want)
        if not 0 <= o.momentum <= 1:  # also false for NaN
            raise bad("optim.momentum", o.momentum, "use a number from 0 to 1, such as 0.9")
        if not (o.gamma > 0 and math.isfinite(o.gamma)):
            raise bad("optim.gamma", o.gamma, "use a positive number such as 0.1")
        if not 0 <= d.max_unreadable <= 1:
            raise bad("data.max_unreadable", d.max_unreadable,
                      "use a share from 0 (no unreadable image allowed) to 1, such as 0.1 for 10%")
        cpus = os.cpu_count() or 1
        for key, value, low, high, why in (
                ("run.epochs", r.epochs, 1, MAX_STEPS, ""), ("run.batch_size", r.batch_size, 1, MAX_BATCH_SIZE, ""),
                ("data.image_size", d.image_size, 8, MAX_IMAGE_SIZE, ""),
                ("data.workers", d.workers, 0, WORKERS_PER_CPU * cpus,
                 f" ({WORKERS_PER_CPU} x the {cpus} CPU cores here; 0 loads in the training process)"),
                ("optim.step_size", o.step_size, 1, MAX_STEPS, ""), ("run.log_every", r.log_every, 1, MAX_STEPS, ""),
                ("run.seed", r.seed, 0, 2**32 - 1, "")):
            if not low <= value <= high:
                raise bad(key, value, f"use an integer from {low} to {high}{why}")
        if len(d.mean) != 3 or not all(math.isfinite(v) for v in d.mean):
            raise bad("data.mean", d.mean, "give three finite numbers, one per colour channel")
        if len(d.std) != 3 or not all(v > 0 and math.isfinite(v) for v in d.std):
            raise bad("data.std", d.std, "give three positive numbers, one per colour channel")
        if d.cache not in ("auto", "yes", "no"):
            raise bad("data.cache", d.cache, "choose auto, yes or no")
        check_run_name(r.name, where)
        _check_spec_options(self.model.spec, where)

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


def check_run_name(name: str, where: str = "config") -> None:
    """A run's folder name is one path component: a config cannot make a run write outside ``run.out``.

    Empty is allowed (a timestamped name is chosen).
    """
    if name == "":
        return
    if not name.strip():
        problem = "is blank"
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        problem = "holds a control character"
    elif "/" in name or "\\" in name or PureWindowsPath(name).drive:
        problem = "is a path, not a folder name"
    elif name in (".", ".."):
        problem = "names an existing folder, not a new one"
    elif len(name) > MAX_NAME:
        problem = f"is longer than {MAX_NAME} characters"
    else:
        return
    raise ConfigError(f"{where}: run.name = {name!r} is not valid: it {problem}; use one folder name such as "
                      "\"scratch-lr1e-3\" (the run folder is made inside run.out)")


def _check_spec_options(spec: str, where: str) -> None:
    """The spec's numeric options in range: num_classes = -5 would otherwise fail deep inside torch."""
    try:
        options = parse_spec(spec).kwargs
    except SpecError as exc:
        raise ConfigError(f"{where}: model.spec: {exc}") from None

    def bad(key: str, want: str) -> ConfigError:
        return ConfigError(f"{where}: model.spec = {spec!r}: {key}={options[key]!r} is not valid; {want}")

    for key, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise bad(key, "use a finite number")
    n = options.get("num_classes")
    if "num_classes" in options and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CLASSES):
        raise bad("num_classes", f"use an integer from 1 to {MAX_CLASSES}, the number of class folders")
    w = options.get("width")
    if "width" in options and (isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0):
        raise bad("width", "use a positive number such as 1.0")
    p = options.get("dropout")
    if "dropout" in options and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1):
        raise bad("dropout", "use a probability from 0 to 1")


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
    return toml_string(str(value))


_TOML_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def toml_string(text: str) -> str:
    """A TOML basic string that reads back as ``text``: quote, backslash and every control character
    (which TOML does not allow raw, except tab) escaped; a file someone else wrote cannot add lines."""
    out = []
    for ch in text:
        if ch in _TOML_SHORT_ESCAPES:
            out.append(_TOML_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
