"""Exit codes of the ``lite-moderation`` command, defined once (the README's CLI section lists them)."""

from __future__ import annotations

__all__ = ["BAD_INPUT", "FLAGGED", "INTERRUPTED", "OK", "SERVER_FAILED", "TERMINATED"]

#: Success: everything asked for was done (and, with ``score --fail-on-flagged``, nothing was flagged).
OK = 0
#: ``score --fail-on-flagged``: at least one item was flagged.
FLAGGED = 1
#: Bad input, bad usage, a refused output path or an unusable model; also ``--fail-on-flagged`` with a row
#: that could not be scored (a gate fails closed), or a run cut short by a dead worker process (``--jobs``).
#: One line on stderr, never a traceback.
BAD_INPUT = 2
#: ``serve --workers N``: the workers kept dying (one within a second of starting), so all were stopped; a
#: service manager's restart-on-failure starts it again. The log says which worker and why.
SERVER_FAILED = 3
#: Stopped by SIGINT (Ctrl-C): 128 + 2.
INTERRUPTED = 130
#: Stopped by SIGTERM: 128 + 15.
TERMINATED = 143
