"""Hostile input, round two (issue 22): files and runs that used to lose data, hang, or take all memory.

Each class of defect has its own test, with real files, the real CLI (a subprocess where signals, exit codes
or memory matter) and bounded waits, so a regression fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import synthetic_records, write_jsonl

import lite_moderation as lm
from lite_moderation.cli import main

ROW = b'{"prompt": "q", "response": "garden river kitchen"}\n'
GUARD = 120  # seconds: a run that does not end by then has hung


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lite_moderation", *args]


def _dead_pid() -> int:
    """The pid of a process that has ended (pids are not reused this fast)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------------------ stale temps


def _user_files_beside(target: Path) -> dict[Path, bytes | None]:
    """Files and directories a user may keep beside an output, named like the temps of a dead process."""
    pid = _dead_pid()
    made: dict[Path, bytes | None] = {}
    for name, body in ((f".{target.name}.{pid}.notes", b"my notes"),
                       (f".{target.name}.{pid}.0123456789abcdef.tmp", b"looks like a temp, is not"),
                       (f".{target.name}.{pid}.tmp", b"also mine")):
        (target.parent / name).write_bytes(body)
        made[target.parent / name] = body
    folder = target.parent / f".{target.name}.{pid}.backup"
    folder.mkdir()
    (folder / "model.json").write_bytes(b"{}")  # even with a model's file names inside
    made[folder] = None
    return made


def _still_there(made: dict[Path, bytes | None]) -> None:
    for path, body in made.items():
        assert path.exists(), f"{path.name} was deleted"
        if body is not None:
            assert path.read_bytes() == body


def test_score_never_deletes_user_files_named_like_stale_temps(tiny_model_dir, tmp_path):
    out = tmp_path / "scores.jsonl"
    made = _user_files_beside(out)
    data = tmp_path / "in.jsonl"
    data.write_bytes(ROW * 3)
    done = subprocess.run(_cli("score", "--model", str(tiny_model_dir), "-i", str(data), "-o", str(out), "-q"),
                          capture_output=True, timeout=GUARD, check=False)
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 3
    _still_there(made)


