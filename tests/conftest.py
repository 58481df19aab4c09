"""Headless, deterministic tests: offscreen Qt, QSettings in a temp INI, torch's cache in tmp."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("SPP_GUI_NO_DOWNLOAD", "1")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """torch's hub cache and Qt settings go to a per-test temporary folder."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("SPP_GUI_CONFIG_DIR", str(home / "spp_gui"))
    import torch

    torch.hub.set_dir(str(home / "torch" / "hub"))
    yield home
    from spp_gui.core.trust import forget_trust

    forget_trust()  # code trusted by one test is not trusted by the next
