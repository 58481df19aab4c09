"""The seed article's experiment, offline: scratch vs mapped-pretrained AlexNet_SPP on drawn images.

1. draw the source and target datasets (``demo_data``), deterministic by seed;
2. pretrain a width-scaled AlexNet_SPP on the source task (stands in for ImageNet weights);
3. map its checkpoint onto the target model with spp_gui's own API (``suggest_mapping`` with the
   ``head`` strategy, saved as a mapping file, applied by the engine through ``apply_mapping``);
4. train the target from scratch and from the mapped weights, same epochs, and compare.

Every step leaves files a person can reuse: datasets, run configs (``spp-gui train`` them
again), mapping, run folders, and one comparison figure.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import SppError
from ..core.strategies import suggest_mapping
from .config import RunConfig
from .demo_data import SOURCE_CLASSES, TARGET_CLASSES, write_demo_datasets
from .engine import Event, RunControl, RunResult, train
from .plot import render_curves


@dataclass
class Note(Event):
    """A demo phase starting, for progress text."""

    message: str


@dataclass
class DemoResult:
    scratch: RunResult
    pretrained: RunResult
    source: RunResult
    out: str
    figure: str

    def lines(self) -> list[str]:
        return [f"{label:<11} final val acc {r.final_val_acc:.3f}   best val acc {r.best_val_acc:.3f} "
                f"(epoch {r.best_epoch})   {r.run_dir}"
                for label, r in (("scratch", self.scratch), ("pretrained", self.pretrained))]


@dataclass(frozen=True)
class DemoSize:
    source_per_class: int
    target_train: int
    target_val: int
    pretrain_epochs: int
    epochs: int
    image_size: int = 64
    width: float = 0.125


QUICK = DemoSize(source_per_class=80, target_train=20, target_val=30, pretrain_epochs=8, epochs=6, width=0.25)
FULL = DemoSize(source_per_class=300, target_train=30, target_val=60, pretrain_epochs=15, epochs=20, width=0.25)


def model_spec(classes: int, size: DemoSize) -> str:
    return f"spp_gui:alexnet_spp?num_classes={classes}&width={size.width}&dropout=0.3"


def demo_configs(out: Path, size: DemoSize, seed: int) -> dict[str, RunConfig]:
    """The three run configs of the demo (source pretraining, scratch, pretrained)."""
    def config(name: str, spec: str, data: str, epochs: int, lr: float) -> RunConfig:
        cfg = RunConfig()
        cfg.model.spec = spec
        cfg.data.train, cfg.data.val = str(out / "data" / data / "train"), str(out / "data" / data / "val")
        cfg.data.image_size = size.image_size
        cfg.optim.lr, cfg.optim.scheduler = lr, "none"
        cfg.run.name, cfg.run.out, cfg.run.epochs, cfg.run.batch_size = name, str(out / "runs"), epochs, 16
        cfg.run.seed, cfg.run.log_every = seed, 2
        return cfg

    source = config("source-pretraining", model_spec(len(SOURCE_CLASSES), size), "source", size.pretrain_epochs, 3e-4)
    scratch = config("scratch", model_spec(len(TARGET_CLASSES), size), "target", size.epochs, 3e-4)
    pretrained = config("pretrained", model_spec(len(TARGET_CLASSES), size), "target", size.epochs, 3e-4)
    pretrained.model.mapping = str(out / "mapping.json")
    pretrained.optim.loaded_lr = 1e-4  # gentler on the transferred layers, the new head at full lr
    return {"source": source, "scratch": scratch, "pretrained": pretrained}


def run_demo(out: str | os.PathLike, quick: bool = False, seed: int = 0,
             control: RunControl | None = None) -> Generator[Event, None, DemoResult | None]:
    """Every event of the three runs, plus ``Note``s between phases; returns None when cancelled."""
    out = Path(out)
    size = QUICK if quick else FULL
    if (out / "runs").exists() and any((out / "runs").iterdir()):
        raise SppError(f"demo folder {out} already holds runs; pick an empty folder (--out)")
    control = control or RunControl()
    yield Note("demo", f"drawing the datasets under {out / 'data'}")
    write_demo_datasets(out / "data", source_per_class=size.source_per_class, target_train=size.target_train,
                        target_val=size.target_val, size=size.image_size, seed=seed)
    configs = demo_configs(out, size, seed)
    for name, cfg in configs.items():
        cfg.save(out / f"{name}.toml")

    yield Note("demo", "pretraining on the source task (stands in for ImageNet weights)")
    source = yield from train(configs["source"], control)
    if source.status != "finished":
        return None
    checkpoint = str(Path(source.run_dir) / "best.safetensors")
    mapping = suggest_mapping(checkpoint, configs["pretrained"].model.spec, strategy="head")
    mapping.save(out / "mapping.json")
    yield Note("demo", f"mapped {len(mapping)} tensors from {checkpoint} (suggest_mapping, strategy 'head')")

    yield Note("demo", "training the target from scratch")
    scratch = yield from train(configs["scratch"], control)
    if scratch.status != "finished":
        return None
    yield Note("demo", "training the target from the mapped pretrained weights")
    pretrained = yield from train(configs["pretrained"], control)
    if pretrained.status != "finished":
        return None
    figure = out / "compare.png"
    render_curves({"scratch": scratch.epochs, "pretrained": pretrained.epochs}, figure)
    return DemoResult(scratch, pretrained, source, str(out), str(figure))