def test_a_copy_of_a_killed_runs_temp_is_kept_and_the_temp_itself_removed(tiny_model_dir, tmp_path):
    """The signed name is bound to the temp's own inode: a user's copy under the same name is not ours."""
    out = tmp_path / "scores.jsonl"
    data = tmp_path / "in.jsonl"
    data.write_bytes(ROW * 3)
    proc = subprocess.Popen(_cli("score", "--model", str(tiny_model_dir), "-i", "-", "--input-format", "jsonl",
                                 "-o", str(out), "-q"), stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(ROW * 10)
    proc.stdin.flush()
    temps = _wait_for(lambda: sorted(tmp_path.glob(".scores.jsonl.*")), proc)
    proc.kill()
    proc.communicate(timeout=GUARD)
    [temp] = temps
    copy = tmp_path / "copy"
    copy.write_bytes(b"the user's own file")
    killed_temp_name = temp.name
    temp.unlink()
    os.rename(copy, tmp_path / killed_temp_name)  # same name, another inode
    done = subprocess.run(_cli("score", "--model", str(tiny_model_dir), "-i", str(data), "-o", str(out), "-q"),
                          capture_output=True, timeout=GUARD, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / killed_temp_name).read_bytes() == b"the user's own file"


def test_save_never_deletes_user_directories_named_like_stale_temps(tiny_model_dir, tmp_path):
    target = tmp_path / "model"
    made = _user_files_beside(target)
    lm.save(lm.load(tiny_model_dir), target)
    assert lm.load(target) is not None
    _still_there(made)


def _wait_for(found, proc: subprocess.Popen, limit: int = 600):
    """Poll ``found()`` until it is truthy or ``proc`` ends (at most ``limit`` tries: bounded, never a hang)."""
    for _ in range(limit):
        value = found()
        if value or proc.poll() is not None:
            return value
        time.sleep(0.1)
    return found()


# ------------------------------------------------------------------------------------------ dead workers


def _children(pid: int) -> list[int]:
    """Pids of ``pid``'s child processes (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _parallel_run(model: Path, out: Path) -> tuple[subprocess.Popen, list[int]]:
    """``score --jobs 2`` reading stdin, with its worker processes started (they exist once a chunk is sent)."""
    proc = subprocess.Popen(_cli("score", "--model", str(model), "-i", "-", "--input-format", "jsonl",
                                 "-o", str(out), "-q", "--jobs", "2"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(ROW * 3000)  # more than one chunk: the pool starts
    proc.stdin.flush()
    workers = _wait_for(lambda: _children(proc.pid) if len(_children(proc.pid)) >= 2 else [], proc)
    assert workers, proc.communicate(timeout=GUARD)[1]
    return proc, workers


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds worker processes through /proc")
def test_a_killed_worker_ends_the_run_with_a_message_not_a_hang(tiny_model_dir, tmp_path):
    out = tmp_path / "scores.jsonl"
    proc, workers = _parallel_run(tiny_model_dir, out)
    os.kill(workers[0], signal.SIGKILL)  # as the out-of-memory killer does
    with contextlib.suppress(BrokenPipeError):  # it may have stopped reading already
        proc.stdin.write(ROW * 3000)
        proc.stdin.close()
    _, stderr = proc.communicate(timeout=GUARD)
    assert proc.returncode == 2, stderr
    assert b"worker process died" in stderr and b"Traceback" not in stderr, stderr
    assert not out.exists() and sorted(tmp_path.glob(".scores.jsonl.*")) == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds worker processes through /proc")
def test_sigterm_stops_a_parallel_run_and_its_workers(tiny_model_dir, tmp_path):
    out = tmp_path / "scores.jsonl"
    proc, workers = _parallel_run(tiny_model_dir, out)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=GUARD)
    assert proc.returncode == 143, stderr
    assert not out.exists()
    alive = _wait_for(lambda: [pid for pid in workers if Path(f"/proc/{pid}").exists()] or None, proc, 0)
    assert not alive, "the workers outlived the run"


# ------------------------------------------------------------------------------------------ record size bound

#: Runs the CLI on stdin fed from a generator of chunks, then prints the child's peak RSS in kB (Linux).
_RSS_PROBE = """
import resource, subprocess, sys
proc = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
chunk = b"a" * (1 << 20)
try:
    for _ in range(int(sys.argv[1])):
        proc.stdin.write(chunk)
    proc.stdin.write(b"\\n" + b'{"text": "garden river"}\\n')
    proc.stdin.close()
except BrokenPipeError:
    pass
err = proc.stderr.read()
code = proc.wait()
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.stderr.buffer.write(err)
"""


def _peak_rss_kb(model: Path, megabytes: int, limit: int) -> tuple[int, int, str]:
    command = _cli("score", "--model", str(model), "-i", "-", "--input-format", "jsonl", "-q",
                   "--max-record-bytes", str(limit))
    done = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(megabytes), *command], capture_output=True,
                          timeout=GUARD, check=False)
    code, rss = done.stdout.split()
    return int(code), int(rss), done.stderr.decode()


def test_a_50_mb_line_is_skipped_in_bounded_memory_and_the_next_row_scored(tiny_model_dir):
    code, small_rss, _ = _peak_rss_kb(tiny_model_dir, 0, 100_000)
    assert code == 0
    code, big_rss, stderr = _peak_rss_kb(tiny_model_dir, 50, 100_000)
    assert code == 0, stderr
    assert "<stdin>:1: line is longer than the record limit (52428801 bytes, the limit is 100000)" in stderr
    assert "rows in: 2, scored: 1, skipped: 1" in stderr
    assert big_rss - small_rss < 20_000, (small_rss, big_rss)  # kB: the 50 MB line is never held


def test_a_newline_free_gzip_bomb_is_one_skipped_row(runner, tiny_model_dir, tmp_path):
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb") as fh:
        for _ in range(20):
            fh.write(b"\0" * (1 << 20))
        fh.write(b'\n{"text": "garden river"}\n')
    assert bomb.stat().st_size < 100_000
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(bomb), "-q",
                                  "--max-record-bytes", "4096"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["line"] for line in result.stdout.splitlines()] == [2]
    assert "bomb.jsonl.gz:1: line is longer than the record limit (20971521 bytes" in result.stderr


def test_blank_lines_before_the_first_record_are_not_buffered(tiny_model_dir, tmp_path):
    """Sniffing stdin's format kept every leading blank line (a 97 KB gzip took 4 GB)."""
    blank = tmp_path / "blank.gz"
    with gzip.open(blank, "wb") as fh:
        fh.write(b"\n" * 3_000_000 + b'{"text": "garden river"}\n')
    probe = ("import resource, subprocess, sys\n"
             "done = subprocess.run(sys.argv[2:], stdin=open(sys.argv[1], 'rb'), capture_output=True)\n"
             "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    command = _cli("score", "--model", str(tiny_model_dir), "-i", "-", "-q")
    done = subprocess.run([sys.executable, "-c", probe, str(blank), *command], capture_output=True, timeout=GUARD,
                          check=False)
    code, rss = map(int, done.stdout.split())
    assert code == 0, done.stderr
    assert rss < 200_000, rss  # kB: 77 MB; buffered, the 3 million blank lines took 378 MB


def test_the_record_limit_applies_to_training_and_csv_rows(runner, tmp_path):
    rows = synthetic_records(60)
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    with path.open("a") as fh:
        fh.write(json.dumps({**rows[0], "response": "x" * 5000}) + "\n")
    result = runner.invoke(main, ["cv", "--data", str(path), "--folds", "2", "--max-record-bytes", "4000", "-q"])
    assert result.exit_code == 2 and "train.jsonl:61: line is longer than the record limit" in result.stderr
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("text\nfirst\n" + "y" * 5000 + "\nlast\n")
    errors: list = []
    records = list(lm.read_records(csv_path, on_error="skip", errors=errors, max_record_bytes=1000))
    assert [r.line for r in records] == [2, 4] and [e.line for e in errors] == [3]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [
    ["score", "garden river", "-o", "/dev/full"],
    ["explain", "garden river", "-o", "/dev/full", "--format", "json"],
    ["evaluate", "--data", "{data}", "--json", "/dev/full", "--bootstrap", "0"],
    ["evaluate", "--data", "{data}", "--json", "{tmp}/m.json", "--predictions", "/dev/full", "--bootstrap", "0"],
], ids=["score", "explain", "evaluate --json", "evaluate --predictions"])
def test_a_write_error_names_the_output(runner, tiny_model_dir, tiny_eval_data, tmp_path, args):
    """A full disk printed only "No space left on device": which of a command's outputs? (a user's round)"""
    args = [a.format(data=tiny_eval_data, tmp=tmp_path) for a in args]
    result = runner.invoke(main, [*args, "--model", str(tiny_model_dir), "-q"])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == "Error: /dev/full: No space left on device"


def test_a_write_error_on_a_regular_file_names_it_keeps_the_old_one_and_leaves_no_temp(tiny_model_dir, tmp_path):
    """The same through the temp file an output is written to (here a file-size limit: EFBIG, as ENOSPC)."""
    data = tmp_path / "in.jsonl"
    data.write_bytes(ROW * 3000)
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    probe = ("import resource, runpy, sys\n"
             "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
             "sys.argv[0] = 'lite-moderation'\n"
             "runpy.run_module('lite_moderation', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", probe, "score", "--model", str(tiny_model_dir), "-i", str(data),
                           "-o", str(out), "-q"], capture_output=True, text=True, timeout=GUARD, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == f"Error: {out}: File too large"
    assert out.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


# ------------------------------------------------------------------------------------------ malformed JSON

NESTED = "[" * 100_000 + "]" * 100_000
LONG_INTEGER = "7" * 5000


def test_a_deeply_nested_or_long_number_row_is_one_skipped_row(tiny_model_dir, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "garden"}\n' + NESTED + "\n" + '{"text": "x", "n": ' + LONG_INTEGER + "}\n"
                    + '{"text": "river"}\n')
    done = subprocess.run(_cli("score", "--model", str(tiny_model_dir), "-i", str(path), "-q"),
                          capture_output=True, timeout=GUARD, check=False)
    assert done.returncode == 0, done.stderr  # not 1, the "flagged" code, which a RecursionError traceback gave
    assert [json.loads(line)["line"] for line in done.stdout.splitlines()] == [1, 4]
    stderr = done.stderr.decode()
    assert "in.jsonl:2: not valid JSON: nested too deeply" in stderr
    assert "in.jsonl:3: not valid JSON: Exceeds the limit (4300 digits)" in stderr
    assert "Traceback" not in stderr and "set_int_max_str_digits" not in stderr


@pytest.mark.parametrize("body, what", [(NESTED, "nested too deeply"),
                                        ('[{"text": "a", "n": ' + LONG_INTEGER + "}]", "4300 digits")])
def test_a_hostile_json_file_is_one_line_and_exit_2(runner, tiny_model_dir, tmp_path, body, what):
    path = tmp_path / "in.json"
    path.write_text(body)
    result = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "-i", str(path), "-q"])
    assert result.exit_code == 2 and "in.json: not valid JSON: " in result.stderr and what in result.stderr


