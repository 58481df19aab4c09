"""The training loop, as a generator of events that the CLI, the GUI worker and tests consume alike.

``train(config, control)`` yields ``Started``, ``Step`` (every ``log_every`` steps), ``Epoch``,
``CheckpointSaved`` and ends with one of ``Finished``, ``Stopped`` or ``Failed``; its return value
is a ``RunResult``. Losses and accuracy counts stay on the device between log points, so a step
costs no host sync. Errors a user causes before the run starts (bad config value or run folder,
bad dataset, bad spec, mapping that does not fit) raise SppError; failures during the run (NaN loss,
out of memory, too many unreadable images, a class folder gone) end it with a ``Failed`` event and
keep the last good checkpoint. A stop request ends it with ``Stopped``, also when the same SIGTERM
killed the DataLoader's worker processes.

Under ``torchrun`` (``WORLD_SIZE > 1``) the same loop runs once per process with
DistributedDataParallel: ``run.batch_size`` is the global batch, split across the processes;
every figure in an event is summed over all ranks; only rank 0 writes the run folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..core.apply import LoadReport, apply_mapping, save_weights
from ..core.atomic import atomic_write_text
from ..core.errors import SppError
from ..core.mapping import Mapping
from ..core.specs import build_model
from .config import ConfigError, RunConfig, check_run_name
from .data import IMAGE_SUFFIXES, Batch, BatchSource, DatasetError, SplitInfo, is_worker_loss, scan_dataset
from .distributed import DistContext, per_rank_batch, setup
from .events import CheckpointSaved, Epoch, Event, Failed, Finished, Started, Step, Stopped, drive
from .metrics import MetricsLog
from .plot import render_curves

# ---------------------------------------------------------------------------------------------
# events (in events.py; named here too, where callers have always found them)


class RunStatus(StrEnum):
    """How a run ended; a str, so a run folder's JSON holds the plain word."""

    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass
class RunResult:
    status: RunStatus
    run_dir: str
    best_val_acc: float = float("nan")
    best_epoch: int = 0
    final_val_acc: float = float("nan")
    epochs: list[dict[str, float]] = field(default_factory=list)
    message: str = ""
    retry_batch_size: int | None = None
    failure: str = ""  # nan | oom | data, when status is failed


class RunControl:
    """Stop, pause and resume a run from another thread (plain flags and an Event: no Qt)."""

    def __init__(self) -> None:
        self._stop = False
        self._running = threading.Event()
        self._running.set()

    def stop(self) -> None:
        self._stop = True
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_if_paused(self) -> float:
        """Block while paused; return the seconds spent waiting (left out of images/s)."""
        if self._running.is_set():
            return 0.0
        t0 = time.perf_counter()
        self._running.wait()
        return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# setup


def pick_device(name: str = "auto") -> torch.device:
    """auto: CUDA, then Apple's MPS, then the CPU."""
    if name != "auto":
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise SppError(f"run.device = {name!r} but CUDA is not available here; use \"auto\" or \"cpu\"")
        if name == "mps" and not torch.backends.mps.is_available():
            raise SppError("run.device = \"mps\" but MPS is not available here; use \"auto\" or \"cpu\"")
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _find_source(cfg: RunConfig, mapping: Mapping, mapping_path: Path) -> str:
    if cfg.model.source:
        return cfg.resolve(cfg.model.source)
    source = mapping.source_spec
    if not source:
        raise SppError(f"mapping {mapping_path} names no source; set model.source in the run config")
    beside = mapping_path.parent / source
    return str(beside) if not Path(source).exists() and beside.exists() else source


def build_run_model(cfg: RunConfig) -> tuple[nn.Module, LoadReport | None]:
    """The target model, filled through its mapping when the config names one."""
    model, report, _, _ = _build(cfg)
    return model, report


def _build(cfg: RunConfig) -> tuple[nn.Module, LoadReport | None, Mapping | None, str]:
    model = build_model(cfg.model.spec, device="cpu", seed=cfg.run.seed)
    if not cfg.model.mapping:
        return model, None, None, ""
    mapping_path = Path(cfg.resolve(cfg.model.mapping))
    mapping = Mapping.load(mapping_path)
    source = _find_source(cfg, mapping, mapping_path)
    report = apply_mapping(model, source, mapping)
    return model, report, mapping, source


