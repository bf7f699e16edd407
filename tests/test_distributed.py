"""Scoring on Dask: a real LocalCluster of 2 worker processes on 127.0.0.1, real files, the real CLI.

Every distributed output is compared with the single-process scorer (``score_file``) row for row.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import dask
import dask.bag as db
import dask.dataframe as dd
import pandas as pd
import pytest
from conftest import synthetic_records, write_jsonl
from distributed import Client, Event, LocalCluster

import lite_moderation as lm
from lite_moderation import distributed as dist
from lite_moderation.cli import main
from lite_moderation.data import Columns, DataError
from lite_moderation.output import OutputError
from lite_moderation.scoring import WorkerDiedError, score_file
from lite_moderation.taxonomy import CATEGORIES, short_name

# A file with bad rows: invalid JSON, empty text, a number as prompt, a record without text, invalid UTF-8.
MALFORMED = (
    b'{"prompt": "tell me about the garden please", "response": "marker1 marker1 the river"}\n'
    b"this is not json\n"
    b'{"text": "   "}\n'
    b'{"prompt": 3, "response": "x"}\n'
    b'{"response": "no prompt"}\n'
    b'{"text": "bad byte \xff here"}\n'
    b'{"text": "a plain text about chess"}\n'
)


@pytest.fixture(scope="module")
def client() -> Client:
    """One cluster for the module: 2 worker processes, 1 thread each, on 127.0.0.1."""
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                      scheduler_kwargs=dist.LOCAL_SCHEDULER_OPTIONS) as cluster, Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Several small files in the formats a corpus has: JSONL, gzipped JSONL, CSV, text, and one with bad rows."""
    root = tmp_path_factory.mktemp("corpus")
    write_jsonl(root / "part-0.jsonl", synthetic_records(300, seed=10))
    records = synthetic_records(250, seed=11)
    (root / "part-1.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
    rows = synthetic_records(120, seed=12)
    (root / "part-2.csv").write_text("prompt,response\n" + "".join(f"{r['prompt']},{r['response']}\n" for r in rows))
    (root / "part-3.txt").write_text("".join(r["response"] + "\n" for r in synthetic_records(80, seed=13)))
    (root / "part-4.jsonl").write_bytes(MALFORMED)
    return root


def _reference(model: lm.ModerationClassifier, input_path: Path, out_dir: Path) -> tuple[str, object]:
    """Output text and summary of the single-process scorer."""
    out = out_dir / (input_path.name + ".ref.jsonl")
    summary = score_file(model, input_path, out)
    return out.read_text(), summary


def _lines_of(path: Path) -> list[int]:
    return [json.loads(row)["line"] for row in path.read_text().splitlines()]


# --------------------------------------------------------------------------------------- corpus of files


def test_corpus_equals_single_process_scorer_row_for_row(client, corpus, tiny_model_dir, tmp_path):
    out_dir = tmp_path / "out"
    done = []
    summary = dist.score_corpus(str(corpus / "part-*"), out_dir, tiny_model_dir, client=client, on_file=done.append)
    model = lm.load(tiny_model_dir)
    inputs = sorted(corpus.glob("part-*"))
    assert [Path(f.input) for f in summary.files] == inputs  # summaries come back in input order
    assert sorted(f.input for f in done) == sorted(map(str, inputs))
    for input_path, file_summary in zip(inputs, summary.files):
        expected_text, expected = _reference(model, input_path, tmp_path)
        output = out_dir / Path(file_summary.output).name
        assert output == dist.output_path_for(input_path, out_dir)
        assert output.read_text() == expected_text
        assert (file_summary.rows_in, file_summary.scored, file_summary.rejected) == (
            expected.rows_in, expected.scored, expected.rejected)
        assert file_summary.rows_in == file_summary.scored + file_summary.rejected
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "part-0.scores.jsonl", "part-1.scores.jsonl", "part-2.scores.jsonl", "part-3.scores.jsonl",
        "part-4.scores.jsonl",
    ]
    assert summary.rows_in == summary.scored + summary.rejected == 300 + 250 + 120 + 80 + 7
    assert summary.rejected == 5 and not summary.failed
    assert _lines_of(out_dir / "part-4.scores.jsonl") == [1, 7]
    assert [e.line for e in summary.examples] == [2, 3, 4, 5, 6]
    assert summary.reasons["field 'text': text is empty"] == 1
    assert sum(summary.reasons.values()) == 5