def test_a_hostile_csv_category_cell_is_one_bad_row(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('prompt,response,category\nq,a,"' + NESTED + '"\nq,b,\n')
    errors: list = []
    records = list(lm.read_records(path, on_error="skip", errors=errors))
    assert [r.line for r in records] == [3] and "nested too deeply" in str(errors[0])


@pytest.mark.parametrize("score, what", [("9" * 401, "expected a finite number"), (NESTED, "nested too deeply"),
                                         (LONG_INTEGER, "4300 digits")])
def test_compare_refuses_a_hostile_score_with_its_line(runner, tmp_path, score, what):
    data = write_jsonl(tmp_path / "data.jsonl", [{"prompt": "p", "response": "r", "is_safe": True}])
    system = tmp_path / "sys.jsonl"
    system.write_text('{"row": 0, "score": ' + score + "}\n")
    result = runner.invoke(main, ["compare", "--data", str(data), "--system", f"a={system}"])
    assert result.exit_code == 2, result.output
    assert "sys.jsonl:1:" in result.stderr and what in result.stderr and len(result.stderr) < 600


# ------------------------------------------------------------------------------------------ numbers of training


@pytest.mark.parametrize("command", ["train", "cv"])
@pytest.mark.parametrize("extra, what", [
    (["--data", "{data},weight=1e308"], "weight must be a number above 0 and at most"),
    (["--data", "{data},weight=nan"], "weight must be a number above 0"),
    (["--threshold-shrinkage", "nan"], "'nan' is not a finite number"),
    (["--C", "inf"], "'inf' is not a finite number"),
    (["--word-ngrams", "1,9"], "expected 1 <= low <= high <= 8"),  # what a model file may declare (memory)
    (["--char-ngrams", "2,64"], "expected 1 <= low <= high <= 8"),
])
def test_extreme_numbers_are_refused_before_training(runner, tiny_data, tmp_path, command, extra, what):
    out = ["--output", str(tmp_path / "model")] if command == "train" else []
    args = [command, "--data", str(tiny_data), *[a.format(data=tiny_data) for a in extra], *out, "-q"]
    result = runner.invoke(main, args)
    assert result.exit_code == 2 and what in result.stderr, result.output
    assert not (tmp_path / "model").exists()


def test_an_ngram_range_a_model_file_may_not_declare_is_not_fitted(tiny_data):
    """QAVectorizer(char_ngram_range=(1, 64)) was fitted (and its model saved) though a model file may not declare it."""
    dataset = lm.load_dataset(tiny_data, require="categories")
    with pytest.raises(ValueError, match="char_ngram_range must be two whole numbers 1 <= low <= high <= 8"):
        lm.QAVectorizer(char_ngram_range=(1, 64)).fit(dataset.pairs)


def test_a_fit_the_loader_would_refuse_is_never_saved_or_reported(tiny_data):
    """The Python API has no click types: the fit itself is checked (a NaN shrinkage gave NaN thresholds), by the
    loader's rule of the parameter."""
    dataset = lm.load_dataset(tiny_data, require="categories")
    estimator = lm.default_estimator(char_fields=(), min_df=1, threshold_folds=2, threshold_shrinkage=float("nan"))
    refused = "threshold_shrinkage must be a number, 0 or above, got nan"
    with pytest.raises(ValueError, match=refused):
        lm.train(dataset, estimator)
    with pytest.raises(ValueError, match=refused):
        lm.cross_validate(dataset, 2, estimator=estimator)


# ------------------------------------------------------------------------------------------ CV leak


def _random_labels(n: int = 160, seed: int = 5) -> list[dict]:
    """Rows whose labels are coin flips: no honest model does better than chance on them."""
    import random

    from lite_moderation.taxonomy import CATEGORIES

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        flags = [False] * len(CATEGORIES)
        if rng.random() < 0.5:
            flags[rng.randrange(len(CATEGORIES))] = True
        words = " ".join(rng.choice(["garden", "river", "music", "chess", "cooking", "planet"]) for _ in range(8))
        rows.append({"prompt": f"question {i % 60} about things", "response": f"{words} w{i}",
                     "category": dict(zip(CATEGORIES, flags)), "is_safe": not any(flags)})
    return rows


def test_a_second_source_repeating_the_first_does_not_leak_into_cv(runner, tmp_path):
    rows = _random_labels()
    first = write_jsonl(tmp_path / "first.jsonl", rows)
    copy = write_jsonl(tmp_path / "copy.jsonl", [{**r, "prompt": "  " + r["prompt"].upper()} for r in rows])
    recipe = ["--folds", "3", "--char-ngrams", "none", "--min-df", "1", "--threshold-folds", "2", "--bootstrap", "0",
              "-q", "--json", "-"]
    auroc = {}
    for name, extra in (("alone", []), ("same file", ["--data", str(first)]), ("copy", ["--data", str(copy)])):
        result = runner.invoke(main, ["cv", "--data", str(first), *extra, *recipe])
        assert result.exit_code == 0, result.output
        auroc[name] = json.loads(result.stdout)["unsafe"]["auroc"]
    assert auroc["alone"] < 0.7, auroc  # coin flips
    assert auroc["same file"] < 0.7 and auroc["copy"] < 0.7, auroc  # were 1.00: the copies were trained on
