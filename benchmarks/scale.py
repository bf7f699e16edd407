"""Scale-out benchmark: score a synthetic corpus with `score --jobs 1|2` and on a local Dask cluster of 1|2 workers.

The corpus is SYNTHETIC: rows of BeaverTails 30k_test resampled by index (seeded, with replacement) into
several .jsonl.gz files in a temp dir outside the repo (deleted afterwards); no text is printed. Each run is
either the real CLI on one file (``lite-moderation score --input CORPUS.jsonl.gz --output OUT.jsonl --jobs N``,
a subprocess: start-up, reading, scoring and writing all timed) or the library call behind
``lite-moderation score --engine dask`` (every file -> one atomic JSONL output file; timed from submitting the
files to the last output written, on an already started cluster, model shipping and loading included). Row
accounting is checked for both (one output line per input row).

Two shipped models: "fast" (word n-grams) on the larger corpus and "default" (the accurate preset, word +
response char n-grams) on a smaller one.

    python benchmarks/scale.py                    # 1,000,000 rows with the fast model + 200,000 with the default

Writes benchmarks/results/scale.json and scale.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import DATA, RESULTS, machine, write_text
from distributed import Client, LocalCluster

from lite_moderation import distributed as dist
from lite_moderation.persistence import SHIPPED_MODELS

MACHINE_NOTE = "2 cores"
CLI = str(Path(sys.executable).with_name("lite-moderation"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of the fast model's corpus.")
    parser.add_argument("--default-rows", type=int, default=200_000, help="Rows of the default model's corpus.")
    parser.add_argument("--files", type=int, default=8, help="Files per corpus (the unit of parallelism).")
    parser.add_argument("--workers", default="1,2", help="Worker counts to run, comma-separated.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_corpus(lines: list[bytes], rows: int, files: int, seed: int, directory: Path) -> list[Path]:
    """``rows`` rows drawn by index (with replacement) from ``lines``, split evenly into ``files`` .jsonl.gz files."""
    directory.mkdir(parents=True)
    index = np.random.default_rng(seed).integers(0, len(lines), size=rows)
    paths = []
    for i, part in enumerate(np.array_split(index, files)):
        path = directory / f"part-{i:03d}.jsonl.gz"
        with gzip.open(path, "wb", compresslevel=1) as fh:
            fh.writelines(lines[j] for j in part)
        paths.append(path)
    return paths


def write_single_file(parts: list[Path], directory: Path) -> Path:
    """The parts concatenated into one .jsonl.gz (gzip members concatenate), the CLI's input."""
    path = directory / "corpus.jsonl.gz"
    with path.open("wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    return path


def run_cli(corpus: Path, rows: int, model_dir: Path, jobs: int, out_dir: Path) -> dict:
    """The real CLI scoring one file with ``--jobs``; wall seconds of the whole subprocess."""
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / "scores.jsonl"
    command = [CLI, "score", "--input", str(corpus), "--output", str(output), "--model", str(model_dir),
               "--jobs", str(jobs), "-q"]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    with output.open("rb") as fh:
        written = sum(1 for _ in fh)
    output_bytes = output.stat().st_size
    shutil.rmtree(out_dir)
    if written != rows:
        raise RuntimeError(f"row accounting failed: {written} output rows for {rows} input rows")
    return {"engine": f"cli --jobs {jobs}", "workers": jobs, "rows": rows, "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds, 1), "files": 1, "output_mb": round(output_bytes / 1e6, 1),
            "load_average_at_start": round(load_before, 2)}


def run_dask(inputs: list[Path], model_dir: Path | None, workers: int, out_dir: Path) -> dict:
    """Score ``inputs`` on a fresh local cluster of ``workers`` processes; rows/s of the scoring only."""
    payload = dist.model_payload(model_dir)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        summary = dist.score_corpus(inputs, out_dir, payload, client=client)
        seconds = time.perf_counter() - start
    output_bytes = sum(p.stat().st_size for p in out_dir.iterdir())
    shutil.rmtree(out_dir)
    if summary.rejected or summary.failed or summary.scored != summary.rows_in:
        raise RuntimeError(f"row accounting failed: {summary.report_lines()}")
    return {"engine": f"dask, {workers} worker(s)", "workers": workers, "rows": summary.rows_in,
            "seconds": round(seconds, 2),
            "rows_per_s": round(summary.rows_in / seconds, 1), "files": len(inputs),
            "output_mb": round(output_bytes / 1e6, 1), "load_average_at_start": round(load_before, 2)}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Scale-out benchmark (score --jobs, and Dask on a local cluster)",
        "",
        f"`{report['command']}`",
        "",
        (f"Machine: {m['cpus']} CPU cores (load average before the run "
         f"{m['load_average_before']}; each run's load at start is in the table), {m['platform']}, "
         f"Python {m['python']}, dask {report['dask_version']}. `--jobs N` forks N scoring processes (the parent "
         "reads and writes); Dask workers are processes with one thread each, on 127.0.0.1. On 2 cores the "
         "parent's reading and writing competes with the workers: the scaling factor measures this machine."),
        "",
        ("Corpus: SYNTHETIC, BeaverTails 30k_test rows resampled by index with replacement (seeded) into "
         f"{report['files']} .jsonl.gz files per corpus (Dask) or one .jsonl.gz of the same rows (CLI), in a temp "
         "dir. CLI time = the whole `lite-moderation score` process; Dask time = submit to last output file "
         "written (JSONL with all 15 scores per row), cluster already started, model shipping included."),
        "",
        "| model | engine | rows | seconds | rows/s | scaling vs 1 process | output MB | load at start |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, block in report["models"].items():
        for r in block["runs"]:
            kind = r["engine"].split(",")[0].split(" ")[0]
            base = next((b["rows_per_s"] for b in block["runs"] if b["workers"] == 1 and b["engine"].startswith(kind)),
                        None)
            factor = f"{r['rows_per_s'] / base:.2f}x" if base else "-"
            lines.append(f"| {name} | {r['engine']} | {r['rows']:,} | {r['seconds']} | {r['rows_per_s']:,} | "
                         f"{factor} | {r['output_mb']} | {r['load_average_at_start']} |")
    lines += [""] + [f"- {name}: {block['description']}" for name, block in report["models"].items()] + [""]
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    import dask

    workers = [int(w) for w in args.workers.split(",")]
    lines = [line for line in args.data.read_bytes().splitlines(keepends=True) if line.strip()]
    report = {"command": shlex.join(["python", "benchmarks/scale.py", *sys.argv[1:]]),
              "machine": machine(MACHINE_NOTE),
              "dask_version": dask.__version__, "files": args.files, "synthetic": True,
              "source": f"{args.data.name}, {len(lines)} rows resampled by index, seed {args.seed}", "models": {}}
    with tempfile.TemporaryDirectory(prefix="lite-moderation-scale-") as tmp:
        tmp_dir = Path(tmp)
        plans = {
            "fast": (SHIPPED_MODELS["fast"], args.rows, "shipped fast model (word n-grams): lite_moderation/models/fast"),
            "default": (SHIPPED_MODELS["default"], args.default_rows,
                        "shipped default model (accurate preset: word + response char n-grams)"),
        }
        for name, (model_dir, rows, description) in plans.items():
            log(f"{name}: writing a synthetic corpus of {rows:,} rows ...")
            inputs = write_corpus(lines, rows, args.files, args.seed, tmp_dir / f"corpus-{rows}")
            corpus = write_single_file(inputs, tmp_dir)
            report["models"][name] = {"description": description, "runs": []}
            for n in workers:
                log(f"{name}: {rows:,} rows, CLI --jobs {n} ...")
                report["models"][name]["runs"].append(run_cli(corpus, rows, model_dir, n, tmp_dir / "out"))
                log(json.dumps(report["models"][name]["runs"][-1]))
            for n in workers:
                log(f"{name}: {rows:,} rows on {n} Dask worker(s) ...")
                report["models"][name]["runs"].append(run_dask(inputs, model_dir, n, tmp_dir / "out"))
                log(json.dumps(report["models"][name]["runs"][-1]))
            shutil.rmtree(inputs[0].parent)
            corpus.unlink()
    args.output.mkdir(parents=True, exist_ok=True)
    write_text(args.output / "scale.json", json.dumps(report, indent=2) + "\n")
    write_text(args.output / "scale.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
