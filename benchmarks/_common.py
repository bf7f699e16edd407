"""Paths and helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py`` from the project root)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable, Hashable
from pathlib import Path

import numpy as np

from lite_moderation.output import atomic_text_writer, write_bytes

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
DATA = SHARED_DATA / "beavertails" / "30k_test.jsonl"
RESULTS = ROOT / "benchmarks" / "results"


def write_results(name: str, results: list[dict], markdown: str) -> None:
    """Write ``results/NAME.json`` and ``results/NAME.md`` and print the Markdown: every benchmark's last step."""
    write_text(RESULTS / f"{name}.json", json.dumps(results, indent=1) + "\n")
    write_text(RESULTS / f"{name}.md", markdown)
    print(markdown)


def kept_results(name: str, measured: dict, key: Callable[[dict], Hashable]) -> dict:
    """The results of earlier runs of benchmark ``name`` by ``key``, updated with ``measured`` (read when called,
    after measuring: a run of other variants meanwhile keeps its results)."""
    path = RESULTS / f"{name}.json"
    kept = {key(r): r for r in json.loads(path.read_text())} if path.exists() else {}
    kept.update(measured)
    return kept


def write_text(path: Path, text: str) -> None:
    """A result file, written atomically: an interrupted run leaves the previous result, never half of one."""
    with atomic_text_writer(path) as out:
        out.write(text)


def save_figure(figure, path: Path, dpi: int) -> None:
    """A matplotlib figure as a PNG, written atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    write_bytes(buffer.getvalue(), path)


def machine(note: str) -> dict:
    """What a result was measured on, with the load average: the 2 cores are often shared."""
    import os
    import platform

    return {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()], "note": note,
    }


#: Runs a command and prints its wall seconds and ru_maxrss (KiB). It runs in a small interpreter of its own
#: because a child's ru_maxrss also counts the memory it had before exec, i.e. a fork of its parent.
RSS_WRAPPER = """
import os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
if os.waitstatus_to_exitcode(status):
    sys.exit(err.decode()[-2000:])
print(time.perf_counter() - start, usage.ru_maxrss)
"""


def child_run(args: list[str], runs: int) -> dict:
    """Wall time and peak RSS of a subprocess (that child alone, via os.wait4), medians of ``runs``."""
    walls, rss = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-S", "-c", RSS_WRAPPER, *args], check=False, capture_output=True,
                             text=True)
        if out.returncode:
            raise RuntimeError(f"{args} failed: {out.stderr}")
        wall, maxrss_kib = out.stdout.split()
        walls.append(float(wall))
        rss.append(int(maxrss_kib) / 1024)
    return {"wall_s": float(np.median(walls)), "peak_rss_mb": float(np.median(rss)), "runs_wall_s": walls,
            "runs_peak_rss_mb": rss}