def param_groups(model: nn.Module, cfg: RunConfig, report: LoadReport | None) -> list[dict]:
    """New parameters at ``lr``; loaded ones at ``loaded_lr`` or frozen, as the config asks."""
    loaded = set(report.loaded) if report else set()
    new, old = [], []
    for name, p in model.named_parameters():
        if name in loaded:
            if cfg.optim.freeze_loaded:
                p.requires_grad_(False)
            else:
                old.append(p)
        else:
            new.append(p)
    if not new and not old:
        raise SppError("optim.freeze_loaded = true froze every parameter: the mapping filled the whole model; "
                       "set freeze_loaded = false or use loaded_lr")
    groups = [{"params": new, "lr": cfg.optim.lr, "name": "new"}] if new else []
    if old:
        groups.append({"params": old, "lr": cfg.optim.loaded_lr or cfg.optim.lr, "name": "loaded"})
    return groups


def make_optimizer(groups: list[dict], cfg: RunConfig, device: torch.device | None = None) -> torch.optim.Optimizer:
    """The config's optimizer; fused (one kernel for all parameters) on CPU and CUDA.

    PyTorch's default on the CPU updates parameter by parameter in Python: for AlexNet_SPP that
    was a third of a training step. The fused kernels compute the same update.
    """
    o = cfg.optim
    fused = True if device is not None and device.type in ("cpu", "cuda") else None  # None: PyTorch's default
    if o.optimizer == "adam":
        return torch.optim.Adam(groups, lr=o.lr, weight_decay=o.weight_decay, fused=fused)
    if o.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay, fused=fused)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, fused=fused)


def make_scheduler(opt: torch.optim.Optimizer, cfg: RunConfig):
    if cfg.optim.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.optim.step_size, gamma=cfg.optim.gamma)
    if cfg.optim.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.run.epochs)
    return None


def runs_folder(cfg: RunConfig) -> Path:
    """``run.out``, checked before any work: a folder, or one that can be made (no file in the way),
    and a run name that keeps the run inside it."""
    where = cfg.path or "run config"
    check_run_name(cfg.run.name, where)
    out = Path(cfg.resolve(cfg.run.out) or "runs")
    for folder in (out, *out.parents):
        if folder.is_dir():
            break
        if folder.exists() or folder.is_symlink():
            raise ConfigError(f"{where}: run.out = {cfg.run.out!r}: {folder} is a file, not a folder; "
                              "set run.out to the folder that holds the run folders")
    return out


def new_run_dir(cfg: RunConfig) -> Path:
    """``out/name``, or ``out/name-2`` ... when taken: a run never overwrites another."""
    out = runs_folder(cfg)
    name = cfg.run.name or time.strftime("run-%Y%m%d-%H%M%S")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for i in range(1, 10000):
            path = out / (name if i == 1 else f"{name}-{i}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise SppError(f"cannot create the run folder in {out} (run.out): {exc.strerror or exc}; "
                       "pick a folder you can write to") from None
    raise SppError(f"cannot create a run folder under {out}: {name} and 9998 numbered ones are taken")


def _frozen_config(cfg: RunConfig) -> RunConfig:
    """The config with paths made absolute, so the copy in the run folder reproduces the run."""
    out = cfg.copy()
    for section, key in (("model", "mapping"), ("model", "source"), ("data", "train"), ("data", "val"), ("run", "out")):
        value = getattr(getattr(out, section), key)
        resolved = cfg.resolve(value)
        if resolved and Path(resolved).exists():
            setattr(getattr(out, section), key, str(Path(resolved).resolve()))
    out.path = ""
    return out


class _Prepare:
    """uint8 batch -> normalised float on the device, with random flips.

    Whether an image flips depends on the seed, the epoch and its index in the split, not on the
    order of batches, so a run sharded over several processes flips exactly what one process would.
    """

    def __init__(self, cfg: RunConfig, device: torch.device, channels_last: bool, n_train: int) -> None:
        std = torch.tensor(cfg.data.std, device=device).view(1, 3, 1, 1)
        mean = torch.tensor(cfg.data.mean, device=device).view(1, 3, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * std), mean / std
        self.hflip = cfg.data.hflip
        self.seed, self.n_train = cfg.run.seed + 7, max(n_train, 1)
        self.flips = torch.zeros(self.n_train, dtype=torch.bool)
        self.memory = torch.channels_last if channels_last else torch.contiguous_format
        self.device = device

    def set_epoch(self, epoch: int) -> None:
        self.flips = torch.rand(self.n_train, generator=torch.Generator().manual_seed(self.seed + epoch)) < 0.5

    def __call__(self, images: torch.Tensor, train: bool, indices: torch.Tensor | None = None) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True)
        if train and self.hflip and indices is not None:
            flip = self.flips[indices % self.n_train].to(self.device, non_blocking=True)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        x = x.float().mul_(self.scale).sub_(self.shift)
        return x.contiguous(memory_format=self.memory)