def test_model_is_loaded_once_per_worker_process(client, corpus, tiny_model_dir, tmp_path):
    payload = dist.model_payload(tiny_model_dir)
    for run in range(2):
        dist.score_corpus(str(corpus / "part-*"), tmp_path / f"out{run}", payload, client=client)
    loads = client.run(lambda: dict(dist.LOAD_COUNTS))
    assert len(loads) == 2
    assert all(counts.get(payload.checksum, 0) <= 1 for counts in loads.values())
    assert sum(counts.get(payload.checksum, 0) for counts in loads.values()) >= 1


def test_fail_mode_raises_the_first_bad_row_through_the_cluster(client, corpus, tiny_model_dir, tmp_path):
    with pytest.raises(DataError) as info:
        dist.score_corpus([corpus / "part-4.jsonl"], tmp_path / "out", tiny_model_dir, client=client,
                          on_error="fail")
    assert info.value.line == 2 and info.value.path.endswith("part-4.jsonl")
    assert not list((tmp_path / "out").glob("*.jsonl"))


def test_unreadable_file_is_reported_and_the_others_are_written(client, corpus, tiny_model_dir, tmp_path):
    data = gzip.compress((corpus / "part-0.jsonl").read_bytes())
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    summary = dist.score_corpus([tmp_path / "cut.jsonl.gz", corpus / "part-2.csv"], tmp_path / "out",
                                tiny_model_dir, client=client)
    assert [f.error is not None for f in summary.files] == [True, False]
    assert "cannot read the file" in str(summary.failed[0].error)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["part-2.scores.jsonl"]
    assert summary.rows_in == summary.scored == 120


def test_inputs_that_would_share_an_output_file_are_refused(tmp_path, tiny_model_dir):
    write_jsonl(tmp_path / "a.jsonl", synthetic_records(3))
    write_jsonl(tmp_path / "a.json", synthetic_records(3))
    with pytest.raises(ValueError, match="would both write"):
        dist.score_files(str(tmp_path / "a.*"), tmp_path / "out", tiny_model_dir)
    with pytest.raises(DataError, match="no files match"):
        dist.score_files(str(tmp_path / "nothing-*.jsonl"), tmp_path / "out", tiny_model_dir)


def test_an_output_that_is_another_input_or_an_output_dir_that_is_a_file_is_refused(tmp_path, tiny_model_dir):
    write_jsonl(tmp_path / "a.jsonl", synthetic_records(3))
    write_jsonl(tmp_path / "a.scores.jsonl", synthetic_records(3))
    before = (tmp_path / "a.scores.jsonl").read_bytes()
    with pytest.raises(ValueError, match="also an input"):
        dist.score_files(str(tmp_path / "a*.jsonl"), tmp_path, tiny_model_dir)
    with pytest.raises(ValueError, match="is a file"):
        dist.score_files(str(tmp_path / "a.jsonl"), tmp_path / "a.scores.jsonl", tiny_model_dir)
    assert (tmp_path / "a.scores.jsonl").read_bytes() == before


# --------------------------------------------------------------------------------------- bags and frames


