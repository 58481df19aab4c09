"""Image folders (one subfolder per class), checked before a run starts, loaded without surprises.

Images are decoded and resized in the loader (CPU) and shipped as uint8; flip and normalisation
run on the batch on the training device, which moves a quarter of the bytes to a GPU and lets a
small dataset be decoded once and kept in memory (``cache``). Unreadable images are skipped and
counted, never a crash; whether too many were skipped is the engine's call (``data.max_unreadable``).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..core.errors import SppError
from .distributed import shard_order

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
CACHE_AUTO_BYTES = 1 << 30  # decoded images kept in memory when they fit in this much


class DatasetError(SppError):
    """A dataset folder that is missing, empty, or does not match the other split."""


@dataclass
class SplitInfo:
    """One split (train or val): its classes, and each image with its class index."""

    root: Path
    classes: list[str]
    samples: list[tuple[str, int]]
    counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def summary(self) -> str:
        return f"{len(self.classes)} classes, {len(self.samples)} images"

    def missing_classes(self) -> list[Path]:
        """Class folders that were scanned but are gone now (deleted or moved while a run reads them)."""
        return [self.root / c for c in self.classes if not (self.root / c).is_dir()]


def scan_split(root: str | os.PathLike, what: str = "dataset") -> SplitInfo:
    """List an ImageFolder-style split; DatasetError names the folder and what is wrong with it."""
    root = Path(root).expanduser()
    if not str(root) or not root.exists():
        raise DatasetError(f"{what} folder not found: {root} (expected one subfolder of images per class)")
    if not root.is_dir():
        raise DatasetError(f"{what} path {root} is a file; pick the folder that holds one subfolder per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"{what} folder {root} has no class subfolders (expected e.g. {root}/cat/*.jpg)")
    samples: list[tuple[str, int]] = []
    counts: dict[str, int] = {}
    for index, name in enumerate(classes):
        files = sorted(str(p) for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        counts[name] = len(files)
        samples.extend((f, index) for f in files)
    if not samples:
        raise DatasetError(f"{what} folder {root} has class subfolders but no images ({', '.join(IMAGE_SUFFIXES[:4])} ...)")
    empty = [c for c, n in counts.items() if n == 0]
    if empty:
        raise DatasetError(f"{what} folder {root}: class folder(s) without images: {', '.join(empty[:5])}")
    return SplitInfo(root, classes, samples, counts)


def scan_dataset(train: str | os.PathLike, val: str | os.PathLike) -> tuple[SplitInfo, SplitInfo]:
    """Both splits, with the check that they name the same classes (else labels would silently differ)."""
    tr, va = scan_split(train, "train"), scan_split(val, "val")
    if tr.classes != va.classes:
        only_train = sorted(set(tr.classes) - set(va.classes))
        only_val = sorted(set(va.classes) - set(tr.classes))
        parts = []
        if only_train:
            parts.append(f"only in train: {', '.join(only_train[:5])}")
        if only_val:
            parts.append(f"only in val: {', '.join(only_val[:5])}")
        raise DatasetError(f"train ({tr.root}) and val ({va.root}) have different classes: {'; '.join(parts)}")
    return tr, va


def load_image(path: str, size: int) -> torch.Tensor | None:
    """Decode and resize to ``size`` x ``size`` as uint8 CHW; None when the file is not a readable image.

    A JPEG at least twice ``size`` on both sides decodes at 1/2, 1/4 or 1/8 scale (PIL's draft
    mode: libjpeg scales in the DCT, a fraction of the work). The resize is torch's antialiased
    bilinear on uint8, the same pixels as PIL's bilinear resize within one level, in half the time.
    """
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (size, size))
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            arr = np.array(rgb, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    x = torch.from_numpy(arr).permute(2, 0, 1)
    if x.shape[1:] != (size, size):
        x = F.interpolate(x.unsqueeze(0), size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return x.contiguous()


class ImageFiles(Dataset):
    """Items are ``(uint8 image or None, label, index)``; picklable for spawn/forkserver workers."""

    def __init__(self, samples: list[tuple[str, int]], size: int) -> None:
        self.samples = samples
        self.size = size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return load_image(path, self.size), label, index


@dataclass
class Batch:
    images: torch.Tensor  # uint8 N x 3 x S x S
    labels: torch.Tensor  # int64 N
    indices: torch.Tensor  # int64 N, positions in the split
    skipped: int  # unreadable images dropped from this batch

    def pin_memory(self) -> Batch:
        return Batch(self.images.pin_memory(), self.labels.pin_memory(), self.indices, self.skipped)


def collate(items) -> Batch:
    good = [it for it in items if it[0] is not None]
    skipped = len(items) - len(good)
    if not good:
        return Batch(torch.empty(0, 3, 1, 1, dtype=torch.uint8), torch.empty(0, dtype=torch.long),
                     torch.empty(0, dtype=torch.long), skipped)
    return Batch(torch.stack([it[0] for it in good]), torch.tensor([it[1] for it in good]),
                 torch.tensor([it[2] for it in good]), skipped)


def is_worker_loss(exc: BaseException) -> bool:
    """The error a DataLoader raises when one of its worker processes died (killed, or exited).

    Also the error of a batch a worker sent just before it died: the batch's memory is handed over
    through a socket of that worker, reset, refused or closed once it is gone.
    """
    if isinstance(exc, (ConnectionError, EOFError)):
        return True
    return isinstance(exc, RuntimeError) and ("DataLoader worker" in str(exc) or "items of ancdata" in str(exc))


def shutdown_workers(loader: DataLoader) -> None:
    """Stop a loader's worker processes now; persistent workers otherwise live until garbage collection.

    The DataLoader keeps the iterator that owns them (``_iterator``) and has no public way to end it.
    """
    iterator = getattr(loader, "_iterator", None)
    loader._iterator = None
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()


def worker_context() -> multiprocessing.context.BaseContext:
    """forkserver where it exists, else spawn: forking a process that runs Qt threads can deadlock.

    The forkserver imports this module (with torch and PIL) once, when it starts, and forks each
    worker with it in memory. A worker left to import it reads the package from disk as it is at
    that moment: one that changed since the process started (an upgrade, an edit mid-session)
    made the worker die at start, "DataLoader worker exited unexpectedly"; and every loader's
    workers spent seconds importing torch (6 s each under load here, 0.2 s forked).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", __name__])  # read only when the forkserver starts
    return context


