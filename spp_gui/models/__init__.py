"""Built-in models, addressable in specs as ``spp_gui:NAME?key=value``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .spp import AlexNet_SPP, SpatialPyramidPooling

#: name -> constructor. Keys are what ``spp_gui:NAME`` specs accept.
BUILTIN_MODELS: dict[str, Callable[..., nn.Module]] = {
    "alexnet_spp": AlexNet_SPP,
}

__all__ = ["AlexNet_SPP", "SpatialPyramidPooling", "BUILTIN_MODELS"]
