"""The status bar's progress area: one bar and a Cancel button for whatever is running."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from .jobs import Job


class ProgressArea(QWidget):
    """Shows the most recent running job; Cancel (or Esc) cancels every running job."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.jobs: list[Job] = []
        self.label = QLabel("")
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(180)
        self.bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelJob")
        self.cancel_button.setToolTip("Stop the running job (Esc); the session stays as it was")
        self.cancel_button.clicked.connect(self.cancel_all)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)
        self.setVisible(False)

    def track(self, job: Job) -> None:
        self.jobs.append(job)
        job.progressed.connect(self._progress)
        job.ended.connect(self._ended)
        self.label.setText(job.title)
        self.bar.setRange(0, 0)
        self.setVisible(True)

    def _progress(self, done: int, total: int, text: str) -> None:
        self.bar.setRange(0, total)
        self.bar.setValue(done)
        self.label.setText(text)

    def _ended(self) -> None:
        job = self.sender()
        if job in self.jobs:
            self.jobs.remove(job)
        if not self.jobs:
            self.setVisible(False)
        else:
            self.label.setText(self.jobs[-1].title)

    def cancel_all(self) -> None:
        for job in list(self.jobs):
            job.cancel()

    @property
    def busy(self) -> bool:
        return bool(self.jobs)
