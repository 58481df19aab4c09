"""The seed article's experiment, offline: AlexNet -> AlexNet_SPP, scratch vs the seed's recipe vs spp_grid.

1. draw the source and target datasets (``demo_data``), deterministic by seed;
2. pretrain torchvision AlexNet's architecture on the source task (it stands in for ImageNet);
3. map its checkpoint onto AlexNet_SPP(levels 1, 4, 9, 36) twice with spp_gui's own API: the seed's
   recipe (``order``: keys zipped by position, name and shape must agree; 13 of 16 tensors) and the
   ``spp_grid`` transplant (``auto`` with ``adapt``: the 6x6 grid's columns of ``classifier.1`` too);
4. train the target three times with the same data, epochs and seed: from scratch at lr 1e-3 and
   from each mapping at lr 1e-4, the seed's learning rates, and print the seed's table with a third row.

AlexNet here is AlexNet_SPP with the single level 36: the same keys, shapes and layers as
``torchvision.models.alexnet`` (its last max-pool and 6x6 average pool are one adaptive 6x6 max-pool,
the same function at 227 px), scaled in width and image size so that the demo runs on a laptop's CPU.

Every step leaves files a person can reuse: datasets, run configs (``spp-gui train`` them again),
both mappings, run folders, and one comparison figure.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.errors import SppError
from ..core.strategies import suggest_mapping
from .config import RunConfig
from .demo_data import SOURCE_CLASSES, TARGET_CLASSES, write_demo_datasets
from .engine import RunControl, RunResult, RunStatus, train
from .events import Event, Message
from .plot import render_curves


@dataclass(frozen=True)
class DemoRun:
    """One target run: its name, which strategy fills it from the source (None: scratch), its lr."""

    name: str
    strategy: str | None
    lr: float
    options: tuple[tuple[str, object], ...] = ()
    label: str = ""


#: The seed's two runs (scratch at Adam 1e-3, partly loaded at 1e-4) and the spp_grid transplant.
RUNS = (
    DemoRun("scratch", None, 1e-3, label="none (random init)"),
    DemoRun("order", "order", 1e-4, label="the seed's recipe (order)"),
    DemoRun("spp_grid", "auto", 1e-4, (("adapt", True),), label="auto --adapt (spp_grid)"),
)


@dataclass
class Loaded:
    """What a mapping carried into the target, from the run's load report."""

    tensors: int
    of: int
    share: float

    def text(self) -> str:
        return f"{self.tensors} of {self.of} tensors, {self.share:.1%}"


@dataclass
class DemoResult:
    runs: dict[str, RunResult]
    loaded: dict[str, Loaded]
    source: RunResult
    out: str
    figure: str
    seconds: float = 0.0
    size: DemoSize | None = None
    lrs: dict[str, float] = field(default_factory=dict)

    # the two runs the seed's article compares, by their old names
    @property
    def scratch(self) -> RunResult:
        return self.runs["scratch"]

    @property
    def pretrained(self) -> RunResult:
        return self.runs["order"]

    def header(self) -> str:
        return (f"{'run':<9} {'weights from the source':<24} {'lr':>6}  {'best val acc':>12} {'epoch':>5}  "
                f"{'final val acc':>13}")

    def lines(self) -> list[str]:
        """One row per run, the run folder last (after three spaces)."""
        rows = []
        for name, r in self.runs.items():
            weights = self.loaded[name].text() if name in self.loaded else "none (random init)"
            rows.append(f"{name:<9} {weights:<24} {self.lrs.get(name, 0):>6.0e}  {r.best_val_acc:>12.3f} "
                        f"{r.best_epoch:>5}  {r.final_val_acc:>13.3f}   {r.run_dir}")
        return rows

    def summary(self) -> str:
        """One status line: each run's best val acc, without the folders (the Train panel's)."""
        parts = []
        for name, r in self.runs.items():
            loaded = f" ({self.loaded[name].share:.1%} loaded)" if name in self.loaded else ""
            parts.append(f"{name}{loaded} best val acc {r.best_val_acc:.3f} (epoch {r.best_epoch}), "
                         f"final {r.final_val_acc:.3f}")
        return "demo: " + " | ".join(parts)

    def table(self) -> str:
        """The seed's table (scratch and the partly loaded model) with the spp_grid row, and what ran."""
        s = self.size
        what = (f"AlexNet (pretrained {s.pretrain_epochs} epochs on {len(SOURCE_CLASSES)} drawn classes, best val acc "
                f"{self.source.best_val_acc:.3f}) -> "
                f"AlexNet_SPP(1, 4, 9, 36), {len(TARGET_CLASSES)} classes, {s.target_train} train / "
                f"{s.target_val} val images per class, {s.epochs} epochs, {s.image_size} px, width {s.width:g}"
                if s else "")
        return "\n".join([what, self.header(), *self.lines(),
                          f"{self.seconds:.0f} s in all; comparison figure: {self.figure}"])


@dataclass(frozen=True)
class DemoSize:
    source_per_class: int
    target_train: int  # per class
    target_val: int  # per class
    pretrain_epochs: int
    epochs: int
    image_size: int = 64
    width: float = 0.25
    batch_size: int = 16  # target runs: few images, so small batches give scratch enough steps
    dropout: float = 0.5
    pretrain_lr: float = 5e-4
    pretrain_batch: int = 32


