"""The PySide6 + pyqtgraph face of spp_gui; nothing in core/ or training/ imports it.

PySide6-Essentials 6.12.0 must not be used on Python < 3.12: its void methods return ``None``
without taking a reference, and after a few thousand calls the interpreter aborts
("none_dealloc"). pyproject.toml excludes it; resources/constraints.txt pins 6.11.3, tested here.
"""
