"""Training throughput: spp_gui's engine vs a plain copy of the seed article's loop, in one run.

Same data (a drawn ImageFolder), same model (width-scaled AlexNet_SPP), same batch size, epochs,
optimizer and validation each epoch. The seed's loop: torchvision ImageFolder with Resize/flip/
ToTensor/Normalize, a default DataLoader, ``loss.item()`` and an accuracy sum read every step.
The engine: uint8 batches, flip/normalise on the device, decoded images cached after epoch 1,
sums kept on the device. Rounds alternate (seed, engine, seed, engine...) so load from other
processes hits both; the best round of each is compared.

Goal: >= 1.0x on CPU; >= 1.5x on CUDA (bf16 autocast + channels_last).
Usage: python benchmarks/train_speed.py [--epochs 3] [--rounds 2] [--size 64] [--per-class 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from _report import bench_row
from torchvision import transforms

from spp_gui.core.specs import build_model
from spp_gui.training.config import RunConfig
from spp_gui.training.demo_data import TARGET_CLASSES, write_split
from spp_gui.training.engine import Finished, Started, pick_device, run


def seed_loop(spec: str, root: Path, size: int, epochs: int, batch: int, device: torch.device) -> float:
    """The seed article's training loop, as written there (images/s over train + val)."""
    tf_train = transforms.Compose([transforms.Resize((size, size)), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    tf_val = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                                 transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    train_set = torchvision.datasets.ImageFolder(str(root / "train"), tf_train)
    val_set = torchvision.datasets.ImageFolder(str(root / "val"), tf_val)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=batch, shuffle=True)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=batch, shuffle=False)
    torch.manual_seed(0)
    model = build_model(spec, seed=0).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=15, gamma=0.1)
    t0 = time.perf_counter()
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
    return len(train_set) * epochs / (time.perf_counter() - t0)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=64, help="image size (the seed: 227)")
    parser.add_argument("--per-class", type=int, default=64)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    device = pick_device()
    spec = f"spp_gui:alexnet_spp?num_classes={len(TARGET_CLASSES)}&width={args.width}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_split(root / "train", TARGET_CLASSES, args.per_class, 96, seed=0, cluttered=True)
        write_split(root / "val", TARGET_CLASSES, max(4, args.per_class // 4), 96, seed=1, cluttered=True)
        cfg = RunConfig()
        cfg.model.spec = spec
        cfg.data.train, cfg.data.val, cfg.data.image_size = str(root / "train"), str(root / "val"), args.size
        cfg.optim.lr = 1e-4
        cfg.run.epochs, cfg.run.batch_size, cfg.run.out, cfg.run.log_every = args.epochs, args.batch, str(root / "runs"), 10
        seed_rates, engine_rates, nocache_rates = [], [], []
        for r in range(args.rounds):
            seed_rates.append(seed_loop(spec, root, args.size, args.epochs, args.batch, device))
            cfg.run.name, cfg.data.cache = f"engine-{r}", "auto"
            engine_rates.append(engine_run(cfg))
            cfg.run.name, cfg.data.cache = f"engine-nocache-{r}", "no"
            nocache_rates.append(engine_run(cfg))
            print(f"round {r + 1}: seed loop {seed_rates[-1]:.1f} img/s, engine {engine_rates[-1]:.1f} img/s, "
                  f"engine without the decoded-image cache {nocache_rates[-1]:.1f} img/s", flush=True)
    seed, engine, nocache = max(seed_rates), max(engine_rates), max(nocache_rates)
    ratio = engine / seed
    goal = 1.5 if device.type == "cuda" else 1.0
    print(f"device {device}, {args.per_class * len(TARGET_CLASSES)} train images at {args.size}px, batch {args.batch}, "
          f"{args.epochs} epochs: engine {engine:.1f} img/s vs seed loop {seed:.1f} img/s = {ratio:.2f}x (goal >= {goal}x)")
    bench_row(f"train images/s ({device.type}), engine vs seed loop", f"{engine:.1f}/s", f"{seed:.1f}/s", ratio,
              f">= {goal}x", ratio >= goal)
    bench_row(f"train images/s ({device.type}), engine with data.cache=no vs seed loop", f"{nocache:.1f}/s",
              f"{seed:.1f}/s", nocache / seed, f">= {goal}x", nocache / seed >= goal)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