#: ``run.channels_last`` on the CPU too, not only on CUDA: oneDNN's convolutions run faster on it
#: (benchmarks/train_speed.py --contiguous: AlexNet_SPP at 227 px 1.26x; width 0.25 at 64 px 1.08x)
CPU_CHANNELS_LAST = True
#: torch.compile the training model (opt-in; ``run.compile`` where the run config has that key)
COMPILE = False
#: curves.png is redrawn at most this often (and after the last epoch): short epochs spent more time
#: drawing and fsyncing it than training
CURVES_EVERY_S = 5.0


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


# ---------------------------------------------------------------------------------------------
# the loop


def train(cfg: RunConfig, control: RunControl | None = None) -> Generator[Event, None, RunResult]:
    """Run one training as a generator of events; see the module docstring."""
    control = control or RunControl()
    cfg.validate(cfg.path or "run config")  # also a config built in code, not only one read from a file
    runs_folder(cfg)
    train_split, val_split = scan_dataset(cfg.resolve(cfg.data.train), cfg.resolve(cfg.data.val))
    ctx, device = setup(pick_device(cfg.run.device))
    try:  # the process group ends with the run, whichever way it ends (also when the generator is closed)
        result = yield from _train(cfg, control, ctx, device, train_split, val_split)
        if result.failure != "oom":  # finished, stopped and NaN are agreed on by all ranks; out of memory is one rank's
            ctx.barrier()
        return result
    finally:
        ctx.close()


def _setup_model(cfg: RunConfig, ctx: DistContext, device: torch.device, train_split: SplitInfo):
    """The run's first phase: the model built (through its mapping), checked against the dataset's
    classes, moved to the device, with its optimizer, schedule, autocast and input preparation."""
    cuda = device.type == "cuda"
    torch.manual_seed(cfg.run.seed)
    model, report, mapping, source = _build(cfg)
    with torch.no_grad():
        probe = model(torch.zeros(1, 3, cfg.data.image_size, cfg.data.image_size))
    if probe.ndim != 2 or probe.shape[1] != len(train_split.classes):
        raise DatasetError(f"the model {cfg.model.spec!r} outputs {tuple(probe.shape[1:])} values but the dataset has "
                           f"{len(train_split.classes)} classes; set num_classes={len(train_split.classes)} in the spec")
    channels_last = cfg.run.channels_last and (cuda or (device.type == "cpu" and CPU_CHANNELS_LAST))
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(param_groups(model, cfg, report), cfg, device)
    scheduler = make_scheduler(optimizer, cfg)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.run.bf16 and cuda)
    prepare = _Prepare(cfg, device, channels_last, len(train_split))
    # gradients are averaged over ranks; the bare ``model`` is what is evaluated and saved
    net = DistributedDataParallel(model, device_ids=[device] if cuda else None) if ctx.distributed else model
    if COMPILE or getattr(cfg.run, "compile", False):  # opt-in: minutes of compiling before the first step
        net = cast(nn.Module, torch.compile(net))  # a module still (an OptimizedModule)
    return model, net, optimizer, scheduler, autocast, prepare, (report, mapping, source)


def _write_run_folder(cfg: RunConfig, run_dir: Path, mapping: Mapping | None, source: str,
                      report: LoadReport | None) -> None:
    """config.toml (paths absolute), the mapping used and its load report: what reproduces the run."""
    frozen = _frozen_config(cfg)
    if mapping is not None:  # the run folder keeps the mapping it used, even if the original changes later
        mapping.save(run_dir / "mapping.json")
        frozen.model.mapping = str((run_dir / "mapping.json").resolve())
        frozen.model.source = str(Path(source).resolve()) if Path(source).exists() else source
    frozen.save(run_dir / "config.toml")
    if report is not None:
        atomic_write_text(run_dir / "load_report.json", json.dumps(report.to_dict(), indent=1) + "\n")


