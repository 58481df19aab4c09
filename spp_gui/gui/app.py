"""Entry point of the editor: ``spp-gui [SOURCE TARGET] [--mapping m.json]``.

With no arguments it opens the seed article's case, ready to use offline: torchvision AlexNet
(its ImageNet weights when torch's cache has them, else a random init, said in the window) onto
AlexNet_SPP(20), with auto-suggestions applied.
"""

from __future__ import annotations

import argparse
import sys
from typing import cast

from PySide6.QtWidgets import QApplication, QStyleFactory

from ..core.errors import SppError
from ..core.sources import torchvision_weights_path
from ..core.trust import trust_named_specs
from .style import app_icon

DEFAULT_TARGET = "spp_gui:alexnet_spp?num_classes=20"
NATIVE_STYLES = ("windows11", "windowsvista", "macos")


def default_source() -> str:
    """ImageNet AlexNet when its file is in torch's cache (never downloads), else a random init."""
    try:
        path, _ = torchvision_weights_path("alexnet", "IMAGENET1K_V1")
    except SppError:
        return "torchvision:alexnet"
    return "torchvision:alexnet:IMAGENET1K_V1" if path.exists() else "torchvision:alexnet"


DEFAULT_STRATEGY = "auto"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="spp-gui", description="The spp-gui mapping editor")
    parser.add_argument("source", nargs="?", help="checkpoint file or spec (default: torchvision AlexNet)")
    parser.add_argument("target", nargs="?", help=f"model spec or checkpoint (default: {DEFAULT_TARGET})")
    parser.add_argument("--mapping", "-m", help="open this mapping file")
    parser.add_argument("--strategy", help="suggest with this strategy on open (default: auto; 'none' to start empty)")
    return parser.parse_args(argv)


def make_app(argv: list[str] | None = None) -> QApplication:
    """The QApplication with a native style where the platform has one, Fusion otherwise."""
    existing = QApplication.instance()  # typed QCoreApplication: in this program it is always a QApplication
    app = cast(QApplication, existing) if existing is not None else QApplication(argv or [sys.argv[0]])
    app.setApplicationName("spp-gui")
    app.setOrganizationName("spp_gui")
    app.setApplicationDisplayName("spp-gui")
    app.setDesktopFileName("spp-gui")
    if app.style().name().lower() not in NATIVE_STYLES:
        app.setStyle(QStyleFactory.create("Fusion"))
    app.setWindowIcon(app_icon())
    return app


def preload() -> None:
    """Import torchvision on the GUI thread before any worker runs.

    Its first import (torch._dynamo and friends) on a worker thread while the GUI thread is
    processing events crashed the interpreter ("deallocating None") with torch 2.14; a later
    import is a dict lookup, so paying once up front is cheap insurance.
    """
    import torchvision  # noqa: F401
    import torchvision.models  # noqa: F401


def open_window(argv: list[str]):
    """Build the window for these arguments and start loading (tests call this, then wait)."""
    from .window import MainWindow

    preload()

    args = parse_args(argv)
    trust_named_specs([text for text in (args.source, args.target) if text])  # named by the user: theirs to run
    window = MainWindow(allow_download=bool(args.source))
    if args.mapping and not (args.source or args.target):
        window.files.open_session(None, None, mapping_path=args.mapping, strategy=None)
    else:
        source = args.source or default_source()
        target = args.target or DEFAULT_TARGET
        strategy = args.strategy or (None if args.mapping else DEFAULT_STRATEGY)
        strategy = None if strategy == "none" else strategy
        window.files.open_session(source, target, mapping_path=args.mapping, strategy=strategy)
    return window


def offer_restore(window) -> bool:
    """After a crash: offer the autosaved session; True when it is being restored."""
    from PySide6.QtWidgets import QMessageBox

    from . import autosave

    found = autosave.pending()
    if found is None:
        return False
    answer = QMessageBox.question(
        window, "Restore unsaved session?",
        f"spp_gui did not close normally last time. Restore the unsaved session?\n\n{found.describe()}",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes)
    if answer != QMessageBox.StandardButton.Yes:
        autosave.forget()
        return False
    window.files.open_session(found.source, found.target, mapping_path=found.mapping_path, recovered=found.mapping)
    return True


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    app = make_app([sys.argv[0]])
    window = open_window(argv)
    window.show()
    offer_restore(window)
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
