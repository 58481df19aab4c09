"""The PySide6 + pyqtgraph face of spp_gui; nothing in core/ or training/ imports it.

Importing this package applies one runtime guard, before any Qt call is made:

PySide6 6.12 wheels are built for Python >= 3.12, where ``None`` is immortal, and return ``None``
from every void method (``update()``, ``setToolTip()``, ``processEvents()``...) without taking a
new reference. On Python 3.11 each such call drops one reference that was never taken; after a
few thousand calls ``None``'s count reaches zero and the interpreter aborts ("Fatal Python error:
none_dealloc"). Giving ``None`` a practically endless reference count makes it immortal here too.
"""

from __future__ import annotations

import ctypes
import sys

IMMORTAL_NONE_REFS = 1 << 48


def make_none_immortal() -> None:
    """On Python < 3.12, raise None's reference count far beyond what any session can drop."""
    if sys.version_info >= (3, 12) or sys.getrefcount(None) > IMMORTAL_NONE_REFS // 2:
        return
    ctypes.c_ssize_t.from_address(id(None)).value += IMMORTAL_NONE_REFS


make_none_immortal()