def test_bag_of_texts_pairs_and_dicts_gets_the_same_scores_lazily(client, tiny_model_dir):
    items = ["a text about the garden", ("tell me about chess", "marker2 marker2 marker5"),
             {"prompt": "tell me about music", "response": "marker7 marker7", "id": 3}, {"text": "marker0 river"}]
    items = items * 6
    bag = dist.score_bag(db.from_sequence(items, npartitions=4), tiny_model_dir)
    assert isinstance(bag, db.Bag)  # lazy: nothing computed yet
    rows = bag.compute()
    model = lm.load(tiny_model_dir)
    pairs = [i if isinstance(i, (str, tuple)) else (i["prompt"], i["response"]) if "prompt" in i else i["text"]
             for i in items]
    expected = model.moderate(pairs)
    assert len(rows) == len(items)
    for row, item, verdict in zip(rows, items, expected):
        assert {k: row[k] for k in verdict} == verdict
        if isinstance(item, dict):
            assert {k: row[k] for k in item} == item


def test_bad_bag_items_are_marked_in_place_or_raise(client, tiny_model_dir):
    items = ["fine text", "   ", 5, {"no": "text"}, ("a question", "an answer")]
    rows = dist.score_bag(db.from_sequence(items, npartitions=2), tiny_model_dir, on_error="mark").compute()
    assert ["error" in row for row in rows] == [False, True, True, True, False]
    assert "unsafe_score" in rows[0] and "unsafe_score" not in rows[1]
    with pytest.raises(DataError):
        dist.score_bag(db.from_sequence(items, npartitions=2), tiny_model_dir).compute()


def test_dataframe_gets_score_columns_equal_to_moderate(client, tiny_model_dir):
    records = synthetic_records(60, seed=20)
    frame = pd.DataFrame({"prompt": [r["prompt"] for r in records], "response": [r["response"] for r in records]})
    frame.loc[5, "response"] = None  # a missing response scores the prompt alone
    result = dist.score_dataframe(dd.from_pandas(frame, npartitions=3), tiny_model_dir)
    assert list(result.columns[:4]) == ["prompt", "response", "flagged", "unsafe_score"]
    computed = result.compute()
    pairs = [(p, r if isinstance(r, str) else "") for p, r in zip(frame["prompt"], frame["response"])]
    expected = lm.load(tiny_model_dir).moderate(pairs)
    assert computed["flagged"].tolist() == [v["flagged"] for v in expected]
    assert computed["unsafe_score"].tolist() == [v["unsafe_score"] for v in expected]
    for name in CATEGORIES:  # columns named by the short names: no commas in column names
        assert "," not in short_name(name)
        assert computed[f"{short_name(name)}_score"].tolist() == [v["category_scores"][name] for v in expected]