def _save_checkpoints(model: nn.Module, cfg: RunConfig, name: str, run_dir: Path, epoch: int, is_best: bool,
                      val_acc: float) -> Generator[Event, None, None]:
    """last.safetensors after every epoch, best.safetensors when it is the best so far."""
    save_weights(model, run_dir / "last.safetensors", metadata={"epoch": str(epoch), "spec": cfg.model.spec})
    yield CheckpointSaved(name, str(run_dir / "last.safetensors"), "last", epoch)
    if is_best:
        save_weights(model, run_dir / "best.safetensors",
                     metadata={"epoch": str(epoch), "val_acc": str(val_acc), "spec": cfg.model.spec})
        yield CheckpointSaved(name, str(run_dir / "best.safetensors"), "best", epoch)


def _train(cfg: RunConfig, control: RunControl, ctx: DistContext, device: torch.device, train_split, val_split
           ) -> Generator[Event, None, RunResult]:
    return (yield from _Trainer(cfg, control, ctx, device, train_split, val_split).run())


class _Trainer:
    """One run after its setup, phase by phase: each epoch's pass over the training batches (with a
    log point every ``run.log_every`` steps), its validation and bookkeeping, and the ways a run ends
    early (stopped, out of memory, data or a loss gone bad). A phase that ends the run returns the
    RunResult; one that lets it go on returns None."""

    def __init__(self, cfg: RunConfig, control: RunControl, ctx: DistContext, device: torch.device,
                 train_split: SplitInfo, val_split: SplitInfo) -> None:
        self.cfg, self.control, self.ctx, self.device = cfg, control, ctx, device
        self.train_split, self.val_split = train_split, val_split
        cuda = self.cuda = device.type == "cuda"
        local_bs = per_rank_batch(cfg.run.batch_size, ctx.world)
        (self.model, self.net, self.optimizer, self.scheduler, self.autocast, self.prepare,
         (self.report, mapping, source)) = _setup_model(cfg, ctx, device, train_split)
        self.run_dir = run_dir = Path(ctx.share(str(new_run_dir(cfg)) if ctx.main else ""))
        self.name = cfg.run.name or run_dir.name
        if ctx.main:
            _write_run_folder(cfg, run_dir, mapping, source, self.report)
        self.log = MetricsLog(run_dir, self.name)
        shard = {"rank": ctx.rank, "world": ctx.world}
        self.train_data = BatchSource(train_split, cfg.data.image_size, local_bs, shuffle=True, workers=cfg.data.workers,
                                      pin=cuda, seed=cfg.run.seed, cache=cfg.data.cache, **shard)
        self.val_data = BatchSource(val_split, cfg.data.image_size, local_bs, shuffle=False, workers=cfg.data.workers,
                                    pin=cuda, seed=cfg.run.seed, cache=cfg.data.cache, **shard)
        self.sum_dtype = torch.float32 if device.type == "mps" else torch.float64
        self.steps_per_epoch = len(self.train_data)
        self.total_steps = self.steps_per_epoch * cfg.run.epochs
        self.result = RunResult(RunStatus.FINISHED, str(run_dir))
        self.log_every = cfg.run.log_every
        self.stop_each_step = ctx.distributed and device.type == "cpu"
        self.loss_buf = torch.zeros(self.log_every, device=device)
        self.count_buf = torch.zeros(self.log_every, device=device)
        self.step = 0
        self.best_acc, self.best_epoch, self.last_good_epoch = -1.0, 0, 0
        self.limit = cfg.data.max_unreadable
        self.drawn = (0, time.perf_counter())  # epochs in curves.png, and when it was drawn
        # the epoch's training totals, kept on the device until its end (no host sync per step)
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.seen, self.lr, self.t_epoch = 0, 0.0, 0.0

    def stopping(self) -> bool:
        return self.control.stop_requested

    def draw_curves(self) -> None:
        render_curves({self.name: self.log.epochs}, self.run_dir / "curves.png")
        self.drawn = (len(self.log.epochs), time.perf_counter())

    def run(self) -> Generator[Event, None, RunResult]:
        cfg, report = self.cfg, self.report
        yield Started(self.name, str(self.run_dir), str(self.device), self.train_split.classes, len(self.train_split),
                      len(self.val_split), self.steps_per_epoch, cfg.run.epochs, report.summary() if report else "scratch")
        epoch = 0
        try:
            for epoch in range(1, cfg.run.epochs + 1):
                ended = yield from self._train_pass(epoch)
                if ended is None:
                    ended = yield from self._end_epoch(epoch)
                if ended is not None:
                    return ended
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if is_worker_loss(exc) and self.control.stop_requested and not self.ctx.distributed:
                return (yield from self._cancel(epoch))  # raised outside a loader's own call (PyTorch's SIGCHLD handler)
            if not _is_oom(exc):
                raise
            return (yield from self._out_of_memory(epoch))
        finally:
            self.train_data.close()
            self.val_data.close()
            if self.ctx.main and self.drawn[0] != len(self.log.epochs):  # stopped or failed between two drawings
                with contextlib.suppress(OSError):
                    self.draw_curves()
        yield Finished(self.name, str(self.run_dir), self.best_acc, self.best_epoch, self.result.final_val_acc)
        return self.result

    def _train_pass(self, epoch: int) -> Generator[Event, None, RunResult | None]:
        """One epoch's training steps, a Step event at each log point."""
        ctx, control, device = self.ctx, self.control, self.device
        self.net.train()
        self.train_data.set_epoch(epoch)
        self.prepare.set_epoch(epoch)
        self.t_epoch = time.perf_counter()
        paused = 0.0
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.seen, filled, since_images, skipped = 0, 0, 0, 0
        t_log = time.perf_counter()
        self.lr = lr = self.optimizer.param_groups[0]["lr"]
        for i, batch in enumerate(self.train_data.batches(self.stopping, pad=ctx.distributed), 1):
            paused += control.wait_if_paused()
            # one process: stop now; several: all must agree, per step on the CPU (an all-reduce
            # of one number), at log points on GPUs (where a per-step host sync would cost speed)
            if control.stop_requested if not ctx.distributed else (
                    self.stop_each_step and ctx.any(control.stop_requested, device)):
                return (yield from self._cancel(epoch))
            if batch.skipped and not ctx.distributed:  # torchrun: checked at the epoch's end, all ranks alike
                skipped += batch.skipped
                problem = _data_problem(self.train_split, "train", skipped, None, self.limit, self.train_data.vanished)
                if problem:
                    yield from _fail_data(self.name, self.run_dir, epoch, self.step, problem, self.last_good_epoch,
                                          self.result)
                    return self.result
            n = len(batch.labels)
            if n == 0 and not ctx.distributed:
                continue
            self._step(batch, n, filled)
            filled += 1
            since_images += n
            if filled == self.log_every or i == self.steps_per_epoch:
                losses = self._losses(filled)
                if not all(math.isfinite(v) for v in losses):
                    yield from _fail_nonfinite(self.name, self.run_dir, epoch, self.step, losses, lr,
                                               self.last_good_epoch, self.result)
                    return self.result
                if ctx.distributed and ctx.any(control.stop_requested, device):  # all ranks stop together
                    return (yield from self._cancel(epoch))
                now = time.perf_counter()
                rate = since_images * ctx.world / max(now - t_log - paused, 1e-9)
                if ctx.main:
                    self.log.add_steps(self.step - filled + 1, losses, lr)
                yield Step(self.name, epoch, self.step, self.total_steps, losses, lr, rate, i / self.steps_per_epoch)
                t_log, filled, since_images, paused = time.perf_counter(), 0, 0, 0.0
        if self.train_data.cut:  # one process: the pass ended because its workers died after the stop request
            return (yield from self._cancel(epoch))
        return None

    def _step(self, batch: Batch, n: int, filled: int) -> None:
        """One optimizer step; its loss goes to slot ``filled`` of the log buffer (no host sync)."""
        if n:
            x = self.prepare(batch.images, train=True, indices=batch.indices)
        else:  # all unreadable: every rank must still join the gradient all-reduce, adding zeros
            size = self.cfg.data.image_size
            x = self.prepare(torch.zeros(1, 3, size, size, dtype=torch.uint8), False)
        y = batch.labels.to(self.device, non_blocking=True)
        with self.autocast:
            out = self.net(x)
            loss = F.cross_entropy(out.float(), y) if n else out.float().sum() * 0.0
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        d = loss.detach()
        self.loss_buf[filled] = d * n if self.ctx.distributed else d  # distributed: summed, then divided by count_buf
        self.count_buf[filled] = n
        self.loss_sum += d * n
        if n:
            self.correct += (out.detach().argmax(1) == y).sum()
        self.seen += n

    def _losses(self, filled: int) -> list[float]:
        """The losses of the steps since the last log point (over the global batch when distributed)."""
        if self.ctx.distributed:
            # two rows in, two rows back (DistContext.sum is typed for one)
            sums, counts = cast(list[list[float]], self.ctx.sum(torch.stack([self.loss_buf[:filled],
                                                                              self.count_buf[:filled]])))
            return [v / max(c, 1) for v, c in zip(sums, counts, strict=True)]
        return self.loss_buf[:filled].tolist()  # the one host sync per log interval

    def _end_epoch(self, epoch: int) -> Generator[Event, None, RunResult | None]:
        """Validation, the epoch's totals over all ranks, its Epoch event, checkpoints and curves."""
        ctx, device, dt = self.ctx, self.device, self.sum_dtype
        train_data, val_data = self.train_data, self.val_data
        # sums over all ranks (a padded shard repeats at most world - 1 training images)
        v_loss, v_correct, v_seen = evaluate_sums(self.model, val_data.batches(self.stopping), self.prepare,
                                                  self.autocast, device)
        if ctx.any(val_data.cut, device):  # a part of the validation is missing: not an epoch to keep
            return (yield from self._cancel(epoch))
        t_loss, t_correct, t_seen, vl, vc, vn, t_bad, v_bad, vanished = ctx.sum(torch.stack([
            self.loss_sum.to(dt), self.correct.to(dt), torch.tensor(self.seen, dtype=dt, device=device),
            v_loss.to(dt), v_correct.to(dt), torch.tensor(v_seen, dtype=dt, device=device),
            *(torch.tensor(v, dtype=dt, device=device) for v in (
                train_data.unreadable, val_data.unreadable, len(train_data.vanished) + len(val_data.vanished)))]))
        problem = _epoch_data_problem(((self.train_split, "train", t_bad, t_seen, train_data.vanished),
                                       (self.val_split, "val", v_bad, vn, val_data.vanished)), bool(vanished), self.limit)
        if problem:
            yield from _fail_data(self.name, self.run_dir, epoch, self.step, problem, self.last_good_epoch, self.result)
            return self.result
        train_loss, train_acc = t_loss / max(t_seen, 1), t_correct / max(t_seen, 1)
        if not math.isfinite(train_loss):
            yield from _fail_nonfinite(self.name, self.run_dir, epoch, self.step, [train_loss], self.lr,
                                       self.last_good_epoch, self.result)
            return self.result
        val_loss, val_acc = vl / max(vn, 1), vc / max(vn, 1)
        seconds = time.perf_counter() - self.t_epoch
        if self.scheduler is not None:
            self.scheduler.step()
        is_best = val_acc > self.best_acc
        epochs = self.cfg.run.epochs
        event = Epoch(self.name, epoch, epochs, train_loss, train_acc, val_loss, val_acc, self.lr, seconds,
                      t_seen / max(seconds, 1e-9), int(t_bad + v_bad), is_best)
        self.result.epochs.append(event.row())
        if ctx.main:
            self.log.add_epoch(event.row())
        if is_best:
            self.best_acc, self.best_epoch = val_acc, epoch
        # a run that stops or fails later still reports the epochs it evaluated
        self.result.best_val_acc, self.result.best_epoch, self.result.final_val_acc = self.best_acc, self.best_epoch, val_acc
        yield event
        self.last_good_epoch = epoch
        if ctx.main:
            yield from _save_checkpoints(self.model, self.cfg, self.name, self.run_dir, epoch, is_best, val_acc)
            if epoch == epochs or time.perf_counter() - self.drawn[1] >= CURVES_EVERY_S:
                self.draw_curves()
        return None

    def _cancel(self, epoch: int) -> Generator[Event, None, RunResult]:
        self.train_data.close()  # now: workers a SIGTERM did not reach must not outlive the stop
        self.val_data.close()
        if self.ctx.main:  # the steps of an unfinished epoch are kept too
            self.log.flush()
        yield Stopped(self.name, str(self.run_dir), epoch, self.step)
        self.result.status = RunStatus.CANCELLED
        return self.result

    def _out_of_memory(self, epoch: int) -> Generator[Event, None, RunResult]:
        if self.cuda:
            torch.cuda.empty_cache()
        bs = self.cfg.run.batch_size
        half = bs // 2 or None
        msg = (f"out of memory on {self.device} at batch size {bs} (epoch {epoch}); "
               + (f"retry with run.batch_size = {half}" if half else "the model does not fit even at batch size 1"))
        result = self.result
        result.status, result.message, result.retry_batch_size, result.failure = RunStatus.FAILED, msg, half, "oom"
        yield Failed(self.name, str(self.run_dir), msg, "oom", half)
        return result


