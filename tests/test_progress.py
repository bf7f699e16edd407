"""Progress on stderr (click's bar): silent for tiny inputs, erased when done, never cutting into a table."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from conftest import read_terminal, synthetic_records, write_jsonl

from lite_moderation.cli import main

#: The real command, in a subprocess, with the bar allowed at once (no waiting for it: no timing in tests).
_NO_DELAY = ("import lite_moderation.progress as p; p.DELAY = 0; p.LOG_INTERVAL = 0; "
             "from lite_moderation.cli import main; main(prog_name='lite-moderation')")
_DEFAULT = "from lite_moderation.cli import main; main(prog_name='lite-moderation')"


def _run_on_terminal(args: list[str], code: str = _DEFAULT, cwd: Path | None = None) -> str:
    """The command's stdout and stderr as a terminal shows them (both on one pseudo-terminal)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.DEVNULL, stdout=follower,
                            stderr=follower, cwd=cwd)
    os.close(follower)
    out = read_terminal(leader, 300)
    assert proc.wait(timeout=300) == 0, out.decode(errors="replace")
    return out.decode()


def _rows(tmp_path: Path, n: int) -> Path:
    return write_jsonl(tmp_path / "rows.jsonl", [{"prompt": r["prompt"], "response": r["response"]}
                                                 for r in synthetic_records(n, seed=3)])


def test_score_table_on_a_terminal_is_not_cut_by_a_progress_line(tiny_model_dir, tmp_path):
    # Even with the bar allowed at once, rows printed on the terminal are the progress: no bar cuts into them.
    screen = _run_on_terminal(["score", "--input", str(_rows(tmp_path, 300)), "--model", str(tiny_model_dir)],
                              code=_NO_DELAY)
    lines = screen.replace("\r\n", "\n").split("\n")
    table = [line for line in lines if "unsafe" in line and "rows in" not in line]
    assert len(table) == 300
    assert all(re.fullmatch(r" *line \d+  (FLAGGED|ok     )  unsafe \d\.\d{3}  .*", line) for line in table), table[:3]
    assert "scoring" not in screen and "\r" not in screen.replace("\r\n", "")


def test_tiny_input_shows_no_bar_on_a_terminal(tiny_model_dir, tmp_path):
    out = tmp_path / "scores.jsonl"
    screen = _run_on_terminal(["score", "--input", str(_rows(tmp_path, 3)), "--output", str(out),
                               "--model", str(tiny_model_dir)], code=_NO_DELAY)
    assert "scoring" not in screen and "\x1b" not in screen
    assert screen.replace("\r\n", "\n") == "rows in: 3, scored: 3, skipped: 0, flagged: {}\n".format(
        sum(row.count('"flagged": true') for row in out.read_text().splitlines()))


def _assert_bar_erased_before(screen: str, label: str, next_line: str) -> None:
    assert f"{label} [" in screen
    erased = screen.rindex("\r\x1b[2K")
    assert screen.rindex(f"{label} [") < erased < screen.index(next_line)
    assert screen[erased:screen.index(next_line)] == "\r\x1b[2K\x1b[?25h"  # nothing left of the bar


def test_score_bar_on_a_terminal_is_erased_when_done(tiny_model_dir, tmp_path):
    out = tmp_path / "scores.jsonl"
    screen = _run_on_terminal(["score", "--input", str(_rows(tmp_path, 300)), "--output", str(out),
                               "--model", str(tiny_model_dir)], code=_NO_DELAY)
    _assert_bar_erased_before(screen, "scoring", "rows in: 300")
    assert len(out.read_text().splitlines()) == 300


def test_train_bar_on_a_terminal_is_erased_before_the_summary(tiny_data, tmp_path):
    screen = _run_on_terminal(["train", "--data", str(tiny_data), "--output", str(tmp_path / "m"),
                               "--char-ngrams", "none", "--min-df", "1", "--threshold-folds", "2"], code=_NO_DELAY)
    _assert_bar_erased_before(screen, "training", "saved model to")
    assert "/45  fits" in screen  # 15 labels x (2 folds + the final fit)


def test_without_a_terminal_long_work_logs_plain_lines(tiny_data, tmp_path):
    proc = subprocess.run([sys.executable, "-c", _NO_DELAY, "train", "--data", str(tiny_data), "--output",
                           str(tmp_path / "m"), "--char-ngrams", "none", "--min-df", "1", "--threshold-folds", "0"],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    assert "training: 15/15 fits" in proc.stderr.splitlines()[-2]


def test_without_a_terminal_short_work_is_silent(runner, tiny_model_dir, tiny_data, tmp_path):
    result = runner.invoke(main, ["score", "--input", str(_rows(tmp_path, 3)), "--output", str(tmp_path / "s.jsonl"),
                                  "--model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("rows in: 3,")
    result = runner.invoke(main, ["cv", "--data", str(tiny_data), "--folds", "2", "--char-ngrams", "none",
                                  "--min-df", "1", "--threshold-folds", "0"])
    assert result.exit_code == 0, result.output
    assert "cross-validation" not in result.stderr and "training" not in result.stderr