@pytest.mark.parametrize("entry", ["corpus", "bag", "dataframe"])
def test_the_shipped_model_reaches_the_workers_without_a_large_graph_warning(client, tmp_path, entry):
    """The shipped model's 15 MiB were embedded in every task graph: each run printed distributed's "UserWarning:
    Sending large graph of size 15.10 MiB" on stderr, among the command's own messages."""
    records = synthetic_records(30, seed=50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if entry == "corpus":
            summary = dist.score_corpus([write_jsonl(tmp_path / "a.jsonl", records)], tmp_path / "out", None,
                                        client=client)
            rows = summary.scored
        elif entry == "bag":
            rows = len(dist.score_bag(db.from_sequence(records, npartitions=2), None).compute())
        else:
            frame = pd.DataFrame({"prompt": [r["prompt"] for r in records], "response": [r["response"] for r in records]})
            rows = len(dist.score_dataframe(dd.from_pandas(frame, npartitions=2), None).compute())
    assert rows == 30
    assert [str(w.message) for w in caught if "large graph" in str(w.message)] == []


def test_graphs_computed_without_a_cluster_carry_the_model_themselves(client, corpus, tiny_model_dir, tmp_path):
    """Threads named by the config, although a client is current: ``.compute()`` runs here, where no worker plugin
    hands over the model, so the graph holds its bytes."""
    with dask.config.set(scheduler="threads"):
        tasks = dist.score_files([corpus / "part-0.jsonl"], tmp_path / "out", tiny_model_dir)
        bag = dist.score_bag(db.from_sequence(["a text about chess", "marker2 marker2"], npartitions=1),
                             tiny_model_dir)
        [summary], rows = dask.compute(tasks, bag)
    model = lm.load(tiny_model_dir)
    assert dist.output_path_for(corpus / "part-0.jsonl", tmp_path / "out").read_text() == _reference(
        model, corpus / "part-0.jsonl", tmp_path)[0]
    assert summary.scored == 300
    assert [row["unsafe_score"] for row in rows] == [
        v["unsafe_score"] for v in model.moderate(["a text about chess", "marker2 marker2"])]


# --------------------------------------------------------------------------------------------- the CLI


def test_cli_dask_engine_writes_one_file_per_input_and_a_summary(corpus, tiny_model_dir, tmp_path, runner, recwarn):
    out_dir = tmp_path / "scores"
    with socket.socket() as default_port:  # Dask's default HTTP port taken (as by another cluster): never needed
        with contextlib.suppress(OSError):  # already taken: as good
            default_port.bind(("127.0.0.1", 8787))
            default_port.listen(1)
        result = runner.invoke(main, ["score", "--engine", "dask", "--workers", "2", "--model", str(tiny_model_dir),
                                      "--input", str(corpus / "part-*"), "--output", str(out_dir)])
    assert result.exit_code == 0, result.output
    assert not [str(w.message) for w in recwarn if "already in use" in str(w.message)]
    model = lm.load(tiny_model_dir)
    for input_path in sorted(corpus.glob("part-*")):
        expected_text, _ = _reference(model, input_path, tmp_path)
        assert dist.output_path_for(input_path, out_dir).read_text() == expected_text
    assert "files: 5 (0 failed), rows in: 757, scored: 752, rejected: 5" in result.stderr
    assert "rejected: 1 x field 'text': text is empty" in result.stderr
    assert "skipped: " in result.stderr and "part-4.jsonl:2" in result.stderr
    assert result.stdout == ""


def test_cli_dask_engine_on_a_running_cluster_via_scheduler_address(client, corpus, tiny_model_dir, tmp_path,
                                                                     runner):
    address = client.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    result = runner.invoke(main, ["score", "--engine", "dask", "--scheduler", address, "--model", str(tiny_model_dir),
                                  "--input", str(corpus / "part-[01].*"), "--output", str(tmp_path / "out"),
                                  "--format", "csv", "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["part-0.scores.csv", "part-1.scores.csv"]
    model = lm.load(tiny_model_dir)
    expected = tmp_path / "ref.csv"
    score_file(model, corpus / "part-1.jsonl.gz", expected, fmt="csv")
    assert (tmp_path / "out" / "part-1.scores.csv").read_text() == expected.read_text()
    assert "files: 2 (0 failed), rows in: 550, scored: 550, rejected: 0" in result.stderr


def test_cli_dask_engine_reads_the_columns_the_user_names(client, tiny_model_dir, tmp_path, runner):
    """--text-column / --id-column reach every worker: the same rows as the single-process scorer."""
    folder = tmp_path / "own"
    folder.mkdir()
    for k, seed in enumerate((21, 22)):
        write_jsonl(folder / f"part-{k}.jsonl", [{"ref": f"r{seed}-{i}", "body": r["response"], "text": "decoy"}
                                                 for i, r in enumerate(synthetic_records(40, seed=seed))])
    (folder / "part-2.jsonl").write_text('{"ref": "x", "text": "no body here"}\n{"ref": "y", "body": "a chess game"}\n')
    result = runner.invoke(main, ["score", "--engine", "dask", "--scheduler", client.scheduler.address, "--model",
                                  str(tiny_model_dir), "--input", str(folder / "part-*"), "--output",
                                  str(tmp_path / "out"), "--text-column", "body", "--id-column", "ref", "--quiet"])
    assert result.exit_code == 0, result.output
    columns = Columns(text="body", id="ref")
    model = lm.load(tiny_model_dir)
    for input_path in sorted(folder.glob("part-*")):
        expected = tmp_path / "ref.jsonl"
        score_file(model, input_path, expected, columns=columns)
        assert dist.output_path_for(input_path, tmp_path / "out").read_text() == expected.read_text()
    rows = [json.loads(line) for line in dist.output_path_for(folder / "part-2.jsonl", tmp_path / "out").open()]
    assert [(row["id"], row["line"]) for row in rows] == [("y", 2)]  # the row without the named column: reported
    assert "rows in: 82, scored: 81, rejected: 1" in result.stderr


def _one_file_corpus(tmp_path: Path, body: str) -> Path:
    """A corpus folder holding one file, x.jsonl, of ``body``."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x.jsonl").write_text(body)
    return folder


def _dask_score(runner, client, model_dir: Path, folder: Path, out: Path, *options: str):
    """``score --engine dask`` on the folder's .jsonl files, on the test cluster."""
    return runner.invoke(main, ["score", "--engine", "dask", "--scheduler", client.scheduler.address, "--model",
                                str(model_dir), "--input", str(folder / "*.jsonl"), "--output", str(out), *options])


def test_cli_dask_engine_that_scores_no_row_exits_2_as_local_score(client, tiny_model_dir, tmp_path, runner):
    """A wrong --text-column over a whole corpus looked like success: exit 0, and "-> None" for the file."""
    folder = _one_file_corpus(tmp_path, '{"body": "hello"}\n{"body": "world"}\n')
    result = _dask_score(runner, client, tiny_model_dir, folder, tmp_path / "out")
    local = runner.invoke(main, ["score", "--model", str(tiny_model_dir), "--input", str(folder / "x.jsonl"),
                                 "--output", str(tmp_path / "x.scores.jsonl")])
    for run in (result, local):
        assert run.exit_code == 2, run.output
        assert "no row could be scored (all 2 skipped" in run.stderr and "Name the text field with --text-column" \
            in run.stderr.splitlines()[-1]
    assert "x.jsonl: rows in 2, scored 0, rejected 2, flagged 0 -> no output file" in result.stderr
    assert "None" not in result.stderr and list((tmp_path / "out").iterdir()) == []


def test_cli_dask_engine_reports_label_warnings_as_local_score(client, tiny_model_dir, tmp_path, runner):
    folder = _one_file_corpus(tmp_path, '{"text": "hello", "is_safe": "maybe"}\n{"text": "a chess game"}\n')
    result = _dask_score(runner, client, tiny_model_dir, folder, tmp_path / "out", "--quiet")
    assert result.exit_code == 0, result.output
    assert "warning: " in result.stderr and "x.jsonl:1: field 'is_safe'" in result.stderr
    assert re.search(r"scored: 2, rejected: 0, flagged: \d, label warnings: 1", result.stderr)


def test_an_output_directory_that_cannot_be_written_is_refused_before_any_work(tiny_model_dir, corpus):
    """It was found by the workers once scoring had started, with their tracebacks on stderr."""
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc, where no one may create files")
    with pytest.raises(OutputError, match="/proc/self/dk: cannot write the score files there"):
        dist.score_files(str(corpus / "part-0.*"), "/proc/self/dk", tiny_model_dir)  # lazy: nothing computed
    done = subprocess.run(_cli("score", "--engine", "dask", "--workers", "1", "--model", str(tiny_model_dir), "-i",
                               str(corpus / "part-0.*"), "-o", "/proc/self/dk", "-q"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "/proc/self/dk: cannot write the score files there" in done.stderr


def test_a_failed_file_is_one_line_without_worker_tracebacks(tiny_model_dir, tmp_path):
    """--on-error fail printed "distributed.worker - ERROR - Compute Failed ... Traceback", even with -q."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x.jsonl").write_text('{"text": "hello"}\nnot json\n')
    done = subprocess.run(_cli("score", "--engine", "dask", "--workers", "1", "--model", str(tiny_model_dir), "-i",
                               str(folder / "*.jsonl"), "-o", str(tmp_path / "out"), "--on-error", "fail", "-q"),
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "x.jsonl:2: not valid JSON" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [
    ["--workers", "2", "some text"],
    ["--engine", "dask", "some text"],
    ["--engine", "dask", "--input", "x*.jsonl"],
    ["--engine", "dask", "--input", "x*.jsonl", "--output", "o", "--format", "table"],
    ["--engine", "dask", "--input", "x*.jsonl", "--output", "o", "--workers", "2", "--scheduler", "tcp://h:1"],
])
def test_cli_dask_engine_usage_errors(runner, args):
    result = runner.invoke(main, ["score", *args])
    assert result.exit_code == 2, result.output


def test_cli_without_dask_installed_says_how_to_get_it(tmp_path):
    code = (
        "import sys; sys.modules['dask'] = None; sys.modules['distributed'] = None\n"
        "import lite_moderation.cli, lite_moderation.distributed\n"
        "lite_moderation.cli.main(['score', '--engine', 'dask', '--input', 'x*', '--output', 'o'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          check=False)
    assert done.returncode == 2
    assert "pip install 'lite-moderation[dask]'" in done.stderr


def test_importing_the_cli_does_not_import_dask():
    code = "import sys, lite_moderation.cli, lite_moderation.distributed; print('dask' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------- failures


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lite_moderation", *args]


#: Reset SIGINT to its default, then exec (a harness run in the background of a script passes SIGINT ignored).
SIGINT_DEFAULT_EXEC = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                       "os.execv(sys.argv[1], sys.argv[1:])")


def _writer_of(fifo: Path, proc: subprocess.Popen | threading.Thread) -> int:
    """The write end of ``fifo``, once a worker opened it to read (polls: no timing assumption); ``proc`` runs the
    command (or the library call) whose worker that is: once it has ended, none will."""
    running = proc.is_alive if isinstance(proc, threading.Thread) else lambda: proc.poll() is None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and running():
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # no reader yet
                raise
            time.sleep(0.05)
            continue
        os.set_blocking(fd, True)
        return fd
    said = "" if isinstance(proc, threading.Thread) else proc.communicate()[1]
    raise AssertionError(f"no worker opened the input: {said}")


@pytest.mark.parametrize(("signum", "group", "code", "said"), [
    (signal.SIGINT, True, 130, "interrupted"),  # Ctrl-C: the whole process group, workers included
    (signal.SIGTERM, False, 143, "terminated"),  # the command alone: its cluster stops the workers
])
def test_a_signal_to_a_dask_run_leaves_no_temp_file_and_its_exit_code(tiny_model_dir, tmp_path, signum, group, code,
                                                                      said):
    """A worker writing its temp file (it waits on a FIFO for more rows) when the signal comes: the temps were left,
    hidden, until the next run to the same directory."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    fifo = folder / "a.jsonl"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_DEFAULT_EXEC, *_cli(
        "score", "--engine", "dask", "--workers", "1", "--model", str(tiny_model_dir), "-i", str(folder / "*.jsonl"),
        "-o", str(out))], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    writer = _writer_of(fifo, proc)
    try:
        os.write(writer, b'{"text": "a plain text about chess"}\n' * 50)
        deadline = time.monotonic() + 60
        while not list(out.glob(".a.scores.jsonl.*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(out.glob(".a.scores.jsonl.*.tmp")), "the worker made no temp file"
        (os.killpg if group else os.kill)(proc.pid, signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        os.close(writer)
    assert list(out.iterdir()) == [], stderr
    assert proc.returncode == code, stderr
    assert stderr.decode().strip() == said


@pytest.mark.parametrize(("signum", "code", "said"), [
    (signal.SIGINT, 130, "interrupted"),
    (signal.SIGTERM, 143, "terminated"),
])
def test_a_signal_to_a_run_on_a_running_cluster_stops_its_files(client, tiny_model_dir, tmp_path, signum, code, said):
    """--scheduler: the cluster is not the command's and lives on. The worker writing a file when the signal came went
    on, and put the file in place after the command had exited; now the command stops its tasks and waits for them:
    no output file, no temp file, and the exit code and one-line message of a stopped run."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    fifo = folder / "a.jsonl"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_DEFAULT_EXEC, *_cli(
        "score", "--engine", "dask", "--scheduler", client.scheduler.address, "--model", str(tiny_model_dir), "-i",
        str(folder / "*.jsonl"), "-o", str(out))], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    temps = ".a.scores.jsonl.*.tmp"
    writer = _writer_of(fifo, proc)  # the worker waits on the FIFO for rows: it is mid-file, its temp file open
    try:
        os.write(writer, b'{"text": "a plain text about chess"}\n' * 50)
        _wait_for(lambda: list(out.glob(temps)), "the worker made no temp file")
        key = _running_key(client, "lite-moderation-score-a.scores.jsonl-")
        stop = Event(f"lite-moderation-stop-{key.rsplit('-', 1)[1]}", client=client)
        os.kill(proc.pid, signum)  # the command alone: the cluster's processes are not its own
        _wait_for(lambda: proc.poll() is not None or stop.is_set(), "the command neither stopped its run nor exited")
    finally:
        os.close(writer)  # the end of the file: the worker finishes it, unless told the run was stopped
    _, stderr = proc.communicate(timeout=120)
    _wait_for(lambda: not list(out.glob(temps)), "the temp file stayed")  # the task is over: renamed or removed
    assert list(out.iterdir()) == [], stderr
    assert proc.returncode == code, stderr
    assert stderr.decode().strip() == said


def _wait_for(condition: Callable[[], object], failure: str, timeout: float = 120.0) -> None:
    """Poll ``condition`` until it holds (no timing assumption: the timeout only ends a test that would hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(failure)
        time.sleep(0.05)


def _running_key(client: Client, prefix: str, timeout: float = 60.0) -> str:
    """The key, starting with ``prefix``, of a task a worker of ``client``'s cluster is running (polls the scheduler)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys = [key for running in client.processing().values() for key in running if key.startswith(prefix)]
        if keys:
            return keys[0]
        time.sleep(0.05)
    raise AssertionError(f"no worker runs a task {prefix}...")


def test_worker_killed_mid_run_loses_and_duplicates_nothing(client, tmp_path):
    """SIGKILL the worker running a task: Dask retries it, the atomic output holds every row exactly once."""
    sizes = [3000 + 100 * i for i in range(8)]
    inputs = [write_jsonl(tmp_path / f"shard-{i}.jsonl", synthetic_records(n, seed=30 + i))
              for i, n in enumerate(sizes)]
    futures = client.compute(dist.score_files(inputs, tmp_path / "out", None))  # the shipped model: slower
    keys = [f.key for f in futures]
    pids = client.run(os.getpid)
    victim = _first_busy_worker(client, keys)
    os.kill(pids[victim], signal.SIGKILL)
    summaries = client.gather(futures)
    suspicious = client.run_on_scheduler(lambda dask_scheduler: sum(dask_scheduler.tasks[k].suspicious for k in keys))
    assert suspicious >= 1  # the kill hit at least one task that was then retried
    for path, n, summary in zip(inputs, sizes, summaries):
        output = dist.output_path_for(path, tmp_path / "out")
        assert _lines_of(output) == list(range(1, n + 1))
        assert summary.rows_in == summary.scored == n
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        dist.output_path_for(p, tmp_path / "out").name for p in inputs)  # no temp files left behind
    client.wait_for_workers(2, timeout=60)


def test_the_model_reaches_the_worker_that_replaces_a_dead_one_and_the_file_is_retried(tiny_model_dir, tmp_path):
    """One worker, killed mid-file: its nanny starts another, which gets the model too (a worker plugin) and scores the
    file again, and the file queued behind it. A model scattered to the workers (Dask's other way to keep data out of
    the graph) dies with the last worker holding it: Dask cannot compute it again, so it cancels every task that needs
    it instead of retrying them."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    fifo = folder / "a.jsonl"
    os.mkfifo(fifo)  # the worker waits on it for rows: mid-file, as long as the test wants
    queued = write_jsonl(folder / "b.jsonl", synthetic_records(40, seed=60))
    row = b'{"text": "a plain text about chess"}\n'
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(dist.score_corpus([fifo, queued], out, tiny_model_dir, client=one))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome.append(exc)

    with LocalCluster(processes=True, n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                      scheduler_kwargs=dist.LOCAL_SCHEDULER_OPTIONS) as cluster, Client(cluster) as one:
        thread = threading.Thread(target=run)
        thread.start()
        writer = _writer_of(fifo, thread)
        try:
            os.write(writer, row * 50)
            _wait_for(lambda: list(out.glob(".a.scores.jsonl.*.tmp")), "the worker made no temp file")
            [(_, pid)] = one.run(os.getpid).items()
            os.kill(pid, signal.SIGKILL)
        finally:
            os.close(writer)
        _wait_for(lambda: set(one.run(os.getpid, on_error="ignore").values()) - {pid}, "no worker replaced the dead one")
        try:
            writer = _writer_of(fifo, thread)  # the retry reads the file from its start: these rows alone
        except AssertionError:
            raise AssertionError(f"the file was not retried: {outcome}") from None
        try:
            os.write(writer, row * 7)
        finally:
            os.close(writer)
        thread.join(timeout=120)
    assert len(outcome) == 1 and isinstance(outcome[0], dist.CorpusSummary), outcome
    summary = outcome[0]
    assert [(f.rows_in, f.scored, f.error) for f in summary.files] == [(7, 7, None), (40, 40, None)]
    assert _lines_of(out / "a.scores.jsonl") == list(range(1, 8))
    assert sorted(p.name for p in out.iterdir()) == ["a.scores.jsonl", "b.scores.jsonl"]  # no temp file left


def test_a_file_whose_workers_keep_dying_stops_the_run_with_one_error_naming_it(tmp_path):
    """Dask gives up on a task once its workers have died its allowed number of times (here once): the run ends with
    a WorkerDiedError naming the file (the CLI's one-line message), not Dask's KilledWorker, and no temp file is
    left beside it."""
    source = write_jsonl(tmp_path / "shard.jsonl", synthetic_records(20000, seed=40))
    out = tmp_path / "out"
    raised: list[BaseException] = []

    def run() -> None:
        try:
            dist.score_corpus([source], out, None, client=dying)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            raised.append(exc)

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), LocalCluster(
            processes=True, n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
            scheduler_kwargs=dist.LOCAL_SCHEDULER_OPTIONS) as cluster, Client(cluster) as dying:
        thread = threading.Thread(target=run)
        thread.start()
        pids = dying.run(os.getpid)
        worker = _first_busy_worker(dying, "lite-moderation-score-")  # a file's task, past the model's loading
        os.kill(pids[worker], signal.SIGKILL)
        thread.join(timeout=120)
    assert len(raised) == 1 and isinstance(raised[0], WorkerDiedError), raised
    assert "shard.scores.jsonl" in str(raised[0]) and "died" in str(raised[0])
    assert not out.exists() or list(out.iterdir()) == []


def _first_busy_worker(client: Client, keys: list | str, timeout: float = 60.0) -> str:
    """The address of a worker running one of ``keys`` (or a key starting with that string; polls the scheduler, no
    timing assumption)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [worker for worker, running in client.processing().items()
                if (set(running) & set(keys) if isinstance(keys, list) else any(k.startswith(keys) for k in running))]
        if busy:
            return busy[0]
        time.sleep(0.02)
    raise AssertionError("no worker started a task")