def _data_problem(split: SplitInfo, what: str, unreadable: int, readable: int | None, limit: float,
                  vanished: list[Path]) -> str | None:
    """Why a split's images cannot be trained on, or None; ``readable`` is known at the end of a pass."""
    if vanished:
        more = f" (and {len(vanished) - 1} more)" if len(vanished) > 1 else ""
        return (f"the class folder {vanished[0]}{more} vanished during the run; restore it, or start a new run "
                "on the folders as they are now")
    if readable == 0:
        return (f"no image in the {what} folder {split.root} could be read; check that its files are images "
                f"({', '.join(IMAGE_SUFFIXES[:4])} ...) and not damaged")
    if unreadable > limit * len(split):
        return (f"{unreadable} of the {len(split)} images in the {what} folder {split.root} could not be read, "
                f"more than data.max_unreadable = {limit:g} allows; replace or remove them, or raise "
                "data.max_unreadable")
    return None


def _epoch_data_problem(splits: Iterable[tuple[SplitInfo, str, float, float, list[Path]]], any_vanished: bool,
                        limit: float) -> str | None:
    """At an epoch's end: the first split (train, then val) whose images cannot be trained on, or None.

    ``any_vanished``: some rank saw a class folder vanish; under torchrun a rank that saw none itself
    looks now, so all ranks fail alike."""
    for split, what, bad, good, gone in splits:
        gone = gone or (split.missing_classes() if any_vanished else [])
        problem = _data_problem(split, what, int(bad), int(good), limit, gone)
        if problem:
            return problem
    return None


