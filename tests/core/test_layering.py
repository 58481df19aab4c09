"""The core, models and training never import Qt: a headless training script must not need it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap

import spp_gui

QT_FREE = ("spp_gui.core", "spp_gui.models", "spp_gui.training", "spp_gui.cli")


def test_core_imports_without_qt():
    modules = [m.name for m in pkgutil.walk_packages(spp_gui.__path__, "spp_gui.")
               if m.name.startswith(QT_FREE) or m.name == "spp_gui"]
    assert "spp_gui.core.sources" in modules
    script = textwrap.dedent(f"""
        import importlib, sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6'):
                    raise ImportError('Qt is blocked in this test: ' + name)

        sys.meta_path.insert(0, Block())
        for name in {modules!r}:
            importlib.import_module(name)
        import spp_gui.cli.dispatch
        spp_gui.cli.dispatch.build_parser()
        print('ok', len({modules!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")