def make_loader(split: SplitInfo, size: int, batch_size: int, *, shuffle: bool, workers: int, pin: bool,
                seed: int, sampler=None) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    if sampler is not None:
        shuffle = False  # the sampler orders the items
    spawned = workers > 0  # without workers the loader keeps its defaults for these three
    return DataLoader(ImageFiles(split.samples, size), batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      collate_fn=collate, pin_memory=pin, drop_last=False, generator=generator, sampler=sampler,
                      multiprocessing_context=worker_context() if spawned else None, persistent_workers=spawned,
                      prefetch_factor=4 if spawned else None)


class BatchSource:
    """Batches of one split, for every epoch: from the loader, or from memory once decoded.

    With the cache on, the first epoch decodes through the loader and fills one uint8 tensor;
    later epochs index it with the same per-epoch permutation, no decoding at all.

    ``world > 1`` (torchrun) shards the split: training takes ``DistributedSampler``'s share for
    the epoch set by ``set_epoch``, validation every ``world``-th image. A shuffled shard changes
    every epoch, so there the cache is filled with the whole split up front.
    """

    def __init__(self, split: SplitInfo, size: int, batch_size: int, *, shuffle: bool, workers: int, pin: bool,
                 seed: int, cache: str = "auto", rank: int = 0, world: int = 1) -> None:
        self.split, self.size, self.batch_size, self.shuffle = split, size, batch_size, shuffle
        self.rank, self.world, self.seed, self.epoch = rank, world, seed, 0
        self.workers = workers
        # shuffled: one permutation per epoch (``set_epoch``), the same however many processes share it
        self.sampler: DistributedSampler | list[int] | None = None
        if shuffle:
            self.sampler = DistributedSampler(ImageFiles(split.samples, size), num_replicas=world, rank=rank,
                                              shuffle=True, seed=seed)
        elif world > 1:
            self.sampler = shard_order(len(split), 0, seed, rank, world, False).tolist()
        self.loader = make_loader(split, size, batch_size, shuffle=shuffle, workers=workers, pin=pin, seed=seed,
                                  sampler=self.sampler)
        nbytes = len(split) * 3 * size * size
        self.use_cache = cache == "yes" or (cache == "auto" and nbytes <= CACHE_AUTO_BYTES)
        self.pin = pin
        self._images: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self.unreadable = 0
        self.vanished: list[Path] = []  # class folders found gone during the latest pass
        self.cut = False  # the latest pass of ``batches`` ended early: its workers died after a stop request

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """Which shard a distributed training split takes (the same permutation on every rank)."""
        self.epoch = epoch
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Batch]:
        self.vanished = []
        if self._images is None and self.use_cache and self.world > 1 and self.shuffle:
            self._fill_all()
        if self._images is not None:
            yield from self._from_cache()
            return
        fill = self.use_cache
        if fill:
            images = torch.empty(len(self.split), 3, self.size, self.size, dtype=torch.uint8)
            valid = torch.zeros(len(self.split), dtype=torch.bool)
        skipped = 0
        for batch in self.loader:
            skipped += batch.skipped
            if batch.skipped and not self.vanished:  # an unreadable image: is its class folder still there?
                self.vanished = self.split.missing_classes()
            if fill and len(batch.indices):
                images[batch.indices] = batch.images
                valid[batch.indices] = True
            yield batch
        self.unreadable = skipped
        if fill:  # only a complete pass fills the cache
            self._images = images[valid]
            self._labels = torch.tensor([lab for _, lab in self.split.samples])[valid]
            if self.pin:
                self._images = self._images.pin_memory()

    def _fill_all(self) -> None:
        """Decode the whole split once (this rank's share of later epochs is not known yet)."""
        loader = make_loader(self.split, self.size, self.batch_size, shuffle=False, workers=self.workers, pin=False,
                             seed=self.seed)
        images = torch.empty(len(self.split), 3, self.size, self.size, dtype=torch.uint8)
        valid = torch.zeros(len(self.split), dtype=torch.bool)
        for batch in loader:
            images[batch.indices] = batch.images
            valid[batch.indices] = True
            if batch.skipped and not self.vanished:
                self.vanished = self.split.missing_classes()
        shutdown_workers(loader)
        # each rank counts the unreadable images of its own stride, so the ranks' counts sum to the total
        self.unreadable = int((~valid[self.rank::self.world]).sum())
        self._images = images[valid]
        self._labels = torch.tensor([lab for _, lab in self.split.samples])[valid]
        if self.pin:
            self._images = self._images.pin_memory()

    def batches(self, stopping: Callable[[], bool], pad: bool = False) -> Iterator[Batch]:
        """This pass's batches, where a stop request may have killed the loader's workers.

        A SIGTERM to the whole process group (the GUI's Stop, torchrun, a scheduler) reaches the
        workers too. When ``stopping()`` and a worker is lost, the pass ends as the stop it is:
        ``cut`` is set and the workers are shut down. ``pad``: the rest of the pass comes as empty
        batches instead, so a torchrun rank still joins each step's all-reduce until the ranks
        agree to stop. A worker lost without a stop request is an error, raised as it was.
        """
        self.cut = False
        served = 0
        batches = iter(self)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (RuntimeError, ConnectionError, EOFError) as exc:
                if not (stopping() and is_worker_loss(exc)):
                    raise
                self.close()
                self.cut = True
                break
            served += 1
            yield batch
        if pad:
            for _ in range(len(self) - served):
                yield collate([])

    def close(self) -> None:
        """End the loader's worker processes (a run calls this however it ends)."""
        shutdown_workers(self.loader)

    def _from_cache(self) -> Iterator[Batch]:
        assert self._images is not None and self._labels is not None
        n = len(self._images)
        order = shard_order(n, self.epoch, self.seed, self.rank, self.world, True) if self.shuffle else torch.arange(n)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            images = self._images[idx]
            yield Batch(images.pin_memory() if self.pin else images, self._labels[idx], idx, 0)


def split_info_text(split: SplitInfo, limit: int = 8) -> str:
    """'N classes, M images: cat 120, dog 98, ...' for the panel and the CLI."""
    items = ", ".join(f"{c} {n}" for c, n in list(split.counts.items())[:limit])
    more = ", ..." if len(split.counts) > limit else ""
    return f"{split.summary()}: {items}{more}"
