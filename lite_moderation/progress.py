"""A minimal progress bar on stderr, so long work shows it is alive without mixing into stdout."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts steps and redraws one stderr line at most every 0.2 s; silent when disabled.

    Works with or without a known total: with one it shows a bar, without one a running count.
    """

    def __init__(self, label: str, total: int | None = None, enabled: bool = True,
                 stream: TextIO | None = None, unit: str = "") -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.unit = unit
        self.done = 0
        self._started = time.monotonic()
        self._last_draw = 0.0
        # On a terminal the line is redrawn in place; in a log file, a new line every few seconds.
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._interval = 0.2 if self._interactive else 5.0

    def __enter__(self) -> Progress:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, steps: int = 1) -> None:
        self.done += steps
        now = time.monotonic()
        if self.enabled and now - self._last_draw >= self._interval:
            self._last_draw = now
            self._draw(now)

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            if self._interactive:
                self.stream.write("\n")
            self.stream.flush()
            self.enabled = False

    def _draw(self, now: float) -> None:
        elapsed = now - self._started
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            width = 24
            filled = int(width * min(self.done, self.total) / self.total)
            bar = "#" * filled + "-" * (width - filled)
            text = f"{self.label} [{bar}] {self.done}/{self.total}{unit} {elapsed:.1f}s"
        else:
            text = f"{self.label} {self.done}{unit} {elapsed:.1f}s"
        self.stream.write("\r" + text if self._interactive else text + "\n")
        self.stream.flush()
