"""Progress on stderr for long work, drawn by ``click.progressbar``, never mixed into stdout.

On a terminal, a bar appears once the work has lasted :data:`DELAY` seconds (short runs and tiny inputs
show nothing) and its line is erased when the work ends, so whatever is printed next starts on a clean line.
When stderr is not a terminal (a log file, a pipe), a plain status line is written every
:data:`LOG_INTERVAL` seconds instead, and a last one at the end, only once the work has lasted that long.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import click

__all__ = ["DELAY", "LOG_INTERVAL", "Progress"]

#: Seconds of work before a terminal shows a bar.
DELAY = 0.5
#: Seconds between the status lines of a non-terminal stderr (also the work it takes to get the first).
LOG_INTERVAL = 5.0
#: Seconds between redraws of the bar (updates in between are only counted).
REDRAW_INTERVAL = 0.2
#: Back to column 0, erase the line, show the cursor again (click's bar hides it while drawing).
_CLEAR_LINE = "\r\033[2K\033[?25h"


class Progress:
    """Counts steps; shows them on ``stream`` (default stderr) while the work lasts; silent when disabled.

    Works with or without a known total: with one the bar fills and shows an ETA, without one it shows a
    running count. Nothing shows before ``min_steps`` steps (tiny inputs) nor before :data:`DELAY` seconds.
    """

    def __init__(self, label: str, total: int | None = None, enabled: bool = True,
                 stream: TextIO | None = None, unit: str = "", min_steps: int = 0) -> None:
        self.label = label
        self.min_steps = min_steps
        self.total = total or None
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.unit = unit
        self.done = 0
        self._started = time.monotonic()
        self._last_check = float("-inf")
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: Any = None  # click's ProgressBar, made when the bar first shows; erased by close()
        self._logged = False

    def __enter__(self) -> Progress:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, steps: int = 1) -> None:
        self.done += steps
        if not self.enabled or self.done < self.min_steps:
            return
        now = time.monotonic()
        if now - self._last_check < (REDRAW_INTERVAL if self._interactive else LOG_INTERVAL):
            return
        self._last_check = now
        elapsed = now - self._started
        if self._interactive:
            if elapsed >= DELAY:
                self._draw_bar()
        elif elapsed >= (LOG_INTERVAL if not self._logged else 0):
            self._log_line(elapsed)

    def close(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        if self._bar is not None:
            self.stream.write(_CLEAR_LINE)
            self.stream.flush()
            self._bar = None
        elif self._logged:
            self._log_line(time.monotonic() - self._started)

    def _draw_bar(self) -> None:
        if self._bar is None:
            self._bar = click.progressbar(
                length=self.total, iterable=None if self.total else _unknown_length(), label=self.label,
                file=self.stream, show_pos=True, width=24, bar_template="%(label)s [%(bar)s] %(info)s",
                item_show_func=lambda _: self.unit or None,
            )
        self._bar.update(self.done - self._bar.pos)

    def _log_line(self, elapsed: float) -> None:
        total = f"/{self.total}" if self.total else ""
        unit = f" {self.unit}" if self.unit else ""
        click.echo(f"{self.label}: {self.done}{total}{unit} {elapsed:.0f}s", file=self.stream)
        self._logged = True


def _unknown_length():
    """An iterable without a length, so click draws a count instead of a bar that cannot fill."""
    yield from ()
