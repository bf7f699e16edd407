"""Hostile input, round two (issue 22): files and runs that used to lose data, hang, or take all memory.

Each class of defect has its own test, with real files, the real CLI (a subprocess where signals, exit codes
or memory matter) and bounded waits, so a regression fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lite_moderation as lm

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
