"""Everything Qt lives here; nothing outside this package imports PySide6 or pyqtgraph."""
