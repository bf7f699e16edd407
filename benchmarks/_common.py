"""Paths shared by the benchmark scripts (run as ``python benchmarks/NAME.py`` from the project root)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
DATA = SHARED_DATA / "beavertails" / "30k_test.jsonl"
RESULTS = ROOT / "benchmarks" / "results"


def machine(note: str) -> dict:
    """What a result was measured on, with the load average: the 2 cores are often shared."""
    import os
    import platform

    return {
        "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()], "note": note,
    }
