"""Spatial pyramid pooling and AlexNet_SPP, the models of the seed article."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

_POOLS = {"max": nn.AdaptiveMaxPool2d, "avg": nn.AdaptiveAvgPool2d}


class SpatialPyramidPooling(nn.Module):
    """Pool a feature map into fixed grids of k x k bins, one per level, and concatenate them.

    ``num_pools`` gives the bin count of each level (a perfect square: 1, 4, 9, 16, 36 ...).
    The output is ``(N, C, sum(num_pools))`` whatever the input's height and width, so a
    classifier after it accepts any image size. Adaptive pooling also copes with feature maps
    smaller than the finest grid (bins then overlap).
    """

    def __init__(self, num_pools: Sequence[int] = (1, 4, 16), mode: str = "max") -> None:
        super().__init__()
        if mode not in _POOLS:
            raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
        num_pools = tuple(int(n) for n in num_pools)
        if not num_pools:
            raise ValueError("num_pools must name at least one level")
        sides = []
        for n in num_pools:
            side = math.isqrt(n) if n > 0 else 0
            if n <= 0 or side * side != n:
                raise ValueError(f"each pyramid level's bin count must be a perfect square, got {n}")
            sides.append(side)
        self.num_pools = num_pools
        self.mode = mode
        self.pools = nn.ModuleList(_POOLS[mode](side) for side in sides)

    @property
    def out_bins(self) -> int:
        return sum(self.num_pools)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        return torch.cat([pool(x).reshape(n, c, -1) for pool in self.pools], dim=2)

    def extra_repr(self) -> str:
        return f"num_pools={self.num_pools}, mode={self.mode!r}"


class AlexNet_SPP(nn.Module):  # noqa: N801 - the seed article's name
    """torchvision AlexNet with its last max-pool replaced by spatial pyramid pooling.

    Parameter names and order are those of ``torchvision.models.alexnet`` so pretrained
    AlexNet weights map by name; only ``classifier.1`` (256*sum(levels) inputs instead of
    256*36) and the head differ.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        levels: Sequence[int] = (1, 4, 9, 36),
        mode: str = "max",
        dropout: float = 0.5,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        c = [max(1, round(ch * width)) for ch in (64, 192, 384, 256, 256)]
        hidden = max(1, round(4096 * width))
        self.features = nn.Sequential(
            nn.Conv2d(3, c[0], kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c[0], c[1], kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c[1], c[2], kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c[2], c[3], kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c[3], c[4], kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.spp = SpatialPyramidPooling(levels, mode)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c[4] * self.spp.out_bins, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.spp(x)
        return self.classifier(torch.flatten(x, 1))
