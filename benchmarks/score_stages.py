"""Where `lite-moderation score --input FILE.jsonl.gz --output out.jsonl` spends its time, stage by stage, and its
end-to-end rows/s against the code of a git commit (default 1ba1bba, before issue 13), with --jobs 1.

The corpus is SYNTHETIC: BeaverTails 30k_test rows resampled by index (seeded) into one .jsonl.gz in a temp dir
(deleted afterwards); no text is printed. Stages, in-process, CPU seconds per row: gzip + line reading, parsing
(read_records), scoring (predict_proba in the CLI's 2,048-row chunks), building the verdict dicts, formatting
the JSONL rows (today: write_scores from the arrays; before: json.dumps of each dict), writing the file. End to
end: the real CLI in a subprocess (wall seconds, peak RSS), then the same command with the package of the commit
(extracted with `git archive`). Writes benchmarks/results/score_stages.json and score_stages.md::

    python benchmarks/score_stages.py                    # 200,000 rows, both models, about 2-3 minutes
    python benchmarks/score_stages.py --rows 100000 --models fast --runs 3
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import DATA, RESULTS, ROOT, child_run, machine, write_text

#: Runs the CLI of the package at argv[1] (not the installed one) with the rest of argv.
OLD_CLI = """
import sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, sys.argv.pop(1))
from lite_moderation.cli import main
sys.argv[0] = "lite-moderation"
main()
"""


def count_lines(path: Path) -> int:
    with gzip.open(path, "rb") as fh:
        return sum(1 for _ in fh)


def cpu(fn):
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


def stages(corpus: Path, rows: int, model: str, out_dir: Path) -> dict:
    """CPU microseconds per row of each stage, in this process."""
    import lite_moderation as lm
    from lite_moderation.data import read_records
    from lite_moderation.output import RowWriter
    from lite_moderation.taxonomy import results_from_proba

    scorer = lm.load_scorer(model)
    us = {}
    _, us["gzip + lines"] = cpu(lambda: count_lines(corpus))
    records, us["parse (read_records, incl. gzip)"] = cpu(lambda: list(read_records(corpus, require="text")))
    pairs = [r.pair for r in records]
    lines = [r.line for r in records]
    chunks, us["score (predict_proba)"] = cpu(lambda: [scorer.predict_proba(pairs[i:i + 2048])
                                                         for i in range(0, len(pairs), 2048)])
    proba = np.vstack(chunks)
    verdicts, us["verdict dicts (before only)"] = cpu(lambda: results_from_proba(proba, scorer.thresholds_))
    before = io.StringIO()
    writer = RowWriter(before, "jsonl")
    _, us["format: json.dumps per dict (before)"] = cpu(lambda: [writer.write(v, line=n)
                                                                for v, n in zip(verdicts, lines)])
    now = io.StringIO()
    _, us["format: write_scores from arrays (now)"] = cpu(
        lambda: RowWriter(now, "jsonl").write_scores(proba, scorer.thresholds_, None, lines))
    assert now.getvalue() == before.getvalue()
    target = out_dir / "stage.jsonl"
    _, us["write the file"] = cpu(lambda: target.write_text(now.getvalue()))
    target.unlink()
    return {name: round(seconds * 1e6 / rows, 2) for name, seconds in us.items()}


def cli_run(command: list[str], rows: int, runs: int) -> dict:
    run = child_run(command, runs)
    return {"wall_s": round(run["wall_s"], 2), "rows_per_s": round(rows / run["wall_s"]),
            "peak_rss_mb": round(run["peak_rss_mb"], 1), "runs_wall_s": [round(w, 2) for w in run["runs_wall_s"]]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--models", default="fast,default")
    parser.add_argument("--runs", type=int, default=3, help="CLI runs per version (medians)")
    parser.add_argument("--commit", default="1ba1bba", help="the code to compare with")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    cli = str(Path(sys.executable).with_name("lite-moderation"))
    lines = [line for line in DATA.read_bytes().splitlines(keepends=True) if line.strip()]
    report = {"command": shlex.join(["python", "benchmarks/score_stages.py", *sys.argv[1:]]),
              "machine": machine("2 cores, shared"), "rows": args.rows, "commit": args.commit, "synthetic": True,
              "source": f"{DATA.name}, {len(lines)} rows resampled by index, seed {args.seed}", "models": {}}
    with tempfile.TemporaryDirectory(prefix="lm-stages-") as tmp:
        tmp_dir = Path(tmp)
        corpus = tmp_dir / "corpus.jsonl.gz"
        index = np.random.default_rng(args.seed).integers(0, len(lines), size=args.rows)
        with gzip.open(corpus, "wb", compresslevel=1) as fh:
            fh.writelines(lines[i] for i in index)
        old = tmp_dir / "old"
        old.mkdir()
        archive = subprocess.run(["git", "archive", args.commit, "lite_moderation"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        for model in args.models.split(","):
            print(f"{model}: stages ...", file=sys.stderr, flush=True)
            entry = {"stages_us_per_row": stages(corpus, args.rows, model, tmp_dir)}
            command = ["score", "--input", str(corpus), "--output", str(tmp_dir / "out.jsonl"), "--model", model,
                       "--jobs", "1", "-q"]
            print(f"{model}: CLI now and at {args.commit} ...", file=sys.stderr, flush=True)
            entry["cli_now"] = cli_run([cli, *command], args.rows, args.runs)
            entry["cli_before"] = cli_run([sys.executable, "-c", OLD_CLI, str(old), *command], args.rows, args.runs)
            entry["speedup"] = round(entry["cli_now"]["rows_per_s"] / entry["cli_before"]["rows_per_s"], 2)
            report["models"][model] = entry
            print(json.dumps(entry), file=sys.stderr, flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    write_text(args.output / "score_stages.json", json.dumps(report, indent=2) + "\n")
    write_text(args.output / "score_stages.md", markdown(report))
    print(markdown(report))
    return 0


def markdown(report: dict) -> str:
    m = report["machine"]
    out = ["# Stages of `lite-moderation score` (JSONL in, JSONL out, --jobs 1)", "", f"`{report['command']}`", "",
           (f"{report['rows']:,} SYNTHETIC rows ({report['source']}), one .jsonl.gz. Machine: {m['cpus']} cores, "
            f"load average {m['load_average_before']} before, Python {m['python']}. Stages: CPU microseconds per "
            "row in-process; CLI: wall seconds of the whole subprocess (start-up included), medians."), ""]
    for model, entry in report["models"].items():
        out += [f"## {model}", "", "| stage | us/row |", "|---|---:|"]
        out += [f"| {name} | {value} |" for name, value in entry["stages_us_per_row"].items()]
        now, before = entry["cli_now"], entry["cli_before"]
        out += ["", "| CLI | wall s | rows/s | peak RSS MB |", "|---|---:|---:|---:|",
                f"| now | {now['wall_s']} | {now['rows_per_s']:,} | {now['peak_rss_mb']} |",
                f"| {report['commit']} | {before['wall_s']} | {before['rows_per_s']:,} | {before['peak_rss_mb']} |",
                "", f"Speed-up end to end: {entry['speedup']}x.", ""]
    return "\n".join(out)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