def _fail_data(name: str, run_dir: Path, epoch: int, step: int, problem: str, last_good_epoch: int,
               result: RunResult) -> Generator[Event, None, None]:
    kept = (f"the last good weights (epoch {last_good_epoch}) are in {run_dir / 'last.safetensors'}"
            if last_good_epoch else "no checkpoint was saved")
    msg = f"{problem}. The run stopped at epoch {epoch}, step {step}; {kept}"
    result.status, result.message, result.failure = RunStatus.FAILED, msg, "data"
    yield Failed(name, str(run_dir), msg, "data")


def _fail_nonfinite(name: str, run_dir: Path, epoch: int, step: int, losses: list[float], lr: float,
                    last_good_epoch: int, result: RunResult) -> Generator[Event, None, None]:
    bad = next(v for v in losses if not math.isfinite(v))
    kept = (f"the last good weights (epoch {last_good_epoch}) are in {run_dir / 'last.safetensors'}"
            if last_good_epoch else "no checkpoint was saved before it")
    msg = (f"loss became {bad} at epoch {epoch}, step {step} (lr {lr:g}); the run stopped and {kept}. "
           "Lower optim.lr or check the data")
    result.status, result.message, result.failure = RunStatus.FAILED, msg, "nan"
    yield Failed(name, str(run_dir), msg, "nan")


def evaluate_sums(model: nn.Module, data: Iterable[Batch], prepare: Callable, autocast, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Summed validation loss and correct count (on the device) and the image count: sums add across ranks."""
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    with torch.inference_mode(), autocast:
        for batch in data:
            if len(batch.labels) == 0:
                continue
            y = batch.labels.to(device, non_blocking=True)
            out = model(prepare(batch.images, train=False)).float()
            loss_sum += F.cross_entropy(out, y, reduction="sum")
            correct += (out.argmax(1) == y).sum()
            seen += len(y)
    return loss_sum, correct, seen


def run(cfg: RunConfig, on_event: Callable[[Event], None] | None = None,
        control: RunControl | None = None) -> RunResult:
    """Drive ``train`` to its end, handing each event to ``on_event``; for scripts and the CLI."""
    return drive(train(cfg, control), on_event)