QUICK = DemoSize(source_per_class=80, target_train=40, target_val=20, pretrain_epochs=10, epochs=10)
FULL = DemoSize(source_per_class=200, target_train=60, target_val=40, pretrain_epochs=15, epochs=20, batch_size=32)


def source_spec(size: DemoSize) -> str:
    """torchvision AlexNet's layers and keys (one 6x6 pool before the classifier), scaled to ``size``."""
    return (f"spp_gui:alexnet_spp?num_classes={len(SOURCE_CLASSES)}&levels=36,&width={size.width}"
            f"&dropout={size.dropout}")


def target_spec(size: DemoSize) -> str:
    return (f"spp_gui:alexnet_spp?num_classes={len(TARGET_CLASSES)}&levels=1,4,9,36&width={size.width}"
            f"&dropout={size.dropout}")


def demo_configs(out: Path, size: DemoSize, seed: int) -> dict[str, RunConfig]:
    """The run configs of the demo: ``source`` (pretraining), then one per entry of ``RUNS``."""
    def config(name: str, spec: str, data: str, epochs: int, lr: float) -> RunConfig:
        cfg = RunConfig()
        cfg.model.spec = spec
        cfg.data.train, cfg.data.val = str(out / "data" / data / "train"), str(out / "data" / data / "val")
        cfg.data.image_size = size.image_size
        cfg.optim.lr = lr  # StepLR 15 x 0.1 and Adam, as the seed
        cfg.run.name, cfg.run.out, cfg.run.epochs, cfg.run.batch_size = name, str(out / "runs"), epochs, size.batch_size
        cfg.run.seed, cfg.run.log_every = seed, 4
        return cfg

    configs = {"source": config("source-pretraining", source_spec(size), "source", size.pretrain_epochs,
                                size.pretrain_lr)}
    configs["source"].run.batch_size = size.pretrain_batch
    for r in RUNS:
        cfg = config(r.name, target_spec(size), "target", size.epochs, r.lr)
        if r.strategy:
            cfg.model.mapping = str(out / f"mapping-{r.name}.json")
        configs[r.name] = cfg
    return configs


def _loaded(run_dir: str) -> Loaded | None:
    try:
        report = json.loads((Path(run_dir) / "load_report.json").read_text(encoding="utf-8"))
        return Loaded(int(report["loaded_tensors"]), int(report["target_tensors"]), float(report["share"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_demo(out: str | os.PathLike, quick: bool = False, seed: int = 0, control: RunControl | None = None,
             size: DemoSize | None = None) -> Generator[Event, None, DemoResult | None]:
    """Every event of the four runs, plus ``Message``s between phases; returns None when cancelled."""
    out = Path(out)
    size = size or (QUICK if quick else FULL)
    if (out / "runs").exists() and any((out / "runs").iterdir()):
        raise SppError(f"demo folder {out} already holds runs; pick an empty folder (--out)")
    threads = torch.get_num_threads()
    # Ops this small gain nothing from a second thread, and where other processes share the cores
    # its spin-waits cost several times the work itself (measured: 5x the CPU time on 2 busy cores).
    torch.set_num_threads(1)
    try:
        return (yield from _run_demo(out, size, seed, control or RunControl()))
    finally:
        torch.set_num_threads(threads)


def _run_demo(out: Path, size: DemoSize, seed: int, control: RunControl) -> Generator[Event, None, DemoResult | None]:
    t0 = time.perf_counter()
    yield Message("demo", f"drawing the datasets under {out / 'data'}")
    write_demo_datasets(out / "data", source_per_class=size.source_per_class,
                        target_train=size.target_train, target_val=size.target_val, size=size.image_size, seed=seed)
    configs = demo_configs(out, size, seed)
    for name, cfg in configs.items():
        cfg.save(out / f"{name}.toml")

    yield Message("demo", "pretraining AlexNet on the source task (it stands in for ImageNet weights)")
    source = yield from train(configs["source"], control)
    if source.status != RunStatus.FINISHED:
        return None
    checkpoint = str(Path(source.run_dir) / "best.safetensors")
    for r in RUNS:
        if r.strategy:
            mapping = suggest_mapping(checkpoint, configs[r.name].model.spec, strategy=r.strategy, **dict(r.options))
            mapping.save(configs[r.name].model.mapping)
            yield Message("demo", f"{r.name}: {len(mapping)} tensors mapped from {checkpoint} by "
                               f"suggest_mapping(strategy={r.strategy!r}{''.join(f', {k}={v}' for k, v in r.options)})")

    runs: dict[str, RunResult] = {}
    loaded: dict[str, Loaded] = {}
    for r in RUNS:
        yield Message("demo", f"training AlexNet_SPP: {r.label}, lr {r.lr:g}")
        result = yield from train(configs[r.name], control)
        if result.status != RunStatus.FINISHED:
            return None
        runs[r.name] = result
        if r.strategy and (report := _loaded(result.run_dir)):
            loaded[r.name] = report
    figure = out / "compare.png"
    render_curves({name: r.epochs for name, r in runs.items()}, figure)
    return DemoResult(runs, loaded, source, str(out), str(figure), time.perf_counter() - t0, size,
                      {r.name: r.lr for r in RUNS})
