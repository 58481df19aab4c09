"""spp_gui: map pretrained weights into a model that is not quite the same, then train it.

The public API, usable from any training script without the GUI::

    from spp_gui import load_source, build_model, suggest_mapping, apply_mapping, Mapping
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .core.apply import LoadReport, apply_mapping, save_weights
from .core.errors import MappingError, SourceError, SpecError, SppError, UnsafePickleError
from .core.mapping import Entry, Mapping, MappingSummary, Status
from .core.sources import Source, load_source
from .core.specs import build_model, parse_spec
from .core.strategies import suggest, suggest_mapping
from .core.trust import UntrustedCodeError
from .core.trust import trust_file as trust_code

__version__ = "0.1.0"


def data_path(name: str) -> Path:
    """A file shipped with spp_gui (``mappings/alexnet_to_alexnet_spp.json``, ``spp-gui.desktop``), as a path."""
    return Path(str(resources.files("spp_gui") / "data" / name))

__all__ = [
    "load_source", "build_model", "suggest_mapping", "apply_mapping", "Mapping", "Entry", "Status", "MappingSummary", "LoadReport",
    "save_weights", "suggest", "parse_spec", "Source", "SppError", "SourceError", "SpecError", "MappingError",
    "UnsafePickleError", "UntrustedCodeError", "trust_code", "data_path", "__version__",
]
