"""Check that the fast scorer gives today's scores: every row of every shared data set, both shipped models.

Loads the fast path of a given git commit (default 1ba1bba, before the issue #13 rewrite) into a temporary
module of the package and compares its log-odds with the current FastScorer's, batch and single request,
and with the scikit-learn reference path. Writes benchmarks/results/fast_check.json and prints the maxima::

    python benchmarks/check_fast.py            # about 1-2 minutes
    python benchmarks/check_fast.py --commit 1ba1bba --single-every 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, ROOT, SHARED_DATA, write_text

import lite_moderation as lm
from lite_moderation.normalize import normalized
from lite_moderation.persistence import SHIPPED_MODELS

MODELS = ("default", "fast")


def old_fast_module(commit: str) -> object:
    """``lite_moderation/fast.py`` of ``commit`` as a module of the package (its relative imports resolve)."""
    source = subprocess.run(["git", "show", f"{commit}:lite_moderation/fast.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    name = f"lite_moderation._fast_{commit}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "lite_moderation"
    sys.modules[name] = module
    exec(compile(source, f"{commit}:lite_moderation/fast.py", "exec"), module.__dict__)  # noqa: S102 - our own code
    return module


def shared_sets() -> list[Path]:
    return sorted(SHARED_DATA.rglob("*.jsonl"))


def items_of(path: Path) -> list:
    """What a data file holds, as the scorer reads it: pairs, prompts alone or texts alone (blank fields kept
    as the shape they give: a blank response = a prompt alone)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    items = []
    for row in rows:
        prompt, response = row.get("prompt", "") or "", row.get("response", row.get("text", "")) or ""
        if not prompt.strip() and not response.strip():
            continue
        items.append((prompt, response))
    return items


def _normalized(item: str | tuple[str, str], form: str | None) -> str | tuple[str, str]:
    """An item as the model reads it: the commit compared with predates text normalisation (normalize.py)."""
    return normalized(item, form) if isinstance(item, str) else tuple(normalized(text, form) for text in item)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default="1ba1bba")
    parser.add_argument("--single-every", type=int, default=1, help="check every k-th row one request at a time")
    parser.add_argument("--out", type=Path, default=RESULTS / "fast_check.json")
    args = parser.parse_args()
    old = old_fast_module(args.commit)
    report = {"command": "python benchmarks/check_fast.py" + "".join(f" {a}" for a in sys.argv[1:]),
              "commit": args.commit, "models": {}}
    started = time.perf_counter()
    for name in MODELS:
        model = lm.load(SHIPPED_MODELS[name])
        new = lm.load_scorer(SHIPPED_MODELS[name])
        before = old.FastScorer.from_model(model)
        sets = {}
        for path in shared_sets():
            items = items_of(path)
            shapes = [items, [p for p, _ in items if p.strip()], [r for _, r in items if r.strip()],
                      [(p, "") for p, _ in items if p.strip()], [("", r) for _, r in items if r.strip()]]
            worst = {"vs_commit_batch": 0.0, "vs_commit_single": 0.0, "vs_sklearn": 0.0}
            for shape in shapes:
                if not shape:
                    continue
                got = new.decision_function(shape)
                read = [_normalized(item, model.vectorizer_.normalize) for item in shape]  # the commit's input
                worst["vs_commit_batch"] = max(worst["vs_commit_batch"],
                                               float(np.abs(got - before.decision_function(read)).max()))
                worst["vs_sklearn"] = max(worst["vs_sklearn"],
                                          float(np.abs(got - model.reference_decision_function(shape)).max()))
                singles = shape[::args.single_every]
                one = np.vstack([new.decision_function([item]) for item in singles])
                worst["vs_commit_single"] = max(worst["vs_commit_single"], float(
                    np.abs(one - before.decision_function(read[::args.single_every])).max()))
            sets[str(path.relative_to(SHARED_DATA))] = {"rows": len(items), **worst}
            print(name, path.relative_to(SHARED_DATA), len(items), worst, flush=True)
        report["models"][name] = {"sets": sets, "max": {k: max(s[k] for s in sets.values()) for k in worst}}
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(report, indent=2) + "\n")
    for name, block in report["models"].items():
        print(name, "max |difference| of log-odds:", block["max"])
    ok = all(b["max"]["vs_commit_batch"] <= 1e-12 and b["max"]["vs_commit_single"] <= 1e-12
             and b["max"]["vs_sklearn"] <= 1e-9 for b in report["models"].values())
    print("OK" if ok else "FAILED: a difference above 1e-12 (vs the commit) or 1e-9 (vs scikit-learn)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
