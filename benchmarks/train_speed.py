"""Training throughput at the seed's real size: spp_gui's engine vs the seed article's loop, in one run.

The seed's configuration (default): AlexNet_SPP(20 classes, levels 1, 4, 9, 36) at full width, 227 px,
batch 128, Adam, on JPEG photos at VOC sizes (about 500x375, quality 90, generated with noise so they
cost what photos cost to decode). Rounds alternate the contenders, so load from other processes hits
each alike; images/s count steps 2..N of an epoch (step 1 holds warm-up and worker start-up):

  * seed loop: the article's loop as written: torchvision ImageFolder with Resize/flip/ToTensor/
    Normalize, a default DataLoader (no workers: decoding runs in the training process), PyTorch's
    default Adam, ``loss.item()`` and the accuracy read every step;
  * seed loop + workers: the same with ``--workers`` DataLoader workers;
  * engine: ``--workers`` workers ship uint8 (JPEG draft-mode decode, torch's uint8 resize), flip and
    normalise run on the batch, channels_last, fused Adam. Its epoch 1 decodes the JPEGs; epoch 2 trains
    from the decoded-image cache, in-memory tensors with no decoding at all: the synthetic-tensor rate.

Goals on CPU: engine >= 1.2x the seed loop; real JPEG / in-memory tensors >= 0.9.
``--contiguous`` and ``--compile`` add engine variants (without channels_last on the CPU; torch.compile).
``--small``: the earlier benchmark instead (width-scaled AlexNet_SPP, 64 px, drawn PNGs, whole epochs).
Usage: python benchmarks/train_speed.py [--rounds 3] [--steps 4] [--batch 128] [--workers 1] [--small]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from _report import bench_row
from torchvision import transforms

from spp_gui.core.specs import build_model
from spp_gui.training import engine as engine_module
from spp_gui.training.config import RunConfig
from spp_gui.training.demo_data import TARGET_CLASSES, write_jpeg_split, write_split
from spp_gui.training.engine import Finished, Started, Step, pick_device, run
from spp_gui.training.voc import VOC_CLASSES

SEED_SPEC = "spp_gui:alexnet_spp?num_classes=20"


def seed_transforms(size: int) -> tuple[transforms.Compose, transforms.Compose]:
    norm = transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return (transforms.Compose([transforms.Resize((size, size)), transforms.RandomHorizontalFlip(),
                                transforms.ToTensor(), norm]),
            transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(), norm]))


def seed_loop(spec: str, root: Path, size: int, batch: int, device: torch.device, workers: int = 0,
              steps: int | None = None, epochs: int = 1, on_step: Callable[[int], None] | None = None) -> int:
    """The seed article's training loop, as written there; ``steps`` ends it early. Returns images trained."""
    tf_train, tf_val = seed_transforms(size)
    train_set = torchvision.datasets.ImageFolder(str(root / "train"), tf_train)
    val_set = torchvision.datasets.ImageFolder(str(root / "val"), tf_val)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=batch, shuffle=True, num_workers=workers)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=batch, shuffle=False, num_workers=workers)
    torch.manual_seed(0)
    model = build_model(spec, seed=0).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=15, gamma=0.1)
    seen = 0
    for _ in range(epochs):
        model.train()
        running_loss, running_corrects = 0.0, 0
        for inputs, labels in train_loader:
            inputs, labels = inputs.to(device), labels.to(device)
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = F.cross_entropy(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * inputs.size(0)
            running_corrects += torch.sum(outputs.argmax(1) == labels.data).item()
            seen += inputs.size(0)
            if on_step is not None:
                on_step(inputs.size(0))
            if steps is not None and seen >= steps * batch:
                return seen
        scheduler.step()
        model.eval()
        with torch.no_grad():
            for inputs, labels in val_loader:
                inputs, labels = inputs.to(device), labels.to(device)
                outputs = model(inputs)
                running_loss += F.cross_entropy(outputs, labels).item()
                running_corrects += torch.sum(outputs.argmax(1) == labels.data).item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen


def steady_rate(times: list[float], batch: int) -> float:
    """Images/s over steps 2..N, from the time each step ended."""
    return batch * (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")


def seed_rate(root: Path, batch: int, steps: int, device: torch.device, workers: int) -> float:
    times: list[float] = []
    seed_loop(SEED_SPEC, root, 227, batch, device, workers, steps, on_step=lambda n: times.append(time.perf_counter()))
    return steady_rate(times, batch)


def engine_rates(cfg: RunConfig) -> tuple[float, float]:
    """(epoch 1 from the JPEGs, epoch 2 from the decoded-image cache) images/s of one engine run."""
    times: dict[int, list[float]] = {}

    def on(event) -> None:
        if isinstance(event, Step):
            times.setdefault(event.epoch, []).append(time.perf_counter())

    result = run(cfg, on)
    if result.status != "finished":
        raise SystemExit(f"engine run {cfg.run.name} {result.status}: {result.message}")
    return steady_rate(times[1], cfg.run.batch_size), steady_rate(times.get(2, []), cfg.run.batch_size)


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f}, range {min(values):.1f}-{max(values):.1f}"


def seed_config(args: argparse.Namespace, device: torch.device) -> int:
    per_class = -(-args.steps * args.batch // len(VOC_CLASSES))  # ceil: at least ``steps`` full batches
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_jpeg_split(root / "train", VOC_CLASSES, per_class, seed=0)
        write_jpeg_split(root / "val", VOC_CLASSES, 1, seed=1)
        files = list((root / "train").rglob("*.jpg"))
        kb = sum(f.stat().st_size for f in files) / len(files) / 1024
        print(f"{len(files)} train JPEGs at VOC sizes, {kb:.0f} KB each on average, written in "
              f"{time.perf_counter() - t0:.1f} s; {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, "
              f"device {device}", flush=True)
        cfg = RunConfig()
        cfg.model.spec = SEED_SPEC
        cfg.data.train, cfg.data.val, cfg.data.image_size = str(root / "train"), str(root / "val"), 227
        cfg.data.workers = args.workers
        cfg.optim.lr = 1e-4
        cfg.run.epochs, cfg.run.batch_size, cfg.run.out, cfg.run.log_every = 2, args.batch, str(root / "runs"), 1
        cfg.run.bf16 = cfg.run.channels_last = True  # the defaults: bf16 on CUDA, channels_last on CUDA and CPU
        variants = [("engine", {})]
        if args.contiguous and device.type == "cpu":
            variants.append(("engine contiguous", {"CPU_CHANNELS_LAST": False}))
        if args.compile:
            variants.append(("engine compile", {"COMPILE": True}))
        seed, seed_w = [], []
        rates: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _ in variants}
        for r in range(args.rounds):
            seed.append(seed_rate(root, args.batch, args.steps, device, 0))
            print(f"round {r + 1}: seed loop {seed[-1]:.2f} img/s", flush=True)
            if args.workers:
                seed_w.append(seed_rate(root, args.batch, args.steps, device, args.workers))
                print(f"round {r + 1}: seed loop, {args.workers} workers {seed_w[-1]:.2f} img/s", flush=True)
            for name, flags in variants:
                saved = {k: getattr(engine_module, k) for k in flags}
                for k, v in flags.items():
                    setattr(engine_module, k, v)
                try:
                    cfg.run.name = f"{name.replace(' ', '-')}-{r}"
                    jpeg, memory = engine_rates(cfg)
                finally:
                    for k, v in saved.items():
                        setattr(engine_module, k, v)
                rates[name][0].append(jpeg)
                rates[name][1].append(memory)
                print(f"round {r + 1}: {name} {jpeg:.2f} img/s from JPEG, {memory:.2f} img/s from memory", flush=True)
    base = statistics.median(seed)
    print(f"\nseed configuration: AlexNet_SPP(20), 227 px, batch {args.batch}, {args.steps} steps per measurement, "
          f"{args.rounds} rounds (images/s, median and range over rounds):")
    print(f"  seed loop (no workers, as written)  {spread(seed)}")
    if seed_w:
        print(f"  seed loop, {args.workers} workers             {spread(seed_w)}")
    for name, (jpeg, memory) in rates.items():
        ratios = [a / b for a, b in zip(jpeg, memory, strict=True)]
        print(f"  {name:<22} JPEG   {spread(jpeg)}  = {statistics.median(jpeg) / base:.2f}x the seed loop")
        print(f"  {name:<22} memory {spread(memory)}; JPEG/memory per round "
              f"{', '.join(f'{x:.2f}' for x in ratios)}")
    jpeg, memory = rates["engine"]
    ratio = statistics.median(jpeg) / base
    real = statistics.median([a / b for a, b in zip(jpeg, memory, strict=True)])
    dev = device.type
    bench_row(f"seed config train img/s ({dev}), engine vs seed loop", f"{statistics.median(jpeg):.2f}/s",
              f"{base:.2f}/s", ratio, ">= 1.2x", ratio >= 1.2)
    if seed_w:
        base_w = statistics.median(seed_w)
        bench_row(f"seed config train img/s ({dev}), engine vs seed loop with {args.workers} workers",
                  f"{statistics.median(jpeg):.2f}/s", f"{base_w:.2f}/s", statistics.median(jpeg) / base_w, "(info)", None)
    bench_row(f"seed config train img/s ({dev}), real JPEG vs in-memory, per-round median", f"{statistics.median(jpeg):.2f}/s",
              f"{statistics.median(memory):.2f}/s", real, ">= 0.9x", real >= 0.9)
    for name, (v_jpeg, _) in list(rates.items())[1:]:
        bench_row(f"seed config train img/s ({dev}), {name} vs engine", f"{statistics.median(v_jpeg):.2f}/s",
                  f"{statistics.median(jpeg):.2f}/s", statistics.median(v_jpeg) / statistics.median(jpeg), "(info)", None)
    return 0


def engine_run(cfg: RunConfig) -> float:
    """The engine, timed from its Started event to Finished (setup excluded, as for the seed loop)."""
    marks: dict[str, float] = {}
    n_train = 0

    def on(event) -> None:
        nonlocal n_train
        if isinstance(event, Started):
            marks["t0"], n_train = time.perf_counter(), event.n_train
        elif isinstance(event, Finished):
            marks["t1"] = time.perf_counter()

    run(cfg, on)
    return n_train * cfg.run.epochs / (marks["t1"] - marks["t0"])


def small_config(args: argparse.Namespace, device: torch.device) -> int:
    """The earlier benchmark: width-scaled AlexNet_SPP at 64 px on drawn PNGs, whole epochs timed."""
    epochs, size, per_class, width, batch = 3, 64, 64, 0.25, 32
    spec = f"spp_gui:alexnet_spp?num_classes={len(TARGET_CLASSES)}&width={width}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_split(root / "train", TARGET_CLASSES, per_class, 96, seed=0, cluttered=True)
        write_split(root / "val", TARGET_CLASSES, max(4, per_class // 4), 96, seed=1, cluttered=True)
        cfg = RunConfig()
        cfg.model.spec = spec
        cfg.data.train, cfg.data.val, cfg.data.image_size = str(root / "train"), str(root / "val"), size
        cfg.optim.lr = 1e-4
        cfg.run.epochs, cfg.run.batch_size, cfg.run.out, cfg.run.log_every = epochs, batch, str(root / "runs"), 10
        seed_rates, engine_rates_, nocache_rates = [], [], []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            n = seed_loop(spec, root, size, batch, device, epochs=epochs)
            seed_rates.append(n / (time.perf_counter() - t0))
            cfg.run.name, cfg.data.cache = f"engine-{r}", "auto"
            engine_rates_.append(engine_run(cfg))
            cfg.run.name, cfg.data.cache = f"engine-nocache-{r}", "no"
            nocache_rates.append(engine_run(cfg))
            print(f"round {r + 1}: seed loop {seed_rates[-1]:.1f} img/s, engine {engine_rates_[-1]:.1f} img/s, "
                  f"engine without the decoded-image cache {nocache_rates[-1]:.1f} img/s", flush=True)
    seed, engine, nocache = (statistics.median(x) for x in (seed_rates, engine_rates_, nocache_rates))
    print(f"small configuration, {per_class * len(TARGET_CLASSES)} train images at {size}px, batch {batch}, {epochs} "
          f"epochs: seed loop {spread(seed_rates)}; engine {spread(engine_rates_)}; no cache {spread(nocache_rates)}")
    bench_row(f"small config train img/s ({device.type}), engine vs seed loop", f"{engine:.1f}/s", f"{seed:.1f}/s",
              engine / seed, ">= 1.0x", engine / seed >= 1.0)
    bench_row(f"small config train img/s ({device.type}), engine with data.cache=no vs seed loop", f"{nocache:.1f}/s",
              f"{seed:.1f}/s", nocache / seed, ">= 1.0x", nocache / seed >= 1.0)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="steps per measurement (the first is not counted)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the engine (and the second "
                        "seed loop); 0 leaves that seed loop out")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the training process (0: torch's "
                        "default, one per core)")
    parser.add_argument("--contiguous", action="store_true",
                        help="add the engine without channels_last on the CPU (its default there since it measured faster)")
    parser.add_argument("--compile", action="store_true", help="add the engine with torch.compile")
    parser.add_argument("--small", action="store_true", help="the earlier small benchmark instead")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    return small_config(args, device) if args.small else seed_config(args, device)


if __name__ == "__main__":
    raise SystemExit(main())
