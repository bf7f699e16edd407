"""Training time and peak memory at growing (SYNTHETIC) training-set sizes, for the presets and settings.

The rows are BeaverTails 30k_test pairs resampled by index and perturbed (words dropped and swapped, tokens
appended) so vocabularies grow with size like real data; the set measures speed and memory only, never
quality. Each training run is the real CLI in a subprocess; memory is its peak RSS (ru_maxrss) and the sampled
peak of its process tree's proportional set sizes (the workers of ``--jobs`` included).

    python benchmarks/train_scale.py --sizes 30000 300000 --setups fast-holdout-2jobs accurate-holdout-2jobs

Setups: a preset (accurate = the default recipe, fast = word n-grams only) with either 5 grouped threshold
folds (6 fits per label, one thread: how the shipped models are trained) or a 10% grouped holdout (one fit
per label) with 2 threads (``--threshold-holdout 0.1 --jobs 2``: the full-scale setting).

Writes benchmarks/results/train_scale.json and train_scale.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA, RESULTS, write_text

SCALE_OPTIONS = ["--threshold-holdout", "0.1", "--jobs", "2"]
SETUPS = {
    "accurate-5folds": ["--preset", "accurate"],
    "fast-5folds": ["--preset", "fast"],
    "accurate-holdout-2jobs": ["--preset", "accurate", *SCALE_OPTIONS],
    "fast-holdout-2jobs": ["--preset", "fast", *SCALE_OPTIONS],
}


def synthetic_file(rows: int, directory: Path, seed: int = 0) -> Path:
    """Resampled, perturbed BeaverTails rows (labels kept), written as JSONL."""
    source = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    rng = random.Random(seed)
    path = directory / f"synthetic_{rows}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            record = dict(source[rng.randrange(len(source))])
            words = [w for w in record["response"].split() if rng.random() > 0.1] or record["response"].split()
            if len(words) > 2:
                k = rng.randrange(len(words) - 1)
                words[k], words[k + 1] = words[k + 1], words[k]
            record["response"] = " ".join(words) + f" v{rng.randrange(100_000)}"
            record["prompt"] = f"{record['prompt']} p{i % 60_000}"
            out.write(json.dumps(record) + "\n")
    return path


def timed_training(data: Path, extra: list[str], output: Path, timeout: float) -> dict:
    """Wall seconds and memory of one `lite-moderation train` subprocess (None when it timed out).

    ``peak_rss_mb``: the largest process's peak (ru_maxrss of the training process and the workers it waited
    for); ``peak_tree_pss_mb``: the largest sum, sampled every 0.2 s, of the proportional set sizes of the training
    process and its workers (a page they share, such as the memory-mapped features, counted once): what the
    machine must hold with ``--jobs 2``."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "code = subprocess.call(sys.argv[1:])\n"
        "print(json.dumps({'code': code, 'seconds': time.perf_counter() - t,"
        " 'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
    )
    command = [sys.executable, "-m", "lite_moderation", "train", "--data", str(data), "--output", str(output),
               "--quiet", *extra]
    proc = subprocess.Popen([sys.executable, "-c", wrapper, *command], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    peak_pss_kib = 0
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            for pid in reversed(process_tree(proc.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
            return {"code": None, "seconds": None, "peak_rss_mb": None, "peak_tree_pss_mb": None,
                    "timed_out_after_s": timeout}
        peak_pss_kib = max(peak_pss_kib, sum(map(pss_kib, process_tree(proc.pid))))
        time.sleep(0.2)
    result = json.loads(proc.stdout.read().strip().splitlines()[-1])
    return {**result, "peak_tree_pss_mb": peak_pss_kib / 1024}


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc), parents first."""
    tree, at = [pid], 0
    while at < len(tree):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{tree[at]}/task").iterdir():
                tree += map(int, (task / "children").read_text().split())
        at += 1
    return tree


def pss_kib(pid: int) -> int:
    """Proportional set size of a process in KiB (0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30_000, 300_000])
    parser.add_argument("--setups", nargs="+", default=["fast-holdout-2jobs", "accurate-holdout-2jobs"],
                        choices=list(SETUPS))
    parser.add_argument("--timeout", type=float, default=900.0, help="Seconds before a run is given up.")
    parser.add_argument("--merge", action="store_true",
                        help="Keep the runs already in train_scale.json (a rerun of a setup and size replaces it).")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.sizes:
            data = synthetic_file(rows, Path(tmp))
            for setup in args.setups:
                result = timed_training(data, SETUPS[setup], Path(tmp) / f"model_{setup}_{rows}", args.timeout)
                runs.append({"setup": setup, "options": shlex.join(SETUPS[setup]), "rows": rows, **result,
                             "load_average_after": round(os.getloadavg()[0], 2)})
                print(json.dumps(runs[-1]), file=sys.stderr)
    write_results(merged(runs) if args.merge else runs, args)


def merged(runs: list[dict]) -> list[dict]:
    """Earlier runs of other (setup, rows) pairs, then these, sorted by size."""
    path = RESULTS / "train_scale.json"
    earlier = json.loads(path.read_text())["runs"] if path.exists() else []
    new_keys = {(r["setup"], r["rows"]) for r in runs}
    kept = [r for r in earlier if "setup" in r and (r["setup"], r["rows"]) not in new_keys]
    return sorted(kept + runs, key=lambda r: (r["rows"], r["setup"]))


def write_results(runs: list[dict], args: argparse.Namespace) -> None:
    command = "python benchmarks/train_scale.py " + shlex.join(
        ["--sizes", *map(str, args.sizes), "--setups", *args.setups, "--timeout", str(int(args.timeout))]
        + (["--merge"] * args.merge))
    path = RESULTS / "train_scale.json"
    earlier = json.loads(path.read_text()) if args.merge and path.exists() else {}
    commands = [c for c in earlier.get("commands", [earlier.get("command")]) if c and c != command]
    meta = {"command": command, "commands": [*commands, command],
            "machine": f"{platform.platform()}, {os.cpu_count()} cores",
            "load_average_after": os.getloadavg(), "python": platform.python_version(), "synthetic": True}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS / "train_scale.json", json.dumps({**meta, "runs": runs}, indent=2) + "\n")
    lines = [
        "# Training time and memory (SYNTHETIC data: speed only, never quality)", "",
        "Commands (a later `--merge` run replaces the same setup and size): "
        + "; ".join(f"`{c}`" for c in meta["commands"]) + f". Machine: {meta['machine']}.",
        "Each run is `lite-moderation train --data SYNTHETIC.jsonl --output DIR --quiet OPTIONS` in a subprocess;",
        "rows are resampled, perturbed 30k_test pairs. Peak RSS: the largest process's peak (the training process or",
        "one of its `--jobs` workers); peak PSS of all: the largest sum of the proportional set sizes of the training",
        "process and its workers, sampled every 0.2 s (shared pages counted once): the memory the run needs.", "",
        "| setup | options | rows | seconds | peak RSS MB | peak PSS of all MB | load average after |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(f"| {run['setup']} | `{run['options']}` | {run['rows']:,} | {_outcome(run)} "
                     f"| {_fmt(run['peak_rss_mb'], '.0f')} | {_fmt(run.get('peak_tree_pss_mb'), '.0f')} "
                     f"| {_fmt(run.get('load_average_after'), '.1f')} |")
    write_text(RESULTS / "train_scale.md", "\n".join(lines) + "\n")


def _outcome(run: dict) -> str:
    if run["seconds"] is None:
        return f"> {run['timed_out_after_s']:.0f} (stopped)"
    if run["code"]:
        return f"{run['seconds']:.1f} (FAILED: exit code {run['code']})"
    return f"{run['seconds']:.1f}"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    main()
